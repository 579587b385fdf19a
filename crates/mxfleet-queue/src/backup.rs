//! Taking a backup archive from a running node: [`Queue::backup`] copies the applied
//! state under one read lock, then streams it as a [`backup_archive`] together with
//! every body a live message references, read from this node's blob store.
//!
//! Consistency: the metadata is one point in the log (the last applied entry when the
//! copy was taken); the bodies are read afterwards. A body that is gone by then (its
//! message finished and was collected meanwhile) or that cannot be read even after the
//! usual repair from its holders is listed in the trailer as missing, with the queue
//! ids that need it: the archive never skips one silently. A body that changes while
//! it is read (the disk returns other bytes than at open) ends the stream with an
//! error, because the archive would then hold a body that does not match its name.
//!
//! Lifecycle: the producer task is spawned on the runtime (not the queue's tracker,
//! so shutdown does not wait for a slow download) and stops as soon as the receiver
//! is dropped (the client went away).

use std::collections::BTreeMap;

use bytes::Bytes;
use mxfleet_core::{BodyDigest, NodeId, QueueId};
use openraft::async_runtime::WatchReceiver;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::backup_archive::{
    ARCHIVE_PIECE_BYTES, ArchiveHeader, ArchiveMember, ArchiveTrailer, ArchiveWriter, MissingBody,
};
use crate::error::QueueError;
use crate::queue::Queue;
use crate::snapshot_file::encode_snapshot;
use crate::types::SnapshotMeta;

/// What a backup holds, known before its first byte is sent (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub last_applied_index: u64,
    pub term: u64,
    pub entries: u64,
    pub live_entries: u64,
    pub bodies: u64,
    pub body_bytes: u64,
}

/// A backup on its way: the summary, and the archive's bytes in pieces of at most
/// [`ARCHIVE_PIECE_BYTES`].
pub struct Backup {
    pub summary: BackupSummary,
    pub chunks: mpsc::Receiver<Result<Bytes, QueueError>>,
}

/// One body to put in the archive, with who else holds it (for repair) and who needs it.
struct WantedBody {
    size: u64,
    holders: Vec<NodeId>,
    queue_ids: Vec<QueueId>,
}

