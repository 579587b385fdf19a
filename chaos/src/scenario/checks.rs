//! Checks a scenario adds once the run has drained: a paced drain, no stale delivery
//! by a resumed owner, damage detected on the corrupted node, and restarted nodes that
//! took mail again (with no format refused between them).

use super::process::RESTARTS_FILE;
use super::{Invariant, Scenario, node_log};
use crate::checker::Delivery;
use crate::fleet::{Fleet, node_name};
use crate::load::{History, Outcome};

/// Checks a scenario adds once the run has drained.
pub(super) fn after(
    scenario: Scenario,
    fleet: &Fleet,
    history: &History,
    deliveries: &[Delivery],
    drain_from_ms: u64,
) -> Vec<Invariant> {
    match scenario {
        Scenario::PrimaryOutage => vec![paced(fleet, deliveries, drain_from_ms)],
        Scenario::OwnerPaused => vec![no_stale_delivery(fleet, deliveries)],
        Scenario::CorruptMinority => corruption_detected(fleet),
        Scenario::RollingRestart3 => restarted_nodes_rejoined(fleet, history),
        _ => Vec::new(),
    }
}

/// The drain kept to the fleet-wide token bucket of the destination rate: in any
/// window of W seconds at most `rate × W` deliveries plus the bucket's one-second
/// burst (10% slack for timestamps taken at the sink, not at the leader).
fn paced(fleet: &Fleet, deliveries: &[Delivery], drain_from_ms: u64) -> Invariant {
    let mut times: Vec<u64> = deliveries
        .iter()
        .map(|d| d.at_ms)
        .filter(|at| *at >= drain_from_ms)
        .collect();
    times.sort_unstable();
    let rate = f64::from(fleet.options.destination_rate);
    let mut worst = String::new();
    let mut holds = true;
    for window_s in [1u64, 2, 5] {
        let peak = peak_in_window(&times, window_s * 1000);
        let limit = (rate * (window_s as f64 + 1.0) * 1.1).ceil() as usize + 2;
        if peak > limit {
            holds = false;
        }
        worst.push_str(&format!("{peak} in {window_s}s (limit {limit}); "));
    }
    Invariant {
        name: "the drain is paced".into(),
        holds,
        detail: format!(
            "{worst}destination rate {rate}/s, {} delivered after the primary returned",
            times.len()
        ),
    }
}

/// The most deliveries in any window of `window_ms` (times sorted).
fn peak_in_window(times: &[u64], window_ms: u64) -> usize {
    let mut peak = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    peak
}

/// The frozen owner delivered nothing after it resumed that another node had
/// delivered in the meantime: its lease had lapsed, so it must have given up.
fn no_stale_delivery(fleet: &Fleet, deliveries: &[Delivery]) -> Invariant {
    let name = "no stale delivery by the resumed owner".to_string();
    let Ok(text) = std::fs::read_to_string(fleet.dir.join("paused-owner")) else {
        return Invariant {
            name,
            holds: false,
            detail: "the owner was never paused".into(),
        };
    };
    let parts: Vec<u64> = text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let [owner, _paused, resumed] = parts[..] else {
        return Invariant {
            name,
            holds: false,
            detail: format!("unreadable pause record: {text}"),
        };
    };
    let owner_name = node_name(owner);
    let stale: Vec<u64> = deliveries
        .iter()
        .filter(|d| d.from_node.as_deref() == Some(owner_name.as_str()) && d.at_ms >= resumed)
        .filter_map(|d| {
            let id = d.chaos_id?;
            deliveries
                .iter()
                .any(|other| {
                    other.chaos_id == Some(id)
                        && other.at_ms < d.at_ms
                        && other.from_node != d.from_node
                })
                .then_some(id)
        })
        .collect();
    Invariant {
        name,
        holds: stale.is_empty(),
        detail: format!(
            "node {owner}: {} deliveries after resuming, {} of them already delivered by another node {stale:?}",
            deliveries
                .iter()
                .filter(
                    |d| d.from_node.as_deref() == Some(owner_name.as_str()) && d.at_ms >= resumed
                )
                .count(),
            stale.len()
        ),
    }
}

