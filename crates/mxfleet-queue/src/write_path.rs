//! The write path: how a write reaches the leader and comes back.
//!
//! `QueueCore::propose_local` proposes on this node (it must lead); `Queue::write`
//! retries across leader changes, forwarding to the leader over the peer port, until
//! `write_timeout`, then answers `NoQuorum`. After a write commits, the handle waits
//! until this node has applied it too (read-your-writes on the accepting node).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mxfleet_core::NodeId;
use mxfleet_proto::raft::v1::{ForwardRequest, forward_error, forward_reply};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ChangeMembershipError, ClientWriteError, LinearizableReadError, RaftError};
use openraft::{ChangeMembers, ReadPolicy};
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::blob_store::BlobStore;
use crate::config::QueueConfig;
use crate::error::QueueError;
use crate::log_store::LogStore;
use crate::peer::forward::{ForwardedResponse, ForwardedWrite};
use crate::peer::transport::PeerChannels;
use crate::queue::Queue;
use crate::state_machine::StateMachineStore;
use crate::types::{PeerNode, Raft, WIRE_FORMAT, decode, encode};

/// Why a write could not be proposed on this node.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalWriteError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, PeerNode)> },
    #[error("not committed: {0}")]
    NoQuorum(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("raft stopped: {0}")]
    Stopped(String),
}

/// State shared by the handle, the peer service and the background tasks.
pub(crate) struct QueueCore {
    pub(crate) id: NodeId,
    pub(crate) config: QueueConfig,
    pub(crate) raft: Raft,
    pub(crate) state: StateMachineStore,
    pub(crate) log: LogStore,
    pub(crate) blobs: BlobStore,
    pub(crate) channels: Arc<PeerChannels>,
    pub(crate) max_message_size: u64,
    pub(crate) tracker: TaskTracker,
    pub(crate) incoming_seq: AtomicU64,
    /// When this node last received AppendEntries (entries or a heartbeat), as
    /// milliseconds since `started`. A follower that stops hearing from the leader is
    /// cut off and must stop delivering (see the delivery lease argument).
    pub(crate) last_append_received_ms: AtomicU64,
    pub(crate) started: std::time::Instant,
    /// Event metrics; the handle hands out clones (`Queue::metrics`).
    pub(crate) metrics: crate::metrics::QueueMetrics,
}

impl QueueCore {
    /// Records that an AppendEntries request arrived now.
    pub(crate) fn note_append_received(&self) {
        let elapsed = self.started.elapsed().as_millis() as u64;
        self.last_append_received_ms
            .fetch_max(elapsed.max(1), Ordering::Relaxed);
    }

    /// A fresh spool path for a snapshot being received.
    pub(crate) fn incoming_snapshot_path(&self) -> PathBuf {
        let seq = self.incoming_seq.fetch_add(1, Ordering::Relaxed);
        self.config
            .data_dir
            .join("snapshots")
            .join(format!("incoming-{seq}.spool"))
    }

