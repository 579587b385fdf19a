//! Backup and disaster recovery end to end, with real `mxfleet serve` processes: a
//! three-node fleet queues mail while its primary is down; `cluster snapshot` writes an
//! archive holding every queued message and body (and is refused without `read-body`);
//! two nodes are SIGKILLed for good; the stopped survivor is recovered with
//! `cluster recover` (refused without the flag and while it runs), leads alone with
//! every acknowledged message, takes new mail, and delivers it all once the primary is
//! back. The archive restored on a fresh node with an empty data directory gives the
//! same queue.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{ConfigHead, DownPort, FAST_RAFT, Running, free_port, initial_members, mxfleet};
use mxfleet_core::BodyDigest;
use mxfleet_queue::backup_archive::{ArchiveEvent, ArchiveReader};
use mxfleet_testkit::sink::SinkMx;
use serde_json::Value;

const OPS_TOKEN: &str = "ops-0123456789abcdef0123456789";
const NO_BODY_TOKEN: &str = "nobody-0123456789abcdef01234";
const MESSAGES: usize = 5;

struct Ports {
    peer: u16,
    smtp: u16,
    admin: u16,
}

fn write_config(dir: &Path, id: u64, ports: &Ports, members: &str, primary: u16) -> PathBuf {
    let head = ConfigHead {
        id,
        site: &format!("site-{id}"),
        data_dir: &dir.join(format!("node{id}")),
        peer_port: ports.peer,
        members: members.to_string(),
        raft: &format!("{FAST_RAFT}write_timeout = \"3s\"\n"),
        smtp_port: ports.smtp,
        hostname: &format!("node{id}.backup.test"),
    };
    let config = head.render()
        + &format!(
            r#"
[delivery]
probe_interval = "500ms"
minimal_backoff_time = "10m"
reporting_mta = "backup.test"

[admin]
listen = "127.0.0.1:{admin}"

[[admin.tokens]]
name = "ops"
secret_file = "{ops}"
permissions = ["view", "queue", "cluster", "read-body"]

[[admin.tokens]]
name = "nobody"
secret_file = "{nobody}"
permissions = ["view", "cluster"]

[[relay_domains]]
domain = "example.test"
catch_all = true
next_hop = "[127.0.0.1]:{primary}"
"#,
            admin = ports.admin,
            ops = dir.join("ops.token").display(),
            nobody = dir.join("nobody.token").display(),
        );
    let path = dir.join(format!("node{id}.toml"));
    std::fs::write(&path, config).unwrap();
    path
}

fn serve(config: &Path) -> Running {
    let node = Running::start(mxfleet().args(["serve", "--config"]).arg(config));
    node.wait_for_line(&node.stderr, "node_ready", Duration::from_secs(30));
    node
}

fn cli(dir: &Path, admin: u16, token: &str, args: &[&str]) -> Output {
    mxfleet()
        .args(args)
        .args(["--json", "--timeout", "20s"])
        .env("MXFLEET_ENDPOINT", format!("http://127.0.0.1:{admin}"))
        .env("MXFLEET_TOKEN_FILE", dir.join(format!("{token}.token")))
        .env_remove("MXFLEET_TOKEN")
        .output()
        .expect("the CLI runs")
}