/// The victim's log shows both kinds of damage found.
fn corruption_detected(fleet: &Fleet) -> Vec<Invariant> {
    let Ok(record) = std::fs::read_to_string(fleet.dir.join("corrupted")) else {
        return vec![Invariant {
            name: "corruption injected".into(),
            holds: false,
            detail: "the schedule stopped before corrupting anything".into(),
        }];
    };
    let victim: u64 = record
        .lines()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let log = node_log(fleet, victim);
    vec![
        Invariant {
            name: "the corrupt body was detected".into(),
            holds: log.contains("body_corrupt"),
            detail: format!(
                "node {victim}: body_corrupt logged: {}",
                log.contains("body_corrupt")
            ),
        },
        Invariant {
            name: "the corrupt log segment was detected".into(),
            holds: log.contains("raft_log_corrupt"),
            detail: format!(
                "node {victim}: raft_log_corrupt logged: {}",
                log.contains("raft_log_corrupt")
            ),
        },
    ]
}

/// After its restart, every node acknowledged mail of its own again (the load sends to
/// every node), no node refused a peer's wire format, and every data directory carries
/// its format marker.
fn restarted_nodes_rejoined(fleet: &Fleet, history: &History) -> Vec<Invariant> {
    let Ok(record) = std::fs::read_to_string(fleet.dir.join(RESTARTS_FILE)) else {
        return vec![Invariant {
            name: "every node restarted".into(),
            holds: false,
            detail: "the schedule stopped before every node had restarted".into(),
        }];
    };
    let mut silent = Vec::new();
    let mut acked_after = Vec::new();
    for line in record.lines() {
        let parts: Vec<u64> = line
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        let [id, _stop_at, caught_up_at] = parts[..] else {
            continue;
        };
        let name = node_name(id);
        let acked = history
            .attempts
            .iter()
            .filter(|a| a.node == name && a.outcome == Outcome::Ok && a.started_ms >= caught_up_at)
            .count();
        if acked == 0 {
            silent.push(id);
        }
        acked_after.push(format!("{name}: {acked}"));
    }
    let refusals: Vec<String> = fleet
        .ids()
        .into_iter()
        .filter(|id| node_log(fleet, *id).contains("peer_wire_format_refused"))
        .map(node_name)
        .collect();
    let unmarked: Vec<String> = fleet
        .ids()
        .into_iter()
        .filter(|id| !fleet.spec(*id).data_dir.join("FORMAT").is_file())
        .map(node_name)
        .collect();
    vec![
        Invariant {
            name: "every restarted node acknowledged mail again".into(),
            holds: silent.is_empty() && acked_after.len() == fleet.ids().len(),
            detail: format!("acknowledged after catching up: {}", acked_after.join(", ")),
        },
        Invariant {
            name: "no wire format refused".into(),
            holds: refusals.is_empty(),
            detail: format!("peer_wire_format_refused logged by {refusals:?}"),
        },
        Invariant {
            name: "every data directory has its format marker".into(),
            holds: unmarked.is_empty(),
            detail: format!("no FORMAT file in {unmarked:?}"),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_counts_deliveries_inside_any_window_of_that_length() {
        let times = [0, 100, 900, 1000, 1100, 5000];
        assert_eq!(peak_in_window(&times, 1000), 3, "0..999 or 100..1099");
        assert_eq!(peak_in_window(&times, 2000), 5);
        assert_eq!(peak_in_window(&[], 1000), 0);
    }

    #[test]
    fn the_disk_full_victim_follows_the_seed_in_the_run_directory() {
        use super::super::disk::disk_full_victim;
        use std::path::Path;
        assert_eq!(disk_full_victim(Path::new("/x/disk-full-0")), 1);
        assert_eq!(disk_full_victim(Path::new("/x/disk-full-9")), 5);
        assert_eq!(disk_full_victim(Path::new("/x/disk-full-10")), 1);
    }
}
