//! The `mxfleet` binary as an operator runs it: real processes, real signals, exit
//! codes that mean something.

mod common;

use std::time::{Duration, Instant};

use common::{ConfigHead, Running, free_port, mxfleet, smtp_exchange};

#[test]
fn an_invalid_config_lists_every_problem_with_its_key_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        r#"
[node]
id = 1
site = "fra1"
data_dir = "/tmp/x"

[peer]
listen = "127.0.0.1:7401"

[raft]
heartbeat_interval = "100 parsecs"
write_timeout = "soon"
"#,
    )
    .unwrap();
    let output = mxfleet()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "stderr: {stderr}");
    for key in [
        "raft.heartbeat_interval:",
        "raft.write_timeout:",
        "peer: no TLS configured",
    ] {
        assert!(stderr.contains(key), "no error for {key} in:\n{stderr}");
    }
    // `config check` reports the same and exits 64 too.
    let check = mxfleet()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(64));
}

#[test]
fn an_unknown_key_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "[node]\nid = 1\nsite = \"a\"\ndata_dir = \"/tmp/x\"\nmystery = 3\n",
    )
    .unwrap();
    let output = mxfleet()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr.contains("node.mystery") || stderr.contains("mystery"),
        "{stderr}"
    );
}

#[test]
fn serve_accepts_mail_reloads_recipients_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (port, smtp_port) = (free_port(), free_port());
    let recipients = dir.path().join("recipients");
    std::fs::write(&recipients, "alice@example.test\n").unwrap();
    let path = dir.path().join("node.toml");
    let data = dir.path().join("data");
    let head = ConfigHead::single_node(&data, port, smtp_port, "mx.cli.test");
    let relay = format!(
        "\n[[relay_domains]]\ndomain = \"example.test\"\nrecipient_file = \"{}\"\n",
        recipients.display()
    );
    std::fs::write(&path, head.render() + &relay).unwrap();
    let mut node = Running::start(mxfleet().args(["serve", "--config"]).arg(&path));
    node.wait_for_line(&node.stderr, "node_ready", Duration::from_secs(30));

    // Right after start the new cluster may not have committed its membership yet: the
    // node answers 451 (nothing promised) and, like any MTA, we try again.
    let until = Instant::now() + Duration::from_secs(20);
    let accepted = loop {
        let replies = smtp_exchange(smtp_port, "alice@example.test");
        if !replies.contains("451 4.3.0") || Instant::now() >= until {
            break replies;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    };
    assert!(accepted.starts_with("220 mx.cli.test ESMTP"), "{accepted}");
    assert!(accepted.contains("250 2.0.0 Ok: queued as "), "{accepted}");
    let unknown = smtp_exchange(smtp_port, "bob@example.test");
    assert!(
        unknown.contains("550 5.1.1 <bob@example.test>"),
        "{unknown}"
    );

    // The operator adds bob and sends SIGHUP: no restart, bob is accepted.
    std::fs::write(&recipients, "alice@example.test\nbob@example.test\n").unwrap();
    node.signal("HUP");
    node.wait_for_line(&node.stderr, "config_reloaded", Duration::from_secs(10));
    let reloaded = smtp_exchange(smtp_port, "bob@example.test");
    assert!(reloaded.contains("250 2.0.0 Ok: queued as "), "{reloaded}");

    node.signal("TERM");
    assert_eq!(node.wait_exit(Duration::from_secs(30)), 0);
    assert!(
        dir.path().join("data/raft-log").is_dir(),
        "the node kept its Raft log"
    );
}

#[test]
fn dev_starts_a_cluster_that_delivers_to_its_primary_and_stops_on_ctrl_c() {
    let mut dev = Running::start(mxfleet().arg("dev"));
    let banner = dev.wait_for_line(&dev.stdout, "ready", Duration::from_secs(60));
    let text = banner.join("\n");
    assert!(text.contains("3 nodes on loopback"), "{text}");
    assert!(text.contains("leader"), "{text}");
    assert!(
        text.matches("127.0.0.1:").count() >= 7,
        "every node shows its SMTP and peer endpoints, and the primary its own:\n{text}"
    );
    assert_eq!(
        text.matches("/metrics").count(),
        3,
        "every node shows its metrics endpoint:\n{text}"
    );
    assert!(
        text.contains("on 3/3 nodes, delivered to the primary"),
        "the demo message must reach every node and the primary:\n{text}"
    );
    let data_dir = text
        .lines()
        .find_map(|l| l.split("data in ").nth(1))
        .map(std::path::PathBuf::from)
        .expect("data dir printed");
    assert!(data_dir.is_dir());
    // Mail sent to any node reaches the built-in primary with our Received header.
    let smtp_port: u16 = text
        .lines()
        .find_map(|l| l.split("--port ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .expect("the swaks line names an SMTP port");
    let replies = smtp_exchange(smtp_port, "postmaster@example.test");
    let queue_id = replies
        .split("queued as ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no queue id in {replies}"))
        .to_string();
    // The delivery log line for this message comes once the primary took it.
    loop {
        let lines = dev.wait_for_line(&dev.stderr, "delivery_attempt", Duration::from_secs(30));
        if lines.last().is_some_and(|l| l.contains(&queue_id)) {
            break;
        }
    }
    let delivered = std::fs::read_dir(data_dir.join("primary"))
        .unwrap()
        .flatten()
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
        .find(|text| text.contains(&format!(" id {queue_id}")))
        .unwrap_or_else(|| panic!("message {queue_id} is not in the primary's directory"));
    assert!(
        delivered.starts_with("Received: from cli.test"),
        "{delivered}"
    );
    assert!(
        delivered.contains("Subject: cli\r\n\r\nhello"),
        "{delivered}"
    );
    dev.signal("INT");
    assert_eq!(dev.wait_exit(Duration::from_secs(30)), 0);
    assert!(
        !data_dir.exists(),
        "the temporary data dir is removed on exit"
    );
}
