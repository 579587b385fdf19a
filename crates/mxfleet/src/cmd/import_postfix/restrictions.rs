//! Postfix's SMTP access restrictions and postscreen's DNSBL settings as mxfleet spam
//! checks (`[spam]`, README "Spam defence").
//!
//! mxfleet decides everything at `RCPT TO`, like Postfix with `smtpd_delay_reject =
//! yes`, and runs its checks in a fixed order, so the order of a Postfix restriction
//! list is not kept: each restriction that has an mxfleet check turns that check on in
//! `spam.default_checks`, whichever `smtpd_*_restrictions` list it is in.
//!
//! | Postfix | mxfleet |
//! |---|---|
//! | `reject_rbl_client zone[=filter]` | `dnsbl`, the site weighted to reach the threshold alone |
//! | `postscreen_dnsbl_sites`, `_threshold` (`_action = enforce` or `drop`) | `dnsbl`, as written (reported: Postfix applied them only if master.cf runs postscreen) |
//! | `reject_rhsbl_sender zone` | `rhsbl_sender` |
//! | `reject_unknown_sender_domain` | `unknown_sender_domain` |
//! | `reject_unknown_client_hostname` (`reject_unknown_client`) | `unknown_client_hostname` |
//! | `reject_unverified_recipient` | `verify_recipients` (domains without a recipient list) |
//! | `check_policy_service` to postgrey (its name, or port 10023) | `greylisting` |
//! | `check_policy_service` to policyd-spf | `spf` |
//! | `reject_unauth_destination`, `reject_unlisted_recipient`, `permit` … | built in |
//!
//! A `{ argument, name=value, ... }` group after a restriction (Postfix 3.0, e.g.
//! `check_policy_service { inet:127.0.0.1:10023, timeout=10s }`) is that restriction's
//! argument with its options; only the argument is looked at.
//!
//! Built in: only relay domains and their recipients are accepted, from anyone
//! (`permit_mynetworks` changes nothing). Everything else (access maps, HELO checks,
//! other policy services) is reported.
//!
//! Layout: [`SpamImport`] and [`SpamImport::add_restrictions`],
//! [`SpamImport::add_postscreen`]; tests at the end.

use std::collections::BTreeSet;

use mxfleet_smtp::checks::dnsbl::DnsblSite;

use super::document::NotCarried;

/// What the restrictions ask for, in mxfleet's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpamImport {
    /// Check names for `spam.default_checks`, and the parameter that asked for each.
    pub checks: Vec<(&'static str, String)>,
    /// `spam.dnsbl.sites` as written by Postfix: `(site, from reject_rbl_client)`.
    /// `reject_rbl_client` sites get the threshold as weight when written out.
    pub dnsbl_sites: Vec<(String, bool)>,
    /// `postscreen_dnsbl_threshold`.
    pub threshold: Option<u64>,
    pub rhsbl_sender_sites: Vec<String>,
}

/// Restrictions that take the next word as their argument.
const WITH_ARGUMENT: &[&str] = &[
    "reject_rbl_client",
    "reject_rbl",
    "reject_rhsbl_client",
    "reject_rhsbl_sender",
    "reject_rhsbl_helo",
    "reject_rhsbl_recipient",
    "reject_rhsbl_reverse_client",
    "permit_dnswl_client",
    "permit_rhswl_client",
    "check_policy_service",
];

/// Restrictions mxfleet applies by construction.
const BUILT_IN: &[&str] = &[
    "permit_mynetworks",
    "reject_unauth_destination",
    "defer_unauth_destination",
    "reject_unlisted_recipient",
    "check_recipient_maps",
    "permit",
    "dunno",
    "permit_auth_destination",
];

