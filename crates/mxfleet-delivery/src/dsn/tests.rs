//! DSN tests: every rendered report is parsed back with mail-parser and checked for
//! structure, the fields RFC 3464 asks for, determinism, size-dependent quoting, and
//! what hostile remote text can and cannot do to it.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use mxfleet_core::{Envelope, QueueId, UnixMillis};

use super::*;
use crate::reply::RemoteReply;

/// 2026-11-21T23:46:00Z.
const NOW: UnixMillis = UnixMillis(1_795_304_760_000);
const ARRIVED: UnixMillis = UnixMillis(1_795_304_760_000 - 5 * 86_400_000);
const ORIGINAL: &[u8] = b"From: Alice <alice@origin.test>\r\n\
To: bob@dest.test\r\n\
Subject: quarterly numbers\r\n\
Message-ID: <m1@origin.test>\r\n\
\r\n\
Hello Bob,\r\n\
the numbers are attached.\r\n";

fn envelope() -> Envelope {
    Envelope {
        sender: "alice@origin.test".into(),
        recipients: vec!["bob@dest.test".into(), "carol@dest.test".into()],
        message_id: Some("<m1@origin.test>".into()),
        trace: None,
    }
}

fn unknown_user() -> RecipientReport {
    RecipientReport {
        final_recipient: "bob@dest.test".into(),
        original_recipient: Some("bob@dest.test".into()),
        action: RecipientAction::Failed,
        status: "5.1.1".into(),
        remote_mta: Some("mx1.dest.test".into()),
        diagnostic: Some(DiagnosticCode::Smtp("550 5.1.1 no such user".into())),
        last_attempt: NOW,
    }
}

fn request<'a>(
    envelope: &'a Envelope,
    recipients: &'a [RecipientReport],
    kind: DsnKind,
) -> DsnRequest<'a> {
    DsnRequest {
        kind,
        reporting_mta: "mx2.fleet.test",
        queue_id: QueueId(0xAB),
        envelope,
        arrival_date: ARRIVED,
        date: NOW,
        recipients,
        original: ORIGINAL,
        original_size: ORIGINAL.len() as u64,
        max_quoted_body: 10_000,
    }
}

fn parse(bytes: &[u8]) -> Message<'_> {
    MessageParser::default()
        .parse(bytes)
        .expect("the DSN parses as a message")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("the DSN is UTF-8")
}

/// The body of the `message/delivery-status` part, as text.
fn delivery_status(message: &Message<'_>) -> String {
    let part = &message.parts[2];
    assert!(part.is_content_type("message", "delivery-status"));
    String::from_utf8(part.contents().to_vec()).expect("delivery-status is ASCII")
}

fn assert_lines_within_998(bytes: &[u8]) {
    for line in text(bytes).split("\r\n") {
        assert!(
            line.len() <= 998,
            "line of {} octets: {line:.80}...",
            line.len()
        );
    }
}

fn assert_crlf_only(bytes: &[u8]) {
    for (index, byte) in bytes.iter().enumerate() {
        match byte {
            b'\n' => assert_eq!(bytes[index - 1], b'\r', "bare LF at {index}"),
            b'\r' => assert_eq!(bytes.get(index + 1), Some(&b'\n'), "bare CR at {index}"),
            _ => {}
        }
    }
}

/// Not a check: `cargo test dsn::tests::print_a_sample -- --ignored --nocapture` shows
/// what a bounce looks like.
#[test]
#[ignore]
fn print_a_sample() {
    let envelope = envelope();
    let recipients = [unknown_user()];
    let bytes = request(&envelope, &recipients, DsnKind::Failure).render();
    println!("{}", text(&bytes));
}

