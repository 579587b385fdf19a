//! Named fault schedules and the runner that plays one against a fresh fleet.
//!
//! A run: start a fleet (5 voters over 3 sites; 3 voters, one per site, for
//! `rolling-restart-3`), start the load generator against
//! every node, play the scenario's seeded schedule while the load runs, stop the load,
//! heal every fault (network, paused or killed processes, the primary), wait until
//! the primary has every acknowledged message and the replicated queue is empty, then
//! check the history and the fleet's logs. Every scenario is a function in `network`,
//! `process` or `disk`, dispatched from `schedules`; [`Scenario::describe`] says what
//! it proves.
//!
//! Checks beyond the history verdict (lost / unexpected / duplicated) are recorded as
//! [`Invariant`]s: no two leaders in one term (from the nodes' `raft_became_leader`
//! log lines), and whatever the scenario adds (a paced drain, a refused minority, a
//! detected corruption).

mod checks;
mod disk;
mod network;
mod process;
mod schedules;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tracing::{info, warn};

use crate::checker::{self, Delivery};
use crate::fleet::{Fleet, FleetOptions, RELAY_DOMAIN, node_name, node_of_ip};
use crate::load::{self, History, LoadConfig, LoadHandle, Target};
use crate::report::Row;

/// The nine schedules of the suite, in the order `--scenario all` plays them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    SiteDark,
    LeaderSiteIsolated,
    PrimaryOutage,
    FlappingWan,
    OwnerPaused,
    RollingRestart,
    RollingRestart3,
    DiskFull,
    CorruptMinority,
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Scenario::SiteDark,
        Scenario::LeaderSiteIsolated,
        Scenario::PrimaryOutage,
        Scenario::FlappingWan,
        Scenario::OwnerPaused,
        Scenario::RollingRestart,
        Scenario::RollingRestart3,
        Scenario::DiskFull,
        Scenario::CorruptMinority,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::SiteDark => "site-dark",
            Scenario::LeaderSiteIsolated => "leader-site-isolated",
            Scenario::PrimaryOutage => "primary-outage",
            Scenario::FlappingWan => "flapping-wan",
            Scenario::OwnerPaused => "owner-paused",
            Scenario::RollingRestart => "rolling-restart",
            Scenario::RollingRestart3 => "rolling-restart-3",
            Scenario::DiskFull => "disk-full",
            Scenario::CorruptMinority => "corrupt-minority",
        }
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// One line for `--list` and the README.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::SiteDark => {
                "a 2-node site is SIGKILLed and blackholed under load, then comes back and catches up (snapshot + blob repair)"
            }
            Scenario::LeaderSiteIsolated => {
                "the leader's site is cut off: the old leader stops acknowledging, the majority elects a new leader, no two leaders share a term"
            }
            Scenario::PrimaryOutage => {
                "the primary is down while a backlog builds, then returns: the drain completes, paced at the destination rate"
            }
            Scenario::FlappingWan => {
                "latency and jitter between sites, short cuts, connection resets and forced leader changes, over and over"
            }
            Scenario::OwnerPaused => {
                "the owner of in-flight deliveries is SIGSTOPped past its lease during a drain, then resumed: no stale delivery"
            }
            Scenario::RollingRestart => {
                "every node restarted in turn under load, then a node added, promoted, and an old one removed"
            }
            Scenario::RollingRestart3 => {
                "a 3-node fleet under load: each node in turn gets SIGTERM, restarts on its data and rejoins and catches up before the next; nothing acknowledged is lost"
            }
            Scenario::DiskFull => {
                "one node's disk (a small tmpfs) fills up: it answers 452/451, nothing acknowledged is lost, it recovers when space returns"
            }
            Scenario::CorruptMinority => {
                "a body and a Raft log segment are corrupted on one node: detected by hash and CRC, repaired from peers, never delivered"
            }
        }
    }
}