impl SpamImport {
    /// One `smtpd_*_restrictions` list.
    pub fn add_restrictions(
        &mut self,
        parameter: &str,
        value: &str,
        not_carried: &mut Vec<NotCarried>,
    ) {
        let mut words = split_restrictions(value).into_iter();
        let mut warn_only = false;
        while let Some(word) = words.next() {
            let restriction = word.to_ascii_lowercase();
            // A `{ argument, name=value, ... }` group (Postfix 3.0) is one argument with
            // its options; only the argument itself means something to mxfleet.
            let group = if WITH_ARGUMENT.contains(&restriction.as_str())
                || (restriction.starts_with("check_") && restriction.ends_with("_access"))
            {
                words.next()
            } else {
                None
            };
            let argument = group.map(|group| match brace_group(group) {
                Some(inner) => super::main_cf::split_list(inner)
                    .into_iter()
                    .next()
                    .unwrap_or(""),
                None => group,
            });
            let written = match group {
                Some(group) => format!("{restriction} {group}"),
                None => restriction.clone(),
            };
            if std::mem::take(&mut warn_only) {
                not_carried.push(NotCarried::new(
                    parameter,
                    format!(
                        "{written} only logs after warn_if_reject; mxfleet has no log-only mode"
                    ),
                ));
                continue;
            }
            let mut enable = |check: &'static str| self.enable(check, parameter);
            match (restriction.as_str(), argument) {
                ("warn_if_reject", _) => warn_only = true,
                (built_in, _) if BUILT_IN.contains(&built_in) => {}
                ("reject_unknown_sender_domain", _) => enable("unknown_sender_domain"),
                ("reject_unknown_client_hostname" | "reject_unknown_client", _) => {
                    enable("unknown_client_hostname")
                }
                ("reject_unverified_recipient", _) => enable("verify_recipients"),
                ("reject_rbl_client" | "reject_rbl", Some(site)) => {
                    match site.parse::<DnsblSite>() {
                        Ok(_) => {
                            self.enable("dnsbl", parameter);
                            self.add_site(site, true);
                        }
                        Err(why) => not_carried.push(NotCarried::new(parameter, why)),
                    }
                }
                ("reject_rhsbl_sender", Some(site)) => match site.parse::<DnsblSite>() {
                    Ok(_) => {
                        self.enable("rhsbl_sender", parameter);
                        if !self.rhsbl_sender_sites.iter().any(|known| known == site) {
                            self.rhsbl_sender_sites.push(site.to_owned());
                        }
                    }
                    Err(why) => not_carried.push(NotCarried::new(parameter, why)),
                },
                ("check_policy_service", Some(service)) => match policy_service_check(service) {
                    Some(check) => enable(check),
                    None => not_carried.push(NotCarried::new(
                        parameter,
                        format!(
                            "{written}: mxfleet cannot ask a policy service; only \
                                 postgrey (greylisting) and policyd-spf (spf) have built-in \
                                 equivalents"
                        ),
                    )),
                },
                _ => not_carried.push(NotCarried::new(
                    parameter,
                    format!("{written} has no mxfleet equivalent"),
                )),
            }
        }
    }

    /// `postscreen_dnsbl_sites`, when `action` (`postscreen_dnsbl_action`) blocks.
    pub fn add_postscreen(
        &mut self,
        sites: &str,
        threshold: Option<u64>,
        action: Option<&str>,
        not_carried: &mut Vec<NotCarried>,
    ) {
        const PARAMETER: &str = "postscreen_dnsbl_sites";
        if !matches!(action, Some("enforce" | "drop")) {
            not_carried.push(NotCarried::new(
                PARAMETER,
                format!(
                    "postscreen_dnsbl_action is {}, so Postfix only logs the score; mxfleet's \
                     dnsbl check refuses, so set spam.dnsbl.sites yourself if you want that",
                    action.unwrap_or("ignore (the default)")
                ),
            ));
            return;
        }
        let mut any = false;
        for site in super::main_cf::split_list(sites) {
            match site.parse::<DnsblSite>() {
                Ok(_) => {
                    self.add_site(site, false);
                    any = true;
                }
                Err(why) => not_carried.push(NotCarried::new(PARAMETER, why)),
            }
        }
        if any {
            self.enable("dnsbl", PARAMETER);
            self.threshold = threshold;
            not_carried.push(NotCarried::new(
                PARAMETER,
                "carried over as spam.dnsbl sites, which refuse at RCPT TO; Postfix applied \
                 them only if master.cf runs postscreen on the smtp port, and the importer \
                 does not read master.cf: if postscreen did not run there, remove these sites \
                 (and the dnsbl check, unless reject_rbl_client asked for it)",
            ));
        }
    }

    fn enable(&mut self, check: &'static str, parameter: &str) {
        if !self.checks.iter().any(|(known, _)| *known == check) {
            self.checks.push((check, parameter.to_owned()));
        }
    }

    fn add_site(&mut self, site: &str, rejects_alone: bool) {
        let zone = zone_of(site);
        match self
            .dnsbl_sites
            .iter_mut()
            .find(|(known, _)| zone_of(known) == zone)
        {
            // reject_rbl_client refuses on its own, which wins over a postscreen weight.
            Some(known) if rejects_alone => *known = (site.to_owned(), true),
            Some(_) => {}
            None => self.dnsbl_sites.push((site.to_owned(), rejects_alone)),
        }
    }

