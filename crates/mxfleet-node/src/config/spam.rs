//! `[spam]` and each relay domain's `checks`: which spam checks apply where, and the
//! settings of each mechanism, turned into an [`mxfleet_smtp::checks::SpamConfig`].
//!
//! Keys follow the Postfix (and postscreen, postgrey) parameters they replace, named in
//! the field docs of `mxfleet_smtp::checks::config`. Every key is optional; with no
//! `[spam]` table at all, no relay domain applies any check and no rate is limited.
//!
//! Which checks a relay domain applies: its own `checks` list if it writes one (`[]`
//! means none), otherwise `spam.default_checks`. Rules across keys:
//! - `dnsbl` and `rhsbl_sender` need their sites (`spam.dnsbl.sites`,
//!   `spam.dnsbl.rhsbl_sender_sites`), wherever they are listed.
//! - `verify_recipients` asks the primary about recipients nobody listed, so it is an
//!   error in the own `checks` of a domain with `recipients` or `recipient_file`. From
//!   `default_checks`, which is written for many domains, it is applied only to the
//!   domains without a list (`catch_all = true`): a list already refuses the rest.
//! - Greylisting's `retry_window` and `expiry` must be longer than its `delay`.
//!
//! Layout: [`RelayDomainChecks`] and [`take_relay_domain_checks`] (the `checks` key of
//! each `[[relay_domains]]` table, taken out before that table is validated),
//! [`check_spam`] into a [`SpamDraft`], then one function per `[spam.*]` table.

use std::collections::HashMap;
use std::time::Duration;

use mxfleet_smtp::checks::config::{
    DnsblConfig, GreylistConfig, HygieneConfig, RateLimitConfig, SpfConfig, UnknownRecipientAction,
    VerifyConfig,
};
use mxfleet_smtp::checks::dnsbl::DnsblSite;
use mxfleet_smtp::checks::{Check, CheckSet, SpamConfig};

use super::dns_name;
use super::error::ErrorReport;
use super::fields::{count, duration, duration_or_zero, networks};
use super::raw::{
    DurationText, RawDnsbl, RawGreylisting, RawHygiene, RawRateLimits, RawRecipientVerification,
    RawRelayDomain, RawSpam, RawSpf,
};
use super::relay_domains::RelayDomainConfig;

/// `spam.dns_timeout` when not written: a DNSBL that has not answered by then is
/// skipped (a timeout never rejects mail).
pub(super) const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// What one `[[relay_domains]]` table says about spam checks, taken out of the raw
/// table by [`take_relay_domain_checks`] because the relay domain checks consume it.
pub(super) struct RelayDomainChecks {
    /// `checks` as written; `None` inherits `spam.default_checks`.
    checks: Option<Vec<String>>,
    /// `recipients` or `recipient_file` is written: unknown recipients are already
    /// refused, so `verify_recipients` has nothing to do.
    has_recipient_list: bool,
}

/// Takes the `checks` key out of every table, in table order.
pub(super) fn take_relay_domain_checks(tables: &mut [RawRelayDomain]) -> Vec<RelayDomainChecks> {
    tables
        .iter_mut()
        .map(|table| RelayDomainChecks {
            checks: table.checks.take(),
            has_recipient_list: table.recipients.is_some() || table.recipient_file.is_some(),
        })
        .collect()
}

/// `[spam]` and the relay domains' checks, each checked on its own: `None` where wrong.
pub(super) struct SpamDraft {
    /// The checks of each `[[relay_domains]]` table, in table order; keyed by domain
    /// once the domain names are validated.
    domain_checks: Vec<Option<CheckSet>>,
    dns_timeout: Option<Duration>,
    dnsbl: Option<DnsblConfig>,
    greylisting: Option<GreylistConfig>,
    verify: Option<VerifyConfig>,
    rate_limits: Option<RateLimitConfig>,
    hygiene: Option<HygieneConfig>,
    spf: SpfConfig,
}

impl SpamDraft {
    /// The spam config, keyed by the validated names of `relay_domains`, which are the
    /// same tables in the same order as the ones this draft was checked from.
    pub(super) fn finish(self, relay_domains: &[RelayDomainConfig]) -> Option<SpamConfig> {
        if relay_domains.len() != self.domain_checks.len() {
            return None;
        }
        let domain_checks = relay_domains
            .iter()
            .zip(self.domain_checks)
            .map(|(relay, checks)| Some((relay.domain.clone(), checks?)))
            .collect::<Option<HashMap<_, _>>>()?;
        Some(SpamConfig {
            domain_checks,
            dns_timeout: self.dns_timeout?,
            dnsbl: self.dnsbl?,
            greylisting: self.greylisting?,
            verify: self.verify?,
            rate_limits: self.rate_limits?,
            hygiene: self.hygiene?,
            spf: self.spf,
        })
    }
}

