//! `[smtp]`: the inbound SMTP listener, its limits, timeouts and STARTTLS certificates.
//!
//! Keys are named after the Postfix parameters they replace, so that an operator coming
//! from Postfix finds them: `hostname` is `myhostname`, `timeout` is `smtpd_timeout`,
//! `tls_certificates` is `smtpd_tls_chain_files`, and so on (see each field).
//!
//! The message size limit is one number shared with the queue: what SMTP announces as
//! `SIZE` is what the queue stores. It may be written as `smtp.message_size_limit` (the
//! Postfix name) or as `queue.max_message_size`; writing both with different values is
//! an error, reported by [`unified_message_size`].
//!
//! Layout: the types ([`SmtpConfig`], [`BareLineEndingsSetting`],
//! [`TlsCertificateConfig`]) and their defaults, then [`check_smtp`], which checks every
//! key on its own into an [`SmtpDraft`], then the rules across keys.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::FileChecks;
use super::dns_name;
use super::error::ErrorReport;
use super::fields::{WrittenSize, count, duration, existing_file, message_size, required};
use super::raw::{RawSmtp, RawTlsCertificate};
use super::validated::QueueLimits;

/// `[smtp]`: the inbound SMTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Where the SMTP listener binds.
    pub listen: SocketAddr,
    /// Announced in the banner and the EHLO reply (Postfix `myhostname`); lower case.
    /// Defaults to `node.name`.
    pub hostname: String,
    /// Largest message accepted, in bytes, announced as `SIZE` (Postfix
    /// `message_size_limit`). Always equal to [`QueueLimits::max_message_size`].
    pub message_size_limit: u64,
    /// Recipients per message (Postfix `smtpd_recipient_limit`).
    pub recipient_limit: usize,
    /// Waiting for one command (Postfix `smtpd_timeout`).
    pub timeout: Duration,
    /// Waiting for each read during DATA.
    pub data_timeout: Duration,
    /// The whole of DATA, from `354` to the final dot; at least `data_timeout`.
    pub data_total_timeout: Duration,
    /// Protocol errors before the session is closed (Postfix `smtpd_hard_error_limit`).
    pub hard_error_limit: u32,
    /// Concurrent sessions in total.
    pub max_connections: usize,
    /// Concurrent sessions from one client IP (Postfix
    /// `smtpd_client_connection_count_limit`); at most `max_connections`.
    pub client_connection_count_limit: usize,
    pub bare_line_endings: BareLineEndingsSetting,
    /// STARTTLS is offered only if this is not empty (Postfix `smtpd_tls_chain_files`).
    /// The first entry is served to clients that send no SNI name, or one no entry lists.
    pub tls_certificates: Vec<TlsCertificateConfig>,
    /// Clients allowed to use ETRN (RFC 1985), e.g. the primary's network; empty
    /// refuses ETRN to everyone (Postfix `smtpd_etrn_restrictions`).
    pub etrn_networks: Vec<mxfleet_smtp::policy::IpNetwork>,
}

/// What to do with a bare CR or LF in message data (Postfix
/// `smtpd_forbid_bare_newline`). Bare line endings are how SMTP smuggling hides a second
/// message inside the first, so they are refused by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BareLineEndingsSetting {
    /// Refuse the message with `554 5.6.0`.
    #[default]
    Reject,
    /// Rewrite each bare line ending as CRLF and accept the message.
    Normalize,
}

/// One STARTTLS certificate and the SNI names it is served for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCertificateConfig {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Lower case, no trailing dot; `*.example.net` matches exactly one more label.
    /// Never empty, and no name is listed by two entries.
    pub names: Vec<String>,
}

const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 25);
const DEFAULT_RECIPIENT_LIMIT: usize = 1000;
/// Postfix accepts any number; a limit keeps one transaction's envelope bounded.
const MAX_RECIPIENT_LIMIT: usize = 100_000;
/// RFC 5321 §4.5.3.2.7: 5 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// RFC 5321 §4.5.3.2.5: 3 minutes.
const DEFAULT_DATA_TIMEOUT: Duration = Duration::from_secs(180);
const DEFAULT_DATA_TOTAL_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_HARD_ERROR_LIMIT: u32 = 20;
const DEFAULT_MAX_CONNECTIONS: usize = 500;
const DEFAULT_CLIENT_CONNECTION_COUNT_LIMIT: usize = 50;

