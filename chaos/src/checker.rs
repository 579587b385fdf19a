//! The verdict of a run: what senders were told (the load's [`History`]) against what
//! the primary received (one [`Delivery`] per copy), the way Jepsen checks a queue.
//!
//! The promises checked (see `../shared/DESIGN.md` §1):
//! - nothing acknowledged is lost: every message with an `Ok` attempt arrives;
//! - nothing unexpected arrives: no message that was never submitted, no altered body,
//!   and nothing whose every attempt was refused or rejected (those promised "not
//!   stored");
//! - a resubmission is stored once: copies under two queue ids are a missed dedup.
//!   Copies under one queue id are the fleet's own redelivery (an owner died between the
//!   primary's `250` and the commit): allowed, counted.
//!
//! Main items: [`Delivery`] (parsed from the bytes the primary got), [`check`] and its
//! [`Verdict`], and the availability measures [`unavailable_after`] and
//! [`longest_ack_gap`] over the history's `Ok` attempts.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mxfleet_testkit::sink::SinkMessage;
use serde::{Deserialize, Serialize};

use crate::load::{CHAOS_ID_HEADER, History, Outcome, sha256_hex};

/// One copy of a message as the primary received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The `X-Chaos-Id` header; `None` if missing or not a number.
    pub chaos_id: Option<u64>,
    pub message_id: Option<String>,
    /// Hex SHA-256 from the `X-Chaos-Id` line to the end (what the fleet added above it,
    /// its `Received:` header, is cut off); `None` if the line is missing.
    pub body_sha256: Option<String>,
    /// The `id` in the topmost `Received:` header: the fleet's queue id.
    pub queue_id: Option<String>,
    /// The delivering node, by the client address the primary saw.
    pub from_node: Option<String>,
    /// When the primary had the whole message, in milliseconds since the run's epoch.
    pub at_ms: u64,
}

impl Delivery {
    /// A copy the testkit sink accepted; `node_of` names the node behind a client
    /// address (each node connects from its own).
    pub fn from_sink(
        message: &SinkMessage,
        node_of: impl Fn(IpAddr) -> Option<String>,
        epoch: Instant,
    ) -> Delivery {
        let at = message.received_at.saturating_duration_since(epoch);
        Delivery::from_bytes(
            &message.data,
            node_of(message.client.ip()),
            u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
        )
    }

    /// A copy from its content as delivered (dot-unstuffed, CRLF line endings).
    pub fn from_bytes(data: &[u8], from_node: Option<String>, at_ms: u64) -> Delivery {
        let fields = header_fields(data);
        let first = |name: &str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));
        let chaos = first(CHAOS_ID_HEADER);
        Delivery {
            chaos_id: chaos.and_then(|f| f.value.parse().ok()),
            message_id: first("Message-ID").map(|f| f.value.clone()),
            body_sha256: chaos.map(|f| sha256_hex(&data[f.offset..])),
            queue_id: first("Received").and_then(|f| queue_id(&f.value)),
            from_node,
            at_ms,
        }
    }
}

/// One header field, unfolded.
struct Field {
    name: String,
    value: String,
    /// Where the field's first line starts in the message.
    offset: usize,
}

/// The fields of the header section (up to the first empty line), in order.
fn header_fields(data: &[u8]) -> Vec<Field> {
    let mut fields: Vec<Field> = Vec::new();
    let mut offset = 0;
    for line in data.split_inclusive(|b| *b == b'\n') {
        let start = offset;
        offset += line.len();
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some(field) = fields.last_mut() {
                field.value.push(' ');
                field.value.push_str(text.trim());
            }
            continue;
        }
        if let Some((name, value)) = text.split_once(':') {
            fields.push(Field {
                name: name.trim().to_owned(),
                value: value.trim().to_owned(),
                offset: start,
            });
        }
    }
    fields
}

