//! The replicated queue's state and its pure transition function.
//!
//! `QueueState::apply(index, command)` is the only way the state changes. It reads no
//! clock and performs no I/O; it reports which keys it touched (`Change`) so that the
//! storage layer can persist exactly those in the same batch as `last_applied`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    Assignment, Command, DedupKey, HistoryEvent, MessageState, QueueEntry, QueueId, Rejection,
    Response, UnixMillis,
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
                    return Applied::new(
                        Response::Enqueued {
                            id: record.id,
                            duplicate: true,
                        },
                        vec![Change::Entry(record.id)],
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
                id,
                owner,
                now,
                lease_until,
            } => {
                let Some(entry) = self.entries.get_mut(id) else {
                    return Applied::rejected(Rejection::UnknownMessage(*id), vec![]);
                };
                if entry.state != MessageState::Queued {
                    return Applied::rejected(
                        Rejection::NotQueued {
                            id: *id,
                            state: entry.state,
                        },
                        vec![],
                    );
                }
                if let Some(current) = entry.assignment
                    && current.owner != *owner
                    && current.lease_until > *now
                {
                    return Applied::rejected(
                        Rejection::LeaseHeld {
                            id: *id,
                            owner: current.owner,
                            lease_until: current.lease_until,
                        },
                        vec![],
                    );
                }
                entry.assignment = Some(Assignment {
                    owner: *owner,
                    token: index,
                    lease_until: *lease_until,
                });
                entry.history.push(HistoryEvent::Assigned {
                    at: *now,
                    owner: *owner,
                    token: index,
                    lease_until: *lease_until,
                });
                Applied::new(
                    Response::Assigned {
                        id: *id,
                        token: index,
                    },
                    vec![Change::Entry(*id)],
                )
            }
            Command::RenewLease {
                id,
                token,
                lease_until,
            } => self.with_current_token(index, *id, *token, None, |entry| {
                if let Some(assignment) = entry.assignment.as_mut() {
                    assignment.lease_until = assignment.lease_until.max(*lease_until);
                }
                entry.history.push(HistoryEvent::LeaseRenewed {
                    token: *token,
                    lease_until: *lease_until,
                });
            }),
            Command::Delivered {
                id,
                token,
                at,
                reply,
            } => self.with_current_token(index, *id, *token, Some(*at), |entry| {
                entry.attempts += 1;
                entry.history.push(HistoryEvent::Delivered {
                    at: *at,
                    token: *token,
                    reply: reply.clone(),
                });
                finish(entry, MessageState::Delivered, index);
            }),
            Command::Deferred {
                id,
                token,
                at,
                reply,
                next_attempt_at,
            } => self.with_current_token(index, *id, *token, Some(*at), |entry| {
                entry.attempts += 1;
                entry.assignment = None;
                entry.next_attempt_at = *next_attempt_at;
                entry.history.push(HistoryEvent::Deferred {
                    at: *at,
                    token: *token,
                    reply: reply.clone(),
                    next_attempt_at: *next_attempt_at,
                });
            }),
            Command::Bounced {
                id,
                token,
                at,
                reply,
            } => self.with_current_token(index, *id, *token, Some(*at), |entry| {
                entry.attempts += 1;
                entry.history.push(HistoryEvent::Bounced {
                    at: *at,
                    token: *token,
                    reply: reply.clone(),
                });
                finish(entry, MessageState::Bounced, index);
            }),
            Command::Hold { id, at } => self.operator_action(*id, |entry| {
                // The assignment survives a hold, so that the outcome of an attempt
                // already in flight is still recorded; nothing new is assigned.
                entry.state = MessageState::Held;
                entry.history.push(HistoryEvent::Held { at: *at });
            }),
            Command::Release { id, at } => self.operator_action(*id, |entry| {
                if entry.state == MessageState::Held {
                    entry.state = MessageState::Queued;
                    entry.next_attempt_at = *at;
                    entry.history.push(HistoryEvent::Released { at: *at });
                }
            }),
            Command::Delete { id, at } => self.operator_action(*id, |entry| {
                entry.history.push(HistoryEvent::Deleted { at: *at });
                finish(entry, MessageState::Deleted, index);
            }),
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
        }
    }

    /// Runs `update` if `token` is the message's current fencing token; otherwise
    /// records the stale outcome in the history and rejects it.
    fn with_current_token(
        &mut self,
        _index: u64,
        id: QueueId,
        token: u64,
        at: Option<UnixMillis>,
        update: impl FnOnce(&mut QueueEntry),
    ) -> Applied {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Applied::rejected(Rejection::UnknownMessage(id), vec![]);
        };
        let current = entry.assignment.map(|a| a.token);
        if current != Some(token) || entry.state.is_final() {
            if let Some(at) = at {
                entry.history.push(HistoryEvent::StaleOutcomeRejected {
                    at,
                    token,
                    current_token: current,
                });
            }
            return Applied::rejected(
                Rejection::StaleToken { id, token, current },
                vec![Change::Entry(id)],
            );
        }
        update(entry);
        Applied::new(Response::Done, vec![Change::Entry(id)])
    }

    fn operator_action(&mut self, id: QueueId, update: impl FnOnce(&mut QueueEntry)) -> Applied {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Applied::rejected(Rejection::UnknownMessage(id), vec![]);
        };
        if entry.state.is_final() {
            return Applied::rejected(
                Rejection::AlreadyFinal {
                    id,
                    state: entry.state,
                },
                vec![],
            );
        }
        update(entry);
        Applied::new(Response::Done, vec![Change::Entry(id)])
    }

    /// Messages that still need delivery (not final).
    pub fn live_entries(&self) -> impl Iterator<Item = &QueueEntry> {
        self.entries.values().filter(|e| !e.state.is_final())
    }
}

