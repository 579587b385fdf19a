//! A body damaged on disk is never used: `Queue::open_body` checks its SHA-256, moves a
//! corrupt copy into `<blob root>/quarantine/`, and pulls a good copy from a peer. With
//! no good copy anywhere it fails, and a delivery is deferred with the message still
//! queued: damaged bytes never reach the primary, and no bounce is sent because of them.

#[path = "support/delivery_fleet.rs"]
mod delivery_fleet;

use std::path::PathBuf;
use std::time::Duration;

use delivery_fleet::{DeliveryFleet, test_body, test_delivery_config};
use mxfleet_core::{BodyDigest, Envelope, HistoryEvent, MessageState, QueueEntry};
use mxfleet_queue::{BlobStore, QueueError};
use mxfleet_testkit::sink::SinkMx;
use mxfleet_testkit::{QueueCluster, init_test_logging, wait_for, wait_for_async};
use tokio::io::AsyncReadExt;

fn envelope() -> Envelope {
    Envelope {
        sender: "sender@client.example".into(),
        recipients: vec!["user@example.org".into()],
        message_id: Some("<integrity@client.example>".into()),
        trace: None,
    }
}

fn original_body() -> Vec<u8> {
    b"Subject: integrity\r\nMessage-ID: <integrity@client.example>\r\n\r\nkeep me whole\r\n"
        .repeat(50)
}

/// Flips one bit of the stored copy, as a failing disk would; returns the damaged bytes.
fn corrupt(blobs: &BlobStore, digest: &BodyDigest) -> Vec<u8> {
    let path = blobs.path(digest);
    let mut bytes = std::fs::read(&path).expect("read the stored body");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    std::fs::write(&path, &bytes).expect("damage the stored body");
    bytes
}

/// `<blob root>/quarantine`, next to `blobs/`.
fn quarantine_dir(blobs: &BlobStore, digest: &BodyDigest) -> PathBuf {
    let path = blobs.path(digest);
    let root = path
        .parent()
        .and_then(|blobs_dir| blobs_dir.parent())
        .expect("a blob lives in <root>/blobs/");
    root.join("quarantine")
}

/// The files in quarantine, with their contents.
fn quarantined(blobs: &BlobStore, digest: &BodyDigest) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(quarantine_dir(blobs, digest)) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let entry = entry.expect("quarantine entry");
            let bytes = std::fs::read(entry.path()).expect("read quarantined file");
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// Waits until every running node holds an intact copy of `digest`.
async fn wait_for_copies_everywhere(cluster: &QueueCluster, digest: &BodyDigest) {
    for id in cluster.running() {
        let blobs = cluster.queue(id).blobs().clone();
        let digest = *digest;
        wait_for_async(
            &format!("node {id} to hold the body"),
            Duration::from_secs(15),
            move || {
                let blobs = blobs.clone();
                async move { blobs.verify(&digest).await.unwrap_or(false) }
            },
        )
        .await;
    }
}

