//! `[spam]` and each relay domain's `checks`: defaults, a full example, the default
//! list against a domain's own, and each rule with its key path.

use std::collections::HashMap;

use mxfleet_smtp::checks::config::{
    DnsblConfig, GreylistConfig, HygieneConfig, RateLimitConfig, SpfConfig, UnknownRecipientAction,
    VerifyConfig,
};
use mxfleet_smtp::checks::dnsbl::DnsblSite;
use mxfleet_smtp::checks::{Check, CheckSet, SpamConfig};

use super::*;

const DAY: u64 = 86_400;

/// Two relay domains, one catch-all and one with a recipient list, after the minimal
/// config, then `extra`.
fn with_spam(extra: &str) -> String {
    format!(
        r#"{MINIMAL}
[[relay_domains]]
domain = "example.org"
catch_all = true

[[relay_domains]]
domain = "example.net"
recipients = ["alice"]

{extra}
"#
    )
}

fn site(text: &str) -> DnsblSite {
    text.parse().unwrap_or_else(|why| panic!("{text:?}: {why}"))
}

fn checks(list: &[Check]) -> CheckSet {
    list.iter().copied().collect()
}

/// Every field but `domain_checks`, which the caller compares on its own.
fn assert_settings(actual: &SpamConfig, expected: &SpamConfig) {
    assert_eq!(actual.dns_timeout, expected.dns_timeout);
    assert_eq!(actual.dnsbl, expected.dnsbl);
    assert_eq!(actual.greylisting, expected.greylisting);
    assert_eq!(actual.verify, expected.verify);
    assert_eq!(actual.rate_limits, expected.rate_limits);
    assert_eq!(actual.hygiene, expected.hygiene);
    assert_eq!(actual.spf, expected.spf);
}

#[test]
fn without_a_spam_table_no_domain_applies_any_check() {
    let config = accepted(&with_spam(""));
    let spam = &config.spam;
    assert_eq!(spam.checks_for("example.org"), Some(&CheckSet::new()));
    assert_eq!(spam.checks_for("example.net"), Some(&CheckSet::new()));
    assert_eq!(spam.domain_checks.len(), 2);
    assert!(
        !Check::ALL
            .into_iter()
            .any(|check| spam.any_domain_uses(check))
    );
    let defaults = SpamConfig {
        dns_timeout: Duration::from_secs(5),
        ..SpamConfig::default()
    };
    assert_settings(spam, &defaults);
    // The documented defaults of each mechanism.
    assert_eq!(spam.dnsbl.threshold, 1);
    assert_eq!(spam.greylisting.delay, Duration::from_secs(300));
    assert_eq!(spam.verify.unknown_action, UnknownRecipientAction::Accept);
    assert_eq!(spam.rate_limits.client_connection_rate_limit, 0);
    assert_eq!(spam.hygiene.greet_wait, Duration::ZERO);
    assert!(!spam.spf.reject_fail);

    // No relay domain at all is no entry at all.
    assert!(accepted(MINIMAL).spam.domain_checks.is_empty());
}

