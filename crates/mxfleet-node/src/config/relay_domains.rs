//! `[[relay_domains]]`: the domains this node is a backup MX for, and whom it accepts
//! mail for in each (Postfix `relay_domains` and `relay_recipient_maps`).
//!
//! Each table names one domain and exactly one source of recipients: an inline list,
//! a file, or `catch_all = true`. The file is only checked for existence here; the SMTP
//! crate parses it at startup (`mxfleet_smtp::policy::load_recipient_file`), so its
//! format has a single owner.
//!
//! No table at all is valid: the node still takes part in the fleet, and its SMTP
//! listener refuses every recipient. That is not an error, because a member may be
//! meant to hold replicas only, but the binary should log it at startup, since it is
//! more often a forgotten section than a choice.
//!
//! Each table also says how its mail reaches the primary: `next_hop` (default: MX
//! lookup), `fallback_relay`, and the destination keys that override the `[delivery]`
//! defaults (checked in [`super::destination`]). The result is the domain's
//! [`DestinationPolicy`], which also goes into `DeliveryConfig::destinations`.
//!
//! A table's `checks` (its spam checks) is taken out before these checks and judged
//! with `[spam]` in [`super::spam`]; the result is `NodeConfig::spam.domain_checks`.
//!
//! Layout: the types ([`RelayDomainConfig`], [`RecipientSource`]), then
//! [`check_relay_domains`] and the checks of one table.

use std::collections::HashMap;
use std::path::PathBuf;

use mxfleet_delivery::DestinationPolicy;

use super::FileChecks;
use super::destination::{DestinationDraft, DestinationKeys, check_destination, check_route};
use super::dns_name;
use super::error::ErrorReport;
use super::fields::{existing_file, required};
use super::raw::RawRelayDomain;

/// One `[[relay_domains]]` table.
#[derive(Debug, Clone)]
pub struct RelayDomainConfig {
    /// Fully qualified, lower case, no trailing dot; unique among the tables.
    pub domain: String,
    pub recipients: RecipientSource,
    /// How mail for the domain is delivered: its route (`next_hop`, `fallback_relay`)
    /// and its own keys, with the `[delivery]` defaults for the keys it does not write.
    /// The same policy is `DeliveryConfig::destinations[domain]`.
    pub delivery: DestinationPolicy,
}

/// Field by field, because `DestinationPolicy` does not implement `PartialEq`. The
/// destructuring is exhaustive, so a field added to either type is a compile error here
/// rather than a field silently left out of the comparison.
impl PartialEq for RelayDomainConfig {
    fn eq(&self, other: &Self) -> bool {
        let RelayDomainConfig {
            domain,
            recipients,
            delivery,
        } = self;
        let DestinationPolicy {
            route,
            tls,
            max_connections,
            max_messages_per_second,
            lifetime,
            delay_warning,
        } = delivery;
        let theirs = &other.delivery;
        *domain == other.domain
            && *recipients == other.recipients
            && *route == theirs.route
            && *tls == theirs.tls
            && *max_connections == theirs.max_connections
            && *max_messages_per_second == theirs.max_messages_per_second
            && *lifetime == theirs.lifetime
            && *delay_warning == theirs.delay_warning
    }
}

impl Eq for RelayDomainConfig {}

/// Whom a relay domain accepts mail for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientSource {
    /// `recipients = [...]`: local parts (`alice`) or full addresses of this domain
    /// (`bob@example.org`), as written; never empty. See
    /// [`RelayDomainConfig::listed_addresses`] for the full-address form.
    Listed(Vec<String>),
    /// `recipient_file = "..."`: one address or `@domain` per line, read by the SMTP
    /// crate at startup.
    File(PathBuf),
    /// `catch_all = true`: any local part (`@domain` in Postfix `relay_recipient_maps`).
    /// Every message to a user the primary does not have is then accepted here and
    /// bounced later, to a sender that spam forges: prefer a list where there is one.
    CatchAll,
}

impl RelayDomainConfig {
    /// For [`RecipientSource::Listed`], every entry as a full address, `local@domain`,
    /// the form the SMTP crate's recipient list parser reads; `None` for other sources.
    pub fn listed_addresses(&self) -> Option<Vec<String>> {
        let RecipientSource::Listed(entries) = &self.recipients else {
            return None;
        };
        let full = |entry: &String| {
            if entry.contains('@') {
                entry.clone()
            } else {
                format!("{entry}@{}", self.domain)
            }
        };
        Some(entries.iter().map(full).collect())
    }
}

