//! End-to-end tests of Raft log damage: real nodes in this process, real gRPC on
//! loopback, real WAL files. A node whose log fails its checksums at start sets the log
//! aside and comes back from its peers with every committed entry and its vote; a node
//! restarted without damage moves nothing aside.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mxfleet_core::{Envelope, QueueId};
use mxfleet_queue::QueueConfig;
use mxfleet_testkit::{QueueCluster, init_test_logging, wait_for};

fn envelope(n: usize) -> Envelope {
    Envelope {
        sender: format!("sender{n}@client.example"),
        recipients: vec![format!("user{n}@example.org")],
        message_id: Some(format!("<log-{n}@client.example>")),
        trace: None,
    }
}

fn body(n: usize) -> Vec<u8> {
    format!("Subject: log {n}\r\nMessage-ID: <log-{n}@client.example>\r\n\r\nbody {n}\r\n")
        .into_bytes()
}

/// Enqueues messages `numbers` through node `via`; returns their ids.
async fn enqueue(
    cluster: &QueueCluster,
    via: u64,
    numbers: std::ops::Range<usize>,
) -> BTreeSet<QueueId> {
    let mut ids = BTreeSet::new();
    for n in numbers {
        let receipt = cluster
            .queue(via)
            .enqueue_bytes(envelope(n), &body(n))
            .await
            .expect("acknowledged");
        ids.insert(receipt.id);
    }
    ids
}

/// Waits until node `id` has applied exactly `ids`.
async fn wait_for_entries(cluster: &QueueCluster, id: u64, ids: &BTreeSet<QueueId>) {
    wait_for(
        &format!("node {id} to hold {} entries", ids.len()),
        Duration::from_secs(20),
        || {
            let held: BTreeSet<QueueId> =
                cluster.queue(id).entries().iter().map(|e| e.id).collect();
            &held == ids
        },
    )
    .await;
}

/// The WAL chunk files of node `id`, largest first.
fn chunk_files(cluster: &QueueCluster, id: u64) -> Vec<PathBuf> {
    let mut chunks: Vec<(u64, PathBuf)> = std::fs::read_dir(cluster.data_dir(id).join("raft-log"))
        .expect("log directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .map(|path| (std::fs::metadata(&path).expect("chunk").len(), path))
        .collect();
    chunks.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
    chunks.into_iter().map(|(_, path)| path).collect()
}

fn quarantined(data_dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(data_dir.join("quarantine")) {
        Ok(dirs) => dirs.map(|d| d.expect("directory entry").path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn follower_of(cluster: &QueueCluster, leader: u64) -> u64 {
    cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_whose_log_has_a_flipped_byte_rejoins_with_every_committed_entry() {
    init_test_logging();
    // Small snapshots, so that the leader has purged the start of its log and the
    // repair needs a snapshot install followed by log replication.
    let mut cluster = QueueCluster::start_tuned(
        3,
        Arc::new(|config: &mut QueueConfig| config.snapshot_every = 20),
    )
    .await;
    let leader = cluster.wait_for_leader().await;
    let victim = follower_of(&cluster, leader);
    let mut acknowledged = enqueue(&cluster, leader, 0..45).await;
    wait_for_entries(&cluster, victim, &acknowledged).await;
    wait_for(
        "the leader to purge its log",
        Duration::from_secs(15),
        || {
            cluster
                .queue(leader)
                .status()
                .purged_index
                .is_some_and(|p| p > 0)
        },
    )
    .await;
    let term_before = cluster.queue(victim).status().term;
    cluster.stop(victim).await;

    // A bad disk: one byte in the middle of the victim's largest log chunk.
    let chunk = chunk_files(&cluster, victim)
        .into_iter()
        .next()
        .expect("a chunk file");
    let mut bytes = std::fs::read(&chunk).expect("read chunk");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&chunk, &bytes).expect("write chunk");
    // The fleet keeps accepting mail while the victim is down.
    acknowledged.extend(enqueue(&cluster, leader, 45..50).await);

    cluster.restart(victim).await;
    let data_dir = cluster.data_dir(victim);
    let quarantine = quarantined(&data_dir);
    assert_eq!(
        quarantine.len(),
        1,
        "one quarantine directory: {quarantine:?}"
    );
    assert!(
        quarantine[0]
            .join("raft-log")
            .join(chunk.file_name().expect("chunk name"))
            .exists(),
        "the damaged chunk is kept for inspection"
    );
    assert_eq!(cluster.queue(victim).metrics().raft_log_recoveries(), 1);

    wait_for_entries(&cluster, victim, &acknowledged).await;
    wait_for(
        "the victim to follow the leader again",
        Duration::from_secs(15),
        || {
            let status = cluster.queue(victim).status();
            status.role == "follower" && status.leader == Some(leader)
        },
    )
    .await;
    let status = cluster.queue(victim).status();
    assert!(
        status.term >= term_before,
        "term went back: {} < {term_before}",
        status.term
    );
    // Same applied state as the leader, entry for entry, once both applied as far.
    wait_for(
        "the victim to apply as far as the leader",
        Duration::from_secs(15),
        || {
            cluster.queue(victim).status().last_applied_index
                == cluster.queue(leader).status().last_applied_index
        },
    )
    .await;
    assert_eq!(
        cluster.queue(victim).entries(),
        cluster.queue(leader).entries()
    );
    for entry in cluster.queue(victim).entries() {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while cluster.queue(victim).body(&entry.body).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the victim lacks the body of {}",
                entry.id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The repaired node takes part in new writes, and a later clean restart is quiet.
    acknowledged.extend(enqueue(&cluster, victim, 50..53).await);
    wait_for_entries(&cluster, victim, &acknowledged).await;
    cluster.stop(victim).await;
    cluster.restart(victim).await;
    assert_eq!(quarantined(&data_dir).len(), 1);
    assert_eq!(cluster.queue(victim).metrics().raft_log_recoveries(), 0);
    wait_for_entries(&cluster, victim, &acknowledged).await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clean_restart_moves_nothing_aside() {
    init_test_logging();
    let mut cluster = QueueCluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let victim = follower_of(&cluster, leader);
    let mut acknowledged = enqueue(&cluster, leader, 0..10).await;
    wait_for_entries(&cluster, victim, &acknowledged).await;
    let term_before = cluster.queue(victim).status().term;
    cluster.stop(victim).await;
    acknowledged.extend(enqueue(&cluster, leader, 10..15).await);
    cluster.restart(victim).await;
    assert!(quarantined(&cluster.data_dir(victim)).is_empty());
    assert_eq!(cluster.queue(victim).metrics().raft_log_recoveries(), 0);
    wait_for_entries(&cluster, victim, &acknowledged).await;
    assert!(cluster.queue(victim).status().term >= term_before);
    cluster.stop_all().await;
}