/// Checks every key of `[spam]`, then each relay domain's `checks` (from
/// [`take_relay_domain_checks`]) against them.
pub(super) fn check_spam(
    raw: RawSpam,
    relay_domains: Vec<RelayDomainChecks>,
    report: &mut ErrorReport,
) -> SpamDraft {
    let dns_timeout = positive(
        report,
        "spam.dns_timeout",
        raw.dns_timeout,
        DEFAULT_DNS_TIMEOUT,
    );
    // Whether the checks that need sites have any; a wrong site still counts as written,
    // so that it is reported once, at the site.
    let sites = SitesWritten {
        dnsbl: !raw.dnsbl.sites.is_empty(),
        rhsbl_sender: !raw.dnsbl.rhsbl_sender_sites.is_empty(),
    };
    let default_checks = match raw.default_checks {
        Some(names) => check_names(report, "spam.default_checks", names, &sites, false),
        None => Some(CheckSet::new()),
    };
    let dnsbl = check_dnsbl(report, raw.dnsbl);
    let greylisting = check_greylisting(report, raw.greylisting);
    let verify = check_verify(report, raw.recipient_verification);
    let rate_limits = check_rate_limits(report, raw.rate_limits);
    let hygiene = check_hygiene(report, raw.hygiene);
    let spf = check_spf(raw.spf);

    let domain_checks = relay_domains
        .into_iter()
        .enumerate()
        .map(|(index, table)| match table.checks {
            Some(names) => check_names(
                report,
                &format!("relay_domains[{index}].checks"),
                names,
                &sites,
                table.has_recipient_list,
            ),
            None => default_checks.as_ref().map(|defaults| {
                let mut inherited = defaults.clone();
                if table.has_recipient_list {
                    inherited.remove(&Check::VerifyRecipients);
                }
                inherited
            }),
        })
        .collect();

    SpamDraft {
        domain_checks,
        dns_timeout,
        dnsbl,
        greylisting,
        verify,
        rate_limits,
        hygiene,
        spf,
    }
}

/// Which DNS-listed site lists are not empty.
struct SitesWritten {
    dnsbl: bool,
    rhsbl_sender: bool,
}

/// A list of check names at `key`, each reported at `key[index]`: unknown names,
/// repeats, checks whose sites are missing and, for a domain with a recipient list,
/// `verify_recipients`.
fn check_names(
    report: &mut ErrorReport,
    key: &str,
    names: Vec<String>,
    sites: &SitesWritten,
    has_recipient_list: bool,
) -> Option<CheckSet> {
    let mut set = CheckSet::new();
    let mut first_at: HashMap<Check, usize> = HashMap::new();
    let mut valid = true;
    for (index, name) in names.iter().enumerate() {
        let entry_key = format!("{key}[{index}]");
        let Some(check) = Check::from_name(name) else {
            let known: Vec<&str> = Check::ALL.iter().map(|check| check.as_str()).collect();
            report.push(
                entry_key,
                format!(
                    "{name:?} is not a spam check; the checks are {}",
                    known.join(", ")
                ),
            );
            valid = false;
            continue;
        };
        let problem = match check {
            _ if first_at.contains_key(&check) => Some(format!(
                "{name} is already listed at {key}[{}]",
                first_at[&check]
            )),
            Check::Dnsbl if !sites.dnsbl => Some(
                "dnsbl needs DNSBL sites, but spam.dnsbl.sites is empty; list sites such \
                 as \"zen.spamhaus.org=127.0.0.[2..11]\""
                    .to_owned(),
            ),
            Check::RhsblSender if !sites.rhsbl_sender => Some(
                "rhsbl_sender needs RHSBL sites, but spam.dnsbl.rhsbl_sender_sites is \
                 empty; list sites such as \"dbl.spamhaus.org=127.0.1.[2..99]\""
                    .to_owned(),
            ),
            Check::VerifyRecipients if has_recipient_list => Some(
                "verify_recipients asks the primary about recipients of a domain without \
                 a recipient list (catch_all = true); this domain lists its recipients, \
                 which already refuses unknown ones, so remove it"
                    .to_owned(),
            ),
            _ => None,
        };
        match problem {
            Some(problem) => {
                report.push(entry_key, problem);
                valid = false;
            }
            None => {
                first_at.insert(check, index);
                set.insert(check);
            }
        }
    }
    valid.then_some(set)
}

