//! End-to-end tests of the replicated queue: real nodes in this process, real gRPC on
//! loopback, real fsynced files. Each test states the promise it checks.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mxfleet_core::{
    AttemptReport, Envelope, OutcomeStatus, QueueId, RecipientOutcome, Rejection, UnixMillis,
};
use mxfleet_queue::{Queue, QueueConfig, QueueError};
use mxfleet_testkit::{QueueCluster, init_test_logging, wait_for};

fn envelope(n: usize) -> Envelope {
    Envelope {
        sender: format!("sender{n}@client.example"),
        recipients: vec![
            format!("user{n}@example.org"),
            "postmaster@example.org".into(),
        ],
        message_id: Some(format!("<msg-{n}@client.example>")),
        trace: None,
    }
}

fn body(n: usize) -> Vec<u8> {
    format!("Subject: test {n}\r\nMessage-ID: <msg-{n}@client.example>\r\n\r\nbody {n}\r\n")
        .repeat(4)
        .into_bytes()
}

/// Waits until node `id` has applied exactly `ids` (and nothing else).
async fn wait_for_entries(cluster: &QueueCluster, id: u64, ids: &BTreeSet<QueueId>) {
    wait_for(
        &format!("node {id} to hold {} entries", ids.len()),
        Duration::from_secs(15),
        || {
            let held: BTreeSet<QueueId> =
                cluster.queue(id).entries().iter().map(|e| e.id).collect();
            &held == ids
        },
    )
    .await;
}

