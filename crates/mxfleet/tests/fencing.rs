//! Fencing with real processes and real signals: SIGSTOP a delivery owner for longer
//! than its lease, let the others take its work over, then SIGCONT it. The thawed node
//! must not deliver anything it was assigned before: its leases ran out, and a lease
//! that ran out means no new attempt and no final dot. Every message still reaches the
//! primary, and each node's deliveries are told apart by its own source address
//! (`smtp_bind_address`).

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{ConfigHead, FAST_RAFT, Running, free_port, initial_members, mxfleet};
use mxfleet_testkit::sink::{Behavior, SinkMx};

const NODES: u64 = 3;
const MESSAGES: usize = 120;
const LEASE: Duration = Duration::from_secs(4);

fn source_address(id: u64) -> IpAddr {
    format!("127.0.0.{}", 10 + id).parse().unwrap()
}

fn write_config(dir: &Path, id: u64, peers: &[u16], smtp_port: u16, primary: u16) {
    let head = ConfigHead {
        id,
        site: &format!("site-{id}"),
        data_dir: &dir.join(format!("node{id}")),
        peer_port: peers[id as usize - 1],
        members: initial_members(peers),
        raft: FAST_RAFT,
        smtp_port,
        hostname: &format!("node{id}.fencing.test"),
    };
    let config = head.render()
        + &format!(
            r#"
[delivery]
lease = "{lease}s"
clock_drift_bound = "500ms"
dot_margin = "500ms"
contact_timeout = "2s"
probe_interval = "500ms"
node_dead_after = "1s"
smtp_bind_address = "{source}"
reporting_mta = "fencing.test"
default_destination_concurrency_limit = 9

[[relay_domains]]
domain = "example.test"
catch_all = true
next_hop = "[127.0.0.1]:{primary}"
"#,
            lease = LEASE.as_secs(),
            source = source_address(id),
        );
    std::fs::write(dir.join(format!("node{id}.toml")), config).unwrap();
}

/// Sends `count` messages in one pipelined session; returns the replies.
fn send_messages(port: u16, count: usize) -> String {
    use std::io::{Read, Write};
    let mut script = String::from("EHLO fencing.client\r\n");
    for n in 0..count {
        script.push_str(&format!(
            "MAIL FROM:<sender@client.example>\r\nRCPT TO:<user{n}@example.test>\r\nDATA\r\nMessage-ID: <fence-{n}@client.example>\r\nSubject: fence {n}\r\n\r\nbody {n}\r\n.\r\n"
        ));
    }
    script.push_str("QUIT\r\n");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("smtp connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(script.as_bytes()).unwrap();
    let mut replies = String::new();
    stream.read_to_string(&mut replies).unwrap();
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_thawed_after_its_lease_ran_out_does_not_deliver_its_stale_assignments() {
    // A slow final reply keeps deliveries in flight and assignments waiting.
    let sink = SinkMx::builder()
        .behavior(Behavior::slow(Duration::from_millis(250)))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let peers: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let smtp_ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let mut nodes: BTreeMap<u64, Running> = BTreeMap::new();
    for id in 1..=NODES {
        write_config(
            dir.path(),
            id,
            &peers,
            smtp_ports[id as usize - 1],
            sink.addr().port(),
        );
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

    // Submit the batch (retrying while the new cluster elects its first leader).
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let replies = send_messages(smtp_ports[0], MESSAGES);
        if replies.matches("queued as").count() == MESSAGES {
            break;
        }
        assert!(
            Instant::now() < until,
            "the fleet never took the batch: {replies}"
        );
    }

    // Freeze a node that is delivering.
    let mut victim = None;
    let until = Instant::now() + Duration::from_secs(30);
    while victim.is_none() {
        assert!(Instant::now() < until, "no node started delivering");
        victim = (1..=NODES).find(|id| {
            sink.received()
                .iter()
                .filter(|m| m.client.ip() == source_address(*id))
                .count()
                >= 2
        });
        tokio::task::yield_now().await;
    }
    let victim = victim.unwrap();
    nodes[&victim].signal("STOP");
    let stopped = Instant::now();

    // The others take its work over once its leases have lapsed, and finish the batch.
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let mut ids: Vec<String> = sink
            .received()
            .into_iter()
            .filter_map(|m| m.message_id)
            .collect();
        ids.sort();
        ids.dedup();
        if ids.len() == MESSAGES {
            break;
        }
        assert!(
            Instant::now() < until,
            "only {} of {MESSAGES} delivered while node {victim} was stopped",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Keep it frozen for well over a lease plus the drift bound in any case.
    tokio::time::sleep_until((stopped + LEASE * 2).into()).await;

    nodes[&victim].signal("CONT");
    let thawed = Instant::now();
    // It wakes up with stale work and drops it without delivering. Its work was taken
    // over and committed by the others meanwhile, so nothing is left to give it: any
    // delivery from it now would be stale work. "Nothing happens" can only be observed
    // over time, so watch for one more lease.
    nodes[&victim].wait_for_line(
        &nodes[&victim].stderr,
        "delivery_abandoned",
        Duration::from_secs(20),
    );
    tokio::time::sleep(LEASE).await;
    let after_thaw: Vec<String> = sink
        .received()
        .into_iter()
        .filter(|m| m.client.ip() == source_address(victim) && m.received_at > thawed)
        .filter_map(|m| m.message_id)
        .collect();
    let victim_log = || {
        let mut lines = Vec::new();
        while let Ok(line) = nodes[&victim].stderr.try_recv() {
            lines.push(line);
        }
        lines[lines.len().saturating_sub(60)..].join("\n")
    };
    assert!(
        after_thaw.is_empty(),
        "node {victim} delivered after its leases ran out: {after_thaw:?}\n{}",
        victim_log()
    );
    let received = sink.received();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for message in &received {
        *per_id
            .entry(message.message_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    eprintln!(
        "node {victim} frozen for {:?}: {} deliveries, {duplicates} duplicates (dots in flight at SIGSTOP)",
        thawed - stopped,
        received.len()
    );
    assert_eq!(per_id.len(), MESSAGES);
    // Only a message whose final dot was on the wire at SIGSTOP can arrive twice.
    assert!(duplicates <= 3, "{duplicates} duplicates");
    for (_, mut node) in nodes {
        node.signal("TERM");
        assert_eq!(node.wait_exit(Duration::from_secs(30)), 0);
    }
}
