//! `mxfleet dev`: a working local cluster on loopback with no configuration: N nodes
//! (default 3) in this process, each with its own data directory, peers on ephemeral
//! loopback ports, plaintext between them (dev mode only), an SMTP listener per node
//! that relays for `example.test` (any recipient), and delivery to a primary: the
//! built-in one (`dev_primary`, which writes what it receives to `primary/*.eml`) or
//! the one given with `--primary`. It bootstraps the cluster, sends a demo message
//! through a follower and waits for the primary to get it, prints the endpoints and a
//! command that sends a test mail, and runs until Ctrl-C. Each node serves its metrics
//! on an ephemeral loopback port; log lines say `node=dev site=local` (all nodes share
//! this process's log).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use mxfleet_core::Envelope;
use mxfleet_delivery::route::{NextHop, Route};
use mxfleet_delivery::{DeliveryConfig, DestinationPolicy};
use mxfleet_node::config::{AdminConfig, AdminPermission, AdminToken, TokenSecret};
use mxfleet_node::node::SmtpService;
use mxfleet_node::{DeliverySetup, Node, delivery_setup};
use mxfleet_queue::{InitialMember, PeerTls, QueueConfig};
use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy};
use mxfleet_smtp::{PolicyHandle, SessionConfig, SessionLimits};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::error;

use super::{EXIT_FAILED, SHUTDOWN_DEADLINE};

#[derive(Args)]
pub struct DevArgs {
    /// Number of nodes (1 to 7).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    nodes: u64,
    /// Keep data here instead of a temporary directory (which is removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The domain the dev cluster relays for (any recipient).
    #[arg(long, default_value = "example.test")]
    relay_domain: String,
    /// Deliver to this primary (`host:port`) instead of the built-in one.
    #[arg(long)]
    primary: Option<std::net::SocketAddr>,
    /// Node N serves the admin API on 127.0.0.1:(admin-port + N - 1); a busy port
    /// falls back to an ephemeral one.
    #[arg(long, default_value_t = 7402)]
    admin_port: u16,
}

/// Senders' domains the built-in primary also takes mail for, so that DSNs to the
/// demo and example senders arrive there too.
const DEV_SENDER_DOMAINS: [&str; 2] = ["client.example", "mxfleet.invalid"];

const SITES: [&str; 3] = ["dev-a", "dev-b", "dev-c"];

pub async fn run(args: DevArgs) -> u8 {
    match run_cluster(args).await {
        Ok(()) => 0,
        Err(e) => {
            error!(cause = %format!("{e:#}"), "dev_cluster_failed");
            EXIT_FAILED
        }
    }
}