impl Queue {
    /// Starts streaming a backup archive of this node's applied state and bodies.
    /// `linearizable` is only recorded in the header: the caller linearizes first.
    /// Blocking (it copies and encodes the applied state): call it from
    /// `spawn_blocking`, within the runtime.
    pub fn backup(&self, linearizable: bool, now_ms: u64) -> Result<Backup, QueueError> {
        let unavailable = |e: std::io::Error| QueueError::Unavailable(e.to_string());
        let (queue, last_applied, membership) =
            self.core.state.copy_state().map_err(unavailable)?;
        let Some(last_applied) = last_applied else {
            return Err(QueueError::Unavailable(
                "this node has applied nothing yet; there is nothing to back up".into(),
            ));
        };
        let mut wanted: BTreeMap<BodyDigest, WantedBody> = BTreeMap::new();
        for entry in queue.live_entries() {
            let body = wanted.entry(entry.body).or_insert_with(|| WantedBody {
                size: entry.size,
                holders: entry.body_holders.clone(),
                queue_ids: Vec::new(),
            });
            body.queue_ids.push(entry.id);
        }
        let voters: Vec<NodeId> = membership.membership().voter_ids().collect();
        let members = membership
            .membership()
            .nodes()
            .map(|(id, node)| ArchiveMember {
                id: *id,
                addr: node.addr.clone(),
                site: node.site.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let meta = SnapshotMeta {
            last_log_id: Some(last_applied),
            last_membership: membership,
        };
        let metadata = encode_snapshot(&meta, &queue).map_err(unavailable)?;
        let term = self.core.raft.metrics().borrow_watched().current_term;
        let header = ArchiveHeader {
            cluster_name: "mxfleet".into(),
            source_node: self.core.id,
            term,
            last_applied_term: last_applied.leader_id.term,
            last_applied_node: last_applied.leader_id.node_id,
            last_applied_index: last_applied.index,
            linearizable,
            created_at_ms: now_ms,
            members,
            entries: queue.entries.len() as u64,
            live_entries: queue.live_entries().count() as u64,
            bodies: wanted.len() as u64,
            body_bytes: wanted.values().map(|b| b.size).sum(),
            metadata_bytes: metadata.len() as u64,
        };
        let summary = BackupSummary {
            last_applied_index: last_applied.index,
            term,
            entries: header.entries,
            live_entries: header.live_entries,
            bodies: header.bodies,
            body_bytes: header.body_bytes,
        };
        let (sender, chunks) = mpsc::channel(4);
        let queue = self.clone();
        // On the queue's tracker: a shutdown waits for it (it ends once the client is
        // gone, when its sends fail).
        self.core.tracker.spawn(async move {
            let mut out = Chunker {
                sender,
                buffer: Vec::new(),
            };
            if let Err(e) = queue
                .stream_archive(&mut out, header, &metadata, wanted)
                .await
            {
                // The receiver is gone when the client went away: nothing to tell then.
                let _ = out.sender.send(Err(e)).await;
            }
        });
        Ok(Backup { summary, chunks })
    }

    async fn stream_archive(
        &self,
        out: &mut Chunker,
        header: ArchiveHeader,
        metadata: &[u8],
        wanted: BTreeMap<BodyDigest, WantedBody>,
    ) -> Result<(), QueueError> {
        let (mut writer, bytes) = ArchiveWriter::start(&header);
        out.push(&bytes).await?;
        out.push(&writer.metadata(metadata)).await?;
        let mut trailer = ArchiveTrailer::default();
        let mut buffer = vec![0u8; ARCHIVE_PIECE_BYTES];
        for (digest, body) in wanted {
            let (mut reader, size) = match self.open_body(&digest, &body.holders).await {
                Ok(opened) => opened,
                Err(e) => {
                    trailer.missing.push(MissingBody {
                        digest,
                        queue_ids: body.queue_ids,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            out.push(&writer.blob(&digest, size)).await?;
            let mut sent = 0u64;
            loop {
                let n = reader
                    .read(&mut buffer)
                    .await
                    .map_err(|e| QueueError::Unavailable(format!("reading body {digest}: {e}")))?;
                if n == 0 {
                    break;
                }
                sent += n as u64;
                if sent > size {
                    break;
                }
                out.push(&writer.data(&buffer[..n])).await?;
            }
            if sent != size {
                return Err(QueueError::Unavailable(format!(
                    "body {digest} changed size while it was read ({sent} bytes, {size} at \
                     open); take the backup again"
                )));
            }
            trailer.bodies_written += 1;
            trailer.body_bytes_written += size;
        }
        out.push(&writer.finish(&trailer)).await?;
        out.flush().await
    }
}

/// Cuts the archive's bytes into messages of exactly [`ARCHIVE_PIECE_BYTES`] (the last
/// one shorter), whatever the record boundaries.
struct Chunker {
    sender: mpsc::Sender<Result<Bytes, QueueError>>,
    buffer: Vec<u8>,
}

impl Chunker {
    async fn push(&mut self, bytes: &[u8]) -> Result<(), QueueError> {
        self.buffer.extend_from_slice(bytes);
        while self.buffer.len() >= ARCHIVE_PIECE_BYTES {
            let rest = self.buffer.split_off(ARCHIVE_PIECE_BYTES);
            let piece = std::mem::replace(&mut self.buffer, rest);
            self.send(piece).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), QueueError> {
        if !self.buffer.is_empty() {
            let piece = std::mem::take(&mut self.buffer);
            self.send(piece).await?;
        }
        Ok(())
    }

    async fn send(&self, piece: Vec<u8>) -> Result<(), QueueError> {
        self.sender
            .send(Ok(Bytes::from(piece)))
            .await
            .map_err(|_| QueueError::Unavailable("the backup's receiver went away".into()))
    }
}
