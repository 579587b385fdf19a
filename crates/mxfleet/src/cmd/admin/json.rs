//! The `--json` documents: one per command, written on stdout as a single line.
//!
//! These structs are the contract with scripts: field names are stable, and new fields
//! may be added but none renamed or removed. Conventions:
//! - times are Unix milliseconds in fields ending in `_ms`, and `null` when unset;
//! - ages and durations are whole seconds in fields ending in `_seconds`;
//! - sizes are bytes; node ids are numbers; queue ids are strings of 12 upper-case hex
//!   digits (the Raft log index of the enqueue, Postfix style), e.g. `00000000000B`;
//! - message states are the `--state` words: `queued`, `deferred`, `held`, `in-flight`,
//!   `delivered`, `bounced`, `deleted` (`unknown` for a state this client does not know).
//!
//! Errors are not JSON: they go to stderr as text, and the exit code tells scripts what
//! kind of failure it was (see `error.rs`).

use std::collections::BTreeMap;

use mxfleet_proto::admin::v1 as api;
use serde::Serialize;

use super::format::state_name;

fn unset_if_zero(ms: u64) -> Option<u64> {
    (ms != 0).then_some(ms)
}

/// `cluster status`.
#[derive(Debug, Serialize)]
pub struct ClusterStatusJson {
    pub answered_by: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// Whether `matched_index`, `lag_entries` and `last_contact_ms` are filled in.
    pub leader_view: bool,
    pub members: Vec<MemberJson>,
    pub destinations: Vec<DestinationJson>,
}

#[derive(Debug, Serialize)]
pub struct MemberJson {
    pub id: u64,
    pub addr: String,
    pub site: String,
    /// `voter` or `learner`.
    pub membership: String,
    /// `leader`, `follower`, `learner`, `candidate` or `unknown`.
    pub role: String,
    pub matched_index: Option<u64>,
    pub lag_entries: Option<u64>,
    /// Milliseconds since the member last acknowledged the leader (a span, not a time).
    pub last_contact_ms: Option<u64>,
    pub drained: bool,
    pub delivering: bool,
}

#[derive(Debug, Serialize)]
pub struct DestinationJson {
    pub destination: String,
    pub up: bool,
    pub nodes: Vec<NodeReachabilityJson>,
}

#[derive(Debug, Serialize)]
pub struct NodeReachabilityJson {
    pub node: u64,
    pub reachable: bool,
    pub at_ms: Option<u64>,
    pub detail: String,
}

