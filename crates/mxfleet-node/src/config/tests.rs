//! Tests of both stages through the public entry points, one rule per test.
//!
//! `[smtp]`, `[delivery]`, `[[relay_domains]]` and `[spam]` have their own files under
//! `tests/`.

mod delivery;
mod operations;
mod relay_domains;
mod smtp;
mod spam;

use std::path::Path;
use std::time::Duration;

use super::*;

const ORIGIN: &str = "/etc/mxfleet/node.toml";

/// The smallest config that starts: a plaintext node on loopback.
const MINIMAL: &str = r#"
[node]
id = 1
site = "fra1"
data_dir = "/var/lib/mxfleet"

[peer]
listen = "127.0.0.1:7401"
plaintext = true
"#;

fn accepted(text: &str) -> NodeConfig {
    parse_with(text, ORIGIN, FileChecks::Skip)
        .unwrap_or_else(|errors| panic!("config rejected:\n{errors}\n--- config ---\n{text}"))
}

fn rejected(text: &str) -> ConfigErrors {
    match parse_with(text, ORIGIN, FileChecks::Skip) {
        Ok(config) => panic!("config accepted: {config:#?}\n--- config ---\n{text}"),
        Err(errors) => errors,
    }
}

/// The message reported for `key`, failing with every reported error if there is none.
fn message_for<'a>(errors: &'a ConfigErrors, key: &str) -> &'a str {
    match errors.find(key) {
        Some(error) => &error.message,
        None => panic!("no error for {key:?}; got:\n{errors}"),
    }
}

#[test]
fn minimal_config_gets_the_defaults() {
    let config = accepted(MINIMAL);

    assert_eq!(config.node.id, 1);
    assert_eq!(config.node.name, "mxfleet-node-1");
    assert_eq!(config.node.site, "fra1");
    assert_eq!(config.node.data_dir, Path::new("/var/lib/mxfleet"));
    assert_eq!(config.peer.listen.to_string(), "127.0.0.1:7401");
    assert_eq!(config.peer.advertise, "127.0.0.1:7401");
    assert_eq!(config.peer.bind_address, None);
    assert_eq!(config.peer.transport, PeerTransport::Plaintext);
    assert!(config.cluster.initial_members.is_empty());
    assert_eq!(config.raft, RaftTimers::default());
    assert_eq!(config.queue, QueueLimits::default());
    assert_eq!(config.smtp, SmtpConfig::default_for("mxfleet-node-1"));
    assert!(config.relay_domains.is_empty());
}

