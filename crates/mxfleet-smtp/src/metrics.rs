//! Metrics of the SMTP side, counted where the listener and the session decide.
//!
//! Main types:
//! - [`SmtpMetrics`]: carried in `SessionConfig::metrics` (one per node; clones share
//!   the values), recorded by the listener and every session, added to a node's
//!   registry with [`SmtpMetrics::register`].
//! - [`RejectReason`]: why a connection, sender, recipient or message was refused: the
//!   short stable label of `mxfleet_smtp_rejected_total`.
//!
//! Exposed names:
//! - `mxfleet_smtp_connections_total` (counter): TCP connections accepted by the
//!   listener (those then refused for connection limits included).
//! - `mxfleet_smtp_sessions_active` (gauge): sessions running now.
//! - `mxfleet_smtp_sessions_ended_total{end}` (counter): how sessions ended (`quit`,
//!   `client_closed`, `timeout`, `too_many_errors`, `limit_reached`, `shutdown`,
//!   `tls_failed`, `io_error`).
//! - `mxfleet_smtp_replies_total{class}` (counter): replies sent, by class (`2xx`,
//!   `3xx`, `4xx`, `5xx`), the banner and the listener's refusals included.
//! - `mxfleet_smtp_messages_accepted_total` (counter): messages answered `250` after
//!   DATA (durable on a majority; a resubmission the dedup index caught included).
//! - `mxfleet_smtp_accepted_bytes_total` (counter): their sizes.
//! - `mxfleet_smtp_rejected_total{reason}` (counter): refusals, by [`RejectReason`].
//! - `mxfleet_spam_checks_total{check, result}` (counter): every decision of a spam
//!   check, passes included (`greylisting`: `new`, `too_early`, `passed`, `known`,
//!   `allowlisted`, `auto_allowlisted`; `verify_recipients`: `cache_valid`,
//!   `probe_invalid`, `none_unknown`, ...; `dnsbl`: `listed`, `clean`, `lookup_failed`).
//!
//! Every label value of these closed sets is exposed from the start, at zero.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::reply::Reply;
use crate::session::SessionEnd;

/// A one-label label set, e.g. `[("class", "2xx")]`.
type Label = [(&'static str, &'static str); 1];
/// `[("check", ...), ("result", ...)]`.
type CheckLabel = [(&'static str, &'static str); 2];

/// Why something was refused. Each variant is one stable label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The listener's connection limits (in total or per client IP): `421 4.7.0`.
    ConnectionLimit,
    /// EHLO/HELO name syntax: `501 5.5.2`.
    InvalidHelo,
    /// MAIL FROM address syntax or routing form: `501 5.1.7` / `504 5.5.2`.
    BadSenderAddress,
    /// A UTF-8 address without SMTPUTF8: `553 5.6.7`.
    Smtputf8Required,
    /// Declared or actual size over the limit: `552 5.3.4`.
    MessageTooLarge,
    /// Too many transactions in one session: `421 4.7.0`.
    TooManyMessages,
    /// A recipient outside our relay domains (or a routing trick): `554 5.7.1`.
    RelayDenied,
    /// A recipient not in its domain's recipient list: `550 5.1.1`.
    UnknownRecipient,
    /// Recipient address syntax: `501 5.1.3` / `504 5.5.2`.
    BadRecipientAddress,
    /// More recipients than the limit: `452 4.5.3`.
    TooManyRecipients,
    /// Bare CR or LF in DATA (SMTP smuggling protection): `554 5.6.0`.
    BareLineEnding,
    /// Too many `Received:` headers: `554 5.4.6`.
    MailLoop,
    /// No majority in time: `451 4.3.0`.
    NoQuorum,
    /// The queue failed otherwise: `451 4.3.0`.
    QueueUnavailable,
    /// Disk full here or on too many peers: `452 4.3.1`.
    StorageFull,
    /// An operator drained this node: `421 4.3.2` before the banner.
    NodeDrained,
    /// A new or too-early greylisting triplet: `451 4.7.1`.
    Greylisted,
    /// The client's DNSBL score reached the threshold: `554 5.7.1`.
    Dnsbl,
    /// The sender domain is on an RHSBL: `554 5.7.1`.
    RhsblSender,
    /// The sender domain has no MX and no address, or a null MX: `450 4.1.8` and kin.
    UnknownSenderDomain,
    /// The client's reverse DNS does not resolve back to it: `450 4.7.25`.
    UnknownClientHostname,
    /// SPF `fail`, with rejection configured: `550 5.7.23`.
    SpfFail,
    /// The primary refused the recipient (now or in the cache): `550 5.1.1`; or no
    /// answer with `unknown_action = "defer"`: `450 4.1.1`.
    UnverifiedRecipient,
    /// A primary-aware domain while its primary is up: `451 4.7.1`.
    PrimaryUp,
    /// A connection, message or recipient rate limit: `421 4.7.0` or `450 4.7.1`.
    RateLimited,
    /// The client talked before the banner: `554 5.5.1`.
    Pregreet,
}

