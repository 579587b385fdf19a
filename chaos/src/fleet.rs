//! The fleet under test: real `mxfleet serve` processes on loopback, each behind a
//! fault proxy, with the testkit sink as their primary.
//!
//! Every node `n<id>` gets its own data directory, config file and log file under the
//! run directory, and its own loopback source address (`127.0.0.<10 + id>`) for peer
//! and delivery connections, so that the proxies know who is talking. Peers reach each
//! other only through the proxies (the advertised peer address is the proxy in front of
//! the node); nodes reach the primary only through the proxy in front of it. Senders
//! (the load generator) and the harness's admin calls talk to the nodes directly.
//!
//! Main types:
//! - [`FleetOptions`]: topology and timers, from the scenario's scale.
//! - [`Fleet`]: start, kill, pause, resume, restart, add nodes; admin calls through
//!   the `mxfleet` binary's own CLI (`--json`), so the harness sees what an operator sees.
//! - [`Primary`]: the sink behind its proxy, which can go down and come back on the
//!   same address.
//!
//! Process lifecycle: a node's `Child` lives in its [`NodeSlot`] from `start_node` until
//! `kill`/`terminate`; `Fleet::shutdown` (and `Drop`, as a last resort) kills every
//! child, resuming paused ones first so that none is left stopped.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mxfleet_testkit::SinkMx;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::proxy::Network;

/// The admin token every node accepts (loopback only, test fleets only).
const ADMIN_TOKEN: &str = "chaos-admin-token-0123456789abcdef";

/// The relay domain the fleet backs up.
pub const RELAY_DOMAIN: &str = "example.test";

/// Name of the primary in the fault network.
pub const PRIMARY: &str = "primary";

/// Timers and sizes of the nodes; short so that a scenario fits in a minute.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// Sites in order, each with its node ids.
    pub sites: Vec<(String, Vec<u64>)>,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    pub write_timeout: Duration,
    pub lease: Duration,
    pub probe_interval: Duration,
    pub node_dead_after: Duration,
    pub minimal_backoff: Duration,
    pub maximal_backoff: Duration,
    /// Raft entries between snapshots: small, so that a node that was down catches up
    /// by snapshot and not only by log replay.
    pub snapshot_every: u64,
    /// Messages per second to the primary, per destination (the drain's pacing).
    pub destination_rate: u32,
}

impl FleetOptions {
    /// 5 voters over 3 sites, 2 + 2 + 1: any one site can go dark.
    pub fn five_over_three_sites() -> FleetOptions {
        FleetOptions {
            sites: vec![
                ("site-a".into(), vec![1, 2]),
                ("site-b".into(), vec![3, 4]),
                ("site-c".into(), vec![5]),
            ],
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(800),
            write_timeout: Duration::from_secs(5),
            lease: Duration::from_secs(6),
            probe_interval: Duration::from_millis(500),
            node_dead_after: Duration::from_secs(3),
            minimal_backoff: Duration::from_secs(2),
            maximal_backoff: Duration::from_secs(10),
            snapshot_every: 200,
            destination_rate: 200,
        }
    }

    /// 3 voters, one per site: the smallest fleet that survives losing a node.
    pub fn three_sites() -> FleetOptions {
        FleetOptions {
            sites: vec![
                ("site-a".into(), vec![1]),
                ("site-b".into(), vec![2]),
                ("site-c".into(), vec![3]),
            ],
            ..FleetOptions::five_over_three_sites()
        }
    }

    pub fn node_ids(&self) -> Vec<u64> {
        self.sites.iter().flat_map(|(_, ids)| ids.clone()).collect()
    }

    pub fn site_of(&self, id: u64) -> &str {
        self.sites
            .iter()
            .find(|(_, ids)| ids.contains(&id))
            .map(|(site, _)| site.as_str())
            .unwrap_or("site-extra")
    }
}

/// The name of node `id` in the fault network, the load history and reports.
pub fn node_name(id: u64) -> String {
    format!("n{id}")
}

/// The loopback address node `id` connects from.
pub fn source_ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id as u8))
}

/// Which node a loopback source address belongs to.
pub fn node_of_ip(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] > 10 => {
            Some(node_name(u64::from(v4.octets()[3] - 10)))
        }
        _ => None,
    }
}

/// One node's fixed facts: ports and paths survive restarts.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: u64,
    pub site: String,
    pub peer_listen: SocketAddr,
    /// The proxy in front of the peer port: what every other node dials.
    pub peer_front: SocketAddr,
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

struct NodeSlot {
    spec: NodeSpec,
    child: Option<Child>,
    paused: bool,
    /// Removed from the cluster on purpose: not restarted when the run heals.
    retired: bool,
    /// Lines of the log file already seen, so that "ready" means this start's ready.
    ready_marks_seen: usize,
}