impl From<&api::ClusterStatus> for ClusterStatusJson {
    fn from(s: &api::ClusterStatus) -> Self {
        ClusterStatusJson {
            answered_by: s.answered_by,
            leader: s.leader,
            term: s.term,
            last_log_index: s.last_log_index,
            committed_index: s.committed_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            leader_view: s.leader_view,
            members: s
                .members
                .iter()
                .map(|m| MemberJson {
                    id: m.id,
                    addr: m.addr.clone(),
                    site: m.site.clone(),
                    membership: m.membership.clone(),
                    role: m.role.clone(),
                    matched_index: m.matched_index,
                    lag_entries: m.lag_entries,
                    last_contact_ms: m.last_contact_ms,
                    drained: m.drained,
                    delivering: m.delivering,
                })
                .collect(),
            destinations: s
                .destinations
                .iter()
                .map(|d| DestinationJson {
                    destination: d.destination.clone(),
                    up: d.up,
                    nodes: d
                        .nodes
                        .iter()
                        .map(|n| NodeReachabilityJson {
                            node: n.node,
                            reachable: n.reachable,
                            at_ms: unset_if_zero(n.at),
                            detail: n.detail.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// `cluster add|promote|remove|transfer-leader|drain`: what was asked and what the
/// cluster answered. Fields that do not apply to the command are `null`.
#[derive(Debug, Serialize)]
pub struct MembershipJson {
    /// `add`, `promote`, `remove`, `transfer-leader`, `drain` or `undrain`.
    pub command: &'static str,
    pub node: u64,
    /// The log index of the committed change (not for transfer-leader).
    pub log_index: Option<u64>,
    /// transfer-leader: the leader after the transfer, when known.
    pub leader: Option<u64>,
    /// drain: messages still leased to the node when the drain committed.
    pub leased_messages: Option<u64>,
}

/// One message in `queue list` (and the top of `queue show`).
#[derive(Debug, Serialize)]
pub struct MessageJson {
    pub id: String,
    pub state: &'static str,
    pub size: u64,
    pub received_at_ms: Option<u64>,
    /// Empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<RecipientJson>,
    pub attempts: u32,
    pub next_attempt_at_ms: Option<u64>,
    pub message_id: Option<String>,
    pub destination: String,
    pub last_reply: String,
}

#[derive(Debug, Serialize)]
pub struct RecipientJson {
    pub address: String,
    /// `pending`, `delivered` or `bounced`.
    pub state: String,
    pub last_reply: String,
}

impl From<&api::MessageSummary> for MessageJson {
    fn from(m: &api::MessageSummary) -> Self {
        MessageJson {
            id: m.id.clone(),
            state: state_name(m.state),
            size: m.size,
            received_at_ms: unset_if_zero(m.received_at),
            sender: m.sender.clone(),
            recipients: m
                .recipients
                .iter()
                .map(|r| RecipientJson {
                    address: r.address.clone(),
                    state: r.state.clone(),
                    last_reply: r.last_reply.clone(),
                })
                .collect(),
            attempts: m.attempts,
            next_attempt_at_ms: unset_if_zero(m.next_attempt_at),
            message_id: m.message_id.clone(),
            destination: m.destination.clone(),
            last_reply: m.last_reply.clone(),
        }
    }
}

/// `queue list`.
#[derive(Debug, Serialize)]
pub struct ListJson {
    pub messages: Vec<MessageJson>,
    /// How many messages the filters match on the server, across all pages.
    pub total_matched: u64,
    pub total_bytes: u64,
    /// Whether `--limit` cut the listing short of `total_matched`.
    pub truncated: bool,
    /// Listed messages per state (only states that occur).
    pub by_state: BTreeMap<&'static str, u64>,
}

/// `queue show ID`: every [`MessageJson`] field, plus these.
#[derive(Debug, Serialize)]
pub struct MessageDetailJson {
    #[serde(flatten)]
    pub summary: MessageJson,
    pub accepted_by: u64,
    pub body_holders: Vec<u64>,
    pub body_digest: String,
    pub dedup_key: String,
    /// The stored header section, as received.
    pub headers: String,
    pub lease: Option<LeaseJson>,
    pub history: Vec<HistoryEventJson>,
    pub delay_warned: bool,
    pub received_from: String,
}

#[derive(Debug, Serialize)]
pub struct LeaseJson {
    pub owner: u64,
    pub token: u64,
    pub lease_until_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct HistoryEventJson {
    pub at_ms: Option<u64>,
    pub kind: String,
    pub node: Option<u64>,
    pub token: Option<u64>,
    pub detail: String,
}

impl From<&api::MessageDetail> for MessageDetailJson {
    fn from(d: &api::MessageDetail) -> Self {
        MessageDetailJson {
            summary: MessageJson::from(&d.summary.clone().unwrap_or_default()),
            accepted_by: d.accepted_by,
            body_holders: d.body_holders.clone(),
            body_digest: d.body_digest.clone(),
            dedup_key: d.dedup_key.clone(),
            headers: d.headers.clone(),
            lease: d.lease.as_ref().map(|l| LeaseJson {
                owner: l.owner,
                token: l.token,
                lease_until_ms: unset_if_zero(l.lease_until),
            }),
            history: d
                .history
                .iter()
                .map(|h| HistoryEventJson {
                    at_ms: unset_if_zero(h.at),
                    kind: h.kind.clone(),
                    node: h.node,
                    token: h.token,
                    detail: h.detail.clone(),
                })
                .collect(),
            delay_warned: d.delay_warned,
            received_from: d.received_from.clone(),
        }
    }
}

/// `queue hold|release|delete|requeue|bounce`: the final count.
#[derive(Debug, Serialize)]
pub struct ActJson {
    /// `hold`, `release`, `delete`, `requeue` or `bounce`.
    pub action: &'static str,
    /// True with `--dry-run`: only counted, nothing changed.
    pub dry_run: bool,
    pub matched: u64,
    pub done: u64,
    pub skipped: u64,
    /// Up to 20 reasons for skips.
    pub notes: Vec<String>,
}

/// `queue flush [DOMAIN]`.
#[derive(Debug, Serialize)]
pub struct FlushJson {
    /// `null` when every domain was flushed.
    pub domain: Option<String>,
    pub made_due: u64,
}

/// `queue read ID --out FILE` (without `--out` the body itself goes to stdout).
#[derive(Debug, Serialize)]
pub struct ReadJson {
    pub id: String,
    pub out: String,
    pub bytes: u64,
}

/// `queue stats`.
#[derive(Debug, Serialize)]
pub struct StatsJson {
    pub domains: Vec<DomainStatsJson>,
    pub total_messages: u64,
    pub total_bytes: u64,
    pub oldest_age_seconds: u64,
    pub received_last_minute: u64,
    pub delivered_last_minute: u64,
    pub received_last_15_minutes: u64,
    pub delivered_last_15_minutes: u64,
    pub duplicates: u64,
    pub lapsed_reassignments: u64,
    pub lost_after_dot: u64,
    pub stale_outcomes: u64,
}

#[derive(Debug, Serialize)]
pub struct DomainStatsJson {
    pub domain: String,
    pub state: &'static str,
    pub messages: u64,
    pub bytes: u64,
    pub oldest_age_seconds: u64,
}

impl From<&api::QueueStats> for StatsJson {
    fn from(s: &api::QueueStats) -> Self {
        StatsJson {
            domains: s
                .domains
                .iter()
                .map(|d| DomainStatsJson {
                    domain: d.domain.clone(),
                    state: state_name(d.state),
                    messages: d.messages,
                    bytes: d.bytes,
                    oldest_age_seconds: d.oldest_age_seconds,
                })
                .collect(),
            total_messages: s.total_messages,
            total_bytes: s.total_bytes,
            oldest_age_seconds: s.oldest_age_seconds,
            received_last_minute: s.received_last_minute,
            delivered_last_minute: s.delivered_last_minute,
            received_last_15_minutes: s.received_last_15_minutes,
            delivered_last_15_minutes: s.delivered_last_15_minutes,
            duplicates: s.duplicates,
            lapsed_reassignments: s.lapsed_reassignments,
            lost_after_dot: s.lost_after_dot,
            stale_outcomes: s.stale_outcomes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_flattens_the_summary_and_unset_times_are_null() {
        let detail = api::MessageDetail {
            summary: Some(api::MessageSummary {
                id: "42".into(),
                state: api::MessageState::Held as i32,
                size: 1234,
                received_at: 1_700_000_000_000,
                ..Default::default()
            }),
            lease: Some(api::Lease {
                owner: 2,
                token: 9,
                lease_until: 0,
            }),
            ..Default::default()
        };
        let value = serde_json::to_value(MessageDetailJson::from(&detail)).unwrap();
        assert_eq!(value["id"], "42");
        assert_eq!(value["state"], "held");
        assert_eq!(value["received_at_ms"], 1_700_000_000_000u64);
        assert_eq!(value["next_attempt_at_ms"], serde_json::Value::Null);
        assert_eq!(value["lease"]["owner"], 2);
        assert_eq!(value["lease"]["lease_until_ms"], serde_json::Value::Null);
        assert!(value.get("summary").is_none());
    }
}
