//! mxfleet-testkit: helpers for tests that run real nodes in-process.
//!
//! - [`wait_for`]: poll a condition until a deadline, never a fixed sleep.
//! - [`QueueCluster`]: N replicated-queue nodes on ephemeral loopback ports with real
//!   gRPC, real fsynced files and short timers; stop, restart from disk, add nodes.
//! - [`tls`]: a throwaway CA and leaf certificates.
//! - [`sink`]: [`SinkMx`], a scriptable SMTP server playing the primary MX.
//! - [`dns`]: [`dns::TestDns`], an authoritative DNS server serving the test's zones,
//!   and [`dns::SilentDns`], which never answers.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mxfleet_core::NodeId;
use mxfleet_queue::{InitialMember, Queue, QueueConfig};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod dns;
pub mod sink;
pub mod tls;

pub use sink::SinkMx;

/// Polls `condition` every 20 ms until it holds or `deadline` passes; panics with
/// `what` on timeout.
pub async fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`wait_for`], for conditions that need to await.
pub async fn wait_for_async<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `tracing` output to the test harness once per process (RUST_LOG filters it).
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// One running node of a [`QueueCluster`].
pub struct TestNode {
    pub queue: Queue,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Queue nodes in this process, each with its own data directory under one temp dir.
pub struct QueueCluster {
    root: TempDir,
    /// Index i holds node id i+1; `None` while stopped.
    nodes: Vec<Option<TestNode>>,
    configs: Vec<QueueConfig>,
    tune: Tune,
}

/// Adjusts every node's config before it starts.
pub type Tune = std::sync::Arc<dyn Fn(&mut QueueConfig) + Send + Sync>;

/// Short timers for tests: elections in well under a second, writes fail within 3 s.
pub fn test_config(id: NodeId, site: &str, data_dir: PathBuf) -> QueueConfig {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let mut config = QueueConfig::new(id, site, data_dir, listen);
    config.heartbeat_interval = Duration::from_millis(50);
    config.election_timeout = Duration::from_millis(300);
    config.write_timeout = Duration::from_secs(3);
    config.blob_quorum_timeout = Duration::from_secs(3);
    config
}

const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];

impl QueueCluster {
    /// Starts `size` voters and bootstraps them into one cluster.
    pub async fn start(size: usize) -> Self {
        Self::start_tuned(size, std::sync::Arc::new(|_: &mut QueueConfig| {})).await
    }

    /// Like [`QueueCluster::start`], with `tune` applied to every node's config.
    pub async fn start_tuned(size: usize, tune: Tune) -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let mut cluster = QueueCluster {
            root,
            nodes: Vec::new(),
            configs: Vec::new(),
            tune,
        };
        for _ in 0..size {
            cluster.spawn_new_node().await;
        }
        let members: Vec<InitialMember> = cluster
            .configs
            .iter()
            .map(|c| InitialMember {
                id: c.node_id,
                addr: c.listen.to_string(),
                site: c.site.clone(),
            })
            .collect();
        cluster
            .queue(1)
            .bootstrap(&members)
            .await
            .expect("bootstrap");
        cluster.wait_for_leader().await;
        cluster
    }

    async fn spawn_new_node(&mut self) -> NodeId {
        let id = self.configs.len() as NodeId + 1;
        let site = SITES[(id as usize - 1) % SITES.len()];
        let mut config = test_config(id, site, self.root.path().join(format!("node{id}")));
        (self.tune)(&mut config);
        let node = start_node(config.clone()).await;
        // Restarts must come back on the same address, which the membership records.
        config.listen = node.queue.peer_addr();
        self.configs.push(config);
        self.nodes.push(Some(node));
        id
    }

    /// Starts a new node that belongs to no cluster yet (add it with `add_learner`).
    pub async fn start_spare_node(&mut self) -> NodeId {
        self.spawn_new_node().await
    }

    /// The queue handle of running node `id`.
    pub fn queue(&self, id: NodeId) -> &Queue {
        &self.nodes[id as usize - 1]
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is stopped"))
            .queue
    }

    /// Ids of running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_some())
            .map(|(i, _)| i as NodeId + 1)
            .collect()
    }

    /// Waits until every running node agrees on one leader among the running nodes.
    pub async fn wait_for_leader(&self) -> NodeId {
        let running = self.running();
        let mut agreed = None;
        wait_for(
            "a leader that every running node knows",
            Duration::from_secs(15),
            || {
                let leaders: Vec<Option<NodeId>> = running
                    .iter()
                    .map(|id| self.queue(*id).status().leader)
                    .collect();
                agreed = match leaders.first() {
                    Some(Some(leader))
                        if running.contains(leader)
                            && leaders.iter().all(|l| l == &Some(*leader)) =>
                    {
                        Some(*leader)
                    }
                    _ => None,
                };
                agreed.is_some()
            },
        )
        .await;
        agreed.expect("checked by wait_for")
    }

    /// Stops node `id` cleanly (as SIGTERM would) and releases its files.
    pub async fn stop(&mut self, id: NodeId) {
        let node = self.nodes[id as usize - 1].take().expect("node is running");
        stop_node(node).await;
    }

    /// Restarts node `id` from its data directory, on its old address.
    pub async fn restart(&mut self, id: NodeId) {
        assert!(
            self.nodes[id as usize - 1].is_none(),
            "node {id} is running"
        );
        let config = self.configs[id as usize - 1].clone();
        self.nodes[id as usize - 1] = Some(start_node(config).await);
    }

    /// The config node `id` runs with.
    pub fn config(&self, id: NodeId) -> &QueueConfig {
        &self.configs[id as usize - 1]
    }

    /// The data directory of node `id`.
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.configs[id as usize - 1].data_dir.clone()
    }

    /// Stops every node.
    pub async fn stop_all(&mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}

async fn start_node(config: QueueConfig) -> TestNode {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let queue = Queue::start(config, shutdown.clone(), tracker.clone())
        .await
        .expect("node starts");
    TestNode {
        queue,
        shutdown,
        tracker,
    }
}

async fn stop_node(node: TestNode) {
    node.shutdown.cancel();
    node.queue.shutdown().await;
    node.tracker.close();
    drop(node.queue);
    if tokio::time::timeout(Duration::from_secs(10), node.tracker.wait())
        .await
        .is_err()
    {
        panic!("node tasks did not stop within 10 s of shutdown");
    }
}
