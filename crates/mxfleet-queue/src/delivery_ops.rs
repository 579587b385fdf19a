//! The delivery side of the `Queue` handle: assignment, lease renewal, attempt
//! reports, DSN bookkeeping, reachability, flushes, what a delivery owner must know
//! about its contact with the cluster before it may deliver, and opening a body for
//! use (checked, and repaired from peers when missing or corrupt).

use std::sync::atomic::Ordering;
use std::time::Duration;

use mxfleet_core::{
    AttemptReport, BodyDigest, Command, NodeId, NotificationKind, QueueId, QueueState, Rejection,
    Response, UnixMillis,
};
use openraft::ServerState;
use openraft::async_runtime::Instant as _;
use openraft::async_runtime::WatchReceiver;
use tracing::info;

use crate::blob_store::BlobError;
use crate::body_reader::BodyReader;
use crate::error::QueueError;
use crate::queue::{Queue, blob_error, unexpected};

/// This node's contact with the rest of the cluster, as the delivery owner and the
/// leader's scheduler need it. Durations are measured on this node's monotonic clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterContact {
    pub node_id: NodeId,
    pub is_leader: bool,
    pub leader: Option<NodeId>,
    /// Leader only: time since a quorum last acknowledged this leader.
    pub since_quorum_ack: Option<Duration>,
    /// Time since this node last received AppendEntries (followers hear heartbeats).
    pub since_append_received: Option<Duration>,
    /// Leader only: every other member and the time since it last acknowledged a
    /// heartbeat (`None`: never).
    pub peer_acks: Vec<(NodeId, Option<Duration>)>,
}

impl ClusterContact {
    /// True when this node has heard from a quorum (as leader) or from the leader (as a
    /// follower) within `within`.
    pub fn in_contact_within(&self, within: Duration) -> bool {
        let since = if self.is_leader {
            self.since_quorum_ack
        } else {
            self.since_append_received
        };
        since.is_some_and(|since| since <= within)
    }
}

impl Queue {
    /// This node's wall clock (the queue's injected `Clock`).
    pub fn clock_now(&self) -> UnixMillis {
        self.now()
    }

    /// Runs `read` on the state as this node has applied it.
    pub fn read_state<R>(&self, read: impl FnOnce(&QueueState) -> R) -> Result<R, QueueError> {
        self.core
            .state
            .read(read)
            .map_err(|e| QueueError::Unavailable(e.to_string()))
    }

    /// What this node knows about its contact with the cluster.
    pub fn contact(&self) -> ClusterContact {
        let metrics = self.core.raft.metrics().borrow_watched().clone();
        let received = self.core.last_append_received_ms.load(Ordering::Relaxed);
        let since_append_received = (received > 0).then(|| {
            self.core
                .started
                .elapsed()
                .saturating_sub(Duration::from_millis(received))
        });
        let peer_acks = metrics
            .heartbeat
            .as_ref()
            .map(|beats| {
                beats
                    .iter()
                    .filter(|(id, _)| **id != self.core.id)
                    .map(|(id, at)| (*id, at.as_ref().map(|instant| instant.elapsed())))
                    .collect()
            })
            .unwrap_or_default();
        ClusterContact {
            node_id: self.core.id,
            is_leader: metrics.state == ServerState::Leader,
            leader: metrics.current_leader,
            since_quorum_ack: metrics.last_quorum_acked.map(|at| at.elapsed()),
            since_append_received,
            peer_acks,
        }
    }

    /// Gives queued messages to `owner` until `lease_until`. Returns the fencing token
    /// and the ids actually assigned (a message that is no longer queued, or whose
    /// lease still holds, is skipped).
    pub async fn assign(
        &self,
        ids: Vec<QueueId>,
        owner: NodeId,
        lease_until: UnixMillis,
        connections: u32,
    ) -> Result<(u64, Vec<QueueId>), QueueError> {
        let now = self.now();
        match self
            .command(Command::Assign {
                ids,
                owner,
                now,
                lease_until,
                connections,
            })
            .await?
        {
            Response::Assigned { token, assigned } => Ok((token, assigned)),
            other => Err(unexpected(other)),
        }
    }

    /// Extends leases of deliveries in flight. Returns the refused (stale) ones.
    pub async fn renew_leases(
        &self,
        leases: Vec<(QueueId, u64)>,
        lease_until: UnixMillis,
    ) -> Result<Vec<Rejection>, QueueError> {
        batch(
            self.command(Command::RenewLease {
                leases,
                lease_until,
            })
            .await?,
        )
    }