/// Waits until node `id` holds the body of every entry it knows, byte for byte.
async fn assert_bodies_present(cluster: &QueueCluster, id: u64) {
    let queue = cluster.queue(id);
    let deadline = Instant::now() + Duration::from_secs(15);
    for entry in queue.entries() {
        loop {
            match queue.body(&entry.body).await {
                Ok(bytes) => {
                    assert_eq!(
                        bytes.len() as u64,
                        entry.size,
                        "body size of {} on node {id}",
                        entry.id
                    );
                    assert_eq!(mxfleet_core::BodyDigest::of(&bytes), entry.body);
                    break;
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("node {id} lacks the body of {}: {e}", entry.id),
            }
        }
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
async fn acknowledged_entries_survive_leader_loss_and_full_restart() {
    init_test_logging();
    let mut cluster = QueueCluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = follower_of(&cluster, leader);

    // Enqueue through a follower: the write is forwarded to the leader.
    let mut acknowledged = BTreeSet::new();
    for n in 0..20 {
        let receipt = cluster
            .queue(follower)
            .enqueue_bytes(envelope(n), &body(n))
            .await
            .unwrap();
        assert!(!receipt.duplicate);
        acknowledged.insert(receipt.id);
    }
    for id in cluster.running() {
        wait_for_entries(&cluster, id, &acknowledged).await;
        assert_bodies_present(&cluster, id).await;
    }

    // Lose the leader: the other two elect a new one and keep every entry.
    cluster.stop(leader).await;
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, leader);
    for id in cluster.running() {
        wait_for_entries(&cluster, id, &acknowledged).await;
    }
    // Two of three still make a quorum for new mail.
    for n in 20..25 {
        let receipt = cluster
            .queue(new_leader)
            .enqueue_bytes(envelope(n), &body(n))
            .await
            .unwrap();
        acknowledged.insert(receipt.id);
    }

    // The old leader comes back and catches up.
    cluster.restart(leader).await;
    wait_for_entries(&cluster, leader, &acknowledged).await;
    assert_bodies_present(&cluster, leader).await;

    // Every node restarts from disk alone.
    cluster.stop_all().await;
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    cluster.wait_for_leader().await;
    for id in 1..=3 {
        wait_for_entries(&cluster, id, &acknowledged).await;
        assert_bodies_present(&cluster, id).await;
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_submission_retried_through_another_node_is_stored_once() {
    init_test_logging();
    let mut cluster = QueueCluster::start(3).await;
    let first = cluster
        .queue(1)
        .enqueue_bytes(envelope(7), &body(7))
        .await
        .unwrap();
    let again = cluster
        .queue(2)
        .enqueue_bytes(envelope(7), &body(7))
        .await
        .unwrap();
    let third = cluster
        .queue(3)
        .enqueue_bytes(envelope(7), &body(7))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate && third.duplicate);
    assert_eq!((again.id, third.id), (first.id, first.id));
    // A different body under the same Message-ID is a different submission.
    let changed = cluster
        .queue(2)
        .enqueue_bytes(envelope(7), b"other body\r\n")
        .await
        .unwrap();
    assert!(!changed.duplicate);
    let expected = BTreeSet::from([first.id, changed.id]);
    for id in 1..=3 {
        wait_for_entries(&cluster, id, &expected).await;
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_catches_up_from_a_snapshot_and_pulls_bodies() {
    init_test_logging();
    let mut cluster = QueueCluster::start_tuned(
        3,
        Arc::new(|config: &mut QueueConfig| config.snapshot_every = 20),
    )
    .await;
    let acknowledged = enqueue_numbered(&cluster, 0..60).await;
    let leader = cluster.wait_for_leader().await;
    // The leader has snapshotted and purged the start of its log, so a newcomer cannot
    // be brought up from the log alone.
    wait_for(
        "the leader to purge log entries",
        Duration::from_secs(15),
        || {
            cluster
                .queue(leader)
                .status()
                .purged_index
                .is_some_and(|p| p > 5)
        },
    )
    .await;

    let newcomer = cluster.start_spare_node().await;
    let addr = cluster.queue(newcomer).advertise_addr().to_string();
    cluster
        .queue(2)
        .add_learner(newcomer, &addr, "site-d")
        .await
        .unwrap();
    wait_for_entries(&cluster, newcomer, &acknowledged).await;
    assert!(
        cluster.queue(newcomer).status().snapshot_index.is_some(),
        "the newcomer must have installed a snapshot"
    );
    // Its bodies came over the blob side channel (it was never pushed any).
    assert_bodies_present(&cluster, newcomer).await;

    cluster.queue(3).promote(newcomer).await.unwrap();
    wait_for(
        "the newcomer to be a voter",
        Duration::from_secs(10),
        || {
            cluster
                .queue(leader)
                .status()
                .members
                .iter()
                .any(|m| m.id == newcomer && m.voter)
        },
    )
    .await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_answers_no_quorum_within_a_bounded_time() {
    init_test_logging();
    let mut cluster = QueueCluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let receipt = cluster
        .queue(leader)
        .enqueue_bytes(envelope(1), &body(1))
        .await
        .unwrap();
    // Leave the old leader alone: its lease runs out and it must stop accepting.
    for id in cluster.running() {
        if id != leader {
            cluster.stop(id).await;
        }
    }
    let lonely = cluster.queue(leader);
    let write_timeout = cluster.config(leader).write_timeout;
    let blob_timeout = cluster.config(leader).blob_quorum_timeout;

    let started = Instant::now();
    let result = lonely.enqueue_bytes(envelope(2), &body(2)).await;
    assert!(
        matches!(result, Err(QueueError::NoQuorum { .. })),
        "got {result:?}"
    );
    assert!(started.elapsed() < blob_timeout + write_timeout + Duration::from_secs(2));

    // A write that needs no body goes through Raft itself and still fails in time.
    let started = Instant::now();
    let result = lonely.hold(receipt.id).await;
    assert!(
        matches!(result, Err(QueueError::NoQuorum { .. })),
        "got {result:?}"
    );
    assert!(started.elapsed() < write_timeout + Duration::from_secs(2));
    // Nothing that failed was applied.
    assert_eq!(lonely.len(), 1);
    assert_eq!(
        lonely.entry(receipt.id).unwrap().state,
        mxfleet_core::MessageState::Queued
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_with_a_stale_fencing_token_are_rejected() {
    init_test_logging();
    let mut cluster = QueueCluster::start(3).await;
    let queue = cluster.queue(2).clone();
    let receipt = queue.enqueue_bytes(envelope(1), &body(1)).await.unwrap();
    let expired_lease = UnixMillis(1); // already over: the message may be reassigned
    let (first, _) = queue
        .assign(vec![receipt.id], 2, expired_lease, 1)
        .await
        .unwrap();
    let (second, assigned) = queue
        .assign(vec![receipt.id], 3, UnixMillis(u64::MAX), 1)
        .await
        .unwrap();
    assert_eq!(assigned, vec![receipt.id]);
    assert!(second > first);
    let stale = report_delivered(&queue, receipt.id, first).await;
    assert!(
        matches!(&stale[..], [Rejection::StaleToken { token, .. }] if *token == first),
        "got {stale:?}"
    );
    // Another node cannot take it while the lease holds.
    let (_, taken) = queue
        .assign(vec![receipt.id], 1, UnixMillis(u64::MAX), 1)
        .await
        .unwrap();
    assert!(taken.is_empty());
    assert!(
        report_delivered(&queue, receipt.id, second)
            .await
            .is_empty()
    );
    let entry = queue.entry(receipt.id).unwrap();
    assert_eq!(entry.state, mxfleet_core::MessageState::Delivered);
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_on_request_and_a_removed_node_leaves_the_membership() {
    init_test_logging();
    let mut cluster = QueueCluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let target = follower_of(&cluster, leader);
    cluster.queue(target).transfer_leader(target).await.unwrap();
    wait_for("leadership to move", Duration::from_secs(10), || {
        cluster.queue(leader).status().leader == Some(target)
    })
    .await;

    let removed = cluster
        .running()
        .into_iter()
        .find(|id| *id != target)
        .unwrap();
    cluster.queue(removed).remove(removed).await.unwrap();
    wait_for(
        "the removed node to leave the membership",
        Duration::from_secs(10),
        || {
            cluster
                .queue(target)
                .status()
                .members
                .iter()
                .all(|m| m.id != removed)
        },
    )
    .await;
    // The remaining two still form a cluster that accepts mail.
    cluster
        .queue(target)
        .enqueue_bytes(envelope(1), &body(1))
        .await
        .unwrap();
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_are_collected_once_finished_and_covered_by_a_snapshot() {
    init_test_logging();
    let mut cluster = QueueCluster::start_tuned(
        3,
        Arc::new(|config: &mut QueueConfig| config.body_gc_grace = Duration::ZERO),
    )
    .await;
    let queue = cluster.queue(1).clone();
    let delivered = queue.enqueue_bytes(envelope(1), &body(1)).await.unwrap();
    let waiting = queue.enqueue_bytes(envelope(2), &body(2)).await.unwrap();
    let (token, _) = queue
        .assign(vec![delivered.id], 1, UnixMillis(u64::MAX), 1)
        .await
        .unwrap();
    assert!(
        report_delivered(&queue, delivered.id, token)
            .await
            .is_empty()
    );
    let finished_body = queue.entry(delivered.id).unwrap().body;
    let live_body = queue.entry(waiting.id).unwrap().body;
    for id in 1..=3 {
        wait_for(
            "the delivery to apply everywhere",
            Duration::from_secs(10),
            || {
                cluster
                    .queue(id)
                    .entry(delivered.id)
                    .is_some_and(|e| e.state.is_final())
            },
        )
        .await;
        cluster.queue(id).snapshot_now().await.unwrap();
    }
    for id in 1..=3 {
        let blobs = cluster.queue(id).blobs().clone();
        wait_for(
            &format!("node {id} to collect the delivered body"),
            Duration::from_secs(10),
            || !blobs.path(&finished_body).exists(),
        )
        .await;
        assert!(
            blobs.path(&live_body).exists(),
            "node {id} must keep a queued message's body"
        );
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_sled_state_is_lost_rebuilds_it_from_snapshot_and_log() {
    init_test_logging();
    let mut cluster = QueueCluster::start_tuned(
        3,
        Arc::new(|config: &mut QueueConfig| config.snapshot_every = 20),
    )
    .await;
    let mut acknowledged = enqueue_numbered(&cluster, 0..45).await;
    let victim = 3;
    wait_for_entries(&cluster, victim, &acknowledged).await;
    wait_for(
        "node 3 to snapshot and purge",
        Duration::from_secs(15),
        || {
            cluster
                .queue(victim)
                .status()
                .purged_index
                .is_some_and(|p| p > 0)
        },
    )
    .await;
    cluster.stop(victim).await;
    // sled is not power-safe: simulate losing it entirely.
    std::fs::remove_dir_all(cluster.data_dir(victim).join("state")).unwrap();
    // Keep writing while it is down, so the rebuild needs snapshot + log + catch-up.
    for n in 45..50 {
        acknowledged.insert(
            cluster
                .queue(1)
                .enqueue_bytes(envelope(n), &body(n))
                .await
                .unwrap()
                .id,
        );
    }
    cluster.restart(victim).await;
    wait_for_entries(&cluster, victim, &acknowledged).await;
    assert_bodies_present(&cluster, victim).await;
    cluster.stop_all().await;
}

/// Reports message `id` delivered to all its recipients under `token`; returns what
/// the state refused.
async fn report_delivered(queue: &Queue, id: QueueId, token: u64) -> Vec<Rejection> {
    let recipients = queue.entry(id).unwrap().envelope.recipients;
    queue
        .record_attempts(vec![AttemptReport {
            id,
            token,
            at: queue.clock_now(),
            relay: Some("primary.example[192.0.2.1]:25".into()),
            results: recipients
                .into_iter()
                .map(|recipient| RecipientOutcome {
                    recipient,
                    status: OutcomeStatus::Delivered,
                    reply: "250 2.0.0 Ok".into(),
                })
                .collect(),
            next_attempt_at: queue.clock_now(),
            lost_after_dot: false,
        }])
        .await
        .unwrap()
}

/// Enqueues messages `numbers` through node 1, one after another; returns their ids.
async fn enqueue_numbered(
    cluster: &QueueCluster,
    numbers: std::ops::Range<usize>,
) -> BTreeSet<QueueId> {
    let mut acknowledged = BTreeSet::new();
    for n in numbers {
        acknowledged.insert(
            cluster
                .queue(1)
                .enqueue_bytes(envelope(n), &body(n))
                .await
                .unwrap()
                .id,
        );
    }
    acknowledged
}