/// The token after `id` in an unfolded `Received:` value, e.g. `00000000002A` from
/// `from x ([192.0.2.7]) by mx1 (mxfleet) with ESMTP id 00000000002A for <a@b>; date`.
fn queue_id(received: &str) -> Option<String> {
    let mut tokens = received.split_whitespace();
    tokens.find(|t| t.eq_ignore_ascii_case("id"))?;
    let id = tokens.next()?.trim_end_matches(';');
    (!id.is_empty()).then(|| id.to_owned())
}

/// The result of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Distinct messages the generator made.
    pub submitted: u64,
    /// Distinct messages with at least one `Ok` attempt.
    pub acked: u64,
    /// Distinct chaos ids delivered at least once (never-submitted ones included).
    pub delivered: u64,
    /// Acknowledged and never delivered; the promise is that this stays empty.
    pub lost: Vec<u64>,
    /// One line per problem: a copy without a readable chaos id, a chaos id never
    /// submitted, a body that differs from the submission, a message delivered although
    /// no attempt ended `Ok` or `Unknown`. Must stay empty.
    pub unexpected: Vec<String>,
    /// Copies under a second (third, …) queue id: the fleet stored a resubmission again.
    /// Must be 0.
    pub duplicated_resubmission_missed: u64,
    /// Extra copies under the first queue id: the fleet delivered its one entry again.
    pub duplicated_internal: u64,
    /// Messages with an `Unknown` attempt and none `Ok`.
    pub unknown: u64,
    /// Of those, delivered (allowed either way).
    pub unknown_delivered: u64,
    /// Messages never acknowledged and never unknown.
    pub refused_or_failed: u64,
}

impl Verdict {
    /// Nothing lost, nothing unexpected, no resubmission stored twice.
    pub fn holds(&self) -> bool {
        self.lost.is_empty()
            && self.unexpected.is_empty()
            && self.duplicated_resubmission_missed == 0
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: submitted {}, acked {}, delivered {}, lost {}, unexpected {}, \
             duplicates {} missed dedup + {} internal, unknown {} ({} delivered), \
             refused or failed {}",
            if self.holds() { "holds" } else { "VIOLATED" },
            self.submitted,
            self.acked,
            self.delivered,
            self.lost.len(),
            self.unexpected.len(),
            self.duplicated_resubmission_missed,
            self.duplicated_internal,
            self.unknown,
            self.unknown_delivered,
            self.refused_or_failed,
        )
    }
}

/// What the senders of one message were told, over all its attempts.
#[derive(Clone, Copy, Default)]
struct Told {
    ok: bool,
    unknown: bool,
    attempts: usize,
}

/// Compares the history with the copies the primary received.
pub fn check(history: &History, deliveries: &[Delivery]) -> Verdict {
    let mut told: BTreeMap<u64, Told> = history
        .messages
        .keys()
        .map(|id| (*id, Told::default()))
        .collect();
    for attempt in &history.attempts {
        if let Some(told) = told.get_mut(&attempt.message) {
            told.attempts += 1;
            told.ok |= attempt.outcome == Outcome::Ok;
            told.unknown |= attempt.outcome == Outcome::Unknown;
        }
    }

    let mut verdict = Verdict {
        submitted: history.messages.len() as u64,
        ..Verdict::default()
    };
    let mut copies: BTreeMap<u64, Vec<&Delivery>> = BTreeMap::new();
    for delivery in deliveries {
        match delivery.chaos_id {
            Some(id) => copies.entry(id).or_default().push(delivery),
            None => verdict.unexpected.push(format!(
                "a copy without a readable {CHAOS_ID_HEADER}: message-id {}, {}",
                delivery.message_id.as_deref().unwrap_or("none"),
                describe(delivery)
            )),
        }
    }
    verdict.delivered = copies.len() as u64;

    for (id, copies) in &copies {
        count_duplicates(copies, &mut verdict);
        let Some(submitted) = history.messages.get(id) else {
            verdict.unexpected.push(format!(
                "chaos id {id}: {} copies delivered but never submitted (first {})",
                copies.len(),
                describe(copies[0])
            ));
            continue;
        };
        for copy in copies {
            if copy.body_sha256.as_deref() != Some(submitted.body_sha256.as_str()) {
                verdict.unexpected.push(format!(
                    "chaos id {id}: body sha256 {} differs from the submitted {} ({})",
                    copy.body_sha256.as_deref().unwrap_or("none"),
                    submitted.body_sha256,
                    describe(copy)
                ));
            }
        }
        let told = told.get(id).copied().unwrap_or_default();
        if !told.ok && !told.unknown {
            verdict.unexpected.push(format!(
                "chaos id {id}: delivered {} times although all {} attempts were refused \
                 or failed (first {})",
                copies.len(),
                told.attempts,
                describe(copies[0])
            ));
        }
    }

    for (id, told) in &told {
        let delivered = copies.contains_key(id);
        if told.ok {
            verdict.acked += 1;
            if !delivered {
                verdict.lost.push(*id);
            }
        } else if told.unknown {
            verdict.unknown += 1;
            verdict.unknown_delivered += u64::from(delivered);
        } else {
            verdict.refused_or_failed += 1;
        }
    }
    verdict
}

