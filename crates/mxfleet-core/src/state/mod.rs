//! The replicated queue's state and its pure transition function.
//!
//! `QueueState::apply(index, command)` is the only way the state changes. It reads no
//! clock and performs no I/O; it reports which keys it touched (`Change`) so that the
//! storage layer can persist exactly those in the same batch as `last_applied`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod delivery;

use crate::delivery::{RecipientState, RecipientStatus};
use crate::{
    Command, DedupKey, FleetState, HistoryEvent, MessageState, OperatorAction, QueueEntry, QueueId,
    Rejection, Response, SpamKey, SpamState, UnixMillis,
};

/// A dedup index record: which message a submission became, and until when a repeat
/// counts as the same submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupRecord {
    pub id: QueueId,
    pub expires_at: UnixMillis,
}

/// Every queue entry and the dedup index. Identical on every replica at the same
/// applied index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    pub entries: BTreeMap<QueueId, QueueEntry>,
    pub dedup: BTreeMap<DedupKey, DedupRecord>,
    /// Destinations, reachability and delivery counters (see `FleetState`).
    pub fleet: FleetState,
    /// Greylisting, allowlisted clients and verified recipients (see `SpamState`).
    pub spam: SpamState,
}

/// A key that `apply` wrote or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The entry now has a new value (read it from the state).
    Entry(QueueId),
    /// The dedup record now has a new value.
    DedupPut(DedupKey),
    /// The dedup record is gone.
    DedupRemoved(DedupKey),
    /// `fleet` changed.
    Fleet,
    /// A record of `spam` was written or removed.
    Spam(SpamKey),
}

/// The answer of one `apply` and the keys it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub response: Response,
    pub changes: Vec<Change>,
}

impl Applied {
    fn new(response: Response, changes: Vec<Change>) -> Self {
        Applied { response, changes }
    }

    fn rejected(rejection: Rejection, changes: Vec<Change>) -> Self {
        Applied {
            response: Response::Rejected(rejection),
            changes,
        }
    }
}

impl QueueState {
    /// Applies `command`, which the Raft log holds at `index`.
    pub fn apply(&mut self, index: u64, command: &Command) -> Applied {
        match command {
            Command::Enqueue {
                dedup_key,
                envelope,
                body,
                size,
                received_at,
                accepted_by,
                body_holders,
                dedup_window_ms,
            } => {
                if let Some(record) = self.dedup.get(dedup_key).copied()
                    && record.expires_at > *received_at
                    && let Some(entry) = self.entries.get_mut(&record.id)
                {
                    entry.history.push(HistoryEvent::DuplicateSubmission {
                        at: *received_at,
                        by: *accepted_by,
                    });
                    self.fleet.duplicate_submissions += 1;
                    return Applied::new(
                        Response::Enqueued {
                            id: record.id,
                            duplicate: true,
                        },
                        vec![Change::Entry(record.id), Change::Fleet],
                    );
                }
                let id = QueueId(index);
                self.entries.insert(
                    id,
                    QueueEntry {
                        id,
                        dedup_key: *dedup_key,
                        envelope: envelope.clone(),
                        body: *body,
                        size: *size,
                        received_at: *received_at,
                        accepted_by: *accepted_by,
                        body_holders: body_holders.clone(),
                        state: MessageState::Queued,
                        next_attempt_at: *received_at,
                        attempts: 0,
                        last_attempt_at: None,
                        recipients: envelope
                            .recipients
                            .iter()
                            .map(|address| RecipientStatus {
                                address: address.clone(),
                                state: RecipientState::Pending,
                                last_reply: None,
                            })
                            .collect(),
                        delay_warned: false,
                        assignment: None,
                        finished_at_index: None,
                        history: vec![HistoryEvent::Accepted {
                            at: *received_at,
                            by: *accepted_by,
                        }],
                    },
                );
                self.dedup.insert(
                    *dedup_key,
                    DedupRecord {
                        id,
                        expires_at: received_at.plus_millis(*dedup_window_ms),
                    },
                );
                Applied::new(
                    Response::Enqueued {
                        id,
                        duplicate: false,
                    },
                    vec![Change::Entry(id), Change::DedupPut(*dedup_key)],
                )
            }
            Command::Assign {
                ids,
                owner,
                now,
                lease_until,
                connections,
            } => self.apply_assign(index, ids, *owner, *now, *lease_until, *connections),
            Command::RenewLease {
                leases,
                lease_until,
            } => self.apply_renew(leases, *lease_until),
            Command::OwnerAvailability {
                node, delivering, ..
            } => {
                if *delivering {
                    self.fleet.owners_stopped.remove(node);
                } else {
                    self.fleet.owners_stopped.insert(*node);
                }
                Applied::new(Response::Done, vec![Change::Fleet])
            }
            Command::ReturnLeases { leases, at } => self.apply_return(leases, *at),
            Command::Attempted { reports } => self.apply_attempts(index, reports),
            Command::Notified { id, kind, dsn, at } => self.apply_notified(*id, *kind, *dsn, *at),
            Command::Reachability {
                node,
                destination,
                reachable,
                at,
                detail,
            } => self.apply_reachability(*node, destination, *reachable, *at, detail),
            Command::Flush { destination, at } => self.apply_flush(destination.as_deref(), *at),
            Command::Operator { action, ids, at } => self.apply_operator(index, *action, ids, *at),
            Command::Drain { node, drained, .. } => {
                if *drained {
                    self.fleet.drained.insert(*node);
                } else {
                    self.fleet.drained.remove(node);
                }
                Applied::new(Response::Done, vec![Change::Fleet])
            }
            Command::ForgetFinished { before } => {
                let dedup = &self.dedup;
                let forgotten: Vec<QueueId> = self
                    .entries
                    .values()
                    .filter(|e| e.state.is_final() && e.last_event_at() < *before)
                    .filter(|e| dedup.get(&e.dedup_key).is_none_or(|r| r.id != e.id))
                    // A failure DSN still owed keeps the entry until it is sent.
                    .filter(|e| !e.owes_failure_dsn())
                    .map(|e| e.id)
                    .collect();
                for id in &forgotten {
                    self.entries.remove(id);
                }
                Applied::new(
                    Response::Done,
                    forgotten.into_iter().map(Change::Entry).collect(),
                )
            }
            Command::ExpireDedup { now } => {
                let expired: Vec<DedupKey> = self
                    .dedup
                    .iter()
                    .filter(|(_, record)| record.expires_at <= *now)
                    .map(|(key, _)| *key)
                    .collect();
                for key in &expired {
                    self.dedup.remove(key);
                }
                Applied::new(
                    Response::Done,
                    expired.into_iter().map(Change::DedupRemoved).collect(),
                )
            }
            Command::SpamFacts { facts } => {
                let changed = self.spam.apply_facts(facts);
                Applied::new(
                    Response::Done,
                    changed.into_iter().map(Change::Spam).collect(),
                )
            }
            Command::ExpireSpamState { now } => {
                let changed = self.spam.expire(*now);
                Applied::new(
                    Response::Done,
                    changed.into_iter().map(Change::Spam).collect(),
                )
            }
        }
    }