impl RejectReason {
    /// Every reason, so that each series exists (at zero) from the start.
    pub const ALL: [RejectReason; 26] = [
        RejectReason::ConnectionLimit,
        RejectReason::InvalidHelo,
        RejectReason::BadSenderAddress,
        RejectReason::Smtputf8Required,
        RejectReason::MessageTooLarge,
        RejectReason::TooManyMessages,
        RejectReason::RelayDenied,
        RejectReason::UnknownRecipient,
        RejectReason::BadRecipientAddress,
        RejectReason::TooManyRecipients,
        RejectReason::BareLineEnding,
        RejectReason::MailLoop,
        RejectReason::NoQuorum,
        RejectReason::QueueUnavailable,
        RejectReason::StorageFull,
        RejectReason::NodeDrained,
        RejectReason::Greylisted,
        RejectReason::Dnsbl,
        RejectReason::RhsblSender,
        RejectReason::UnknownSenderDomain,
        RejectReason::UnknownClientHostname,
        RejectReason::SpfFail,
        RejectReason::UnverifiedRecipient,
        RejectReason::PrimaryUp,
        RejectReason::RateLimited,
        RejectReason::Pregreet,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::ConnectionLimit => "connection_limit",
            RejectReason::InvalidHelo => "invalid_helo",
            RejectReason::BadSenderAddress => "bad_sender_address",
            RejectReason::Smtputf8Required => "smtputf8_required",
            RejectReason::MessageTooLarge => "message_too_large",
            RejectReason::TooManyMessages => "too_many_messages",
            RejectReason::RelayDenied => "relay_denied",
            RejectReason::UnknownRecipient => "unknown_recipient",
            RejectReason::BadRecipientAddress => "bad_recipient_address",
            RejectReason::TooManyRecipients => "too_many_recipients",
            RejectReason::BareLineEnding => "bare_line_ending",
            RejectReason::MailLoop => "mail_loop",
            RejectReason::NoQuorum => "no_quorum",
            RejectReason::QueueUnavailable => "queue_unavailable",
            RejectReason::StorageFull => "storage_full",
            RejectReason::NodeDrained => "node_drained",
            RejectReason::Greylisted => "greylisted",
            RejectReason::Dnsbl => "dnsbl",
            RejectReason::RhsblSender => "rhsbl_sender",
            RejectReason::UnknownSenderDomain => "unknown_sender_domain",
            RejectReason::UnknownClientHostname => "unknown_client_hostname",
            RejectReason::SpfFail => "spf_fail",
            RejectReason::UnverifiedRecipient => "unverified_recipient",
            RejectReason::PrimaryUp => "primary_up",
            RejectReason::RateLimited => "rate_limited",
            RejectReason::Pregreet => "pregreet",
        }
    }

    /// The reason for a recipient the relay policy refused, from the reply it chose
    /// (the policy's enhanced status codes are distinct per refusal).
    pub(crate) fn of_recipient_reply(reply: &Reply) -> Self {
        match reply.status {
            "5.7.1" => RejectReason::RelayDenied,
            "5.1.1" => RejectReason::UnknownRecipient,
            _ => RejectReason::BadRecipientAddress,
        }
    }
}