fn json(output: &Output, what: &str) -> Value {
    assert!(
        output.status.success(),
        "{what} failed ({:?}): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn recover(config: &Path, extra: &[&str]) -> Output {
    mxfleet()
        .args(["cluster", "recover", "--json", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .expect("recover runs")
}

/// Submits messages `range` in one pipelined session, retrying until all are queued.
fn submit(port: u16, range: std::ops::Range<usize>) {
    use std::io::{Read, Write};
    let count = range.len();
    let mut script = String::from("EHLO backup.client\r\n");
    for n in range {
        script.push_str(&format!(
            "MAIL FROM:<alice@client.example>\r\nRCPT TO:<user{n}@example.test>\r\nDATA\r\n\
             Message-ID: <bk-{n}@client.example>\r\nSubject: backup {n}\r\n\r\nbody {n}\r\n.\r\n"
        ));
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
        assert!(Instant::now() < until, "the mail was not taken: {replies}");
    }
}

fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        // Polling other processes: a pause between checks, not a wait for an event.
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

fn ids(list: &Value) -> BTreeSet<String> {
    list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

fn blob_count(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("bodies").join("blobs"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Parses an archive file: its bodies by digest, and its metadata section.
fn parse_archive(path: &Path) -> (Value, BTreeMap<BodyDigest, Vec<u8>>, Vec<u8>) {
    let mut reader = ArchiveReader::new();
    reader.push(&std::fs::read(path).unwrap());
    let (mut header, mut bodies, mut metadata) = (Value::Null, BTreeMap::new(), Vec::new());
    let mut current = Vec::new();
    while let Some(event) = reader.next_event().expect("a valid archive") {
        match event {
            ArchiveEvent::Header(h) => {
                header = serde_json::json!({ "live_entries": h.live_entries, "bodies": h.bodies });
            }
            ArchiveEvent::Metadata(piece) => metadata.extend(piece),
            ArchiveEvent::BlobStart { .. } => current.clear(),
            ArchiveEvent::BlobData(bytes) => current.extend(bytes),
            ArchiveEvent::BlobEnd { digest } => {
                bodies.insert(digest, std::mem::take(&mut current));
            }
            ArchiveEvent::Trailer(t) => assert!(t.missing.is_empty(), "{t:?}"),
            ArchiveEvent::End => {}
        }
    }
    reader.finish().expect("complete");
    (header, bodies, metadata)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_survivor_recovers_the_queue_and_a_snapshot_restores_it_elsewhere() {
    let primary_down = DownPort::reserve();
    let primary = primary_down.port();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("ops.token"), format!("{OPS_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("nobody.token"), NO_BODY_TOKEN).unwrap();
    let ports: Vec<Ports> = (0..3)
        .map(|_| Ports {
            peer: free_port(),
            smtp: free_port(),
            admin: free_port(),
        })
        .collect();
    let peers: Vec<u16> = ports.iter().map(|p| p.peer).collect();
    let members = initial_members(&peers);
    let configs: Vec<PathBuf> = (1..=3u64)
        .map(|id| write_config(dir, id, &ports[id as usize - 1], &members, primary))
        .collect();
    let mut nodes: BTreeMap<u64, Running> = BTreeMap::new();
    for (i, config) in configs.iter().enumerate() {
        nodes.insert(
            i as u64 + 1,
            Running::start(mxfleet().args(["serve", "--config"]).arg(config)),
        );
    }
    for node in nodes.values() {
        node.wait_for_line(&node.stderr, "node_ready", Duration::from_secs(30));
    }
    submit(ports[0].smtp, 0..MESSAGES);
    let admin1 = ports[0].admin;
    let held = json(
        &cli(
            dir,
            admin1,
            "ops",
            &["queue", "hold", "--sender", "alice@client.example", "--yes"],
        ),
        "queue hold",
    );
    assert!(held.is_object(), "{held}");

    // The survivor, node 3, holds every acknowledged message and body before the loss.
    let survivor = 3u64;
    let admin3 = ports[2].admin;
    let survivor_dir = dir.join("node3");
    let mut acknowledged = BTreeSet::new();
    wait_until(
        "the survivor holds every message and body",
        Duration::from_secs(30),
        || {
            acknowledged = ids(&json(&cli(dir, admin3, "ops", &["queue", "list"]), "list"));
            acknowledged.len() == MESSAGES && blob_count(&survivor_dir) >= MESSAGES
        },
    );

    // (a) A snapshot through the survivor (linearizable: it asks the leader first).
    let archive = dir.join("fleet.mxfbak");
    let out = archive.to_str().unwrap();
    let taken = json(
        &cli(dir, admin3, "ops", &["cluster", "snapshot", "--out", out]),
        "cluster snapshot",
    );
    assert_eq!(taken["complete"], Value::Bool(true), "{taken}");
    assert_eq!(
        taken["live_entries"].as_u64(),
        Some(MESSAGES as u64),
        "{taken}"
    );
    assert!(!dir.join("fleet.mxfbak.tmp").exists());
    let (header, bodies, metadata) = parse_archive(&archive);
    assert_eq!(header["live_entries"].as_u64(), Some(MESSAGES as u64));
    for id in &acknowledged {
        let shown = json(&cli(dir, admin3, "ops", &["queue", "show", id]), "show");
        let recipient = shown["recipients"][0]["address"]
            .as_str()
            .or_else(|| shown["recipients"][0].as_str())
            .unwrap_or_else(|| panic!("no recipient in {shown}"))
            .to_owned();
        assert!(
            metadata
                .windows(recipient.len())
                .any(|w| w == recipient.as_bytes()),
            "{recipient} is not in the archive's metadata"
        );
        let body_file = dir.join(format!("{id}.eml"));
        json(
            &cli(
                dir,
                admin3,
                "ops",
                &["queue", "read", id, "--out", body_file.to_str().unwrap()],
            ),
            "read",
        );
        let body = std::fs::read(&body_file).unwrap();
        assert_eq!(
            bodies.get(&BodyDigest::of(&body)),
            Some(&body),
            "body of {id}"
        );
    }
    // Without read-body: refused, and no file is left behind.
    let denied_out = dir.join("denied.mxfbak");
    let denied = cli(
        dir,
        admin3,
        "nobody",
        &["cluster", "snapshot", "--out", denied_out.to_str().unwrap()],
    );
    assert_eq!(denied.status.code(), Some(1), "{denied:?}");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("read-body"));
    assert!(!denied_out.exists() && !dir.join("denied.mxfbak.tmp").exists());

    // (b) Lose the majority for good, then stop the survivor.
    for id in [1u64, 2] {
        let mut node = nodes.remove(&id).unwrap();
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
    let refused = recover(&configs[2], &["--yes-i-have-lost-the-majority"]);
    assert_eq!(refused.status.code(), Some(1), "while running: {refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("seems to be running"));
    let mut node3 = nodes.remove(&survivor).unwrap();
    node3.signal("TERM");
    assert_eq!(node3.wait_exit(Duration::from_secs(40)), 0);
    drop(node3);

    let unconfirmed = recover(&configs[2], &[]);
    assert_eq!(unconfirmed.status.code(), Some(2), "{unconfirmed:?}");
    let stderr = String::from_utf8_lossy(&unconfirmed.stderr);
    assert!(
        stderr.contains("DELIVERED TWICE") && stderr.contains("LOST"),
        "{stderr}"
    );
    let recovered = json(
        &recover(&configs[2], &["--yes-i-have-lost-the-majority"]),
        "cluster recover",
    );
    assert_eq!(
        recovered["live_entries"].as_u64(),
        Some(MESSAGES as u64),
        "{recovered}"
    );
    assert_eq!(
        recovered["missing_bodies"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(recovered["previous_voters"], serde_json::json!([1, 2, 3]));

    let node3 = serve(&configs[2]);
    wait_until("the survivor leads alone", Duration::from_secs(30), || {
        let status = json(&cli(dir, admin3, "ops", &["cluster", "status"]), "status");
        status["leader"].as_u64() == Some(survivor)
            && status["members"].as_array().map(Vec::len) == Some(1)
    });
    let list = json(
        &cli(dir, admin3, "ops", &["queue", "list", "--linearizable"]),
        "list",
    );
    assert_eq!(ids(&list), acknowledged);
    submit(ports[2].smtp, MESSAGES..MESSAGES + 1);

    // (c) The archive on a fresh node with an empty data directory: the same queue.
    let fresh = Ports {
        peer: free_port(),
        smtp: free_port(),
        admin: free_port(),
    };
    let fresh_config = write_config(dir, 9, &fresh, &initial_members_of(9, fresh.peer), primary);
    let restored = json(
        &recover(
            &fresh_config,
            &["--from-snapshot", out, "--yes-i-have-lost-the-majority"],
        ),
        "recover --from-snapshot",
    );
    assert_eq!(
        restored["restored_bodies"].as_u64(),
        Some(MESSAGES as u64),
        "{restored}"
    );
    let mut node9 = serve(&fresh_config);
    let list = json(
        &cli(
            dir,
            fresh.admin,
            "ops",
            &["queue", "list", "--linearizable"],
        ),
        "list",
    );
    assert_eq!(ids(&list), acknowledged);
    node9.signal("TERM");
    assert_eq!(node9.wait_exit(Duration::from_secs(40)), 0);

    // The primary comes back: everything the survivor holds is delivered.
    drop(primary_down);
    let sink = SinkMx::start_on(format!("127.0.0.1:{primary}").parse().unwrap()).await;
    json(
        &cli(
            dir,
            admin3,
            "ops",
            &[
                "queue",
                "release",
                "--sender",
                "alice@client.example",
                "--yes",
            ],
        ),
        "release",
    );
    json(&cli(dir, admin3, "ops", &["queue", "flush"]), "flush");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: BTreeSet<String> = sink
            .received()
            .into_iter()
            .filter_map(|m| m.message_id)
            .collect();
        if delivered.len() == MESSAGES + 1 {
            break;
        }
        if Instant::now() >= until {
            let log: Vec<String> = node3.stderr.try_iter().collect();
            let status = cli(dir, admin3, "ops", &["queue", "list"]);
            let left = json(&status, "list");
            let shown: Vec<String> = ids(&left)
                .iter()
                .map(|id| {
                    let show = cli(dir, admin3, "ops", &["queue", "show", id]);
                    String::from_utf8_lossy(&show.stdout).into_owned()
                })
                .collect();
            eprintln!("left in the queue:\n{}", shown.join("\n"));
            panic!(
                "timed out waiting for every message delivered ({} of {}); queue: {}\nnode 3's log:\n{}",
                delivered.len(),
                MESSAGES + 1,
                String::from_utf8_lossy(&status.stdout),
                log.join("\n")
            );
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    let mut node3 = node3;
    node3.signal("TERM");
    assert_eq!(node3.wait_exit(Duration::from_secs(40)), 0);
}

/// `initial_members` for a one-node fleet of node `id` (site `site-{id}`).
fn initial_members_of(id: u64, peer: u16) -> String {
    format!(r#"{{ id = {id}, addr = "127.0.0.1:{peer}", site = "site-{id}" }}"#)
}
