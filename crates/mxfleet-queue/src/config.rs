//! What the replicated queue needs to run: identity, addresses, peer security, timers
//! and limits. The node crate builds it from the validated TOML configuration; tests
//! and `mxfleet dev` build it in code with short timers.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mxfleet_core::{NodeId, UnixMillis};

pub use crate::peer::transport::PeerTls;

/// The wall clock the queue stamps into commands. Injected so that tests can control it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixMillis;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        UnixMillis(since_epoch.as_millis() as u64)
    }
}

/// A voter of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub id: NodeId,
    pub addr: String,
    pub site: String,
}

/// Everything one queue node needs.
#[derive(Clone)]
pub struct QueueConfig {
    pub node_id: NodeId,
    pub site: String,
    pub data_dir: PathBuf,
    /// Where the peer gRPC server listens (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `host:port` other nodes dial. `None` means the bound listen address.
    pub advertise: Option<String>,
    /// The local IP that every connection to a peer (Raft RPCs, forwarded writes, body
    /// pushes and pulls) is made from, for multi-homed hosts whose peers or firewalls
    /// expect one address. `None` (the default) lets the kernel choose by route. Only
    /// applies to peer addresses of the same family.
    pub peer_bind_address: Option<IpAddr>,
    pub tls: PeerTls,
    /// On first start, the lowest id of this list initializes the cluster with all of
    /// them as voters. Empty: wait to be added by an existing cluster.
    pub initial_members: Vec<InitialMember>,
    pub heartbeat_interval: Duration,
    /// Minimum election timeout; the maximum (and openraft's leader lease) is twice it.
    pub election_timeout: Duration,
    /// A write not committed within this time fails with `NoQuorum`.
    pub write_timeout: Duration,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
    pub dedup_window: Duration,
    pub max_message_size: u64,
    /// How long to wait for a write quorum of peers to fsync a body.
    pub blob_quorum_timeout: Duration,
    /// A finished message's body younger than this is kept (it may be the same bytes as
    /// a submission being committed right now).
    pub body_gc_grace: Duration,
    /// A body no entry references (its write failed) is deleted once this old.
    pub orphan_body_age: Duration,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for QueueConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueConfig")
            .field("node_id", &self.node_id)
            .field("site", &self.site)
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("peer_bind_address", &self.peer_bind_address)
            .field("tls", &self.tls)
            .field("initial_members", &self.initial_members)
            .finish_non_exhaustive()
    }
}

impl QueueConfig {
    /// A config with production timers for `node_id`, to adjust field by field.
    pub fn new(node_id: NodeId, site: &str, data_dir: PathBuf, listen: SocketAddr) -> Self {
        QueueConfig {
            node_id,
            site: site.to_string(),
            data_dir,
            listen,
            advertise: None,
            peer_bind_address: None,
            tls: PeerTls::Plaintext,
            initial_members: Vec::new(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(5),
            snapshot_every: 10_000,
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            max_message_size: 64_000_000,
            blob_quorum_timeout: Duration::from_secs(10),
            body_gc_grace: Duration::from_secs(600),
            orphan_body_age: Duration::from_secs(3600),
            clock: Arc::new(SystemClock),
        }
    }
}
