//! The delivery vocabulary the replicated state records: what one attempt found for
//! each recipient (`AttemptReport`), which notifications (DSNs) went out, and what the
//! fleet knows about each destination (`DestinationState`: which nodes can reach it,
//! and when it was last released for immediate delivery).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{NodeId, QueueId, UnixMillis};

/// What happened to one recipient in one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutcomeStatus {
    /// The primary accepted it (2xx after the final dot).
    Delivered,
    /// A temporary failure: try again later.
    Deferred,
    /// A permanent failure (or the queue lifetime ran out): the sender gets a DSN.
    Bounced,
}

/// One recipient's result in an attempt, with the reply (or local error) that decided
/// it, e.g. `550 5.1.1 <x@example.org>: no such user`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientOutcome {
    pub recipient: String,
    pub status: OutcomeStatus,
    pub reply: String,
}

/// The outcome of one delivery attempt of one message, as its owner reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptReport {
    pub id: QueueId,
    /// The fencing token of the assignment the attempt ran under.
    pub token: u64,
    pub at: UnixMillis,
    /// `host[ip]:port` of the host that answered, when one did.
    pub relay: Option<String>,
    pub results: Vec<RecipientOutcome>,
    /// When recipients remain pending: the earliest next attempt.
    pub next_attempt_at: UnixMillis,
    /// The connection was lost after the final dot, before the reply: the primary may
    /// have the message, so the retry may deliver it twice. Counted, never hidden.
    pub lost_after_dot: bool,
}

/// Where one recipient of a queued message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientState {
    Pending,
    Delivered,
    /// `notified` turns true once the failure DSN that names it has been enqueued.
    Bounced {
        notified: bool,
    },
}

/// One recipient of a queued message, with the last reply about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientStatus {
    pub address: String,
    pub state: RecipientState,
    pub last_reply: Option<String>,
}

/// Which kind of DSN a `Notified` command records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotificationKind {
    /// RFC 3464 `Action: failed` for every bounced recipient not yet reported.
    Failure,
    /// RFC 3464 `Action: delayed`, sent once per message.
    DelayWarning,
}

/// One node's latest word on whether it can reach a destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reachability {
    pub reachable: bool,
    pub at: UnixMillis,
    /// The reply or error behind the report, for operators.
    pub detail: String,
}

/// What the fleet knows about one destination (a recipient domain, lowercase).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationState {
    pub reachability: BTreeMap<NodeId, Reachability>,
    /// Messages for the destination last attempted before this instant are due now,
    /// whatever their backoff says: set when a probe finds the destination back up,
    /// and by ETRN or `queue flush`.
    pub released_at: Option<UnixMillis>,
}

impl DestinationState {
    /// True when some node reported the destination reachable more recently than any
    /// node reported it unreachable.
    pub fn is_up(&self) -> bool {
        let last_up = self
            .reachability
            .values()
            .filter(|r| r.reachable)
            .map(|r| r.at)
            .max();
        let last_down = self
            .reachability
            .values()
            .filter(|r| !r.reachable)
            .map(|r| r.at)
            .max();
        match (last_up, last_down) {
            (Some(up), Some(down)) => up >= down,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Whether the fleet sees the destination down, judging only the reports made at
    /// or after `now - fresh_within_ms`: `None` when there are none, `Some(false)` when
    /// any of them says reachable, `Some(true)` when all of them say unreachable.
    ///
    /// Unlike [`Self::is_up`] (latest report wins, which suits releasing deferred
    /// mail), one reachable node outweighs any number of unreachable ones: a site
    /// whose uplink broke must not make the fleet see the primary down. Nodes that
    /// watch a primary refresh their report every heartbeat, so a dead node's stale
    /// "reachable" ages out of the window instead of holding the view up forever.
    pub fn seen_down(&self, now: UnixMillis, fresh_within_ms: u64) -> Option<bool> {
        let oldest = now.0.saturating_sub(fresh_within_ms);
        let mut fresh = self
            .reachability
            .values()
            .filter(|report| report.at.0 >= oldest)
            .peekable();
        fresh.peek()?;
        Some(!fresh.any(|report| report.reachable))
    }
}

/// Fleet-wide delivery facts that belong to no single message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetState {
    pub destinations: BTreeMap<String, DestinationState>,
    /// `queue flush` of everything: messages last attempted before this are due now.
    pub flushed_at: Option<UnixMillis>,
    /// Assignments handed to a new owner after the previous owner's lease ran out with
    /// no outcome: the previous owner may have delivered before it died, so each is a
    /// possible internal redelivery.
    pub lapsed_reassignments: u64,
    /// Attempts whose connection dropped after the final dot (see `AttemptReport`).
    pub lost_after_dot: u64,
    /// Outcomes refused for a stale fencing token.
    pub stale_outcomes: u64,
    /// Nodes whose delivery stopped cleanly (shutdown, maintenance): the leader gives
    /// them no work until they say they deliver again.
    pub owners_stopped: BTreeSet<NodeId>,
    /// Nodes an operator took out of service: they refuse SMTP sessions and get no
    /// delivery work until undrained.
    pub drained: BTreeSet<NodeId>,
    /// Sender resubmissions that the dedup index caught (stored once, not twice).
    pub duplicate_submissions: u64,
}

impl FleetState {
    /// True when the leader may give `node` delivery work: it has not stopped its
    /// delivery and no operator drained it.
    pub fn takes_delivery_work(&self, node: NodeId) -> bool {
        !self.owners_stopped.contains(&node) && !self.drained.contains(&node)
    }

