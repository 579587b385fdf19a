//! The `Queue` handle: the only way the rest of mxfleet touches the replicated queue.
//! (The write path lives in `write_path`, membership and status in `cluster`.)
//!
//! A write (enqueue, a delivery outcome, an operator action, a membership change) is
//! proposed locally when this node leads, and otherwise forwarded to the leader over
//! the peer port. It returns once the entry is committed and applied, or fails with a
//! typed error within `write_timeout`: a node cut off from the majority answers
//! `NoQuorum` instead of hanging. Enqueue is idempotent on the dedup key, so a caller
//! that retries after an unknown outcome stores nothing twice.
//!
//! Lifecycle: `Queue::start` checks the data directory's format marker, opens the
//! stores, binds the peer port, starts Raft and the body keeper, and bootstraps a new
//! cluster when this node is the lowest id among the configured initial members. Every
//! task is spawned on the caller's `TaskTracker` and stops on its `CancellationToken`;
//! `Queue::shutdown` then stops Raft.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use mxfleet_core::{
    BodyDigest, Command, DedupKey, Envelope, NodeId, OperatorAction, QueueEntry, QueueId, Response,
    UnixMillis,
};
use mxfleet_proto::MAX_MESSAGE_BYTES;
use mxfleet_proto::raft::v1::raft_peer_server::RaftPeerServer;
use openraft::SnapshotPolicy;
use openraft::errors::RaftError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::blob_replication::{replicate_to_quorum, run_body_keeper};
use crate::blob_store::{BlobStore, BlobWriter, StoredBlob};
use crate::config::QueueConfig;
use crate::data_format::check_data_dir;
use crate::error::{QueueError, StartError};
use crate::log_recovery::{ChunkLimits, OpenedLog, open_log_async};
use crate::peer::forward::{ForwardedResponse, ForwardedWrite};
use crate::peer::raft_client::PeerNetwork;
use crate::peer::service::PeerService;
use crate::peer::transport::PeerChannels;
use crate::state_machine::StateMachineStore;
use crate::types::{PeerNode, Raft, encode};
use crate::write_path::QueueCore;

/// The largest encoded envelope accepted. With at most `MAX_PAYLOAD_ENTRIES` entries
/// per AppendEntries message, this keeps every peer message under 4 MiB.
pub const MAX_ENVELOPE_BYTES: usize = 128 * 1024;
const MAX_PAYLOAD_ENTRIES: u64 = 30;
/// How long the peer server waits for open streams to end at shutdown.
const PEER_DRAIN_DEADLINE: Duration = Duration::from_secs(1);
const _: () = assert!(MAX_ENVELOPE_BYTES * (MAX_PAYLOAD_ENTRIES as usize) < MAX_MESSAGE_BYTES);

/// The answer to a successful enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnqueueReceipt {
    pub id: QueueId,
    /// True when the fleet already had this submission; nothing new was stored.
    pub duplicate: bool,
}

/// The handle to this node's replicated queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    pub(crate) core: Arc<QueueCore>,
    local_addr: SocketAddr,
    advertise: String,
}