#[test]
fn defaults_are_the_documented_values() {
    let raft = RaftTimers::default();
    assert_eq!(raft.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(raft.election_timeout, Duration::from_secs(1));
    assert_eq!(raft.write_timeout, Duration::from_secs(5));
    assert_eq!(raft.snapshot_every, 10_000);

    let queue = QueueLimits::default();
    assert_eq!(queue.dedup_window, Duration::from_secs(7 * 86_400));
    assert_eq!(queue.max_message_size, 64_000_000);
    assert_eq!(queue.blob_quorum_timeout, Duration::from_secs(10));
}

#[test]
fn written_values_replace_the_defaults() {
    let config = accepted(&format!(
        r#"{MINIMAL}
[raft]
heartbeat_interval = "50ms"
election_timeout = "500ms"
write_timeout = "2s"
snapshot_every = 100

[queue]
dedup_window = "1h 30m"
max_message_size = "64MiB"
blob_quorum_timeout = "3s"
"#
    ));
    assert_eq!(
        config.raft,
        RaftTimers {
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_secs(2),
            snapshot_every: 100,
        }
    );
    assert_eq!(
        config.queue,
        QueueLimits {
            dedup_window: Duration::from_secs(90 * 60),
            max_message_size: 64 * 1024 * 1024,
            blob_quorum_timeout: Duration::from_secs(3),
        }
    );
}

#[test]
fn unknown_key_anywhere_is_reported_with_its_path() {
    let cases = [
        ("verbose = true\n", "verbose"),
        ("[logging]\n", "logging"),
        (
            "[raft]\nheartbeat_intreval = \"50ms\"\n",
            "raft.heartbeat_intreval",
        ),
        ("[queue]\nmax_size = \"1MB\"\n", "queue.max_size"),
        (
            r#"[cluster]
initial_members = [
  { id = 1, addr = "127.0.0.1:7401", site = "fra1" },
  { id = 2, addr = "127.0.0.2:7401", site = "fra1", voter = true },
]
"#,
            "cluster.initial_members[1].voter",
        ),
        (
            "[[cluster.initial_members]]\nid = 1\nadress = \"127.0.0.1:7401\"\n",
            "cluster.initial_members[0].adress",
        ),
    ];
    for (extra, key) in cases {
        // Keys before the first table belong to the root, so they go first.
        let text = if extra.starts_with('[') {
            format!("{MINIMAL}\n{extra}")
        } else {
            format!("{extra}{MINIMAL}")
        };
        let errors = rejected(&text);
        assert!(
            message_for(&errors, key).contains("unknown field"),
            "{key}: {errors}"
        );
    }
    let errors = rejected(&MINIMAL.replace("[node]\n", "[node]\nsite_name = \"x\"\n"));
    assert!(
        message_for(&errors, "node.site_name").contains("line 3"),
        "{errors}"
    );
}

#[test]
fn wrong_toml_type_is_reported_with_its_path_and_the_expected_form() {
    let cases = [
        (
            "[raft]\nheartbeat_interval = 100\n",
            "raft.heartbeat_interval",
            "250ms",
        ),
        (
            "[queue]\nmax_message_size = 64\n",
            "queue.max_message_size",
            "64MB",
        ),
        (
            "[raft]\nsnapshot_every = -1\n",
            "raft.snapshot_every",
            "u64",
        ),
        (
            "[cluster]\ninitial_members = [1]\n",
            "cluster.initial_members[0]",
            "id = 1",
        ),
    ];
    for (extra, key, hint) in cases {
        let errors = rejected(&format!("{MINIMAL}\n{extra}"));
        assert!(message_for(&errors, key).contains(hint), "{key}: {errors}");
    }
}

#[test]
fn bad_duration_and_bad_size_are_both_reported() {
    let errors = rejected(&format!(
        r#"{MINIMAL}
[raft]
election_timeout = "2 fortnights"

[queue]
max_message_size = "64QB"
"#
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["raft.election_timeout", "queue.max_message_size"],
        "{errors}"
    );
    assert!(message_for(&errors, "raft.election_timeout").contains("not a duration"));
    assert!(message_for(&errors, "queue.max_message_size").contains("not a size"));
}

#[test]
fn every_missing_required_key_is_reported_at_once() {
    let errors = rejected("");
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "node.id",
            "node.site",
            "node.data_dir",
            "peer.listen",
            "peer"
        ],
        "{errors}"
    );
}

#[test]
fn raft_timer_rules() {
    let cases = [
        // (raft table, rejected key, words in the message)
        (
            "heartbeat_interval = \"100ms\"\nelection_timeout = \"250ms\"",
            "raft.election_timeout",
            "at least 3 × heartbeat_interval = 300ms",
        ),
        (
            "heartbeat_interval = \"500ms\"",
            "raft.election_timeout",
            "1s (the default)",
        ),
        (
            "election_timeout = \"3s\"",
            "raft.write_timeout",
            "at least 2 × election_timeout = 6s",
        ),
        (
            "heartbeat_interval = \"0s\"",
            "raft.heartbeat_interval",
            "greater than 0",
        ),
        ("snapshot_every = 99", "raft.snapshot_every", "at least 100"),
    ];
    for (raft, key, words) in cases {
        let errors = rejected(&format!("{MINIMAL}\n[raft]\n{raft}\n"));
        let message = message_for(&errors, key);
        assert!(message.contains(words), "{key}: {message}");
    }
    // The boundaries themselves are fine.
    accepted(&format!(
        r#"{MINIMAL}
[raft]
heartbeat_interval = "100ms"
election_timeout = "300ms"
write_timeout = "600ms"
"#
    ));
}