/// Checks every table; `Some` only if all of them are valid. A table's delivery keys
/// default to `delivery_defaults`, from `[delivery]`.
pub(super) fn check_relay_domains(
    raw: Vec<RawRelayDomain>,
    delivery_defaults: &DestinationDraft,
    checks: FileChecks,
    report: &mut ErrorReport,
) -> Option<Vec<RelayDomainConfig>> {
    // The table that first names each domain, to point at it from a duplicate.
    let mut first_with_domain: HashMap<String, usize> = HashMap::new();
    let mut tables = Vec::with_capacity(raw.len());
    for (index, mut table) in raw.into_iter().enumerate() {
        let prefix = format!("relay_domains[{index}]");
        let domain_key = format!("{prefix}.domain");
        let domain = required(
            report,
            &domain_key,
            table.domain.take(),
            r#"the domain this node is a backup MX for, e.g. domain = "example.org""#,
        )
        .and_then(|text| match dns_name::domain(&text) {
            Ok(domain) => Some(domain),
            Err(why) => {
                report.push(&domain_key, format!("{text:?} {why}"));
                None
            }
        });
        if let Some(domain) = &domain
            && let first = *first_with_domain.entry(domain.clone()).or_insert(index)
            && first != index
        {
            report.push(
                &domain_key,
                format!(
                    "{domain} is already listed as relay_domains[{first}]; each domain \
                     takes one table"
                ),
            );
        }
        // The delivery keys are taken out first, and checked after the recipients, so
        // that errors come in the order the keys are documented.
        let (next_hop, fallback_relay) = (table.next_hop.take(), table.fallback_relay.take());
        let destination_keys = DestinationKeys::take_from_relay_domain(&prefix, &mut table);
        let recipients = recipient_source(report, &prefix, domain.as_deref(), table, checks);
        let route = check_route(report, &prefix, next_hop, fallback_relay);
        let delivery = check_destination(report, destination_keys, delivery_defaults, checks);
        let delivery = route.and_then(|route| delivery.finish(route));
        tables.push(match (domain, recipients, delivery) {
            (Some(domain), Some(recipients), Some(delivery)) => Some(RelayDomainConfig {
                domain,
                recipients,
                delivery,
            }),
            _ => None,
        });
    }
    // Every table was checked before any failure stops the collection.
    tables.into_iter().collect()
}

/// Exactly one of `recipients`, `recipient_file` and `catch_all = true`. Each source
/// written is checked even when the choice is wrong, so that its own problems show up
/// in the same run.
fn recipient_source(
    report: &mut ErrorReport,
    prefix: &str,
    domain: Option<&str>,
    table: RawRelayDomain,
    checks: FileChecks,
) -> Option<RecipientSource> {
    let catch_all = table.catch_all == Some(true);
    let written: Vec<&str> = [
        ("recipients", table.recipients.is_some()),
        ("recipient_file", table.recipient_file.is_some()),
        ("catch_all = true", catch_all),
    ]
    .into_iter()
    .filter_map(|(source, is_written)| is_written.then_some(source))
    .collect();

    let listed = table
        .recipients
        .map(|entries| listed_recipients(report, prefix, domain, entries));
    let file = table
        .recipient_file
        .map(|path| existing_file(report, &format!("{prefix}.recipient_file"), &path, checks));

    let choose = "give exactly one of recipients = [\"alice\", ...], recipient_file = \
                  \"/etc/mxfleet/recipients/<domain>\" or catch_all = true";
    match written.as_slice() {
        [] => {
            let catch_all_false = if table.catch_all == Some(false) {
                " (catch_all = false chooses none)"
            } else {
                ""
            };
            report.push(
                prefix,
                format!("names no recipients{catch_all_false}: {choose}"),
            );
            None
        }
        [_] => match (listed, file) {
            (Some(listed), _) => listed.map(RecipientSource::Listed),
            (_, Some(file)) => file.map(RecipientSource::File),
            (None, None) => Some(RecipientSource::CatchAll),
        },
        [several @ .., last] => {
            report.push(
                prefix,
                format!(
                    "sets {} and {last}, which are alternatives: {choose}",
                    several.join(", ")
                ),
            );
            None
        }
    }
}

/// Non-empty entries, each a local part or an address in `domain` (when `domain` is
/// valid; otherwise only the table's domain is reported).
fn listed_recipients(
    report: &mut ErrorReport,
    prefix: &str,
    domain: Option<&str>,
    entries: Vec<String>,
) -> Option<Vec<String>> {
    let key = format!("{prefix}.recipients");
    if entries.is_empty() {
        report.push(
            &key,
            "is empty, so every recipient of the domain would be refused; list local parts \
             or addresses, or use recipient_file or catch_all = true",
        );
        return None;
    }
    let mut all_valid = true;
    for (position, entry) in entries.iter().enumerate() {
        if let Some(problem) = recipient_problem(entry, domain) {
            report.push(format!("{key}[{position}]"), problem);
            all_valid = false;
        }
    }
    all_valid.then_some(entries)
}

fn recipient_problem(entry: &str, domain: Option<&str>) -> Option<String> {
    if entry.trim().is_empty() {
        return Some("must not be empty: write a local part or an address".to_owned());
    }
    // The last '@': a quoted local part may contain one ("a@b"@example.org).
    let (local, entry_domain) = entry.rsplit_once('@')?;
    if local.is_empty() {
        return Some(format!(
            "{entry:?} has no local part; to accept every address of the domain, replace \
             recipients with catch_all = true"
        ));
    }
    match domain {
        Some(domain) if !entry_domain.eq_ignore_ascii_case(domain) => Some(format!(
            "{entry:?} is not in {domain}; list it in the table of its own domain, or \
             write the local part alone"
        )),
        _ => None,
    }
}