/// Every (check, result) pair `mxfleet_spam_checks_total` can count, so that each
/// series exists from the start.
const SPAM_CHECK_RESULTS: &[(&str, &[&str])] = &[
    (
        "primary_aware",
        &["primary_down", "primary_up", "primary_unknown"],
    ),
    ("dnsbl", &["listed", "clean", "lookup_failed"]),
    ("rhsbl_sender", &["listed", "clean"]),
    (
        "unknown_client_hostname",
        &["verified", "no_ptr", "mismatch", "temporary"],
    ),
    (
        "unknown_sender_domain",
        &["exists", "not_found", "null_mx", "temporary"],
    ),
    (
        "spf",
        &[
            "pass",
            "fail",
            "softfail",
            "neutral",
            "none",
            "temperror",
            "permerror",
        ],
    ),
    (
        "verify_recipients",
        &[
            "cache_valid",
            "cache_invalid",
            "probe_valid",
            "probe_invalid",
            "unknown",
        ],
    ),
    (
        "greylisting",
        &[
            "allowlisted",
            "auto_allowlisted",
            "known",
            "passed",
            "new",
            "too_early",
        ],
    ),
];

/// Reply classes, as labelled.
const REPLY_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// The SMTP side's metrics. `Default` starts every value at zero.
#[derive(Clone, Debug)]
pub struct SmtpMetrics {
    connections: Counter,
    sessions_active: Gauge,
    sessions_ended: Family<Label, Counter>,
    replies: Family<Label, Counter>,
    accepted: Counter,
    accepted_bytes: Counter,
    rejected: Family<Label, Counter>,
    spam_checks: Family<CheckLabel, Counter>,
}

impl Default for SmtpMetrics {
    fn default() -> Self {
        let metrics = SmtpMetrics {
            connections: Counter::default(),
            sessions_active: Gauge::default(),
            sessions_ended: Family::default(),
            replies: Family::default(),
            accepted: Counter::default(),
            accepted_bytes: Counter::default(),
            rejected: Family::default(),
            spam_checks: Family::default(),
        };
        // Every label value of the closed sets exists from the start, at zero: a series
        // that first appears at its first increment hides that increment from `rate()`.
        for class in REPLY_CLASSES {
            metrics.replies.get_or_create_owned(&[("class", class)]);
        }
        for reason in RejectReason::ALL {
            metrics
                .rejected
                .get_or_create_owned(&[("reason", reason.as_str())]);
        }
        for end in SESSION_ENDS {
            metrics.sessions_ended.get_or_create_owned(&[("end", end)]);
        }
        for (check, results) in SPAM_CHECK_RESULTS {
            for result in *results {
                metrics
                    .spam_checks
                    .get_or_create_owned(&[("check", check), ("result", result)]);
            }
        }
        metrics
    }
}

/// Session ends, as labelled (`end_label`).
const SESSION_ENDS: [&str; 8] = [
    "quit",
    "client_closed",
    "timeout",
    "too_many_errors",
    "limit_reached",
    "shutdown",
    "tls_failed",
    "io_error",
];

fn end_label(end: SessionEnd) -> &'static str {
    match end {
        SessionEnd::Quit => "quit",
        SessionEnd::ClientClosed => "client_closed",
        SessionEnd::Timeout => "timeout",
        SessionEnd::TooManyErrors => "too_many_errors",
        SessionEnd::LimitReached => "limit_reached",
        SessionEnd::Shutdown => "shutdown",
        SessionEnd::TlsFailed => "tls_failed",
        SessionEnd::IoError => "io_error",
    }
}

/// Counts a session as active until dropped.
pub(crate) struct ActiveSession(Gauge);

