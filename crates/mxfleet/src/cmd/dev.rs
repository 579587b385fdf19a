//! `mxfleet dev`: a working local cluster on loopback with no configuration: N nodes
//! (default 3) in this process, each with its own data directory, peers on ephemeral
//! loopback ports, plaintext between them (dev mode only), and an SMTP listener per
//! node that relays for `example.test` (any recipient). It bootstraps the cluster,
//! replicates a demo message through a follower to prove the path end to end, prints
//! the endpoints and a command that sends a test mail, and runs until Ctrl-C.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use mxfleet_core::Envelope;
use mxfleet_node::Node;
use mxfleet_node::node::SmtpService;
use mxfleet_queue::{InitialMember, PeerTls, QueueConfig};
use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy};
use mxfleet_smtp::{PolicyHandle, SessionConfig, SessionLimits};
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
}

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
            }),
            connections: Default::default(),
        };
        nodes.push((site, Node::start(config, Some(smtp), None).await?));
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

    println!(
        "mxfleet dev: {} nodes on loopback, data in {}",
        nodes.len(),
        root.display()
    );
    println!(
        "  {:<5} {:<7} {:<22} {:<22} role",
        "node", "site", "smtp", "peer (gRPC)"
    );
    for (site, node) in &nodes {
        let status = node.queue().status();
        let smtp = node.smtp_addr().map(|a| a.to_string()).unwrap_or_default();
        println!(
            "  {:<5} {:<7} {:<22} {:<22} {}",
            status.node_id,
            site,
            smtp,
            node.queue().advertise_addr(),
            status.role
        );
    }
    println!(
        "  demo message {} accepted via node {} ({}), on {replicated}/{} nodes",
        demo.id,
        via.node_id(),
        if demo.duplicate {
            "already queued"
        } else {
            "new"
        },
        nodes.len()
    );
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
    println!("ready; Ctrl-C to stop");

    let signal = mxfleet_node::signals::stop_requested().await?;
    println!("{signal}: stopping");
    for (_, node) in nodes {
        node.shutdown(SHUTDOWN_DEADLINE).await;
    }
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
