//! Tests only: a real mxfleet node with its admin API, for the admin commands to run
//! against over real gRPC. Nothing here answers for the server: tokens are checked by
//! the node's authenticator, pages come from its queue state, bulk actions go through
//! Raft, and bodies stream from its blob store.
//!
//! - [`TestNode::start`]: one node (a single-voter cluster from the testkit's
//!   `QueueCluster`) with the admin API on `127.0.0.1:0`, plaintext, holding N seeded
//!   messages.
//! - [`TestNode::start_secured`]: the same over TLS ([`Security::Tls`]), or mutual TLS
//!   ([`Security::MutualTls`], client certificates from the node's CA get `view`).
//! - [`TestNode::start_fleet`]: N voters with the admin API on node 1, and
//!   [`TestNode::stop_peers`] to take its quorum away.
//!
//! Two tokens are configured: [`OPS_TOKEN`] with every permission and [`VIEWER_TOKEN`]
//! with `view` only. Seeded message `n` goes from `sender@client.example` to
//! `user{n}@example.org` for even `n` and `user{n}@example.net` for odd `n`; nothing
//! delivers, so they stay queued.
//!
//! Lifecycle: the nodes, the admin listener and one temp dir (TLS files; the cluster
//! has its own for data) live as long as the [`TestNode`]. [`TestNode::stop`] stops
//! the listener, waits for its tasks and stops every node; a test that panics leaves
//! that to the runtime's end and the temp dirs' drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mxfleet_core::{Envelope, NodeId};
use mxfleet_node::config::{AdminConfig, AdminPermission, AdminTls, AdminToken, TokenSecret};
use mxfleet_queue::{Queue, QueueConfig};
use mxfleet_testkit::QueueCluster;
use mxfleet_testkit::tls::TestCa;
use tempfile::TempDir;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{Admin, ClientArgs};

/// Every permission.
pub const OPS_TOKEN: &str = "ops-token-0123456789abcdef";
/// `view` only.
pub const VIEWER_TOKEN: &str = "viewer-token-0123456789abcdef";

/// The recipient domains of the seeded messages: even `n`, odd `n`.
pub const DOMAINS: [&str; 2] = ["example.org", "example.net"];

/// How long the client waits per answer, unless a test says otherwise.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Enqueues in flight at once while seeding (the WAL batches their fsyncs).
const SEED_CONCURRENCY: usize = 64;
/// The node serving the admin API.
const SERVING: NodeId = 1;

/// How the admin listener is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plaintext,
    /// Server TLS with a certificate from the node's CA; callers bring a token.
    Tls,
    /// Server TLS that also accepts client certificates signed by the node's CA.
    MutualTls,
}

/// A message the harness put in the queue.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// As the node prints it (12 hex digits).
    pub id: String,
    pub recipient: String,
    pub body: Vec<u8>,
}

impl Seeded {
    /// The recipient's domain, one of [`DOMAINS`] for seeded messages.
    pub fn domain(&self) -> &str {
        self.recipient
            .rsplit_once('@')
            .map_or("", |(_, domain)| domain)
    }
}

/// A running node (or fleet) with the admin API on node 1; see the module header.
pub struct TestNode {
    /// Owns the nodes and their data directories.
    cluster: QueueCluster,
    admin_addr: SocketAddr,
    security: Security,
    /// Stops the admin listener (cancelled in [`TestNode::stop`]).
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The CA of the node's admin certificate and of accepted client certificates.
    ca: TestCa,
    /// PEM files: the CA, the node's certificate and key, client certificates.
    files: TempDir,
    /// The seeded messages, in queue id order (as `queue list` returns them).
    pub seeded: Vec<Seeded>,
}

impl TestNode {
    /// One plaintext node holding `messages` seeded messages.
    pub async fn start(messages: usize) -> Self {
        Self::start_secured(messages, Security::Plaintext).await
    }

    /// One node reached with `security`, holding `messages` seeded messages.
    pub async fn start_secured(messages: usize, security: Security) -> Self {
        let cluster = QueueCluster::start(1).await;
        Self::serve(cluster, messages, security).await
    }

    /// `nodes` voters with the admin API on node 1; a write that finds no quorum fails
    /// after one second instead of the testkit's three.
    pub async fn start_fleet(nodes: usize, messages: usize) -> Self {
        let tune = Arc::new(|config: &mut QueueConfig| {
            config.write_timeout = Duration::from_secs(1);
        });
        let cluster = QueueCluster::start_tuned(nodes, tune).await;
        Self::serve(cluster, messages, Security::Plaintext).await
    }

    async fn serve(cluster: QueueCluster, messages: usize, security: Security) -> Self {
        mxfleet_testkit::init_test_logging();
        let files = tempfile::tempdir().expect("temp dir for TLS files");
        let ca = TestCa::new("admin test CA");
        let tls = match security {
            Security::Plaintext => None,
            Security::Tls | Security::MutualTls => {
                let leaf = ca.issue("mxfleet admin");
                let cert = write(&files, "node.pem", &leaf.cert_pem);
                let key = write(&files, "node-key.pem", &leaf.key_pem);
                let client_ca = (security == Security::MutualTls)
                    .then(|| write(&files, "client-ca.pem", &ca.ca_pem()));
                Some(AdminTls {
                    cert,
                    key,
                    client_ca,
                })
            }
        };
        write(&files, "ca.pem", &ca.ca_pem());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let admin_addr = mxfleet_node::admin::start(
            &admin_config(tls),
            cluster.queue(SERVING).clone(),
            shutdown.clone(),
            &tracker,
        )
        .await
        .expect("the admin listener starts");
        let mut node = TestNode {
            cluster,
            admin_addr,
            security,
            shutdown,
            tracker,
            ca,
            files,
            seeded: Vec::new(),
        };
        node.seed(messages).await;
        node
    }