impl SmtpConfig {
    /// The defaults, announcing `hostname`: for configs built in code (the dev cluster,
    /// tests), where the caller then changes what it needs, e.g. `listen`.
    pub fn default_for(hostname: &str) -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            hostname: hostname.to_owned(),
            message_size_limit: QueueLimits::default().max_message_size,
            recipient_limit: DEFAULT_RECIPIENT_LIMIT,
            timeout: DEFAULT_TIMEOUT,
            data_timeout: DEFAULT_DATA_TIMEOUT,
            data_total_timeout: DEFAULT_DATA_TOTAL_TIMEOUT,
            hard_error_limit: DEFAULT_HARD_ERROR_LIMIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            client_connection_count_limit: DEFAULT_CLIENT_CONNECTION_COUNT_LIMIT,
            bare_line_endings: BareLineEndingsSetting::Reject,
            tls_certificates: Vec::new(),
            etrn_networks: Vec::new(),
        }
    }
}

/// `[smtp]` with each key checked on its own: `None` where it was wrong. The message size
/// is kept as written, to be unified with the queue's by [`unified_message_size`].
pub(super) struct SmtpDraft {
    listen: Option<SocketAddr>,
    hostname: Option<String>,
    pub(super) message_size_limit: WrittenSize,
    recipient_limit: Option<usize>,
    timeout: Option<Duration>,
    data_timeout: Option<Duration>,
    data_total_timeout: Option<Duration>,
    hard_error_limit: Option<u32>,
    max_connections: Option<usize>,
    client_connection_count_limit: Option<usize>,
    bare_line_endings: Option<BareLineEndingsSetting>,
    tls_certificates: Option<Vec<TlsCertificateConfig>>,
    etrn_networks: Option<Vec<mxfleet_smtp::policy::IpNetwork>>,
}

impl SmtpDraft {
    /// The validated `smtp.hostname` (or its default), the default HELO name of
    /// outbound delivery; `None` if it was wrong.
    pub(super) fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }

    pub(super) fn finish(self, message_size_limit: u64) -> Option<SmtpConfig> {
        Some(SmtpConfig {
            listen: self.listen?,
            hostname: self.hostname?,
            message_size_limit,
            recipient_limit: self.recipient_limit?,
            timeout: self.timeout?,
            data_timeout: self.data_timeout?,
            data_total_timeout: self.data_total_timeout?,
            hard_error_limit: self.hard_error_limit?,
            max_connections: self.max_connections?,
            client_connection_count_limit: self.client_connection_count_limit?,
            bare_line_endings: self.bare_line_endings?,
            tls_certificates: self.tls_certificates?,
            etrn_networks: self.etrn_networks?,
        })
    }
}

/// What `[smtp]` is checked against from other sections; `None` where that value was
/// itself wrong (and reported there).
pub(super) struct SmtpContext<'a> {
    /// The default `hostname`.
    pub(super) node_name: Option<&'a str>,
    /// Must not share a port with `smtp.listen`.
    pub(super) peer_listen: Option<SocketAddr>,
}

/// Checks every key of `[smtp]` on its own, then the rules between its keys and
/// against `context`; every problem is reported, and wrong keys are `None` in the draft.
pub(super) fn check_smtp(
    raw: RawSmtp,
    context: &SmtpContext<'_>,
    checks: FileChecks,
    report: &mut ErrorReport,
) -> SmtpDraft {
    let listen = listen_addr(report, raw.listen, context.peer_listen);
    let hostname = hostname(report, raw.hostname, context.node_name);
    let message_size_limit =
        message_size(report, "smtp.message_size_limit", raw.message_size_limit);
    let recipient_limit = count(
        report,
        "smtp.recipient_limit",
        raw.recipient_limit,
        DEFAULT_RECIPIENT_LIMIT,
        (1, Some(MAX_RECIPIENT_LIMIT)),
    );
    let timeout = duration(report, "smtp.timeout", raw.timeout, DEFAULT_TIMEOUT);
    let data_timeout = duration(
        report,
        "smtp.data_timeout",
        raw.data_timeout,
        DEFAULT_DATA_TIMEOUT,
    );
    let data_total_timeout = duration(
        report,
        "smtp.data_total_timeout",
        raw.data_total_timeout,
        DEFAULT_DATA_TOTAL_TIMEOUT,
    );
    if let (Some(read), Some(total)) = (&data_timeout, &data_total_timeout)
        && total.value < read.value
    {
        report.push(
            "smtp.data_total_timeout",
            format!(
                "must be at least data_timeout, now {}, because it bounds all of DATA \
                 and data_timeout only one read; got {}",
                read.describe(),
                total.describe()
            ),
        );
    }
    let hard_error_limit = count(
        report,
        "smtp.hard_error_limit",
        raw.hard_error_limit,
        DEFAULT_HARD_ERROR_LIMIT,
        (1, None),
    );
    let max_connections = count(
        report,
        "smtp.max_connections",
        raw.max_connections,
        DEFAULT_MAX_CONNECTIONS,
        (1, None),
    );
    let client_connection_count_limit =
        per_client_limit(report, raw.client_connection_count_limit, max_connections);
    let bare_line_endings = bare_line_endings(report, raw.bare_line_endings);
    let tls_certificates = tls_certificates(report, raw.tls_certificates, checks);
    let etrn_networks = etrn_networks(report, raw.etrn_networks);
    SmtpDraft {
        listen,
        hostname,
        message_size_limit,
        recipient_limit,
        timeout: timeout.map(|setting| setting.value),
        data_timeout: data_timeout.map(|setting| setting.value),
        data_total_timeout: data_total_timeout.map(|setting| setting.value),
        hard_error_limit,
        max_connections,
        client_connection_count_limit,
        bare_line_endings,
        tls_certificates,
        etrn_networks,
    }
}

