//! Sans-IO parts of the envelope: checks that refuse a message before anything is
//! sent, and the MAIL and RCPT command lines (also for a recipient check, which offers
//! no message).
//!
//! - SIZE (RFC 1870): a message larger than the server's announced limit is not
//!   offered at all; every recipient gets a synthesized `552 5.3.4` that names the
//!   limit, because no other host of the same domain is likely to take it either.
//! - SMTPUTF8 (RFC 6531): non-ASCII addresses need the extension; without it
//!   the message cannot be sent unchanged, so `553 5.6.7`.

use super::OutgoingMessage;
use super::response::Capabilities;
use crate::reply::RemoteReply;

/// The bytes that count against SIZE: the prefix plus the stored content.
pub(super) fn message_size(message: &OutgoingMessage) -> u64 {
    message.size.saturating_add(message.prefix.len() as u64)
}

fn needs_smtputf8(message: &OutgoingMessage) -> bool {
    !message.sender.is_ascii() || message.recipients.iter().any(|r| !r.is_ascii())
}

/// The reply that refuses the message for every recipient before MAIL, if any.
pub(super) fn refuse_before_mail(
    capabilities: &Capabilities,
    message: &OutgoingMessage,
    host: &str,
) -> Option<RemoteReply> {
    let size = message_size(message);
    if let Some(limit) = capabilities.size_limit
        && size > limit
    {
        return Some(RemoteReply {
            code: 552,
            status: Some("5.3.4".into()),
            text: format!(
                "message size {size} exceeds the fixed limit of {limit} bytes announced by {host}"
            ),
        });
    }
    if needs_smtputf8(message) && !capabilities.smtputf8 {
        return Some(no_smtputf8(host));
    }
    None
}

fn no_smtputf8(host: &str) -> RemoteReply {
    RemoteReply {
        code: 553,
        status: Some("5.6.7".into()),
        text: format!("non-ASCII address, and {host} does not announce SMTPUTF8"),
    }
}

/// `MAIL FROM:<sender>` with SIZE, BODY and SMTPUTF8 as the server allows.
pub(super) fn mail_command(capabilities: &Capabilities, message: &OutgoingMessage) -> String {
    let mut command = format!("MAIL FROM:<{}>", message.sender);
    if capabilities.size {
        command.push_str(&format!(" SIZE={}", message_size(message)));
    }
    // The content is not inspected; declaring 8BITMIME to a server that offers it is
    // harmless for 7-bit content and right for 8-bit content.
    if capabilities.eight_bit_mime {
        command.push_str(" BODY=8BITMIME");
    }
    if needs_smtputf8(message) && capabilities.smtputf8 {
        command.push_str(" SMTPUTF8");
    }
    command.push_str("\r\n");
    command
}

/// `MAIL FROM:<sender>` for a recipient check: no message follows, so no SIZE or
/// BODY. Non-ASCII addresses need SMTPUTF8 as for a message; without it, the `553
/// 5.6.7` a message would get stands in for the MAIL reply.
pub(super) fn check_mail_command(
    capabilities: &Capabilities,
    sender: &str,
    recipient: &str,
    host: &str,
) -> Result<String, RemoteReply> {
    if sender.is_ascii() && recipient.is_ascii() {
        return Ok(format!("MAIL FROM:<{sender}>\r\n"));
    }
    if !capabilities.smtputf8 {
        return Err(no_smtputf8(host));
    }
    Ok(format!("MAIL FROM:<{sender}> SMTPUTF8\r\n"))
}

pub(super) fn rcpt_command(recipient: &str) -> String {
    format!("RCPT TO:<{recipient}>\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(size: u64, prefix: &[u8]) -> OutgoingMessage {
        OutgoingMessage {
            sender: "alice@example.org".into(),
            recipients: vec!["bob@example.net".into()],
            size,
            prefix: prefix.to_vec(),
            not_after: None,
        }
    }

    fn with_limit(limit: Option<u64>) -> Capabilities {
        Capabilities {
            extended: true,
            size: true,
            size_limit: limit,
            ..Capabilities::default()
        }
    }

    #[test]
    fn size_counts_the_prefix_and_names_the_limit() {
        let caps = with_limit(Some(1000));
        let host = "mx.example.net[192.0.2.1]:25";
        assert_eq!(refuse_before_mail(&caps, &message(1000, b""), host), None);
        let refused = refuse_before_mail(&caps, &message(990, b"Received: x\r\n"), host)
            .expect("over the limit with the prefix");
        assert_eq!(refused.code, 552);
        assert_eq!(refused.status.as_deref(), Some("5.3.4"));
        assert!(refused.text.contains("1000"), "{}", refused.text);
        assert!(refused.text.contains("1003"), "{}", refused.text);
    }

    #[test]
    fn no_announced_limit_refuses_nothing() {
        let huge = message(u64::MAX, b"x");
        assert_eq!(refuse_before_mail(&with_limit(None), &huge, "h"), None);
        assert_eq!(
            refuse_before_mail(&Capabilities::default(), &huge, "h"),
            None
        );
    }

    #[test]
    fn mail_carries_size_only_when_announced() {
        let msg = message(100, b"ab");
        assert_eq!(
            mail_command(&with_limit(None), &msg),
            "MAIL FROM:<alice@example.org> SIZE=102\r\n"
        );
        assert_eq!(
            mail_command(&Capabilities::default(), &msg),
            "MAIL FROM:<alice@example.org>\r\n"
        );
        let null_sender = OutgoingMessage {
            sender: String::new(),
            ..msg
        };
        let caps = Capabilities {
            eight_bit_mime: true,
            ..with_limit(Some(5000))
        };
        assert_eq!(
            mail_command(&caps, &null_sender),
            "MAIL FROM:<> SIZE=102 BODY=8BITMIME\r\n"
        );
    }

    #[test]
    fn non_ascii_addresses_need_smtputf8() {
        let mut msg = message(10, b"");
        msg.recipients.push("jörg@example.de".into());
        let refused = refuse_before_mail(&Capabilities::default(), &msg, "h").expect("refused");
        assert_eq!(
            (refused.code, refused.status.as_deref()),
            (553, Some("5.6.7"))
        );
        let caps = Capabilities {
            smtputf8: true,
            ..Capabilities::default()
        };
        assert_eq!(refuse_before_mail(&caps, &msg, "h"), None);
        assert!(mail_command(&caps, &msg).ends_with(" SMTPUTF8\r\n"));
    }

    #[test]
    fn a_recipient_check_offers_no_size_and_needs_smtputf8_like_a_message() {
        let caps = Capabilities {
            eight_bit_mime: true,
            ..with_limit(Some(5000))
        };
        assert_eq!(
            check_mail_command(&caps, "", "bob@example.net", "h"),
            Ok("MAIL FROM:<>\r\n".into())
        );
        let refused = check_mail_command(&caps, "", "jörg@example.de", "h").expect_err("553");
        assert_eq!(
            (refused.code, refused.status.as_deref()),
            (553, Some("5.6.7"))
        );
        let caps = Capabilities {
            smtputf8: true,
            ..caps
        };
        assert_eq!(
            check_mail_command(&caps, "", "jörg@example.de", "h"),
            Ok("MAIL FROM:<> SMTPUTF8\r\n".into())
        );
    }
}