/// How big a run is.
#[derive(Clone, Debug)]
pub struct Scale {
    pub name: &'static str,
    /// New messages per second, over all nodes.
    pub rate: f64,
    pub concurrency: usize,
    /// The base period schedules divide (a quarter of it before a fault, say); the
    /// load runs for as long as the schedule plays.
    pub load: Duration,
    /// How long one fault is held.
    pub fault: Duration,
    /// How long the primary stays down in the outage scenarios.
    pub outage: Duration,
    /// The longest wait for the drain after everything is healed.
    pub drain_deadline: Duration,
}

impl Scale {
    pub fn parse(name: &str) -> Option<Scale> {
        match name {
            // About a minute a scenario on a 2-core machine.
            "short" => Some(Scale {
                name: "short",
                rate: 12.0,
                concurrency: 6,
                load: Duration::from_secs(20),
                fault: Duration::from_secs(6),
                outage: Duration::from_secs(12),
                drain_deadline: Duration::from_secs(120),
            }),
            "long" => Some(Scale {
                name: "long",
                rate: 40.0,
                concurrency: 16,
                load: Duration::from_secs(150),
                fault: Duration::from_secs(30),
                outage: Duration::from_secs(100),
                drain_deadline: Duration::from_secs(900),
            }),
            _ => None,
        }
    }
}

/// A named check beyond the history verdict.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Invariant {
    pub name: String,
    pub holds: bool,
    pub detail: String,
}

/// A fault that made part of the fleet unavailable, for the availability figure.
#[derive(Clone, Debug)]
struct FaultWindow {
    name: String,
    start_ms: u64,
    end_ms: Option<u64>,
    /// Nodes that should keep accepting mail through it.
    majority: Vec<String>,
}

/// Everything a schedule works with while it plays.
pub struct Run {
    pub fleet: Fleet,
    pub load: LoadHandle,
    pub epoch: Instant,
    pub rng: StdRng,
    pub scale: Scale,
    pub invariants: Vec<Invariant>,
    pub notes: Vec<String>,
    /// When the primary came back (or everything healed): the drain clock starts here.
    pub drain_from_ms: Option<u64>,
    windows: Vec<FaultWindow>,
    /// Held until the run ends (a tmpfs mount, for one).
    cleanup: Vec<Box<dyn FnOnce() + Send>>,
}

