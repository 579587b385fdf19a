//! Whole conversions, table-driven: a `main.cf` (and the map sources it names) in, the
//! config (parsed by the node's loader) and the not-carried list out.

use std::path::PathBuf;
use std::time::Duration;

use mxfleet_node::config::{FileChecks, NodeConfig, parse_with};

use super::convert::{FileText, Files, ImportOptions, Imported, import};
use super::main_cf::MainCf;

const TRANSPORT: &str = "/etc/postfix/transport";

fn run(main_cf: &str, files: &[(&str, &str)]) -> (NodeConfig, Imported) {
    let files: Files = files
        .iter()
        .map(|(path, text)| (PathBuf::from(path), FileText::Text((*text).to_owned())))
        .collect();
    let imported = import(&MainCf::parse(main_cf), &files, &ImportOptions::default())
        .unwrap_or_else(|errors| panic!("{main_cf}: does not validate:\n{errors}"));
    let config = parse_with(&imported.toml, "<imported>", FileChecks::Skip)
        .unwrap_or_else(|errors| panic!("{main_cf}: does not load:\n{errors}"));
    (config, imported)
}

/// The not-carried items about `parameter`, as `reason` strings.
fn reasons<'a>(imported: &'a Imported, parameter: &str) -> Vec<&'a str> {
    imported
        .not_carried
        .iter()
        .filter(|item| item.parameter == parameter)
        .map(|item| item.reason.as_str())
        .collect()
}

fn next_hops(config: &NodeConfig) -> Vec<(String, String)> {
    config
        .relay_domains
        .iter()
        .map(|relay| {
            (
                relay.domain.clone(),
                relay.delivery.route.primary.to_string(),
            )
        })
        .collect()
}

#[test]
fn transport_keys_wildcards_subdomains_recipients_and_mx_ports() {
    let main_cf = format!(
        "relay_domains = a.example, b.example, c.example\n\
         transport_maps = hash:{TRANSPORT}\n\
         relayhost = [smarthost.example]:587\n"
    );
    // (transport source, next_hop per domain ("mx" = MX lookup), reasons' parts)
    let table: [(&str, [&str; 3], &[&str]); 5] = [
        (
            "a.example smtp:[mail.a.example]:25\n\
             * smtp:[default.example]:2525\n",
            [
                "[mail.a.example]:25",
                "[default.example]:2525",
                "[default.example]:2525",
            ],
            &[
                "* smtp:[default.example]:2525: ",
                "next_hop of b.example, c.example",
            ],
        ),
        (
            ".a.example smtp:[sub.a.example]\n\
             alice@b.example smtp:[alice.b.example]\n\
             c.example smtp:[mail.c.example]\n",
            ["mx", "mx", "[mail.c.example]:25"],
            &[
                ".a.example smtp:[sub.a.example]: ",
                "subdomain patterns are not carried over",
                "alice@b.example smtp:[alice.b.example]: ",
                "per-recipient routes are not supported",
            ],
        ),
        (
            "a.example smtp:a.example:2525\n\
             b.example smtp:b.example:25\n\
             c.example relay:c.example\n",
            ["mx", "mx", "mx"],
            &["MX records of a.example on port 2525", "delivery.mx_port"],
        ),
        (
            // A domain's own entry wins over `*`, even when it is not carried over.
            "a.example lmtp:unix:private/lmtp\n\
             * smtp:\n",
            ["mx", "mx", "mx"],
            &["\"lmtp\" transport", "next_hop of b.example, c.example"],
        ),
        (
            "* smtp:elsewhere.example\n",
            ["mx", "mx", "mx"],
            &["for a.example, \"elsewhere.example\" asks for the MX records"],
        ),
    ];
    for (transport, want_hops, want_reasons) in table {
        let (config, imported) = run(&main_cf, &[(TRANSPORT, transport)]);
        let got = next_hops(&config);
        let want: Vec<(String, String)> = ["a.example", "b.example", "c.example"]
            .iter()
            .zip(want_hops)
            .map(|(domain, hop)| ((*domain).to_owned(), hop.to_owned()))
            .collect();
        assert_eq!(got, want, "{transport}");
        let transport_reasons = reasons(&imported, "transport_maps").join("\n");
        for part in want_reasons {
            assert!(
                transport_reasons.contains(part),
                "{transport}: {part:?} not in\n{transport_reasons}"
            );
        }
        assert!(
            !transport_reasons.contains("not a relay domain"),
            "{transport}: {transport_reasons}"
        );
    }
}

#[test]
fn a_wildcard_route_is_not_relayhost() {
    let main_cf = format!(
        "relay_domains = a.example\n\
         transport_maps = hash:{TRANSPORT}\n\
         relayhost = [smarthost.example]:587\n"
    );
    let table = [
        ("* smtp:[default.example]\n", false),
        ("other.example smtp:[x.example]\n", true),
    ];
    for (transport, relayhost_reported) in table {
        let (_, imported) = run(&main_cf, &[(TRANSPORT, transport)]);
        let reported = reasons(&imported, "relayhost")
            .iter()
            .any(|reason| reason.contains("Postfix sent a.example"));
        assert_eq!(reported, relayhost_reported, "{transport}");
    }
}

