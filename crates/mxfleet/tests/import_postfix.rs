//! `mxfleet import-postfix` end to end: the built binary imports the Postfix backup-MX
//! configuration in `tests/fixtures/postfix/` (main.cf, and the text sources of its
//! relay_recipients and transport tables), and the result is checked by the config
//! loader and by `mxfleet config check`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::mxfleet;
use mxfleet_node::config::{FileChecks, NodeConfig, RecipientSource, parse_with};
use mxfleet_smtp::checks::Check;
use mxfleet_testkit::tls::TestCa;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/postfix")
        .join(name)
}

fn import(args: &[&Path]) -> Output {
    mxfleet()
        .arg("import-postfix")
        .args(args)
        .output()
        .expect("mxfleet runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The imported text, parsed by the node's own loader without looking at files.
fn loaded(text: &str) -> NodeConfig {
    parse_with(text, "<imported>", FileChecks::Skip)
        .unwrap_or_else(|errors| panic!("the import does not load:\n{errors}\n{text}"))
}

fn import_fixture() -> Output {
    let output = mxfleet()
        .arg("import-postfix")
        .arg(fixture("main.cf"))
        .arg(fixture("relay_recipients"))
        .arg("--transport")
        .arg(fixture("transport"))
        .output()
        .expect("mxfleet runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr:\n{}",
        stderr(&output)
    );
    output
}

#[test]
fn the_fixture_carries_over_domains_recipients_routes_and_limits() {
    let output = import_fixture();
    let config = loaded(&stdout(&output));

    let domains: Vec<&str> = config
        .relay_domains
        .iter()
        .map(|relay| relay.domain.as_str())
        .collect();
    assert_eq!(domains, ["example.org", "example.com", "lists.example.org"]);
    let [org, com, lists] = &config.relay_domains[..] else {
        unreachable!()
    };
    // Grouped by domain, lower-cased like postmap's keys; the example.edu entry is
    // not a relay domain.
    assert_eq!(
        org.recipients,
        RecipientSource::Listed(
            ["alice", "bob", "carol", "postmaster"]
                .map(str::to_owned)
                .into()
        )
    );
    assert_eq!(
        com.recipients,
        RecipientSource::Listed(["info", "sales"].map(str::to_owned).into())
    );
    assert_eq!(lists.recipients, RecipientSource::CatchAll);

    let next_hops: Vec<String> = config
        .relay_domains
        .iter()
        .map(|relay| relay.delivery.route.primary.to_string())
        .collect();
    assert_eq!(
        next_hops,
        [
            "[mail.example.org]:25",
            "[mx-primary.example.com]:2525",
            "[10.0.0.1]:25"
        ]
    );
    for relay in &config.relay_domains {
        let fallback = relay
            .delivery
            .route
            .fallback
            .as_ref()
            .map(ToString::to_string);
        assert_eq!(fallback.as_deref(), Some("[fallback.example.net]:25"));
        // maximal_queue_lifetime = 28d, delay_warning_time = 4 (hours, its unit).
        assert_eq!(relay.delivery.lifetime, 28 * DAY, "{}", relay.domain);
        assert_eq!(
            relay.delivery.delay_warning,
            Some(Duration::from_secs(4 * 3600))
        );
    }

    // Times in seconds by default: queue_run_delay = 300, minimal_backoff_time = 300s.
    assert_eq!(config.delivery.queue_run_delay, Duration::from_secs(300));
    assert_eq!(config.delivery.backoff.min, Duration::from_secs(300));
    assert_eq!(config.delivery.backoff.max, Duration::from_secs(3600));
    assert_eq!(config.delivery.hostname, "mx2.example.net");
    assert_eq!(
        config.delivery.default_policy.route.primary.to_string(),
        "[smarthost.example.net]:587"
    );
    assert_eq!(config.delivery.default_policy.max_connections, 5);
    assert_eq!(
        config.delivery.client.bind_address,
        Some("192.0.2.20".parse().unwrap())
    );

    assert_eq!(config.smtp.message_size_limit, 52_428_800);
    assert_eq!(config.queue.max_message_size, 52_428_800);
    assert_eq!(config.smtp.recipient_limit, 500);
    // smtpd_timeout = ${stress?{10}:{300}}s: not under stress.
    assert_eq!(config.smtp.timeout, Duration::from_secs(300));
    assert_eq!(config.smtp.hard_error_limit, 20);
    assert_eq!(config.smtp.client_connection_count_limit, 20);
    assert_eq!(config.smtp.hostname, "mx2.example.net");
    let certificate = &config.smtp.tls_certificates[0];
    assert_eq!(
        certificate.cert,
        Path::new("/etc/ssl/certs/mx2.example.net.pem")
    );
    assert_eq!(
        certificate.key,
        Path::new("/etc/ssl/private/mx2.example.net.key")
    );
    assert_eq!(certificate.names, ["mx2.example.net"]);

    // The restrictions as spam checks, for every domain.
    let checks = &config.spam.domain_checks["example.org"];
    for name in [
        "dnsbl",
        "rhsbl_sender",
        "unknown_sender_domain",
        "greylisting",
    ] {
        let check = Check::from_name(name).unwrap();
        assert!(checks.contains(&check), "{name} missing from {checks:?}");
    }
    let sites: Vec<String> = config
        .spam
        .dnsbl
        .sites
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(sites, ["zen.spamhaus.org=127.0.0.[2..11]"]);
    assert_eq!(config.spam.dnsbl.threshold, 1);

    // A one-node fleet that bootstraps itself, with the TODOs in the text.
    assert_eq!(config.node.id, 1);
    assert_eq!(config.cluster.initial_members.len(), 1);
    assert!(stdout(&output).contains("# TODO"));
}

#[test]
fn what_is_not_carried_over_is_listed_with_its_parameter_on_stderr_and_in_the_file() {
    let output = import_fixture();
    let (text, errors) = (stdout(&output), stderr(&output));
    let expected = [
        ("mynetworks", "never relays for client networks"),
        ("smtpd_sasl_auth_enable", "SASL"),
        ("bounce_queue_lifetime", "maximal_queue_lifetime"),
        ("smtpd_recipient_restrictions", "reject_non_fqdn_sender"),
        ("relay_recipient_maps", "old@example.edu"),
        ("transport_maps", "example.edu"),
        (
            "transport_maps",
            ".example.org smtp:[mail.example.org]:25: ",
        ),
        ("transport_maps", "subdomain patterns are not carried over"),
        ("transport_maps", "per-recipient routes are not supported"),
        ("recipient_delimiter", "no subaddressing"),
        ("smtpd_tls_session_cache_database", "TLS"),
    ];
    for (parameter, why) in expected {
        assert!(
            errors.lines().any(|line| {
                line.trim_start().starts_with(&format!("{parameter}: ")) && line.contains(why)
            }),
            "{parameter}: {why:?} not listed on stderr:\n{errors}"
        );
        assert!(
            text.contains(&format!("#   {parameter}: ")),
            "{parameter} not in the file's header"
        );
    }
    // An option group is part of its check_policy_service, not a restriction.
    assert!(!errors.contains("timeout=10s"), "{errors}");
    // compatibility_level = 3.6: Postfix matched relay domains exactly, as mxfleet.
    assert!(
        !errors.contains("parent_domain_matches_subdomains"),
        "{errors}"
    );
    // Carried parameters are not listed.
    for carried in [
        "relay_domains",
        "myhostname",
        "message_size_limit",
        "maximal_queue_lifetime",
        "smtpd_tls_cert_file",
    ] {
        assert!(
            !errors
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{carried}: "))),
            "{carried} listed as not carried:\n{errors}"
        );
    }
}

#[test]
fn the_written_file_passes_config_check_with_the_tls_files_in_place() {
    // The fixture names Postfix's paths under /etc/ssl; put real PEM files in a
    // temporary directory and point a copy of main.cf at them.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("import test CA");
    let leaf = ca.issue("mx2.example.net");
    let tls = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let main_cf = std::fs::read_to_string(fixture("main.cf"))
        .unwrap()
        .replace(
            "/etc/ssl/certs/mx2.example.net.pem",
            &tls("mx.crt", &leaf.cert_pem),
        )
        .replace(
            "/etc/ssl/private/mx2.example.net.key",
            &tls("mx.key", &leaf.key_pem),
        )
        .replace(
            "/etc/ssl/certs/primary-ca.pem",
            &tls("ca.crt", &ca.ca_pem()),
        );
    let main_cf_path = dir.path().join("main.cf");
    std::fs::write(&main_cf_path, main_cf).unwrap();
    let out = dir.path().join("node.toml");
    let recipients_dir = dir.path().join("recipients");

    let output = mxfleet()
        .arg("import-postfix")
        .arg(&main_cf_path)
        .arg(fixture("relay_recipients"))
        .arg("--transport")
        .arg(fixture("transport"))
        .arg("--recipients-dir")
        .arg(&recipients_dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).is_empty(), "--out writes the file only");

    // Each listed domain's recipients went to a file the config names.
    let org = std::fs::read_to_string(recipients_dir.join("example.org")).unwrap();
    assert!(org.lines().any(|line| line == "alice@example.org"), "{org}");
    assert!(!recipients_dir.join("lists.example.org").exists());

    let check = mxfleet()
        .args(["config", "check"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "config check:\n{}\n{}",
        stderr(&check),
        std::fs::read_to_string(&out).unwrap()
    );
    let config = mxfleet_node::config::load(&out).unwrap();
    assert_eq!(
        config.relay_domains[0].recipients,
        RecipientSource::File(recipients_dir.join("example.org"))
    );
}

#[test]
fn without_the_recipient_source_every_domain_is_catch_all_and_reported() {
    // main.cf names /etc/postfix/relay_recipients, which is not on this machine.
    let output = import(&[&fixture("main.cf")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let config = loaded(&stdout(&output));
    assert!(
        config
            .relay_domains
            .iter()
            .all(|relay| relay.recipients == RecipientSource::CatchAll)
    );
    let errors = stderr(&output);
    assert!(
        errors.contains("relay_recipient_maps: hash:/etc/postfix/relay_recipients"),
        "{errors}"
    );
    assert!(errors.contains("the recipients of example.org are unknown"));
    // Without transport entries, Postfix used relayhost for the relay domains.
    assert!(
        errors.contains("relayhost: Postfix sent example.org"),
        "{errors}"
    );
}

#[test]
fn an_unreadable_input_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.cf");
    let output = import(&[&missing]);
    assert_eq!(output.status.code(), Some(64));
    assert!(stderr(&output).contains("nowhere.cf"));

    let output = import(&[&fixture("main.cf"), &dir.path().join("no_recipients")]);
    assert_eq!(output.status.code(), Some(64));
    assert!(stderr(&output).contains("no_recipients"));
}

#[test]
fn a_value_mxfleet_refuses_is_dropped_and_reported_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let main_cf = dir.path().join("main.cf");
    std::fs::write(
        &main_cf,
        "myhostname = mx.example.net\n\
         relay_domains = example.org\n\
         minimal_backoff_time = 2h\n\
         maximal_backoff_time = 1h\n\
         smtp_bind_address = not-an-address\n\
         message_size_limit = 0\n",
    )
    .unwrap();
    let output = import(&[&main_cf]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let config = loaded(&stdout(&output));
    assert_eq!(
        config.relay_domains[0].recipients,
        RecipientSource::CatchAll
    );
    assert_eq!(config.delivery.client.bind_address, None);
    let errors = stderr(&output);
    for parameter in [
        "maximal_backoff_time",
        "smtp_bind_address",
        "message_size_limit",
    ] {
        assert!(
            errors.contains(&format!("  {parameter}: ")),
            "{parameter}:\n{errors}"
        );
    }
}
