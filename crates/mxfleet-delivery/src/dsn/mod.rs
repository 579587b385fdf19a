//! RFC 3464 delivery status notifications: bounces and delay warnings, built as complete
//! RFC 5322 messages (CRLF line endings) that the caller enqueues from the null sender
//! `<>` to the original envelope sender.
//!
//! Pure and sans-IO: every input, including the DSN's own date, arrives in a
//! [`DsnRequest`], and [`DsnRequest::render`] returns the bytes.
//!
//! # Determinism
//!
//! The same request always renders byte-identical output: the Message-ID comes from the
//! queue id, the kind and the reporting MTA, the MIME boundary from the queue id, and
//! nothing reads a clock or a random source. The fleet deduplicates submissions by
//! Message-ID, sender, recipients and body, so a DSN that is built and enqueued again
//! (after a crash, or by another node) is stored once — provided the caller passes the
//! same inputs both times: the fleet-wide reporting name rather than a node's own
//! hostname when nodes differ, and dates taken from the replicated queue state (the
//! committed failure), never from the local clock at the time of building.
//!
//! # Layout
//!
//! - this file: the request types ([`DsnRequest`], [`DsnKind`], [`RecipientReport`],
//!   [`RecipientAction`], [`DiagnosticCode`]), [`should_notify`] and the assembly of the
//!   top-level header and the `multipart/report` body.
//! - `explanation`: part 1, the `text/plain` explanation for humans.
//! - `status`: part 2, the `message/delivery-status` fields.
//! - `quote`: part 3, the original as `message/rfc822` or `text/rfc822-headers`.
//! - `text`: sanitizing remote text and folding lines to at most 998 octets.

mod explanation;
mod quote;
mod status;
mod text;

#[cfg(test)]
mod tests;

use mxfleet_core::envelope::rfc5322_date;
use mxfleet_core::{Envelope, QueueId, UnixMillis};

use crate::reply::RemoteReply;

use quote::QuotedOriginal;

/// Which notification to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnKind {
    /// A bounce: delivery failed permanently, or the queue lifetime expired.
    Failure,
    /// Delivery is late but continues; nothing is returned yet.
    DelayWarning {
        /// When the queue gives up on the message (its queue lifetime ends).
        will_retry_until: UnixMillis,
    },
}

/// The RFC 3464 `Action:` of one recipient. Only the two that mxfleet reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipientAction {
    /// `failed`: the message will not be delivered to this recipient.
    Failed,
    /// `delayed`: delivery to this recipient is still being retried.
    Delayed,
}

impl RecipientAction {
    fn keyword(self) -> &'static str {
        match self {
            RecipientAction::Failed => "failed",
            RecipientAction::Delayed => "delayed",
        }
    }
}

/// Why delivery to a recipient failed or is late, as RFC 3464's `Diagnostic-Code:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiagnosticCode {
    /// The remote server's SMTP reply as it sent it, e.g. `550 5.1.1 no such user`.
    /// Rendered as `smtp; ...`. It is untrusted text: control characters are removed
    /// and long replies are folded.
    Smtp(String),
    /// A failure that produced no SMTP reply (DNS, connection refused, TLS, queue
    /// lifetime expired), in words. Rendered as `X-Mxfleet; ...`.
    Local(String),
}

impl From<&RemoteReply> for DiagnosticCode {
    fn from(reply: &RemoteReply) -> Self {
        DiagnosticCode::Smtp(reply.to_string())
    }
}

/// One recipient's line in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientReport {
    /// The forward path delivery was attempted to, without angle brackets.
    pub final_recipient: String,
    /// The ORCPT address (RFC 3461) when the client gave one, without its type.
    pub original_recipient: Option<String>,
    pub action: RecipientAction,
    /// The RFC 3463 enhanced status code, e.g. `5.1.1` or `4.4.7`. A value that is not
    /// one is reported as `5.0.0` (failed) or `4.0.0` (delayed).
    pub status: String,
    /// The host name of the server that gave the diagnostic, when one was reached.
    pub remote_mta: Option<String>,
    pub diagnostic: Option<DiagnosticCode>,
    /// When delivery to this recipient was last tried.
    pub last_attempt: UnixMillis,
}