    /// Enqueues `count` messages through the serving node, `SEED_CONCURRENCY` at once.
    async fn seed(&mut self, count: usize) {
        let mut pending = JoinSet::new();
        for n in 0..count {
            if pending.len() >= SEED_CONCURRENCY
                && let Some(done) = pending.join_next().await
            {
                self.seeded.push(done.expect("seeding task"));
            }
            let queue = self.queue().clone();
            let domain = DOMAINS[n % 2];
            pending.spawn(async move {
                let recipient = format!("user{n}@{domain}");
                let body = format!(
                    "From: <sender@client.example>\r\nTo: <{recipient}>\r\nMessage-ID: \
                     <seed{n}@client.example>\r\nSubject: test {n}\r\n\r\nbody {n}\r\n"
                )
                .into_bytes();
                let id = enqueue(&queue, n, &recipient, &body).await;
                Seeded {
                    id,
                    recipient,
                    body,
                }
            });
        }
        while let Some(done) = pending.join_next().await {
            self.seeded.push(done.expect("seeding task"));
        }
        self.seeded.sort_by(|a, b| a.id.cmp(&b.id));
    }

    /// Enqueues one more message with this body; returns its queue id.
    pub async fn enqueue(&self, recipient: &str, body: &[u8]) -> String {
        // A Message-ID no seeded message has.
        let n = 1_000_000 + self.queue().len();
        enqueue(self.queue(), n, recipient, body).await
    }

    /// The queue of the node serving the admin API.
    pub fn queue(&self) -> &Queue {
        self.cluster.queue(SERVING)
    }

    /// The ids of the seeded messages to `domain`, in queue id order.
    pub fn ids_to(&self, domain: &str) -> Vec<String> {
        self.seeded
            .iter()
            .filter(|m| m.domain() == domain)
            .map(|m| m.id.clone())
            .collect()
    }

    /// Client flags for the admin API: `http://127.0.0.1:PORT`, or `https://` with the
    /// node's CA as `--ca-cert`; no token file, no client certificate.
    pub fn args(&self) -> ClientArgs {
        let (endpoint, ca_cert) = match self.security {
            Security::Plaintext => (format!("http://{}", self.admin_addr), None),
            Security::Tls | Security::MutualTls => (
                format!("https://{}", self.admin_addr),
                Some(self.files.path().join("ca.pem")),
            ),
        };
        ClientArgs {
            endpoint,
            token_file: None,
            ca_cert,
            client_cert: None,
            client_key: None,
            timeout: CLIENT_TIMEOUT,
            json: false,
        }
    }

    /// `args` with a client certificate (and key) issued by `ca` in PEM files.
    pub fn with_client_cert(&self, mut args: ClientArgs, ca: &TestCa, name: &str) -> ClientArgs {
        let leaf = ca.issue(name);
        args.client_cert = Some(write(&self.files, &format!("{name}.pem"), &leaf.cert_pem));
        args.client_key = Some(write(
            &self.files,
            &format!("{name}-key.pem"),
            &leaf.key_pem,
        ));
        args
    }

    /// The CA that signed the node's admin certificate.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// Connects with `token` as `MXFLEET_TOKEN`.
    pub async fn connect(&self, token: &str) -> Admin {
        Admin::connect(&self.args(), Some(token.into()))
            .await
            .expect("the admin API accepts connections")
    }

    /// Stops every node but the one serving the admin API, which keeps running
    /// without a quorum.
    pub async fn stop_peers(&mut self) {
        for id in self.cluster.running() {
            if id != SERVING {
                self.cluster.stop(id).await;
            }
        }
    }

    /// Stops the admin listener, waits for its tasks, then stops every node.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .expect("the admin listener stops within 10 s");
        self.cluster.stop_all().await;
    }
}

fn admin_config(tls: Option<AdminTls>) -> AdminConfig {
    let token = |name: &str, secret: &str, permissions: &[AdminPermission]| AdminToken {
        name: name.into(),
        secret: TokenSecret::Sha256(TokenSecret::digest_of(secret)),
        permissions: permissions.iter().copied().collect(),
    };
    AdminConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        tls,
        tokens: vec![
            token("ops", OPS_TOKEN, &AdminPermission::ALL),
            token("viewer", VIEWER_TOKEN, &[AdminPermission::View]),
        ],
        client_cert_permissions: [AdminPermission::View].into(),
    }
}

async fn enqueue(queue: &Queue, n: usize, recipient: &str, body: &[u8]) -> String {
    let envelope = Envelope {
        sender: "sender@client.example".into(),
        recipients: vec![recipient.to_owned()],
        message_id: Some(format!("<seed{n}@client.example>")),
        trace: None,
    };
    let receipt = queue
        .enqueue_bytes(envelope, body)
        .await
        .expect("the node enqueues");
    assert!(!receipt.duplicate, "message {n} was seeded twice");
    receipt.id.to_string()
}

fn write(dir: &TempDir, name: &str, pem: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).expect("write a PEM file");
    path
}
