//! SIGHUP reload of a running `mxfleet serve`, under SMTP load from Python's smtplib.
//!
//! While clients keep sending over connections they opened before the first reload
//! (some plaintext, some inside STARTTLS) and others open a new connection per
//! message, the operator rotates the STARTTLS certificate, adds a recipient, and
//! turns on a spam check for a second domain, then sends two broken configs. The test
//! asserts that:
//! - no connection is dropped and every message gets its `250`;
//! - a good reload reaches new connections: the new certificate is served, the new
//!   recipient is accepted, the new check answers;
//! - a bad reload (a TOML error; a certificate file that is not PEM) changes nothing
//!   and logs `reload_rejected` with the key path;
//! - a recipient a good reload removes is refused at once with `550 5.1.1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{ConfigHead, Running, free_port, lines, mxfleet};
use mxfleet_testkit::tls::TestCa;

/// The load: `persistent` connections that each send message after message (half of
/// them after STARTTLS, one every 50 ms), plus one client that opens a new connection per message.
/// Prints `progress N` after every 10 messages in all; stops when the stop file
/// appears, then prints one JSON summary.
const LOAD_SCRIPT: &str = r#"
import json, os, smtplib, ssl, sys, threading, time
port, stop_file, persistent = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
lock = threading.Lock()
totals = {"sent": 0}
results = []

def context():
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    return tls

def counted():
    with lock:
        totals["sent"] += 1
        if totals["sent"] % 10 == 0:
            print("progress", totals["sent"], flush=True)

def message(n, who):
    return "From: load@client.example\r\nTo: alice@example.test\r\nSubject: %s %d\r\n\r\nbody %d\r\n" % (who, n, n)

def persistent_client(index):
    result = {"client": "persistent-%d" % index, "sent": 0, "error": None}
    try:
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
        smtp.ehlo("load.client.example")
        if index % 2 == 1:
            smtp.starttls(context=context())
            smtp.ehlo("load.client.example")
            result["tls"] = True
        while not os.path.exists(stop_file):
            refused = smtp.sendmail("load@client.example", ["alice@example.test"], message(result["sent"], result["client"]))
            if refused:
                raise RuntimeError("refused: %r" % refused)
            result["sent"] += 1
            counted()
            # Well under the session's limit of 1000 transactions per connection.
            time.sleep(0.05)
        smtp.quit()
    except Exception as e:
        result["error"] = "%s: %s" % (type(e).__name__, e)
    with lock:
        results.append(result)

def connection_per_message_client():
    result = {"client": "one-per-message", "sent": 0, "error": None}
    try:
        while not os.path.exists(stop_file):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                smtp.sendmail("load@client.example", ["alice@example.test"], message(result["sent"], result["client"]))
            result["sent"] += 1
            counted()
    except Exception as e:
        result["error"] = "%s: %s" % (type(e).__name__, e)
    with lock:
        results.append(result)

threads = [threading.Thread(target=persistent_client, args=(i,)) for i in range(persistent)]
threads.append(threading.Thread(target=connection_per_message_client))
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results), flush=True)
"#;

/// Prints `same` if the certificate served after STARTTLS is the one in the PEM file
/// given, else `different <subject>`.
const SERVED_CERT_SCRIPT: &str = r#"
import smtplib, ssl, sys
port, pem_file = int(sys.argv[1]), sys.argv[2]
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
smtp.ehlo("probe.client.example")
smtp.starttls(context=tls)
served = smtp.sock.getpeercert(binary_form=True)
expected = ssl.PEM_cert_to_DER_cert(open(pem_file).read())
smtp.quit()
print("same" if served == expected else "different")
"#;

const PERSISTENT_CLIENTS: usize = 4;

struct Fleet {
    dir: tempfile::TempDir,
    peer_port: u16,
    smtp_port: u16,
}

