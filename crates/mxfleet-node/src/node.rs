//! One running fleet member: the replicated queue started from a validated
//! configuration, its housekeeping, and an orderly shutdown.
//!
//! Shutdown structure: one root `CancellationToken` and one `TaskTracker` own the
//! queue's tasks; SMTP and delivery each have their own token and tracker so that they
//! stop first. `Node::shutdown` stops SMTP intake (the listener stops accepting, idle
//! sessions get `421 4.3.2`, a transaction in flight finishes while Raft is still up),
//! then delivery (workers finish the message in hand and commit its outcome), then
//! cancels the root token, stops Raft, and waits for the remaining tasks up to a
//! deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mxfleet_delivery::route::Router;
use mxfleet_delivery::{DeliveryConfig, DeliveryService};
use mxfleet_queue::{InitialMember, PeerTls, Queue, QueueConfig, StartError};
use mxfleet_smtp::listener::ConnectionLimits;
use mxfleet_smtp::{SessionConfig, SessionConfigHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{NodeConfig, PeerTransport};

/// How often the leader drops dedup records whose window has ended, and forgets
/// finished messages.
const DEDUP_EXPIRY_INTERVAL: Duration = Duration::from_secs(3600);

/// How long a finished message (delivered, bounced, deleted) stays in the replicated
/// state for `mxfleet queue show` after its last event. It is kept at least as long as
/// its dedup record (`queue.dedup_window`), whichever is later.
const FINISHED_RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot read {what} {}: {source}", path.display())]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error("cannot listen for SMTP on {addr}: {source}")]
    SmtpListen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spam(#[from] crate::spam_setup::SpamSetupError),
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The SMTP service of a node.
#[derive(Clone, Debug)]
pub struct SmtpService {
    pub listen: SocketAddr,
    pub session: Arc<SessionConfig>,
    pub connections: ConnectionLimits,
    /// Spam checks to build once the queue runs; `None` keeps `session.spam` as is.
    pub spam: Option<crate::spam_setup::SpamSetup>,
}

/// The delivery side of a node: settings and the router it resolves next hops with.
pub struct DeliverySetup {
    pub config: DeliveryConfig,
    pub router: Router,
}

/// A running node.
pub struct Node {
    queue: Queue,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    smtp_shutdown: CancellationToken,
    smtp_tracker: TaskTracker,
    smtp_addr: Option<SocketAddr>,
    /// Swaps in a new SMTP config on SIGHUP; `None` when the node takes no mail.
    smtp_reloader: Option<crate::reload::SmtpReloader>,
    delivery_shutdown: CancellationToken,
    delivery_tracker: TaskTracker,
    /// The node's metrics registry, built at start; `serve_metrics` exposes it.
    metrics: crate::metrics::NodeMetrics,
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, NodeError> {
    std::fs::read(path).map_err(|source| NodeError::TlsFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Translates the validated node configuration into the queue's, reading TLS files.
pub fn queue_config(config: &NodeConfig) -> Result<QueueConfig, NodeError> {
    let mut queue = QueueConfig::new(
        config.node.id,
        &config.node.site,
        config.node.data_dir.clone(),
        config.peer.listen,
    );
    queue.advertise = Some(config.peer.advertise.clone());
    queue.peer_bind_address = config.peer.bind_address;
    queue.tls = match &config.peer.transport {
        PeerTransport::Plaintext => PeerTls::Plaintext,
        PeerTransport::MutualTls { cert, key, ca } => PeerTls::Mutual {
            cert_pem: read_pem("peer certificate", cert)?,
            key_pem: read_pem("peer key", key)?,
            ca_pem: read_pem("fleet CA", ca)?,
        },
    };
    queue.initial_members = config
        .cluster
        .initial_members
        .iter()
        .map(|m| InitialMember {
            id: m.id,
            addr: m.addr.clone(),
            site: m.site.clone(),
        })
        .collect();
    queue.heartbeat_interval = config.raft.heartbeat_interval;
    queue.election_timeout = config.raft.election_timeout;
    queue.write_timeout = config.raft.write_timeout;
    queue.snapshot_every = config.raft.snapshot_every;
    queue.dedup_window = config.queue.dedup_window;
    queue.max_message_size = config.queue.max_message_size;
    queue.blob_quorum_timeout = config.queue.blob_quorum_timeout;
    Ok(queue)
}

impl Node {
    /// Starts the node described by `config`, with SMTP intake if `smtp` is given and
    /// delivery to the primaries if `delivery` is.
    pub async fn start(
        config: QueueConfig,
        smtp: Option<SmtpService>,
        delivery: Option<DeliverySetup>,
    ) -> Result<Node, NodeError> {
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let queue = Queue::start(config, shutdown.clone(), tracker.clone()).await?;
        tracker.spawn(expire_dedup_records(queue.clone(), shutdown.clone()));
        let delivery_shutdown = CancellationToken::new();
        let delivery_tracker = TaskTracker::new();
        let mut delivery_metrics = None;
        let mut verifier = None;
        let mut report_fresh_for =
            mxfleet_delivery::DeliveryConfig::new("").reachability_fresh_within();
        if let Some(delivery) = delivery {
            report_fresh_for = delivery.config.reachability_fresh_within();
            let service = DeliveryService::start(
                queue.clone(),
                delivery.config,
                delivery.router,
                &delivery_tracker,
                delivery_shutdown.clone(),
            );
            delivery_metrics = Some(service.metrics().clone());
            verifier = Some(service.recipient_verifier());
        }
        let smtp_shutdown = CancellationToken::new();
        let smtp_tracker = TaskTracker::new();
        let mut smtp_addr = None;
        let smtp_metrics = smtp.as_ref().map(|smtp| smtp.session.metrics.clone());
        let mut smtp_reloader = None;
        if let Some(mut smtp) = smtp {
            let mut fleet_spam = None;
            if let Some(setup) = smtp.spam.take() {
                let fleet = crate::spam_setup::FleetSpamParts::start(
                    &setup,
                    &queue,
                    verifier,
                    report_fresh_for,
                    &tracker,
                    shutdown.clone(),
                );
                let checks = crate::spam_setup::build(&setup, &fleet).await?;
                let mut session = Arc::unwrap_or_clone(smtp.session);
                session.spam = Arc::new(checks);
                smtp.session = Arc::new(session);
                fleet_spam = Some(fleet);
            }
            let listener = tokio::net::TcpListener::bind(smtp.listen)
                .await
                .map_err(|source| NodeError::SmtpListen {
                    addr: smtp.listen,
                    source,
                })?;
            smtp_addr = listener.local_addr().ok();
            let intake = Arc::new(crate::intake::QueueIntake::new(queue.clone()));
            let handle = Arc::new(SessionConfigHandle::new(smtp.session));
            smtp_reloader = Some(crate::reload::SmtpReloader::new(handle.clone(), fleet_spam));
            smtp_tracker.spawn(mxfleet_smtp::listener::serve_reloadable(
                listener,
                handle,
                smtp.connections,
                intake,
                smtp_shutdown.clone(),
                smtp_tracker.clone(),
            ));
        }
        let metrics = crate::metrics::NodeMetrics::new(
            &queue,
            smtp_metrics.as_ref(),
            delivery_metrics.as_ref(),
        );
        Ok(Node {
            queue,
            shutdown,
            tracker,
            smtp_shutdown,
            smtp_tracker,
            smtp_addr,
            smtp_reloader,
            delivery_shutdown,
            delivery_tracker,
            metrics,
        })
    }

    /// What reloads this node's SMTP side (SIGHUP), if it takes mail.
    pub fn smtp_reloader(&self) -> Option<&crate::reload::SmtpReloader> {
        self.smtp_reloader.as_ref()
    }

    /// The bound SMTP address, if this node takes mail.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.smtp_addr
    }

    /// Starts the admin API listener (`[admin]`); it serves until the node stops, after
    /// SMTP and delivery, so that operators can watch a stopping node. Returns the
    /// bound address.
    pub async fn start_admin(
        &self,
        config: &crate::config::AdminConfig,
    ) -> Result<SocketAddr, NodeError> {
        Ok(crate::admin::start(
            config,
            self.queue.clone(),
            self.shutdown.clone(),
            &self.tracker,
        )
        .await?)
    }

    /// Serves the node's metrics at `GET /metrics`, and readiness at `GET /ready`, on
    /// `listen` (`[metrics] listen`)
    /// until the node stops, after SMTP and delivery, so that a drain can be watched.
    /// Returns the bound address.
    pub async fn serve_metrics(&self, listen: SocketAddr) -> Result<SocketAddr, NodeError> {
        let bind_error = |source| NodeError::MetricsListen {
            addr: listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        self.tracker.spawn(crate::metrics::serve(
            listener,
            self.metrics.clone(),
            self.queue.clone(),
            self.smtp_shutdown.clone(),
            self.shutdown.clone(),
            self.tracker.clone(),
        ));
        Ok(bound)
    }

    /// The node's metrics registry.
    pub fn metrics(&self) -> &crate::metrics::NodeMetrics {
        &self.metrics
    }

    /// The node's queue handle.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Stops the node: stop accepting, stop Raft, wait for tasks up to `deadline`.
    pub async fn shutdown(self, deadline: Duration) {
        let node_id = self.queue.node_id();
        info!(node_id, "node_stopping");
        // SMTP first, while Raft still runs, so that transactions in flight complete.
        self.smtp_shutdown.cancel();
        self.smtp_tracker.close();
        if tokio::time::timeout(deadline, self.smtp_tracker.wait())
            .await
            .is_err()
        {
            warn!(
                node_id,
                sessions = self.smtp_tracker.len(),
                "smtp_drain_deadline_passed"
            );
        }
        self.delivery_shutdown.cancel();
        self.delivery_tracker.close();
        if tokio::time::timeout(deadline, self.delivery_tracker.wait())
            .await
            .is_err()
        {
            warn!(
                node_id,
                tasks = self.delivery_tracker.len(),
                "delivery_drain_deadline_passed"
            );
        }
        self.shutdown.cancel();
        self.queue.shutdown().await;
        self.tracker.close();
        drop(self.queue);
        match tokio::time::timeout(deadline, self.tracker.wait()).await {
            Ok(()) => info!(node_id, "node_stopped"),
            Err(_) => warn!(
                node_id,
                remaining_tasks = self.tracker.len(),
                ?deadline,
                "node_stop_deadline_passed"
            ),
        }
    }
}

/// On the leader, periodically drops dedup records whose window has ended, forgets
/// long-finished messages, and expires the spam checks' records.
async fn expire_dedup_records(queue: Queue, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(DEDUP_EXPIRY_INTERVAL);
    every.tick().await; // the first tick is immediate; nothing has expired at start
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let status = queue.status();
        if status.leader != Some(status.node_id) {
            continue;
        }
        if let Err(e) = queue.expire_dedup().await {
            warn!(cause = %e, "dedup_expiry_failed");
        }
        if let Err(e) = queue.forget_finished(FINISHED_RETENTION).await {
            warn!(cause = %e, "finished_messages_not_forgotten");
        }
        if let Err(e) = queue.expire_spam_state().await {
            warn!(cause = %e, "spam_state_expiry_failed");
        }
    }
}
