//! `ClusterAdmin.Snapshot`: stream a backup archive of this node's queue (metadata and
//! every body a live message references; the format is `mxfleet_queue::backup_archive`).
//!
//! Bodies are mail, so the call needs `read-body` on top of `cluster`, and every use is
//! logged: `admin_snapshot_read` when it starts (who, which log index, how much) and
//! `admin_snapshot_sent` or `admin_snapshot_failed` when it ends. Unless the request
//! says `local`, the node first confirms with the leader that it has applied
//! everything committed before the call (a read index), so the archive holds every
//! acknowledged message; `local` works on a node without quorum.

use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::Stream;
use mxfleet_proto::admin::v1 as pb;
use mxfleet_queue::Queue;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::auth::require;
use super::errors::{from_queue_error, linearize_if};
use crate::config::AdminPermission;

pub(crate) type SnapshotStream =
    Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

/// Checks the caller, linearizes unless asked not to, and starts the archive's stream.
pub(crate) async fn snapshot(
    queue: &Queue,
    request: Request<pb::SnapshotRequest>,
) -> Result<Response<SnapshotStream>, Status> {
    let caller = require(&request, AdminPermission::Cluster, "cluster.snapshot")?;
    if !caller.may(AdminPermission::ReadBody) {
        warn!(caller = %caller.name, method = "cluster.snapshot", permission = "read-body",
            "admin_call_denied");
        return Err(Status::permission_denied(format!(
            "cluster.snapshot copies message bodies and needs the \"read-body\" permission \
             as well as \"cluster\", which {:?} does not have",
            caller.name
        )));
    }
    let local = request.into_inner().local;
    linearize_if(queue, !local).await?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // Copying and encoding the whole applied state is blocking work: keep it off the
    // async workers that serve SMTP and Raft.
    let backup = {
        let queue = queue.clone();
        tokio::task::spawn_blocking(move || queue.backup(!local, now_ms))
            .await
            .map_err(|e| Status::internal(format!("the snapshot task failed: {e}")))?
            .map_err(from_queue_error)?
    };
    let summary = backup.summary.clone();
    // Every archive is logged: it holds everyone's mail.
    info!(caller = %caller.name, log_index = summary.last_applied_index, term = summary.term,
        entries = summary.entries, live_entries = summary.live_entries,
        bodies = summary.bodies, body_bytes = summary.body_bytes, linearizable = !local,
        "admin_snapshot_read");
    let (sender, receiver) = mpsc::channel(2);
    let mut chunks = backup.chunks;
    tokio::spawn(async move {
        let mut sent = 0u64;
        while let Some(piece) = chunks.recv().await {
            match piece {
                Ok(data) => {
                    sent += data.len() as u64;
                    if sender.send(Ok(pb::SnapshotChunk { data })).await.is_err() {
                        warn!(caller = %caller.name, sent, "admin_snapshot_abandoned");
                        return;
                    }
                }
                Err(e) => {
                    warn!(caller = %caller.name, sent, cause = %e, "admin_snapshot_failed");
                    let _ = sender.send(Err(from_queue_error(e))).await;
                    return;
                }
            }
        }
        info!(caller = %caller.name, bytes = sent, "admin_snapshot_sent");
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
}
