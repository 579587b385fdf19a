//! The admin CLI end to end: three `mxfleet serve` processes with the admin API on,
//! mail submitted over SMTP, and every `mxfleet cluster …` / `mxfleet queue …` command
//! run as a separate process with `--json`, its output parsed. Covers a follower
//! answering, bulk actions with filters (and their refusal without `--yes` when no
//! terminal can confirm), a bad token and a missing permission, drain (the drained
//! node's SMTP answers `421 4.3.2`), the drain when the primary returns, and a node
//! that lost its quorum (exit 69).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{ConfigHead, DownPort, FAST_RAFT, Running, free_port, initial_members, mxfleet};
use mxfleet_testkit::sink::SinkMx;
use serde_json::Value;

const NODES: u64 = 3;
const OPS_TOKEN: &str = "ops-0123456789abcdef0123456789";
const VIEWER_TOKEN: &str = "viewer-0123456789abcdef012345";

struct Fleet {
    dir: tempfile::TempDir,
    smtp: Vec<u16>,
    admin: Vec<u16>,
    nodes: BTreeMap<u64, Running>,
}

impl Fleet {
    fn endpoint(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.admin[id as usize - 1])
    }

    fn token_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.token"))
    }

    /// Runs `mxfleet ARGS --json` against node `id` with the ops token.
    fn cli(&self, id: u64, args: &[&str]) -> Output {
        self.cli_as(id, "ops", args)
    }

    fn cli_as(&self, id: u64, token: &str, args: &[&str]) -> Output {
        mxfleet()
            .args(args)
            .args(["--json", "--timeout", "20s"])
            .env("MXFLEET_ENDPOINT", self.endpoint(id))
            .env("MXFLEET_TOKEN_FILE", self.token_file(token))
            .env_remove("MXFLEET_TOKEN")
            .output()
            .expect("the CLI runs")
    }

    /// Runs a command that must succeed and returns its JSON document.
    fn json(&self, id: u64, args: &[&str]) -> Value {
        let output = self.cli(id, args);
        assert!(
            output.status.success(),
            "mxfleet {args:?} failed ({:?}): {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "mxfleet {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }
}

fn write_config(dir: &Path, id: u64, peers: &[u16], smtp: u16, admin: u16, primary: u16) {
    let head = ConfigHead {
        id,
        site: &format!("site-{id}"),
        data_dir: &dir.join(format!("node{id}")),
        peer_port: peers[id as usize - 1],
        members: initial_members(peers),
        raft: &format!("{FAST_RAFT}write_timeout = \"3s\"\n"),
        smtp_port: smtp,
        hostname: &format!("node{id}.admin.test"),
    };
    let config = head.render()
        + &format!(
            r#"
[delivery]
probe_interval = "500ms"
minimal_backoff_time = "10m"
reporting_mta = "admin.test"

[admin]
listen = "127.0.0.1:{admin}"

[[admin.tokens]]
name = "ops"
secret_file = "{ops}"
permissions = ["view", "queue", "cluster", "read-body"]

[[admin.tokens]]
name = "viewer"
secret_file = "{viewer}"
permissions = ["view"]

[[relay_domains]]
domain = "example.test"
catch_all = true
next_hop = "[127.0.0.1]:{primary}"
"#,
            ops = dir.join("ops.token").display(),
            viewer = dir.join("viewer.token").display(),
        );
    std::fs::write(dir.join(format!("node{id}.toml")), config).unwrap();
}

fn start_fleet(primary: u16) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ops.token"), format!("{OPS_TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("viewer.token"), VIEWER_TOKEN).unwrap();
    std::fs::write(dir.path().join("wrong.token"), "wrong-0123456789abcdef0123").unwrap();
    let peers: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let smtp: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let admin: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=NODES {
        let index = id as usize - 1;
        write_config(dir.path(), id, &peers, smtp[index], admin[index], primary);
        let node = Running::start(
            mxfleet()
                .args(["serve", "--config"])
                .arg(dir.path().join(format!("node{id}.toml"))),
        );
        nodes.insert(id, node);
    }
    for node in nodes.values() {
        node.wait_for_line(&node.stderr, "node_ready", Duration::from_secs(30));
    }
    Fleet {
        dir,
        smtp,
        admin,
        nodes,
    }
}

