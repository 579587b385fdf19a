//! Stage 2: the typed, checked configuration the node is wired from.
//!
//! [`validate`] turns a [`RawConfig`] into a [`NodeConfig`]: it applies defaults, parses
//! units and addresses, and checks every rule, including rules across keys
//! (`election_timeout >= 3 × heartbeat_interval`, this node's entry in
//! `initial_members`). It never stops at the first problem: each field is checked on its
//! own and yields `None` when it is wrong, rules across keys run on whatever did parse,
//! and a `NodeConfig` is only assembled when the report is clean.
//!
//! Everything here is plain data with public fields, so the dev cluster and tests can
//! build a `NodeConfig` in code (for instance with tiny [`RaftTimers`]) without a file.
//!
//! Layout: the types ([`NodeConfig`] and its sections), then [`validate`], then one
//! `check_*` function per section. `[peer]`, `[smtp]`, `[delivery]`,
//! `[[relay_domains]]` and `[spam]` have their own modules ([`super::peer`],
//! [`super::smtp`], [`super::delivery`], [`super::relay_domains`], [`super::spam`]),
//! types included. Field-level
//! parsing (units, counts, labels, files) lives in [`super::fields`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mxfleet_core::NodeId;
use mxfleet_delivery::DeliveryConfig;
use mxfleet_smtp::checks::SpamConfig;

use super::FileChecks;
use super::delivery::check_delivery;
use super::error::ErrorReport;
use super::fields::{
    WrittenSize, at_least_multiple, data_dir, default_node_name, duration, message_size, node_name,
    non_zero_id, required, site_label,
};
use super::host_port::HostPort;
use super::operations::{AdminConfig, LogFormat, check_operations};
use super::peer::{Advertised, PeerConfig, check_peer};
use super::raw::{RawConfig, RawMember, RawNode, RawQueue, RawRaft};
use super::relay_domains::{RelayDomainConfig, check_relay_domains};
use super::smtp::{SmtpConfig, SmtpContext, check_smtp, unified_message_size};
use super::spam::{check_spam, take_relay_domain_checks};

/// Everything one fleet member needs to start, checked before any socket is bound.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node: NodeIdentity,
    pub peer: PeerConfig,
    pub cluster: ClusterConfig,
    pub raft: RaftTimers,
    pub queue: QueueLimits,
    pub smtp: SmtpConfig,
    /// Empty is valid: the node then takes part in the fleet but refuses every
    /// recipient.
    pub relay_domains: Vec<RelayDomainConfig>,
    /// `[spam]`, with `domain_checks` holding an entry for every relay domain: its own
    /// `checks`, or `spam.default_checks`. The SMTP sessions read it; without a `[spam]`
    /// table no domain applies any check and no rate is limited.
    pub spam: SpamConfig,
    /// `[delivery]`, with one destination policy per relay domain
    /// (`delivery.destinations`, keyed by domain) and `delivery.hostname` the HELO name.
    pub delivery: DeliveryConfig,
    /// `delivery.dns_servers`: the nameservers delivery resolves MX and address records
    /// with; empty means the system resolver (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
    /// `delivery.mx_port`: the port MX hosts are contacted on; 25 except in test fleets.
    pub mx_port: u16,
    /// `[admin]`: the admin API, or `None` when `admin.listen` is not set.
    pub admin: Option<AdminConfig>,
    /// `metrics.listen`: where `/metrics` is served, or `None` for no metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// `log.format`.
    pub log_format: LogFormat,
}

/// `[node]`: who this member is and where it keeps its state.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// Non-zero and unique in the fleet; the Raft node id.
    pub id: NodeId,
    /// Human name for logs and status tables; defaults to the machine hostname.
    pub name: String,
    /// Datacenter label (`[a-z0-9-_.]+`). Voters spread over three or more sites let
    /// the fleet survive the loss of a whole site.
    pub site: String,
    /// Raft log, snapshots and message bodies. Created on first start if missing.
    pub data_dir: PathBuf,
}

