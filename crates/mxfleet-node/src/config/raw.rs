//! Stage 1: the TOML file as written, checked only for shape.
//!
//! Every struct here denies unknown keys, so a typo such as `heartbeat_intreval` is an
//! error with its key path instead of a silently ignored setting. Nearly every field is
//! optional: whether a value is required, and what it defaults to, is decided in stage 2
//! ([`super::validated`]), which can then report all missing keys at once.
//!
//! Durations, sizes and addresses stay strings here ([`DurationText`], [`SizeText`]), so
//! a bad unit is a stage-2 error collected alongside every other one, not the first and
//! only serde error. Serde stops at its first problem, so stage 1 reports at most one
//! (a syntax error, an unknown key or a wrong TOML type), located by key path and line.
//!
//! Layout: [`RawConfig`] holds one struct per TOML table: [`RawNode`], [`RawPeer`],
//! [`RawCluster`] (with [`RawMember`] entries), [`RawRaft`], [`RawQueue`], [`RawSmtp`]
//! (with [`RawTlsCertificate`] entries), [`RawDelivery`], the `[[relay_domains]]`
//! array of [`RawRelayDomain`], [`RawSpam`] (with one struct per `[spam.*]` table),
//! [`RawAdmin`] (with [`RawAdminToken`] entries), [`RawMetrics`] and [`RawLog`].

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

use super::error::ErrorReport;

/// The whole file. A missing table is the same as an empty one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    pub node: RawNode,
    pub peer: RawPeer,
    pub cluster: RawCluster,
    pub raft: RawRaft,
    pub queue: RawQueue,
    pub smtp: RawSmtp,
    pub delivery: RawDelivery,
    pub relay_domains: Vec<RawRelayDomain>,
    pub spam: RawSpam,
    pub admin: RawAdmin,
    pub metrics: RawMetrics,
    pub log: RawLog,
}

/// `[node]`: who this member is and where it keeps its state.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [node] table")]
pub(crate) struct RawNode {
    pub id: Option<u64>,
    pub name: Option<String>,
    pub site: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// `[peer]`: the Raft and replication port between fleet members.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [peer] table")]
pub(crate) struct RawPeer {
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub bind_address: Option<String>,
    pub plaintext: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
}

/// `[cluster]`: the voters that bootstrap a brand-new fleet.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [cluster] table")]
pub(crate) struct RawCluster {
    pub initial_members: Vec<RawMember>,
}

/// One `cluster.initial_members` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = r#"a member such as { id = 1, addr = "10.0.1.5:7401", site = "fra1" }"#
)]
pub(crate) struct RawMember {
    pub id: Option<u64>,
    pub addr: Option<String>,
    pub site: Option<String>,
}

/// `[raft]`: consensus timers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [raft] table")]
pub(crate) struct RawRaft {
    pub heartbeat_interval: Option<DurationText>,
    pub election_timeout: Option<DurationText>,
    pub write_timeout: Option<DurationText>,
    pub snapshot_every: Option<u64>,
}

/// `[queue]`: limits of the replicated queue.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [queue] table")]
pub(crate) struct RawQueue {
    pub dedup_window: Option<DurationText>,
    pub max_message_size: Option<SizeText>,
    pub blob_quorum_timeout: Option<DurationText>,
}

/// `[smtp]`: the inbound SMTP listener. Keys are named after the Postfix parameters
/// they replace (`smtpd_timeout` is `timeout`, `smtpd_recipient_limit` is
/// `recipient_limit`, and so on).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [smtp] table")]
pub(crate) struct RawSmtp {
    pub listen: Option<String>,
    pub hostname: Option<String>,
    pub message_size_limit: Option<SizeText>,
    pub recipient_limit: Option<usize>,
    pub timeout: Option<DurationText>,
    pub data_timeout: Option<DurationText>,
    pub data_total_timeout: Option<DurationText>,
    pub hard_error_limit: Option<u32>,
    pub max_connections: Option<usize>,
    pub client_connection_count_limit: Option<usize>,
    /// `"reject"` or `"normalize"`; a string here so that a wrong word is a stage-2
    /// error reported alongside the others.
    pub bare_line_endings: Option<String>,
    pub tls_certificates: Vec<RawTlsCertificate>,
    pub etrn_networks: Vec<String>,
}

/// One `smtp.tls_certificates` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = r#"a certificate such as { cert = "/etc/mxfleet/tls/mx.crt", key = "/etc/mxfleet/tls/mx.key", names = ["mx.example.net"] }"#
)]
pub(crate) struct RawTlsCertificate {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub names: Option<Vec<String>>,
}