async fn run_cluster(args: DevArgs) -> anyhow::Result<()> {
    let temp = match &args.data_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("mxfleet-dev-").tempdir()?),
    };
    let root = match (&args.data_dir, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temp)) => temp.path().to_path_buf(),
        (None, None) => unreachable!("one of them is set above"),
    };

    let primary_shutdown = CancellationToken::new();
    let primary_tracker = TaskTracker::new();
    let primary = match args.primary {
        Some(primary) => primary,
        None => {
            let mut domains = vec![args.relay_domain.clone()];
            domains.extend(DEV_SENDER_DOMAINS.iter().map(|d| d.to_string()));
            super::dev_primary::start(
                root.join("primary"),
                &domains,
                primary_shutdown.clone(),
                &primary_tracker,
            )
            .await?
        }
    };

    let mut nodes = Vec::new();
    for id in 1..=args.nodes {
        let site = SITES[(id as usize - 1) % SITES.len()];
        let listen = "127.0.0.1:0".parse()?;
        let mut config = QueueConfig::new(id, site, root.join(format!("node{id}")), listen);
        // Dev mode: plaintext between peers, by explicit choice.
        config.tls = PeerTls::Plaintext;
        config.heartbeat_interval = Duration::from_millis(100);
        config.election_timeout = Duration::from_millis(500);
        let smtp = SmtpService {
            listen: "127.0.0.1:0".parse()?,
            session: std::sync::Arc::new(SessionConfig {
                hostname: format!("node{id}.mxfleet.dev"),
                limits: SessionLimits::default(),
                bare_line_endings: BareLineEndings::Reject,
                tls: None,
                policy: std::sync::Arc::new(PolicyHandle::new(RelayPolicy::new(vec![(
                    args.relay_domain.to_ascii_lowercase(),
                    RecipientRule::CatchAll,
                )]))),
                etrn_networks: Vec::new(),
                metrics: Default::default(),
                spam: std::sync::Arc::new(mxfleet_smtp::checks::SpamChecks::none()),
            }),
            connections: Default::default(),
            spam: None,
        };
        let delivery = dev_delivery(id, &args.relay_domain, primary)?;
        nodes.push((site, Node::start(config, Some(smtp), Some(delivery)).await?));
    }
    let members: Vec<InitialMember> = nodes
        .iter()
        .map(|(site, node)| InitialMember {
            id: node.queue().node_id(),
            addr: node.queue().advertise_addr().to_string(),
            site: site.to_string(),
        })
        .collect();
    nodes[0].1.queue().bootstrap(&members).await?;
    let leader = wait_for_leader(&nodes).await?;
    let token_file = root.join("admin.token");
    let admin = dev_admin(&token_file)?;
    let mut admin_addrs = Vec::new();
    for (index, (_, node)) in nodes.iter().enumerate() {
        let mut config = admin.clone();
        config.listen = std::net::SocketAddr::from((
            [127, 0, 0, 1],
            args.admin_port.saturating_add(index as u16),
        ));
        let addr = match node.start_admin(&config).await {
            Ok(addr) => addr,
            Err(_) => {
                config.listen = "127.0.0.1:0".parse()?;
                node.start_admin(&config).await?
            }
        };
        admin_addrs.push(addr);
    }

    // Prove the write path: through a follower (forwarded), replicated everywhere.
    let via = nodes
        .iter()
        .map(|(_, n)| n.queue())
        .find(|q| q.node_id() != leader)
        .unwrap_or(nodes[0].1.queue());
    let demo = via
        .enqueue_bytes(
            Envelope {
                sender: "dev@mxfleet.invalid".into(),
                recipients: vec!["postmaster@example.test".into()],
                message_id: Some("<dev-demo@mxfleet.invalid>".into()),
                trace: None,
            },
            b"Subject: mxfleet dev demo\r\n\r\nReplicated through Raft.\r\n",
        )
        .await?;
    let replicated = wait_for_replicas(&nodes, demo.id).await;
    let delivered = wait_for_delivery(&nodes, demo.id).await;

    println!(
        "mxfleet dev: {} nodes on loopback, data in {}",
        nodes.len(),
        root.display()
    );
    println!(
        "  {:<5} {:<7} {:<22} {:<22} {:<22} role",
        "node", "site", "smtp", "peer (gRPC)", "admin (gRPC)"
    );
    for ((site, node), admin_addr) in nodes.iter().zip(&admin_addrs) {
        let status = node.queue().status();
        let smtp = node.smtp_addr().map(|a| a.to_string()).unwrap_or_default();
        println!(
            "  {:<5} {:<7} {:<22} {:<22} {:<22} {}",
            status.node_id,
            site,
            smtp,
            node.queue().advertise_addr(),
            admin_addr,
            status.role
        );
    }
    println!(
        "  demo message {} accepted via node {} ({}), on {replicated}/{} nodes, {}",
        demo.id,
        via.node_id(),
        if demo.duplicate {
            "already queued"
        } else {
            "new"
        },
        nodes.len(),
        if delivered {
            "delivered to the primary"
        } else {
            "not delivered yet (is the primary up?)"
        }
    );
    match args.primary {
        Some(primary) => println!("  primary: {primary} (given with --primary)"),
        None => println!(
            "  primary: built-in at {primary}; what it receives is written to {}",
            root.join("primary").display()
        ),
    }
    if let Some(smtp) = nodes.last().and_then(|(_, n)| n.smtp_addr()) {
        let domain = &args.relay_domain;
        println!("  send a test mail (any node works; mail for other domains is refused):");
        println!(
            "    swaks --server {} --port {} --from you@client.example --to postmaster@{domain}",
            smtp.ip(),
            smtp.port()
        );
        println!(
            "    python3 -c \"import smtplib; smtplib.SMTP('{}', {}).sendmail('you@client.example', ['postmaster@{domain}'], 'Subject: hi\\r\\n\\r\\nhello\\r\\n')\"",
            smtp.ip(),
            smtp.port()
        );
    }
    if let Some(admin_addr) = admin_addrs.first() {
        println!("  admin CLI (any node's admin port works):");
        println!(
            "    export MXFLEET_ENDPOINT=http://{admin_addr} MXFLEET_TOKEN_FILE={}",
            token_file.display()
        );
        println!("    mxfleet cluster status; mxfleet queue list; mxfleet queue stats");
    }
    // Prometheus endpoints: one per node, each with its own registry.
    let mut metrics_urls = Vec::new();
    for (_, node) in &nodes {
        let addr = node.serve_metrics("127.0.0.1:0".parse()?).await?;
        metrics_urls.push(format!("http://{addr}/metrics"));
    }
    println!("  metrics (Prometheus): {}", metrics_urls.join(" "));
    println!("ready; Ctrl-C to stop");

    let signal = mxfleet_node::signals::stop_requested().await?;
    println!("{signal}: stopping");
    for (_, node) in nodes {
        node.shutdown(SHUTDOWN_DEADLINE).await;
    }
    primary_shutdown.cancel();
    primary_tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_DEADLINE, primary_tracker.wait()).await;
    drop(temp);
    Ok(())
}

