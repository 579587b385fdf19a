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
mod tests;
