//! Cluster membership and status through the queue handle: add a learner, promote it,
//! remove a node, move leadership, and this node's view of the cluster.

use std::collections::BTreeSet;

use mxfleet_core::NodeId;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;

use crate::error::QueueError;
use crate::peer::forward::{ForwardedResponse, ForwardedWrite};
use crate::queue::Queue;
use crate::types::PeerNode;

/// One member as the cluster status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: NodeId,
    pub addr: String,
    pub site: String,
    pub voter: bool,
    /// The highest log index the leader knows this member holds (leader's view only).
    pub matched_index: Option<u64>,
}

/// This node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub role: &'static str,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub members: Vec<MemberStatus>,
}

impl Queue {
    /// Adds a learner that will replicate everything, including a snapshot and bodies.
    pub async fn add_learner(&self, id: NodeId, addr: &str, site: &str) -> Result<u64, QueueError> {
        let node = PeerNode {
            addr: addr.to_string(),
            site: site.to_string(),
        };
        membership_index(self.write(ForwardedWrite::AddLearner { id, node }).await?)
    }

    /// Makes learner `id` a voter.
    pub async fn promote(&self, id: NodeId) -> Result<u64, QueueError> {
        membership_index(self.write(ForwardedWrite::Promote { id }).await?)
    }

    /// Removes node `id` from the cluster.
    pub async fn remove(&self, id: NodeId) -> Result<u64, QueueError> {
        membership_index(self.write(ForwardedWrite::Remove { id }).await?)
    }

    /// Asks the leader to hand leadership to `to`.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), QueueError> {
        self.write(ForwardedWrite::TransferLeader { to })
            .await
            .map(|_| ())
    }

    /// Resolves when this node's Raft has stopped on its own, with the reason: a log
    /// or state write failed (a full disk, an I/O error), so the node can no longer
    /// take part until it is restarted. Pending forever while Raft runs.
    pub async fn raft_failed(&self) -> String {
        let mut watch = self.core.raft.metrics();
        loop {
            if let Err(fatal) = &watch.borrow_watched().running_state {
                return fatal.to_string();
            }
            if watch.changed().await.is_err() {
                return "Raft stopped (its metrics channel closed)".to_string();
            }
        }
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let metrics = self.core.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberStatus {
                id: *id,
                addr: node.addr.clone(),
                site: node.site.clone(),
                voter: voters.contains(id),
                matched_index: metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index),
            })
            .collect();
        ClusterStatus {
            node_id: self.core.id,
            role: match metrics.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            committed_index: metrics.local_committed.map(|l| l.index),
            last_applied_index: metrics.last_applied.map(|l| l.index),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            members,
        }
    }
}

fn membership_index(response: ForwardedResponse) -> Result<u64, QueueError> {
    match response {
        ForwardedResponse::Membership { log_index } => Ok(log_index),
        other => Err(QueueError::Unavailable(format!(
            "unexpected answer: {other:?}"
        ))),
    }
}