/// `[cluster]`: how a brand-new fleet is bootstrapped.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// On first start with an empty `data_dir`, the member with the lowest id here
    /// initializes the cluster with all of these as voters. A node not listed waits to
    /// be added as a learner. Ignored once the Raft log exists.
    pub initial_members: Vec<InitialMember>,
}

/// One bootstrap voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub id: NodeId,
    /// `host:port` of its peer port, normalized like [`PeerConfig::advertise`].
    pub addr: String,
    pub site: String,
}

/// `[raft]`: consensus timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTimers {
    /// How often the leader heartbeats its followers.
    pub heartbeat_interval: Duration,
    /// Minimum election timeout; the randomized maximum is twice this.
    pub election_timeout: Duration,
    /// A write not committed by then fails as `NoQuorum`, which SMTP answers with 451.
    pub write_timeout: Duration,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
}

impl Default for RaftTimers {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(5),
            snapshot_every: 10_000,
        }
    }
}

/// `[queue]`: limits of the replicated queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimits {
    /// How long a message's dedup key (its Message-ID) is remembered, so that a message
    /// relayed twice within the window is queued once.
    pub dedup_window: Duration,
    /// Largest accepted message, in bytes (SMTP `SIZE`). Always equal to
    /// [`SmtpConfig::message_size_limit`]: the file may set either key.
    pub max_message_size: u64,
    /// How long to wait for a write quorum of peers to fsync a message body.
    pub blob_quorum_timeout: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            dedup_window: Duration::from_secs(7 * 24 * 60 * 60),
            max_message_size: 64 * 1000 * 1000,
            blob_quorum_timeout: Duration::from_secs(10),
        }
    }
}

const MIN_SNAPSHOT_EVERY: u64 = 100;

/// Checks every rule, reporting every problem; `Some` only if `report` stays clean.
pub(crate) fn validate(
    mut raw: RawConfig,
    checks: FileChecks,
    report: &mut ErrorReport,
) -> Option<NodeConfig> {
    // Every check runs before anything is assembled, so that all problems are reported.
    let node = check_node(raw.node, checks, report);
    let peer = check_peer(raw.peer, checks, report);
    let members = check_initial_members(raw.cluster.initial_members, report);
    check_own_entry(&node, peer.advertised.as_ref(), &members, report);
    let raft = check_raft(raw.raft, report);
    let queue = check_queue(raw.queue, report);
    let smtp_context = SmtpContext {
        node_name: node.name.as_deref(),
        peer_listen: peer.listen,
    };
    let smtp = check_smtp(raw.smtp, &smtp_context, checks, report);
    let message_size =
        unified_message_size(report, queue.max_message_size, smtp.message_size_limit);
    let delivery = check_delivery(raw.delivery, smtp.hostname(), checks, report);
    let relay_domain_checks = take_relay_domain_checks(&mut raw.relay_domains);
    let relay_domains = check_relay_domains(
        raw.relay_domains,
        &delivery.destination_defaults,
        checks,
        report,
    );
    let spam = check_spam(raw.spam, relay_domain_checks, report);
    let operations = check_operations(raw.admin, raw.metrics, raw.log, checks, report);

    if !report.is_clean() {
        return None;
    }
    let initial_members = members
        .into_iter()
        .map(MemberDraft::finish)
        .collect::<Option<Vec<_>>>()?;
    let message_size = message_size?;
    let relay_domains = relay_domains?;
    let delivery = delivery.finish(&relay_domains)?;
    let spam = spam.finish(&relay_domains)?;
    Some(NodeConfig {
        node: NodeIdentity {
            id: node.id?,
            name: node.name?,
            site: node.site?,
            data_dir: node.data_dir?,
        },
        peer: PeerConfig {
            listen: peer.listen?,
            advertise: peer.advertised?.addr.to_string(),
            bind_address: peer.bind_address?,
            transport: peer.transport?,
        },
        cluster: ClusterConfig { initial_members },
        raft: raft?,
        queue: queue.finish(message_size)?,
        smtp: smtp.finish(message_size)?,
        relay_domains,
        spam,
        delivery: delivery.delivery,
        dns_servers: delivery.dns_servers,
        mx_port: delivery.mx_port,
        admin: operations.admin?,
        metrics_listen: operations.metrics_listen?,
        log_format: operations.log_format?,
    })
}