/// The primary MX: the testkit sink on a fixed port behind its proxy.
pub struct Primary {
    pub sink: SinkMx,
    pub front: SocketAddr,
    up: bool,
}

impl Primary {
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The primary goes dark: connections to it are refused.
    pub async fn stop(&mut self) {
        if self.up {
            self.sink.stop().await;
            self.up = false;
        }
    }

    /// The primary is back on the same address.
    pub async fn start(&mut self) {
        if !self.up {
            self.sink.restart().await;
            self.up = true;
        }
    }
}

/// A running test fleet.
pub struct Fleet {
    pub options: FleetOptions,
    pub dir: PathBuf,
    pub network: Network,
    pub primary: Primary,
    binary: PathBuf,
    token_file: PathBuf,
    nodes: BTreeMap<u64, NodeSlot>,
    /// Members in the initial configuration (bootstrap); nodes added later join by
    /// `cluster add`.
    initial: Vec<u64>,
}

/// Ports the harness hands to nodes: below Linux's ephemeral range (32768 and up by
/// default), so that no outgoing connection can take one between this check and the
/// node's own bind (CI caught a node failing to start with "address in use" when the
/// kernel chose such ports).
const NODE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Ports already handed out by this process. The probe in [`free_addr`] closes its
/// socket at once, so without this two listeners of one fleet could draw the same free
/// port (CI caught two nodes given one SMTP port). A few hundred per run, out of 12,000.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A free loopback address for a node's listener, never one handed out before.
fn free_addr() -> anyhow::Result<SocketAddr> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..500 {
        let port = rand::random_range(NODE_PORTS);
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            handed_out.insert(port);
            return Ok(listener.local_addr()?);
        }
    }
    bail!("no free loopback port in {NODE_PORTS:?}")
}