impl Fleet {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The node's config: `recipients` for example.test, `other_checks` for other.test.
    fn write_config(&self, recipients: &str, other_checks: &str) {
        let data = self.path("data");
        let head = ConfigHead::single_node(&data, self.peer_port, self.smtp_port, "mx.reload.test");
        let rest = format!(
            r#"tls_certificates = [ {{ cert = "{cert}", key = "{key}", names = ["mx.reload.test"] }} ]

[[relay_domains]]
domain = "example.test"
recipients = [{recipients}]
next_hop = "[127.0.0.1]:9"

[[relay_domains]]
domain = "other.test"
catch_all = true
next_hop = "[127.0.0.1]:9"
checks = [{other_checks}]
"#,
            cert = self.path("smtp.crt").display(),
            key = self.path("smtp.key").display(),
        );
        let config = head.render() + &rest;
        std::fs::write(self.path("node.toml"), config).expect("config written");
    }

    fn write_certificate(&self, ca: &TestCa, name: &str) {
        let leaf = ca.issue(name);
        std::fs::write(self.path("smtp.crt"), leaf.cert_pem).expect("cert written");
        std::fs::write(self.path("smtp.key"), leaf.key_pem).expect("key written");
    }

    /// Whether a new STARTTLS connection is served the certificate now in `smtp.crt`.
    fn serves_current_certificate(&self, copy: &Path) -> bool {
        let output = python(SERVED_CERT_SCRIPT)
            .arg(self.smtp_port.to_string())
            .arg(copy)
            .output()
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "cert probe failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout.trim() == "same"
    }

    /// The reply to `RCPT TO:<recipient>` in a new session.
    fn rcpt_reply(&self, recipient: &str) -> String {
        use std::io::{BufRead, BufReader, Write};
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.smtp_port)).expect("smtp connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .write_all(
                format!(
                    "EHLO probe.client.example\r\nMAIL FROM:<probe@client.example>\r\nRCPT TO:<{recipient}>\r\nQUIT\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        let replies: Vec<String> = BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
            .collect();
        // Banner, EHLO lines, MAIL, RCPT, QUIT: the RCPT reply is the second to last.
        replies
            .iter()
            .rev()
            .nth(1)
            .cloned()
            .unwrap_or_else(|| panic!("no RCPT reply in {replies:?}"))
    }
}

fn python(script: &str) -> Command {
    let mut command = Command::new("python3");
    command.arg("-c").arg(script);
    command
}

/// The load generator, with its stdout lines on a channel.
struct Load {
    child: Child,
    stdout: Receiver<String>,
    sent: u64,
}