#[test]
fn a_full_example_parses_to_the_expected_config() {
    let config = accepted(&format!(
        r#"{MINIMAL}
[spam]
dns_timeout = "3s"
default_checks = ["dnsbl", "unknown_sender_domain"]

[spam.dnsbl]
sites = ["zen.spamhaus.org=127.0.0.[2..11]*3", "bl.spamcop.net*2"]
threshold = 3
rhsbl_sender_sites = ["dbl.spamhaus.org=127.0.1.[2..99]"]
cache_ttl = "30m"
cache_entries = 5000

[spam.greylisting]
delay = "2m"
retry_window = "1d"
expiry = "30d"
auto_allowlist_after = 0
allowlist_networks = ["192.0.2.0/24", "2001:db8::/32"]

[spam.recipient_verification]
positive_expiry = "7d"
negative_expiry = "1h"
unknown_action = "defer"
probe_timeout = "20s"
probe_sender = "postmaster@mx.example.net"

[spam.rate_limits]
window = "2m"
client_connection_rate_limit = 30
client_message_rate_limit = 20
client_recipient_rate_limit = 200
network_connection_rate_limit = 300
network_message_rate_limit = 200
network_recipient_rate_limit = 2000
exceptions = ["127.0.0.0/8", "::1"]

[spam.hygiene]
unknown_address_reject_code = 550
unknown_client_reject_code = 554
greet_wait = "6s"

[spam.spf]
reject_fail = true

[[relay_domains]]
domain = "Example.ORG"
catch_all = true
checks = ["greylisting", "verify_recipients", "primary_aware", "spf"]

[[relay_domains]]
domain = "example.net"
recipient_file = "/etc/mxfleet/recipients/example.net"
"#
    ));
    let spam = &config.spam;
    let expected = SpamConfig {
        domain_checks: HashMap::new(),
        dns_timeout: Duration::from_secs(3),
        dnsbl: DnsblConfig {
            sites: vec![
                site("zen.spamhaus.org=127.0.0.[2..11]*3"),
                site("bl.spamcop.net*2"),
            ],
            threshold: 3,
            rhsbl_sender_sites: vec![site("dbl.spamhaus.org=127.0.1.[2..99]")],
            cache_ttl: Duration::from_secs(1800),
            cache_entries: 5000,
        },
        greylisting: GreylistConfig {
            delay: Duration::from_secs(120),
            retry_window: Duration::from_secs(DAY),
            expiry: Duration::from_secs(30 * DAY),
            auto_allowlist_after: 0,
            allowlist_networks: vec![
                "192.0.2.0/24".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
        },
        verify: VerifyConfig {
            positive_expiry: Duration::from_secs(7 * DAY),
            negative_expiry: Duration::from_secs(3600),
            unknown_action: UnknownRecipientAction::Defer,
            probe_timeout: Duration::from_secs(20),
            probe_sender: "postmaster@mx.example.net".to_owned(),
        },
        rate_limits: RateLimitConfig {
            window: Duration::from_secs(120),
            client_connection_rate_limit: 30,
            client_message_rate_limit: 20,
            client_recipient_rate_limit: 200,
            network_connection_rate_limit: 300,
            network_message_rate_limit: 200,
            network_recipient_rate_limit: 2000,
            exceptions: vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()],
        },
        hygiene: HygieneConfig {
            unknown_address_reject_code: 550,
            unknown_client_reject_code: 554,
            greet_wait: Duration::from_secs(6),
        },
        spf: SpfConfig { reject_fail: true },
    };
    assert_settings(spam, &expected);
    assert_eq!(
        spam.domain_checks,
        HashMap::from([
            (
                "example.org".to_owned(),
                checks(&[
                    Check::Greylisting,
                    Check::VerifyRecipients,
                    Check::PrimaryAware,
                    Check::Spf,
                ]),
            ),
            (
                "example.net".to_owned(),
                checks(&[Check::Dnsbl, Check::UnknownSenderDomain]),
            ),
        ])
    );
}

#[test]
fn a_domain_own_checks_replace_the_default_list() {
    let config = accepted(&with_spam(
        r#"
[spam]
default_checks = ["greylisting", "verify_recipients", "spf"]

[[relay_domains]]
domain = "example.com"
catch_all = true
checks = []

[[relay_domains]]
domain = "example.info"
catch_all = true
checks = ["unknown_client_hostname"]
"#,
    ));
    let spam = &config.spam;
    // Inherited in full by the catch-all domain...
    assert_eq!(
        spam.checks_for("example.org"),
        Some(&checks(&[
            Check::Greylisting,
            Check::VerifyRecipients,
            Check::Spf
        ]))
    );
    // ...and without verify_recipients by the domain with a recipient list.
    assert_eq!(
        spam.checks_for("example.net"),
        Some(&checks(&[Check::Greylisting, Check::Spf]))
    );
    // An empty list is no checks, not the default.
    assert_eq!(spam.checks_for("example.com"), Some(&CheckSet::new()));
    assert_eq!(
        spam.checks_for("example.info"),
        Some(&checks(&[Check::UnknownClientHostname]))
    );
}