fn etrn_networks(
    report: &mut ErrorReport,
    raw: Vec<String>,
) -> Option<Vec<mxfleet_smtp::policy::IpNetwork>> {
    let mut networks = Vec::with_capacity(raw.len());
    let mut valid = true;
    for (index, text) in raw.iter().enumerate() {
        match text.parse() {
            Ok(network) => networks.push(network),
            Err(problem) => {
                report.push(
                    format!("smtp.etrn_networks[{index}]"),
                    format!("{problem}; write a network such as \"192.0.2.0/24\""),
                );
                valid = false;
            }
        }
    }
    valid.then_some(networks)
}

/// The one message size limit of the node, from whichever of `queue.max_message_size`
/// and `smtp.message_size_limit` is written; `None` if either is wrong or they differ.
pub(super) fn unified_message_size(
    report: &mut ErrorReport,
    queue: WrittenSize,
    smtp: WrittenSize,
) -> Option<u64> {
    match (queue, smtp) {
        (WrittenSize::Invalid, _) | (_, WrittenSize::Invalid) => None,
        (WrittenSize::Bytes(queue), WrittenSize::Bytes(smtp)) if queue != smtp => {
            report.push(
                "smtp.message_size_limit",
                format!(
                    "is {smtp} bytes but queue.max_message_size is {queue} bytes; they are \
                     one limit (SMTP announces as SIZE what the queue stores), so set only \
                     one of them"
                ),
            );
            None
        }
        (WrittenSize::Bytes(bytes), _) | (WrittenSize::Absent, WrittenSize::Bytes(bytes)) => {
            Some(bytes)
        }
        (WrittenSize::Absent, WrittenSize::Absent) => Some(QueueLimits::default().max_message_size),
    }
}