    /// `spam.dnsbl.sites` and `threshold` as written to the config: a
    /// `reject_rbl_client` site weighs the whole threshold, so that it refuses alone.
    pub fn dnsbl_sites_and_threshold(&self) -> (Vec<String>, u64) {
        let threshold = self.threshold.unwrap_or(1).max(1);
        let sites = self
            .dnsbl_sites
            .iter()
            .map(|(site, rejects_alone)| match site.parse::<DnsblSite>() {
                Ok(mut parsed) if *rejects_alone => {
                    parsed.weight = i32::try_from(threshold).unwrap_or(i32::MAX);
                    parsed.to_string()
                }
                _ => site.clone(),
            })
            .collect();
        (sites, threshold)
    }

    /// The check names, sorted, without repeats.
    pub fn check_names(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self.checks.iter().map(|(name, _)| *name).collect();
        names.into_iter().map(str::to_owned).collect()
    }
}

/// A restriction list's words, split at commas and white space outside `{ ... }`
/// groups; a group (braces included) is one word.
fn split_restrictions(value: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut depth = 0usize;
    let mut start: Option<usize> = None;
    for (at, c) in value.char_indices() {
        let separator = depth == 0 && (c == ',' || c.is_whitespace());
        if separator {
            if let Some(from) = start.take() {
                words.push(&value[from..at]);
            }
            continue;
        }
        if start.is_none() {
            start = Some(at);
        }
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                // `{...}check_x`: a group ends a word.
                if depth == 0
                    && let Some(from) = start.take()
                {
                    words.push(&value[from..at + c.len_utf8()]);
                }
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        words.push(&value[from..]);
    }
    words
}

/// The inside of a `{ ... }` group; `None` when `word` is not one.
fn brace_group(word: &str) -> Option<&str> {
    word.strip_prefix('{')
        .map(|inner| inner.strip_suffix('}').unwrap_or(inner).trim())
}

fn zone_of(site: &str) -> &str {
    site.split(['=', '*']).next().unwrap_or(site)
}

