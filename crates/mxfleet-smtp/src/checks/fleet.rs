//! What the spam checks need from the rest of the node, as traits: the fleet's
//! replicated spam state (read locally, written in batches through Raft) and a prober
//! that asks the primary about a recipient. `mxfleet-node` implements both on top of
//! the queue and the delivery client; transcript tests use in-memory ones.

use mxfleet_core::spam::{GreylistRecord, RecipientVerdict};
use mxfleet_core::{SpamFact, UnixMillis};

/// The fleet-wide state the checks read and the facts they report.
pub trait FleetSpamState: Send + Sync + 'static {
    /// Now, on this node's clock (the same clock that stamps facts).
    fn now(&self) -> UnixMillis;
    /// The triplet's record in this node's replica, unless expired.
    fn triplet(&self, key: &mxfleet_core::spam::GreylistKey) -> Option<GreylistRecord>;
    /// How many triplets `network` has passed (for auto-allowlisting).
    fn network_passes(&self, network: &str) -> u32;
    /// The cached verdict of the primary on `address`, unless expired.
    fn verdict(&self, address: &str) -> Option<RecipientVerdict>;
    /// Whether the fleet sees `domain`'s primary down right now; `None` when no node
    /// has reported on it yet.
    fn primary_down(&self, domain: &str) -> Option<bool>;
    /// Hands a fact to the fleet. Returns at once: facts are batched into Raft entries.
    /// A fact that cannot be sent (queue full, no quorum) is dropped, counted and
    /// logged by the implementation; greylisting and verification then simply ask
    /// again next time.
    fn record(&self, fact: SpamFact);
    /// This node's id, stamped into verdicts.
    fn node_id(&self) -> u64;
}

/// What a probe of the primary said about one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// `2xx` to `RCPT TO`.
    Valid { reply: String },
    /// `5xx` to `RCPT TO`.
    Invalid { reply: String },
    /// No answer worth caching: a `4xx`, a connection failure, a timeout.
    Unknown { reason: String },
}

/// Asks `domain`'s primary whether it takes mail for `address`.
#[async_trait::async_trait]
pub trait RecipientProber: Send + Sync + 'static {
    async fn probe(&self, domain: &str, address: &str) -> ProbeOutcome;
}
