//! Table-driven tests of `QueueState::apply`.

use super::*;
use crate::{
    AttemptReport, BodyDigest, Envelope, NodeId, NotificationKind, OutcomeStatus, RecipientOutcome,
};

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
        ids: vec![QueueId(id)],
        owner,
        now: UnixMillis(now),
        lease_until: UnixMillis(lease_until),
        connections: 1,
    }
}

/// An attempt report for message 1 under `token`, every recipient with `status`.
fn outcome(token: u64, at: u64, status: OutcomeStatus) -> Command {
    report(token, at, &[("r@example.org", status)])
}

fn report(token: u64, at: u64, results: &[(&str, OutcomeStatus)]) -> Command {
    Command::Attempted {
        reports: vec![AttemptReport {
            id: QueueId(1),
            token,
            at: UnixMillis(at),
            relay: Some("mx1.example.org[192.0.2.1]:25".into()),
            results: results
                .iter()
                .map(|(recipient, status)| RecipientOutcome {
                    recipient: recipient.to_string(),
                    status: *status,
                    reply: format!("{status:?}"),
                })
                .collect(),
            next_attempt_at: UnixMillis(at + 60_000),
            lost_after_dot: false,
        }],
    }
}

fn operator(action: OperatorAction, id: QueueId, at: u64) -> Command {
    Command::Operator {
        action,
        ids: vec![id],
        at: UnixMillis(at),
    }
}

fn stale(token: u64, current: Option<u64>) -> Response {
    Response::Batch {
        rejected: vec![Rejection::StaleToken {
            id: QueueId(1),
            token,
            current,
        }],
    }
}

fn assigned(token: u64, ids: &[u64]) -> Response {
    Response::Assigned {
        token,
        assigned: ids.iter().map(|id| QueueId(*id)).collect(),
    }
}

const DONE: Response = Response::Batch { rejected: vec![] };

/// Applies commands at consecutive indexes starting at 1 and returns the responses.
fn run(state: &mut QueueState, commands: &[Command]) -> Vec<Response> {
    run_from(state, 1, commands)
}

