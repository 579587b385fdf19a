//! The leader's assignment plan, sans-IO: which queued messages are due, per
//! destination, and how to split them among live owners within the fleet-wide
//! connection limit and the message-rate budget.
//!
//! `collect_work` reads the replicated state at one instant; `split_work` decides the
//! grants. The scheduler turns each grant into one `Assign` command.

use std::collections::{BTreeMap, BTreeSet};

use mxfleet_core::{MessageState, NodeId, QueueId, QueueState, UnixMillis};

use crate::lease::LeaseTiming;
use crate::pacing::connection_shares;

/// What one destination needs at this instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationWork {
    /// Messages that may be assigned now, oldest first.
    pub due: Vec<QueueId>,
    /// Messages held under a lease that has not lapsed, per owner.
    pub in_flight: BTreeMap<NodeId, usize>,
    /// Nodes whose latest report says they cannot reach the destination.
    pub unreachable_from: BTreeSet<NodeId>,
}

/// Gathers due work and work in flight per destination.
///
/// A message is due when it is queued (not held, not final), nobody holds a lease on
/// it that the leader may not yet override, and either it was never attempted, or the
/// deferred-queue scan runs now and its backoff is over, or its destination was
/// released (back up, ETRN, flush) after its last attempt.
pub fn collect_work(
    state: &QueueState,
    now: UnixMillis,
    timing: &LeaseTiming,
    deferred_scan: bool,
) -> BTreeMap<String, DestinationWork> {
    let mut work: BTreeMap<String, DestinationWork> = BTreeMap::new();
    for entry in state.entries.values() {
        if entry.state != MessageState::Queued {
            continue;
        }
        let destination = entry.destination();
        if let Some(assignment) = entry.assignment
            && !timing.reassignable(assignment.lease_until, now)
        {
            *work
                .entry(destination)
                .or_default()
                .in_flight
                .entry(assignment.owner)
                .or_default() += 1;
            continue;
        }
        let due = match entry.last_attempt_at {
            None => entry.next_attempt_at <= now,
            Some(last) => {
                (deferred_scan && entry.next_attempt_at <= now)
                    || state
                        .fleet
                        .released_at(&destination)
                        .is_some_and(|released| released > last)
            }
        };
        if due {
            work.entry(destination).or_default().due.push(entry.id);
        }
    }
    for (destination, entry) in work.iter_mut() {
        if let Some(known) = state.fleet.destinations.get(destination) {
            entry.unreachable_from = known
                .reachability
                .iter()
                .filter(|(_, r)| !r.reachable)
                .map(|(node, _)| *node)
                .collect();
        }
    }
    work
}

/// One `Assign`: messages for one destination to one owner, with its connection share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub destination: String,
    pub owner: NodeId,
    pub ids: Vec<QueueId>,
    pub connections: u32,
}

/// Limits for one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitLimits {
    /// The fleet-wide connection limit for the destination.
    pub max_connections: u32,
    /// Messages an owner may hold per connection it has (its pipeline).
    pub window_per_connection: usize,
    /// Messages the rate budget allows to assign now.
    pub budget: usize,
}