    /// When messages for `destination` last attempted before the returned instant are
    /// due regardless of backoff.
    pub fn released_at(&self, destination: &str) -> Option<UnixMillis> {
        let domain = self
            .destinations
            .get(destination)
            .and_then(|d| d.released_at);
        domain.max(self.flushed_at)
    }
}

/// The domain part of an address, lowercased: the unit of routing, pacing and
/// reachability. An address without `@` is its own destination.
pub fn destination_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or(address, |(_, domain)| domain)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(reachable: bool, at: u64) -> Reachability {
        Reachability {
            reachable,
            at: UnixMillis(at),
            detail: String::new(),
        }
    }

    fn destination(reports: &[(NodeId, bool, u64)]) -> DestinationState {
        DestinationState {
            reachability: reports
                .iter()
                .map(|(node, reachable, at)| (*node, report(*reachable, *at)))
                .collect(),
            released_at: None,
        }
    }

    #[test]
    fn seen_down_needs_a_fresh_report() {
        assert_eq!(
            DestinationState::default().seen_down(UnixMillis(1000), 100),
            None
        );
        let stale = destination(&[(1, false, 800), (2, true, 850)]);
        assert_eq!(stale.seen_down(UnixMillis(1000), 100), None);
        // The window's edge is still fresh.
        assert_eq!(stale.seen_down(UnixMillis(1000), 150), Some(false));
        assert_eq!(stale.seen_down(UnixMillis(1000), 200), Some(false));
    }

    #[test]
    fn one_fresh_reachable_report_outweighs_every_unreachable_one() {
        let one_site_cut_off = destination(&[(1, false, 990), (2, false, 995), (3, true, 950)]);
        assert_eq!(
            one_site_cut_off.seen_down(UnixMillis(1000), 100),
            Some(false)
        );
        // ...even when it is older than the unreachable ones, where `is_up` disagrees.
        assert!(!one_site_cut_off.is_up());
    }

    #[test]
    fn all_fresh_reports_unreachable_is_down() {
        let down = destination(&[(1, false, 990), (2, false, 960)]);
        assert_eq!(down.seen_down(UnixMillis(1000), 100), Some(true));
    }

    #[test]
    fn a_dead_nodes_stale_reachable_report_ages_out() {
        let view = destination(&[(1, false, 990), (2, false, 980), (3, true, 500)]);
        assert_eq!(view.seen_down(UnixMillis(1000), 100), Some(true));
        assert_eq!(view.seen_down(UnixMillis(1000), 1000), Some(false));
    }

    #[test]
    fn reports_from_a_clock_ahead_of_ours_count_as_fresh() {
        let ahead = destination(&[(1, false, 1200)]);
        assert_eq!(ahead.seen_down(UnixMillis(1000), 100), Some(true));
        // A window wider than the epoch does not underflow.
        assert_eq!(ahead.seen_down(UnixMillis(1000), u64::MAX), Some(true));
    }
}