/// `[node]` with each field checked on its own: `None` where it was wrong.
struct NodeDraft {
    id: Option<NodeId>,
    name: Option<String>,
    site: Option<String>,
    data_dir: Option<PathBuf>,
}

fn check_node(raw: RawNode, checks: FileChecks, report: &mut ErrorReport) -> NodeDraft {
    let id = required(
        report,
        "node.id",
        raw.id,
        "a non-zero integer, unique in the fleet, e.g. id = 1",
    )
    .and_then(|id| non_zero_id(report, "node.id", id));
    let name = match raw.name {
        Some(name) => node_name(report, name),
        None => id.map(|id| default_node_name(id, checks)),
    };
    let site = required(
        report,
        "node.site",
        raw.site,
        r#"the datacenter label, e.g. site = "fra1""#,
    )
    .and_then(|site| site_label(report, "node.site", site));
    let data_dir = required(
        report,
        "node.data_dir",
        raw.data_dir,
        r#"where the Raft log and message bodies live, e.g. data_dir = "/var/lib/mxfleet""#,
    )
    .and_then(|dir| data_dir(report, dir, checks));
    NodeDraft {
        id,
        name,
        site,
        data_dir,
    }
}

/// One `initial_members` entry with each field checked on its own.
struct MemberDraft {
    id: Option<NodeId>,
    addr: Option<HostPort>,
    site: Option<String>,
}

impl MemberDraft {
    fn finish(self) -> Option<InitialMember> {
        Some(InitialMember {
            id: self.id?,
            addr: self.addr?.to_string(),
            site: self.site?,
        })
    }
}

