//! Writes that a follower forwards to the leader, and the leader's answers.
//!
//! openraft does not forward writes; we do. Any node may receive an SMTP transaction or
//! an admin request; it proposes locally when it leads and otherwise sends the write to
//! the leader it knows over the peer port.

use mxfleet_core::{Command, NodeId, Response};
use serde::{Deserialize, Serialize};

use crate::types::PeerNode;

/// A write that must be proposed by the leader.
// Short-lived (encoded once per forward); boxing the command would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum ForwardedWrite {
    Command(Command),
    AddLearner {
        id: NodeId,
        node: PeerNode,
    },
    Promote {
        id: NodeId,
    },
    Remove {
        id: NodeId,
    },
    TransferLeader {
        to: NodeId,
    },
    /// Not a write: the leader confirms it still leads (a quorum round) and answers its
    /// commit index, which the asking node then waits to apply (a linearizable read).
    ReadIndex,
    /// Not a write: the leader's replication view of every member.
    LeaderView,
}

/// What the leader answers for a forwarded write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum ForwardedResponse {
    /// The command's answer, and the log index it was committed at.
    Command {
        response: Response,
        log_index: u64,
    },
    /// A membership change committed at this log index.
    Membership {
        log_index: u64,
    },
    /// Leadership transfer started.
    TransferStarted,
    /// Everything committed up to this index must be applied before reading.
    ReadIndex {
        log_index: u64,
    },
    LeaderView(LeaderView),
}

/// The leader's view of replication, for `mxfleet cluster status` on any node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    pub leader: NodeId,
    pub last_log_index: Option<u64>,
    pub members: Vec<MemberReplication>,
}

/// How far one member has replicated, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReplication {
    pub id: NodeId,
    /// The highest log index the leader knows the member holds.
    pub matched_index: Option<u64>,
    /// Milliseconds since the member last acknowledged the leader (`None`: never; the
    /// leader itself: 0).
    pub since_ack_ms: Option<u64>,
}

impl ForwardedResponse {
    /// The log index the write was committed at, if it was a log entry.
    pub(crate) fn log_index(&self) -> Option<u64> {
        match self {
            ForwardedResponse::Command { log_index, .. }
            | ForwardedResponse::Membership { log_index }
            | ForwardedResponse::ReadIndex { log_index } => Some(*log_index),
            ForwardedResponse::TransferStarted | ForwardedResponse::LeaderView(_) => None,
        }
    }
}