#[test]
fn message_size_bounds_and_units() {
    let cases = [
        ("1KB", Some(1_000)),
        ("64MB", Some(64_000_000)),
        ("64MiB", Some(67_108_864)),
        ("2GB", Some(2_000_000_000)),
        ("999B", None),
        ("2GiB", None),
        ("0", None),
    ];
    for (size, expected) in cases {
        let text = format!("{MINIMAL}\n[queue]\nmax_message_size = \"{size}\"\n");
        match expected {
            Some(bytes) => assert_eq!(accepted(&text).queue.max_message_size, bytes, "{size}"),
            None => {
                let errors = rejected(&text);
                let message = message_for(&errors, "queue.max_message_size");
                assert!(message.contains("between 1KB"), "{size}: {message}");
            }
        }
    }
}

#[test]
fn queue_durations_must_be_positive() {
    let errors = rejected(&format!(
        "{MINIMAL}\n[queue]\ndedup_window = \"0s\"\nblob_quorum_timeout = \"0ms\"\n"
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["queue.dedup_window", "queue.blob_quorum_timeout"]
    );
}

/// A `[peer]` table over the minimal `[node]`.
fn with_peer(peer: &str) -> String {
    format!("[node]\nid = 1\nsite = \"fra1\"\ndata_dir = \"/var/lib/mxfleet\"\n\n[peer]\n{peer}\n")
}

#[test]
fn missing_tls_tells_the_operator_both_ways_out() {
    for peer in [
        "listen = \"127.0.0.1:7401\"",
        "listen = \"127.0.0.1:7401\"\nplaintext = false",
    ] {
        let errors = rejected(&with_peer(peer));
        let message = message_for(&errors, "peer");
        assert!(
            message.contains("tls_cert, tls_key and tls_ca"),
            "{message}"
        );
        assert!(message.contains("plaintext = true"), "{message}");
    }
    let errors = rejected(&with_peer(
        "listen = \"127.0.0.1:7401\"\ntls_cert = \"/etc/mxfleet/tls/node1.crt\"",
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["peer.tls_key", "peer.tls_ca"]
    );
    assert!(message_for(&errors, "peer.tls_key").contains("plaintext = true"));
}

#[test]
fn plaintext_with_tls_files_is_contradictory() {
    let errors = rejected(&with_peer(
        "listen = \"127.0.0.1:7401\"\nplaintext = true\ntls_ca = \"/etc/mxfleet/tls/fleet-ca.crt\"",
    ));
    assert!(message_for(&errors, "peer.plaintext").contains("peer.tls_ca is set"));
}

#[test]
fn tls_files_must_exist_unless_checks_are_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("node1.crt");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").expect("write cert");
    let missing_key = dir.path().join("node1.key");
    let text = with_peer(&format!(
        "listen = \"127.0.0.1:7401\"\n\
         tls_cert = {cert:?}\ntls_key = {missing_key:?}\ntls_ca = {dir:?}",
        dir = dir.path(),
    ));

    let errors = parse(&text, ORIGIN).expect_err("missing key file and a directory as CA");
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["peer.tls_key", "peer.tls_ca"]
    );
    assert!(message_for(&errors, "peer.tls_key").contains("file not found"));
    assert!(message_for(&errors, "peer.tls_ca").contains("not a regular file"));

    let config = accepted(&text);
    assert_eq!(
        config.peer.transport,
        PeerTransport::MutualTls {
            cert,
            key: missing_key,
            ca: dir.path().to_path_buf()
        }
    );
}