fn listen_addr(
    report: &mut ErrorReport,
    text: Option<String>,
    peer_listen: Option<SocketAddr>,
) -> Option<SocketAddr> {
    const KEY: &str = "smtp.listen";
    let listen = match text.map(|text| (text.parse::<SocketAddr>(), text)) {
        None => DEFAULT_LISTEN,
        Some((Ok(addr), _)) if addr.port() == 0 => {
            report.push(
                KEY,
                "port 0 would bind an ephemeral port that no MX record can point at; \
                 give a fixed port, usually 25",
            );
            return None;
        }
        Some((Ok(addr), _)) => addr,
        Some((Err(_), text)) => {
            report.push(
                KEY,
                format!(r#"{text:?} is not an IP:port to bind, e.g. "0.0.0.0:25" or "[::]:25""#),
            );
            return None;
        }
    };
    if let Some(peer) = peer_listen
        && peer.port() == listen.port()
        && (peer.ip() == listen.ip() || peer.ip().is_unspecified() || listen.ip().is_unspecified())
    {
        report.push(
            KEY,
            format!(
                "{listen} overlaps peer.listen = \"{peer}\": they cannot both bind port \
                 {}; SMTP and the peer port need different ports",
                listen.port()
            ),
        );
        return None;
    }
    Some(listen)
}

fn hostname(
    report: &mut ErrorReport,
    text: Option<String>,
    node_name: Option<&str>,
) -> Option<String> {
    const KEY: &str = "smtp.hostname";
    match (text, node_name) {
        (Some(text), _) => dns_name::host_name(&text)
            .map_err(|why| report.push(KEY, format!("{text:?} {why}")))
            .ok(),
        // node.name was wrong or could not be defaulted; reported there.
        (None, None) => None,
        (None, Some(name)) => dns_name::host_name(name)
            .map_err(|why| {
                report.push(
                    KEY,
                    format!(
                        "is required: it defaults to node.name, but {name:?} {why}; set the \
                         name announced in the SMTP banner and EHLO reply (Postfix \
                         myhostname), e.g. hostname = \"mx1.example.net\""
                    ),
                );
            })
            .ok(),
    }
}

/// At most `max_connections`. When not written, the default is lowered to
/// `max_connections` rather than reported, so that a small `max_connections` alone is
/// a valid config.
fn per_client_limit(
    report: &mut ErrorReport,
    written: Option<usize>,
    max_connections: Option<usize>,
) -> Option<usize> {
    const KEY: &str = "smtp.client_connection_count_limit";
    let default = DEFAULT_CLIENT_CONNECTION_COUNT_LIMIT.min(max_connections.unwrap_or(usize::MAX));
    let limit = count(report, KEY, written, default, (1, None))?;
    if let Some(max) = max_connections
        && limit > max
    {
        report.push(
            KEY,
            format!(
                "must be at most max_connections = {max}, got {limit}; one client cannot \
                 have more sessions than the node has in total"
            ),
        );
        return None;
    }
    Some(limit)
}

fn bare_line_endings(
    report: &mut ErrorReport,
    text: Option<String>,
) -> Option<BareLineEndingsSetting> {
    match text.as_deref() {
        None => Some(BareLineEndingsSetting::default()),
        Some("reject") => Some(BareLineEndingsSetting::Reject),
        Some("normalize") => Some(BareLineEndingsSetting::Normalize),
        Some(other) => {
            report.push(
                "smtp.bare_line_endings",
                format!(
                    "{other:?} is not a choice: write \"reject\" (refuse a message with a \
                     bare CR or LF, 554 5.6.0; the default) or \"normalize\" (rewrite them \
                     as CRLF)"
                ),
            );
            None
        }
    }
}

fn tls_certificates(
    report: &mut ErrorReport,
    raw: Vec<RawTlsCertificate>,
    checks: FileChecks,
) -> Option<Vec<TlsCertificateConfig>> {
    // The entry that first lists each name: SNI must lead to exactly one certificate.
    let mut first_with_name: HashMap<String, usize> = HashMap::new();
    let mut entries = Vec::with_capacity(raw.len());
    for (index, entry) in raw.into_iter().enumerate() {
        let prefix = format!("smtp.tls_certificates[{index}]");
        let mut file = |field: &str, path: Option<PathBuf>, hint: &str| {
            let key = format!("{prefix}.{field}");
            required(report, &key, path, hint)
                .and_then(|path| existing_file(report, &key, &path, checks))
        };
        let cert = file("cert", entry.cert, "the PEM certificate chain, leaf first");
        let key = file("key", entry.key, "the PEM private key of cert");

        let names_key = format!("{prefix}.names");
        let names = required(
            report,
            &names_key,
            entry.names,
            r#"the names this certificate is served for, e.g. names = ["mx.example.net"]"#,
        )
        .and_then(|names| {
            certificate_names(report, &names_key, index, &names, &mut first_with_name)
        });
        entries.push(match (cert, key, names) {
            (Some(cert), Some(key), Some(names)) => Some(TlsCertificateConfig { cert, key, names }),
            _ => None,
        });
    }
    // Every entry was checked before any failure stops the collection.
    entries.into_iter().collect()
}

/// Each name of entry `index` normalized, or `None` if any is wrong or listed before
/// (each such name reported). `first_with_name` maps the names seen so far to the entry
/// that lists them.
fn certificate_names(
    report: &mut ErrorReport,
    key: &str,
    index: usize,
    names: &[String],
    first_with_name: &mut HashMap<String, usize>,
) -> Option<Vec<String>> {
    if names.is_empty() {
        report.push(
            key,
            "must list at least one name, or SNI could never choose this certificate",
        );
        return None;
    }
    let mut normalized = Vec::with_capacity(names.len());
    for (position, text) in names.iter().enumerate() {
        let name_key = format!("{key}[{position}]");
        let name = match dns_name::certificate_name(text) {
            Ok(name) => name,
            Err(why) => {
                report.push(name_key, format!("{text:?} {why}"));
                normalized.push(None);
                continue;
            }
        };
        match first_with_name.entry(name) {
            Entry::Vacant(vacant) => {
                normalized.push(Some(vacant.key().clone()));
                vacant.insert(index);
            }
            Entry::Occupied(first) => {
                let where_ = match *first.get() {
                    first if first == index => "earlier in this list".to_owned(),
                    first => format!("by smtp.tls_certificates[{first}]"),
                };
                report.push(
                    name_key,
                    format!(
                        "{} is already listed {where_}; each name must lead SNI to exactly \
                         one certificate",
                        first.key()
                    ),
                );
                normalized.push(None);
            }
        }
    }
    normalized.into_iter().collect()
}
