//! `[smtp]`: defaults, each rule with its key path, and the size limit shared with
//! `[queue]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;

/// An `[smtp]` table over the minimal config (whose peer port is 127.0.0.1:7401).
fn with_smtp(smtp: &str) -> String {
    format!("{MINIMAL}\n[smtp]\n{smtp}\n")
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

#[test]
fn defaults_are_the_documented_values() {
    let smtp = SmtpConfig::default_for("mx1.example.net");
    assert_eq!(smtp.listen, addr("0.0.0.0:25"));
    assert_eq!(smtp.hostname, "mx1.example.net");
    assert_eq!(smtp.message_size_limit, 64_000_000);
    assert_eq!(
        smtp.message_size_limit,
        QueueLimits::default().max_message_size
    );
    assert_eq!(smtp.recipient_limit, 1000);
    assert_eq!(smtp.timeout, Duration::from_secs(300));
    assert_eq!(smtp.data_timeout, Duration::from_secs(180));
    assert_eq!(smtp.data_total_timeout, Duration::from_secs(600));
    assert_eq!(smtp.hard_error_limit, 20);
    assert_eq!(smtp.max_connections, 500);
    assert_eq!(smtp.client_connection_count_limit, 50);
    assert_eq!(smtp.bare_line_endings, BareLineEndingsSetting::Reject);
    assert!(smtp.tls_certificates.is_empty());
}

#[test]
fn empty_table_is_the_defaults_with_the_node_name() {
    let config = accepted(&with_smtp("").replace("[node]", "[node]\nname = \"MX2.example.net\""));
    assert_eq!(config.node.name, "MX2.example.net");
    // Announced in lower case, like every DNS name the config normalizes.
    assert_eq!(config.smtp, SmtpConfig::default_for("mx2.example.net"));
}

#[test]
fn written_values_replace_the_defaults() {
    let config = accepted(&with_smtp(
        r#"listen = "[::]:2525"
hostname = "MX.Example.net."
message_size_limit = "10MiB"
recipient_limit = 100000
timeout = "1m"
data_timeout = "30s"
data_total_timeout = "30s"
hard_error_limit = 1
max_connections = 10
client_connection_count_limit = 10
bare_line_endings = "normalize"
tls_certificates = [
  { cert = "/etc/mxfleet/tls/rsa.crt", key = "/etc/mxfleet/tls/rsa.key", names = ["MX.example.net", "*.Example.org"] },
  { cert = "/etc/mxfleet/tls/other.crt", key = "/etc/mxfleet/tls/other.key", names = ["mx.example.com."] },
]
etrn_networks = ["192.0.2.0/24"]"#,
    ));
    assert_eq!(
        config.smtp,
        SmtpConfig {
            listen: addr("[::]:2525"),
            hostname: "mx.example.net".to_owned(),
            message_size_limit: 10 * 1024 * 1024,
            recipient_limit: 100_000,
            timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(30),
            data_total_timeout: Duration::from_secs(30),
            hard_error_limit: 1,
            max_connections: 10,
            client_connection_count_limit: 10,
            bare_line_endings: BareLineEndingsSetting::Normalize,
            tls_certificates: vec![
                TlsCertificateConfig {
                    cert: PathBuf::from("/etc/mxfleet/tls/rsa.crt"),
                    key: PathBuf::from("/etc/mxfleet/tls/rsa.key"),
                    names: vec!["mx.example.net".to_owned(), "*.example.org".to_owned()],
                },
                TlsCertificateConfig {
                    cert: PathBuf::from("/etc/mxfleet/tls/other.crt"),
                    key: PathBuf::from("/etc/mxfleet/tls/other.key"),
                    names: vec!["mx.example.com".to_owned()],
                },
            ],
            etrn_networks: vec!["192.0.2.0/24".parse().unwrap()],
        }
    );
    // The queue stores what SMTP accepts.
    assert_eq!(config.queue.max_message_size, 10 * 1024 * 1024);
}

#[test]
fn each_rule_is_reported_with_its_key_path() {
    let cert = |names: &str| {
        format!(
            r#"{{ cert = "/etc/mxfleet/tls/mx.crt", key = "/etc/mxfleet/tls/mx.key", names = {names} }}"#
        )
    };
    let cases = [
        // (smtp table, rejected key, words in the message)
        (
            "listen = \"mx.example.net:25\"".to_owned(),
            "smtp.listen",
            "not an IP:port",
        ),
        ("listen = \"0.0.0.0:0\"".to_owned(), "smtp.listen", "port 0"),
        (
            "listen = \"127.0.0.1:7401\"".to_owned(),
            "smtp.listen",
            "overlaps peer.listen = \"127.0.0.1:7401\"",
        ),
        (
            "listen = \"0.0.0.0:7401\"".to_owned(),
            "smtp.listen",
            "overlaps peer.listen",
        ),
        ("hostname = \"\"".to_owned(), "smtp.hostname", "is empty"),
        (
            "hostname = \"mx_1.example.net\"".to_owned(),
            "smtp.hostname",
            "may only contain",
        ),
        (
            "message_size_limit = \"64QB\"".to_owned(),
            "smtp.message_size_limit",
            "not a size",
        ),
        (
            "message_size_limit = \"3GB\"".to_owned(),
            "smtp.message_size_limit",
            "between 1KB",
        ),
        (
            "recipient_limit = 0".to_owned(),
            "smtp.recipient_limit",
            "from 1 to 100000, got 0",
        ),
        (
            "recipient_limit = 100001".to_owned(),
            "smtp.recipient_limit",
            "from 1 to 100000",
        ),
        (
            "timeout = \"0s\"".to_owned(),
            "smtp.timeout",
            "greater than 0",
        ),
        (
            "data_timeout = \"five minutes\"".to_owned(),
            "smtp.data_timeout",
            "not a duration",
        ),
        (
            "data_total_timeout = \"1m\"".to_owned(),
            "smtp.data_total_timeout",
            "at least data_timeout, now 3m (the default)",
        ),
        (
            "hard_error_limit = 0".to_owned(),
            "smtp.hard_error_limit",
            "at least 1",
        ),
        (
            "max_connections = 0".to_owned(),
            "smtp.max_connections",
            "at least 1",
        ),
        (
            "client_connection_count_limit = 0".to_owned(),
            "smtp.client_connection_count_limit",
            "at least 1",
        ),
        (
            "max_connections = 10\nclient_connection_count_limit = 11".to_owned(),
            "smtp.client_connection_count_limit",
            "at most max_connections = 10, got 11",
        ),
        (
            "client_connection_count_limit = 501".to_owned(),
            "smtp.client_connection_count_limit",
            "at most max_connections = 500",
        ),
        (
            "tls_certificates = [{ key = \"/k\", names = [\"mx.example.net\"] }]".to_owned(),
            "smtp.tls_certificates[0].cert",
            "is required",
        ),
        (
            "tls_certificates = [{ cert = \"/c\", names = [\"mx.example.net\"] }]".to_owned(),
            "smtp.tls_certificates[0].key",
            "is required",
        ),
        (
            "tls_certificates = [{ cert = \"\", key = \"/k\", names = [\"mx.example.net\"] }]"
                .to_owned(),
            "smtp.tls_certificates[0].cert",
            "must not be empty",
        ),
        (
            "tls_certificates = [{ cert = \"/c\", key = \"/k\" }]".to_owned(),
            "smtp.tls_certificates[0].names",
            "is required",
        ),
        (
            format!("tls_certificates = [{}]", cert("[]")),
            "smtp.tls_certificates[0].names",
            "at least one name",
        ),
        (
            format!(
                "tls_certificates = [{}]",
                cert(r#"["mx.example.net", "mx_2.example.net"]"#)
            ),
            "smtp.tls_certificates[0].names[1]",
            "may only contain",
        ),
        (
            format!("tls_certificates = [{}]", cert(r#"["mx.*.example.net"]"#)),
            "smtp.tls_certificates[0].names[0]",
            "whole first label",
        ),
        (
            format!("tls_certificates = [{}]", cert(r#"["*.net"]"#)),
            "smtp.tls_certificates[0].names[0]",
            "not fully qualified",
        ),
        (
            format!(
                "tls_certificates = [{}, {}]",
                cert(r#"["mx.example.net"]"#),
                cert(r#"["mx.example.org", "MX.example.net."]"#)
            ),
            "smtp.tls_certificates[1].names[1]",
            "mx.example.net is already listed by smtp.tls_certificates[0]",
        ),
        (
            format!(
                "tls_certificates = [{}]",
                cert(r#"["*.example.net", "*.EXAMPLE.net"]"#)
            ),
            "smtp.tls_certificates[0].names[1]",
            "already listed earlier in this list",
        ),
        (
            r#"etrn_networks = ["192.0.2.0/24", "10.0.0.0/40"]"#.to_owned(),
            "smtp.etrn_networks[1]",
            "prefix length must be 0 to 32",
        ),
        (
            r#"etrn_networks = ["primary.example.org"]"#.to_owned(),
            "smtp.etrn_networks[0]",
            "not an IP address or network",
        ),
    ];
    for (smtp, key, words) in cases {
        let errors = rejected(&with_smtp(&smtp));
        let message = message_for(&errors, key);
        assert!(message.contains(words), "{smtp}\n{key}: {message}");
        assert_eq!(
            errors.0.len(),
            1,
            "{smtp}\none problem, one error:\n{errors}"
        );
    }
}

#[test]
fn every_problem_of_the_table_is_reported_at_once() {
    let errors = rejected(&with_smtp(
        r#"listen = "0.0.0.0:0"
timeout = "0s"
bare_line_endings = "strip"
tls_certificates = [
  { cert = "/c", names = ["mx.example.net"] },
  { key = "/k", names = ["mx.example.net"] },
]"#,
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "smtp.listen",
            "smtp.timeout",
            "smtp.bare_line_endings",
            "smtp.tls_certificates[0].key",
            "smtp.tls_certificates[1].cert",
            "smtp.tls_certificates[1].names[0]",
        ],
        "{errors}"
    );
}

#[test]
fn bare_line_endings_is_reject_or_normalize() {
    let cases = [
        ("\"reject\"", Some(BareLineEndingsSetting::Reject)),
        ("\"normalize\"", Some(BareLineEndingsSetting::Normalize)),
        ("\"Reject\"", None),
        ("\"strip\"", None),
        ("\"\"", None),
    ];
    for (value, expected) in cases {
        let text = with_smtp(&format!("bare_line_endings = {value}"));
        match expected {
            Some(setting) => assert_eq!(accepted(&text).smtp.bare_line_endings, setting),
            None => {
                let errors = rejected(&text);
                let message = message_for(&errors, "smtp.bare_line_endings");
                assert!(
                    message.contains(r#"not a choice: write "reject""#)
                        && message.contains(r#""normalize""#),
                    "{value}: {message}"
                );
            }
        }
    }
    // A wrong TOML type is a stage-1 error at the same key.
    let errors = rejected(&with_smtp("bare_line_endings = true"));
    assert!(message_for(&errors, "smtp.bare_line_endings").contains("invalid type"));
}

#[test]
fn shape_errors_in_the_table_carry_its_key_path() {
    let cases = [
        (
            "smtpd_timeout = \"300s\"",
            "smtp.smtpd_timeout",
            "unknown field",
        ),
        (
            "recipient_limit = -1",
            "smtp.recipient_limit",
            "invalid value",
        ),
        ("timeout = 300", "smtp.timeout", "250ms"),
        (
            "tls_certificates = [{ cert = \"/c\", key = \"/k\", names = [\"mx.example.net\"], chain = \"/x\" }]",
            "smtp.tls_certificates[0].chain",
            "unknown field",
        ),
        (
            "tls_certificates = [\"/etc/mxfleet/tls/mx.crt\"]",
            "smtp.tls_certificates[0]",
            "names = [\"mx.example.net\"]",
        ),
    ];
    for (smtp, key, words) in cases {
        let errors = rejected(&with_smtp(smtp));
        let message = message_for(&errors, key);
        assert!(message.contains(words), "{smtp}\n{key}: {message}");
    }
}

#[test]
fn hostname_defaults_to_node_name_only_if_that_is_a_host_name() {
    let named = |name: &str| MINIMAL.replace("[node]", &format!("[node]\nname = {name:?}"));
    let errors = rejected(&named("mx_1"));
    let message = message_for(&errors, "smtp.hostname");
    assert!(
        message.contains(r#"defaults to node.name, but "mx_1" may only contain"#),
        "{message}"
    );
    let config = accepted(&format!(
        "{}\n[smtp]\nhostname = \"mx1.example.net\"\n",
        named("mx_1")
    ));
    assert_eq!(config.smtp.hostname, "mx1.example.net");
    // A single label is a host name; only the relay domains must be fully qualified.
    assert_eq!(accepted(&named("dev-node")).smtp.hostname, "dev-node");
}

#[test]
fn small_max_connections_lowers_the_default_per_client_limit() {
    let config = accepted(&with_smtp("max_connections = 20"));
    assert_eq!(config.smtp.max_connections, 20);
    assert_eq!(config.smtp.client_connection_count_limit, 20);
}

#[test]
fn smtp_and_queue_share_one_message_size_limit() {
    let cases = [
        // ([queue] max_message_size, [smtp] message_size_limit, the one limit)
        (None, None, Some(64_000_000)),
        (Some("10MB"), None, Some(10_000_000)),
        (None, Some("10MB"), Some(10_000_000)),
        (Some("10MB"), Some("10000KB"), Some(10_000_000)),
        (Some("10MB"), Some("10MiB"), None),
    ];
    for (queue, smtp, expected) in cases {
        let mut text = MINIMAL.to_owned();
        if let Some(size) = queue {
            text.push_str(&format!("\n[queue]\nmax_message_size = \"{size}\"\n"));
        }
        if let Some(size) = smtp {
            text.push_str(&format!("\n[smtp]\nmessage_size_limit = \"{size}\"\n"));
        }
        match expected {
            Some(bytes) => {
                let config = accepted(&text);
                assert_eq!(config.queue.max_message_size, bytes, "{text}");
                assert_eq!(config.smtp.message_size_limit, bytes, "{text}");
            }
            None => {
                let errors = rejected(&text);
                assert_eq!(
                    errors.keys().collect::<Vec<_>>(),
                    ["smtp.message_size_limit"]
                );
                let message = message_for(&errors, "smtp.message_size_limit");
                assert!(
                    message
                        .contains("is 10485760 bytes but queue.max_message_size is 10000000 bytes"),
                    "{message}"
                );
            }
        }
    }
}

#[test]
fn tls_files_must_exist_unless_checks_are_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("mx.crt");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").expect("write cert");
    let missing_key = dir.path().join("mx.key");
    let text = with_smtp(&format!(
        "hostname = \"mx1.example.net\"\n\
         tls_certificates = [{{ cert = {cert:?}, key = {missing_key:?}, names = [\"mx1.example.net\"] }}]"
    ));

    let errors = parse(&text, ORIGIN).expect_err("missing key file");
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["smtp.tls_certificates[0].key"]
    );
    assert!(message_for(&errors, "smtp.tls_certificates[0].key").contains("file not found"));

    let config = accepted(&text);
    assert_eq!(config.smtp.tls_certificates[0].key, missing_key);
}

#[test]
fn etrn_networks_are_parsed_in_cidr_notation() {
    let config = accepted(&with_smtp(
        r#"etrn_networks = ["192.0.2.0/24", "2001:db8::1"]"#,
    ));
    let networks = &config.smtp.etrn_networks;
    assert_eq!(networks.len(), 2);
    assert!(networks[0].contains("192.0.2.9".parse().unwrap()));
    assert!(networks[1].contains("2001:db8::1".parse().unwrap()));
    assert!(!networks[1].contains("2001:db8::2".parse().unwrap()));
    assert!(SmtpConfig::default_for("mx").etrn_networks.is_empty());
}