impl Queue {
    /// Opens the stores, starts Raft and the peer server, and bootstraps the cluster
    /// if this node is the lowest id of `initial_members` and nothing is on disk yet.
    pub async fn start(
        config: QueueConfig,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Result<Queue, StartError> {
        let data_dir = config.data_dir.clone();
        let storage =
            |what, path: PathBuf| move |source| StartError::Storage { what, path, source };
        std::fs::create_dir_all(&data_dir).map_err(storage("data directory", data_dir.clone()))?;
        // Before any store touches the directory: a format this binary does not read is
        // refused here, with nothing changed (see `data_format`).
        let format_dir = data_dir.clone();
        tokio::task::spawn_blocking(move || check_data_dir(&format_dir))
            .await
            .map_err(|e| StartError::Raft(e.to_string()))??;
        // Before the state machine: a damaged log is set aside together with the state
        // derived from it, and the node rejoins from its peers (see `log_recovery`).
        let OpenedLog { log, recovery } = open_log_async(
            data_dir.clone(),
            ChunkLimits::PRODUCTION,
            config.clock.now(),
        )
        .await?;
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let state_dir = data_dir.clone();
        let state = tokio::task::spawn_blocking(move || {
            StateMachineStore::open(&state_dir, Some(events_tx))
        })
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?
        .map_err(storage("state machine", data_dir.clone()))?;
        let blob_dir = data_dir.join("bodies");
        let blobs = BlobStore::open(&blob_dir)
            .await
            .map_err(|e| StartError::Storage {
                what: "blob store",
                path: blob_dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let advertise = config
            .advertise
            .clone()
            .unwrap_or_else(|| local_addr.to_string());

        let channels = Arc::new(PeerChannels::new(
            config.tls.clone(),
            config.election_timeout,
            config.peer_bind_address,
        ));
        let raft_config = openraft::Config {
            cluster_name: "mxfleet".into(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: config.election_timeout.as_millis() as u64,
            election_timeout_max: 2 * config.election_timeout.as_millis() as u64,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            // Keep half a snapshot interval of log for followers that lag a little;
            // purge in batches so that each purge costs one fsync.
            max_in_snapshot_log_to_keep: (config.snapshot_every / 2).min(1000),
            purge_batch_size: (config.snapshot_every / 2).clamp(1, 64),
            install_snapshot_timeout: 30_000,
            enable_pre_vote: Some(true),
            // A follower whose damaged log was set aside comes back with less log than
            // the leader had matched. Without this the leader panics on a debug
            // assertion (a release build keeps a match the follower no longer has, and
            // replication to it can stall); with it, the leader starts that follower's
            // replication over. The commit index never goes back. Logs revert only
            // through that recovery: the stores fsync before acknowledging.
            allow_log_reversion: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::RaftConfig(e.to_string()))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            PeerNetwork {
                channels: channels.clone(),
            },
            log.clone(),
            state.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let blobs_metrics = blobs.metrics().clone();
        let core = Arc::new(QueueCore {
            id: config.node_id,
            max_message_size: config.max_message_size,
            config: config.clone(),
            raft,
            state,
            log,
            blobs,
            channels,
            tracker: tracker.clone(),
            incoming_seq: AtomicU64::new(0),
            last_append_received_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
            metrics: crate::metrics::QueueMetrics::new(blobs_metrics),
        });

        let service = RaftPeerServer::new(PeerService {
            core: Arc::downgrade(&core),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = config.tls.server_config() {
            server = server
                .tls_config(tls)
                .map_err(|e| StartError::Raft(format!("peer TLS: {e}")))?;
        }
        let router = server.add_service(service);
        let stop = shutdown.clone();
        tracker.spawn(async move {
            // Raft and forwarding are small request/response exchanges: without
            // TCP_NODELAY on accepted sockets, Nagle's algorithm delays replies by ~40 ms.
            let incoming = tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(Duration::from_secs(30)));
            let serve = router.serve_with_incoming_shutdown(incoming, stop.cancelled());
            // Peers keep long-lived replication streams open; after the drain deadline
            // the server (and every connection) is dropped rather than waited for.
            let drain_deadline = async {
                stop.cancelled().await;
                tokio::time::sleep(PEER_DRAIN_DEADLINE).await;
            };
            tokio::select! {
                result = serve => if let Err(e) = result {
                    warn!(cause = %e, "peer_server_failed");
                },
                () = drain_deadline => info!("peer_server_drain_deadline_passed"),
            }
        });
        tracker.spawn(run_body_keeper(core.clone(), events_rx, shutdown.clone()));
        tracker.spawn(crate::metrics::count_leader_changes(
            core.raft.clone(),
            core.metrics.leader_changes.clone(),
            shutdown.clone(),
        ));

        let queue = Queue {
            core,
            local_addr,
            advertise,
        };
        if recovery.is_some() {
            queue.core.metrics.raft_log_recoveries.inc();
        }
        match recovery.and_then(|r| r.restored_vote) {
            // A node that had voted belonged to a cluster: never bootstrap a new one,
            // even if its restored vote is still an initial member's term-0 vote
            // (openraft only counts a later term as "initialized").
            Some(vote) => info!(
                vote_term = vote.leader_id.term,
                "bootstrap_skipped_after_log_recovery"
            ),
            None => queue.bootstrap_if_first().await?,
        }
        info!(node_id = config.node_id, peer_addr = %local_addr, site = %config.site, "queue_started");
        Ok(queue)
    }

    async fn bootstrap_if_first(&self) -> Result<(), StartError> {
        let members = &self.core.config.initial_members;
        let first = members.iter().map(|m| m.id).min();
        if first != Some(self.core.id) {
            return Ok(());
        }
        self.bootstrap(members).await
    }

    /// Initializes a new cluster with `members` as its voters, unless this node already
    /// belongs to one (then it does nothing). `mxfleet dev` and tests use it once every
    /// node is listening; a configured fleet does it through `initial_members`.
    pub async fn bootstrap(
        &self,
        members: &[crate::config::InitialMember],
    ) -> Result<(), StartError> {
        let initialized = self
            .core
            .raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, PeerNode> = members
            .iter()
            .map(|m| {
                (
                    m.id,
                    PeerNode {
                        addr: m.addr.clone(),
                        site: m.site.clone(),
                    },
                )
            })
            .collect();
        match self.core.raft.initialize(nodes).await {
            Ok(()) => info!(voters = members.len(), "cluster_initialized"),
            // Someone else initialized, or a vote is already on disk: nothing to do.
            Err(RaftError::APIError(e)) => info!(reason = %e, "cluster_already_initialized"),
            Err(RaftError::Fatal(e)) => return Err(StartError::Raft(e.to_string())),
        }
        Ok(())
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.core.id
    }

    /// Whether this node is in the membership it last applied. A node removed from
    /// the cluster stays out: nothing it proposes can commit any more.
    pub fn is_member(&self) -> bool {
        self.core.members().contains_key(&self.core.id)
    }

    /// The bound peer address (useful when the config asked for port 0).
    pub fn peer_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address other nodes use to reach this one.
    pub fn advertise_addr(&self) -> &str {
        &self.advertise
    }

    /// The local blob store (bodies).
    pub fn blobs(&self) -> &BlobStore {
        &self.core.blobs
    }

    /// The queue's event metrics (commit latency, leader changes, blobs).
    pub fn metrics(&self) -> &crate::metrics::QueueMetrics {
        &self.core.metrics
    }

    /// How many fdatasync batches the Raft WAL performed so far.
    pub fn wal_sync_count(&self) -> u64 {
        self.core.log.sync_count()
    }

    /// A writer for an incoming body, limited to the configured maximum message size.
    /// The SMTP session streams DATA into it and hands the result to [`Queue::enqueue`].
    pub async fn body_writer(&self) -> Result<BlobWriter, QueueError> {
        self.core
            .blobs
            .writer(self.core.max_message_size)
            .await
            .map_err(blob_error)
    }

    /// Replicates the stored body to a write quorum, then commits the envelope. Returns
    /// the queue id once the entry is applied. Idempotent on the dedup key.
    pub async fn enqueue(
        &self,
        envelope: Envelope,
        body: StoredBlob,
    ) -> Result<EnqueueReceipt, QueueError> {
        let encoded_len = encode(&envelope).map(|b| b.len()).unwrap_or(usize::MAX);
        if encoded_len > MAX_ENVELOPE_BYTES {
            return Err(QueueError::TooLarge {
                what: "envelope",
                limit: MAX_ENVELOPE_BYTES as u64,
            });
        }
        let holders = replicate_to_quorum(&self.core, &body).await?;
        let command = Command::Enqueue {
            dedup_key: DedupKey::derive(
                envelope.message_id.as_deref(),
                &envelope.sender,
                &envelope.recipients,
                &body.digest,
            ),
            envelope,
            body: body.digest,
            size: body.size,
            received_at: self.now(),
            accepted_by: self.core.id,
            body_holders: holders,
            dedup_window_ms: self.core.config.dedup_window.as_millis() as u64,
        };
        match self.command(command).await? {
            Response::Enqueued { id, duplicate } => Ok(EnqueueReceipt { id, duplicate }),
            other => Err(QueueError::Unavailable(format!(
                "unexpected answer to enqueue: {other:?}"
            ))),
        }
    }

    /// Stores `body` locally, then [`Queue::enqueue`]s it. For callers that already
    /// hold the whole body in memory (tests, benchmarks, generated bounces).
    pub async fn enqueue_bytes(
        &self,
        envelope: Envelope,
        body: &[u8],
    ) -> Result<EnqueueReceipt, QueueError> {
        let mut writer = self.body_writer().await?;
        writer.write_chunk(body).await.map_err(blob_error)?;
        let stored = writer.finish(None).await.map_err(blob_error)?;
        self.enqueue(envelope, stored).await
    }

    /// Operator: hold message `id`.
    pub async fn hold(&self, id: QueueId) -> Result<(), QueueError> {
        self.operate_one(OperatorAction::Hold, id).await
    }

    /// Operator: release a held message for immediate delivery.
    pub async fn release(&self, id: QueueId) -> Result<(), QueueError> {
        self.operate_one(OperatorAction::Release, id).await
    }

    /// Operator: delete message `id`.
    pub async fn delete(&self, id: QueueId) -> Result<(), QueueError> {
        self.operate_one(OperatorAction::Delete, id).await
    }

    async fn operate_one(&self, action: OperatorAction, id: QueueId) -> Result<(), QueueError> {
        match self.operate(action, vec![id]).await?.into_iter().next() {
            None => Ok(()),
            Some(rejection) => Err(QueueError::Refused(rejection)),
        }
    }

    /// Forgets finished messages whose last event is older than `retention` and whose
    /// dedup window has ended (their bodies are then collected as orphans).
    pub async fn forget_finished(&self, retention: std::time::Duration) -> Result<(), QueueError> {
        let before = UnixMillis(self.now().0.saturating_sub(retention.as_millis() as u64));
        self.command_done(Command::ForgetFinished { before }).await
    }

    /// Drops dedup records whose window has ended.
    pub async fn expire_dedup(&self) -> Result<(), QueueError> {
        let now = self.now();
        self.command_done(Command::ExpireDedup { now }).await
    }

    /// A copy of entry `id` as this node has applied it.
    pub fn entry(&self, id: QueueId) -> Option<QueueEntry> {
        self.core
            .state
            .read(|q| q.entries.get(&id).cloned())
            .ok()
            .flatten()
    }

    /// Copies of every entry this node has applied, in id order.
    pub fn entries(&self) -> Vec<QueueEntry> {
        self.core
            .state
            .read(|q| q.entries.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of entries (live and finished) this node holds.
    pub fn len(&self) -> usize {
        self.core.state.read(|q| q.entries.len()).unwrap_or(0)
    }

    /// True when this node holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body of a message, if this node holds it.
    pub async fn body(&self, digest: &BodyDigest) -> Result<Vec<u8>, QueueError> {
        self.core.blobs.read_all(digest).await.map_err(blob_error)
    }

    /// Forces a snapshot now (normally one is taken every `snapshot_every` entries).
    pub async fn snapshot_now(&self) -> Result<(), QueueError> {
        self.core
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| QueueError::Unavailable(e.to_string()))
    }

    /// Stops Raft. Call after cancelling the shutdown token and draining intake.
    pub async fn shutdown(&self) {
        if let Err(e) = self.core.raft.shutdown().await {
            warn!(cause = %e, "raft_shutdown_failed");
        }
        // openraft's replication tasks let go of their log readers shortly after
        // shutdown returns; wait for them, so that the WAL closes when this node's last
        // handle is dropped and a restart in the same process finds it unlocked.
        if !self
            .core
            .log
            .wait_until_sole_owner(Duration::from_secs(5))
            .await
        {
            warn!(
                node_id = self.core.id,
                "raft_log_still_in_use_after_shutdown"
            );
        }
    }

    pub(crate) fn now(&self) -> UnixMillis {
        self.core.config.clock.now()
    }

    pub(crate) async fn command(&self, command: Command) -> Result<Response, QueueError> {
        match self.write(ForwardedWrite::Command(command)).await? {
            ForwardedResponse::Command {
                response: Response::Rejected(rejection),
                ..
            } => Err(QueueError::Refused(rejection)),
            ForwardedResponse::Command { response, .. } => Ok(response),
            other => Err(QueueError::Unavailable(format!(
                "unexpected answer: {other:?}"
            ))),
        }
    }

    pub(crate) async fn command_done(&self, command: Command) -> Result<(), QueueError> {
        match self.command(command).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

pub(crate) fn unexpected(response: Response) -> QueueError {
    QueueError::Unavailable(format!("unexpected answer: {response:?}"))
}

pub(crate) fn blob_error(e: crate::blob_store::BlobError) -> QueueError {
    match e {
        crate::blob_store::BlobError::StorageFull { .. } => QueueError::StorageFull {
            detail: e.to_string(),
        },
        crate::blob_store::BlobError::TooLarge { limit } => QueueError::TooLarge {
            what: "message",
            limit,
        },
        other => QueueError::Unavailable(other.to_string()),
    }
}
