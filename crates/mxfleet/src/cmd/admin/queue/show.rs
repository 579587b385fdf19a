//! `mxfleet queue show ID`: one message in full. The envelope, size, state and lease as
//! `key  value` lines, then the recipients, the stored header section, and the history,
//! one event per line with its UTC time.
//!
//! [`render`] is sans-IO: the reply and the current time in, the text out.

use mxfleet_proto::admin::v1::{MessageDetail, MessageSummary, ShowRequest};

use super::SHOW;
use crate::cmd::admin::connection::Admin;
use crate::cmd::admin::error::CliError;
use crate::cmd::admin::format::{
    age, bytes, next_attempt, relative, sender, state_name, time, time_millis, yes_no,
};
use crate::cmd::admin::json::MessageDetailJson;
use crate::cmd::admin::table::{Table, key_values};
use crate::cmd::admin::{now_ms, print_json, print_text};

pub async fn run(
    admin: &Admin,
    id: String,
    linearizable: bool,
    json: bool,
) -> Result<u8, CliError> {
    let request = admin.request(ShowRequest { id, linearizable });
    let detail = admin.call(SHOW, admin.queue().show(request)).await?;
    if json {
        print_json(&MessageDetailJson::from(&detail))?;
    } else {
        print_text(&render(&detail, now_ms()))?;
    }
    Ok(0)
}

/// A time with how long ago or ahead it is: `2023-11-14T22:13:20Z (in 5m)`.
fn when(ms: u64, now_ms: u64) -> String {
    if ms == 0 {
        "-".to_owned()
    } else {
        format!("{} ({})", time(ms), relative(ms, now_ms))
    }
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

/// The next attempt with its time, for the states that wait for one.
fn next_attempt_time(summary: &MessageSummary, now_ms: u64) -> String {
    match next_attempt(summary.state, summary.next_attempt_at, now_ms).as_str() {
        "-" => "-".to_owned(),
        _ => when(summary.next_attempt_at, now_ms),
    }
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn nodes(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    if ids.is_empty() {
        "none".to_owned()
    } else {
        format!("nodes {}", ids.join(", "))
    }
}

/// The header section, indented, with control characters other than tabs escaped.
fn header_lines(headers: &str) -> String {
    let mut out = String::new();
    for line in headers.lines() {
        out.push_str("  ");
        for c in line.chars() {
            if c.is_control() && c != '\t' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

pub fn render(detail: &MessageDetail, now_ms: u64) -> String {
    let summary = detail.summary.clone().unwrap_or_default();
    let received = if summary.received_at == 0 {
        "-".to_owned()
    } else {
        format!(
            "{} ({} ago) by node {}",
            time(summary.received_at),
            age(now_ms.saturating_sub(summary.received_at) / 1000),
            detail.accepted_by
        )
    };
    let lease = match &detail.lease {
        Some(l) => format!(
            "node {}, token {}, until {}",
            l.owner,
            l.token,
            when(l.lease_until, now_ms)
        ),
        None => "none".to_owned(),
    };
    let mut out = key_values(&[
        ("id", summary.id.clone()),
        ("state", state_name(summary.state).to_owned()),
        (
            "size",
            format!("{} ({} bytes)", bytes(summary.size), summary.size),
        ),
        ("received", received),
        ("received from", or_dash(&detail.received_from)),
        ("sender", sender(&summary.sender)),
        ("message-id", optional(summary.message_id.clone())),
        ("destination", or_dash(&summary.destination)),
        ("attempts", summary.attempts.to_string()),
        ("next attempt", next_attempt_time(&summary, now_ms)),
        ("last reply", or_dash(&summary.last_reply)),
        ("delay warned", yes_no(detail.delay_warned).to_owned()),
        ("lease", lease),
        (
            "body",
            format!(
                "{} held by {}",
                detail.body_digest,
                nodes(&detail.body_holders)
            ),
        ),
        ("dedup key", or_dash(&detail.dedup_key)),
    ]);

    out.push_str("\nrecipients\n");
    let mut recipients = Table::new(&["STATE", "ADDRESS", "LAST REPLY"]);
    for r in &summary.recipients {
        recipients.push(vec![
            r.state.clone(),
            r.address.clone(),
            r.last_reply.clone(),
        ]);
    }
    out.push_str(&indent(&recipients.render()));

    out.push_str("\nheaders\n");
    if detail.headers.is_empty() {
        out.push_str("  (not shown: needs the read-body permission, or no node holds the body)\n");
    } else {
        out.push_str(&header_lines(&detail.headers));
    }

    out.push_str("\nhistory\n");
    let mut history = Table::new(&["AT", "EVENT", "NODE", "TOKEN", "DETAIL"]).right(&[2, 3]);
    for event in &detail.history {
        history.push(vec![
            time_millis(event.at),
            event.kind.clone(),
            optional(event.node),
            optional(event.token),
            event.detail.clone(),
        ]);
    }
    out.push_str(&indent(&history.render()));
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use mxfleet_proto::admin::v1::{
        HistoryEvent, Lease, MessageState, MessageSummary, RecipientStatus,
    };

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn show_prints_envelope_lease_headers_and_one_history_event_per_line() {
        let detail = MessageDetail {
            summary: Some(MessageSummary {
                id: "42".into(),
                state: MessageState::InFlight as i32,
                size: 2048,
                received_at: NOW - 120_000,
                sender: String::new(),
                recipients: vec![RecipientStatus {
                    address: "bob@example.org".into(),
                    state: "pending".into(),
                    last_reply: "451 4.7.1 greylisted".into(),
                }],
                attempts: 1,
                message_id: Some("<m1@example.net>".into()),
                destination: "example.org".into(),
                ..Default::default()
            }),
            accepted_by: 1,
            body_holders: vec![1, 2],
            body_digest: "sha256:ab12".into(),
            headers: "Subject: hi\r\nX-Evil: \u{1b}[31m\r\n\tfolded\r\n".into(),
            lease: Some(Lease {
                owner: 2,
                token: 17,
                lease_until: NOW + 30_000,
            }),
            history: vec![
                HistoryEvent {
                    at: NOW - 120_000,
                    kind: "accepted".into(),
                    node: Some(1),
                    token: None,
                    detail: String::new(),
                },
                HistoryEvent {
                    at: NOW - 60_500,
                    kind: "attempt".into(),
                    node: Some(2),
                    token: Some(16),
                    detail: "[mx.example.org] 451 4.7.1 greylisted".into(),
                },
            ],
            ..Default::default()
        };
        let text = render(&detail, NOW);
        assert!(text.contains("state          in-flight\n"), "{text}");
        assert!(
            text.contains("size           2.0 KiB (2048 bytes)\n"),
            "{text}"
        );
        assert!(
            text.contains("received       2023-11-14T22:11:20Z (2m ago) by node 1\n"),
            "{text}"
        );
        assert!(text.contains("sender         <>\n"), "{text}");
        assert!(
            text.contains("lease          node 2, token 17, until 2023-11-14T22:13:50Z (in 30s)\n"),
            "{text}"
        );
        assert!(
            text.contains("body           sha256:ab12 held by nodes 1, 2\n"),
            "{text}"
        );
        assert!(
            text.contains("  Subject: hi\n  X-Evil: \\u{1b}[31m\n  \tfolded\n"),
            "{text}"
        );
        let history: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "history")
            .skip(2)
            .collect();
        assert_eq!(
            history,
            vec![
                "  2023-11-14T22:11:20.000Z  accepted     1      -",
                "  2023-11-14T22:12:19.500Z  attempt      2     16  [mx.example.org] 451 4.7.1 greylisted",
            ]
        );
    }
}