impl Drop for ActiveSession {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl SmtpMetrics {
    /// Adds every SMTP metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mxfleet_smtp_connections",
            "TCP connections accepted by the SMTP listener",
            self.connections.clone(),
        );
        registry.register(
            "mxfleet_smtp_sessions_active",
            "SMTP sessions running now",
            self.sessions_active.clone(),
        );
        registry.register(
            "mxfleet_smtp_sessions_ended",
            "SMTP sessions ended, by how they ended",
            self.sessions_ended.clone(),
        );
        registry.register(
            "mxfleet_smtp_replies",
            "SMTP replies sent, by class",
            self.replies.clone(),
        );
        registry.register(
            "mxfleet_smtp_messages_accepted",
            "Messages accepted (250 after DATA, durable on a majority)",
            self.accepted.clone(),
        );
        registry.register_with_unit(
            "mxfleet_smtp_accepted",
            "Bytes of accepted messages",
            Unit::Bytes,
            self.accepted_bytes.clone(),
        );
        registry.register(
            "mxfleet_smtp_rejected",
            "Connections, senders, recipients and messages refused, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "mxfleet_spam_checks",
            "Decisions of the spam checks, by check and result",
            self.spam_checks.clone(),
        );
    }

    pub(crate) fn connection_accepted(&self) {
        self.connections.inc();
    }

    /// Marks a session running until the returned guard is dropped.
    pub(crate) fn session_started(&self) -> ActiveSession {
        self.sessions_active.inc();
        ActiveSession(self.sessions_active.clone())
    }

    pub(crate) fn session_ended(&self, end: SessionEnd) {
        self.sessions_ended
            .get_or_create(&[("end", end_label(end))])
            .inc();
    }

    pub(crate) fn reply_sent(&self, reply: &Reply) {
        let class = match reply.code {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        };
        self.replies.get_or_create(&[("class", class)]).inc();
    }

    pub(crate) fn message_accepted(&self, size: u64) {
        self.accepted.inc();
        self.accepted_bytes.inc_by(size);
    }

    pub(crate) fn spam_check(&self, check: &'static str, result: &'static str) {
        self.spam_checks
            .get_or_create(&[("check", check), ("result", result)])
            .inc();
    }

    pub(crate) fn rejected(&self, reason: RejectReason) {
        self.rejected
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn exposition(metrics: &SmtpMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn replies_are_counted_by_class_and_refusals_by_reason() {
        let metrics = SmtpMetrics::default();
        metrics.reply_sent(&Reply::new(220, "", "banner"));
        metrics.reply_sent(&Reply::new(250, "2.1.0", "Ok"));
        metrics.reply_sent(&Reply::new(354, "", "go ahead"));
        metrics.reply_sent(&Reply::new(550, "5.1.1", "unknown"));
        metrics.rejected(RejectReason::of_recipient_reply(&Reply::new(
            550, "5.1.1", "unknown",
        )));
        metrics.rejected(RejectReason::of_recipient_reply(&Reply::new(
            554, "5.7.1", "relay",
        )));
        metrics.message_accepted(100);
        metrics.session_ended(SessionEnd::Quit);
        let text = exposition(&metrics);
        for line in [
            r#"mxfleet_smtp_replies_total{class="2xx"} 2"#,
            r#"mxfleet_smtp_replies_total{class="3xx"} 1"#,
            r#"mxfleet_smtp_replies_total{class="5xx"} 1"#,
            r#"mxfleet_smtp_rejected_total{reason="unknown_recipient"} 1"#,
            r#"mxfleet_smtp_rejected_total{reason="relay_denied"} 1"#,
            r#"mxfleet_smtp_sessions_ended_total{end="quit"} 1"#,
            r#"mxfleet_smtp_sessions_ended_total{end="timeout"} 0"#,
            r#"mxfleet_smtp_replies_total{class="4xx"} 0"#,
            r#"mxfleet_smtp_rejected_total{reason="storage_full"} 0"#,
            "mxfleet_smtp_messages_accepted_total 1",
            "mxfleet_smtp_accepted_bytes_total 100",
            "mxfleet_smtp_connections_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
    }

    #[test]
    fn an_active_session_counts_until_its_guard_drops() {
        let metrics = SmtpMetrics::default();
        let first = metrics.session_started();
        let second = metrics.session_started();
        assert!(exposition(&metrics).contains("mxfleet_smtp_sessions_active 2\n"));
        drop(first);
        drop(second);
        assert!(exposition(&metrics).contains("mxfleet_smtp_sessions_active 0\n"));
    }
}