fn check_dnsbl(report: &mut ErrorReport, raw: RawDnsbl) -> Option<DnsblConfig> {
    let defaults = DnsblConfig::default();
    let sites = dnsbl_sites(report, "spam.dnsbl.sites", raw.sites);
    let threshold = count(
        report,
        "spam.dnsbl.threshold",
        raw.threshold,
        defaults.threshold,
        (1, None),
    );
    let rhsbl_sender_sites = dnsbl_sites(
        report,
        "spam.dnsbl.rhsbl_sender_sites",
        raw.rhsbl_sender_sites,
    );
    let cache_ttl = positive(
        report,
        "spam.dnsbl.cache_ttl",
        raw.cache_ttl,
        defaults.cache_ttl,
    );
    let cache_entries = count(
        report,
        "spam.dnsbl.cache_entries",
        raw.cache_entries,
        defaults.cache_entries,
        (1, None),
    );
    Some(DnsblConfig {
        sites: sites?,
        threshold: threshold?,
        rhsbl_sender_sites: rhsbl_sender_sites?,
        cache_ttl: cache_ttl?,
        cache_entries: cache_entries?,
    })
}

/// `zone[=filter][*weight]` entries, parsed by the checks' own parser so that the
/// syntax has one owner.
fn dnsbl_sites(report: &mut ErrorReport, key: &str, raw: Vec<String>) -> Option<Vec<DnsblSite>> {
    let mut sites = Vec::with_capacity(raw.len());
    for (index, text) in raw.iter().enumerate() {
        match text.parse::<DnsblSite>() {
            Ok(site) => sites.push(site),
            Err(problem) => report.push(format!("{key}[{index}]"), problem),
        }
    }
    (sites.len() == raw.len()).then_some(sites)
}

fn check_greylisting(report: &mut ErrorReport, raw: RawGreylisting) -> Option<GreylistConfig> {
    let defaults = GreylistConfig::default();
    let delay = duration(report, "spam.greylisting.delay", raw.delay, defaults.delay);
    let retry_window = duration(
        report,
        "spam.greylisting.retry_window",
        raw.retry_window,
        defaults.retry_window,
    );
    let expiry = duration(
        report,
        "spam.greylisting.expiry",
        raw.expiry,
        defaults.expiry,
    );
    let mut ordered = true;
    if let Some(delay) = &delay {
        // A retry is only accepted after the delay and within the retry window, so a
        // window no longer than the delay lets nothing through, ever.
        let longer_than_delay = [
            (
                "spam.greylisting.retry_window",
                &retry_window,
                "or no retry could ever pass",
            ),
            (
                "spam.greylisting.expiry",
                &expiry,
                "or a passed triplet would be forgotten sooner than a new one can pass",
            ),
        ];
        for (key, setting, reason) in longer_than_delay {
            if let Some(setting) = setting
                && setting.value <= delay.value
            {
                report.push(
                    key,
                    format!(
                        "must be longer than delay, now {} ({reason}); got {}",
                        delay.describe(),
                        setting.describe()
                    ),
                );
                ordered = false;
            }
        }
    }
    let allowlist_networks = networks(
        report,
        "spam.greylisting.allowlist_networks",
        raw.allowlist_networks,
    );
    if !ordered {
        return None;
    }
    Some(GreylistConfig {
        delay: delay?.value,
        retry_window: retry_window?.value,
        expiry: expiry?.value,
        auto_allowlist_after: raw
            .auto_allowlist_after
            .unwrap_or(defaults.auto_allowlist_after),
        allowlist_networks: allowlist_networks?,
    })
}

fn check_verify(report: &mut ErrorReport, raw: RawRecipientVerification) -> Option<VerifyConfig> {
    const PREFIX: &str = "spam.recipient_verification";
    let defaults = VerifyConfig::default();
    let positive_expiry = positive(
        report,
        &format!("{PREFIX}.positive_expiry"),
        raw.positive_expiry,
        defaults.positive_expiry,
    );
    let negative_expiry = positive(
        report,
        &format!("{PREFIX}.negative_expiry"),
        raw.negative_expiry,
        defaults.negative_expiry,
    );
    let unknown_action = match raw.unknown_action.as_deref() {
        None => Some(defaults.unknown_action),
        Some("accept") => Some(UnknownRecipientAction::Accept),
        Some("defer") => Some(UnknownRecipientAction::Defer),
        Some(other) => {
            report.push(
                format!("{PREFIX}.unknown_action"),
                format!(
                    "{other:?} is not an action: write \"accept\" (the primary decides \
                     later) or \"defer\" (450 until the primary answers)"
                ),
            );
            None
        }
    };
    let probe_timeout = positive(
        report,
        &format!("{PREFIX}.probe_timeout"),
        raw.probe_timeout,
        defaults.probe_timeout,
    );
    let probe_sender = match raw.probe_sender {
        None => Some(defaults.probe_sender),
        Some(sender) => probe_sender(report, &format!("{PREFIX}.probe_sender"), sender),
    };
    Some(VerifyConfig {
        positive_expiry: positive_expiry?,
        negative_expiry: negative_expiry?,
        unknown_action: unknown_action?,
        probe_timeout: probe_timeout?,
        probe_sender: probe_sender?,
    })
}