    /// Tells the fleet whether this node's delivery runs (`false` before a clean stop:
    /// the leader then assigns it nothing).
    pub async fn set_delivering(&self, delivering: bool) -> Result<(), QueueError> {
        let at = self.now();
        self.command_done(Command::OwnerAvailability {
            node: self.node_id(),
            delivering,
            at,
        })
        .await
    }

    /// Hands back assignments this node will not start (it is stopping). Returns the
    /// refused (stale) ones.
    pub async fn return_leases(
        &self,
        leases: Vec<(QueueId, u64)>,
    ) -> Result<Vec<Rejection>, QueueError> {
        let at = self.now();
        batch(self.command(Command::ReturnLeases { leases, at }).await?)
    }

    /// Records attempt outcomes. Returns the refused (stale-token) ones.
    pub async fn record_attempts(
        &self,
        reports: Vec<AttemptReport>,
    ) -> Result<Vec<Rejection>, QueueError> {
        batch(self.command(Command::Attempted { reports }).await?)
    }

    /// Records that a DSN about `id` was enqueued as `dsn` (or that none was due).
    pub async fn record_notification(
        &self,
        id: QueueId,
        kind: NotificationKind,
        dsn: Option<QueueId>,
    ) -> Result<(), QueueError> {
        let at = self.now();
        self.command_done(Command::Notified { id, kind, dsn, at })
            .await
    }

    /// Reports whether this node can reach `destination`.
    pub async fn report_reachability(
        &self,
        destination: &str,
        reachable: bool,
        detail: String,
    ) -> Result<(), QueueError> {
        let at = self.now();
        self.command_done(Command::Reachability {
            node: self.node_id(),
            destination: destination.to_string(),
            reachable,
            at,
            detail,
        })
        .await
    }

    /// Makes deferred messages due now: for one destination, or all of them.
    pub async fn flush(&self, destination: Option<&str>) -> Result<(), QueueError> {
        let at = self.now();
        self.command_done(Command::Flush {
            destination: destination.map(str::to_ascii_lowercase),
            at,
        })
        .await
    }
}

fn batch(response: Response) -> Result<Vec<Rejection>, QueueError> {
    match response {
        Response::Batch { rejected } => Ok(rejected),
        other => Err(unexpected(other)),
    }
}

impl Queue {
    /// Opens the body of a queued message for reading, checked against its SHA-256,
    /// fetching a good copy from a node that holds one when this node has none (yet)
    /// or its copy is corrupt. Returns the reader and the body's size.
    ///
    /// A corrupt copy is moved into quarantine (`BlobStore::quarantine`) and replaced
    /// from a peer; if no peer has a good copy, this fails with `Unavailable`, so that a
    /// delivery is deferred and retried, never made with damaged bytes and never turned
    /// into a bounce. The check reads the whole body once before the caller reads it
    /// again, a cost paid on every delivery; the second read mostly comes from the page
    /// cache, and the returned [`BodyReader`] checks the digest once more at the end.
    pub async fn open_body(
        &self,
        digest: &BodyDigest,
        holders: &[NodeId],
    ) -> Result<(BodyReader, u64), QueueError> {
        let blobs = &self.core.blobs;
        match blobs.open_verified(digest).await {
            Ok((file, size)) => return Ok((BodyReader::new(file, *digest), size)),
            Err(BlobError::NotFound(_)) => {}
            Err(BlobError::Corrupt { .. }) => {
                blobs
                    .quarantine(digest, self.now())
                    .await
                    .map_err(blob_error)?;
            }
            Err(e) => return Err(blob_error(e)),
        }
        // Named holders first, then any other member: the body keeper copies bodies
        // everywhere. `pull_body` skips this node, and verifies what it stores.
        let mut candidates = holders.to_vec();
        let members = self.core.members();
        candidates.extend(members.keys().filter(|id| !holders.contains(id)));
        if let Err(cause) =
            crate::blob_replication::pull_body(&self.core, *digest, &candidates).await
        {
            return Err(QueueError::Unavailable(format!(
                "body {digest}: no good copy here or at a peer: {cause}"
            )));
        }
        info!(%digest, "body_repaired");
        self.core.metrics.blobs.repaired.inc();
        let (file, size) = blobs.open_verified(digest).await.map_err(blob_error)?;
        Ok((BodyReader::new(file, *digest), size))
    }
}