#[test]
fn each_rule_is_reported_with_its_key_path() {
    let cases = [
        // (spam tables after the two relay domains, rejected key, words in the message)
        (
            "[spam]\ndefault_checks = [\"spf\", \"rbl\"]",
            "spam.default_checks[1]",
            "\"rbl\" is not a spam check; the checks are primary_aware, dnsbl, rhsbl_sender, \
             unknown_client_hostname, unknown_sender_domain, spf, verify_recipients, \
             greylisting",
        ),
        (
            "[spam]\ndefault_checks = [\"spf\", \"spf\"]",
            "spam.default_checks[1]",
            "spf is already listed at spam.default_checks[0]",
        ),
        (
            "[spam]\ndefault_checks = [\"dnsbl\"]",
            "spam.default_checks[0]",
            "spam.dnsbl.sites is empty",
        ),
        (
            "[spam]\ndefault_checks = [\"rhsbl_sender\"]\n[spam.dnsbl]\nsites = [\"bl.example\"]",
            "spam.default_checks[0]",
            "spam.dnsbl.rhsbl_sender_sites is empty",
        ),
        (
            "[spam]\ndns_timeout = \"0s\"",
            "spam.dns_timeout",
            "greater than 0",
        ),
        (
            "[spam.dnsbl]\nthreshold = 0",
            "spam.dnsbl.threshold",
            "at least 1",
        ),
        (
            "[spam.dnsbl]\ncache_entries = 0",
            "spam.dnsbl.cache_entries",
            "at least 1",
        ),
        (
            "[spam.dnsbl]\ncache_ttl = \"1 aeon\"",
            "spam.dnsbl.cache_ttl",
            "not a duration",
        ),
        (
            "[spam.greylisting]\ndelay = \"0s\"",
            "spam.greylisting.delay",
            "greater than 0",
        ),
        (
            "[spam.greylisting]\ndelay = \"2h\"\nexpiry = \"1h\"",
            "spam.greylisting.expiry",
            "must be longer than delay, now 2h (or a passed triplet would be forgotten \
             sooner than a new one can pass); got 1h",
        ),
        (
            "[spam.greylisting]\ndelay = \"1h\"\nretry_window = \"1h\"",
            "spam.greylisting.retry_window",
            "or no retry could ever pass",
        ),
        (
            "[spam.greylisting]\nallowlist_networks = [\"192.0.2.0/24\", \"192.0.2.0/33\"]",
            "spam.greylisting.allowlist_networks[1]",
            "prefix length must be 0 to 32",
        ),
        (
            "[spam.recipient_verification]\nunknown_action = \"reject\"",
            "spam.recipient_verification.unknown_action",
            "\"reject\" is not an action",
        ),
        (
            "[spam.recipient_verification]\nprobe_timeout = \"0s\"",
            "spam.recipient_verification.probe_timeout",
            "greater than 0",
        ),
        (
            "[spam.recipient_verification]\nnegative_expiry = \"0s\"",
            "spam.recipient_verification.negative_expiry",
            "greater than 0",
        ),
        (
            "[spam.recipient_verification]\nprobe_sender = \"postmaster\"",
            "spam.recipient_verification.probe_sender",
            "\"postmaster\" is not an address",
        ),
        (
            "[spam.recipient_verification]\nprobe_sender = \"<>\"",
            "spam.recipient_verification.probe_sender",
            "angle brackets",
        ),
        (
            "[spam.rate_limits]\nwindow = \"0s\"",
            "spam.rate_limits.window",
            "greater than 0",
        ),
        (
            "[spam.rate_limits]\nexceptions = [\"localhost\"]",
            "spam.rate_limits.exceptions[0]",
            "not an IP address or network",
        ),
        (
            "[spam.hygiene]\nunknown_address_reject_code = 250",
            "spam.hygiene.unknown_address_reject_code",
            "4xx (try again later) or 5xx (refused) reply code such as 450 or 550, got 250",
        ),
        (
            "[spam.hygiene]\nunknown_client_reject_code = 600",
            "spam.hygiene.unknown_client_reject_code",
            "got 600",
        ),
        (
            "[spam.hygiene]\ngreet_wait = \"soon\"",
            "spam.hygiene.greet_wait",
            "not a duration",
        ),
        ("[spam]\nverbose = true", "spam.verbose", "unknown field"),
        (
            "[spam.greylisting]\ndelay = 300",
            "spam.greylisting.delay",
            "a duration string",
        ),
    ];
    for (spam, key, words) in cases {
        let errors = rejected(&with_spam(spam));
        let message = message_for(&errors, key);
        assert!(message.contains(words), "{spam}\n{key}: {message}");
        assert_eq!(
            errors.0.len(),
            1,
            "{spam}\none problem, one error:\n{errors}"
        );
    }
}