async fn wait_for_leader(nodes: &[(&str, Node)]) -> anyhow::Result<u64> {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let leaders: Vec<Option<u64>> = nodes
            .iter()
            .map(|(_, n)| n.queue().status().leader)
            .collect();
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|l| l == &Some(*leader))
        {
            return Ok(*leader);
        }
        anyhow::ensure!(Instant::now() < until, "no leader elected within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The dev cluster's admin settings: loopback, plaintext, and one token with every
/// permission, written to `token_file` (mode 0600) for the CLI to read.
fn dev_admin(token_file: &std::path::Path) -> anyhow::Result<AdminConfig> {
    let token = hex::encode(rand::random::<[u8; 24]>());
    write_private(token_file, &token)?;
    Ok(AdminConfig {
        listen: "127.0.0.1:0".parse()?,
        tls: None,
        tokens: vec![AdminToken {
            name: "dev".into(),
            secret: TokenSecret::Sha256(TokenSecret::digest_of(&token)),
            permissions: AdminPermission::ALL.into_iter().collect(),
        }],
        client_cert_permissions: Default::default(),
    })
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

/// Delivery for dev node `id`: everything (the relay domain, and DSNs to any sender)
/// goes to `primary`; the primary is probed every 2 s while it is down.
fn dev_delivery(
    id: u64,
    relay_domain: &str,
    primary: std::net::SocketAddr,
) -> anyhow::Result<DeliverySetup> {
    let hostname = format!("node{id}.mxfleet.dev");
    let mut config = DeliveryConfig::new(hostname.clone());
    config.reporting_mta = "mxfleet.dev".into();
    config.probe_interval = Duration::from_secs(2);
    let to_primary = DestinationPolicy {
        route: Route::new(NextHop::parse(&format!(
            "[{}]:{}",
            primary.ip(),
            primary.port()
        ))?),
        ..DestinationPolicy::default()
    };
    config
        .destinations
        .insert(relay_domain.to_ascii_lowercase(), to_primary.clone());
    config.default_policy = to_primary;
    let router = delivery_setup::router(
        &[],
        mxfleet_delivery::route::DEFAULT_SMTP_PORT,
        delivery_setup::own_identity(&[&hostname], &[]),
    )
    .or_else(|_| {
        // No usable system resolver (a bare container): dev routes are IP literals,
        // so any resolver will do.
        delivery_setup::router(
            &["127.0.0.1:53".parse().expect("literal address")],
            mxfleet_delivery::route::DEFAULT_SMTP_PORT,
            delivery_setup::own_identity(&[&hostname], &[]),
        )
    })?;
    Ok(DeliverySetup { config, router })
}

/// Waits up to 10 s for message `id` to be delivered (as node 1 sees it).
async fn wait_for_delivery(nodes: &[(&str, Node)], id: mxfleet_core::QueueId) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let delivered = nodes[0]
            .1
            .queue()
            .entry(id)
            .is_some_and(|e| e.state == mxfleet_core::MessageState::Delivered);
        if delivered || Instant::now() >= until {
            return delivered;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_replicas(nodes: &[(&str, Node)], id: mxfleet_core::QueueId) -> usize {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let count = nodes
            .iter()
            .filter(|(_, n)| n.queue().entry(id).is_some())
            .count();
        if count == nodes.len() || Instant::now() >= until {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