/// Splits the extra copies of one message: beyond the first within the earliest queue
/// id they are internal redeliveries; every copy under any later queue id is a missed
/// dedup. So internal + missed is always copies − 1.
fn count_duplicates(copies: &[&Delivery], verdict: &mut Verdict) {
    let mut groups: BTreeMap<Option<&str>, (u64, u64)> = BTreeMap::new();
    for copy in copies {
        let (count, earliest) = groups
            .entry(copy.queue_id.as_deref())
            .or_insert((0, u64::MAX));
        *count += 1;
        *earliest = (*earliest).min(copy.at_ms);
    }
    let first = groups
        .iter()
        .min_by_key(|(queue_id, (_, earliest))| (*earliest, **queue_id))
        .map(|(queue_id, _)| *queue_id);
    for (queue_id, (count, _)) in &groups {
        if Some(*queue_id) == first {
            verdict.duplicated_internal += count - 1;
        } else {
            verdict.duplicated_resubmission_missed += count;
        }
    }
}

fn describe(delivery: &Delivery) -> String {
    format!(
        "queue id {}, from {}, at {} ms",
        delivery.queue_id.as_deref().unwrap_or("none"),
        delivery.from_node.as_deref().unwrap_or("an unknown node"),
        delivery.at_ms
    )
}

/// How long, from `from_ms`, no attempt sent to any of `nodes` ended `Ok`: until the
/// first such ack at or after `from_ms`, or `to_ms` if none came by then. Measures how
/// long intake stayed unavailable on one side after a fault.
pub fn unavailable_after(
    history: &History,
    nodes: &[String],
    from_ms: u64,
    to_ms: u64,
) -> Duration {
    let first_ok = history
        .attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Ok && a.ended_ms >= from_ms && nodes.contains(&a.node))
        .map(|a| a.ended_ms)
        .min();
    let until = first_ok.map_or(to_ms, |ok| ok.min(to_ms));
    Duration::from_millis(until.saturating_sub(from_ms))
}

/// The longest stretch within [`from_ms`, `to_ms`] without an `Ok` ended on any node.
/// The window's edges count as fence posts, so a window without any ack is one gap as
/// long as the window, never a vacuous zero.
pub fn longest_ack_gap(history: &History, from_ms: u64, to_ms: u64) -> Duration {
    if to_ms < from_ms {
        return Duration::ZERO;
    }
    let mut posts: Vec<u64> = history
        .attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Ok && (from_ms..=to_ms).contains(&a.ended_ms))
        .map(|a| a.ended_ms)
        .collect();
    posts.extend([from_ms, to_ms]);
    posts.sort_unstable();
    let longest = posts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Duration::from_millis(longest)
}

#[cfg(test)]
mod tests {
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
}
