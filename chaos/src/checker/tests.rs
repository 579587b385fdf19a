//! The checker's verdicts and availability figures, table by table.

use std::net::SocketAddr;

use super::*;
use crate::load::{Attempt, ChaosMessage, Submitted};

use Outcome::{Fail, Ok, Refused, Unknown};

fn message(id: u64) -> ChaosMessage {
    ChaosMessage::build(1, id, "load@client.chaos", "example.test", 300)
}

/// A history of messages with attempts ending in these outcomes, in order, each to
/// node "n{i}" (the i-th attempt), ending at 100·id + 10·i ms.
fn history(messages: &[(u64, &[Outcome])]) -> History {
    let mut history = History::default();
    for (id, outcomes) in messages {
        let built = message(*id);
        history.messages.insert(
            *id,
            Submitted {
                id: *id,
                message_id: built.message_id,
                recipient: built.recipient,
                body_sha256: built.sha256,
                size: built.content.len(),
            },
        );
        for (i, outcome) in outcomes.iter().enumerate() {
            let ended_ms = 100 * id + 10 * i as u64;
            history
                .attempts
                .push(attempt(*id, &format!("n{i}"), ended_ms, *outcome));
        }
    }
    history
}

fn attempt(message: u64, node: &str, ended_ms: u64, outcome: Outcome) -> Attempt {
    Attempt {
        message,
        node: node.into(),
        started_ms: ended_ms.saturating_sub(5),
        ended_ms,
        outcome,
        reply: String::new(),
    }
}

/// The fleet's header exactly as mxfleet writes it (folded, TLS line included).
fn received(queue_id: &str) -> Vec<u8> {
    format!(
        "Received: from load.chaos ([127.0.0.1])\r\n\t(using TLSv1_3 TLS13_AES_256_GCM_SHA384)\r\n\
         \tby mx1.chaos (mxfleet) with ESMTPS id {queue_id}\r\n\tfor <user1@example.test>;\r\n\
         \tThu, 1 Jan 1970 00:00:00 +0000\r\n"
    )
    .into_bytes()
}

/// A copy of message `id` delivered under `queue_id` at `at_ms`.
fn copy(id: u64, queue_id: &str, at_ms: u64) -> Delivery {
    let mut data = received(queue_id);
    data.extend(message(id).content);
    Delivery::from_bytes(&data, Some("n1".into()), at_ms)
}

#[test]
fn a_fleet_copy_parses_into_chaos_id_queue_id_and_the_submitted_hash() {
    let delivery = copy(7, "00000000002A", 5);
    assert_eq!(delivery.chaos_id, Some(7));
    assert_eq!(delivery.queue_id.as_deref(), Some("00000000002A"));
    assert_eq!(delivery.body_sha256, Some(message(7).sha256));
    assert_eq!(
        delivery.message_id.as_deref(),
        Some("<chaos-1-7@load.chaos>")
    );
    let unfolded = Delivery::from_bytes(
        b"Received: from x by y (mxfleet) with ESMTP id 0000000000FF;\r\n\tdate\r\nX-Chaos-Id: 3\r\n\r\nbody\r\n",
        None,
        0,
    );
    assert_eq!(unfolded.queue_id.as_deref(), Some("0000000000FF"));
    assert_eq!(unfolded.chaos_id, Some(3));
    assert_eq!(
        unfolded.body_sha256,
        Some(sha256_hex(b"X-Chaos-Id: 3\r\n\r\nbody\r\n"))
    );
}

#[test]
fn only_the_topmost_received_header_names_the_queue_id() {
    let mut data = received("000000000001");
    data.extend(received("000000000002"));
    data.extend(message(1).content);
    let delivery = Delivery::from_bytes(&data, None, 0);
    assert_eq!(delivery.queue_id.as_deref(), Some("000000000001"));
    assert_eq!(delivery.body_sha256, Some(message(1).sha256));
}

#[test]
fn headers_in_the_body_are_not_read() {
    let delivery = Delivery::from_bytes(
        b"Subject: x\r\n\r\nX-Chaos-Id: 4\r\nReceived: by y id 1\r\n",
        None,
        0,
    );
    assert_eq!(delivery.chaos_id, None);
    assert_eq!(delivery.body_sha256, None);
    assert_eq!(delivery.queue_id, None);
}