impl Fleet {
    /// Writes configs, starts the proxies, the primary and every node, and waits
    /// until a leader is elected and every node is ready.
    pub async fn start(binary: &Path, dir: &Path, options: FleetOptions) -> anyhow::Result<Fleet> {
        std::fs::create_dir_all(dir)?;
        let token_file = dir.join("admin.token");
        std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n"))?;
        let network = Network::new();
        let sink_addr = free_addr()?;
        let sink = SinkMx::start_on(sink_addr).await;
        network.add_host(PRIMARY, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)));
        let primary_front = network
            .front(PRIMARY, "127.0.0.1:0".parse()?, sink_addr)
            .await?;
        let mut fleet = Fleet {
            initial: options.node_ids(),
            options,
            dir: dir.to_path_buf(),
            network,
            primary: Primary {
                sink,
                front: primary_front,
                up: true,
            },
            binary: binary.to_path_buf(),
            token_file,
            nodes: BTreeMap::new(),
        };
        for id in fleet.options.node_ids() {
            fleet.prepare_node(id).await?;
        }
        for id in fleet.options.node_ids() {
            fleet.write_config(id)?;
        }
        for id in fleet.options.node_ids() {
            fleet.start_node(id)?;
        }
        for id in fleet.options.node_ids() {
            fleet.wait_ready(id, Duration::from_secs(60)).await?;
        }
        fleet.wait_for_leader(Duration::from_secs(30)).await?;
        Ok(fleet)
    }

    /// Allocates ports and the proxy for a node (its config is written once every
    /// initial member has its address).
    async fn prepare_node(&mut self, id: u64) -> anyhow::Result<()> {
        let name = node_name(id);
        self.network.add_host(&name, source_ip(id));
        let peer_listen = free_addr()?;
        let peer_front = self
            .network
            .front(&name, "127.0.0.1:0".parse()?, peer_listen)
            .await?;
        let spec = NodeSpec {
            id,
            site: self.options.site_of(id).to_string(),
            peer_listen,
            peer_front,
            smtp: free_addr()?,
            admin: free_addr()?,
            data_dir: self.dir.join(&name),
            config: self.dir.join(format!("{name}.toml")),
            log: self.dir.join(format!("{name}.log")),
        };
        self.nodes.insert(
            id,
            NodeSlot {
                spec,
                child: None,
                paused: false,
                retired: false,
                ready_marks_seen: 0,
            },
        );
        Ok(())
    }

    fn write_config(&self, id: u64) -> anyhow::Result<()> {
        let spec = &self.nodes[&id].spec;
        let o = &self.options;
        let members = if self.initial.contains(&id) {
            self.initial
                .iter()
                .map(|m| {
                    let s = &self.nodes[m].spec;
                    format!(
                        r#"{{ id = {m}, addr = "{}", site = "{}" }}"#,
                        s.peer_front, s.site
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            String::new()
        };
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let config = format!(
            r#"# Written by mxfleet-chaos for one run.
[node]
id = {id}
name = "{name}"
site = "{site}"
data_dir = "{data}"

[peer]
listen = "{peer_listen}"
advertise = "{peer_front}"
bind_address = "{source}"
plaintext = true

[cluster]
initial_members = [ {members} ]

[raft]
heartbeat_interval = "{heartbeat}"
election_timeout = "{election}"
write_timeout = "{write}"
snapshot_every = {snapshot_every}

[smtp]
listen = "{smtp}"
hostname = "{name}.chaos.test"

[delivery]
smtp_bind_address = "{source}"
lease = "{lease}"
clock_drift_bound = "500ms"
dot_margin = "500ms"
contact_timeout = "2s"
probe_interval = "{probe}"
node_dead_after = "{dead}"
minimal_backoff_time = "{min_backoff}"
maximal_backoff_time = "{max_backoff}"
default_destination_rate = {rate}
reporting_mta = "chaos.test"

[admin]
listen = "{admin}"

[[admin.tokens]]
name = "chaos"
secret_file = "{token}"
permissions = ["view", "queue", "cluster", "read-body"]

[[relay_domains]]
domain = "{domain}"
catch_all = true
next_hop = "[127.0.0.1]:{primary_port}"
"#,
            name = node_name(id),
            site = spec.site,
            data = spec.data_dir.display(),
            peer_listen = spec.peer_listen,
            peer_front = spec.peer_front,
            source = source_ip(id),
            heartbeat = ms(o.heartbeat),
            election = ms(o.election_timeout),
            write = ms(o.write_timeout),
            snapshot_every = o.snapshot_every,
            smtp = spec.smtp,
            lease = ms(o.lease),
            probe = ms(o.probe_interval),
            dead = ms(o.node_dead_after),
            min_backoff = ms(o.minimal_backoff),
            max_backoff = ms(o.maximal_backoff),
            rate = o.destination_rate,
            admin = spec.admin,
            token = self.token_file.display(),
            domain = RELAY_DOMAIN,
            primary_port = self.primary.front.port(),
        );
        std::fs::write(&spec.config, config)?;
        Ok(())
    }

    pub fn spec(&self, id: u64) -> &NodeSpec {
        &self.nodes[&id].spec
    }

    /// Ids of every node the harness started (running or not).
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// Ids of nodes whose process is running and not paused.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, slot)| slot.child.is_some() && !slot.paused)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Starts node `id`'s process (its data directory is kept from any earlier run).
    pub fn start_node(&mut self, id: u64) -> anyhow::Result<()> {
        let binary = self.binary.clone();
        let slot = self.nodes.get_mut(&id).context("no such node")?;
        if slot.child.is_some() {
            return Ok(());
        }
        slot.ready_marks_seen = count_lines_with(&slot.spec.log, "node_ready");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&slot.spec.log)?;
        let child = Command::new(&binary)
            .arg("serve")
            .arg("--config")
            .arg(&slot.spec.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        slot.child = Some(child);
        slot.paused = false;
        Ok(())
    }

    /// Waits until node `id` logs `node_ready` for its current start.
    pub async fn wait_ready(&mut self, id: u64, deadline: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + deadline;
        loop {
            let slot = self.nodes.get_mut(&id).context("no such node")?;
            if count_lines_with(&slot.spec.log, "node_ready") > slot.ready_marks_seen {
                return Ok(());
            }
            if let Some(child) = slot.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                slot.child = None;
                bail!(
                    "node {id} exited ({status}) before it was ready; see {}",
                    slot.spec.log.display()
                );
            }
            if Instant::now() > until {
                bail!(
                    "node {id} not ready after {deadline:?}; see {}",
                    slot.spec.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: the process dies at once, as in a power cut.
    pub async fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let slot = self.nodes.get_mut(&id).context("no such node")?;
        if let Some(mut child) = slot.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        slot.paused = false;
        Ok(())
    }

    /// SIGTERM and wait: the graceful stop an operator's `systemctl stop` does.
    pub async fn terminate(&mut self, id: u64, deadline: Duration) -> anyhow::Result<()> {
        self.signal(id, "TERM")?;
        let slot = self.nodes.get_mut(&id).context("no such node")?;
        if let Some(mut child) = slot.child.take()
            && tokio::time::timeout(deadline, child.wait()).await.is_err()
        {
            child.start_kill()?;
            child.wait().await?;
            bail!("node {id} did not stop within {deadline:?} of SIGTERM");
        }
        Ok(())
    }

    /// SIGSTOP: the process is frozen (a hung VM, a long GC, a stalled disk).
    pub fn pause(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, "STOP")?;
        self.nodes.get_mut(&id).context("no such node")?.paused = true;
        Ok(())
    }

    /// SIGCONT after a pause.
    pub fn resume(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, "CONT")?;
        self.nodes.get_mut(&id).context("no such node")?.paused = false;
        Ok(())
    }

    fn signal(&self, id: u64, signal: &str) -> anyhow::Result<()> {
        let Some(pid) = self.nodes[&id].child.as_ref().and_then(|c| c.id()) else {
            return Ok(());
        };
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .context("running kill(1)")?;
        if !status.success() {
            bail!("kill -s {signal} {pid} failed");
        }
        Ok(())
    }

    /// Whether node `id` should run but its process is gone (killed, or it exited).
    pub fn process_down(&mut self, id: u64) -> bool {
        let Some(slot) = self.nodes.get_mut(&id) else {
            return false;
        };
        if slot.retired {
            return false;
        }
        match slot.child.as_mut().map(|c| c.try_wait()) {
            None => true,
            Some(Ok(Some(_))) | Some(Err(_)) => {
                slot.child = None;
                true
            }
            Some(Ok(None)) => false,
        }
    }

    /// Marks node `id` as removed from the cluster: the harness will not restart it.
    pub fn retire(&mut self, id: u64) {
        if let Some(slot) = self.nodes.get_mut(&id) {
            slot.retired = true;
        }
    }

    /// Kill, then start again with the same data, and wait until it is ready.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill(id).await?;
        self.start_node(id)?;
        self.wait_ready(id, Duration::from_secs(60)).await
    }

    /// A new node: configured without initial members, started, then added as a
    /// learner through the admin API of `via`.
    pub async fn add_node(&mut self, id: u64, site: &str, via: u64) -> anyhow::Result<()> {
        self.options.sites.push((site.to_string(), vec![id]));
        self.prepare_node(id).await?;
        self.write_config(id)?;
        self.start_node(id)?;
        self.wait_ready(id, Duration::from_secs(60)).await?;
        let front = self.spec(id).peer_front.to_string();
        self.admin(
            via,
            &["cluster", "add", &id.to_string(), &front, "--site", site],
        )
        .await?;
        Ok(())
    }

    /// Runs `mxfleet ARGS --json` against node `id`'s admin API and parses the answer.
    pub async fn admin(&self, id: u64, args: &[&str]) -> anyhow::Result<Value> {
        let spec = self.spec(id);
        let output = Command::new(&self.binary)
            .args(args)
            .args(["--json", "--timeout", "5s"])
            .env("MXFLEET_ENDPOINT", format!("http://{}", spec.admin))
            .env("MXFLEET_TOKEN_FILE", &self.token_file)
            .env_remove("MXFLEET_TOKEN")
            .stdin(Stdio::null())
            .output()
            .await?;
        if !output.status.success() {
            bail!(
                "mxfleet {} on node {id} failed ({:?}): {}",
                args.join(" "),
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// The leader as any running node sees it.
    pub async fn leader(&self) -> Option<u64> {
        for id in self.running() {
            if let Ok(status) = self.admin(id, &["cluster", "status"]).await
                && let Some(leader) = status["leader"].as_u64()
            {
                return Some(leader);
            }
        }
        None
    }

    /// Waits until some running node names a leader.
    pub async fn wait_for_leader(&self, deadline: Duration) -> anyhow::Result<u64> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(leader) = self.leader().await {
                return Ok(leader);
            }
            if Instant::now() > until {
                bail!("no leader within {deadline:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Live (not finished) messages in the replicated queue, read linearizably from
    /// any running node that can.
    pub async fn queue_depth(&self) -> Option<u64> {
        for id in self.running() {
            if let Ok(stats) = self.admin(id, &["queue", "stats", "--linearizable"]).await
                && let Some(total) = stats["total_messages"].as_u64()
            {
                return Some(total);
            }
        }
        None
    }

    /// Kills every node (resuming paused ones first) and stops the proxies.
    pub async fn shutdown(&mut self) {
        for id in self.ids() {
            if self.nodes[&id].paused {
                let _ = self.resume(id);
            }
            let _ = self.kill(id).await;
        }
        self.network.shutdown();
        self.primary.stop().await;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // kill_on_drop kills the children; a stopped child must be resumed to die
        // promptly, so send CONT first.
        for slot in self.nodes.values() {
            if slot.paused
                && let Some(pid) = slot.child.as_ref().and_then(|c| c.id())
            {
                let _ = std::process::Command::new("kill")
                    .args(["-s", "CONT", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn count_lines_with(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|text| text.lines().filter(|line| line.contains(needle)).count())
        .unwrap_or(0)
}