/// Applies commands at consecutive indexes starting at `first`.
fn run_from(state: &mut QueueState, first: u64, commands: &[Command]) -> Vec<Response> {
    commands
        .iter()
        .enumerate()
        .map(|(i, c)| state.apply(first + i as u64, c).response)
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
    use OutcomeStatus::{Bounced, Deferred, Delivered};
    // (commands after the enqueue at index 1, expected last response, expected state)
    let id = QueueId(1);
    let cases: Vec<(&str, Vec<Command>, Response, MessageState)> = vec![
        (
            "delivered with the current token",
            vec![assign(1, 7, 10, 100), outcome(2, 20, Delivered)],
            DONE,
            MessageState::Delivered,
        ),
        (
            "delivered with a stale token after reassignment",
            vec![
                assign(1, 7, 10, 100),
                assign(1, 8, 150, 300),
                outcome(2, 160, Delivered),
            ],
            stale(2, Some(3)),
            MessageState::Queued,
        ),
        (
            "no reassignment while a lease holds, even to the same owner",
            vec![assign(1, 7, 10, 100), assign(1, 8, 50, 300)],
            assigned(3, &[]),
            MessageState::Queued,
        ),
        (
            "reassignment once the lease has run out",
            vec![assign(1, 7, 10, 100), assign(1, 8, 100, 300)],
            assigned(3, &[1]),
            MessageState::Queued,
        ),
        (
            "an outcome without any assignment is stale",
            vec![outcome(1, 5, Bounced)],
            stale(1, None),
            MessageState::Queued,
        ),
        (
            "a second delivery of a delivered message is refused",
            vec![
                assign(1, 7, 10, 100),
                outcome(2, 20, Delivered),
                outcome(2, 21, Delivered),
            ],
            stale(2, None),
            MessageState::Delivered,
        ),
        (
            "a delivered message is never assigned again",
            vec![
                assign(1, 7, 10, 100),
                outcome(2, 20, Delivered),
                assign(1, 8, 200, 300),
            ],
            assigned(4, &[]),
            MessageState::Delivered,
        ),
        (
            "deferred clears the assignment and sets the next attempt",
            vec![assign(1, 7, 10, 100), outcome(2, 20, Deferred)],
            DONE,
            MessageState::Queued,
        ),
        (
            "a bounce finishes the message",
            vec![assign(1, 7, 10, 100), outcome(2, 20, Bounced)],
            DONE,
            MessageState::Bounced,
        ),
        (
            "an in-flight delivery still lands after a hold",
            vec![
                assign(1, 7, 10, 100),
                operator(OperatorAction::Hold, id, 15),
                outcome(2, 20, Delivered),
            ],
            DONE,
            MessageState::Delivered,
        ),
        (
            "a held message is not assigned",
            vec![
                operator(OperatorAction::Hold, id, 15),
                assign(1, 7, 20, 100),
            ],
            assigned(3, &[]),
            MessageState::Held,
        ),
        (
            "release returns a held message to the queue",
            vec![
                operator(OperatorAction::Hold, id, 15),
                operator(OperatorAction::Release, id, 16),
            ],
            DONE,
            MessageState::Queued,
        ),
        (
            "a deleted message cannot be released",
            vec![
                operator(OperatorAction::Delete, id, 15),
                operator(OperatorAction::Release, id, 16),
            ],
            Response::Batch {
                rejected: vec![Rejection::AlreadyFinal {
                    id,
                    state: MessageState::Deleted,
                }],
            },
            MessageState::Deleted,
        ),
        (
            "release of a message that is not held is refused",
            vec![operator(OperatorAction::Release, id, 15)],
            Response::Batch {
                rejected: vec![Rejection::NotHeld { id }],
            },
            MessageState::Queued,
        ),
        (
            "requeue of a held message is refused",
            vec![
                operator(OperatorAction::Hold, id, 15),
                operator(OperatorAction::Requeue, id, 16),
            ],
            Response::Batch {
                rejected: vec![Rejection::NotQueued {
                    id,
                    state: MessageState::Held,
                }],
            },
            MessageState::Held,
        ),
        (
            "bounce finishes the message as bounced",
            vec![operator(OperatorAction::Bounce, id, 15)],
            DONE,
            MessageState::Bounced,
        ),
        (
            "no bounce while an owner may be delivering",
            vec![
                assign(1, 7, 10, 100),
                operator(OperatorAction::Bounce, id, 15),
            ],
            Response::Batch {
                rejected: vec![Rejection::LeaseHeld {
                    id,
                    owner: 7,
                    lease_until: UnixMillis(100),
                }],
            },
            MessageState::Queued,
        ),
        (
            "no delete while an owner may be delivering",
            vec![
                assign(1, 7, 10, 100),
                operator(OperatorAction::Delete, id, 99),
            ],
            Response::Batch {
                rejected: vec![Rejection::LeaseHeld {
                    id,
                    owner: 7,
                    lease_until: UnixMillis(100),
                }],
            },
            MessageState::Queued,
        ),
        (
            "delete once the lease has run out",
            vec![
                assign(1, 7, 10, 100),
                operator(OperatorAction::Delete, id, 100),
            ],
            DONE,
            MessageState::Deleted,
        ),
        (
            "no assignment to a drained node",
            vec![
                Command::Drain {
                    node: 7,
                    drained: true,
                    at: UnixMillis(5),
                },
                assign(1, 7, 10, 100),
            ],
            assigned(3, &[]),
            MessageState::Queued,
        ),
        (
            "an unknown message is reported",
            vec![operator(OperatorAction::Hold, QueueId(99), 15)],
            Response::Batch {
                rejected: vec![Rejection::UnknownMessage(QueueId(99))],
            },
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
fn stale_outcomes_are_recorded_in_history_and_counted() {
    let mut state = QueueState::default();
    let id = QueueId(1);
    run(
        &mut state,
        &[
            enqueue("<a@x>", 1, 1),
            assign(1, 7, 10, 100),
            assign(1, 8, 150, 300),
            outcome(2, 160, OutcomeStatus::Delivered),
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
    assert_eq!(state.fleet.stale_outcomes, 1);
    assert_eq!(state.fleet.lapsed_reassignments, 1);
}

#[test]
fn partial_failure_keeps_deferred_recipients_pending_and_owes_one_dsn() {
    use OutcomeStatus::{Bounced, Deferred, Delivered};
    let mut state = QueueState::default();
    let mut first = enqueue("<p@x>", 1, 1);
    if let Command::Enqueue { envelope, .. } = &mut first {
        envelope.recipients = vec![
            "a@example.org".into(),
            "b@example.org".into(),
            "c@example.org".into(),
        ];
    }
    run(
        &mut state,
        &[
            first,
            assign(1, 7, 10, 100_000),
            report(
                2,
                20,
                &[
                    ("a@example.org", Delivered),
                    ("b@example.org", Bounced),
                    ("c@example.org", Deferred),
                ],
            ),
        ],
    );
    let entry = &state.entries[&QueueId(1)];
    assert_eq!(entry.state, MessageState::Queued);
    assert_eq!(
        entry.pending_recipients().collect::<Vec<_>>(),
        vec!["c@example.org"]
    );
    assert!(entry.assignment.is_none());
    assert_eq!(entry.next_attempt_at, UnixMillis(60_020));
    assert!(entry.owes_failure_dsn());

    // The DSN for b goes out; then c is delivered on the next attempt.
    let responses = run_from(
        &mut state,
        4,
        &[
            Command::Notified {
                id: QueueId(1),
                kind: NotificationKind::Failure,
                dsn: Some(QueueId(9)),
                at: UnixMillis(30),
            },
            assign(1, 8, 60_020, 160_000),
            report(5, 60_030, &[("c@example.org", Delivered)]),
        ],
    );
    assert_eq!(responses[2], DONE);
    let entry = &state.entries[&QueueId(1)];
    assert_eq!(entry.state, MessageState::Delivered);
    assert!(!entry.owes_failure_dsn());
    assert_eq!(entry.attempts, 2);
}

#[test]
fn null_sender_is_never_owed_a_dsn() {
    let mut state = QueueState::default();
    let mut first = enqueue("<n@x>", 1, 1);
    if let Command::Enqueue { envelope, .. } = &mut first {
        envelope.sender = String::new();
    }
    run(
        &mut state,
        &[
            first,
            assign(1, 7, 10, 100),
            outcome(2, 20, OutcomeStatus::Bounced),
        ],
    );
    assert_eq!(state.entries[&QueueId(1)].state, MessageState::Bounced);
    assert!(!state.entries[&QueueId(1)].owes_failure_dsn());
}

#[test]
fn reachability_and_flush_release_a_destination() {
    let mut state = QueueState::default();
    run_from(
        &mut state,
        1,
        &[Command::Reachability {
            node: 1,
            destination: "example.org".into(),
            reachable: false,
            at: UnixMillis(10),
            detail: "connection refused".into(),
        }],
    );
    assert_eq!(state.fleet.released_at("example.org"), None);
    assert!(!state.fleet.destinations["example.org"].is_up());
    run_from(
        &mut state,
        2,
        &[
            Command::Reachability {
                node: 2,
                destination: "example.org".into(),
                reachable: true,
                at: UnixMillis(20),
                detail: "220 ready".into(),
            },
            Command::Flush {
                destination: None,
                at: UnixMillis(30),
            },
        ],
    );
    assert!(state.fleet.destinations["example.org"].is_up());
    assert_eq!(state.fleet.released_at("example.org"), Some(UnixMillis(30)));
    assert_eq!(
        state.fleet.released_at("other.example"),
        Some(UnixMillis(30))
    );
}

fn reachable(node: u64, at: u64, reachable: bool) -> Command {
    Command::Reachability {
        node,
        destination: "example.org".into(),
        reachable,
        at: UnixMillis(at),
        detail: String::new(),
    }
}

#[test]
fn only_news_of_a_recovery_releases_a_destination() {
    let mut state = QueueState::default();
    // Up from the start: nothing was waiting for it.
    run_from(&mut state, 1, &[reachable(1, 10, true)]);
    assert_eq!(state.fleet.released_at("example.org"), None);
    // Down, then a probe finds it back: released.
    run_from(
        &mut state,
        2,
        &[reachable(1, 20, false), reachable(1, 30, true)],
    );
    assert_eq!(state.fleet.released_at("example.org"), Some(UnixMillis(30)));
    // Heartbeats that only confirm it is up release nothing more, so mail deferred by
    // a 4xx keeps its backoff.
    run_from(
        &mut state,
        4,
        &[reachable(1, 40, true), reachable(2, 50, true)],
    );
    assert_eq!(state.fleet.released_at("example.org"), Some(UnixMillis(30)));
    // One node that had lost its route gets it back: released again, since that node
    // may hold assignments it deferred.
    run_from(
        &mut state,
        6,
        &[reachable(2, 60, false), reachable(2, 70, true)],
    );
    assert_eq!(state.fleet.released_at("example.org"), Some(UnixMillis(70)));
}

#[test]
fn renewal_extends_only_the_current_token() {
    let mut state = QueueState::default();
    run(&mut state, &[enqueue("<a@x>", 1, 1), assign(1, 7, 10, 100)]);
    let responses = run_from(
        &mut state,
        3,
        &[
            Command::RenewLease {
                leases: vec![(QueueId(1), 2)],
                lease_until: UnixMillis(500),
            },
            Command::RenewLease {
                leases: vec![(QueueId(1), 1)],
                lease_until: UnixMillis(900),
            },
        ],
    );
    assert_eq!(responses[0], DONE);
    assert_eq!(responses[1], stale(1, Some(2)));
    assert_eq!(
        state.entries[&QueueId(1)].assignment.unwrap().lease_until,
        UnixMillis(500)
    );
}

#[test]
fn state_round_trips_through_postcard() {
    let mut state = QueueState::default();
    run(&mut state, &[enqueue("<a@x>", 1, 1), assign(1, 7, 10, 100)]);
    let bytes = postcard::to_stdvec(&state).unwrap();
    let back: QueueState = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, state);
}

#[test]
fn a_returned_assignment_is_free_at_once_and_not_counted_as_lapsed() {
    let mut state = QueueState::default();
    let responses = run(
        &mut state,
        &[
            enqueue("<a@x>", 1, 1),
            assign(1, 7, 10, 100_000),
            Command::ReturnLeases {
                leases: vec![(QueueId(1), 2), (QueueId(1), 2)],
                at: UnixMillis(20),
            },
            assign(1, 8, 30, 100_000),
        ],
    );
    assert_eq!(
        responses[2],
        Response::Batch {
            rejected: vec![Rejection::StaleToken {
                id: QueueId(1),
                token: 2,
                current: None
            }]
        },
        "the second return of the same token is stale"
    );
    assert_eq!(responses[3], assigned(4, &[1]));
    assert_eq!(state.fleet.lapsed_reassignments, 0);
}

#[test]
fn requeue_makes_a_deferred_message_due_now() {
    let mut state = QueueState::default();
    let id = QueueId(1);
    run(
        &mut state,
        &[
            enqueue("<a@x>", 1, 1),
            assign(1, 7, 10, 100),
            outcome(2, 20, OutcomeStatus::Deferred),
        ],
    );
    assert_eq!(state.entries[&id].next_attempt_at, UnixMillis(60_020));
    let response = state
        .apply(4, &operator(OperatorAction::Requeue, id, 30))
        .response;
    assert_eq!(response, DONE);
    assert_eq!(state.entries[&id].next_attempt_at, UnixMillis(30));
    assert_eq!(
        state.entries[&id].history.last(),
        Some(&HistoryEvent::Requeued { at: UnixMillis(30) })
    );
}

#[test]
fn bounce_owes_the_sender_a_failure_dsn_for_pending_recipients_only() {
    let mut state = QueueState::default();
    let id = QueueId(1);
    let mut envelope_two = enqueue("<a@x>", 1, 1);
    if let Command::Enqueue { envelope, .. } = &mut envelope_two {
        envelope.recipients.push("second@example.org".into());
    }
    run(
        &mut state,
        &[
            envelope_two,
            assign(1, 7, 10, 100),
            report(
                2,
                20,
                &[
                    ("r@example.org", OutcomeStatus::Delivered),
                    ("second@example.org", OutcomeStatus::Deferred),
                ],
            ),
        ],
    );
    state.apply(4, &operator(OperatorAction::Bounce, id, 30));
    let entry = &state.entries[&id];
    assert_eq!(entry.state, MessageState::Delivered, "one recipient had it");
    assert_eq!(entry.recipients[0].state, RecipientState::Delivered);
    assert_eq!(
        entry.recipients[1].state,
        RecipientState::Bounced { notified: false }
    );
    assert!(entry.owes_failure_dsn());
    assert_eq!(entry.finished_at_index, Some(4));
}

#[test]
fn one_operator_command_acts_on_many_and_reports_each_refusal() {
    let mut state = QueueState::default();
    run(
        &mut state,
        &[enqueue("<a@x>", 1, 1), enqueue("<b@x>", 2, 1)],
    );
    let applied = state.apply(
        3,
        &Command::Operator {
            action: OperatorAction::Hold,
            ids: vec![QueueId(1), QueueId(2), QueueId(77)],
            at: UnixMillis(5),
        },
    );
    assert_eq!(
        applied.response,
        Response::Batch {
            rejected: vec![Rejection::UnknownMessage(QueueId(77))]
        }
    );
    assert_eq!(
        applied.changes,
        vec![Change::Entry(QueueId(1)), Change::Entry(QueueId(2))]
    );
    assert!(
        state
            .entries
            .values()
            .all(|e| e.state == MessageState::Held)
    );
}

#[test]
fn a_drained_node_takes_no_delivery_work_until_undrained() {
    let mut state = QueueState::default();
    let drain = |drained| Command::Drain {
        node: 2,
        drained,
        at: UnixMillis(1),
    };
    state.apply(1, &drain(true));
    assert!(!state.fleet.takes_delivery_work(2));
    assert!(state.fleet.takes_delivery_work(1));
    state.apply(2, &drain(false));
    assert!(state.fleet.takes_delivery_work(2));
}

#[test]
fn caught_resubmissions_are_counted() {
    let mut state = QueueState::default();
    run(
        &mut state,
        &[
            enqueue("<a@x>", 1, 1),
            enqueue("<a@x>", 2, 2),
            enqueue("<a@x>", 3, 3),
        ],
    );
    assert_eq!(state.entries.len(), 1);
    assert_eq!(state.fleet.duplicate_submissions, 2);
}

#[test]
fn finished_messages_are_forgotten_only_after_their_dedup_record_is_gone() {
    let mut state = QueueState::default();
    run(
        &mut state,
        &[
            enqueue("<a@x>", 1, 1),
            enqueue("<b@x>", 2, 1),
            assign(1, 7, 10, 100),
            outcome(3, 20, OutcomeStatus::Delivered),
        ],
    );
    // Delivered, but its dedup record still guards against a resubmission.
    let applied = state.apply(
        5,
        &Command::ForgetFinished {
            before: UnixMillis(1_000),
        },
    );
    assert_eq!(applied.changes, vec![]);
    state.apply(
        6,
        &Command::ExpireDedup {
            now: UnixMillis(WINDOW + 10),
        },
    );
    assert!(state.dedup.is_empty());
    // Not before its last event...
    state.apply(
        7,
        &Command::ForgetFinished {
            before: UnixMillis(20),
        },
    );
    assert_eq!(state.entries.len(), 2);
    // ...then forgotten; the live message stays.
    let applied = state.apply(
        8,
        &Command::ForgetFinished {
            before: UnixMillis(21),
        },
    );
    assert_eq!(applied.changes, vec![Change::Entry(QueueId(1))]);
    assert_eq!(
        state.entries.keys().copied().collect::<Vec<_>>(),
        vec![QueueId(2)]
    );
}

#[test]
fn a_bounced_message_is_kept_until_its_dsn_is_sent() {
    let mut state = QueueState::default();
    run(
        &mut state,
        &[
            enqueue("<a@x>", 1, 1),
            operator(OperatorAction::Bounce, QueueId(1), 2),
            Command::ExpireDedup {
                now: UnixMillis(WINDOW + 10),
            },
        ],
    );
    assert!(state.entries[&QueueId(1)].owes_failure_dsn());
    let applied = state.apply(
        4,
        &Command::ForgetFinished {
            before: UnixMillis(u64::MAX),
        },
    );
    assert_eq!(applied.changes, vec![], "the DSN is still owed");
    state.apply(
        5,
        &Command::Notified {
            id: QueueId(1),
            kind: NotificationKind::Failure,
            dsn: Some(QueueId(9)),
            at: UnixMillis(3),
        },
    );
    let applied = state.apply(
        6,
        &Command::ForgetFinished {
            before: UnixMillis(u64::MAX),
        },
    );
    assert_eq!(applied.changes, vec![Change::Entry(QueueId(1))]);
}