/// Empty for the null sender (`MAIL FROM:<>`), otherwise `local@domain`, sent as is.
fn probe_sender(report: &mut ErrorReport, key: &str, sender: String) -> Option<String> {
    if sender.is_empty() {
        return Some(sender);
    }
    let problem = match sender.rsplit_once('@') {
        _ if sender
            .chars()
            .any(|c| c.is_whitespace() || "<>".contains(c)) =>
        {
            "must not contain spaces or angle brackets".to_owned()
        }
        Some((local, domain)) if !local.is_empty() => match dns_name::domain(domain) {
            Ok(_) => return Some(sender),
            Err(why) => format!("has a domain that {why}"),
        },
        _ => "is not an address".to_owned(),
    };
    report.push(
        key,
        format!(
            "{sender:?} {problem}; write a full address such as \
             \"postmaster@mx.example.net\", or \"\" for the null sender"
        ),
    );
    None
}

fn check_rate_limits(report: &mut ErrorReport, raw: RawRateLimits) -> Option<RateLimitConfig> {
    let defaults = RateLimitConfig::default();
    let window = positive(
        report,
        "spam.rate_limits.window",
        raw.window,
        defaults.window,
    );
    let exceptions = networks(report, "spam.rate_limits.exceptions", raw.exceptions);
    // Any count is valid, 0 being off.
    Some(RateLimitConfig {
        window: window?,
        client_connection_rate_limit: raw.client_connection_rate_limit.unwrap_or(0),
        client_message_rate_limit: raw.client_message_rate_limit.unwrap_or(0),
        client_recipient_rate_limit: raw.client_recipient_rate_limit.unwrap_or(0),
        network_connection_rate_limit: raw.network_connection_rate_limit.unwrap_or(0),
        network_message_rate_limit: raw.network_message_rate_limit.unwrap_or(0),
        network_recipient_rate_limit: raw.network_recipient_rate_limit.unwrap_or(0),
        exceptions: exceptions?,
    })
}

fn check_hygiene(report: &mut ErrorReport, raw: RawHygiene) -> Option<HygieneConfig> {
    let defaults = HygieneConfig::default();
    let mut reject_code = |key: &str, code: Option<u16>, default: u16| match code {
        None => Some(default),
        Some(code @ 400..=599) => Some(code),
        Some(code) => {
            report.push(
                key,
                format!(
                    "must be a 4xx (try again later) or 5xx (refused) reply code such as \
                     450 or 550, got {code}"
                ),
            );
            None
        }
    };
    let unknown_address_reject_code = reject_code(
        "spam.hygiene.unknown_address_reject_code",
        raw.unknown_address_reject_code,
        defaults.unknown_address_reject_code,
    );
    let unknown_client_reject_code = reject_code(
        "spam.hygiene.unknown_client_reject_code",
        raw.unknown_client_reject_code,
        defaults.unknown_client_reject_code,
    );
    // Zero turns the pregreet test off.
    let greet_wait = duration_or_zero(
        report,
        "spam.hygiene.greet_wait",
        raw.greet_wait,
        defaults.greet_wait,
    );
    Some(HygieneConfig {
        unknown_address_reject_code: unknown_address_reject_code?,
        unknown_client_reject_code: unknown_client_reject_code?,
        greet_wait: greet_wait?,
    })
}

fn check_spf(raw: RawSpf) -> SpfConfig {
    SpfConfig {
        reject_fail: raw.reject_fail.unwrap_or(SpfConfig::default().reject_fail),
    }
}

/// A duration greater than zero, `default` when not written.
fn positive(
    report: &mut ErrorReport,
    key: &str,
    text: Option<DurationText>,
    default: Duration,
) -> Option<Duration> {
    duration(report, key, text, default).map(|setting| setting.value)
}
