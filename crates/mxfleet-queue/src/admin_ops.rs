//! What the admin API needs from the queue beyond delivery: operator actions on many
//! messages at once, draining a node, linearizable reads, and the leader's replication
//! view (asked of the leader over the peer port when this node is a follower).

use mxfleet_core::{Command, NodeId, OperatorAction, QueueId, Rejection, Response};
use openraft::async_runtime::Instant as _;
use openraft::async_runtime::WatchReceiver;

use crate::error::QueueError;
use crate::peer::forward::{ForwardedResponse, ForwardedWrite, LeaderView, MemberReplication};
use crate::queue::{Queue, unexpected};
use crate::write_path::{LocalWriteError, QueueCore};

/// The most message ids one `Operator` command carries; a bulk action over more is
/// several commands (each one Raft entry).
pub const MAX_IDS_PER_OPERATOR_COMMAND: usize = 500;

impl Queue {
    /// Applies `action` to `ids` (at most [`MAX_IDS_PER_OPERATOR_COMMAND`]) in one Raft
    /// entry. Returns the messages it refused and why (unknown, final, not held...).
    pub async fn operate(
        &self,
        action: OperatorAction,
        ids: Vec<QueueId>,
    ) -> Result<Vec<Rejection>, QueueError> {
        let at = self.now();
        match self.command(Command::Operator { action, ids, at }).await? {
            Response::Batch { rejected } => Ok(rejected),
            other => Err(unexpected(other)),
        }
    }

    /// Takes `node` out of service (`drained`) or puts it back.
    pub async fn set_drained(&self, node: NodeId, drained: bool) -> Result<(), QueueError> {
        let at = self.now();
        match self.command(Command::Drain { node, drained, at }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// True when an operator drained this node: it refuses SMTP sessions and takes no
    /// delivery work.
    pub fn is_drained(&self) -> bool {
        let me = self.core.id;
        self.read_state(|state| state.fleet.drained.contains(&me))
            .unwrap_or(false)
    }

    /// Waits until this node has applied everything the leader had committed when
    /// this call started, so that a read after it is linearizable. Fails with
    /// `NoQuorum` when no leader confirms its leadership in time, and `Unavailable`
    /// when this node lags too far behind to catch up before the write timeout.
    pub async fn linearize(&self) -> Result<(), QueueError> {
        let response = self.write(ForwardedWrite::ReadIndex).await?;
        let Some(index) = response.log_index() else {
            return Err(QueueError::Unavailable(format!(
                "unexpected answer to a read index request: {response:?}"
            )));
        };
        let applied = self
            .core
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map(|l| l.index);
        if applied < Some(index) {
            return Err(QueueError::Unavailable(format!(
                "this node has applied up to {applied:?}, behind the leader's commit index \
                 {index}; ask another node or retry"
            )));
        }
        Ok(())
    }

    /// The leader's replication view, asked of the leader when this node follows.
    pub async fn leader_view(&self) -> Result<LeaderView, QueueError> {
        match self.write(ForwardedWrite::LeaderView).await? {
            ForwardedResponse::LeaderView(view) => Ok(view),
            other => Err(QueueError::Unavailable(format!(
                "unexpected answer to a leader view request: {other:?}"
            ))),
        }
    }
}

impl QueueCore {
    /// This node's replication view; only the leader has one.
    pub(crate) fn leader_view(&self) -> Result<ForwardedResponse, LocalWriteError> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let Some(replication) = metrics.replication.as_ref() else {
            let leader = metrics.current_leader;
            return Err(LocalWriteError::NotLeader {
                leader: leader.and_then(|l| self.member(l).map(|n| (l, n))),
            });
        };
        let members = self
            .members()
            .into_keys()
            .map(|id| {
                let since_ack_ms = if id == self.id {
                    Some(0)
                } else {
                    metrics
                        .heartbeat
                        .as_ref()
                        .and_then(|beats| beats.get(&id).cloned().flatten())
                        .map(|at| at.elapsed().as_millis() as u64)
                };
                let matched_index = if id == self.id {
                    metrics.last_log_index
                } else {
                    replication.get(&id).cloned().flatten().map(|l| l.index)
                };
                MemberReplication {
                    id,
                    matched_index,
                    since_ack_ms,
                }
            })
            .collect();
        Ok(ForwardedResponse::LeaderView(LeaderView {
            leader: self.id,
            last_log_index: metrics.last_log_index,
            members,
        }))
    }
}
