//! `apply` for the delivery commands: assignment under fencing tokens, lease renewal,
//! attempt reports with per-recipient results, DSN bookkeeping, reachability and
//! flushes.

use super::{Applied, Change, QueueState, finish_recipients_done};
use crate::delivery::{AttemptReport, OutcomeStatus, Reachability, RecipientState};
use crate::{
    Assignment, HistoryEvent, MessageState, NodeId, NotificationKind, QueueId, Rejection, Response,
    UnixMillis,
};

impl QueueState {
    pub(super) fn apply_assign(
        &mut self,
        index: u64,
        ids: &[QueueId],
        owner: NodeId,
        now: UnixMillis,
        lease_until: UnixMillis,
        connections: u32,
    ) -> Applied {
        if !self.fleet.takes_delivery_work(owner) {
            // Drained or stopped after the leader planned this: it would never pick the
            // work up, and the messages would wait for a lease to lapse.
            return Applied::new(
                Response::Assigned {
                    token: index,
                    assigned: Vec::new(),
                },
                Vec::new(),
            );
        }
        let mut assigned = Vec::with_capacity(ids.len());
        let mut changes = Vec::with_capacity(ids.len() + 1);
        let mut lapsed = 0;
        for id in ids {
            let Some(entry) = self.entries.get_mut(id) else {
                continue;
            };
            if entry.state != MessageState::Queued {
                continue;
            }
            if let Some(current) = entry.assignment {
                if current.lease_until > now {
                    // A valid lease, whoever holds it: never two tokens in flight.
                    continue;
                }
                // The previous owner's lease ran out with no outcome reported.
                lapsed += 1;
            }
            entry.assignment = Some(Assignment {
                owner,
                token: index,
                lease_until,
                connections,
            });
            entry.history.push(HistoryEvent::Assigned {
                at: now,
                owner,
                token: index,
                lease_until,
            });
            assigned.push(*id);
            changes.push(Change::Entry(*id));
        }
        if lapsed > 0 {
            self.fleet.lapsed_reassignments += lapsed;
            changes.push(Change::Fleet);
        }
        Applied::new(
            Response::Assigned {
                token: index,
                assigned,
            },
            changes,
        )
    }

    pub(super) fn apply_renew(
        &mut self,
        leases: &[(QueueId, u64)],
        lease_until: UnixMillis,
    ) -> Applied {
        let mut rejected = Vec::new();
        let mut changes = Vec::with_capacity(leases.len());
        for (id, token) in leases {
            match self.current_assignment(*id, *token) {
                Ok(entry) => {
                    if let Some(assignment) = entry.assignment.as_mut() {
                        assignment.lease_until = assignment.lease_until.max(lease_until);
                    }
                    changes.push(Change::Entry(*id));
                }
                Err(rejection) => rejected.push(rejection),
            }
        }
        Applied::new(Response::Batch { rejected }, changes)
    }

    pub(super) fn apply_return(&mut self, leases: &[(QueueId, u64)], at: UnixMillis) -> Applied {
        let mut rejected = Vec::new();
        let mut changes = Vec::with_capacity(leases.len());
        for (id, token) in leases {
            match self.current_assignment(*id, *token) {
                Ok(entry) => {
                    entry.assignment = None;
                    entry
                        .history
                        .push(HistoryEvent::Returned { at, token: *token });
                    changes.push(Change::Entry(*id));
                }
                Err(rejection) => rejected.push(rejection),
            }
        }
        Applied::new(Response::Batch { rejected }, changes)
    }

