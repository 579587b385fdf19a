//! One queued message as every replica stores it: envelope, body reference, state,
//! the current delivery assignment, and its history.

use serde::{Deserialize, Serialize};

use crate::{BodyDigest, DedupKey, Envelope, NodeId, QueueId, UnixMillis};

/// Where a message is in its life. `Delivered`, `Bounced` and `Deleted` are final: the
/// entry stays for its history until it is forgotten, and its blob may be collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageState {
    /// Waiting for delivery (new, or deferred until `next_attempt_at`).
    Queued,
    /// Held by an operator: never assigned until released.
    Held,
    /// The primary accepted it.
    Delivered,
    /// Returned to the sender (permanent failure or lifetime expired).
    Bounced,
    /// Removed by an operator.
    Deleted,
}

impl MessageState {
    /// Final states never change again and never get assigned.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Bounced | Self::Deleted)
    }
}

/// Which node may deliver a message, until when, and under which fencing token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub owner: NodeId,
    /// The Raft log index of the `Assign` entry. Outcomes must quote it; any other token
    /// is stale and rejected.
    pub token: u64,
    /// The owner may start or continue an attempt only before this instant.
    pub lease_until: UnixMillis,
}

/// Something that happened to a message, with the log index that recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryEvent {
    Accepted {
        at: UnixMillis,
        by: NodeId,
    },
    DuplicateSubmission {
        at: UnixMillis,
        by: NodeId,
    },
    Assigned {
        at: UnixMillis,
        owner: NodeId,
        token: u64,
        lease_until: UnixMillis,
    },
    LeaseRenewed {
        token: u64,
        lease_until: UnixMillis,
    },
    Delivered {
        at: UnixMillis,
        token: u64,
        reply: String,
    },
    Deferred {
        at: UnixMillis,
        token: u64,
        reply: String,
        next_attempt_at: UnixMillis,
    },
    Bounced {
        at: UnixMillis,
        token: u64,
        reply: String,
    },
    StaleOutcomeRejected {
        at: UnixMillis,
        token: u64,
        current_token: Option<u64>,
    },
    Held {
        at: UnixMillis,
    },
    Released {
        at: UnixMillis,
    },
    Deleted {
        at: UnixMillis,
    },
}

/// A queued message, replicated on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: QueueId,
    pub dedup_key: DedupKey,
    pub envelope: Envelope,
    pub body: BodyDigest,
    pub size: u64,
    pub received_at: UnixMillis,
    /// The node whose SMTP session accepted the message.
    pub accepted_by: NodeId,
    /// Nodes that had fsynced the body when the entry was proposed (a write quorum).
    pub body_holders: Vec<NodeId>,
    pub state: MessageState,
    /// Earliest instant of the next delivery attempt.
    pub next_attempt_at: UnixMillis,
    pub attempts: u32,
    pub assignment: Option<Assignment>,
    /// The log index at which the entry reached a final state, for blob collection.
    pub finished_at_index: Option<u64>,
    pub history: Vec<HistoryEvent>,
}