#[test]
fn from_sink_names_the_node_by_client_address_and_times_from_the_epoch() {
    let epoch = Instant::now();
    let mut data = received("00000000000A");
    data.extend(message(2).content);
    let sink_message = SinkMessage {
        from: "bounce@fleet".into(),
        rcpts: vec!["user2@example.test".into()],
        data,
        tls: false,
        message_id: Some("<chaos-1-2@load.chaos>".into()),
        client: SocketAddr::from(([127, 0, 0, 12], 40000)),
        received_at: epoch + Duration::from_millis(1500),
    };
    let node_of = |ip: IpAddr| (ip == IpAddr::from([127, 0, 0, 12])).then(|| "n2".to_owned());
    let delivery = Delivery::from_sink(&sink_message, node_of, epoch);
    assert_eq!(delivery.from_node.as_deref(), Some("n2"));
    assert_eq!(delivery.at_ms, 1500);
    assert_eq!(delivery.chaos_id, Some(2));
    assert_eq!(delivery.queue_id.as_deref(), Some("00000000000A"));
}

#[test]
fn a_run_where_everything_arrives_once_holds() {
    let history = history(&[
        (1, &[Ok]),
        (2, &[Refused, Ok]),
        (3, &[Ok, Ok]),
        (4, &[Fail]),
    ]);
    let deliveries = [copy(1, "A", 10), copy(2, "B", 20), copy(3, "C", 30)];
    let verdict = check(&history, &deliveries);
    assert!(verdict.holds(), "{verdict}");
    assert_eq!(
        verdict,
        Verdict {
            submitted: 4,
            acked: 3,
            delivered: 3,
            refused_or_failed: 1,
            ..Verdict::default()
        }
    );
    assert!(verdict.to_string().starts_with("holds: submitted 4"));
}

#[test]
fn an_acked_message_never_delivered_is_lost() {
    let history = history(&[(1, &[Ok]), (2, &[Unknown, Ok]), (3, &[Ok])]);
    let verdict = check(&history, &[copy(3, "A", 1)]);
    assert_eq!(verdict.lost, [1, 2]);
    assert!(!verdict.holds());
    assert!(verdict.to_string().starts_with("VIOLATED"));
}

#[test]
fn a_copy_never_submitted_is_unexpected() {
    let history = history(&[(1, &[Ok])]);
    let verdict = check(
        &history,
        &[copy(1, "A", 1), copy(9, "B", 2), copy(9, "C", 3)],
    );
    assert_eq!(verdict.unexpected.len(), 1, "{:?}", verdict.unexpected);
    assert!(
        verdict.unexpected[0].starts_with("chaos id 9: 2 copies delivered but never submitted")
    );
    assert_eq!(verdict.delivered, 2);
    assert!(!verdict.holds());
}

#[test]
fn a_copy_without_a_readable_chaos_id_is_unexpected() {
    let history = history(&[]);
    let missing = Delivery::from_bytes(b"Subject: hi\r\n\r\nbody\r\n", None, 0);
    let garbled = Delivery::from_bytes(b"X-Chaos-Id: twelve\r\n\r\nbody\r\n", None, 0);
    assert_eq!(garbled.chaos_id, None);
    let verdict = check(&history, &[missing, garbled]);
    assert_eq!(verdict.unexpected.len(), 2, "{:?}", verdict.unexpected);
    assert_eq!(verdict.delivered, 0);
    assert!(!verdict.holds());
}

#[test]
fn a_body_that_differs_from_the_submission_is_unexpected() {
    let history = history(&[(1, &[Ok])]);
    let mut data = received("A");
    data.extend(message(1).content);
    let last = data.len() - 3;
    data[last] ^= 0x20;
    let altered = Delivery::from_bytes(&data, None, 1);
    let verdict = check(&history, &[altered]);
    assert_eq!(verdict.unexpected.len(), 1);
    assert!(verdict.unexpected[0].contains("differs from the submitted"));
    assert!(verdict.lost.is_empty(), "a copy arrived, if damaged");
    assert!(!verdict.holds());
}

#[test]
fn a_copy_of_a_message_only_refused_or_rejected_is_unexpected() {
    let history = history(&[
        (1, &[Refused, Refused]),
        (2, &[Fail]),
        (3, &[Refused, Fail]),
    ]);
    let verdict = check(&history, &[copy(1, "A", 1), copy(3, "B", 2)]);
    assert_eq!(verdict.unexpected.len(), 2, "{:?}", verdict.unexpected);
    assert!(verdict.unexpected[0].contains("all 2 attempts were refused or failed"));
    assert_eq!(verdict.refused_or_failed, 3);
    assert!(!verdict.holds());
}

