//! A 64 MB body is replicated to a write quorum without any node holding it whole in
//! memory. All three nodes run in this process (its own test binary, so no other test
//! shares the process), so the process's peak RSS bounds what every receiver buffered.

use std::time::Duration;

use mxfleet_core::{BodyDigest, Envelope};
use mxfleet_testkit::{QueueCluster, init_test_logging, wait_for};
use sha2::{Digest, Sha256};

const BODY_BYTES: usize = 64 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

/// Peak resident set size of this process, from /proc/self/status (VmHWM, in KiB).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("number");
    kib * 1024
}

/// Deterministic pseudo-random chunk `n` (incompressible, so nothing can cheat).
fn chunk(n: usize) -> Vec<u8> {
    let mut state = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..CHUNK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_64_mb_body_replicates_without_being_buffered_whole() {
    init_test_logging();
    let mut cluster = QueueCluster::start_tuned(
        3,
        std::sync::Arc::new(|config: &mut mxfleet_queue::QueueConfig| {
            config.max_message_size = 80 * 1024 * 1024;
            config.blob_quorum_timeout = Duration::from_secs(60);
        }),
    )
    .await;
    let queue = cluster.queue(2).clone();
    let before = peak_rss_bytes();

    let mut writer = queue.body_writer().await.unwrap();
    let mut digest = Sha256::new();
    for n in 0..BODY_BYTES / CHUNK {
        let bytes = chunk(n);
        digest.update(&bytes);
        writer.write_chunk(&bytes).await.unwrap();
    }
    let stored = writer.finish(None).await.unwrap();
    assert_eq!(stored.size, BODY_BYTES as u64);
    assert_eq!(stored.digest, BodyDigest(digest.finalize().into()));

    let envelope = Envelope {
        sender: "big@client.example".into(),
        recipients: vec!["user@example.org".into()],
        message_id: Some("<big@client.example>".into()),
        trace: None,
    };
    let receipt = queue.enqueue(envelope, stored).await.unwrap();
    for id in 1..=3 {
        let blobs = cluster.queue(id).blobs().clone();
        let digest = stored.digest;
        let mut present = false;
        wait_for(
            &format!("node {id} to hold the 64 MB body"),
            Duration::from_secs(60),
            || {
                present = present || blobs.path(&digest).exists();
                present
            },
        )
        .await;
        assert!(
            blobs.verify(&digest).await.unwrap(),
            "node {id} holds a corrupt copy"
        );
        assert_eq!(
            cluster.queue(id).entry(receipt.id).map(|e| e.size),
            Some(BODY_BYTES as u64)
        );
    }

    let grown = peak_rss_bytes().saturating_sub(before);
    eprintln!(
        "peak RSS grew by {} MiB while replicating 64 MiB to 3 nodes",
        grown >> 20
    );
    // Three nodes each holding the body would need 192 MiB; chunked streaming needs a
    // few MiB of buffers per stream.
    assert!(
        grown < 48 * 1024 * 1024,
        "peak RSS grew by {grown} bytes: something buffered the body"
    );
    cluster.stop_all().await;
}
