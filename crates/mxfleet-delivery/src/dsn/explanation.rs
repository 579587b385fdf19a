//! Part 1 of a DSN: the explanation for the person who sent the message, in plain
//! US-ASCII, wrapped at 72 columns, with one entry per recipient and the reason the
//! remote server gave.

use mxfleet_core::envelope::rfc5322_date;

use super::quote::QuotedOriginal;
use super::text::{ascii_text, wrap};
use super::{DiagnosticCode, DsnKind, DsnRequest, RecipientReport};

const WIDTH: usize = 72;

/// The `text/plain` body, ending with CRLF.
pub(super) fn render(request: &DsnRequest<'_>, quoted: &QuotedOriginal<'_>) -> String {
    let host = request.reporting_host();
    let mut paragraphs = vec![format!("This is the mail system at host {host}.")];
    match request.kind {
        DsnKind::Failure => {
            paragraphs.push(
                "Your message could not be delivered to one or more of its recipients. \
                 Delivery to them has stopped: either their mail servers refused the \
                 message, or it could not be delivered for too long."
                    .to_string(),
            );
            paragraphs.push(match quoted {
                QuotedOriginal::Whole(_) => {
                    "The recipients and the reasons are listed below, and your message \
                     is attached."
                        .to_string()
                }
                QuotedOriginal::HeadersOnly(_) => format!(
                    "The recipients and the reasons are listed below. Your message was \
                     {} bytes, too large to return, so only its headers are attached.",
                    request.original_size
                ),
            });
        }
        DsnKind::DelayWarning { will_retry_until } => {
            paragraphs.push(
                "This is a warning only. You do not need to do anything, and you \
                 should not send your message again."
                    .to_string(),
            );
            paragraphs.push(format!(
                "Your message, received on {}, has not yet been delivered to the \
                 recipients listed below. Delivery will be tried again until {}. You will \
                 hear from this mail system again only if it still cannot be delivered \
                 by then.",
                rfc5322_date(request.arrival_date),
                rfc5322_date(will_retry_until)
            ));
        }
    }
    paragraphs.push(format!(
        "For reference, the message's queue id on this system is {}.",
        request.queue_id
    ));

    let mut body = String::new();
    for paragraph in &paragraphs {
        body.push_str(&wrap("", paragraph, "", WIDTH));
        body.push_str("\r\n");
    }
    let entries: Vec<String> = request.recipients.iter().map(recipient_entry).collect();
    body.push_str(&entries.join("\r\n"));
    body
}

/// `<addr>: reason`, wrapped with continuation lines indented by four spaces.
fn recipient_entry(recipient: &RecipientReport) -> String {
    let reason = match (&recipient.diagnostic, &recipient.remote_mta) {
        (Some(DiagnosticCode::Smtp(reply)), Some(host)) => {
            format!("host {} said: {}", ascii_text(host), ascii_text(reply))
        }
        (Some(DiagnosticCode::Smtp(reply)), None) => {
            format!("the remote server said: {}", ascii_text(reply))
        }
        (Some(DiagnosticCode::Local(reason)), _) => ascii_text(reason),
        (None, _) => format!(
            "delivery {} (status {})",
            match recipient.action {
                super::RecipientAction::Failed => "failed",
                super::RecipientAction::Delayed => "is delayed",
            },
            super::status::status_code(recipient)
        ),
    };
    let address = ascii_text(&recipient.final_recipient);
    wrap(&format!("<{}>: ", address.trim()), &reason, "    ", WIDTH)
}