impl Load {
    fn start(port: u16, stop_file: &Path) -> Load {
        let mut child = python(LOAD_SCRIPT)
            .arg(port.to_string())
            .arg(stop_file)
            .arg(PERSISTENT_CLIENTS.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let stdout = lines(child.stdout.take().expect("piped"));
        Load {
            child,
            stdout,
            sent: 0,
        }
    }

    /// Waits until at least `more` further messages have been accepted.
    fn wait_for_progress(&mut self, more: u64) {
        let target = self.sent + more;
        let until = Instant::now() + Duration::from_secs(60);
        while self.sent < target {
            let left = until.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "the load stalled at {} messages (waiting for {target})",
                    self.sent
                )
            });
            if let Some(count) = line.strip_prefix("progress ") {
                self.sent = count.trim().parse().expect("a count");
            } else {
                panic!("the load ended early: {line}");
            }
        }
    }

    /// The summary line, once the clients have stopped.
    fn finish(mut self) -> String {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let line = self
                .stdout
                .recv_timeout(left)
                .expect("the load prints its summary");
            if line.starts_with('[') {
                let status = self.child.wait().expect("python exits");
                assert!(status.success(), "load exited with {status}");
                return line;
            }
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_under_load_drops_no_connection_and_a_bad_reload_keeps_the_old_config() {
    let fleet = Fleet {
        dir: tempfile::tempdir().unwrap(),
        peer_port: free_port(),
        smtp_port: free_port(),
    };
    let ca = TestCa::new("reload test CA");
    fleet.write_certificate(&ca, "first certificate");
    let first_cert = fleet.path("first.crt");
    std::fs::copy(fleet.path("smtp.crt"), &first_cert).unwrap();
    fleet.write_config(r#""alice""#, "");
    let node = Running::start(
        mxfleet()
            .args(["serve", "--config"])
            .arg(fleet.path("node.toml")),
    );
    node.wait_for_line(&node.stderr, "node_ready", Duration::from_secs(30));
    // A new one-node cluster answers 451 until its membership is committed.
    let until = Instant::now() + Duration::from_secs(20);
    while !fleet.rcpt_reply("alice@example.test").starts_with("250") {
        assert!(Instant::now() < until, "the node never accepted alice");
        std::thread::park_timeout(Duration::from_millis(100));
    }
    assert!(fleet.serves_current_certificate(&first_cert));
    assert!(
        fleet
            .rcpt_reply("bob@example.test")
            .starts_with("550 5.1.1")
    );
    assert!(fleet.rcpt_reply("anyone@other.test").starts_with("250"));

    let stop_file = fleet.path("stop-load");
    let mut load = Load::start(fleet.smtp_port, &stop_file);
    load.wait_for_progress(30);

    // A good reload: a new certificate in the same files, bob added, and other.test
    // taking mail only while its primary is down (it is not known to be down).
    fleet.write_certificate(&ca, "second certificate");
    let second_cert = fleet.path("second.crt");
    std::fs::copy(fleet.path("smtp.crt"), &second_cert).unwrap();
    fleet.write_config(r#""alice", "bob""#, r#""primary_aware""#);
    node.signal("HUP");
    let reloaded = node.wait_for_line(&node.stderr, "config_reloaded", Duration::from_secs(30));
    assert!(
        reloaded
            .iter()
            .any(|line| line.contains("reload_needs_restart") && line.contains("primary watch")),
        "a newly primary-aware domain is reported as needing a restart for its watch:\n{}",
        reloaded.join("\n")
    );
    load.wait_for_progress(30);
    assert!(fleet.serves_current_certificate(&second_cert));
    assert!(fleet.rcpt_reply("bob@example.test").starts_with("250"));
    let other = fleet.rcpt_reply("anyone@other.test");
    assert!(other.starts_with("451 4.7.1"), "{other}");

    // A bad reload: a TOML error. Nothing changes.
    std::fs::write(fleet.path("node.toml"), "[node]\nid = \"one\"\n").unwrap();
    node.signal("HUP");
    let rejected = node.wait_for_line(&node.stderr, "reload_rejected", Duration::from_secs(30));
    assert!(
        rejected.last().is_some_and(|line| line.contains("node.id")),
        "the error names its key: {rejected:?}"
    );
    load.wait_for_progress(30);

    // A bad reload: bob removed, but the certificate file is not PEM. Nothing changes,
    // not even the recipients.
    fleet.write_config(r#""alice""#, "");
    std::fs::write(fleet.path("smtp.crt"), "not a certificate\n").unwrap();
    node.signal("HUP");
    let rejected = node.wait_for_line(&node.stderr, "reload_rejected", Duration::from_secs(30));
    assert!(
        rejected
            .last()
            .is_some_and(|line| line.contains("smtp.tls_certificates[0]")),
        "the error names its key: {rejected:?}"
    );
    load.wait_for_progress(30);
    assert!(fleet.serves_current_certificate(&second_cert));
    assert!(fleet.rcpt_reply("bob@example.test").starts_with("250"));
    assert!(
        fleet
            .rcpt_reply("anyone@other.test")
            .starts_with("451 4.7.1")
    );

    // A good reload that removes bob: from then on he is refused at RCPT (never
    // accepted and bounced later).
    fleet.write_certificate(&ca, "third certificate");
    fleet.write_config(r#""alice""#, "");
    node.signal("HUP");
    node.wait_for_line(&node.stderr, "config_reloaded", Duration::from_secs(30));
    let removed = fleet.rcpt_reply("bob@example.test");
    assert!(removed.starts_with("550 5.1.1"), "{removed}");
    load.wait_for_progress(30);

    std::fs::write(&stop_file, "").unwrap();
    let summary = load.finish();
    let clients: Vec<serde_json::Value> = serde_json::from_str(&summary).expect("json summary");
    assert_eq!(clients.len(), PERSISTENT_CLIENTS + 1, "{summary}");
    for client in &clients {
        assert!(
            client["error"].is_null(),
            "a client lost its connection or a message: {summary}"
        );
        assert!(
            client["sent"].as_u64().unwrap_or(0) > 0,
            "every client sent mail: {summary}"
        );
    }
    assert_eq!(
        clients.iter().filter(|c| c["tls"] == true).count(),
        PERSISTENT_CLIENTS / 2,
        "half the persistent clients stayed inside TLS across the reloads: {summary}"
    );
}
