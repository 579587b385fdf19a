//! The SMTP envelope of a queued message: what MAIL FROM and RCPT TO said, the
//! Message-ID that dedup keys on, and the trace of how the message reached us.

use serde::{Deserialize, Serialize};

use crate::{QueueId, UnixMillis};

/// The envelope as accepted at intake. The body lives in the blob store; this travels
/// through the Raft log and stays small.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path, without angle brackets. Empty for the null sender (`<>`).
    pub sender: String,
    /// Forward paths, without angle brackets, in the order RCPT TO gave them.
    pub recipients: Vec<String>,
    /// The message's `Message-ID:` header, if it had one, with its angle brackets.
    pub message_id: Option<String>,
    /// How the message reached the fleet, for its `Received:` header.
    pub trace: Option<ReceivedTrace>,
}

/// What the accepting SMTP session knew about the client.
///
/// The `Received:` header is written from this when the message is delivered, not
/// prepended to the stored body at intake: the body stays byte-identical to what the
/// sender sent, so a sender that retries through another node produces the same body
/// digest and the fleet stores the message once. It also lets the header carry the
/// queue id, which exists only once the `Enqueue` is committed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedTrace {
    /// What the client said in EHLO/HELO.
    pub helo: String,
    /// The client's IP address.
    pub client_ip: String,
    /// The accepting node's SMTP hostname.
    pub by_host: String,
    /// `SMTP`, `ESMTP`, `ESMTPS` (RFC 3848).
    pub protocol: String,
    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384` when STARTTLS was used.
    pub tls: Option<String>,
    /// The value of a `Received-SPF:` field (RFC 7208 §9.1) when the accepting node
    /// evaluated SPF, so that the primary sees the result as the backup saw it.
    pub received_spf: Option<String>,
}

impl ReceivedTrace {
    /// The `Received:` header field (with CRLF) for message `id`, received at `at`,
    /// for `recipient` (the `for` clause names one recipient only when there is one,
    /// as Postfix does, so as not to leak a BCC list). When SPF was evaluated, a
    /// `Received-SPF:` field comes first, above the `Received:` field it belongs to
    /// (RFC 7208 §9.1).
    pub fn received_header(&self, id: QueueId, at: UnixMillis, recipients: &[String]) -> String {
        let tls = match &self.tls {
            Some(tls) => format!("\r\n\t(using {tls})"),
            None => String::new(),
        };
        let recipient = match recipients {
            [only] => format!("\r\n\tfor <{only}>"),
            _ => String::new(),
        };
        let spf = match &self.received_spf {
            Some(value) => format!("Received-SPF: {}\r\n", sanitize(value)),
            None => String::new(),
        };
        format!(
            "{spf}Received: from {} ([{}]){tls}\r\n\tby {} (mxfleet) with {} id {id}{recipient};\r\n\t{}\r\n",
            sanitize(&self.helo),
            sanitize(&self.client_ip),
            sanitize(&self.by_host),
            sanitize(&self.protocol),
            rfc5322_date(at)
        )
    }
}

/// Keeps client-supplied text from breaking the header: no CR, LF or control bytes.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `Sat, 21 Nov 2026 23:46:00 +0000` for a Unix time in milliseconds (UTC).
pub fn rfc5322_date(at: UnixMillis) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = at.0 / 1000;
    let days = secs / 86_400;
    let (hour, minute, second) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day} {} {year} {hour:02}:{minute:02}:{second:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc_5322() {
        assert_eq!(
            rfc5322_date(UnixMillis(0)),
            "Thu, 1 Jan 1970 00:00:00 +0000"
        );
        // 2026-11-21T23:46:00Z
        assert_eq!(
            rfc5322_date(UnixMillis(1_795_304_760_000)),
            "Sat, 21 Nov 2026 23:46:00 +0000"
        );
        // 2024-02-29T12:00:00Z, a leap day
        assert_eq!(
            rfc5322_date(UnixMillis(1_709_208_000_000)),
            "Thu, 29 Feb 2024 12:00:00 +0000"
        );
    }

    #[test]
    fn received_header_names_queue_id_tls_and_a_single_recipient() {
        let trace = ReceivedTrace {
            helo: "client.example".into(),
            client_ip: "192.0.2.7".into(),
            by_host: "mx2.example.net".into(),
            protocol: "ESMTPS".into(),
            tls: Some("TLSv1_3 TLS13_AES_256_GCM_SHA384".into()),
            received_spf: None,
        };
        let header = trace.received_header(QueueId(0x2A), UnixMillis(0), &["a@example.org".into()]);
        assert_eq!(
            header,
            "Received: from client.example ([192.0.2.7])\r\n\t(using TLSv1_3 TLS13_AES_256_GCM_SHA384)\r\n\tby mx2.example.net (mxfleet) with ESMTPS id 00000000002A\r\n\tfor <a@example.org>;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
        let two = trace.received_header(
            QueueId(1),
            UnixMillis(0),
            &["a@x.org".into(), "b@x.org".into()],
        );
        assert!(
            !two.contains("for <"),
            "no for clause with several recipients: {two}"
        );
    }

    #[test]
    fn client_text_cannot_inject_header_lines() {
        let trace = ReceivedTrace {
            helo: "evil\r\nX-Injected: 1".into(),
            ..Default::default()
        };
        let header = trace.received_header(QueueId(1), UnixMillis(0), &[]);
        assert!(!header.contains("\r\nX-Injected"), "{header}");
    }

    #[test]
    fn the_spf_result_comes_above_its_received_field() {
        let trace = ReceivedTrace {
            helo: "mail.example.org".into(),
            received_spf: Some("pass (mx2: domain of a@example.org designates 192.0.2.7 as permitted sender)\r\nX-Injected: 1".into()),
            ..Default::default()
        };
        let header = trace.received_header(QueueId(1), UnixMillis(0), &[]);
        assert!(
            header.starts_with("Received-SPF: pass (mx2: domain of"),
            "{header}"
        );
        let spf_end = header.find("\r\n").unwrap();
        assert!(
            header[spf_end + 2..].starts_with("Received: from mail.example.org"),
            "{header}"
        );
        assert!(!header.contains("\r\nX-Injected"), "{header}");
    }
}