/// postgrey listens on port 10023 by default, policyd-spf on a socket named after it.
fn policy_service_check(service: &str) -> Option<&'static str> {
    let service = service.to_ascii_lowercase();
    if service.contains("postgrey") || service.ends_with(":10023") {
        Some("greylisting")
    } else if service.contains("spf") {
        Some("spf")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_mx_restriction_list() {
        let mut spam = SpamImport::default();
        let mut not_carried = Vec::new();
        spam.add_restrictions(
            "smtpd_recipient_restrictions",
            "permit_mynetworks, reject_unauth_destination, reject_unlisted_recipient,\
             reject_non_fqdn_sender reject_unknown_sender_domain\
             , reject_rbl_client zen.spamhaus.org=127.0.0.[2..11], reject_rhsbl_sender dbl.spamhaus.org,\
             check_policy_service inet:127.0.0.1:10023, check_client_access hash:/etc/postfix/access,\
             warn_if_reject reject_unknown_client_hostname, permit",
            &mut not_carried,
        );
        assert_eq!(
            spam.check_names(),
            [
                "dnsbl",
                "greylisting",
                "rhsbl_sender",
                "unknown_sender_domain"
            ]
        );
        assert_eq!(spam.rhsbl_sender_sites, ["dbl.spamhaus.org"]);
        let reasons: Vec<&str> = not_carried.iter().map(|n| n.reason.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].starts_with("reject_non_fqdn_sender"));
        assert!(reasons[1].starts_with("check_client_access hash:/etc/postfix/access"));
        assert!(reasons[2].starts_with("reject_unknown_client_hostname only logs"));
    }

    #[test]
    fn reject_rbl_client_refuses_alone_next_to_postscreen_weights() {
        let mut spam = SpamImport::default();
        let mut not_carried = Vec::new();
        spam.add_postscreen(
            "zen.spamhaus.org*3 bl.spamcop.net*2, list.dnswl.org=127.0.[0..255].[1..3]*-2",
            Some(3),
            Some("enforce"),
            &mut not_carried,
        );
        spam.add_restrictions(
            "smtpd_client_restrictions",
            "reject_rbl_client bl.spamcop.net, reject_rbl_client b.barracudacentral.org",
            &mut not_carried,
        );
        // Only the reminder that postscreen ran only if master.cf says so.
        assert_eq!(not_carried.len(), 1, "{not_carried:?}");
        assert!(not_carried[0].reason.contains("master.cf"));
        let (sites, threshold) = spam.dnsbl_sites_and_threshold();
        assert_eq!(threshold, 3);
        assert_eq!(
            sites,
            [
                "zen.spamhaus.org*3",
                "bl.spamcop.net*3",
                "list.dnswl.org=127.0.[0..255].[1..3]*-2",
                "b.barracudacentral.org*3",
            ]
        );
    }

    #[test]
    fn postscreen_sites_that_only_log_are_reported() {
        let mut spam = SpamImport::default();
        let mut not_carried = Vec::new();
        spam.add_postscreen("zen.spamhaus.org", None, None, &mut not_carried);
        assert!(spam.dnsbl_sites.is_empty());
        assert_eq!(not_carried[0].parameter, "postscreen_dnsbl_sites");
    }

    #[test]
    fn postscreen_sites_carried_over_depend_on_master_cf() {
        let table = [
            (Some("enforce"), true),
            (Some("drop"), true),
            (Some("ignore"), false),
            (None, false),
        ];
        for (action, carried) in table {
            let mut spam = SpamImport::default();
            let mut not_carried = Vec::new();
            spam.add_postscreen("zen.spamhaus.org*2", Some(2), action, &mut not_carried);
            assert_eq!(!spam.dnsbl_sites.is_empty(), carried, "{action:?}");
            let mentions_master_cf = not_carried
                .iter()
                .any(|item| item.reason.contains("master.cf runs postscreen"));
            assert_eq!(mentions_master_cf, carried, "{action:?}: {not_carried:?}");
        }
    }

    #[test]
    fn option_groups_are_part_of_their_restriction() {
        // (list, check names, not-carried reasons' starts)
        let table: [(&str, &[&str], &[&str]); 5] = [
            (
                "check_policy_service { inet:127.0.0.1:10023, timeout=10s }, permit",
                &["greylisting"],
                &[],
            ),
            (
                "check_policy_service {inet:127.0.0.1:10023,timeout=10s,default_action=DUNNO}",
                &["greylisting"],
                &[],
            ),
            (
                "check_policy_service { unix:private/policyd-spf, timeout=30s } \
                 reject_unknown_sender_domain",
                &["spf", "unknown_sender_domain"],
                &[],
            ),
            (
                "check_policy_service { inet:127.0.0.1:12340, timeout=10s }, reject_non_fqdn_sender",
                &[],
                &[
                    "check_policy_service { inet:127.0.0.1:12340, timeout=10s }: mxfleet cannot",
                    "reject_non_fqdn_sender has no",
                ],
            ),
            (
                "check_client_access { hash:/etc/postfix/access }",
                &[],
                &["check_client_access { hash:/etc/postfix/access } has no"],
            ),
        ];
        for (list, checks, reasons) in table {
            let mut spam = SpamImport::default();
            let mut not_carried = Vec::new();
            spam.add_restrictions("smtpd_recipient_restrictions", list, &mut not_carried);
            assert_eq!(spam.check_names(), checks, "{list}");
            assert_eq!(not_carried.len(), reasons.len(), "{list}: {not_carried:?}");
            for (item, want) in not_carried.iter().zip(reasons) {
                assert!(item.reason.starts_with(want), "{list}: {}", item.reason);
            }
        }
    }

    #[test]
    fn restriction_words() {
        let table: [(&str, &[&str]); 4] = [
            ("a, b c", &["a", "b", "c"]),
            ("a { x, y } b", &["a", "{ x, y }", "b"]),
            ("a {x,{y}},b", &["a", "{x,{y}}", "b"]),
            ("a { unterminated, é", &["a", "{ unterminated, é"]),
        ];
        for (value, want) in table {
            assert_eq!(split_restrictions(value), want, "{value}");
        }
    }

    #[test]
    fn policy_services() {
        let table = [
            ("inet:127.0.0.1:10023", Some("greylisting")),
            ("unix:postgrey/socket", Some("greylisting")),
            ("unix:private/policyd-spf", Some("spf")),
            ("inet:127.0.0.1:12340", None),
        ];
        for (service, want) in table {
            assert_eq!(policy_service_check(service), want, "{service}");
        }
    }
}
