//! What the fleet proposes through Raft (`Command`) and what applying a command
//! answers (`Response`). Every time a command needs is carried inside it.

use serde::{Deserialize, Serialize};

use crate::{BodyDigest, DedupKey, Envelope, MessageState, NodeId, QueueId, UnixMillis};

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
    /// The leader gives a queued message to `owner`. The entry's log index becomes the
    /// fencing token. Refused while another owner's lease is still valid at `now`.
    Assign {
        id: QueueId,
        owner: NodeId,
        now: UnixMillis,
        lease_until: UnixMillis,
    },
    /// The owner extends its lease for a delivery in flight.
    RenewLease {
        id: QueueId,
        token: u64,
        lease_until: UnixMillis,
    },
    /// The primary answered 250 for the message.
    Delivered {
        id: QueueId,
        token: u64,
        at: UnixMillis,
        reply: String,
    },
    /// A temporary failure: try again at `next_attempt_at`.
    Deferred {
        id: QueueId,
        token: u64,
        at: UnixMillis,
        reply: String,
        next_attempt_at: UnixMillis,
    },
    /// A permanent failure (or the lifetime ran out): the message is returned.
    Bounced {
        id: QueueId,
        token: u64,
        at: UnixMillis,
        reply: String,
    },
    /// Operator actions.
    Hold {
        id: QueueId,
        at: UnixMillis,
    },
    Release {
        id: QueueId,
        at: UnixMillis,
    },
    Delete {
        id: QueueId,
        at: UnixMillis,
    },
    /// Drops dedup records whose window ended at or before `now`.
    ExpireDedup {
        now: UnixMillis,
    },
}

impl Command {
    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Enqueue { .. } => "enqueue",
            Command::Assign { .. } => "assign",
            Command::RenewLease { .. } => "renew_lease",
            Command::Delivered { .. } => "delivered",
            Command::Deferred { .. } => "deferred",
            Command::Bounced { .. } => "bounced",
            Command::Hold { .. } => "hold",
            Command::Release { .. } => "release",
            Command::Delete { .. } => "delete",
            Command::ExpireDedup { .. } => "expire_dedup",
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
            Command::Assign { id, owner, .. } => write!(f, "assign({id} to {owner})"),
            Command::RenewLease { id, token, .. }
            | Command::Delivered { id, token, .. }
            | Command::Deferred { id, token, .. }
            | Command::Bounced { id, token, .. } => {
                write!(f, "{}({id} token={token})", self.kind())
            }
            Command::Hold { id, .. } | Command::Release { id, .. } | Command::Delete { id, .. } => {
                write!(f, "{}({id})", self.kind())
            }
            Command::ExpireDedup { now } => write!(f, "expire_dedup(now={now})"),
        }
    }
}

/// What applying one command answered. Returned to the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// `duplicate` is true when the dedup index already knew the submission and `id`
    /// is the message stored earlier.
    Enqueued {
        id: QueueId,
        duplicate: bool,
    },
    Assigned {
        id: QueueId,
        token: u64,
    },
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
    #[error("message {id} is leased to node {owner} until {lease_until}")]
    LeaseHeld {
        id: QueueId,
        owner: NodeId,
        lease_until: UnixMillis,
    },
}