#[test]
fn a_bounce_is_a_three_part_multipart_report() {
    let envelope = envelope();
    let recipients = [unknown_user()];
    let bytes = request(&envelope, &recipients, DsnKind::Failure).render();
    assert_crlf_only(&bytes);
    assert!(bytes.ends_with(b"--=_mxfleet-dsn.0000000000AB--\r\n"));

    let message = parse(&bytes);
    let content_type = message.content_type().expect("Content-Type");
    assert_eq!(content_type.ctype(), "multipart");
    assert_eq!(content_type.subtype(), Some("report"));
    assert_eq!(
        content_type.attribute("report-type"),
        Some("delivery-status")
    );
    assert_eq!(message.parts[0].sub_parts().map(<[_]>::len), Some(3));

    assert!(message.parts[1].is_content_type("text", "plain"));
    assert!(message.parts[2].is_content_type("message", "delivery-status"));
    assert!(message.parts[3].is_content_type("message", "rfc822"));
    assert!(matches!(message.parts[3].body, PartType::Message(_)));

    assert_eq!(
        message.subject(),
        Some("Undelivered Mail Returned to Sender")
    );
    let from = message.from().and_then(|from| from.first()).expect("From");
    assert_eq!(from.address(), Some("MAILER-DAEMON@mx2.fleet.test"));
    let to = message.to().and_then(|to| to.first()).expect("To");
    assert_eq!(to.address(), Some("alice@origin.test"));
    assert_eq!(
        message.message_id(),
        Some("dsn.failure.0000000000AB@mx2.fleet.test")
    );
    assert_eq!(message.in_reply_to().as_text(), Some("m1@origin.test"));
    assert_eq!(message.references().as_text(), Some("m1@origin.test"));
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert!(text(&bytes).contains("\r\nDate: Sat, 21 Nov 2026 23:46:00 +0000\r\n"));
}

#[test]
fn the_delivery_status_part_carries_the_rfc_3464_fields() {
    let envelope = envelope();
    let recipients = [unknown_user()];
    let bytes = request(&envelope, &recipients, DsnKind::Failure).render();
    let status = delivery_status(&parse(&bytes));
    assert_eq!(
        status,
        "Reporting-MTA: dns; mx2.fleet.test\r\n\
         X-Mxfleet-Queue-ID: 0000000000AB\r\n\
         X-Mxfleet-Sender: rfc822; alice@origin.test\r\n\
         Arrival-Date: Mon, 16 Nov 2026 23:46:00 +0000\r\n\
         \r\n\
         Final-Recipient: rfc822; bob@dest.test\r\n\
         Original-Recipient: rfc822; bob@dest.test\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Remote-MTA: dns; mx1.dest.test\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\
         Last-Attempt-Date: Sat, 21 Nov 2026 23:46:00 +0000\r\n"
    );
}

#[test]
fn the_explanation_names_each_recipient_and_its_reason() {
    let envelope = envelope();
    let expired = RecipientReport {
        final_recipient: "carol@dest.test".into(),
        original_recipient: None,
        action: RecipientAction::Failed,
        status: "4.4.7".into(),
        remote_mta: None,
        diagnostic: Some(DiagnosticCode::Local("delivery time expired".into())),
        last_attempt: NOW,
    };
    let recipients = [unknown_user(), expired];
    let bytes = request(&envelope, &recipients, DsnKind::Failure).render();
    let message = parse(&bytes);
    let explanation = message.body_text(0).expect("text part");
    assert!(explanation.contains("mail system at host mx2.fleet.test"));
    assert!(explanation.contains("could not be delivered"));
    assert!(
        explanation.contains("<bob@dest.test>: host mx1.dest.test said: 550 5.1.1 no such user")
    );
    assert!(explanation.contains("<carol@dest.test>: delivery time expired"));

    let status = delivery_status(&message);
    assert!(
        status.contains("Status: 4.4.7\r\nDiagnostic-Code: X-Mxfleet; delivery time expired\r\n")
    );
    assert!(!status.contains("Will-Retry-Until"));
}

#[test]
fn same_request_renders_byte_identical_output() {
    let envelope = envelope();
    let recipients = [unknown_user()];
    let failure = request(&envelope, &recipients, DsnKind::Failure);
    assert_eq!(failure.render(), failure.render());
    let copy = DsnRequest { ..failure };
    assert_eq!(copy.render(), failure.render());

    let delay = DsnKind::DelayWarning {
        will_retry_until: NOW,
    };
    let warning = request(&envelope, &recipients, delay);
    assert_eq!(warning.render(), warning.render());
    assert_ne!(failure.message_id(), warning.message_id());
    assert_eq!(
        warning.message_id(),
        "<dsn.delay.0000000000AB@mx2.fleet.test>"
    );
}