/// Everything a DSN says. Borrowed: the caller owns the queue entry and the body bytes
/// for as long as it renders.
#[derive(Clone, Copy, Debug)]
pub struct DsnRequest<'a> {
    pub kind: DsnKind,
    /// The host name of the MTA that writes the report (ours). Appears in `From:`,
    /// `Message-ID:` and `Reporting-MTA:`.
    pub reporting_mta: &'a str,
    /// The queue id of the original message.
    pub queue_id: QueueId,
    /// The original message's envelope: the DSN goes to its sender and refers to its
    /// Message-ID.
    pub envelope: &'a Envelope,
    /// When the original message was accepted.
    pub arrival_date: UnixMillis,
    /// The DSN's own `Date:`.
    pub date: UnixMillis,
    /// The recipients this DSN reports on, in the order they appear in it.
    pub recipients: &'a [RecipientReport],
    /// The start of the original message: all of it when it is small, otherwise at
    /// least its header section (the caller reads `max_quoted_body` plus some bytes).
    pub original: &'a [u8],
    /// The original message's full size in bytes.
    pub original_size: u64,
    /// The largest original returned whole (`message/rfc822`); a larger one, or one of
    /// which fewer than `original_size` bytes were passed, is returned as its header
    /// section only (`text/rfc822-headers`, RFC 6522).
    pub max_quoted_body: usize,
}

/// Whether a message from `sender` may be answered with a DSN.
///
/// False only for the null reverse-path: a DSN (or any message) sent from `<>` must
/// never be answered with another notification (RFC 5321 §4.5.5, RFC 3464 §2), which is
/// what keeps two MTAs from bouncing bounces at each other forever. `sender` is the
/// envelope sender as [`Envelope::sender`] holds it, without angle brackets, so the null
/// sender is `""`; the bracketed form `"<>"` is treated the same, defensively.
///
/// Every other sender is notified, including `MAILER-DAEMON@...` and `postmaster@...`:
/// the RFCs tie the rule to the null reverse-path, not to local parts, and a postmaster
/// must be told when its mail fails.
pub fn should_notify(sender: &str) -> bool {
    !(sender.is_empty() || sender == "<>")
}

