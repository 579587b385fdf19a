//! How the admin API sees queue entries: the operator's state of a message (queued,
//! deferred, held, in flight, or final), selectors (`--domain`, `--state`,
//! `--sender`, `--recipient`, age bounds, ids), and the conversion of entries and their
//! history into the wire types.

use std::collections::BTreeSet;

use mxfleet_core::{
    HistoryEvent, MessageState, QueueEntry, QueueId, RecipientState, UnixMillis, destination_of,
};
use mxfleet_proto::admin::v1 as pb;
use tonic::Status;

/// The state an operator sees: `Queued` splits into queued, deferred and in flight.
pub(crate) fn operator_state(entry: &QueueEntry, now: UnixMillis) -> pb::MessageState {
    match entry.state {
        MessageState::Held => pb::MessageState::Held,
        MessageState::Delivered => pb::MessageState::Delivered,
        MessageState::Bounced => pb::MessageState::Bounced,
        MessageState::Deleted => pb::MessageState::Deleted,
        MessageState::Queued => {
            if entry.assignment.is_some_and(|a| a.lease_until > now) {
                pb::MessageState::InFlight
            } else if entry.attempts > 0 {
                pb::MessageState::Deferred
            } else {
                pb::MessageState::Queued
            }
        }
    }
}

/// A checked [`pb::Selector`].
#[derive(Debug, Default)]
pub(crate) struct Selection {
    ids: Option<BTreeSet<QueueId>>,
    domain: Option<String>,
    states: BTreeSet<i32>,
    sender: Option<String>,
    recipient: Option<String>,
    min_age_ms: Option<u64>,
    max_age_ms: Option<u64>,
}

const LIVE_STATES: [pb::MessageState; 4] = [
    pb::MessageState::Queued,
    pb::MessageState::Deferred,
    pb::MessageState::Held,
    pb::MessageState::InFlight,
];

impl Selection {
    /// Checks a selector; a bad id or state is `INVALID_ARGUMENT`.
    #[allow(clippy::result_large_err)]
    pub(crate) fn parse(selector: Option<pb::Selector>) -> Result<Self, Status> {
        let selector = selector.unwrap_or_default();
        let ids = if selector.ids.is_empty() {
            None
        } else {
            Some(
                selector
                    .ids
                    .iter()
                    .map(|id| parse_id(id))
                    .collect::<Result<BTreeSet<_>, _>>()?,
            )
        };
        let mut states = BTreeSet::new();
        for state in &selector.states {
            match pb::MessageState::try_from(*state) {
                Ok(pb::MessageState::Unspecified) | Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown message state {state}"
                    )));
                }
                Ok(_) => {
                    states.insert(*state);
                }
            }
        }
        if states.is_empty() && ids.is_none() {
            states.extend(LIVE_STATES.iter().map(|s| *s as i32));
        }
        let non_empty = |text: String| {
            let text = text.trim().to_ascii_lowercase();
            (!text.is_empty()).then_some(text)
        };
        Ok(Selection {
            ids,
            domain: non_empty(selector.domain),
            states,
            sender: non_empty(selector.sender),
            recipient: non_empty(selector.recipient),
            min_age_ms: selector.min_age_seconds.map(|s| s.saturating_mul(1000)),
            max_age_ms: selector.max_age_seconds.map(|s| s.saturating_mul(1000)),
        })
    }

    /// True when the selector names messages by id (not a bulk action).
    pub(crate) fn by_ids(&self) -> bool {
        self.ids.is_some()
    }

    /// Does `entry` match at `now`?
    pub(crate) fn matches(&self, entry: &QueueEntry, now: UnixMillis) -> bool {
        if let Some(ids) = &self.ids
            && !ids.contains(&entry.id)
        {
            return false;
        }
        if !self.states.is_empty() && !self.states.contains(&(operator_state(entry, now) as i32)) {
            return false;
        }
        if let Some(domain) = &self.domain
            && !entry
                .envelope
                .recipients
                .iter()
                .any(|r| destination_of(r) == *domain)
        {
            return false;
        }
        if let Some(sender) = &self.sender
            && !address_matches(&entry.envelope.sender, sender)
        {
            return false;
        }
        if let Some(recipient) = &self.recipient
            && !entry
                .envelope
                .recipients
                .iter()
                .any(|r| address_matches(r, recipient))
        {
            return false;
        }
        let age = now.0.saturating_sub(entry.received_at.0);
        if self.min_age_ms.is_some_and(|min| age < min) {
            return false;
        }
        if self.max_age_ms.is_some_and(|max| age > max) {
            return false;
        }
        true
    }
}