#[test]
fn zero_and_boundary_values_that_are_allowed() {
    let config = accepted(&with_spam(
        r#"
[spam.greylisting]
delay = "1s"
retry_window = "2s"
expiry = "2s"

[spam.recipient_verification]
probe_sender = ""

[spam.hygiene]
unknown_address_reject_code = 421
unknown_client_reject_code = 599
greet_wait = "0s"
"#,
    ));
    assert_eq!(config.spam.greylisting.expiry, Duration::from_secs(2));
    assert_eq!(config.spam.verify.probe_sender, "");
    assert_eq!(config.spam.hygiene.unknown_address_reject_code, 421);
    assert_eq!(config.spam.hygiene.greet_wait, Duration::ZERO);
}

#[test]
fn a_bad_dnsbl_site_is_reported_with_the_parser_message() {
    let bad = "zen.spamhaus.org*heavy";
    let why = bad
        .parse::<DnsblSite>()
        .expect_err("a weight must be a number");
    let errors = rejected(&with_spam(&format!(
        "[spam.dnsbl]\nsites = [\"bl.spamcop.net\", \"{bad}\"]\nrhsbl_sender_sites = [\"\"]"
    )));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["spam.dnsbl.sites[1]", "spam.dnsbl.rhsbl_sender_sites[0]"],
        "{errors}"
    );
    assert_eq!(message_for(&errors, "spam.dnsbl.sites[1]"), why);
}

#[test]
fn domain_checks_are_judged_per_table() {
    let errors = rejected(&format!(
        r#"{MINIMAL}
[[relay_domains]]
domain = "example.org"
catch_all = true
checks = ["greylisting", "Greylisting"]

[[relay_domains]]
domain = "example.net"
recipients = ["alice"]
checks = ["spf", "verify_recipients"]

[[relay_domains]]
domain = "example.com"
recipient_file = "/etc/mxfleet/recipients/example.com"
checks = ["verify_recipients", "dnsbl"]
"#
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "relay_domains[0].checks[1]",
            "relay_domains[1].checks[1]",
            "relay_domains[2].checks[0]",
            "relay_domains[2].checks[1]",
        ],
        "{errors}"
    );
    assert!(message_for(&errors, "relay_domains[0].checks[1]").contains("\"Greylisting\" is not"));
    let message = message_for(&errors, "relay_domains[1].checks[1]");
    assert!(
        message.contains("this domain lists its recipients"),
        "{message}"
    );
    assert!(
        message_for(&errors, "relay_domains[2].checks[1]").contains("spam.dnsbl.sites is empty")
    );
}

#[test]
fn every_spam_problem_is_reported_at_once() {
    let errors = rejected(&with_spam(
        r#"
[spam]
dns_timeout = "0s"
default_checks = ["dnsbl", "rbl"]

[spam.dnsbl]
threshold = -1

[spam.greylisting]
delay = "1d"
retry_window = "12h"

[spam.recipient_verification]
unknown_action = "drop"

[spam.rate_limits]
exceptions = ["10.0.0.0/8", "ten"]

[spam.hygiene]
unknown_address_reject_code = 200

[[relay_domains]]
domain = "example.com"
catch_all = true
checks = ["rhsbl_sender"]
"#,
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "spam.dns_timeout",
            "spam.default_checks[0]",
            "spam.default_checks[1]",
            "spam.dnsbl.threshold",
            "spam.greylisting.retry_window",
            "spam.recipient_verification.unknown_action",
            "spam.rate_limits.exceptions[1]",
            "spam.hygiene.unknown_address_reject_code",
            "relay_domains[2].checks[0]",
        ],
        "{errors}"
    );
}

#[test]
fn primary_aware_and_verified_domains_have_their_primary_watched() {
    let text = format!(
        r#"{MINIMAL}
[delivery]
dns_servers = ["127.0.0.1:53"]

[[relay_domains]]
domain = "aware.example"
catch_all = true
checks = ["primary_aware"]

[[relay_domains]]
domain = "verified.example"
catch_all = true
checks = ["verify_recipients"]

[[relay_domains]]
domain = "plain.example"
recipients = ["alice"]
checks = ["greylisting"]
"#
    );
    let config = accepted(&text);
    let setup = crate::delivery_setup::from_config(&config).expect("delivery setup");
    let watched: Vec<&str> = setup
        .config
        .watched_primaries
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(watched, ["aware.example", "verified.example"]);
}
