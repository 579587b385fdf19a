//! What the fleet proposes through Raft (`Command`) and what applying a command
//! answers (`Response`). Every time a command needs is carried inside it.

use serde::{Deserialize, Serialize};

use crate::spam::SpamFact;
use crate::{
    AttemptReport, BodyDigest, DedupKey, Envelope, MessageState, NodeId, NotificationKind, QueueId,
    UnixMillis,
};

/// A state change of the replicated queue. Commands are pure data: applying the same
/// sequence of commands yields the same state on every replica.
// `Enqueue` is much larger than the others; commands are short-lived (encoded into the
// log, decoded once per apply), so boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A message accepted at intake whose body a write quorum has fsynced.
    Enqueue {
        dedup_key: DedupKey,
        envelope: Envelope,
        body: BodyDigest,
        size: u64,
        received_at: UnixMillis,
        accepted_by: NodeId,
        body_holders: Vec<NodeId>,
        /// A repeat of `dedup_key` before `received_at + dedup_window_ms` is the same
        /// submission and stores nothing new.
        dedup_window_ms: u64,
    },
    /// The leader gives queued messages to `owner`. The entry's log index becomes the
    /// fencing token of every one of them. A message that is not queued, or whose
    /// current lease (another owner's) is still valid at `now`, is skipped.
    Assign {
        ids: Vec<QueueId>,
        owner: NodeId,
        now: UnixMillis,
        lease_until: UnixMillis,
        /// The owner's share of the destination's fleet-wide connection limit.
        connections: u32,
    },
    /// The owner extends its leases for deliveries in flight: `(id, token)` pairs.
    RenewLease {
        leases: Vec<(QueueId, u64)>,
        lease_until: UnixMillis,
    },
    /// A node's delivery starts (`delivering`) or stops cleanly: a stopped one gets no
    /// new assignments.
    OwnerAvailability {
        node: NodeId,
        delivering: bool,
        at: UnixMillis,
    },
    /// A stopping owner hands back assignments it never started: they are due again
    /// at once, without waiting for their leases to run out.
    ReturnLeases {
        leases: Vec<(QueueId, u64)>,
        at: UnixMillis,
    },
    /// Owners report attempts, several at once (one Raft entry per batch).
    Attempted { reports: Vec<AttemptReport> },
    /// A DSN about message `id` was enqueued as `dsn` (or was not due: `None`).
    Notified {
        id: QueueId,
        kind: NotificationKind,
        dsn: Option<QueueId>,
        at: UnixMillis,
    },
    /// A node's probe or attempt found `destination` reachable or not.
    Reachability {
        node: NodeId,
        destination: String,
        reachable: bool,
        at: UnixMillis,
        detail: String,
    },
    /// Make deferred messages due now: for one destination (ETRN, `queue flush
    /// DOMAIN`) or for all (`queue flush`).
    Flush {
        destination: Option<String>,
        at: UnixMillis,
    },
    /// An operator action on messages (`mxfleet queue hold|release|delete|requeue|bounce`),
    /// several at once: a bulk action over 100k messages is a few hundred entries.
    Operator {
        action: OperatorAction,
        ids: Vec<QueueId>,
        at: UnixMillis,
    },
    /// Takes `node` out of service (`drained`: no SMTP intake, no delivery work) or
    /// puts it back (`mxfleet cluster drain [--undo]`).
    Drain {
        node: NodeId,
        drained: bool,
        at: UnixMillis,
    },
    /// Forgets finished messages (delivered, bounced, deleted) whose last event is
    /// before `before` and that no dedup record names any more, so that the state does
    /// not grow forever. Their bodies become orphans and are collected.
    ForgetFinished { before: UnixMillis },
    /// Drops dedup records whose window ended at or before `now`.
    ExpireDedup { now: UnixMillis },
    /// What nodes' spam checks saw (greylisting, recipient verification), batched.
    SpamFacts { facts: Vec<SpamFact> },
    /// Drops spam-check records whose `expires_at` is at or before `now`.
    ExpireSpamState { now: UnixMillis },
}