    pub(super) fn apply_attempts(&mut self, index: u64, reports: &[AttemptReport]) -> Applied {
        let mut rejected = Vec::new();
        let mut changes = Vec::with_capacity(reports.len() + 1);
        let mut fleet_changed = false;
        for report in reports {
            let entry = match self.current_assignment(report.id, report.token) {
                Ok(entry) => entry,
                Err(rejection) => {
                    if let Some(entry) = self.entries.get_mut(&report.id) {
                        entry.history.push(HistoryEvent::StaleOutcomeRejected {
                            at: report.at,
                            token: report.token,
                            current_token: entry.assignment.map(|a| a.token),
                        });
                        changes.push(Change::Entry(report.id));
                    }
                    self.fleet.stale_outcomes += 1;
                    fleet_changed = true;
                    rejected.push(rejection);
                    continue;
                }
            };
            entry.attempts += 1;
            entry.last_attempt_at = Some(report.at);
            for result in &report.results {
                let Some(recipient) = entry
                    .recipients
                    .iter_mut()
                    .find(|r| r.address == result.recipient && r.state == RecipientState::Pending)
                else {
                    continue;
                };
                recipient.last_reply = Some(result.reply.clone());
                recipient.state = match result.status {
                    OutcomeStatus::Delivered => RecipientState::Delivered,
                    OutcomeStatus::Bounced => RecipientState::Bounced { notified: false },
                    OutcomeStatus::Deferred => RecipientState::Pending,
                };
            }
            let any_pending = entry.pending_recipients().next().is_some();
            entry.history.push(HistoryEvent::Attempt {
                at: report.at,
                token: report.token,
                relay: report.relay.clone(),
                results: report.results.clone(),
                next_attempt_at: any_pending.then_some(report.next_attempt_at),
                lost_after_dot: report.lost_after_dot,
            });
            if any_pending {
                entry.assignment = None;
                entry.next_attempt_at = report.next_attempt_at;
            } else {
                finish_recipients_done(entry, index);
            }
            changes.push(Change::Entry(report.id));
            if report.lost_after_dot {
                self.fleet.lost_after_dot += 1;
                fleet_changed = true;
            }
        }
        if fleet_changed {
            changes.push(Change::Fleet);
        }
        Applied::new(Response::Batch { rejected }, changes)
    }

    pub(super) fn apply_notified(
        &mut self,
        id: QueueId,
        kind: NotificationKind,
        dsn: Option<QueueId>,
        at: UnixMillis,
    ) -> Applied {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Applied::rejected(Rejection::UnknownMessage(id), vec![]);
        };
        match kind {
            NotificationKind::Failure => {
                for recipient in &mut entry.recipients {
                    if recipient.state == (RecipientState::Bounced { notified: false }) {
                        recipient.state = RecipientState::Bounced { notified: true };
                    }
                }
            }
            NotificationKind::DelayWarning => entry.delay_warned = true,
        }
        entry.history.push(HistoryEvent::Notified { at, kind, dsn });
        Applied::new(Response::Done, vec![Change::Entry(id)])
    }

    pub(super) fn apply_reachability(
        &mut self,
        node: NodeId,
        destination: &str,
        reachable: bool,
        at: UnixMillis,
        detail: &str,
    ) -> Applied {
        let state = self
            .fleet
            .destinations
            .entry(destination.to_string())
            .or_default();
        let fleet_saw_it_down = !state.reachability.is_empty() && !state.is_up();
        let node_saw_it_down = state.reachability.get(&node).is_some_and(|r| !r.reachable);
        state.reachability.insert(
            node,
            Reachability {
                reachable,
                at,
                detail: detail.to_string(),
            },
        );
        // Back up: everything waiting for it is due now. A report that only confirms
        // what the fleet and this node already knew (the primary watch's heartbeat)
        // releases nothing, so mail deferred by a 4xx keeps its backoff.
        if reachable && (fleet_saw_it_down || node_saw_it_down) {
            state.released_at = state.released_at.max(Some(at));
        }
        Applied::new(Response::Done, vec![Change::Fleet])
    }

    pub(super) fn apply_flush(&mut self, destination: Option<&str>, at: UnixMillis) -> Applied {
        match destination {
            Some(destination) => {
                let state = self
                    .fleet
                    .destinations
                    .entry(destination.to_ascii_lowercase())
                    .or_default();
                state.released_at = state.released_at.max(Some(at));
            }
            None => self.fleet.flushed_at = self.fleet.flushed_at.max(Some(at)),
        }
        Applied::new(Response::Done, vec![Change::Fleet])
    }

    /// The entry if `token` is its current fencing token and it is not final.
    fn current_assignment(
        &mut self,
        id: QueueId,
        token: u64,
    ) -> Result<&mut crate::QueueEntry, Rejection> {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Err(Rejection::UnknownMessage(id));
        };
        let current = entry.assignment.map(|a| a.token);
        if current != Some(token) || entry.state.is_final() {
            return Err(Rejection::StaleToken { id, token, current });
        }
        Ok(entry)
    }
}