fn message(n: usize, sender: &str) -> (String, String) {
    let body = format!(
        "Message-ID: <cli-{n}@client.example>\r\nFrom: <{sender}>\r\nSubject: cli {n}\r\n\r\nbody {n}\r\n"
    );
    let script =
        format!("MAIL FROM:<{sender}>\r\nRCPT TO:<user{n}@example.test>\r\nDATA\r\n{body}.\r\n");
    (script, body)
}

/// Submits messages `range` from `sender` in one pipelined session, retrying while
/// the new fleet elects its first leader.
fn submit(port: u16, range: std::ops::Range<usize>, sender: &str) {
    use std::io::{Read, Write};
    let count = range.len();
    let mut script = String::from("EHLO cli.client\r\n");
    for n in range {
        script.push_str(&message(n, sender).0);
    }
    script.push_str("QUIT\r\n");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(script.as_bytes()).unwrap();
        let mut replies = String::new();
        stream.read_to_string(&mut replies).unwrap();
        if replies.matches("queued as").count() == count {
            return;
        }
        assert!(
            Instant::now() < until,
            "the fleet never took the mail: {replies}"
        );
    }
}

fn smtp_banner(port: u16) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut banner = vec![0u8; 512];
    let n = stream.read(&mut banner).unwrap_or(0);
    String::from_utf8_lossy(&banner[..n]).into_owned()
}