impl DsnRequest<'_> {
    /// The DSN's `Message-ID:`, e.g. `<dsn.failure.0000000000AB@mx2.example.net>`.
    /// The same for every rendering of the same queue id, kind and reporting MTA.
    pub fn message_id(&self) -> String {
        let kind = match self.kind {
            DsnKind::Failure => "failure",
            DsnKind::DelayWarning { .. } => "delay",
        };
        format!("<dsn.{kind}.{}@{}>", self.queue_id, self.reporting_host())
    }

    /// The complete message: header section, then a three-part `multipart/report`,
    /// ending with the closing boundary and CRLF. The caller checks
    /// [`should_notify`] first; this renders whatever it is given.
    ///
    /// The output is US-ASCII except for the quoted original (and the `To:` address
    /// under SMTPUTF8), which are copied as they are; the part that holds them is then
    /// labelled `8bit`, and the caller must send with `BODY=8BITMIME`.
    pub fn render(&self) -> Vec<u8> {
        let quoted = quote::select(self.original, self.original_size, self.max_quoted_body);
        let explanation = explanation::render(self, &quoted);
        let status = status::render(self);
        let boundary = self.boundary(&[explanation.as_bytes(), status.as_bytes(), quoted.bytes()]);

        let mut out = self.top_header(&boundary).into_bytes();
        out.extend_from_slice(
            b"This is a delivery status notification in MIME format (RFC 3464).\r\n",
        );
        let mut part = |headers: &str, body: &[u8]| {
            out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
            out.extend_from_slice(headers.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
        };
        part(
            "Content-Type: text/plain; charset=us-ascii\r\n\
             Content-Description: Notification\r\n\
             Content-Transfer-Encoding: 7bit\r\n",
            explanation.as_bytes(),
        );
        part(
            "Content-Type: message/delivery-status\r\n\
             Content-Description: Delivery report\r\n\
             Content-Transfer-Encoding: 7bit\r\n",
            status.as_bytes(),
        );
        part(&self.quoted_part_header(&quoted), quoted.bytes());
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        out
    }

    fn top_header(&self, boundary: &str) -> String {
        let subject = match self.kind {
            DsnKind::Failure => "Undelivered Mail Returned to Sender",
            DsnKind::DelayWarning { .. } => "Delayed Mail (still being retried)",
        };
        let mut header = String::new();
        header.push_str(&format!(
            "From: Mail Delivery System <MAILER-DAEMON@{}>\r\n",
            self.reporting_host()
        ));
        let to = format!("<{}>", text::header_text(&self.envelope.sender));
        header.push_str(&text::fold_field("To", &to));
        header.push_str(&format!("Subject: {subject}\r\n"));
        header.push_str(&format!("Date: {}\r\n", rfc5322_date(self.date)));
        header.push_str(&format!("Message-ID: {}\r\n", self.message_id()));
        if let Some(original_id) = self
            .envelope
            .message_id
            .as_deref()
            .and_then(plausible_msg_id)
        {
            header.push_str(&format!("In-Reply-To: {original_id}\r\n"));
            header.push_str(&format!("References: {original_id}\r\n"));
        }
        header.push_str("Auto-Submitted: auto-replied\r\n");
        header.push_str("MIME-Version: 1.0\r\n");
        header.push_str(&format!(
            "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
        ));
        header.push_str("\r\n");
        header
    }

    fn quoted_part_header(&self, quoted: &QuotedOriginal<'_>) -> String {
        let late = matches!(self.kind, DsnKind::DelayWarning { .. });
        let (content_type, description) = match (quoted, late) {
            (QuotedOriginal::Whole(_), false) => ("message/rfc822", "Undelivered message"),
            (QuotedOriginal::Whole(_), true) => ("message/rfc822", "Delayed message"),
            (QuotedOriginal::HeadersOnly(_), false) => {
                ("text/rfc822-headers", "Undelivered message headers")
            }
            (QuotedOriginal::HeadersOnly(_), true) => {
                ("text/rfc822-headers", "Delayed message headers")
            }
        };
        let encoding = if quoted.bytes().is_ascii() {
            "7bit"
        } else {
            "8bit"
        };
        format!(
            "Content-Type: {content_type}\r\n\
             Content-Description: {description}\r\n\
             Content-Transfer-Encoding: {encoding}\r\n"
        )
    }

    /// `=_mxfleet-dsn.<queue id>`, with `.1`, `.2`, ... appended until it occurs in none
    /// of the parts. Queue ids are predictable, so a sender could plant the plain form
    /// in a message it expects to bounce and smuggle parts into the report otherwise.
    fn boundary(&self, parts: &[&[u8]]) -> String {
        let base = format!("=_mxfleet-dsn.{}", self.queue_id);
        let occurs = |candidate: &str| {
            parts.iter().any(|part| {
                part.windows(candidate.len())
                    .any(|window| window == candidate.as_bytes())
            })
        };
        if !occurs(&base) {
            return base;
        }
        (1u64..)
            .map(|suffix| format!("{base}.{suffix}"))
            .find(|candidate| !occurs(candidate))
            .expect("finitely many parts cannot contain every suffix")
    }

    /// The reporting MTA reduced to host-name characters, so that it cannot break the
    /// header lines it is written into.
    fn reporting_host(&self) -> String {
        let host: String = self
            .reporting_mta
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        if host.is_empty() {
            "localhost".to_string()
        } else {
            host
        }
    }
}

/// The original Message-ID when it looks like one (`<...>`, no spaces or control
/// characters, short enough for one line); `In-Reply-To` is omitted otherwise.
fn plausible_msg_id(message_id: &str) -> Option<&str> {
    let message_id = message_id.trim();
    let plausible = message_id.len() > 2
        && message_id.len() <= 900
        && message_id.starts_with('<')
        && message_id.ends_with('>')
        && !message_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    plausible.then_some(message_id)
}
