//! `[delivery]` and the delivery keys of `[[relay_domains]]`: defaults, every key, the
//! Postfix words, inheritance into relay-domain policies, and each rule with its key path.

use std::net::{IpAddr, SocketAddr};

use mxfleet_delivery::client::{ClientTimeouts, TlsPolicy};
use mxfleet_delivery::lease::LeaseTiming;
use mxfleet_delivery::route::{NextHop, Route};
use mxfleet_delivery::{DeliveryConfig, DestinationPolicy};

use super::*;

/// A `[delivery]` table, then `[[relay_domains]]` tables, after the minimal config.
fn with_delivery(delivery: &str, relay_domains: &str) -> String {
    format!("{MINIMAL}\n[delivery]\n{delivery}\n{relay_domains}\n")
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// A catch-all relay domain table with extra delivery keys.
fn relay_domain(domain: &str, keys: &str) -> String {
    format!("[[relay_domains]]\ndomain = \"{domain}\"\ncatch_all = true\n{keys}\n")
}

#[test]
fn minimal_config_gets_the_delivery_defaults() {
    let config = accepted(MINIMAL);
    // DeliveryConfig has no PartialEq; its Debug form shows every field.
    assert_eq!(
        format!("{:?}", config.delivery),
        format!("{:?}", DeliveryConfig::new("mxfleet-node-1"))
    );
    assert!(config.dns_servers.is_empty());
    assert_eq!(config.mx_port, 25);
}

#[test]
fn delivery_defaults_are_the_documented_values() {
    let delivery = accepted(MINIMAL).delivery;
    assert_eq!(delivery.hostname, "mxfleet-node-1");
    assert_eq!(delivery.reporting_mta, "mxfleet-node-1");
    assert_eq!(delivery.client.helo_name, "mxfleet-node-1");
    assert_eq!(
        delivery.lease,
        LeaseTiming {
            lease: secs(30),
            clock_drift_bound: secs(2),
            dot_margin: secs(2),
            contact_timeout: secs(5),
        }
    );
    assert_eq!(
        (delivery.backoff.min, delivery.backoff.max),
        (secs(60), secs(600))
    );
    assert_eq!(delivery.queue_run_delay, secs(60));
    assert_eq!(delivery.probe_interval, secs(10));
    assert_eq!(delivery.node_dead_after, secs(5));
    assert_eq!(delivery.dsn_max_quoted_body, 50_000);
    assert_eq!(delivery.client.bind_address, None);
    assert_eq!(delivery.client.tls, TlsPolicy::Opportunistic);
    let timeouts = delivery.client.timeouts;
    assert_eq!(
        [
            timeouts.connect,
            timeouts.greeting,
            timeouts.helo,
            timeouts.mail,
            timeouts.rcpt,
            timeouts.data_initiation,
            timeouts.data_block,
            timeouts.data_termination,
        ],
        [30, 300, 300, 300, 300, 120, 180, 600].map(secs)
    );
    let policy = &delivery.default_policy;
    assert_eq!(policy.route, Route::new(NextHop::Mx));
    assert_eq!(policy.tls, TlsPolicy::Opportunistic);
    assert_eq!(policy.max_connections, 10);
    assert_eq!(policy.max_messages_per_second, None);
    assert_eq!(policy.lifetime, secs(28 * 86_400));
    assert_eq!(policy.delay_warning, Some(secs(4 * 3600)));
    assert!(delivery.destinations.is_empty());
}

#[test]
fn helo_name_defaults_to_the_smtp_hostname_and_reporting_mta_to_the_helo_name() {
    let config = accepted(&format!(
        "{MINIMAL}\n[smtp]\nhostname = \"MX1.Example.NET\"\n"
    ));
    assert_eq!(config.delivery.hostname, "mx1.example.net");
    assert_eq!(config.delivery.client.helo_name, "mx1.example.net");
    assert_eq!(config.delivery.reporting_mta, "mx1.example.net");

    let config = accepted(&with_delivery("smtp_helo_name = \"out1.example.net\"", ""));
    assert_eq!(config.delivery.hostname, "out1.example.net");
    assert_eq!(config.delivery.client.helo_name, "out1.example.net");
    assert_eq!(config.delivery.reporting_mta, "out1.example.net");
}

#[test]
fn every_delivery_key_is_parsed() {
    let config = accepted(&with_delivery(
        r#"
lease = "60s"
clock_drift_bound = "1s"
dot_margin = "3s"
contact_timeout = "10s"
minimal_backoff_time = "30s"
maximal_backoff_time = "1h"
queue_run_delay = "20s"
probe_interval = "5s"
node_dead_after = "3s"
smtp_bind_address = "2001:db8::25"
smtp_helo_name = "out1.Example.net."
reporting_mta = "mxfleet.example.net"
smtp_connect_timeout = "10s"
smtp_helo_timeout = "1m"
smtp_mail_timeout = "2m"
smtp_rcpt_timeout = "3m"
smtp_data_init_timeout = "4m"
smtp_data_xfer_timeout = "5m"
smtp_data_done_timeout = "6m"
bounce_size_limit = "100KB"
relayhost = "[smarthost.example.net]:587"
dns_servers = ["192.0.2.53:5353", "[2001:db8::53]:53", "192.0.2.54"]
mx_port = 2525
default_destination_concurrency_limit = 4
default_destination_rate = 20
maximal_queue_lifetime = "5d"
delay_warning_time = "1h"
smtp_tls_security_level = "encrypt"
"#,
        "",
    ));
    let delivery = &config.delivery;
    assert_eq!(delivery.hostname, "out1.example.net");
    assert_eq!(delivery.reporting_mta, "mxfleet.example.net");
    assert_eq!(
        delivery.lease,
        LeaseTiming {
            lease: secs(60),
            clock_drift_bound: secs(1),
            dot_margin: secs(3),
            contact_timeout: secs(10),
        }
    );
    assert_eq!(
        (delivery.backoff.min, delivery.backoff.max),
        (secs(30), secs(3600))
    );
    assert_eq!(delivery.queue_run_delay, secs(20));
    assert_eq!(delivery.probe_interval, secs(5));
    assert_eq!(delivery.node_dead_after, secs(3));
    assert_eq!(
        delivery.client.bind_address,
        Some("2001:db8::25".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        delivery.client.timeouts,
        ClientTimeouts {
            connect: secs(10),
            greeting: secs(60),
            helo: secs(60),
            mail: secs(120),
            rcpt: secs(180),
            data_initiation: secs(240),
            data_block: secs(300),
            data_termination: secs(360),
            ..ClientTimeouts::default()
        }
    );
    assert_eq!(delivery.dsn_max_quoted_body, 100_000);
    assert_eq!(
        delivery.default_policy.route,
        Route::new(NextHop::parse("[smarthost.example.net]:587").unwrap())
    );
    assert_eq!(delivery.default_policy.tls, TlsPolicy::Required);
    assert_eq!(delivery.client.tls, TlsPolicy::Required);
    assert_eq!(delivery.default_policy.max_connections, 4);
    assert_eq!(delivery.default_policy.max_messages_per_second, Some(20));
    assert_eq!(delivery.default_policy.lifetime, secs(5 * 86_400));
    assert_eq!(delivery.default_policy.delay_warning, Some(secs(3600)));
    let servers: Vec<SocketAddr> = ["192.0.2.53:5353", "[2001:db8::53]:53", "192.0.2.54:53"]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
    assert_eq!(config.dns_servers, servers);
    assert_eq!(config.mx_port, 2525);
}

#[test]
fn postfix_tls_security_levels() {
    let cases = [
        ("none", TlsPolicy::Disabled),
        ("may", TlsPolicy::Opportunistic),
        ("encrypt", TlsPolicy::Required),
        (
            "verify",
            TlsPolicy::Verify {
                extra_roots_pem: None,
            },
        ),
        (
            "secure",
            TlsPolicy::Verify {
                extra_roots_pem: None,
            },
        ),
    ];
    for (word, policy) in cases {
        let config = accepted(&with_delivery(
            &format!("smtp_tls_security_level = \"{word}\""),
            &relay_domain(
                "example.org",
                &format!("smtp_tls_security_level = \"{word}\""),
            ),
        ));
        assert_eq!(config.delivery.default_policy.tls, policy, "{word}");
        assert_eq!(config.relay_domains[0].delivery.tls, policy, "{word}");
    }

    let errors = rejected(&with_delivery(
        "smtp_tls_security_level = \"dane\"",
        &relay_domain("example.org", "smtp_tls_security_level = \"Encrypt\""),
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "delivery.smtp_tls_security_level",
            "relay_domains[0].smtp_tls_security_level"
        ],
        "{errors}"
    );
    assert!(
        message_for(&errors, "delivery.smtp_tls_security_level").contains("does not implement")
    );
    assert!(
        message_for(&errors, "relay_domains[0].smtp_tls_security_level")
            .contains("\"none\", \"may\", \"encrypt\", \"verify\" or \"secure\"")
    );
}

#[test]
fn bad_delivery_values_are_all_reported_with_their_key_paths() {
    let errors = rejected(&with_delivery(
        r#"
lease = "0s"
minimal_backoff_time = "soon"
queue_run_delay = "1 fortnight"
smtp_bind_address = "192.0.2.25:25"
smtp_helo_name = "out_1.example.net"
reporting_mta = "10.0.0.1"
smtp_data_done_timeout = "0"
bounce_size_limit = "lots"
dns_servers = ["192.0.2.53:53", "ns1.example.net", "192.0.2.54:0"]
mx_port = 0
default_destination_concurrency_limit = 0
maximal_queue_lifetime = "forever"
delay_warning_time = "off"
"#,
        "",
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "delivery.lease",
            "delivery.minimal_backoff_time",
            "delivery.queue_run_delay",
            "delivery.smtp_bind_address",
            "delivery.smtp_helo_name",
            "delivery.reporting_mta",
            "delivery.smtp_data_done_timeout",
            "delivery.bounce_size_limit",
            "delivery.dns_servers[1]",
            "delivery.dns_servers[2]",
            "delivery.mx_port",
            "delivery.default_destination_concurrency_limit",
            "delivery.maximal_queue_lifetime",
            "delivery.delay_warning_time",
        ],
        "{errors}"
    );
    assert!(message_for(&errors, "delivery.lease").contains("greater than 0"));
    assert!(message_for(&errors, "delivery.smtp_bind_address").contains("no port"));
    assert!(message_for(&errors, "delivery.reporting_mta").contains("all-digit"));
    assert!(message_for(&errors, "delivery.dns_servers[1]").contains("IP:port"));
    assert!(message_for(&errors, "delivery.delay_warning_time").contains(r#""0" to send no"#));
}

#[test]
fn unknown_delivery_key_is_reported_with_its_path() {
    let errors = rejected(&with_delivery("smtp_tls_cafile = \"/ca.pem\"", ""));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["delivery.smtp_tls_cafile"]
    );
    let errors = rejected(&with_delivery(
        "",
        &relay_domain("example.org", "nexthop = \"mx\""),
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["relay_domains[0].nexthop"]
    );
}

#[test]
fn lease_timings_that_break_the_fencing_argument_are_refused() {
    let errors = rejected(&with_delivery(
        "lease = \"8s\"\nclock_drift_bound = \"2s\"\ndot_margin = \"2s\"",
        "",
    ));
    assert_eq!(errors.keys().collect::<Vec<_>>(), ["delivery.lease"]);
    assert!(
        message_for(&errors, "delivery.lease").contains("must exceed twice"),
        "{errors}"
    );

    let errors = rejected(&with_delivery("contact_timeout = \"26s\"", ""));
    assert!(
        message_for(&errors, "delivery.lease").contains("contact_timeout"),
        "{errors}"
    );
}

#[test]
fn maximal_backoff_must_not_be_below_minimal() {
    let errors = rejected(&with_delivery("minimal_backoff_time = \"20m\"", ""));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["delivery.maximal_backoff_time"]
    );
    assert!(
        message_for(&errors, "delivery.maximal_backoff_time")
            .contains("at least minimal_backoff_time, now 20m; got 10m (the default)"),
        "{errors}"
    );
    let config = accepted(&with_delivery(
        "minimal_backoff_time = \"5m\"\nmaximal_backoff_time = \"5m\"",
        "",
    ));
    assert_eq!(config.delivery.backoff.max, secs(300));
}

#[test]
fn delay_warning_time_zero_sends_no_warnings() {
    for zero in ["0", "0s", "0h"] {
        let config = accepted(&with_delivery(
            &format!("delay_warning_time = \"{zero}\""),
            "",
        ));
        assert_eq!(config.delivery.default_policy.delay_warning, None, "{zero}");
    }
}

#[test]
fn relayhost_and_next_hop_parse_errors_name_their_keys() {
    let errors = rejected(&with_delivery(
        "relayhost = \"smarthost.example.net\"",
        &[
            relay_domain("example.org", "next_hop = \"[mail.example.org\""),
            relay_domain("example.net", "next_hop = \"mx, [mail.example.net]\""),
            relay_domain(
                "example.com",
                "next_hop = \"[mail.example.com]\"\nfallback_relay = \"[backup.example.com]:0\"",
            ),
            relay_domain("example.edu", "next_hop = \"\""),
        ]
        .concat(),
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "delivery.relayhost",
            "relay_domains[0].next_hop",
            "relay_domains[1].next_hop",
            "relay_domains[2].fallback_relay",
            "relay_domains[3].next_hop",
        ],
        "{errors}"
    );
    assert!(
        message_for(&errors, "delivery.relayhost").contains(
            r#"needs brackets: write [host] or [host]:port, e.g. "[smarthost.example.net]:25""#
        ),
        "{errors}"
    );
    assert!(message_for(&errors, "relay_domains[0].next_hop").contains("no closing bracket"));
    assert!(message_for(&errors, "relay_domains[1].next_hop").contains("stands alone"));
    assert!(message_for(&errors, "relay_domains[2].fallback_relay").contains("port"));
    assert!(message_for(&errors, "relay_domains[3].next_hop").contains("empty next hop"));
}

#[test]
fn fallback_relay_must_differ_from_next_hop() {
    let errors = rejected(&with_delivery(
        "",
        &relay_domain(
            "example.org",
            "next_hop = \"[mail.example.org]\"\nfallback_relay = \"[MAIL.example.org]:25\"",
        ),
    ));
    assert!(
        message_for(&errors, "relay_domains[0].fallback_relay").contains("same as next_hop"),
        "{errors}"
    );
}

#[test]
fn relay_domain_routes_are_parsed_and_relayhost_is_not_inherited() {
    let config = accepted(&with_delivery(
        "relayhost = \"[smarthost.example.net]\"",
        &[
            relay_domain("example.org", ""),
            relay_domain(
                "Example.NET",
                "next_hop = \"[mail.example.net]:2525, [192.0.2.7]\"\nfallback_relay = \"mx\"",
            ),
        ]
        .concat(),
    ));
    assert_eq!(
        config.relay_domains[0].delivery.route,
        Route::new(NextHop::Mx)
    );
    assert_eq!(
        config.relay_domains[1].delivery.route,
        Route {
            primary: NextHop::parse("[mail.example.net]:2525 [192.0.2.7]:25").unwrap(),
            fallback: Some(NextHop::Mx),
        }
    );
    assert_eq!(
        config.delivery.default_policy.route.primary.to_string(),
        "[smarthost.example.net]:25"
    );
    // One policy per relay domain, keyed by the normalized domain.
    let destinations: Vec<&str> = config
        .delivery
        .destinations
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(destinations, ["example.net", "example.org"]);
    assert_eq!(
        config.delivery.policy("example.net").route,
        config.relay_domains[1].delivery.route
    );
}

#[test]
fn relay_domains_inherit_each_unset_key_from_the_delivery_defaults() {
    let config = accepted(&with_delivery(
        r#"
default_destination_concurrency_limit = 3
default_destination_rate = 5
maximal_queue_lifetime = "3d"
delay_warning_time = "2h"
smtp_tls_security_level = "none"
"#,
        &[
            relay_domain("example.org", ""),
            relay_domain(
                "example.net",
                r#"
destination_concurrency_limit = 20
destination_rate = 0
maximal_queue_lifetime = "10d"
delay_warning_time = "0"
smtp_tls_security_level = "encrypt"
"#,
            ),
        ]
        .concat(),
    ));
    let inherited = DestinationPolicy {
        route: Route::new(NextHop::Mx),
        tls: TlsPolicy::Disabled,
        max_connections: 3,
        max_messages_per_second: Some(5),
        lifetime: secs(3 * 86_400),
        delay_warning: Some(secs(7200)),
    };
    let own = DestinationPolicy {
        route: Route::new(NextHop::Mx),
        tls: TlsPolicy::Required,
        max_connections: 20,
        max_messages_per_second: None,
        lifetime: secs(10 * 86_400),
        delay_warning: None,
    };
    let [org, net] = [&config.relay_domains[0], &config.relay_domains[1]];
    assert_eq!(
        format!("{:?}", org.delivery),
        format!("{inherited:?}"),
        "example.org writes nothing and inherits everything"
    );
    assert_eq!(format!("{:?}", net.delivery), format!("{own:?}"));
    assert_eq!(
        format!("{:?}", config.delivery.default_policy),
        format!("{inherited:?}")
    );
    assert_eq!(
        format!("{:?}", config.delivery.policy("example.net")),
        format!("{own:?}")
    );
}

#[test]
fn bad_relay_domain_delivery_keys_are_reported_with_the_recipient_errors() {
    let errors = rejected(&with_delivery(
        "default_destination_concurrency_limit = 0",
        r#"
[[relay_domains]]
domain = "example.org"
destination_concurrency_limit = 0
maximal_queue_lifetime = "0s"
delay_warning_time = "later"

[[relay_domains]]
domain = "example.net"
catch_all = true
"#,
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "delivery.default_destination_concurrency_limit",
            "relay_domains[0]",
            "relay_domains[0].destination_concurrency_limit",
            "relay_domains[0].maximal_queue_lifetime",
            "relay_domains[0].delay_warning_time",
        ],
        "{errors}"
    );
}

#[test]
fn tls_ca_files_are_read_as_pem_and_inherited() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca = dir.path().join("fleet-roots.pem");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::fs::write(&ca, pem).expect("write CA file");
    let not_pem = dir.path().join("not-pem.txt");
    std::fs::write(&not_pem, "hello").expect("write file");

    let text = with_delivery(
        &format!("smtp_tls_CAfile = \"{}\"", ca.display()),
        &relay_domain("example.org", "smtp_tls_security_level = \"verify\""),
    );
    let config = parse(&text, ORIGIN).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(
        config.relay_domains[0].delivery.tls,
        TlsPolicy::Verify {
            extra_roots_pem: Some(pem.as_bytes().to_vec())
        }
    );
    // Read, but not used where the level does not verify.
    assert_eq!(config.delivery.default_policy.tls, TlsPolicy::Opportunistic);

    let missing = dir.path().join("missing.pem");
    let text = with_delivery(
        &format!("smtp_tls_CAfile = \"{}\"", missing.display()),
        &relay_domain(
            "example.org",
            &format!("smtp_tls_CAfile = \"{}\"", not_pem.display()),
        ),
    );
    let errors = parse(&text, ORIGIN).expect_err("bad CA files");
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "delivery.smtp_tls_CAfile",
            "relay_domains[0].smtp_tls_CAfile"
        ],
        "{errors}"
    );
    assert!(message_for(&errors, "delivery.smtp_tls_CAfile").contains("file not found"));
    assert!(
        message_for(&errors, "relay_domains[0].smtp_tls_CAfile").contains("no PEM certificate")
    );

    // Without file checks, nothing is read.
    let config = accepted(&with_delivery(
        "smtp_tls_CAfile = \"/etc/mxfleet/tls/roots.pem\"\nsmtp_tls_security_level = \"verify\"",
        "",
    ));
    assert_eq!(
        config.delivery.default_policy.tls,
        TlsPolicy::Verify {
            extra_roots_pem: None
        }
    );
}