#[test]
fn advertise_rules() {
    let cases = [
        ("listen = \"0.0.0.0:7401\"", "peer.advertise", "is required"),
        ("listen = \"[::]:7401\"", "peer.advertise", "is required"),
        (
            "listen = \"0.0.0.0:7401\"\nadvertise = \"0.0.0.0:7401\"",
            "peer.advertise",
            "not dialled",
        ),
        (
            "listen = \"0.0.0.0:7401\"\nadvertise = \"10.0.1.5\"",
            "peer.advertise",
            "no port",
        ),
        (
            "listen = \"mx1.example.net:7401\"",
            "peer.listen",
            "not an IP:port",
        ),
        ("listen = \"127.0.0.1:0\"", "peer.listen", "port 0"),
    ];
    for (peer, key, words) in cases {
        let errors = rejected(&with_peer(&format!("{peer}\nplaintext = true")));
        let message = message_for(&errors, key);
        assert!(message.contains(words), "{peer}: {message}");
    }

    let config = accepted(&with_peer(
        "listen = \"0.0.0.0:7401\"\nadvertise = \"MX1.Example.net:7401\"\nplaintext = true",
    ));
    assert_eq!(config.peer.advertise, "mx1.example.net:7401");
}

#[test]
fn peer_bind_address_is_one_ip_without_a_port() {
    for (written, expected) in [("10.0.1.5", "10.0.1.5"), ("2001:DB8::5", "2001:db8::5")] {
        let config = accepted(&with_peer(&format!(
            "listen = \"127.0.0.1:7401\"\nbind_address = \"{written}\"\nplaintext = true"
        )));
        let expected: std::net::IpAddr = expected.parse().expect("test address");
        assert_eq!(config.peer.bind_address, Some(expected), "{written}");
    }

    for garbage in ["10.0.1.5:7401", "mx1.example.net", ""] {
        let errors = rejected(&with_peer(&format!(
            "listen = \"127.0.0.1:7401\"\nbind_address = \"{garbage}\"\nplaintext = true"
        )));
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["peer.bind_address"],
            "{garbage:?}: {errors}"
        );
        let message = message_for(&errors, "peer.bind_address");
        assert!(
            message.contains("not an IP address to connect from"),
            "{garbage:?}: {message}"
        );
    }
}

#[test]
fn initial_member_rules_report_the_member_index() {
    let cases = [
        (
            r#"{ id = 1, addr = "127.0.0.1:7401", site = "fra1" },
               { id = 2, addr = "10.0.1.6:7401", site = "fra1" },
               { id = 2, addr = "10.0.1.7:7401", site = "ams1" }"#,
            "cluster.initial_members[2].id",
            "already used by cluster.initial_members[1]",
        ),
        (
            r#"{ id = 0, addr = "10.0.1.6:7401", site = "fra1" }"#,
            "cluster.initial_members[0].id",
            "must not be 0",
        ),
        (
            r#"{ id = 2, addr = "10.0.1.6:7401", site = "fra1" },
               { id = 3, addr = "10.0.1.6:7401", site = "fra1" }"#,
            "cluster.initial_members[1].addr",
            "already the address of cluster.initial_members[0]",
        ),
        (
            r#"{ id = 2, addr = "10.0.1.6", site = "fra1" }"#,
            "cluster.initial_members[0].addr",
            "no port",
        ),
        (
            r#"{ id = 2, addr = "10.0.1.6:7401", site = "" }"#,
            "cluster.initial_members[0].site",
            "must not be empty",
        ),
        (
            r#"{ id = 2, addr = "10.0.1.6:7401" }"#,
            "cluster.initial_members[0].site",
            "is required",
        ),
    ];
    for (members, key, words) in cases {
        let errors = rejected(&format!(
            "{MINIMAL}\n[cluster]\ninitial_members = [\n{members}\n]\n"
        ));
        let message = message_for(&errors, key);
        assert!(message.contains(words), "{key}: {message}");
    }

    let config = accepted(&format!(
        "{MINIMAL}\n[cluster]\ninitial_members = [\n\
         {{ id = 1, addr = \"127.0.0.1:7401\", site = \"fra1\" }},\n\
         {{ id = 3, addr = \"MX3.example.net:7401\", site = \"ams1\" }},\n]\n"
    ));
    let addrs: Vec<&str> = config
        .cluster
        .initial_members
        .iter()
        .map(|member| member.addr.as_str())
        .collect();
    assert_eq!(addrs, ["127.0.0.1:7401", "mx3.example.net:7401"]);
}