#[test]
fn recipient_delimiter_is_a_behaviour_change_when_set() {
    let table = [
        ("recipient_delimiter = +\n", Some("alice+tag@")),
        ("recipient_delimiter = -+\n", Some("alice-tag@")),
        ("recipient_delimiter =\n", None),
        ("", None),
    ];
    for (setting, want) in table {
        let main_cf = format!("relay_domains = example.org\n{setting}");
        let (_, imported) = run(&main_cf, &[]);
        let got = reasons(&imported, "recipient_delimiter");
        match want {
            Some(example) => {
                assert_eq!(got.len(), 1, "{setting}: {got:?}");
                assert!(got[0].contains(example), "{setting}: {}", got[0]);
                assert!(got[0].contains("no subaddressing"), "{setting}: {}", got[0]);
            }
            None => assert!(got.is_empty(), "{setting}: {got:?}"),
        }
    }
}

#[test]
fn mydestination_domains_are_local_not_relayed() {
    // (main.cf, relay domains written, relay_domains reasons' parts)
    let table: [(&str, &[&str], &[&str]); 4] = [
        (
            "myhostname = mx.example.net\n\
             mydestination = $myhostname, localhost\n\
             relay_domains = $mydestination, Backup.example\n",
            &["backup.example"],
            &["mx.example.net, localhost also in mydestination"],
        ),
        (
            // mydestination not set: Postfix's default applies.
            "myhostname = mx.example.net\n\
             mydomain = example.net\n\
             relay_domains = backup.example, localhost.example.net, mx.example.net.\n",
            &["backup.example"],
            &["localhost.example.net, mx.example.net also in mydestination"],
        ),
        (
            "mydestination = localhost\nrelay_domains = backup.example\n",
            &["backup.example"],
            &[],
        ),
        (
            "myhostname = mx.example.net\n",
            &[],
            &[
                "not set in main.cf",
                "before that the default was $mydestination",
            ],
        ),
    ];
    for (main_cf, want_domains, want_reasons) in table {
        let (config, imported) = run(main_cf, &[]);
        let domains: Vec<&str> = config
            .relay_domains
            .iter()
            .map(|relay| relay.domain.as_str())
            .collect();
        assert_eq!(domains, want_domains, "{main_cf}");
        let got = reasons(&imported, "relay_domains");
        assert_eq!(got.len(), want_reasons.len().min(1), "{main_cf}: {got:?}");
        for part in want_reasons {
            assert!(
                got[0].contains(part),
                "{main_cf}: {part:?} not in {}",
                got[0]
            );
        }
    }
}

#[test]
fn postfix_defaults_for_size_and_lifetime() {
    const DAY: Duration = Duration::from_secs(24 * 60 * 60);
    // (extra main.cf, message size, lifetime, lifetime reported)
    let table = [
        ("", 10_240_000, 28 * DAY, true),
        (
            "message_size_limit = 52428800\n",
            52_428_800,
            28 * DAY,
            true,
        ),
        ("maximal_queue_lifetime = 5d\n", 10_240_000, 5 * DAY, false),
        ("maximal_queue_lifetime = 28\n", 10_240_000, 28 * DAY, false),
    ];
    for (setting, size, lifetime, reported) in table {
        let main_cf = format!("relay_domains = example.org\n{setting}");
        let (config, imported) = run(&main_cf, &[]);
        assert_eq!(config.smtp.message_size_limit, size, "{setting}");
        assert_eq!(config.queue.max_message_size, size, "{setting}");
        assert_eq!(
            config.relay_domains[0].delivery.lifetime, lifetime,
            "{setting}"
        );
        let got = reasons(&imported, "maximal_queue_lifetime");
        assert_eq!(!got.is_empty(), reported, "{setting}: {got:?}");
        if reported {
            assert!(got[0].contains("default 5d"), "{}", got[0]);
            assert!(got[0].contains("28d"), "{}", got[0]);
        }
        assert!(
            reasons(&imported, "message_size_limit").is_empty(),
            "{setting}"
        );
    }
    let (_, imported) = run("relay_domains = example.org\n", &[]);
    assert!(
        imported.toml.contains("Postfix default"),
        "{}",
        imported.toml
    );
    assert!(imported.toml.contains("message_size_limit = \"10240000B\""));
}

#[test]
fn parent_domain_matching_subdomains_is_reported() {
    let table = [
        ("", true),
        ("compatibility_level = 2\n", true),
        ("compatibility_level = 3.6\n", false),
        ("compatibility_level = 3\n", true),
        ("compatibility_level = 3.5\n", true),
        ("compatibility_level = 3.10\n", false),
        ("compatibility_level = nonsense\n", true),
        (
            "compatibility_level = 3.6\n\
             parent_domain_matches_subdomains = debug_peer_list, relay_domains\n",
            true,
        ),
        (
            "compatibility_level = 2\nparent_domain_matches_subdomains = mynetworks\n",
            false,
        ),
        ("parent_domain_matches_subdomains =\n", false),
    ];
    for (setting, want) in table {
        let main_cf = format!("relay_domains = example.org\n{setting}");
        let (_, imported) = run(&main_cf, &[]);
        let got = reasons(&imported, "parent_domain_matches_subdomains");
        assert_eq!(got.len(), usize::from(want), "{setting}: {got:?}");
        if want {
            assert!(
                got[0].contains("mxfleet relays only the exact domains listed"),
                "{}",
                got[0]
            );
        }
    }
    // Without relay domains there is nothing to say.
    let (_, imported) = run("myhostname = mx.example.net\n", &[]);
    assert!(reasons(&imported, "parent_domain_matches_subdomains").is_empty());
}

#[test]
fn a_malformed_expansion_is_reported_not_a_panic() {
    let (_, imported) = run("relay_domains = example.org\nmyhostname = ${nameé}\n", &[]);
    let got = reasons(&imported, "myhostname");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("${nameé}"), "{}", got[0]);
}
