//! Part 2 of a DSN: the machine-readable `message/delivery-status` body (RFC 3464 §2):
//! one block of per-message fields, then one block per recipient, blocks separated by
//! an empty line. Every value from outside (addresses, remote host names, replies) is
//! sanitized and folded, so no remote server can add a field or a line of its own.

use mxfleet_core::UnixMillis;
use mxfleet_core::envelope::rfc5322_date;

use super::text::{ascii_text, fold_field, typed_address};
use super::{DiagnosticCode, DsnKind, DsnRequest, RecipientAction, RecipientReport};

/// The `message/delivery-status` body, ending with CRLF.
pub(super) fn render(request: &DsnRequest<'_>) -> String {
    let mut body = String::new();
    body.push_str(&fold_field(
        "Reporting-MTA",
        &format!("dns; {}", request.reporting_host()),
    ));
    body.push_str(&format!("X-Mxfleet-Queue-ID: {}\r\n", request.queue_id));
    body.push_str(&fold_field(
        "X-Mxfleet-Sender",
        &typed_address(&request.envelope.sender),
    ));
    body.push_str(&date_field("Arrival-Date", request.arrival_date));
    let will_retry_until = match request.kind {
        DsnKind::DelayWarning { will_retry_until } => Some(will_retry_until),
        DsnKind::Failure => None,
    };
    for recipient in request.recipients {
        body.push_str("\r\n");
        body.push_str(&recipient_block(recipient, will_retry_until));
    }
    body
}

fn recipient_block(recipient: &RecipientReport, will_retry_until: Option<UnixMillis>) -> String {
    let mut block = String::new();
    block.push_str(&fold_field(
        "Final-Recipient",
        &typed_address(&recipient.final_recipient),
    ));
    if let Some(original) = &recipient.original_recipient {
        block.push_str(&fold_field("Original-Recipient", &typed_address(original)));
    }
    block.push_str(&format!("Action: {}\r\n", recipient.action.keyword()));
    block.push_str(&format!("Status: {}\r\n", status_code(recipient)));
    if let Some(remote_mta) = &recipient.remote_mta {
        block.push_str(&fold_field(
            "Remote-MTA",
            &format!("dns; {}", ascii_text(remote_mta)),
        ));
    }
    if let Some(diagnostic) = &recipient.diagnostic {
        let (diagnostic_type, text) = match diagnostic {
            DiagnosticCode::Smtp(reply) => ("smtp", reply),
            DiagnosticCode::Local(reason) => ("X-Mxfleet", reason),
        };
        block.push_str(&fold_field(
            "Diagnostic-Code",
            &format!("{diagnostic_type}; {}", ascii_text(text)),
        ));
    }
    block.push_str(&date_field("Last-Attempt-Date", recipient.last_attempt));
    if let (RecipientAction::Delayed, Some(until)) = (recipient.action, will_retry_until) {
        block.push_str(&date_field("Will-Retry-Until", until));
    }
    block
}

fn date_field(name: &str, at: UnixMillis) -> String {
    format!("{name}: {}\r\n", rfc5322_date(at))
}

/// The recipient's status when it is an RFC 3463 code (`class.subject.detail`, class
/// 2, 4 or 5, one to three digits each); otherwise the action's generic code, so that a
/// malformed value never reaches the report.
pub(super) fn status_code(recipient: &RecipientReport) -> String {
    let status = recipient.status.trim();
    let mut fields = status.split('.');
    let well_formed = matches!(fields.next(), Some("2" | "4" | "5"))
        && fields.clone().count() == 2
        && fields.all(|field| {
            (1..=3).contains(&field.len()) && field.bytes().all(|b| b.is_ascii_digit())
        });
    if well_formed {
        return status.to_string();
    }
    match recipient.action {
        RecipientAction::Failed => "5.0.0".to_string(),
        RecipientAction::Delayed => "4.0.0".to_string(),
    }
}