fn ids_of(list: &Value) -> Vec<String> {
    list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        // Polling other processes: a pause between checks, not a wait for an event.
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_command_against_a_three_node_fleet() {
    // The primary is down at first: its port is held by a socket that never listens,
    // so no other test's server can answer there in its place.
    let primary_down = DownPort::reserve();
    let primary_port = primary_down.port();
    let mut fleet = start_fleet(primary_port);
    submit(fleet.smtp[0], 0..8, "alice@client.example");
    submit(fleet.smtp[0], 8..12, "spam@bad.example");

    // Status: ask node 1 who leads, then use a follower for everything else.
    let status = fleet.json(1, &["cluster", "status", "--linearizable"]);
    let leader = status["leader"].as_u64().expect("a leader");
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    let follower = (1..=NODES).find(|id| *id != leader).unwrap();
    let other = (1..=NODES)
        .find(|id| *id != leader && *id != follower)
        .unwrap();
    // The leader knows a member's matched index once an append to it has been
    // answered; a member the commits so far did not wait for may not have one yet.
    let mut status = Value::Null;
    wait_until(
        "the leader's view has every member's matched index",
        Duration::from_secs(10),
        || {
            status = fleet.json(follower, &["cluster", "status"]);
            status["members"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["matched_index"].as_u64().is_some())
        },
    );
    assert_eq!(status["answered_by"].as_u64(), Some(follower));
    assert_eq!(status["leader_view"], Value::Bool(true));
    for member in status["members"].as_array().unwrap() {
        assert_eq!(member["membership"], "voter");
        assert_eq!(member["drained"], Value::Bool(false));
    }

    // List, through the follower: 12 live messages, 4 of them from the spammer.
    let list = fleet.json(follower, &["queue", "list", "--linearizable"]);
    assert_eq!(list["total_matched"].as_u64(), Some(12), "{list}");
    let spam = fleet.json(follower, &["queue", "list", "--sender", "@bad.example"]);
    assert_eq!(ids_of(&spam).len(), 4);

    // Show and read one of alice's.
    let alice = fleet.json(
        follower,
        &["queue", "list", "--sender", "alice@client.example"],
    );
    let first = ids_of(&alice)[0].clone();
    let shown = fleet.json(follower, &["queue", "show", &first]);
    assert_eq!(shown["sender"], "alice@client.example");
    assert!(
        shown["headers"].as_str().unwrap().contains("Subject: cli"),
        "{shown}"
    );
    assert_eq!(shown["history"][0]["kind"], "accepted");
    let out = fleet.dir.path().join("body.eml");
    let read = fleet.json(
        follower,
        &["queue", "read", &first, "--out", out.to_str().unwrap()],
    );
    let body = std::fs::read_to_string(&out).unwrap();
    let n: usize = shown["message_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("<cli-")
        .split('@')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body, message(n, "alice@client.example").1);
    assert_eq!(read["bytes"].as_u64(), Some(body.len() as u64));

    // A bulk action needs --yes when no terminal can confirm (exit 2, nothing done).
    let unconfirmed = fleet.cli(follower, &["queue", "hold", "--sender", "@bad.example"]);
    assert_eq!(unconfirmed.status.code(), Some(2));
    let held = fleet.json(
        follower,
        &["queue", "hold", "--sender", "@bad.example", "--yes"],
    );
    assert_eq!(
        (held["matched"].as_u64(), held["done"].as_u64()),
        (Some(4), Some(4))
    );
    let held_list = fleet.json(
        other,
        &["queue", "list", "--state", "held", "--linearizable"],
    );
    assert_eq!(ids_of(&held_list).len(), 4, "every node sees the hold");
    // A held message whose delivery attempt is still under lease is skipped, never
    // deleted under the owner's feet; running the delete again takes it once the
    // attempt has ended.
    let mut deleted = 0;
    wait_until(
        "the 4 held messages deleted",
        Duration::from_secs(30),
        || {
            let pass = fleet.json(follower, &["queue", "delete", "--state", "held", "--yes"]);
            deleted += pass["done"].as_u64().unwrap();
            for note in pass["notes"].as_array().unwrap() {
                assert!(
                    note.as_str().unwrap().contains("is leased to node"),
                    "{pass}"
                );
            }
            deleted >= 4
        },
    );
    assert_eq!(deleted, 4);

    // Tokens: a wrong one is refused; the viewer may look but not change.
    let wrong = fleet.cli_as(follower, "wrong", &["queue", "stats"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("token"));
    let viewer = fleet.cli_as(follower, "viewer", &["queue", "stats"]);
    assert!(viewer.status.success());
    let denied = fleet.cli_as(follower, "viewer", &["queue", "flush"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("\"queue\""),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );

    let stats = fleet.json(follower, &["queue", "stats", "--linearizable"]);
    assert_eq!(stats["total_messages"].as_u64(), Some(8), "{stats}");

    // Drain a node: its SMTP refuses with 421 4.3.2, the status says so; undo.
    let drained_smtp = fleet.smtp[other as usize - 1];
    assert!(smtp_banner(drained_smtp).starts_with("220 "));
    fleet.json(follower, &["cluster", "drain", &other.to_string()]);
    wait_until(
        "the drained node refuses SMTP",
        Duration::from_secs(10),
        || smtp_banner(drained_smtp).starts_with("421 4.3.2"),
    );
    let status = fleet.json(leader, &["cluster", "status", "--linearizable"]);
    let member = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"].as_u64() == Some(other))
        .unwrap()
        .clone();
    assert_eq!(member["drained"], Value::Bool(true));
    assert_eq!(member["delivering"], Value::Bool(false));
    fleet.json(
        follower,
        &["cluster", "drain", &other.to_string(), "--undo"],
    );
    wait_until(
        "the undrained node serves SMTP",
        Duration::from_secs(10),
        || smtp_banner(drained_smtp).starts_with("220 "),
    );

    // The primary comes back; flush; every remaining message is delivered.
    drop(primary_down);
    let sink = SinkMx::start_on(format!("127.0.0.1:{primary_port}").parse().unwrap()).await;
    let flushed = fleet.json(follower, &["queue", "flush", "example.test"]);
    assert!(flushed["made_due"].as_u64().is_some());
    wait_until("8 messages delivered", Duration::from_secs(60), || {
        sink.received_count() >= 8
    });
    wait_until("an empty queue", Duration::from_secs(30), || {
        fleet.json(follower, &["queue", "list"])["total_matched"].as_u64() == Some(0)
    });

    // Transfer leadership to the follower.
    let moved = fleet.json(
        leader,
        &["cluster", "transfer-leader", &follower.to_string()],
    );
    assert_eq!(moved["leader"].as_u64(), Some(follower), "{moved}");

    // Lose the quorum: the survivor still answers local reads, and refuses writes and
    // linearizable reads as unavailable (69).
    let survivor = other;
    for id in 1..=NODES {
        if id != survivor {
            let mut node = fleet.nodes.remove(&id).unwrap();
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
    assert!(fleet.cli(survivor, &["queue", "list"]).status.success());
    let write = fleet.cli(survivor, &["queue", "flush"]);
    assert_eq!(write.status.code(), Some(69), "{write:?}");
    let linearizable = fleet.cli(survivor, &["queue", "stats", "--linearizable"]);
    assert_eq!(linearizable.status.code(), Some(69));
    // A node that is not there at all.
    let gone = fleet.cli(leader, &["cluster", "status"]);
    assert_eq!(gone.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("MXFLEET_ENDPOINT"));
}