    /// The node record of `id` in the current membership.
    pub(crate) fn member(&self, id: NodeId) -> Option<PeerNode> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// Voter ids of the current membership.
    pub(crate) fn voters(&self) -> BTreeSet<NodeId> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        metrics.membership_config.membership().voter_ids().collect()
    }

    /// Every member (voters and learners) with its address.
    pub(crate) fn members(&self) -> BTreeMap<NodeId, PeerNode> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect()
    }

    /// Proposes `write` on this node, which must be the leader.
    pub(crate) async fn propose_local(
        &self,
        write: ForwardedWrite,
    ) -> Result<ForwardedResponse, LocalWriteError> {
        let timeout = self.config.write_timeout;
        let proposed = Instant::now();
        let proposal = async {
            match write {
                ForwardedWrite::Command(command) => {
                    self.raft
                        .client_write(command)
                        .await
                        .map(|r| ForwardedResponse::Command {
                            response: r.data,
                            log_index: r.log_id.index,
                        })
                }
                ForwardedWrite::AddLearner { id, node } => {
                    self.raft.add_learner(id, node, false).await.map(|r| {
                        ForwardedResponse::Membership {
                            log_index: r.log_id.index,
                        }
                    })
                }
                ForwardedWrite::Promote { id } => self
                    .raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map(|r| ForwardedResponse::Membership {
                        log_index: r.log_id.index,
                    }),
                ForwardedWrite::Remove { id } => {
                    let change = if self.voters().contains(&id) {
                        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                    } else {
                        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                    };
                    self.raft.change_membership(change, false).await.map(|r| {
                        ForwardedResponse::Membership {
                            log_index: r.log_id.index,
                        }
                    })
                }
                ForwardedWrite::TransferLeader { to } => {
                    if !self.raft.is_leader() {
                        let leader = self.raft.current_leader().await;
                        return Err(LocalWriteError::NotLeader {
                            leader: leader.and_then(|l| self.member(l).map(|n| (l, n))),
                        });
                    }
                    self.raft
                        .trigger()
                        .transfer_leader(to)
                        .await
                        .map_err(|e| LocalWriteError::Refused(e.to_string()))?;
                    return Ok(ForwardedResponse::TransferStarted);
                }
                ForwardedWrite::ReadIndex => {
                    return self
                        .raft
                        .ensure_linearizable(ReadPolicy::ReadIndex)
                        .await
                        .map(|read| ForwardedResponse::ReadIndex {
                            log_index: read.log_id().index,
                        })
                        .map_err(|e| match e {
                            RaftError::APIError(LinearizableReadError::ForwardToLeader(
                                forward,
                            )) => LocalWriteError::NotLeader {
                                leader: forward.leader_id.zip(forward.leader_node),
                            },
                            other => LocalWriteError::NoQuorum(other.to_string()),
                        });
                }
                ForwardedWrite::LeaderView => return self.leader_view(),
            }
            .map_err(classify_write_error)
        };
        match tokio::time::timeout(timeout, proposal).await {
            Ok(result) => {
                // Commit latency: client_write returns once committed and applied here.
                if let Ok(ForwardedResponse::Command { .. }) = &result {
                    let seconds = proposed.elapsed().as_secs_f64();
                    self.metrics.commit_latency.observe(seconds);
                }
                result
            }
            Err(_) => Err(LocalWriteError::NoQuorum(format!(
                "not committed within {timeout:?}"
            ))),
        }
    }
}

fn classify_write_error(
    error: RaftError<crate::types::TypeConfig, ClientWriteError<crate::types::TypeConfig>>,
) -> LocalWriteError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward))
        | RaftError::APIError(ClientWriteError::LogEntryDiscarded(forward)) => {
            LocalWriteError::NotLeader {
                leader: forward.leader_id.zip(forward.leader_node),
            }
        }
        // A previous membership change is still being committed (for example right
        // after an election): transient, retried until the write deadline.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(e),
        )) => LocalWriteError::NoQuorum(e.to_string()),
        RaftError::APIError(other) => LocalWriteError::Refused(other.to_string()),
        RaftError::Fatal(fatal) => LocalWriteError::Stopped(fatal.to_string()),
    }
}

