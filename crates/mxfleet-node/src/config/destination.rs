//! How mail for one destination is delivered: the keys that `[delivery]` sets as the
//! defaults and that each `[[relay_domains]]` table may override, turned into an
//! [`mxfleet_delivery::DestinationPolicy`].
//!
//! The keys are Postfix's: `smtp_tls_security_level`, `smtp_tls_CAfile`,
//! `maximal_queue_lifetime`, `delay_warning_time`, and the concurrency and rate limits,
//! which `[delivery]` writes with Postfix's `default_` prefix
//! (`default_destination_concurrency_limit`) and a relay domain without it
//! (`destination_concurrency_limit`). Unlike Postfix's, the limits are fleet-wide: the
//! whole fleet holds at most that many connections to the destination.
//!
//! A relay domain inherits every key it does not write from `[delivery]`, one key at a
//! time: a domain that writes only `smtp_tls_security_level = "verify"` verifies against
//! the `[delivery]` `smtp_tls_CAfile`. Routing is not inherited: `relayhost` is for the
//! destinations that are *not* relay domains, whose own route is `next_hop` (default: MX)
//! and `fallback_relay`.
//!
//! Layout: [`DestinationKeys`] (the keys as written and their names), [`DestinationDraft`]
//! (checked, `None` where wrong), [`check_destination`] and [`check_route`], then one
//! function per key.

use std::path::PathBuf;
use std::time::Duration;

use mxfleet_delivery::DestinationPolicy;
use mxfleet_delivery::client::TlsPolicy;
use mxfleet_delivery::route::{NextHop, NextHopParseError, Route};

use super::FileChecks;
use super::error::ErrorReport;
use super::fields::{count, duration, existing_file};
use super::raw::{DurationText, RawRelayDomain};

/// The destination keys of one table as written, with the table's key prefix
/// (`delivery` or `relay_domains[2]`) and the name its concurrency limit goes by.
pub(super) struct DestinationKeys {
    pub(super) prefix: String,
    pub(super) concurrency_limit_name: &'static str,
    pub(super) tls_security_level: Option<String>,
    pub(super) tls_ca_file: Option<PathBuf>,
    pub(super) concurrency_limit: Option<u32>,
    pub(super) rate: Option<u32>,
    pub(super) queue_lifetime: Option<DurationText>,
    pub(super) delay_warning_time: Option<DurationText>,
}

/// `[delivery]` writes the default limit with Postfix's `default_` prefix (and
/// `default_destination_rate`, which needs no name: every value is valid).
pub(super) const DEFAULT_CONCURRENCY_LIMIT_NAME: &str = "default_destination_concurrency_limit";

/// A `[[relay_domains]]` table writes its own limit without the prefix.
const RELAY_DOMAIN_CONCURRENCY_LIMIT_NAME: &str = "destination_concurrency_limit";

impl DestinationKeys {
    /// The destination keys of one `[[relay_domains]]` table, taken out of it so that
    /// the recipient checks get the rest.
    pub(super) fn take_from_relay_domain(prefix: &str, table: &mut RawRelayDomain) -> Self {
        DestinationKeys {
            prefix: prefix.to_owned(),
            concurrency_limit_name: RELAY_DOMAIN_CONCURRENCY_LIMIT_NAME,
            tls_security_level: table.smtp_tls_security_level.take(),
            tls_ca_file: table.smtp_tls_ca_file.take(),
            concurrency_limit: table.destination_concurrency_limit.take(),
            rate: table.destination_rate.take(),
            queue_lifetime: table.maximal_queue_lifetime.take(),
            delay_warning_time: table.delay_warning_time.take(),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }
}

/// The STARTTLS level, without the CA file that `Verify` takes, so that the two keys
/// are inherited separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsLevel {
    Disabled,
    Opportunistic,
    Required,
    Verify,
}