async fn enqueue_one(cluster: &QueueCluster) -> QueueEntry {
    let leader = cluster.wait_for_leader().await;
    let queue = cluster.queue(leader);
    let receipt = queue
        .enqueue_bytes(envelope(), &original_body())
        .await
        .expect("enqueue");
    let entry = queue
        .entry(receipt.id)
        .expect("the entry, applied on the leader");
    wait_for_copies_everywhere(cluster, &entry.body).await;
    entry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_body_is_quarantined_and_pulled_again_from_a_peer() {
    init_test_logging();
    let mut cluster = QueueCluster::start(3).await;
    let entry = enqueue_one(&cluster).await;
    let victim = 2;
    let queue = cluster.queue(victim);
    let blobs = queue.blobs().clone();
    let damaged = corrupt(&blobs, &entry.body);

    let (mut reader, size) = queue
        .open_body(&entry.body, &entry.body_holders)
        .await
        .expect("a good copy is pulled from a peer");
    let mut read = Vec::new();
    reader.read_to_end(&mut read).await.expect("read the body");
    assert_eq!(
        read,
        original_body(),
        "the bytes read are the accepted ones"
    );
    assert_eq!(size, original_body().len() as u64);

    let files = quarantined(&blobs, &entry.body);
    assert_eq!(files.len(), 1, "one file in quarantine: {files:?}");
    let (name, bytes) = &files[0];
    let millis = name
        .strip_prefix(&format!("{}.", entry.body.to_hex()))
        .unwrap_or_else(|| panic!("quarantined as <hex>.<unix-millis>, not {name}"));
    assert!(millis.parse::<u64>().is_ok(), "{name}");
    assert_eq!(bytes, &damaged, "the damaged copy is kept as found");
    assert_eq!(blobs.metrics().corrupt_count(), 1);
    assert!(
        blobs.verify(&entry.body).await.unwrap(),
        "repaired in place"
    );
    for id in [1, 3] {
        assert_eq!(
            cluster.queue(id).blobs().metrics().corrupt_count(),
            0,
            "node {id} served its intact copy"
        );
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_no_good_copy_anywhere_open_body_fails_and_every_damaged_copy_is_quarantined() {
    init_test_logging();
    let mut cluster = QueueCluster::start(3).await;
    let entry = enqueue_one(&cluster).await;
    for id in 1..=3 {
        corrupt(cluster.queue(id).blobs(), &entry.body);
    }

    let queue = cluster.queue(1);
    let error = queue
        .open_body(&entry.body, &entry.body_holders)
        .await
        .expect_err("no node holds the accepted bytes");
    assert!(matches!(error, QueueError::Unavailable(_)), "{error}");
    // The reader's own copy, and each peer's when it was asked to serve it.
    for id in 1..=3 {
        let blobs = cluster.queue(id).blobs();
        assert_eq!(blobs.metrics().corrupt_count(), 1, "node {id}");
        assert_eq!(quarantined(blobs, &entry.body).len(), 1, "node {id}");
        assert!(!blobs.contains(&entry.body).await, "node {id}");
    }
    // Asking again finds nothing to serve, and quarantines nothing more.
    let again = queue.open_body(&entry.body, &entry.body_holders).await;
    assert!(matches!(again, Err(QueueError::Unavailable(_))));
    assert_eq!(queue.blobs().metrics().corrupt_count(), 1);
    cluster.stop_all().await;
}

/// The replies of every delivery attempt so far.
fn attempt_replies(entry: &QueueEntry) -> Vec<String> {
    entry
        .history
        .iter()
        .filter_map(|event| match event {
            HistoryEvent::Attempt { results, .. } => Some(results),
            _ => None,
        })
        .flatten()
        .map(|result| result.reply.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_body_is_never_delivered_and_goes_out_intact_once_a_good_copy_exists() {
    init_test_logging();
    let mut sink = SinkMx::start().await;
    let config = test_delivery_config(sink.addr());
    // Down first: the message is deferred, and its bodies are damaged before the
    // primary returns.
    sink.stop().await;
    let mut fleet = DeliveryFleet::start(config).await;
    let leader = fleet.cluster.wait_for_leader().await;
    let id = fleet.enqueue_many(leader, 1, "sender@client.example").await[0];
    wait_for(
        "the first attempt to defer",
        Duration::from_secs(30),
        || {
            fleet
                .queue(leader)
                .entry(id)
                .is_some_and(|e| e.last_attempt_at.is_some() && e.assignment.is_none())
        },
    )
    .await;
    let entry = fleet.queue(leader).entry(id).expect("entry");
    wait_for_copies_everywhere(&fleet.cluster, &entry.body).await;
    for node in fleet.cluster.running() {
        corrupt(fleet.queue(node).blobs(), &entry.body);
    }

    // The primary returns; the probe releases the message, and the owner finds no good
    // copy of its body anywhere.
    sink.restart().await;
    wait_for(
        "an attempt that found the body unavailable",
        Duration::from_secs(30),
        || {
            fleet.queue(leader).entry(id).is_some_and(|e| {
                attempt_replies(&e)
                    .iter()
                    .any(|reply| reply.contains("content not available"))
            })
        },
    )
    .await;
    let entry = fleet.queue(leader).entry(id).expect("entry");
    assert_eq!(entry.state, MessageState::Queued, "deferred, not bounced");
    assert_eq!(fleet.queue(leader).entries().len(), 1, "no DSN was made");
    assert!(sink.received().is_empty(), "damaged bytes were sent");

    // A good copy comes back on one node (an operator restores it): the next run
    // delivers the accepted bytes, whichever node owns the message.
    let original = test_body(0);
    let restored = fleet
        .queue(3)
        .blobs()
        .put_stream(&original[..], Some(entry.body), original.len() as u64)
        .await
        .expect("restore the body on node 3");
    assert_eq!(restored.digest, entry.body);
    fleet.queue(leader).flush(None).await.expect("flush");
    let received = sink.wait_for_messages(1, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].data, original, "delivered byte for byte");
    wait_for(
        "the delivery to be recorded",
        Duration::from_secs(30),
        || {
            fleet
                .queue(leader)
                .entry(id)
                .is_some_and(|e| e.state == MessageState::Delivered)
        },
    )
    .await;
    fleet.stop_all().await;
}
