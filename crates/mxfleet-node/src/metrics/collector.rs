//! `FleetCollector`: the gauges that describe replicated state and Raft, computed from
//! the queue at each scrape rather than kept up to date as things change. Every node
//! applies the same log, so every node reports the same queue gauges (dashboards take
//! `max` across nodes); Raft gauges are this node's view.
//!
//! Exposed names:
//! - `mxfleet_node_info{node_id,site,version}` (info).
//! - `mxfleet_raft_term`, `mxfleet_raft_is_leader`, `mxfleet_raft_last_log_index`,
//!   `mxfleet_raft_committed_index`, `mxfleet_raft_applied_index` (gauges).
//! - `mxfleet_raft_replication_lag_entries{peer}` (gauge, leader only): log entries
//!   the leader holds that `peer` has not matched yet.
//! - `mxfleet_queue_messages{state}`, `mxfleet_queue_bytes{state}` (gauges): messages
//!   waiting for delivery by state (`queued`: never attempted and unassigned,
//!   `deferred`: attempted before and unassigned, `in_flight`: assigned to an owner,
//!   `held`); every state is always present, zero included.
//! - `mxfleet_queue_domain_messages{state,domain}`, `mxfleet_queue_domain_bytes{state,domain}`
//!   (gauges): the same by destination domain, present only when non-zero; beyond
//!   [`MAX_DOMAINS`] domains the smallest are summed under `domain="_other"`.
//! - `mxfleet_queue_oldest_message_age_seconds` (gauge): age of the oldest waiting
//!   message, 0 when none waits.
//! - `mxfleet_queue_finished_messages{state}` (gauge): entries kept in a final state
//!   (`delivered`, `bounced`, `deleted`) until they are forgotten.
//! - `mxfleet_delivery_internal_redeliveries_total` (counter): assignments given to a
//!   new owner after the previous owner's lease lapsed with no outcome (each a
//!   possible duplicate delivery to the primary).
//! - `mxfleet_delivery_fencing_rejections_total` (counter): outcomes refused for a
//!   stale fencing token.
//! - `mxfleet_queue_duplicate_submissions_total` (counter): sender resubmissions the
//!   dedup index caught.
//! - `mxfleet_node_drained` (gauge): 1 while an operator has drained this node.
//! - `mxfleet_delivery_lost_after_dot_total` (counter): attempts whose connection
//!   dropped after the final dot (possibly delivered).

use std::collections::BTreeMap;

use mxfleet_core::{MessageState, QueueEntry, QueueState, UnixMillis};
use mxfleet_queue::{ClusterStatus, Queue};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Most domains given their own series per state; the rest are summed as `_other`.
pub const MAX_DOMAINS: usize = 100;

/// The live states, in the order they are exposed.
const LIVE_STATES: [&str; 4] = ["queued", "deferred", "in_flight", "held"];
const FINAL_STATES: [&str; 3] = ["delivered", "bounced", "deleted"];

/// Reads the queue at each scrape. Holds a queue handle (cheap to clone).
pub(super) struct FleetCollector {
    queue: Queue,
}

impl std::fmt::Debug for FleetCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCollector")
            .field("node_id", &self.queue.node_id())
            .finish()
    }
}

impl FleetCollector {
    pub(super) fn new(queue: Queue) -> Self {
        FleetCollector { queue }
    }
}

/// Messages and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    messages: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, entry: &QueueEntry) {
        self.messages += 1;
        self.bytes += entry.size;
    }

    fn merge(&mut self, other: Tally) {
        self.messages += other.messages;
        self.bytes += other.bytes;
    }
}

/// Everything the queue gauges need, taken in one pass under the state's read lock.
#[derive(Debug, Default, PartialEq, Eq)]
struct QueueSnapshot {
    by_state: BTreeMap<&'static str, Tally>,
    by_domain: BTreeMap<(String, &'static str), Tally>,
    oldest_received_ms: Option<u64>,
    finished: BTreeMap<&'static str, u64>,
    internal_redeliveries: u64,
    fencing_rejections: u64,
    lost_after_dot: u64,
    duplicate_submissions: u64,
    drained: std::collections::BTreeSet<u64>,
}

/// The exposed state of a message that still waits for delivery.
fn live_state(entry: &QueueEntry, now: UnixMillis) -> &'static str {
    if entry.state == MessageState::Held {
        "held"
    } else if entry.assignment.is_some_and(|a| a.lease_until > now) {
        // Like the admin API: in flight while a lease holds; a lapsed one waits again.
        "in_flight"
    } else if entry.attempts > 0 {
        "deferred"
    } else {
        "queued"
    }
}