/// One table's destination settings, each checked on its own: `None` where the key was
/// wrong (and reported), or inherited from a default that was. Inner options are the
/// settings' own "none": no CA file, no rate limit, no delay warnings.
#[derive(Debug, Clone)]
pub(super) struct DestinationDraft {
    tls_level: Option<TlsLevel>,
    /// PEM bytes of `smtp_tls_CAfile`, read at load time.
    tls_ca_pem: Option<Option<Vec<u8>>>,
    max_connections: Option<u32>,
    max_messages_per_second: Option<Option<u32>>,
    lifetime: Option<Duration>,
    delay_warning: Option<Option<Duration>>,
}

impl DestinationDraft {
    /// The built-in defaults, which `[delivery]` overrides.
    pub(super) fn built_in() -> Self {
        let DestinationPolicy {
            route: _,
            tls,
            max_connections,
            max_messages_per_second,
            lifetime,
            delay_warning,
        } = DestinationPolicy::default();
        let (tls_level, tls_ca_pem) = match tls {
            TlsPolicy::Disabled => (TlsLevel::Disabled, None),
            TlsPolicy::Opportunistic => (TlsLevel::Opportunistic, None),
            TlsPolicy::Required => (TlsLevel::Required, None),
            TlsPolicy::Verify { extra_roots_pem } => (TlsLevel::Verify, extra_roots_pem),
        };
        DestinationDraft {
            tls_level: Some(tls_level),
            tls_ca_pem: Some(tls_ca_pem),
            max_connections: Some(max_connections),
            max_messages_per_second: Some(max_messages_per_second),
            lifetime: Some(lifetime),
            delay_warning: Some(delay_warning),
        }
    }

    /// The policy routed by `route`; `None` if any setting was wrong.
    pub(super) fn finish(self, route: Route) -> Option<DestinationPolicy> {
        let tls = match self.tls_level? {
            TlsLevel::Disabled => TlsPolicy::Disabled,
            TlsLevel::Opportunistic => TlsPolicy::Opportunistic,
            TlsLevel::Required => TlsPolicy::Required,
            TlsLevel::Verify => TlsPolicy::Verify {
                extra_roots_pem: self.tls_ca_pem?,
            },
        };
        Some(DestinationPolicy {
            route,
            tls,
            max_connections: self.max_connections?,
            max_messages_per_second: self.max_messages_per_second?,
            lifetime: self.lifetime?,
            delay_warning: self.delay_warning?,
        })
    }
}

/// Checks every written key of one table; a key not written takes its value from
/// `inherited`.
pub(super) fn check_destination(
    report: &mut ErrorReport,
    keys: DestinationKeys,
    inherited: &DestinationDraft,
    checks: FileChecks,
) -> DestinationDraft {
    let tls_level = match &keys.tls_security_level {
        Some(word) => tls_level(report, &keys.key("smtp_tls_security_level"), word),
        None => inherited.tls_level,
    };
    let tls_ca_pem = match &keys.tls_ca_file {
        Some(path) => ca_file(report, &keys.key("smtp_tls_CAfile"), path, checks),
        None => inherited.tls_ca_pem.clone(),
    };
    let max_connections = match keys.concurrency_limit {
        Some(limit) => count(
            report,
            &keys.key(keys.concurrency_limit_name),
            Some(limit),
            limit,
            (1, None),
        ),
        None => inherited.max_connections,
    };
    // 0 lifts an inherited limit, like Postfix's `default_destination_rate_delay = 0`.
    let max_messages_per_second = match keys.rate {
        Some(0) => Some(None),
        Some(rate) => Some(Some(rate)),
        None => inherited.max_messages_per_second,
    };
    let lifetime = match keys.queue_lifetime.clone() {
        Some(text) => duration(
            report,
            &keys.key("maximal_queue_lifetime"),
            Some(text),
            Duration::ZERO,
        )
        .map(|setting| setting.value),
        None => inherited.lifetime,
    };
    let delay_warning = match &keys.delay_warning_time {
        Some(text) => delay_warning(report, &keys.key("delay_warning_time"), text),
        None => inherited.delay_warning,
    };
    DestinationDraft {
        tls_level,
        tls_ca_pem,
        max_connections,
        max_messages_per_second,
        lifetime,
        delay_warning,
    }
}