#[test]
fn unknown_messages_may_arrive_or_not() {
    let history = history(&[
        (1, &[Unknown, Refused]),
        (2, &[Unknown, Unknown]),
        (3, &[Unknown]),
    ]);
    let verdict = check(&history, &[copy(1, "A", 1)]);
    assert!(verdict.holds(), "{verdict}");
    assert_eq!((verdict.unknown, verdict.unknown_delivered), (3, 1));
    assert_eq!(verdict.acked, 0);
    assert_eq!(verdict.refused_or_failed, 0);
}

#[test]
fn copies_under_one_queue_id_are_internal_and_under_another_a_missed_dedup() {
    let history = history(&[(1, &[Ok]), (2, &[Ok, Ok]), (3, &[Unknown, Ok])]);
    let deliveries = [
        // The fleet redelivered its one entry.
        copy(1, "A", 10),
        copy(1, "A", 11),
        // Stored twice: the later queue id's two copies are both the dedup's miss.
        copy(2, "B", 20),
        copy(2, "C", 21),
        copy(2, "C", 22),
        // Both at once; the earliest queue id comes first whatever the order given.
        copy(3, "E", 31),
        copy(3, "D", 30),
        copy(3, "D", 32),
    ];
    let verdict = check(&history, &deliveries);
    assert_eq!(verdict.duplicated_internal, 2);
    assert_eq!(verdict.duplicated_resubmission_missed, 3);
    assert!(verdict.lost.is_empty() && verdict.unexpected.is_empty());
    assert!(!verdict.holds());

    let internal_only = check(&history, &deliveries[..2]);
    assert_eq!(internal_only.duplicated_internal, 1);
    assert_eq!(internal_only.duplicated_resubmission_missed, 0);
    assert_eq!(internal_only.lost, [2, 3]);
}

#[test]
fn unavailable_after_runs_to_the_first_ack_on_the_given_nodes() {
    let history = History {
        attempts: vec![
            attempt(1, "n1", 900, Ok),
            attempt(2, "n1", 1200, Refused),
            attempt(3, "n4", 1300, Ok),
            attempt(4, "n2", 4000, Unknown),
            attempt(5, "n2", 4500, Ok),
            attempt(6, "n1", 5000, Ok),
        ],
        ..History::default()
    };
    let majority = ["n1".to_owned(), "n2".to_owned(), "n3".to_owned()];
    let gap = |from, to| unavailable_after(&history, &majority, from, to);
    assert_eq!(gap(1000, 9000), Duration::from_millis(3500));
    assert_eq!(
        gap(1000, 2000),
        Duration::from_millis(1000),
        "clipped at to_ms"
    );
    assert_eq!(gap(4500, 9000), Duration::ZERO, "an ack at from_ms counts");
    assert_eq!(
        gap(5001, 9000),
        Duration::from_millis(3999),
        "none: to to_ms"
    );
    assert_eq!(
        unavailable_after(&history, &["n4".to_owned()], 0, 9000),
        Duration::from_millis(1300)
    );
    assert_eq!(
        unavailable_after(&history, &[], 0, 9000),
        Duration::from_millis(9000)
    );
}

#[test]
fn longest_ack_gap_counts_the_window_edges() {
    let history = History {
        attempts: vec![
            attempt(1, "n1", 100, Ok),
            attempt(2, "n2", 300, Ok),
            attempt(3, "n3", 1500, Refused),
            attempt(4, "n1", 2000, Ok),
            attempt(5, "n2", 2100, Ok),
            attempt(6, "n2", 9000, Ok),
        ],
        ..History::default()
    };
    assert_eq!(
        longest_ack_gap(&history, 0, 3000),
        Duration::from_millis(1700)
    );
    assert_eq!(
        longest_ack_gap(&history, 2000, 5000),
        Duration::from_millis(2900)
    );
    assert_eq!(
        longest_ack_gap(&history, 400, 1900),
        Duration::from_millis(1500)
    );
    assert_eq!(longest_ack_gap(&history, 300, 300), Duration::ZERO);
    assert_eq!(longest_ack_gap(&history, 10, 5), Duration::ZERO);
}