/// `[delivery]`: outbound delivery to the primaries and to senders (DSNs). Keys are the
/// Postfix parameter names where Postfix has the setting, hence `smtp_tls_CAfile`.
/// Words (`smtp_tls_security_level`), addresses and next hops stay strings, so that a
/// wrong one is a stage-2 error reported alongside the others.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [delivery] table")]
pub(crate) struct RawDelivery {
    pub lease: Option<DurationText>,
    pub clock_drift_bound: Option<DurationText>,
    pub dot_margin: Option<DurationText>,
    pub contact_timeout: Option<DurationText>,
    pub minimal_backoff_time: Option<DurationText>,
    pub maximal_backoff_time: Option<DurationText>,
    pub queue_run_delay: Option<DurationText>,
    pub probe_interval: Option<DurationText>,
    pub node_dead_after: Option<DurationText>,
    pub smtp_bind_address: Option<String>,
    pub smtp_helo_name: Option<String>,
    pub reporting_mta: Option<String>,
    pub smtp_connect_timeout: Option<DurationText>,
    pub smtp_helo_timeout: Option<DurationText>,
    pub smtp_mail_timeout: Option<DurationText>,
    pub smtp_rcpt_timeout: Option<DurationText>,
    pub smtp_data_init_timeout: Option<DurationText>,
    pub smtp_data_xfer_timeout: Option<DurationText>,
    pub smtp_data_done_timeout: Option<DurationText>,
    pub bounce_size_limit: Option<SizeText>,
    pub relayhost: Option<String>,
    pub dns_servers: Option<Vec<String>>,
    pub mx_port: Option<u16>,
    pub default_destination_concurrency_limit: Option<u32>,
    pub default_destination_rate: Option<u32>,
    pub maximal_queue_lifetime: Option<DurationText>,
    pub delay_warning_time: Option<DurationText>,
    pub smtp_tls_security_level: Option<String>,
    #[serde(rename = "smtp_tls_CAfile")]
    pub smtp_tls_ca_file: Option<PathBuf>,
}

/// One `[[relay_domains]]` table: a domain this node is a backup MX for, whom it
/// accepts mail for there (Postfix `relay_domains` and `relay_recipient_maps`), and how
/// that mail is delivered to the primary (Postfix `transport_maps` and the per-destination
/// settings; unset keys inherit the `[delivery]` defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = r#"a relay domain table such as { domain = "example.org", catch_all = true }"#
)]
pub(crate) struct RawRelayDomain {
    pub domain: Option<String>,
    pub recipients: Option<Vec<String>>,
    pub recipient_file: Option<PathBuf>,
    pub catch_all: Option<bool>,
    pub next_hop: Option<String>,
    pub fallback_relay: Option<String>,
    pub smtp_tls_security_level: Option<String>,
    #[serde(rename = "smtp_tls_CAfile")]
    pub smtp_tls_ca_file: Option<PathBuf>,
    pub destination_concurrency_limit: Option<u32>,
    pub destination_rate: Option<u32>,
    pub maximal_queue_lifetime: Option<DurationText>,
    pub delay_warning_time: Option<DurationText>,
    /// Spam check names; `None` (not `[]`, which means none) inherits
    /// `spam.default_checks`. Checked with `[spam]`.
    pub checks: Option<Vec<String>>,
}

/// `[spam]`: the checks of `[[relay_domains]]` and the settings of each mechanism.
/// Check names and words (`unknown_action`) stay strings, so that a wrong one is a
/// stage-2 error reported alongside the others.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [spam] table")]
pub(crate) struct RawSpam {
    pub dns_timeout: Option<DurationText>,
    pub default_checks: Option<Vec<String>>,
    pub dnsbl: RawDnsbl,
    pub greylisting: RawGreylisting,
    pub recipient_verification: RawRecipientVerification,
    pub rate_limits: RawRateLimits,
    pub hygiene: RawHygiene,
    pub spf: RawSpf,
}

/// `[spam.dnsbl]`: sites as written (`zone[=filter][*weight]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [spam.dnsbl] table")]
pub(crate) struct RawDnsbl {
    pub sites: Vec<String>,
    pub threshold: Option<i32>,
    pub rhsbl_sender_sites: Vec<String>,
    pub cache_ttl: Option<DurationText>,
    pub cache_entries: Option<usize>,
}

/// `[spam.greylisting]`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the [spam.greylisting] table"
)]
pub(crate) struct RawGreylisting {
    pub delay: Option<DurationText>,
    pub retry_window: Option<DurationText>,
    pub expiry: Option<DurationText>,
    pub auto_allowlist_after: Option<u32>,
    pub allowlist_networks: Vec<String>,
}