/// A relay domain's route: `next_hop` (default MX) and the optional `fallback_relay`.
pub(super) fn check_route(
    report: &mut ErrorReport,
    prefix: &str,
    next_hop_text: Option<String>,
    fallback_text: Option<String>,
) -> Option<Route> {
    let next_hop_key = format!("{prefix}.next_hop");
    let fallback_key = format!("{prefix}.fallback_relay");
    let primary = match next_hop_text {
        Some(text) => next_hop(report, &next_hop_key, &text),
        None => Some(NextHop::Mx),
    };
    let fallback = match fallback_text {
        Some(text) => Some(next_hop(report, &fallback_key, &text)?),
        None => None,
    };
    let primary = primary?;
    if fallback.as_ref() == Some(&primary) {
        report.push(
            fallback_key,
            format!(
                "is the same as next_hop ({primary}): the fallback would retry the hosts \
                 that just failed; name other hosts, or remove it"
            ),
        );
        return None;
    }
    Some(Route { primary, fallback })
}

/// `"mx"`, or a list of `[host]:port` entries (Postfix transport syntax, brackets
/// required).
pub(super) fn next_hop(report: &mut ErrorReport, key: &str, text: &str) -> Option<NextHop> {
    NextHop::parse(text)
        .map_err(|why| {
            let message = match &why {
                NextHopParseError::MissingBrackets { entry } => {
                    format!(r#"{why}, e.g. "[{entry}]:25" (or "mx" for an MX lookup)"#)
                }
                _ => why.to_string(),
            };
            report.push(key, message);
        })
        .ok()
}

/// Postfix's `smtp_tls_security_level` words that mxfleet implements.
fn tls_level(report: &mut ErrorReport, key: &str, word: &str) -> Option<TlsLevel> {
    match word {
        "none" => Some(TlsLevel::Disabled),
        "may" => Some(TlsLevel::Opportunistic),
        "encrypt" => Some(TlsLevel::Required),
        "verify" | "secure" => Some(TlsLevel::Verify),
        "dane" | "dane-only" | "fingerprint" => {
            report.push(
                key,
                format!(
                    "{word:?} is a Postfix level mxfleet does not implement; use \"verify\" \
                     (certificate chain and host name) or \"encrypt\" (TLS, unchecked)"
                ),
            );
            None
        }
        _ => {
            report.push(
                key,
                format!(
                    "{word:?} is not a TLS security level; write \"none\", \"may\", \
                     \"encrypt\", \"verify\" or \"secure\" (as in Postfix)"
                ),
            );
            None
        }
    }
}

/// The PEM bytes of a CA file: read now, so that a missing or wrong file stops the node
/// before it binds anything. With [`FileChecks::Skip`] nothing is read, and the policy
/// trusts the webpki roots alone.
fn ca_file(
    report: &mut ErrorReport,
    key: &str,
    path: &std::path::Path,
    checks: FileChecks,
) -> Option<Option<Vec<u8>>> {
    let path = existing_file(report, key, path, checks)?;
    if checks == FileChecks::Skip {
        return Some(None);
    }
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(why) => {
            report.push(key, format!("{}: cannot read: {why}", path.display()));
            return None;
        }
    };
    let marker: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(marker.len()).any(|window| window == marker) {
        report.push(
            key,
            format!(
                "{} holds no PEM certificate (no \"-----BEGIN CERTIFICATE-----\" line)",
                path.display()
            ),
        );
        return None;
    }
    Some(Some(pem))
}

/// A duration, or zero (`"0"`) for no delay warnings, as in Postfix.
fn delay_warning(
    report: &mut ErrorReport,
    key: &str,
    text: &DurationText,
) -> Option<Option<Duration>> {
    match humantime::parse_duration(&text.0) {
        Ok(after) if after.is_zero() => Some(None),
        Ok(after) => Some(Some(after)),
        Err(why) => {
            report.push(
                key,
                format!(
                    r#"{:?} is not a duration ({why}); write e.g. "4h", or "0" to send no delay warnings"#,
                    text.0
                ),
            );
            None
        }
    }
}