fn final_state(state: MessageState) -> Option<&'static str> {
    match state {
        MessageState::Delivered => Some("delivered"),
        MessageState::Bounced => Some("bounced"),
        MessageState::Deleted => Some("deleted"),
        MessageState::Queued | MessageState::Held => None,
    }
}

impl QueueSnapshot {
    fn take(state: &QueueState, now: UnixMillis) -> Self {
        let mut snapshot = QueueSnapshot {
            internal_redeliveries: state.fleet.lapsed_reassignments,
            fencing_rejections: state.fleet.stale_outcomes,
            lost_after_dot: state.fleet.lost_after_dot,
            duplicate_submissions: state.fleet.duplicate_submissions,
            drained: state.fleet.drained.clone(),
            ..QueueSnapshot::default()
        };
        for entry in state.entries.values() {
            if let Some(done) = final_state(entry.state) {
                *snapshot.finished.entry(done).or_default() += 1;
                continue;
            }
            let live = live_state(entry, now);
            snapshot.by_state.entry(live).or_default().add(entry);
            snapshot
                .by_domain
                .entry((entry.destination(), live))
                .or_default()
                .add(entry);
            let received = entry.received_at.0;
            snapshot.oldest_received_ms = Some(
                snapshot
                    .oldest_received_ms
                    .map_or(received, |o| o.min(received)),
            );
        }
        snapshot.cap_domains(MAX_DOMAINS);
        snapshot
    }

    /// Keeps the `max` domains with the most messages; sums the others as `_other`.
    fn cap_domains(&mut self, max: usize) {
        let mut per_domain: BTreeMap<&str, u64> = BTreeMap::new();
        for ((domain, _), tally) in &self.by_domain {
            *per_domain.entry(domain.as_str()).or_default() += tally.messages;
        }
        if per_domain.len() <= max {
            return;
        }
        let mut ranked: Vec<(&str, u64)> = per_domain.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let kept: std::collections::BTreeSet<String> = ranked
            .iter()
            .take(max)
            .map(|(d, _)| d.to_string())
            .collect();
        let mut capped = BTreeMap::new();
        for ((domain, state), tally) in std::mem::take(&mut self.by_domain) {
            let domain = if kept.contains(&domain) {
                domain
            } else {
                "_other".to_string()
            };
            capped
                .entry((domain, state))
                .or_insert_with(Tally::default)
                .merge(tally);
        }
        self.by_domain = capped;
    }
}

/// Writes one unlabelled metric.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric_encoder = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(metric_encoder)
}

/// Writes a gauge family from `(labels, value)` pairs.
fn gauges<L: prometheus_client::encoding::EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_raft(
    encoder: &mut DescriptorEncoder,
    status: &ClusterStatus,
) -> Result<(), std::fmt::Error> {
    let is_leader = status.leader == Some(status.node_id);
    single(
        encoder,
        "mxfleet_raft_term",
        "Current Raft term as this node knows it.",
        None,
        ConstGauge::new(status.term),
    )?;
    single(
        encoder,
        "mxfleet_raft_is_leader",
        "1 while this node is the Raft leader.",
        None,
        ConstGauge::new(u64::from(is_leader)),
    )?;
    for (name, help, index) in [
        (
            "mxfleet_raft_last_log_index",
            "Index of the last entry in this node's Raft log.",
            status.last_log_index,
        ),
        (
            "mxfleet_raft_committed_index",
            "Highest Raft log index this node knows to be committed.",
            status.committed_index,
        ),
        (
            "mxfleet_raft_applied_index",
            "Highest Raft log index this node has applied to its queue state.",
            status.last_applied_index,
        ),
    ] {
        single(
            encoder,
            name,
            help,
            None,
            ConstGauge::new(index.unwrap_or(0)),
        )?;
    }
    if is_leader {
        let last = status.last_log_index.unwrap_or(0);
        let lag: Vec<([(&str, String); 1], u64)> = status
            .members
            .iter()
            .filter(|m| m.id != status.node_id)
            .map(|m| {
                let behind = m.matched_index.map_or(last + 1, |i| last.saturating_sub(i));
                ([("peer", m.id.to_string())], behind)
            })
            .collect();
        gauges(
            encoder,
            "mxfleet_raft_replication_lag_entries",
            "Log entries the leader holds that the peer has not matched yet (leader only).",
            lag,
        )?;
    }
    Ok(())
}

