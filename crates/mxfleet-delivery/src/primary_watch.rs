//! Primary watch: every node probes the primary of each watched destination
//! (`DeliveryConfig::watched_primaries`, the primary-aware relay domains) every
//! `probe_interval`, mail or not, so that the fleet always knows whether the primary is
//! down (`DestinationState::seen_down`), which is what decides whether the backup
//! accepts mail for such a domain.
//!
//! A probe is the one drain on recovery uses (`probe::probe_primary`: connect, EHLO,
//! QUIT). Its result goes through Raft only when it says something new
//! ([`report_reason`]): this node's result changed, this node has no report yet, the
//! fleet sees the destination down while this node reaches it (the reachable report
//! releases its deferred mail, as `probe` does), or this node's own report is a
//! heartbeat old (`DeliveryConfig::reachability_heartbeat`), so that a live node's
//! report never goes stale and a dead node's ages out.
//!
//! Lifecycle: one task per node, on the delivery tracker, stopping on its token; it
//! probes only while this node is in contact with the cluster (a report could not
//! commit otherwise), and all watched destinations of one tick concurrently, so a
//! primary that swallows connections does not delay the others' reports.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use mxfleet_core::{Reachability, UnixMillis};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::owner::DeliveryOwner;
use crate::probe::{ProbeOutcome, probe_primary};

impl DeliveryOwner {
    /// Watches every configured primary until cancelled; returns at once when none is.
    pub(crate) async fn primary_watch_loop(self: Arc<Self>) {
        if self.config.watched_primaries.is_empty() {
            return;
        }
        let mut ticks = tokio::time::interval(self.config.probe_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if !self.in_contact() {
                continue;
            }
            let watches = self
                .config
                .watched_primaries
                .iter()
                .map(|destination| self.watch_primary(destination));
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = join_all(watches) => {}
            }
        }
    }

    /// Probes `destination`'s primary once and reports the result if it is news.
    async fn watch_primary(&self, destination: &str) {
        let outcome = probe_primary(&self.config, &self.router, destination).await;
        let (reachable, detail) = match outcome {
            ProbeOutcome::Reached(target) => (true, format!("probe reached {target}")),
            ProbeOutcome::Unreached(why) => (false, why),
        };
        let me = self.queue.node_id();
        let known = self.queue.read_state(|state| {
            state
                .fleet
                .destinations
                .get(destination)
                .map(|d| (d.reachability.get(&me).cloned(), d.is_up()))
        });
        let (own, fleet_up) = match known {
            Ok(known) => known.unwrap_or((None, false)),
            Err(e) => {
                debug!(destination, cause = %e, "primary_watch_state_unreadable");
                return;
            }
        };
        let now = self.queue.clock_now();
        let heartbeat = self.config.reachability_heartbeat();
        let Some(why) = report_reason(own.as_ref(), fleet_up, reachable, now, heartbeat) else {
            return;
        };
        match self
            .queue
            .report_reachability(destination, reachable, detail.clone())
            .await
        {
            // Heartbeats repeat what the fleet knows; only news is worth a line.
            Ok(()) if why == ReportReason::Heartbeat => {
                debug!(destination, reachable, "primary_watch_heartbeat");
            }
            Ok(()) => info!(
                destination,
                reachable,
                why = why.as_str(),
                detail,
                "primary_watch_reported"
            ),
            Err(e) => warn!(destination, reachable, cause = %e, "primary_watch_report_failed"),
        }
    }
}

/// Why this node reports a watch probe's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReportReason {
    /// This node has no report for the destination yet.
    First,
    /// The result differs from this node's latest report.
    Changed,
    /// This node reaches a destination the fleet sees down: report, releasing its
    /// deferred mail, as drain on recovery does.
    Release,
    /// This node's unchanged report is a heartbeat old.
    Heartbeat,
}

impl ReportReason {
    fn as_str(self) -> &'static str {
        match self {
            ReportReason::First => "first",
            ReportReason::Changed => "changed",
            ReportReason::Release => "release",
            ReportReason::Heartbeat => "heartbeat",
        }
    }
}

/// Whether (and why) a probe result `reachable` at `now` goes to the fleet, given this
/// node's own latest report and whether the fleet sees the destination up (latest
/// report wins, `DestinationState::is_up`). `None`: it would say nothing new.
fn report_reason(
    own: Option<&Reachability>,
    fleet_up: bool,
    reachable: bool,
    now: UnixMillis,
    heartbeat: Duration,
) -> Option<ReportReason> {
    let Some(own) = own else {
        return Some(ReportReason::First);
    };
    if own.reachable != reachable {
        return Some(ReportReason::Changed);
    }
    if reachable && !fleet_up {
        return Some(ReportReason::Release);
    }
    let age = now.0.saturating_sub(own.at.0);
    (age >= heartbeat.as_millis() as u64).then_some(ReportReason::Heartbeat)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT: Duration = Duration::from_secs(60);

    fn own(reachable: bool, at: u64) -> Reachability {
        Reachability {
            reachable,
            at: UnixMillis(at),
            detail: String::new(),
        }
    }

    fn reason(
        own: Option<Reachability>,
        fleet_up: bool,
        reachable: bool,
        now: u64,
    ) -> Option<&'static str> {
        report_reason(
            own.as_ref(),
            fleet_up,
            reachable,
            UnixMillis(now),
            HEARTBEAT,
        )
        .map(ReportReason::as_str)
    }

    #[test]
    fn the_first_result_is_always_reported() {
        assert_eq!(reason(None, false, true, 1_000), Some("first"));
        assert_eq!(reason(None, false, false, 1_000), Some("first"));
    }

    #[test]
    fn a_changed_result_is_reported_at_once() {
        assert_eq!(
            reason(Some(own(true, 1_000)), true, false, 2_000),
            Some("changed")
        );
        assert_eq!(
            reason(Some(own(false, 1_000)), false, true, 2_000),
            Some("changed")
        );
    }

    #[test]
    fn an_unchanged_result_waits_for_the_heartbeat() {
        assert_eq!(reason(Some(own(true, 1_000)), true, true, 60_999), None);
        assert_eq!(
            reason(Some(own(true, 1_000)), true, true, 61_000),
            Some("heartbeat")
        );
        assert_eq!(reason(Some(own(false, 1_000)), false, false, 30_000), None);
        assert_eq!(
            reason(Some(own(false, 1_000)), false, false, 61_000),
            Some("heartbeat")
        );
    }

    #[test]
    fn reaching_a_destination_the_fleet_sees_down_releases_it() {
        // Another node reported it down after our last "reachable".
        assert_eq!(
            reason(Some(own(true, 1_000)), false, true, 2_000),
            Some("release")
        );
    }

    #[test]
    fn a_report_from_a_clock_ahead_of_ours_is_not_old() {
        assert_eq!(reason(Some(own(true, 90_000)), true, true, 1_000), None);
    }
}