/// `[spam.recipient_verification]`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the [spam.recipient_verification] table"
)]
pub(crate) struct RawRecipientVerification {
    pub positive_expiry: Option<DurationText>,
    pub negative_expiry: Option<DurationText>,
    /// `"accept"` or `"defer"`.
    pub unknown_action: Option<String>,
    pub probe_timeout: Option<DurationText>,
    pub probe_sender: Option<String>,
}

/// `[spam.rate_limits]`: Postfix's `smtpd_client_*_rate_limit` and their per-network
/// twins.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the [spam.rate_limits] table"
)]
pub(crate) struct RawRateLimits {
    pub window: Option<DurationText>,
    pub client_connection_rate_limit: Option<u32>,
    pub client_message_rate_limit: Option<u32>,
    pub client_recipient_rate_limit: Option<u32>,
    pub network_connection_rate_limit: Option<u32>,
    pub network_message_rate_limit: Option<u32>,
    pub network_recipient_rate_limit: Option<u32>,
    pub exceptions: Vec<String>,
}

/// `[spam.hygiene]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [spam.hygiene] table")]
pub(crate) struct RawHygiene {
    pub unknown_address_reject_code: Option<u16>,
    pub unknown_client_reject_code: Option<u16>,
    pub greet_wait: Option<DurationText>,
}

/// `[spam.spf]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [spam.spf] table")]
pub(crate) struct RawSpf {
    pub reject_fail: Option<bool>,
}

/// `[admin]`: the gRPC admin listener and its callers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [admin] table")]
pub(crate) struct RawAdmin {
    pub listen: Option<String>,
    pub plaintext: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub client_cert_permissions: Option<Vec<String>>,
    pub tokens: Vec<RawAdminToken>,
}

/// One `[[admin.tokens]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = r#"a token such as { name = "ops", secret_file = "/etc/mxfleet/admin.token", permissions = ["view", "queue"] }"#
)]
pub(crate) struct RawAdminToken {
    pub name: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_sha256: Option<String>,
    pub permissions: Option<Vec<String>>,
}

/// `[metrics]`: the Prometheus listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [metrics] table")]
pub(crate) struct RawMetrics {
    pub listen: Option<String>,
}

/// `[log]`: how the node writes its log.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "the [log] table")]
pub(crate) struct RawLog {
    pub format: Option<String>,
}

/// A duration as written, e.g. `"250ms"`; parsed with `humantime` in stage 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DurationText(pub String);

/// A size as written, e.g. `"64MB"` or `"64MiB"`; parsed with `bytesize` in stage 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SizeText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(StringVisitor {
                expecting: r#"a duration string such as "250ms", "5s" or "7d""#,
            })
            .map(DurationText)
    }
}

impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(StringVisitor {
                expecting: r#"a size string such as "64MB" or "64MiB""#,
            })
            .map(SizeText)
    }
}

/// Accepts a string, and words the type error for the unit-bearing field it reads.
struct StringVisitor {
    expecting: &'static str,
}

impl Visitor<'_> for StringVisitor {
    type Value = String;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<String, E> {
        Ok(value.to_owned())
    }
}

/// Parses `text` into its raw shape, or reports the first syntax, type or unknown-key
/// error with its dotted key path and line.
pub(crate) fn deserialize(text: &str, report: &mut ErrorReport) -> Option<RawConfig> {
    let deserializer = match toml::Deserializer::parse(text) {
        Ok(deserializer) => deserializer,
        Err(syntax) => {
            // A syntax error has no key path: the document did not get that far.
            report.push("", located(text, &syntax));
            return None;
        }
    };
    match serde_path_to_error::deserialize::<_, RawConfig>(deserializer) {
        Ok(raw) => Some(raw),
        Err(error) => {
            // An empty path prints as "."; the report uses "" for the whole file.
            let key = match error.path().to_string() {
                root if root == "." => String::new(),
                path => path,
            };
            report.push(key, located(text, error.inner()));
            None
        }
    }
}

/// The error message followed by its 1-based line and column, when TOML knows them.
///
/// `toml::de::Error`'s own `Display` draws a multi-line source excerpt; the report keeps
/// one line per problem, so only the message and position are kept.
fn located(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let (line, column) = line_and_column(text, span.start);
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_owned(),
    }
}

fn line_and_column(text: &str, byte_offset: usize) -> (usize, usize) {
    let before = text.get(..byte_offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