impl Run {
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Lets the load run for `duration` with no change.
    pub async fn hold(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// Opens an availability window: `majority` must keep accepting mail.
    pub fn fault_begins(&mut self, name: &str, majority: &[u64]) -> usize {
        info!(fault = name, at_ms = self.now_ms(), "chaos_fault_begins");
        self.windows.push(FaultWindow {
            name: name.to_string(),
            start_ms: self.now_ms(),
            end_ms: None,
            majority: majority.iter().map(|id| node_name(*id)).collect(),
        });
        self.windows.len() - 1
    }

    pub fn fault_ends(&mut self, window: usize) {
        let now = self.now_ms();
        info!(fault = %self.windows[window].name, at_ms = now, "chaos_fault_ends");
        self.windows[window].end_ms = Some(now);
    }

    pub fn check(&mut self, name: &str, holds: bool, detail: impl Into<String>) {
        let detail = detail.into();
        if !holds {
            warn!(invariant = name, %detail, "chaos_invariant_broken");
        }
        self.invariants.push(Invariant {
            name: name.to_string(),
            holds,
            detail,
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        info!(%note, "chaos_note");
        self.notes.push(note);
    }

    pub fn on_cleanup(&mut self, action: impl FnOnce() + Send + 'static) {
        self.cleanup.push(Box::new(action));
    }

    /// Targets for the load generator: every node the fleet has.
    pub fn targets(&self) -> Vec<Target> {
        self.fleet
            .ids()
            .into_iter()
            .map(|id| Target {
                node: node_name(id),
                addr: self.fleet.spec(id).smtp,
            })
            .collect()
    }
}

/// What `run` needs besides the scenario.
pub struct RunSettings {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub seed: u64,
    pub scale: Scale,
}

/// Plays one scenario on a fresh fleet and reports it.
pub async fn run(scenario: Scenario, settings: &RunSettings) -> Row {
    let started = Instant::now();
    let dir = settings
        .root
        .join(format!("{}-{}", scenario.name(), settings.seed));
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = run_inner(scenario, settings, &dir).await;
    let mut row = match outcome {
        Ok(row) => row,
        Err(error) => Row::errored(scenario.name(), settings.seed, format!("{error:#}")),
    };
    row.seconds = started.elapsed().as_secs_f64();
    row.data_dir = dir.display().to_string();
    row
}

async fn run_inner(scenario: Scenario, settings: &RunSettings, dir: &Path) -> anyhow::Result<Row> {
    let mut options = FleetOptions::five_over_three_sites();
    schedules::adjust(scenario, &mut options);
    let mut cleanup: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    if let Some(skip) = schedules::prepare(scenario, dir, &options, &mut cleanup)? {
        for action in cleanup {
            action();
        }
        return Ok(Row::skipped(scenario.name(), settings.seed, skip));
    }
    let fleet = match Fleet::start(&settings.binary, dir, options).await {
        Ok(fleet) => fleet,
        Err(error) => {
            for action in cleanup {
                action();
            }
            return Err(error.context("starting the fleet"));
        }
    };
    let epoch = Instant::now();
    let targets: Vec<Target> = fleet
        .ids()
        .into_iter()
        .map(|id| Target {
            node: node_name(id),
            addr: fleet.spec(id).smtp,
        })
        .collect();
    let load = load::start(
        LoadConfig {
            targets,
            concurrency: settings.scale.concurrency,
            rate_per_sec: settings.scale.rate,
            body_size: 500..=6000,
            resubmit_fraction: 0.1,
            recipient_domain: RELAY_DOMAIN.to_string(),
            sender: "load@client.chaos".to_string(),
            seed: settings.seed,
            step_timeout: Duration::from_secs(10),
        },
        epoch,
    );
    let mut run = Run {
        fleet,
        load,
        epoch,
        rng: StdRng::seed_from_u64(settings.seed),
        scale: settings.scale.clone(),
        invariants: Vec::new(),
        notes: Vec::new(),
        drain_from_ms: None,
        windows: Vec::new(),
        cleanup,
    };
    let played = schedules::play(scenario, &mut run).await;
    finish(scenario, settings, run, played).await
}

/// Stops the load, heals everything, waits for the drain and checks the run.
async fn finish(
    scenario: Scenario,
    settings: &RunSettings,
    mut run: Run,
    played: anyhow::Result<()>,
) -> anyhow::Result<Row> {
    if let Err(error) = &played {
        run.check("schedule ran", false, format!("{error:#}"));
    }
    let Run {
        mut fleet,
        load,
        epoch,
        scale,
        mut invariants,
        notes,
        drain_from_ms,
        windows,
        cleanup,
        ..
    } = run;
    let history = load.stop().await;
    let healed_ms = epoch.elapsed().as_millis() as u64;
    heal_everything(&mut fleet).await;
    let drain_from = drain_from_ms.unwrap_or(healed_ms);

    let acked = acked_ids(&history);
    let drained = wait_for_drain(&fleet, &acked, epoch, scale.drain_deadline).await;
    if let Err(why) = &drained {
        invariants.push(Invariant {
            name: "queue drained".into(),
            holds: false,
            detail: why.clone(),
        });
    }
    let deliveries: Vec<Delivery> = fleet
        .primary
        .sink
        .received()
        .iter()
        .map(|m| Delivery::from_sink(m, node_of_ip, epoch))
        .collect();
    let verdict = checker::check(&history, &deliveries);
    invariants.push(no_split_brain(&fleet));
    let extra = checks::after(scenario, &fleet, &history, &deliveries, drain_from);
    invariants.extend(extra);

    let max_unavailable = windows
        .iter()
        .map(|w| {
            let end = w.end_ms.unwrap_or(healed_ms);
            checker::unavailable_after(&history, &w.majority, w.start_ms, end.max(w.start_ms))
        })
        .max()
        .unwrap_or(Duration::ZERO);
    let last_delivery = deliveries
        .iter()
        .map(|d| d.at_ms)
        .max()
        .unwrap_or(drain_from);
    let drain = Duration::from_millis(last_delivery.saturating_sub(drain_from));

    fleet.shutdown().await;
    for action in cleanup {
        action();
    }
    let history_file = fleet.dir.join("history.json");
    if let Ok(json) = serde_json::to_vec(&history) {
        let _ = std::fs::write(&history_file, json);
    }
    Ok(Row::from_run(
        scenario.name(),
        settings.seed,
        &verdict,
        invariants,
        notes,
        max_unavailable,
        drain,
    ))
}

/// Heals the network, resumes and restarts nodes, brings the primary back.
async fn heal_everything(fleet: &mut Fleet) {
    fleet.network.heal();
    for id in fleet.ids() {
        let _ = fleet.resume(id);
    }
    for id in fleet.ids() {
        if fleet.process_down(id) {
            if let Err(error) = fleet.start_node(id) {
                warn!(node = id, cause = %format!("{error:#}"), "chaos_restart_failed");
                continue;
            }
            if let Err(error) = fleet.wait_ready(id, Duration::from_secs(60)).await {
                warn!(node = id, cause = %format!("{error:#}"), "chaos_restart_failed");
            }
        }
    }
    fleet.primary.start().await;
}

fn acked_ids(history: &History) -> BTreeSet<u64> {
    history
        .attempts
        .iter()
        .filter(|a| a.outcome == load::Outcome::Ok)
        .map(|a| a.message)
        .collect()
}

/// Waits until the primary holds every acknowledged message and the queue is empty.
async fn wait_for_drain(
    fleet: &Fleet,
    acked: &BTreeSet<u64>,
    epoch: Instant,
    deadline: Duration,
) -> Result<(), String> {
    let until = Instant::now() + deadline;
    loop {
        let delivered: BTreeSet<u64> = fleet
            .primary
            .sink
            .received()
            .iter()
            .filter_map(|m| Delivery::from_sink(m, node_of_ip, epoch).chaos_id)
            .collect();
        let missing = acked.difference(&delivered).count();
        let last = if missing == 0 {
            match fleet.queue_depth().await {
                Some(0) => return Ok(()),
                depth => format!("all acked delivered; queue depth {depth:?}"),
            }
        } else {
            format!("{missing} acknowledged messages not delivered yet")
        };
        if Instant::now() > until {
            return Err(format!("not drained within {deadline:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// No two nodes logged `raft_became_leader` for the same term.
fn no_split_brain(fleet: &Fleet) -> Invariant {
    let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for id in fleet.ids() {
        let log = std::fs::read_to_string(&fleet.spec(id).log).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("raft_became_leader")) {
            if let Some(term) = field(line, "term").and_then(|t| t.parse().ok()) {
                leaders.entry(term).or_default().insert(id);
            }
        }
    }
    let split: Vec<String> = leaders
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(term, ids)| format!("term {term}: nodes {ids:?}"))
        .collect();
    Invariant {
        name: "one leader per term".into(),
        holds: split.is_empty(),
        detail: if split.is_empty() {
            format!("{} terms with a leader", leaders.len())
        } else {
            split.join("; ")
        },
    }
}

/// `key=value` from a text log line.
pub(crate) fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(needle.as_str()))
        .map(|v| v.trim_matches('"'))
}

/// Reads a node's log for the scenario checks.
pub(crate) fn node_log(fleet: &Fleet, id: u64) -> String {
    std::fs::read_to_string(&fleet.spec(id).log)
        .with_context(|| format!("reading node {id}'s log"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields_are_read_by_key_with_quotes_trimmed() {
        let line = r#"2026-11-22T08:06:17Z  INFO mxfleet_queue::metrics: raft_became_leader term=7 node="n3" site=site-b"#;
        assert_eq!(field(line, "term"), Some("7"));
        assert_eq!(field(line, "node"), Some("n3"));
        assert_eq!(field(line, "leader"), None);
    }

    #[test]
    fn every_scenario_has_a_unique_name_that_parses_back() {
        let names: BTreeSet<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), Scenario::ALL.len());
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::parse(scenario.name()), Some(scenario));
        }
        assert!(Scale::parse("short").is_some() && Scale::parse("huge").is_none());
    }
}