    fn apply_operator(
        &mut self,
        index: u64,
        action: OperatorAction,
        ids: &[QueueId],
        at: UnixMillis,
    ) -> Applied {
        let mut rejected = Vec::new();
        let mut changes = Vec::new();
        for &id in ids {
            match self.operator_action(index, action, id, at) {
                Ok(()) => changes.push(Change::Entry(id)),
                Err(rejection) => rejected.push(rejection),
            }
        }
        Applied::new(Response::Batch { rejected }, changes)
    }

    fn operator_action(
        &mut self,
        index: u64,
        action: OperatorAction,
        id: QueueId,
        at: UnixMillis,
    ) -> Result<(), Rejection> {
        let entry = self
            .entries
            .get_mut(&id)
            .ok_or(Rejection::UnknownMessage(id))?;
        if entry.state.is_final() {
            return Err(Rejection::AlreadyFinal {
                id,
                state: entry.state,
            });
        }
        // Deleting or bouncing a message an owner may be delivering right now could
        // tell the sender it failed while the primary takes it: refused until the
        // attempt ends (its outcome commits, or its lease runs out).
        if matches!(action, OperatorAction::Delete | OperatorAction::Bounce)
            && let Some(lease) = entry.assignment.filter(|a| a.lease_until > at)
        {
            return Err(Rejection::LeaseHeld {
                id,
                owner: lease.owner,
                lease_until: lease.lease_until,
            });
        }
        match action {
            OperatorAction::Hold => {
                // The assignment survives a hold, so that the outcome of an attempt
                // already in flight is still recorded; nothing new is assigned.
                entry.state = MessageState::Held;
                entry.history.push(HistoryEvent::Held { at });
            }
            OperatorAction::Release => {
                if entry.state != MessageState::Held {
                    return Err(Rejection::NotHeld { id });
                }
                entry.state = MessageState::Queued;
                entry.next_attempt_at = at;
                entry.history.push(HistoryEvent::Released { at });
            }
            OperatorAction::Requeue => {
                if entry.state != MessageState::Queued {
                    return Err(Rejection::NotQueued {
                        id,
                        state: entry.state,
                    });
                }
                entry.next_attempt_at = at;
                entry.history.push(HistoryEvent::Requeued { at });
            }
            OperatorAction::Delete => {
                entry.history.push(HistoryEvent::Deleted { at });
                finish(entry, MessageState::Deleted, index);
            }
            OperatorAction::Bounce => {
                for recipient in &mut entry.recipients {
                    if recipient.state == RecipientState::Pending {
                        recipient.state = RecipientState::Bounced { notified: false };
                        recipient.last_reply =
                            Some("5.0.0 returned to the sender by the postmaster".to_owned());
                    }
                }
                entry.history.push(HistoryEvent::BouncedByOperator { at });
                finish_recipients_done(entry, index);
            }
        }
        Ok(())
    }

    /// Messages that still need delivery (not final).
    pub fn live_entries(&self) -> impl Iterator<Item = &QueueEntry> {
        self.entries.values().filter(|e| !e.state.is_final())
    }
}

/// Finishes an entry none of whose recipients is pending: `Delivered` if any recipient
/// was delivered, otherwise `Bounced`.
pub(crate) fn finish_recipients_done(entry: &mut QueueEntry, index: u64) {
    let any_delivered = entry
        .recipients
        .iter()
        .any(|r| r.state == RecipientState::Delivered);
    let state = if any_delivered {
        MessageState::Delivered
    } else {
        MessageState::Bounced
    };
    finish(entry, state, index);
}

pub(crate) fn finish(entry: &mut QueueEntry, state: MessageState, index: u64) {
    entry.state = state;
    entry.assignment = None;
    entry.finished_at_index = Some(index);
}

#[cfg(test)]
mod tests;