#[test]
fn a_small_original_returns_whole_and_byte_exact() {
    let envelope = envelope();
    let recipients = [unknown_user()];
    let dsn = DsnRequest {
        max_quoted_body: ORIGINAL.len(),
        ..request(&envelope, &recipients, DsnKind::Failure)
    };
    let bytes = dsn.render();
    let mut expected = ORIGINAL.to_vec();
    expected.extend_from_slice(b"\r\n--=_mxfleet-dsn.0000000000AB--\r\n");
    assert!(
        bytes.ends_with(&expected),
        "original quoted byte-exact before the closing boundary"
    );

    let message = parse(&bytes);
    let returned = message.parts[3].message().expect("message/rfc822");
    assert_eq!(returned.subject(), Some("quarterly numbers"));
    assert!(
        returned
            .body_text(0)
            .expect("body")
            .contains("numbers are attached")
    );
}

#[test]
fn an_original_over_the_limit_returns_its_headers_only() {
    let envelope = envelope();
    let recipients = [unknown_user()];
    let dsn = DsnRequest {
        max_quoted_body: ORIGINAL.len() - 1,
        ..request(&envelope, &recipients, DsnKind::Failure)
    };
    let bytes = dsn.render();
    let message = parse(&bytes);
    assert!(message.parts[3].is_content_type("text", "rfc822-headers"));
    let headers = text(message.parts[3].contents());
    assert!(headers.starts_with("From: Alice <alice@origin.test>\r\n"));
    assert!(headers.contains("Subject: quarterly numbers"));
    assert!(
        !text(&bytes).contains("Hello Bob"),
        "the body stays out of the report"
    );
    assert!(
        message
            .body_text(0)
            .expect("text")
            .contains("only its headers")
    );
}

#[test]
fn a_truncated_original_quotes_its_complete_header_lines() {
    let envelope = envelope();
    let recipients = [unknown_user()];
    let dsn = DsnRequest {
        original: &ORIGINAL[..40],
        original_size: 50_000_000,
        ..request(&envelope, &recipients, DsnKind::Failure)
    };
    let bytes = dsn.render();
    let message = parse(&bytes);
    assert!(message.parts[3].is_content_type("text", "rfc822-headers"));
    assert_eq!(
        text(message.parts[3].contents()),
        "From: Alice <alice@origin.test>\r\n"
    );
}

#[test]
fn a_delay_warning_says_until_when_and_asks_for_nothing() {
    let envelope = envelope();
    let late = RecipientReport {
        action: RecipientAction::Delayed,
        status: "4.4.1".into(),
        diagnostic: Some(DiagnosticCode::Local("connection refused".into())),
        ..unknown_user()
    };
    let recipients = [late];
    let until = UnixMillis(NOW.0 + 2 * 86_400_000);
    let bytes = request(
        &envelope,
        &recipients,
        DsnKind::DelayWarning {
            will_retry_until: until,
        },
    )
    .render();
    let message = parse(&bytes);
    assert_eq!(
        message.subject(),
        Some("Delayed Mail (still being retried)")
    );
    assert_eq!(
        message.message_id(),
        Some("dsn.delay.0000000000AB@mx2.fleet.test")
    );

    let explanation = message
        .body_text(0)
        .expect("text part")
        .replace("\r\n", " ");
    assert!(explanation.contains("warning only"));
    assert!(explanation.contains("You do not need to do anything"));
    assert!(explanation.contains("until Mon, 23 Nov 2026 23:46:00 +0000"));

    let status = delivery_status(&message);
    assert!(status.contains("Action: delayed\r\nStatus: 4.4.1\r\n"));
    assert!(status.contains("Will-Retry-Until: Mon, 23 Nov 2026 23:46:00 +0000\r\n"));
    assert!(message.parts[3].is_content_type("message", "rfc822"));
}