fn encode_queue(
    encoder: &mut DescriptorEncoder,
    snapshot: &QueueSnapshot,
    now_ms: u64,
) -> Result<(), std::fmt::Error> {
    let by_state = |pick: fn(&Tally) -> u64| {
        LIVE_STATES.map(|state| {
            let tally = snapshot.by_state.get(state).copied().unwrap_or_default();
            ([("state", state)], pick(&tally))
        })
    };
    gauges(
        encoder,
        "mxfleet_queue_messages",
        "Messages waiting for delivery, by state.",
        by_state(|t| t.messages),
    )?;
    let mut bytes = encoder.encode_descriptor(
        "mxfleet_queue",
        "Bytes of messages waiting for delivery, by state.",
        Some(&Unit::Bytes),
        MetricType::Gauge,
    )?;
    for (labels, value) in by_state(|t| t.bytes) {
        ConstGauge::new(value).encode(bytes.encode_family(&labels)?)?;
    }
    let by_domain = |pick: fn(&Tally) -> u64| {
        snapshot
            .by_domain
            .iter()
            .map(move |((domain, state), tally)| {
                (
                    [("state", *state), ("domain", domain.as_str())],
                    pick(tally),
                )
            })
    };
    gauges(
        encoder,
        "mxfleet_queue_domain_messages",
        "Messages waiting for delivery, by state and destination domain.",
        by_domain(|t| t.messages),
    )?;
    let mut bytes = encoder.encode_descriptor(
        "mxfleet_queue_domain",
        "Bytes of messages waiting for delivery, by state and destination domain.",
        Some(&Unit::Bytes),
        MetricType::Gauge,
    )?;
    for (labels, value) in by_domain(|t| t.bytes) {
        ConstGauge::new(value).encode(bytes.encode_family(&labels)?)?;
    }
    let oldest = snapshot.oldest_received_ms.map_or(0.0, |received| {
        now_ms.saturating_sub(received) as f64 / 1000.0
    });
    single(
        encoder,
        "mxfleet_queue_oldest_message_age",
        "Age of the oldest message waiting for delivery (0 when none waits).",
        Some(&Unit::Seconds),
        ConstGauge::new(oldest),
    )?;
    gauges(
        encoder,
        "mxfleet_queue_finished_messages",
        "Entries kept in a final state until they are forgotten.",
        FINAL_STATES.map(|state| {
            (
                [("state", state)],
                snapshot.finished.get(state).copied().unwrap_or(0),
            )
        }),
    )?;
    for (name, help, value) in [
        (
            "mxfleet_delivery_internal_redeliveries",
            "Assignments given to a new owner after the previous owner's lease lapsed with no outcome (possible duplicates).",
            snapshot.internal_redeliveries,
        ),
        (
            "mxfleet_delivery_fencing_rejections",
            "Delivery outcomes refused for a stale fencing token.",
            snapshot.fencing_rejections,
        ),
        (
            "mxfleet_delivery_lost_after_dot",
            "Delivery attempts whose connection dropped after the final dot (possibly delivered).",
            snapshot.lost_after_dot,
        ),
        (
            "mxfleet_queue_duplicate_submissions",
            "Sender resubmissions the dedup index caught: stored and delivered once.",
            snapshot.duplicate_submissions,
        ),
    ] {
        single(encoder, name, help, None, ConstCounter::new(value))?;
    }
    Ok(())
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.queue.status();
        let site = status
            .members
            .iter()
            .find(|m| m.id == status.node_id)
            .map(|m| m.site.clone())
            .unwrap_or_default();
        let mut info = encoder.encode_descriptor(
            "mxfleet_node",
            "This node: its id, site and mxfleet version.",
            None,
            MetricType::Info,
        )?;
        info.encode_info(&[
            ("node_id", status.node_id.to_string()),
            ("site", site),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ])?;
        encode_raft(&mut encoder, &status)?;
        // A state that cannot be read (storage failing) leaves the queue series out
        // rather than failing the whole scrape.
        let now = self.queue.clock_now();
        if let Ok(snapshot) = self
            .queue
            .read_state(|state| QueueSnapshot::take(state, now))
        {
            encode_queue(&mut encoder, &snapshot, self.queue.clock_now().0)?;
            single(
                &mut encoder,
                "mxfleet_node_drained",
                "1 while an operator has drained this node (no SMTP intake, no delivery work).",
                None,
                ConstGauge::new(i64::from(snapshot.drained.contains(&status.node_id))),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use mxfleet_core::{Assignment, BodyDigest, DedupKey, Envelope, QueueId, UnixMillis};

    use super::*;

    fn entry(id: u64, to: &str, size: u64, received: u64) -> QueueEntry {
        QueueEntry {
            id: QueueId(id),
            dedup_key: DedupKey([id as u8; 32]),
            envelope: Envelope {
                sender: "a@client.example".into(),
                recipients: vec![to.into()],
                message_id: None,
                trace: None,
            },
            body: BodyDigest([0; 32]),
            size,
            received_at: UnixMillis(received),
            accepted_by: 1,
            body_holders: vec![1],
            state: MessageState::Queued,
            next_attempt_at: UnixMillis(received),
            attempts: 0,
            last_attempt_at: None,
            recipients: vec![mxfleet_core::RecipientStatus {
                address: to.into(),
                state: mxfleet_core::RecipientState::Pending,
                last_reply: None,
            }],
            delay_warned: false,
            assignment: None,
            finished_at_index: None,
            history: Vec::new(),
        }
    }

    #[test]
    fn entries_are_sorted_into_live_and_final_states() {
        let mut state = QueueState::default();
        let mut deferred = entry(2, "b@example.org", 20, 2_000);
        deferred.attempts = 1;
        let mut assigned = entry(3, "c@example.net", 30, 3_000);
        assigned.assignment = Some(Assignment {
            owner: 1,
            token: 9,
            lease_until: UnixMillis(9_000),
            connections: 1,
        });
        let mut held = entry(4, "d@example.org", 40, 4_000);
        held.state = MessageState::Held;
        let mut delivered = entry(5, "e@example.org", 50, 500);
        delivered.state = MessageState::Delivered;
        for e in [
            entry(1, "a@Example.ORG", 10, 1_000),
            deferred,
            assigned,
            held,
            delivered,
        ] {
            state.entries.insert(e.id, e);
        }
        state.fleet.stale_outcomes = 2;
        let snapshot = QueueSnapshot::take(&state, UnixMillis(0));
        let tally = |messages, bytes| Tally { messages, bytes };
        assert_eq!(snapshot.by_state["queued"], tally(1, 10));
        assert_eq!(snapshot.by_state["deferred"], tally(1, 20));
        assert_eq!(snapshot.by_state["in_flight"], tally(1, 30));
        assert_eq!(snapshot.by_state["held"], tally(1, 40));
        assert_eq!(
            snapshot.by_domain[&("example.org".to_string(), "queued")],
            tally(1, 10)
        );
        assert_eq!(
            snapshot.by_domain[&("example.net".to_string(), "in_flight")],
            tally(1, 30)
        );
        // The delivered entry is older, but no longer waits.
        assert_eq!(snapshot.oldest_received_ms, Some(1_000));
        assert_eq!(snapshot.finished["delivered"], 1);
        assert_eq!(snapshot.fencing_rejections, 2);
    }

    #[test]
    fn domains_beyond_the_cap_are_summed_as_other() {
        let mut state = QueueState::default();
        for (id, domain) in [(1, "big.example"), (2, "big.example"), (3, "small.example")] {
            let e = entry(id, &format!("u@{domain}"), 1, 0);
            state.entries.insert(e.id, e);
        }
        let mut snapshot = QueueSnapshot::take(&state, UnixMillis(0));
        snapshot.cap_domains(1);
        let domains: Vec<&str> = snapshot.by_domain.keys().map(|(d, _)| d.as_str()).collect();
        assert_eq!(domains, ["_other", "big.example"]);
        assert_eq!(
            snapshot.by_domain[&("_other".to_string(), "queued")].messages,
            1
        );
    }
}