/// `pattern` is an address (case-insensitive) or `@domain`; `<>` is the null sender.
fn address_matches(address: &str, pattern: &str) -> bool {
    if pattern == "<>" {
        return address.is_empty();
    }
    match pattern.strip_prefix('@') {
        Some(domain) => destination_of(address) == domain,
        None => address.eq_ignore_ascii_case(pattern),
    }
}

/// Parses a queue id as `mxfleet queue list` prints it.
#[allow(clippy::result_large_err)]
pub(crate) fn parse_id(text: &str) -> Result<QueueId, Status> {
    text.trim().parse::<QueueId>().map_err(|_| {
        Status::invalid_argument(format!(
            "{text:?} is not a queue id (12 hex digits, as `mxfleet queue list` prints)"
        ))
    })
}

fn recipient_word(state: RecipientState) -> &'static str {
    match state {
        RecipientState::Pending => "pending",
        RecipientState::Delivered => "delivered",
        RecipientState::Bounced { .. } => "bounced",
    }
}

/// The one-line view of an entry.
pub(crate) fn summary(entry: &QueueEntry, now: UnixMillis) -> pb::MessageSummary {
    let last_reply = entry
        .recipients
        .iter()
        .filter(|r| r.state == RecipientState::Pending)
        .find_map(|r| r.last_reply.clone())
        .unwrap_or_default();
    pb::MessageSummary {
        id: entry.id.to_string(),
        state: operator_state(entry, now) as i32,
        size: entry.size,
        received_at: entry.received_at.0,
        sender: entry.envelope.sender.clone(),
        recipients: entry
            .recipients
            .iter()
            .map(|r| pb::RecipientStatus {
                address: r.address.clone(),
                state: recipient_word(r.state).to_owned(),
                last_reply: r.last_reply.clone().unwrap_or_default(),
            })
            .collect(),
        attempts: entry.attempts,
        next_attempt_at: entry.next_attempt_at.0,
        message_id: entry.envelope.message_id.clone(),
        destination: entry.destination(),
        last_reply,
    }
}

/// The full view of an entry; `headers` is the header section of its body, if read.
pub(crate) fn detail(entry: &QueueEntry, now: UnixMillis, headers: String) -> pb::MessageDetail {
    let received_from = entry
        .envelope
        .trace
        .as_ref()
        .map(|t| {
            let tls = t
                .tls
                .as_deref()
                .map(|tls| format!(" {tls}"))
                .unwrap_or_default();
            format!(
                "{} [{}] helo={} {}{tls}",
                t.by_host, t.client_ip, t.helo, t.protocol
            )
        })
        .unwrap_or_default();
    pb::MessageDetail {
        summary: Some(summary(entry, now)),
        accepted_by: entry.accepted_by,
        body_holders: entry.body_holders.clone(),
        body_digest: entry.body.to_string(),
        dedup_key: hex::encode(entry.dedup_key.0),
        headers,
        lease: entry.assignment.map(|a| pb::Lease {
            owner: a.owner,
            token: a.token,
            lease_until: a.lease_until.0,
        }),
        history: entry.history.iter().map(history_event).collect(),
        delay_warned: entry.delay_warned,
        received_from,
    }
}