impl Queue {
    /// Proposes `write` on the leader, retrying across leader changes until
    /// `write_timeout`; then reports `NoQuorum`.
    pub(crate) async fn write(
        &self,
        write: ForwardedWrite,
    ) -> Result<ForwardedResponse, QueueError> {
        let started = Instant::now();
        let deadline = started + self.core.config.write_timeout;
        let mut pause = Duration::from_millis(10);
        let mut last_problem: String;
        loop {
            let leader = self.core.raft.current_leader().await;
            let attempt = match leader {
                Some(leader) if leader != self.core.id => {
                    self.forward(leader, &write, deadline).await
                }
                _ => self.core.propose_local(write.clone()).await,
            };
            match attempt {
                Ok(response) => {
                    self.wait_applied_locally(&response, deadline).await;
                    return Ok(response);
                }
                Err(LocalWriteError::Refused(why)) => return Err(QueueError::Declined(why)),
                Err(LocalWriteError::Stopped(why)) => {
                    return Err(QueueError::Unavailable(format!("raft stopped: {why}")));
                }
                Err(problem) => last_problem = problem.to_string(),
            }
            if Instant::now() + pause >= deadline {
                warn!(node_id = self.core.id, cause = %last_problem, "write_no_quorum");
                return Err(QueueError::NoQuorum {
                    waited: started.elapsed(),
                    detail: last_problem,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Read-your-writes on this node: after a write committed (possibly on another
    /// node), wait until this node has applied it too, so that a caller that reads
    /// right after sees its own write. The write is committed either way; if this node
    /// lags past the deadline we return and let it catch up.
    async fn wait_applied_locally(&self, response: &ForwardedResponse, deadline: Instant) {
        let Some(index) = response.log_index() else {
            return;
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let waited = self
            .core
            .raft
            .wait(Some(remaining.max(Duration::from_millis(100))))
            .applied_index_at_least(Some(index), "local apply of own write")
            .await;
        if let Err(e) = waited {
            warn!(node_id = self.core.id, index, cause = %e, "own_write_not_applied_locally_yet");
        }
    }

    async fn forward(
        &self,
        leader: NodeId,
        write: &ForwardedWrite,
        deadline: Instant,
    ) -> Result<ForwardedResponse, LocalWriteError> {
        let Some(node) = self.core.member(leader) else {
            return Err(LocalWriteError::NotLeader { leader: None });
        };
        let mut client = self
            .core
            .channels
            .client(&node.addr)
            .map_err(|e| LocalWriteError::NoQuorum(e.to_string()))?;
        let request = ForwardRequest {
            format: WIRE_FORMAT,
            write: encode(write).map_err(|e| LocalWriteError::Refused(e.to_string()))?,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        // A leader that stops answering (stopped, partitioned) is replaced by an
        // election; stop waiting for it then and retry with the new one, instead of
        // holding the write until the deadline. Every write is safe to repeat (enqueue
        // is deduplicated, outcomes are fenced by their token, the rest idempotent).
        let mut metrics = self.core.raft.metrics();
        let leader_replaced = async move {
            loop {
                if metrics
                    .borrow_watched()
                    .current_leader
                    .is_some_and(|l| l != leader)
                {
                    return;
                }
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let reply = tokio::select! {
            reply = tokio::time::timeout(remaining, client.forward(request)) => reply,
            _ = leader_replaced => {
                return Err(LocalWriteError::NoQuorum(format!(
                    "leader {leader} was replaced while the write was forwarded"
                )));
            }
        };
        let reply = reply
            .map_err(|_| {
                LocalWriteError::NoQuorum(format!("leader {leader} did not answer in time"))
            })?
            .map_err(|s| LocalWriteError::NoQuorum(format!("leader {leader}: {}", s.message())))?
            .into_inner();
        match reply.result {
            Some(forward_reply::Result::Response(bytes)) => {
                decode(&bytes).map_err(|e| LocalWriteError::Refused(e.to_string()))
            }
            Some(forward_reply::Result::Error(error)) => {
                let message = format!("leader {leader}: {}", error.message);
                Err(match forward_error::Kind::try_from(error.kind) {
                    Ok(forward_error::Kind::NotLeader) => {
                        LocalWriteError::NotLeader { leader: None }
                    }
                    Ok(forward_error::Kind::Refused) => LocalWriteError::Refused(message),
                    _ => LocalWriteError::NoQuorum(message),
                })
            }
            None => Err(LocalWriteError::NoQuorum(format!(
                "leader {leader} sent an empty reply"
            ))),
        }
    }
}
