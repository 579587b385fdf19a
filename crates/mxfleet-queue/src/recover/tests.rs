//! Recovery on real data directories: a node started in this process writes a queue,
//! stops, is recovered (from its own data, or from a backup archive into a new empty
//! directory under another node id), and starts again as the only voter with the same
//! queue, taking new writes.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use mxfleet_core::{Envelope, QueueId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::config::{InitialMember, QueueConfig};
use crate::queue::Queue;

const NOW: UnixMillis = UnixMillis(1_700_000_000_000);

struct Running {
    queue: Queue,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    async fn start(id: NodeId, data_dir: &Path) -> Running {
        let mut config = QueueConfig::new(
            id,
            "site-a",
            data_dir.to_path_buf(),
            "127.0.0.1:0".parse().unwrap(),
        );
        config.heartbeat_interval = Duration::from_millis(50);
        config.election_timeout = Duration::from_millis(300);
        // Only read on a new data directory; a recovered one must ignore it.
        config.initial_members = vec![InitialMember {
            id,
            addr: "127.0.0.1:1".into(),
            site: "site-a".into(),
        }];
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let queue = Queue::start(config, shutdown.clone(), tracker.clone())
            .await
            .expect("starts");
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        while queue.status().leader != Some(id) {
            assert!(tokio::time::Instant::now() < until, "node {id} never led");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Running {
            queue,
            shutdown,
            tracker,
        }
    }

    async fn enqueue(&self, n: usize) -> QueueId {
        let envelope = Envelope {
            sender: format!("s{n}@client.example"),
            recipients: vec![format!("u{n}@example.org")],
            message_id: Some(format!("<r-{n}@client.example>")),
            trace: None,
        };
        let body = format!("Subject: {n}\r\n\r\nbody {n}\r\n");
        self.queue
            .enqueue_bytes(envelope, body.as_bytes())
            .await
            .expect("acknowledged")
            .id
    }

    fn ids(&self) -> BTreeSet<QueueId> {
        self.queue.entries().iter().map(|e| e.id).collect()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.queue.shutdown().await;
        self.tracker.close();
        self.tracker.wait().await;
        drop(self.queue);
    }
}

fn target(id: NodeId, data_dir: &Path) -> RecoverTarget {
    RecoverTarget {
        data_dir: data_dir.to_path_buf(),
        node_id: id,
        addr: "127.0.0.1:7401".into(),
        site: "site-a".into(),
    }
}

async fn archive_of(queue: &Queue, path: &Path) {
    let mut backup = queue.backup(false, NOW.0).expect("backup starts");
    let mut bytes = Vec::new();
    while let Some(piece) = backup.chunks.recv().await {
        let piece = piece.expect("backup piece");
        assert!(piece.len() <= crate::backup_archive::ARCHIVE_PIECE_BYTES);
        bytes.extend_from_slice(&piece);
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_node_leads_alone_with_its_queue_and_takes_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node1");
    let node = Running::start(1, &data).await;
    for n in 0..3 {
        node.enqueue(n).await;
    }
    let before = node.ids();
    let term_before = node.queue.status().term;

    // Refused while the node runs: the log's lock is held.
    let error = recover_local(&target(1, &data), NOW).await.unwrap_err();
    assert!(matches!(error, RecoverError::InUse { .. }), "{error}");
    let archive = dir.path().join("backup.mxfbak");
    archive_of(&node.queue, &archive).await;
    node.stop().await;

    let report = recover_local(&target(1, &data), NOW)
        .await
        .expect("recovers");
    assert_eq!(report.previous_voters, vec![1]);
    assert!(report.new_term > term_before, "{report:?}");
    assert_eq!(report.live_entries, 3);
    assert!(report.missing_bodies.is_empty(), "{report:?}");
    assert!(report.old_log.as_ref().is_some_and(|p| p.exists()));

    let node = Running::start(1, &data).await;
    assert_eq!(node.ids(), before);
    assert!(node.queue.status().term >= report.new_term);
    let new = node.enqueue(10).await;
    assert!(new.0 > report.new_index, "new ids come after the recovery");
    node.stop().await;

    // Restore the archive on another node id, into a new directory.
    let restored_dir = dir.path().join("node5");
    let error = recover_local(&target(5, &restored_dir), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RecoverError::NothingToRecover { .. }),
        "{error}"
    );
    let report = recover_from_archive(&target(5, &restored_dir), &archive, NOW)
        .await
        .expect("restores");
    assert_eq!(report.restored_bodies, 3);
    assert!(
        restored_dir.join(crate::data_format::MARKER_FILE).exists(),
        "a restored directory carries the format marker"
    );
    assert!(report.missing_bodies.is_empty());
    // Only into an empty directory.
    let error = recover_from_archive(&target(5, &restored_dir), &archive, NOW)
        .await
        .unwrap_err();
    assert!(matches!(error, RecoverError::NotEmpty { .. }), "{error}");

    let node = Running::start(5, &restored_dir).await;
    assert_eq!(node.ids(), before);
    for entry in node.queue.entries() {
        let body = node.queue.body(&entry.body).await.expect("body restored");
        assert_eq!(mxfleet_core::BodyDigest::of(&body), entry.body);
    }
    node.enqueue(11).await;
    node.stop().await;
}

#[tokio::test]
async fn a_damaged_archive_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bad.mxfbak");
    std::fs::write(&archive, b"MXFBKUP1\x01\x00\x00\x00\x01\xff\xff").unwrap();
    let data = dir.path().join("new");
    let error = recover_from_archive(&target(1, &data), &archive, NOW)
        .await
        .unwrap_err();
    assert!(matches!(error, RecoverError::Archive { .. }), "{error}");
    assert!(!data.exists());
}
