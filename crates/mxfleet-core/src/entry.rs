//! One queued message as every replica stores it: envelope, body reference, state,
//! the current delivery assignment, and its history.

use serde::{Deserialize, Serialize};

use crate::delivery::{
    NotificationKind, RecipientOutcome, RecipientState, RecipientStatus, destination_of,
};
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
    /// How many connections to the destination the owner may hold: its share of the
    /// fleet-wide limit, decided by the leader when it assigned.
    pub connections: u32,
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
    /// One delivery attempt and what it found for each recipient it tried.
    Attempt {
        at: UnixMillis,
        token: u64,
        relay: Option<String>,
        results: Vec<RecipientOutcome>,
        /// Set when recipients remain pending.
        next_attempt_at: Option<UnixMillis>,
        lost_after_dot: bool,
    },
    /// The owner handed the assignment back unstarted (it was stopping).
    Returned {
        at: UnixMillis,
        token: u64,
    },
    /// A DSN about this message was enqueued (`dsn`), or none was due (null sender).
    Notified {
        at: UnixMillis,
        kind: NotificationKind,
        dsn: Option<QueueId>,
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
    /// An operator cleared the backoff.
    Requeued {
        at: UnixMillis,
    },
    /// An operator returned the message to its sender.
    BouncedByOperator {
        at: UnixMillis,
    },
}

impl HistoryEvent {
    /// When the event happened (for a renewal: the new end of the lease).
    pub fn at(&self) -> UnixMillis {
        match self {
            HistoryEvent::Accepted { at, .. }
            | HistoryEvent::DuplicateSubmission { at, .. }
            | HistoryEvent::Assigned { at, .. }
            | HistoryEvent::Attempt { at, .. }
            | HistoryEvent::Returned { at, .. }
            | HistoryEvent::Notified { at, .. }
            | HistoryEvent::StaleOutcomeRejected { at, .. }
            | HistoryEvent::Held { at }
            | HistoryEvent::Released { at }
            | HistoryEvent::Deleted { at }
            | HistoryEvent::Requeued { at }
            | HistoryEvent::BouncedByOperator { at } => *at,
            HistoryEvent::LeaseRenewed { lease_until, .. } => *lease_until,
        }
    }
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
    /// When the last attempt ended (`None` before the first).
    pub last_attempt_at: Option<UnixMillis>,
    /// Every recipient of the envelope, in envelope order, and where it stands.
    pub recipients: Vec<RecipientStatus>,
    /// True once the delay warning DSN has been enqueued (it is sent at most once).
    pub delay_warned: bool,
    pub assignment: Option<Assignment>,
    /// The log index at which the entry reached a final state, for blob collection.
    pub finished_at_index: Option<u64>,
    pub history: Vec<HistoryEvent>,
}

impl QueueEntry {
    /// Recipients still waiting for delivery, in envelope order.
    pub fn pending_recipients(&self) -> impl Iterator<Item = &str> {
        self.recipients
            .iter()
            .filter(|r| r.state == RecipientState::Pending)
            .map(|r| r.address.as_str())
    }

    /// The destination (recipient domain) the message waits for: the domain of the
    /// first pending recipient. A message for several domains is paced and probed under
    /// the first one; its owner still delivers every domain in one attempt.
    pub fn destination(&self) -> String {
        let address = self
            .pending_recipients()
            .next()
            .or_else(|| self.envelope.recipients.first().map(String::as_str))
            .unwrap_or_default();
        destination_of(address)
    }

    /// Bounced recipients that no failure DSN has named yet.
    pub fn unreported_bounces(&self) -> impl Iterator<Item = &RecipientStatus> {
        self.recipients
            .iter()
            .filter(|r| r.state == RecipientState::Bounced { notified: false })
    }

    /// When the last thing happened to the message (its most recent history event).
    pub fn last_event_at(&self) -> UnixMillis {
        self.history
            .iter()
            .map(HistoryEvent::at)
            .max()
            .unwrap_or(self.received_at)
    }

    /// True when a failure DSN is owed to the sender: something bounced, nobody was
    /// told yet, and the sender is not the null sender (a DSN never answers a DSN).
    pub fn owes_failure_dsn(&self) -> bool {
        !self.envelope.sender.is_empty() && self.unreported_bounces().next().is_some()
    }
}