impl Command {
    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Enqueue { .. } => "enqueue",
            Command::Assign { .. } => "assign",
            Command::RenewLease { .. } => "renew_lease",
            Command::OwnerAvailability { .. } => "owner_availability",
            Command::ReturnLeases { .. } => "return_leases",
            Command::Attempted { .. } => "attempted",
            Command::Notified { .. } => "notified",
            Command::Reachability { .. } => "reachability",
            Command::Flush { .. } => "flush",
            Command::Operator { .. } => "operator",
            Command::Drain { .. } => "drain",
            Command::ForgetFinished { .. } => "forget_finished",
            Command::ExpireDedup { .. } => "expire_dedup",
            Command::SpamFacts { .. } => "spam_facts",
            Command::ExpireSpamState { .. } => "expire_spam_state",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Enqueue { envelope, size, .. } => {
                write!(
                    f,
                    "enqueue(from=<{}> rcpts={} size={size})",
                    envelope.sender,
                    envelope.recipients.len()
                )
            }
            Command::Assign { ids, owner, .. } => {
                write!(f, "assign({} messages to {owner})", ids.len())
            }
            Command::RenewLease { leases, .. } => write!(f, "renew_lease({})", leases.len()),
            Command::OwnerAvailability {
                node, delivering, ..
            } => write!(f, "owner_availability({node}: {delivering})"),
            Command::ReturnLeases { leases, .. } => write!(f, "return_leases({})", leases.len()),
            Command::Attempted { reports } => write!(f, "attempted({})", reports.len()),
            Command::Notified { id, kind, .. } => write!(f, "notified({id} {kind:?})"),
            Command::Reachability {
                node,
                destination,
                reachable,
                ..
            } => write!(f, "reachability({destination} from {node}: {reachable})"),
            Command::Flush { destination, .. } => {
                write!(f, "flush({})", destination.as_deref().unwrap_or("all"))
            }
            Command::Operator { action, ids, .. } => {
                write!(f, "{}({} messages)", action.as_str(), ids.len())
            }
            Command::Drain { node, drained, .. } => write!(f, "drain({node}: {drained})"),
            Command::ForgetFinished { before } => write!(f, "forget_finished(before={before})"),
            Command::ExpireDedup { now } => write!(f, "expire_dedup(now={now})"),
            Command::SpamFacts { facts } => write!(f, "spam_facts({})", facts.len()),
            Command::ExpireSpamState { now } => write!(f, "expire_spam_state(now={now})"),
        }
    }
}

/// What an operator does to a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperatorAction {
    /// Never assigned until released (an attempt in flight still records its outcome).
    Hold,
    /// A held message is queued again, due now.
    Release,
    /// Removed without delivery and without telling the sender (`postsuper -d`).
    Delete,
    /// A queued message is due now, whatever its backoff said (`postsuper -r`).
    Requeue,
    /// Every pending recipient fails now with `5.0.0` and the sender gets a failure
    /// DSN (Exim's `-Mg`).
    Bounce,
}

impl OperatorAction {
    /// The CLI word for the action.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Hold => "hold",
            OperatorAction::Release => "release",
            OperatorAction::Delete => "delete",
            OperatorAction::Requeue => "requeue",
            OperatorAction::Bounce => "bounce",
        }
    }
}

/// What applying one command answered. Returned to the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// `duplicate` is true when the dedup index already knew the submission and `id`
    /// is the message stored earlier.
    Enqueued { id: QueueId, duplicate: bool },
    /// `assigned` lists the messages the `Assign` gave out under `token`.
    Assigned { token: u64, assigned: Vec<QueueId> },
    /// A batch command took effect except for the listed refusals.
    Batch { rejected: Vec<Rejection> },
    /// The command took effect.
    Done,
    /// The command was refused; the state did not change except for a history note.
    Rejected(Rejection),
    /// Entries that carry no command (blank entries, membership changes).
    Nothing,
}

/// Why `apply` refused a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("no message {0} in the queue")]
    UnknownMessage(QueueId),
    #[error("stale fencing token {token} for {id} (current: {current:?})")]
    StaleToken {
        id: QueueId,
        token: u64,
        current: Option<u64>,
    },
    #[error("message {id} is already {state:?}")]
    AlreadyFinal { id: QueueId, state: MessageState },
    #[error("message {id} is {state:?}, not queued")]
    NotQueued { id: QueueId, state: MessageState },
    #[error("message {id} is not held")]
    NotHeld { id: QueueId },
    #[error("message {id} is leased to node {owner} until {lease_until}")]
    LeaseHeld {
        id: QueueId,
        owner: NodeId,
        lease_until: UnixMillis,
    },
}