/// Splits one destination's due messages among `live` owners.
///
/// Owners that report the destination unreachable are passed over while any live node
/// can reach it (or has not said otherwise). Each owner gets a share of the connection
/// limit; its window is `share × window_per_connection` minus what it holds already.
/// Messages are dealt round-robin, oldest first, so a small backlog spreads evenly.
pub fn split_work(
    destination: &str,
    work: &DestinationWork,
    live: &[NodeId],
    limits: SplitLimits,
) -> Vec<Grant> {
    let reachable: Vec<NodeId> = live
        .iter()
        .copied()
        .filter(|node| !work.unreachable_from.contains(node))
        .collect();
    let owners = if reachable.is_empty() {
        live.to_vec()
    } else {
        reachable
    };
    let shares = connection_shares(limits.max_connections, owners.len());
    let mut room: Vec<usize> = owners
        .iter()
        .zip(&shares)
        .map(|(owner, share)| {
            let window = *share as usize * limits.window_per_connection;
            window.saturating_sub(work.in_flight.get(owner).copied().unwrap_or(0))
        })
        .collect();
    let mut grants: Vec<Vec<QueueId>> = vec![Vec::new(); owners.len()];
    let mut budget = limits.budget;
    let mut due = work.due.iter();
    'deal: while budget > 0 {
        let mut dealt = false;
        for (slot, grant) in room.iter_mut().zip(grants.iter_mut()) {
            if *slot == 0 {
                continue;
            }
            let Some(id) = due.next() else {
                break 'deal;
            };
            grant.push(*id);
            *slot -= 1;
            budget -= 1;
            dealt = true;
            if budget == 0 {
                break 'deal;
            }
        }
        if !dealt {
            break;
        }
    }
    owners
        .into_iter()
        .zip(shares)
        .zip(grants)
        .filter(|(_, ids)| !ids.is_empty())
        .map(|((owner, connections), ids)| Grant {
            destination: destination.to_string(),
            owner,
            ids,
            connections,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use mxfleet_core::{
        AttemptReport, BodyDigest, Command, DedupKey, Envelope, OutcomeStatus, RecipientOutcome,
    };

    use super::*;

    const SECOND: u64 = 1000;

    /// A state with one message (id 1) to example.org, received at t=0.
    fn one_message() -> QueueState {
        let mut state = QueueState::default();
        let envelope = Envelope {
            sender: "s@client.example".into(),
            recipients: vec!["r@example.org".into()],
            message_id: Some("<m@client.example>".into()),
            trace: None,
        };
        let body = BodyDigest::of(b"body");
        state.apply(
            1,
            &Command::Enqueue {
                dedup_key: DedupKey::derive(None, &envelope.sender, &envelope.recipients, &body),
                envelope,
                body,
                size: 4,
                received_at: UnixMillis(0),
                accepted_by: 1,
                body_holders: vec![1, 2],
                dedup_window_ms: 1,
            },
        );
        state
    }

    fn due_at(state: &QueueState, now: u64, deferred_scan: bool) -> Vec<QueueId> {
        collect_work(
            state,
            UnixMillis(now),
            &LeaseTiming::default(),
            deferred_scan,
        )
        .get("example.org")
        .map(|w| w.due.clone())
        .unwrap_or_default()
    }

    #[test]
    fn the_retry_schedule_follows_backoff_scans_and_releases() {
        let timing = LeaseTiming::default();
        let mut state = one_message();
        // New mail is due at once, without waiting for a deferred-queue scan.
        assert_eq!(due_at(&state, 0, false), vec![QueueId(1)]);
        // Assigned at t=0: in flight until the lease (30 s) plus the drift bound (2 s).
        state.apply(
            2,
            &Command::Assign {
                ids: vec![QueueId(1)],
                owner: 2,
                now: UnixMillis(0),
                lease_until: timing.lease_until(UnixMillis(0)),
                connections: 1,
            },
        );
        assert!(due_at(&state, 31 * SECOND, true).is_empty());
        // Deferred at t=1s until t=61s.
        state.apply(
            3,
            &Command::Attempted {
                reports: vec![AttemptReport {
                    id: QueueId(1),
                    token: 2,
                    at: UnixMillis(SECOND),
                    relay: None,
                    results: vec![RecipientOutcome {
                        recipient: "r@example.org".into(),
                        status: OutcomeStatus::Deferred,
                        reply: "451 4.3.0 later".into(),
                    }],
                    next_attempt_at: UnixMillis(61 * SECOND),
                    lost_after_dot: false,
                }],
            },
        );
        assert!(
            due_at(&state, 60 * SECOND, true).is_empty(),
            "backoff not over"
        );
        assert!(
            due_at(&state, 61 * SECOND, false).is_empty(),
            "backoff over, but deferred mail waits for the queue scan"
        );
        assert_eq!(due_at(&state, 61 * SECOND, true), vec![QueueId(1)]);
        // A probe that finds the destination back up releases it before its backoff
        // ends (the attempt had found it unreachable).
        state.apply(
            4,
            &Command::Reachability {
                node: 2,
                destination: "example.org".into(),
                reachable: false,
                at: UnixMillis(SECOND),
                detail: "connection refused".into(),
            },
        );
        state.apply(
            5,
            &Command::Reachability {
                node: 3,
                destination: "example.org".into(),
                reachable: true,
                at: UnixMillis(5 * SECOND),
                detail: "probe".into(),
            },
        );
        assert_eq!(due_at(&state, 5 * SECOND, false), vec![QueueId(1)]);
    }

    #[test]
    fn a_lapsed_lease_becomes_due_only_after_the_drift_bound() {
        let timing = LeaseTiming::default();
        let mut state = one_message();
        state.apply(
            2,
            &Command::Assign {
                ids: vec![QueueId(1)],
                owner: 2,
                now: UnixMillis(0),
                lease_until: timing.lease_until(UnixMillis(0)),
                connections: 1,
            },
        );
        let work = collect_work(&state, UnixMillis(31 * SECOND), &timing, false);
        assert_eq!(work["example.org"].in_flight.get(&2), Some(&1));
        assert_eq!(due_at(&state, 32 * SECOND, false), vec![QueueId(1)]);
    }

    fn work(due: u64, in_flight: &[(NodeId, usize)], unreachable: &[NodeId]) -> DestinationWork {
        DestinationWork {
            due: (1..=due).map(QueueId).collect(),
            in_flight: in_flight.iter().copied().collect(),
            unreachable_from: unreachable.iter().copied().collect(),
        }
    }

    fn limits(max_connections: u32, window: usize, budget: usize) -> SplitLimits {
        SplitLimits {
            max_connections,
            window_per_connection: window,
            budget,
        }
    }

    fn counts(grants: &[Grant]) -> Vec<(NodeId, usize, u32)> {
        grants
            .iter()
            .map(|g| (g.owner, g.ids.len(), g.connections))
            .collect()
    }

    #[test]
    fn a_small_backlog_is_dealt_evenly() {
        let grants = split_work(
            "example.org",
            &work(7, &[], &[]),
            &[1, 2, 3],
            limits(9, 10, 100),
        );
        assert_eq!(counts(&grants), vec![(1, 3, 3), (2, 2, 3), (3, 2, 3)]);
        assert_eq!(grants[0].ids, vec![QueueId(1), QueueId(4), QueueId(7)]);
    }

    #[test]
    fn windows_bound_each_owner_and_count_work_in_flight() {
        let grants = split_work(
            "example.org",
            &work(100, &[(1, 5)], &[]),
            &[1, 2],
            limits(2, 5, 1000),
        );
        assert_eq!(counts(&grants), vec![(2, 5, 1)]);
    }

    #[test]
    fn the_rate_budget_caps_the_whole_fleet() {
        let grants = split_work(
            "example.org",
            &work(100, &[], &[]),
            &[1, 2, 3],
            limits(30, 10, 4),
        );
        assert_eq!(grants.iter().map(|g| g.ids.len()).sum::<usize>(), 4);
    }

    #[test]
    fn nodes_that_cannot_reach_the_destination_are_passed_over() {
        let grants = split_work(
            "example.org",
            &work(4, &[], &[2]),
            &[1, 2, 3],
            limits(10, 10, 100),
        );
        assert_eq!(counts(&grants), vec![(1, 2, 5), (3, 2, 5)]);
        // When nobody can reach it, everyone tries.
        let grants = split_work(
            "example.org",
            &work(3, &[], &[1, 2]),
            &[1, 2],
            limits(10, 10, 100),
        );
        assert_eq!(grants.len(), 2);
    }

    #[test]
    fn fewer_connections_than_owners_leaves_some_owners_idle() {
        let grants = split_work(
            "example.org",
            &work(50, &[], &[]),
            &[1, 2, 3],
            limits(1, 10, 100),
        );
        assert_eq!(counts(&grants), vec![(1, 10, 1)]);
    }
}