#[test]
fn own_entry_must_match_the_advertised_address_and_site() {
    let errors = rejected(&format!(
        "{MINIMAL}\n[cluster]\ninitial_members = [\n\
         {{ id = 2, addr = \"10.0.1.6:7401\", site = \"fra1\" }},\n\
         {{ id = 1, addr = \"10.0.1.5:7401\", site = \"ams1\" }},\n]\n"
    ));
    let addr_message = message_for(&errors, "cluster.initial_members[1].addr");
    assert!(
        addr_message.contains("127.0.0.1:7401 (from peer.listen), not 10.0.1.5:7401"),
        "{addr_message}"
    );
    let site_message = message_for(&errors, "cluster.initial_members[1].site");
    assert!(site_message.contains(r#""fra1""#), "{site_message}");
}

#[test]
fn node_identity_rules() {
    let cases = [
        ("id = 0", "node.id", "must not be 0"),
        ("site = \"FRA 1\"", "node.site", "may only contain"),
        ("site = \"\"", "node.site", "must not be empty"),
        ("name = \"\"", "node.name", "must not be empty"),
        ("name = \"mx 2\"", "node.name", "spaces"),
        ("data_dir = \"\"", "node.data_dir", "must not be empty"),
    ];
    for (line, key, words) in cases {
        let field = line.split(' ').next().unwrap_or_default();
        let node = MINIMAL
            .lines()
            .filter(|existing| !existing.starts_with(&format!("{field} ")))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("[node]", &format!("[node]\n{line}"));
        let errors = rejected(&node);
        let message = message_for(&errors, key);
        assert!(message.contains(words), "{line}: {message}");
    }
    let named = accepted(&MINIMAL.replace("[node]", "[node]\nname = \"mx2.fra1.example.net\""));
    assert_eq!(named.node.name, "mx2.fra1.example.net");
}

#[test]
fn syntax_error_is_located_by_line() {
    let errors = rejected("[node]\nid = 1\nsite = \"fra1\n");
    assert_eq!(errors.keys().collect::<Vec<_>>(), [""]);
    assert!(errors.0[0].message.contains("line 3"), "{errors}");
}

#[test]
fn display_prints_one_line_per_error_with_origin_and_key() {
    let errors = rejected(&format!(
        "{MINIMAL}\n[raft]\nheartbeat_interval = \"1 parsec\"\nsnapshot_every = 5\n"
    ));
    let shown = errors.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert!(
        lines[0].starts_with("/etc/mxfleet/node.toml: raft.heartbeat_interval: "),
        "{shown}"
    );
    assert!(
        lines[1].starts_with("/etc/mxfleet/node.toml: raft.snapshot_every: "),
        "{shown}"
    );
}

#[test]
fn load_reports_an_unreadable_file_without_a_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let errors = load(&path).expect_err("no such file");
    assert_eq!(errors.keys().collect::<Vec<_>>(), [""]);
    let shown = errors.to_string();
    assert!(
        shown.starts_with(&format!("{}: cannot read config file: ", path.display())),
        "{shown}"
    );
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, MINIMAL).expect("write config");
    let config = load(&path).expect("minimal config loads");
    assert!(!config.node.name.is_empty());

    std::fs::write(&path, MINIMAL.replace("id = 1", "id = 0")).expect("write config");
    let errors = load(&path).expect_err("id 0");
    assert_eq!(errors.0[0].origin, path.display().to_string());
}