#[test]
fn cr_lf_in_a_remote_reply_cannot_inject_fields_or_headers() {
    let envelope = envelope();
    let hostile = RecipientReport {
        remote_mta: Some("mx1.dest.test\r\nX-Injected-Host: 1".into()),
        diagnostic: Some(DiagnosticCode::Smtp(
            "550 no\r\nAction: delivered\r\n\r\nX-Injected: 1\nBcc: victim@x.test\r\n.\r\n".into(),
        )),
        final_recipient: "bob@dest.test\r\nX-Injected-Rcpt: 1".into(),
        ..unknown_user()
    };
    let recipients = [hostile];
    let bytes = request(&envelope, &recipients, DsnKind::Failure).render();
    assert_crlf_only(&bytes);
    let rendered = text(&bytes);
    for injected in ["X-Injected", "Action: delivered", "Bcc:"] {
        assert!(
            !rendered.contains(&format!("\r\n{injected}")),
            "{injected} starts a line of its own"
        );
    }

    let message = parse(&bytes);
    assert!(message.header_raw("Bcc").is_none());
    let status = delivery_status(&message);
    let action_fields: Vec<&str> = status
        .split("\r\n")
        .filter(|line| line.starts_with("Action:"))
        .collect();
    assert_eq!(action_fields, ["Action: failed"]);
    // The text survives, flattened onto the folded field.
    assert!(
        status
            .replace("\r\n ", " ")
            .contains("550 no Action: delivered X-Injected: 1 Bcc:")
    );
}

#[test]
fn a_long_diagnostic_is_folded_within_998_octets_per_line() {
    let envelope = envelope();
    let chatty = format!("550 5.7.1 {} {}", "blocked ".repeat(400), "y".repeat(3000));
    let long = RecipientReport {
        diagnostic: Some(DiagnosticCode::Smtp(chatty)),
        remote_mta: Some("z".repeat(1500)),
        ..unknown_user()
    };
    let recipients = [long];
    let bytes = request(&envelope, &recipients, DsnKind::Failure).render();
    assert_lines_within_998(&bytes);
    let message = parse(&bytes);
    let status = delivery_status(&message);
    assert!(status.contains("Diagnostic-Code: smtp; 550 5.7.1 blocked"));
    assert_eq!(
        status.matches('y').count(),
        3000,
        "nothing is dropped, only folded"
    );
}

#[test]
fn a_planted_boundary_in_the_original_does_not_split_the_report() {
    let envelope = envelope();
    let recipients = [unknown_user()];
    let planted = b"Subject: x\r\n\r\n--=_mxfleet-dsn.0000000000AB\r\n\
Content-Type: text/plain\r\n\r\nforged part\r\n--=_mxfleet-dsn.0000000000AB--\r\n";
    let dsn = DsnRequest {
        original: planted,
        original_size: planted.len() as u64,
        ..request(&envelope, &recipients, DsnKind::Failure)
    };
    let bytes = dsn.render();
    assert!(text(&bytes).contains("boundary=\"=_mxfleet-dsn.0000000000AB.1\""));
    let message = parse(&bytes);
    assert_eq!(message.parts[0].sub_parts().map(<[_]>::len), Some(3));
    assert_eq!(
        message.parts[3].message().map(|m| m.raw_message()),
        Some(planted.as_slice())
    );
    assert_eq!(
        dsn.render(),
        bytes,
        "the fallback boundary is deterministic too"
    );
}

#[test]
fn without_an_original_message_id_there_is_no_in_reply_to() {
    let envelope = Envelope {
        message_id: Some("not a message id\r\nX-Injected: 1".into()),
        ..envelope()
    };
    let recipients = [unknown_user()];
    let bytes = request(&envelope, &recipients, DsnKind::Failure).render();
    let rendered = text(&bytes);
    assert!(!rendered.contains("In-Reply-To"));
    assert!(!rendered.contains("References"));
    assert!(!rendered.contains("X-Injected"));
}

#[test]
fn invalid_status_codes_fall_back_to_the_generic_code() {
    let envelope = envelope();
    let odd = RecipientReport {
        status: "550\r\nX: y".into(),
        ..unknown_user()
    };
    let recipients = [odd];
    let bytes = request(&envelope, &recipients, DsnKind::Failure).render();
    assert!(delivery_status(&parse(&bytes)).contains("Status: 5.0.0\r\n"));
}

#[test]
fn diagnostic_code_from_a_remote_reply() {
    let reply = RemoteReply {
        code: 550,
        status: Some("5.1.1".into()),
        text: "no such user".into(),
    };
    assert_eq!(
        DiagnosticCode::from(&reply),
        DiagnosticCode::Smtp("550 5.1.1 no such user".into())
    );
}

#[test]
fn only_the_null_sender_is_never_notified() {
    assert!(!should_notify(""));
    assert!(!should_notify("<>"));
    assert!(should_notify("alice@origin.test"));
    assert!(should_notify("MAILER-DAEMON@origin.test"));
    assert!(should_notify("postmaster@origin.test"));
}