fn event(
    kind: &str,
    at: UnixMillis,
    node: Option<u64>,
    token: Option<u64>,
    detail: String,
) -> pb::HistoryEvent {
    pb::HistoryEvent {
        at: at.0,
        kind: kind.to_owned(),
        node,
        token,
        detail,
    }
}

/// An instant as operators read it in logs: RFC 3339, UTC, milliseconds.
fn time(at: UnixMillis) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.0))
        .to_string()
}

fn history_event(history: &HistoryEvent) -> pb::HistoryEvent {
    match history {
        HistoryEvent::Accepted { at, by } => event("accepted", *at, Some(*by), None, String::new()),
        HistoryEvent::DuplicateSubmission { at, by } => event(
            "duplicate",
            *at,
            Some(*by),
            None,
            "the sender submitted it again; stored once".to_owned(),
        ),
        HistoryEvent::Assigned {
            at,
            owner,
            token,
            lease_until,
        } => event(
            "assigned",
            *at,
            Some(*owner),
            Some(*token),
            format!("lease until {}", time(*lease_until)),
        ),
        HistoryEvent::LeaseRenewed { token, lease_until } => event(
            "renewed",
            *lease_until,
            None,
            Some(*token),
            format!("lease until {}", time(*lease_until)),
        ),
        HistoryEvent::Attempt {
            at,
            token,
            relay,
            results,
            next_attempt_at,
            lost_after_dot,
        } => {
            let mut detail = format!("relay={}", relay.as_deref().unwrap_or("none"));
            for result in results {
                detail.push_str(&format!(
                    "; to=<{}> status={} reply={}",
                    result.recipient,
                    format!("{:?}", result.status).to_ascii_lowercase(),
                    result.reply
                ));
            }
            if let Some(next) = next_attempt_at {
                detail.push_str(&format!("; next attempt at {}", time(*next)));
            }
            if *lost_after_dot {
                detail.push_str("; connection lost after the final dot");
            }
            event("attempt", *at, None, Some(*token), detail)
        }
        HistoryEvent::Returned { at, token } => event(
            "returned",
            *at,
            None,
            Some(*token),
            "handed back unstarted".to_owned(),
        ),
        HistoryEvent::Notified { at, kind, dsn } => event(
            "notified",
            *at,
            None,
            None,
            match dsn {
                Some(dsn) => format!("{kind:?} DSN queued as {dsn}"),
                None => format!("{kind:?} DSN not sent (null sender)"),
            },
        ),
        HistoryEvent::StaleOutcomeRejected {
            at,
            token,
            current_token,
        } => event(
            "stale-outcome",
            *at,
            None,
            Some(*token),
            format!("refused: current token is {current_token:?}"),
        ),
        HistoryEvent::Held { at } => event("held", *at, None, None, String::new()),
        HistoryEvent::Released { at } => event("released", *at, None, None, String::new()),
        HistoryEvent::Deleted { at } => event("deleted", *at, None, None, String::new()),
        HistoryEvent::Requeued { at } => event("requeued", *at, None, None, String::new()),
        HistoryEvent::BouncedByOperator { at } => event(
            "bounced",
            *at,
            None,
            None,
            "returned to the sender by an operator".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxfleet_core::{Assignment, BodyDigest, DedupKey, Envelope, RecipientStatus};

    fn entry(sender: &str, recipients: &[&str], received_at: u64) -> QueueEntry {
        let envelope = Envelope {
            sender: sender.to_owned(),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            message_id: None,
            trace: None,
        };
        QueueEntry {
            id: QueueId(7),
            dedup_key: DedupKey([0; 32]),
            body: BodyDigest([0; 32]),
            size: 100,
            received_at: UnixMillis(received_at),
            accepted_by: 1,
            body_holders: vec![1],
            state: MessageState::Queued,
            next_attempt_at: UnixMillis(received_at),
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
            history: vec![],
            envelope,
        }
    }

    fn selection(selector: pb::Selector) -> Selection {
        Selection::parse(Some(selector)).unwrap()
    }

    #[test]
    fn queued_splits_into_queued_deferred_and_in_flight() {
        let now = UnixMillis(10_000);
        let mut e = entry("a@x.example", &["b@example.org"], 0);
        assert_eq!(operator_state(&e, now), pb::MessageState::Queued);
        e.attempts = 1;
        assert_eq!(operator_state(&e, now), pb::MessageState::Deferred);
        e.assignment = Some(Assignment {
            owner: 2,
            token: 9,
            lease_until: UnixMillis(20_000),
            connections: 1,
        });
        assert_eq!(operator_state(&e, now), pb::MessageState::InFlight);
        assert_eq!(
            operator_state(&e, UnixMillis(20_000)),
            pb::MessageState::Deferred,
            "a lapsed lease is not in flight"
        );
    }

    #[test]
    fn selectors_filter_by_sender_recipient_domain_state_and_age() {
        let now = UnixMillis(3_600_000);
        let e = entry("Spam@X.example", &["b@example.org", "c@other.test"], 0);
        let all = selection(pb::Selector::default());
        assert!(all.matches(&e, now));
        for (selector, expected) in [
            (
                pb::Selector {
                    sender: "spam@x.example".into(),
                    ..Default::default()
                },
                true,
            ),
            (
                pb::Selector {
                    sender: "@x.example".into(),
                    ..Default::default()
                },
                true,
            ),
            (
                pb::Selector {
                    sender: "other@x.example".into(),
                    ..Default::default()
                },
                false,
            ),
            (
                pb::Selector {
                    sender: "<>".into(),
                    ..Default::default()
                },
                false,
            ),
            (
                pb::Selector {
                    recipient: "C@OTHER.test".into(),
                    ..Default::default()
                },
                true,
            ),
            (
                pb::Selector {
                    domain: "other.test".into(),
                    ..Default::default()
                },
                true,
            ),
            (
                pb::Selector {
                    domain: "nowhere.test".into(),
                    ..Default::default()
                },
                false,
            ),
            (
                pb::Selector {
                    min_age_seconds: Some(3600),
                    ..Default::default()
                },
                true,
            ),
            (
                pb::Selector {
                    min_age_seconds: Some(3601),
                    ..Default::default()
                },
                false,
            ),
            (
                pb::Selector {
                    max_age_seconds: Some(60),
                    ..Default::default()
                },
                false,
            ),
            (
                pb::Selector {
                    states: vec![pb::MessageState::Held as i32],
                    ..Default::default()
                },
                false,
            ),
            (
                pb::Selector {
                    ids: vec!["000000000007".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                pb::Selector {
                    ids: vec!["8".into()],
                    ..Default::default()
                },
                false,
            ),
        ] {
            assert_eq!(
                selection(selector.clone()).matches(&e, now),
                expected,
                "{selector:?}"
            );
        }
    }

    #[test]
    fn the_default_selector_skips_finished_messages_but_ids_do_not() {
        let now = UnixMillis(1);
        let mut e = entry("a@x.example", &["b@example.org"], 0);
        e.state = MessageState::Delivered;
        assert!(!selection(pb::Selector::default()).matches(&e, now));
        let by_id = pb::Selector {
            ids: vec![e.id.to_string()],
            ..Default::default()
        };
        assert!(selection(by_id).matches(&e, now));
    }

    #[test]
    fn bad_ids_and_states_are_invalid_arguments() {
        let bad_id = pb::Selector {
            ids: vec!["not-hex".into()],
            ..Default::default()
        };
        assert_eq!(
            Selection::parse(Some(bad_id)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let bad_state = pb::Selector {
            states: vec![99],
            ..Default::default()
        };
        assert_eq!(
            Selection::parse(Some(bad_state)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