fn finish(entry: &mut QueueEntry, state: MessageState, index: u64) {
    entry.state = state;
    entry.assignment = None;
    entry.finished_at_index = Some(index);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BodyDigest, Envelope, NodeId};

    const WINDOW: u64 = 7 * 24 * 3600 * 1000;

    fn enqueue(message_id: &str, at: u64, by: NodeId) -> Command {
        let envelope = Envelope {
            sender: "s@sender.example".into(),
            recipients: vec!["r@example.org".into()],
            message_id: Some(message_id.into()),
            trace: None,
        };
        let body = BodyDigest::of(message_id.as_bytes());
        Command::Enqueue {
            dedup_key: DedupKey::derive(
                envelope.message_id.as_deref(),
                &envelope.sender,
                &envelope.recipients,
                &body,
            ),
            envelope,
            body,
            size: 10,
            received_at: UnixMillis(at),
            accepted_by: by,
            body_holders: vec![1, 2],
            dedup_window_ms: WINDOW,
        }
    }

    fn assign(id: u64, owner: NodeId, now: u64, lease_until: u64) -> Command {
        Command::Assign {
            id: QueueId(id),
            owner,
            now: UnixMillis(now),
            lease_until: UnixMillis(lease_until),
        }
    }

    /// Applies commands at consecutive indexes starting at 1 and returns the responses.
    fn run(state: &mut QueueState, commands: &[Command]) -> Vec<Response> {
        commands
            .iter()
            .enumerate()
            .map(|(i, c)| state.apply(i as u64 + 1, c).response)
            .collect()
    }

    #[test]
    fn enqueue_uses_log_index_as_id_and_dedups_within_window() {
        let mut state = QueueState::default();
        let responses = run(
            &mut state,
            &[
                enqueue("<a@x>", 1_000, 1),
                enqueue("<a@x>", 2_000, 2),
                enqueue("<b@x>", 3_000, 1),
            ],
        );
        assert_eq!(
            responses,
            vec![
                Response::Enqueued {
                    id: QueueId(1),
                    duplicate: false
                },
                Response::Enqueued {
                    id: QueueId(1),
                    duplicate: true
                },
                Response::Enqueued {
                    id: QueueId(3),
                    duplicate: false
                },
            ]
        );
        assert_eq!(state.entries.len(), 2);
        assert!(matches!(
            state.entries[&QueueId(1)].history.last(),
            Some(HistoryEvent::DuplicateSubmission { by: 2, .. })
        ));
    }

    #[test]
    fn a_repeat_after_the_dedup_window_is_a_new_message() {
        let mut state = QueueState::default();
        let responses = run(
            &mut state,
            &[
                enqueue("<a@x>", 1_000, 1),
                enqueue("<a@x>", 1_000 + WINDOW, 1),
            ],
        );
        assert_eq!(
            responses[1],
            Response::Enqueued {
                id: QueueId(2),
                duplicate: false
            }
        );
    }

    #[test]
    fn expire_dedup_drops_only_ended_windows() {
        let mut state = QueueState::default();
        run(
            &mut state,
            &[enqueue("<a@x>", 1_000, 1), enqueue("<b@x>", 5_000, 1)],
        );
        let applied = state.apply(
            3,
            &Command::ExpireDedup {
                now: UnixMillis(1_000 + WINDOW),
            },
        );
        assert_eq!(applied.changes.len(), 1);
        assert_eq!(state.dedup.len(), 1);
    }

    #[test]
    fn outcome_table_checks_fencing_tokens() {
        // (commands after enqueue at index 1, expected last response, expected state)
        let id = QueueId(1);
        let cases: Vec<(&str, Vec<Command>, Response, MessageState)> = vec![
            (
                "delivered with the current token",
                vec![
                    assign(1, 7, 10, 100),
                    Command::Delivered {
                        id,
                        token: 2,
                        at: UnixMillis(20),
                        reply: "250 ok".into(),
                    },
                ],
                Response::Done,
                MessageState::Delivered,
            ),
            (
                "delivered with a stale token after reassignment",
                vec![
                    assign(1, 7, 10, 100),
                    assign(1, 8, 150, 300),
                    Command::Delivered {
                        id,
                        token: 2,
                        at: UnixMillis(160),
                        reply: "250".into(),
                    },
                ],
                Response::Rejected(Rejection::StaleToken {
                    id,
                    token: 2,
                    current: Some(3),
                }),
                MessageState::Queued,
            ),
            (
                "reassignment refused while another owner's lease holds",
                vec![assign(1, 7, 10, 100), assign(1, 8, 50, 300)],
                Response::Rejected(Rejection::LeaseHeld {
                    id,
                    owner: 7,
                    lease_until: UnixMillis(100),
                }),
                MessageState::Queued,
            ),
            (
                "an outcome without any assignment is stale",
                vec![Command::Bounced {
                    id,
                    token: 1,
                    at: UnixMillis(5),
                    reply: "550".into(),
                }],
                Response::Rejected(Rejection::StaleToken {
                    id,
                    token: 1,
                    current: None,
                }),
                MessageState::Queued,
            ),
            (
                "a second delivery of a delivered message is refused",
                vec![
                    assign(1, 7, 10, 100),
                    Command::Delivered {
                        id,
                        token: 2,
                        at: UnixMillis(20),
                        reply: "250".into(),
                    },
                    Command::Delivered {
                        id,
                        token: 2,
                        at: UnixMillis(21),
                        reply: "250".into(),
                    },
                ],
                Response::Rejected(Rejection::StaleToken {
                    id,
                    token: 2,
                    current: None,
                }),
                MessageState::Delivered,
            ),
            (
                "deferred clears the assignment and sets the next attempt",
                vec![
                    assign(1, 7, 10, 100),
                    Command::Deferred {
                        id,
                        token: 2,
                        at: UnixMillis(20),
                        reply: "451 try later".into(),
                        next_attempt_at: UnixMillis(60_000),
                    },
                ],
                Response::Done,
                MessageState::Queued,
            ),
            (
                "an in-flight delivery still lands after a hold",
                vec![
                    assign(1, 7, 10, 100),
                    Command::Hold {
                        id,
                        at: UnixMillis(15),
                    },
                    Command::Delivered {
                        id,
                        token: 2,
                        at: UnixMillis(20),
                        reply: "250".into(),
                    },
                ],
                Response::Done,
                MessageState::Delivered,
            ),
            (
                "a held message is not assigned",
                vec![
                    Command::Hold {
                        id,
                        at: UnixMillis(15),
                    },
                    assign(1, 7, 20, 100),
                ],
                Response::Rejected(Rejection::NotQueued {
                    id,
                    state: MessageState::Held,
                }),
                MessageState::Held,
            ),
            (
                "release returns a held message to the queue",
                vec![
                    Command::Hold {
                        id,
                        at: UnixMillis(15),
                    },
                    Command::Release {
                        id,
                        at: UnixMillis(16),
                    },
                ],
                Response::Done,
                MessageState::Queued,
            ),
            (
                "a deleted message cannot be released",
                vec![
                    Command::Delete {
                        id,
                        at: UnixMillis(15),
                    },
                    Command::Release {
                        id,
                        at: UnixMillis(16),
                    },
                ],
                Response::Rejected(Rejection::AlreadyFinal {
                    id,
                    state: MessageState::Deleted,
                }),
                MessageState::Deleted,
            ),
            (
                "an unknown message is reported",
                vec![Command::Hold {
                    id: QueueId(99),
                    at: UnixMillis(15),
                }],
                Response::Rejected(Rejection::UnknownMessage(QueueId(99))),
                MessageState::Queued,
            ),
        ];
        for (name, commands, expected_response, expected_state) in cases {
            let mut state = QueueState::default();
            let mut all = vec![enqueue("<a@x>", 1, 1)];
            all.extend(commands);
            let responses = run(&mut state, &all);
            assert_eq!(
                responses.last().unwrap(),
                &expected_response,
                "case: {name}"
            );
            assert_eq!(state.entries[&id].state, expected_state, "case: {name}");
        }
    }

    #[test]
    fn stale_outcomes_are_recorded_in_history() {
        let mut state = QueueState::default();
        let id = QueueId(1);
        run(
            &mut state,
            &[
                enqueue("<a@x>", 1, 1),
                assign(1, 7, 10, 100),
                assign(1, 8, 150, 300),
                Command::Delivered {
                    id,
                    token: 2,
                    at: UnixMillis(160),
                    reply: "250".into(),
                },
            ],
        );
        assert!(matches!(
            state.entries[&id].history.last(),
            Some(HistoryEvent::StaleOutcomeRejected {
                token: 2,
                current_token: Some(3),
                ..
            })
        ));
    }

    #[test]
    fn state_round_trips_through_postcard() {
        let mut state = QueueState::default();
        run(&mut state, &[enqueue("<a@x>", 1, 1), assign(1, 7, 10, 100)]);
        let bytes = postcard::to_stdvec(&state).unwrap();
        let back: QueueState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, state);
    }
}