fn check_initial_members(raw: Vec<RawMember>, report: &mut ErrorReport) -> Vec<MemberDraft> {
    // First index at which each id and address appears, to name it in duplicate errors.
    let mut first_with_id: HashMap<NodeId, usize> = HashMap::new();
    let mut first_with_addr: HashMap<String, usize> = HashMap::new();
    let mut drafts = Vec::with_capacity(raw.len());
    for (index, member) in raw.into_iter().enumerate() {
        let prefix = format!("cluster.initial_members[{index}]");
        let id_key = format!("{prefix}.id");
        let id = required(report, &id_key, member.id, "a non-zero node id")
            .and_then(|id| non_zero_id(report, &id_key, id));
        if let Some(id) = id
            && let first = *first_with_id.entry(id).or_insert(index)
            && first != index
        {
            report.push(
                id_key,
                format!(
                    "id {id} is already used by cluster.initial_members[{first}]; \
                     member ids must be unique"
                ),
            );
        }

        let addr_key = format!("{prefix}.addr");
        let addr = required(
            report,
            &addr_key,
            member.addr,
            r#"the member's peer host:port, e.g. addr = "10.0.1.5:7401""#,
        )
        .and_then(|text| match HostPort::parse(&text) {
            Ok(addr) if addr.is_unspecified() => {
                report.push(&addr_key, format!("{addr} can be bound but not dialled"));
                None
            }
            Ok(addr) => Some(addr),
            Err(why) => {
                report.push(&addr_key, why);
                None
            }
        });
        if let Some(addr) = &addr
            && let first = *first_with_addr.entry(addr.to_string()).or_insert(index)
            && first != index
        {
            report.push(
                &addr_key,
                format!("{addr} is already the address of cluster.initial_members[{first}]"),
            );
        }

        let site_key = format!("{prefix}.site");
        let site = required(report, &site_key, member.site, r#"e.g. site = "fra1""#)
            .and_then(|site| site_label(report, &site_key, site));
        drafts.push(MemberDraft { id, addr, site });
    }
    drafts
}

/// If this node is a bootstrap voter, its entry must say how the others reach it and
/// where it is; otherwise the fleet would bootstrap with an address nobody answers on.
fn check_own_entry(
    node: &NodeDraft,
    advertised: Option<&Advertised>,
    members: &[MemberDraft],
    report: &mut ErrorReport,
) {
    let Some(own_id) = node.id else { return };
    for (index, member) in members.iter().enumerate() {
        if member.id != Some(own_id) {
            continue;
        }
        if let (Some(listed), Some(advertised)) = (&member.addr, advertised)
            && listed != &advertised.addr
        {
            report.push(
                format!("cluster.initial_members[{index}].addr"),
                format!(
                    "this entry is node {own_id} itself, so it must be the address the \
                     others dial, {} (from {}), not {listed}",
                    advertised.addr, advertised.from_key
                ),
            );
        }
        if let (Some(listed), Some(own_site)) = (&member.site, &node.site)
            && listed != own_site
        {
            report.push(
                format!("cluster.initial_members[{index}].site"),
                format!(
                    "this entry is node {own_id} itself, so it must be its node.site \
                     {own_site:?}, not {listed:?}"
                ),
            );
        }
    }
}

fn check_raft(raw: RawRaft, report: &mut ErrorReport) -> Option<RaftTimers> {
    let defaults = RaftTimers::default();
    let heartbeat = duration(
        report,
        "raft.heartbeat_interval",
        raw.heartbeat_interval,
        defaults.heartbeat_interval,
    );
    let election = duration(
        report,
        "raft.election_timeout",
        raw.election_timeout,
        defaults.election_timeout,
    );
    let write = duration(
        report,
        "raft.write_timeout",
        raw.write_timeout,
        defaults.write_timeout,
    );
    if let (Some(heartbeat), Some(election)) = (&heartbeat, &election) {
        at_least_multiple(
            report,
            ("raft.election_timeout", election),
            3,
            ("heartbeat_interval", heartbeat),
            "so that a few lost heartbeats do not trigger an election",
        );
    }
    if let (Some(election), Some(write)) = (&election, &write) {
        at_least_multiple(
            report,
            ("raft.write_timeout", write),
            2,
            ("election_timeout", election),
            "so that a write can survive one leader election",
        );
    }
    let snapshot_every = raw.snapshot_every.unwrap_or(defaults.snapshot_every);
    if snapshot_every < MIN_SNAPSHOT_EVERY {
        report.push(
            "raft.snapshot_every",
            format!(
                "must be at least {MIN_SNAPSHOT_EVERY} log entries (snapshotting more often \
                 costs more than it saves), got {snapshot_every}"
            ),
        );
    }
    Some(RaftTimers {
        heartbeat_interval: heartbeat?.value,
        election_timeout: election?.value,
        write_timeout: write?.value,
        snapshot_every,
    })
}

/// `[queue]` with each field checked on its own. The size limit is kept as written, to
/// be unified with `smtp.message_size_limit`.
struct QueueDraft {
    dedup_window: Option<Duration>,
    max_message_size: WrittenSize,
    blob_quorum_timeout: Option<Duration>,
}

impl QueueDraft {
    fn finish(self, max_message_size: u64) -> Option<QueueLimits> {
        Some(QueueLimits {
            dedup_window: self.dedup_window?,
            max_message_size,
            blob_quorum_timeout: self.blob_quorum_timeout?,
        })
    }
}

fn check_queue(raw: RawQueue, report: &mut ErrorReport) -> QueueDraft {
    let defaults = QueueLimits::default();
    let dedup_window = duration(
        report,
        "queue.dedup_window",
        raw.dedup_window,
        defaults.dedup_window,
    );
    let max_message_size = message_size(report, "queue.max_message_size", raw.max_message_size);
    let blob_quorum_timeout = duration(
        report,
        "queue.blob_quorum_timeout",
        raw.blob_quorum_timeout,
        defaults.blob_quorum_timeout,
    );
    QueueDraft {
        dedup_window: dedup_window.map(|setting| setting.value),
        max_message_size,
        blob_quorum_timeout: blob_quorum_timeout.map(|setting| setting.value),
    }
}
