//! Moving bodies between nodes, outside the Raft log.
//!
//! - `replicate_to_quorum`: before an `Enqueue` is proposed, the accepting node streams
//!   the body to every other voter in 1 MiB chunks and waits until a write quorum
//!   (counting itself) has verified and fsynced it. Pushes still running then finish in
//!   the background, so normally every voter holds every body.
//! - `run_body_keeper`: on every node, fetches bodies that the log says should be here
//!   but are not (a node that was down, a new learner after a snapshot), and deletes
//!   bodies once their message is finished and a snapshot covers that.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use mxfleet_core::{BodyDigest, NodeId};
use mxfleet_proto::CHUNK_BYTES;
use mxfleet_proto::raft::v1::{BlobChunk, GetBlobRequest};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::blob_store::{BlobStore, StoredBlob};
use crate::error::QueueError;
use crate::peer::transport::PeerChannels;
use crate::state_machine::StateEvent;
use crate::write_path::QueueCore;

/// Why one push of a body to one peer failed.
#[derive(Debug)]
struct PushFailure {
    peer: NodeId,
    storage_full: bool,
    detail: String,
}

/// Streams `body` to the other voters until a write quorum holds it. Returns the
/// holders (this node first when it is a voter).
pub(crate) async fn replicate_to_quorum(
    core: &Arc<QueueCore>,
    body: &StoredBlob,
) -> Result<Vec<NodeId>, QueueError> {
    let voters = core.voters();
    let members = core.members();
    let quorum = voters.len() / 2 + 1;
    let mut holders = Vec::new();
    if voters.contains(&core.id) {
        holders.push(core.id);
    }
    if holders.len() >= quorum && !voters.is_empty() {
        return Ok(holders);
    }
    let mut pushes: FuturesUnordered<_> = voters
        .iter()
        .filter(|id| **id != core.id)
        .filter_map(|id| members.get(id).map(|node| (*id, node.addr.clone())))
        .map(|(peer, addr)| push_body(core.channels.clone(), core.blobs.clone(), peer, addr, *body))
        .collect();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + core.config.blob_quorum_timeout;
    let mut failures: Vec<PushFailure> = Vec::new();
    while holders.len() < quorum {
        let outstanding = pushes.len();
        if holders.len() + outstanding < quorum {
            break;
        }
        match tokio::time::timeout_at(deadline, pushes.next()).await {
            Ok(Some(Ok(peer))) => holders.push(peer),
            Ok(Some(Err(failure))) => {
                debug!(peer = failure.peer, cause = %failure.detail, "body_push_failed");
                failures.push(failure);
            }
            Ok(None) | Err(_) => break,
        }
    }
    // Let the slower peers finish in the background: every voter should hold every body.
    if !pushes.is_empty() {
        let digest = body.digest;
        core.tracker.spawn(async move {
            while let Some(result) = pushes.next().await {
                if let Err(failure) = result {
                    debug!(peer = failure.peer, %digest, cause = %failure.detail, "body_push_failed");
                }
            }
        });
    }
    if holders.len() >= quorum {
        return Ok(holders);
    }
    let detail = format!(
        "body {} held by {} of {} voters, {} needed ({})",
        body.digest,
        holders.len(),
        voters.len(),
        quorum,
        failures
            .iter()
            .map(|f| format!("node {}: {}", f.peer, f.detail))
            .collect::<Vec<_>>()
            .join("; ")
    );
    warn!(digest = %body.digest, holders = holders.len(), quorum, "body_quorum_failed");
    if failures.iter().filter(|f| f.storage_full).count() + holders.len() >= quorum {
        return Err(QueueError::StorageFull { detail });
    }
    Err(QueueError::NoQuorum {
        waited: started.elapsed(),
        detail,
    })
}

async fn push_body(
    channels: Arc<PeerChannels>,
    blobs: BlobStore,
    peer: NodeId,
    addr: String,
    body: StoredBlob,
) -> Result<NodeId, PushFailure> {
    let fail = |storage_full, detail: String| PushFailure {
        peer,
        storage_full,
        detail,
    };
    let mut client = channels
        .client(&addr)
        .map_err(|e| fail(false, e.to_string()))?;
    let (file, size) = blobs
        .open_blob(&body.digest)
        .await
        .map_err(|e| fail(false, e.to_string()))?;
    let name = body.digest.to_hex();
    let chunks = ReaderStream::with_capacity(file, CHUNK_BYTES)
        .take_while(|item| futures::future::ready(item.is_ok()))
        .filter_map(|item| futures::future::ready(item.ok()))
        .map(move |data| BlobChunk {
            sha256: name.clone(),
            size,
            data,
        });
    // An empty body still needs one chunk to name itself.
    let first = futures::stream::iter(if size == 0 {
        vec![BlobChunk {
            sha256: body.digest.to_hex(),
            size: 0,
            data: Default::default(),
        }]
    } else {
        vec![]
    });
    match client.put_blob(first.chain(chunks)).await {
        Ok(reply) if reply.get_ref().stored => Ok(peer),
        Ok(_) => Err(fail(false, "peer did not confirm".into())),
        Err(status) => Err(fail(
            status.code() == tonic::Code::ResourceExhausted,
            format!("{}: {}", status.code(), status.message()),
        )),
    }
}

/// Fetches `digest` from one of `candidates`; true once it is stored and verified.
pub(crate) async fn pull_body(
    core: &QueueCore,
    digest: BodyDigest,
    candidates: &[NodeId],
) -> Result<(), String> {
    let members = core.members();
    let mut problems = Vec::new();
    for peer in candidates.iter().filter(|id| **id != core.id) {
        let Some(node) = members.get(peer) else {
            continue;
        };
        match pull_from(core, &node.addr, digest).await {
            Ok(()) => return Ok(()),
            Err(e) => problems.push(format!("node {peer}: {e}")),
        }
    }
    Err(if problems.is_empty() {
        "no holder is a member".into()
    } else {
        problems.join("; ")
    })
}

async fn pull_from(core: &QueueCore, addr: &str, digest: BodyDigest) -> Result<(), String> {
    let mut client = core.channels.client(addr).map_err(|e| e.to_string())?;
    let mut chunks = client
        .get_blob(GetBlobRequest {
            sha256: digest.to_hex(),
        })
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?
        .into_inner();
    let mut writer = core
        .blobs
        .writer(core.max_message_size)
        .await
        .map_err(|e| e.to_string())?;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
        writer
            .write_chunk(&chunk.data)
            .await
            .map_err(|e| e.to_string())?;
    }
    writer
        .finish(Some(digest))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// How long a missing body waits before we pull it: the accepting node's background
/// push usually delivers it first.
const PULL_GRACE: Duration = Duration::from_millis(500);

/// Keeps the local blob store in line with the queue: pulls missing bodies, collects
/// finished ones. Runs until `shutdown`.
pub(crate) async fn run_body_keeper(
    core: Arc<QueueCore>,
    mut events: UnboundedReceiver<StateEvent>,
    shutdown: CancellationToken,
) {
    let mut missing: HashMap<BodyDigest, (Vec<NodeId>, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.recv() => match event {
                None => return,
                Some(StateEvent::BodyNeeded { digest, holders }) => {
                    if !core.blobs.contains(&digest).await {
                        missing.entry(digest).or_insert((holders, Instant::now()));
                    }
                }
                Some(StateEvent::SnapshotCovers { index }) => collect_finished_bodies(&core, index).await,
            },
            _ = tick.tick() => {}
        }
        core.metrics.blobs.missing.set(missing.len() as i64);
        if missing.is_empty() {
            continue;
        }
        let due: Vec<(BodyDigest, Vec<NodeId>)> = missing
            .iter()
            .filter(|(_, (_, since))| since.elapsed() >= PULL_GRACE)
            .map(|(digest, (holders, _))| (*digest, holders.clone()))
            .collect();
        for (digest, holders) in due {
            if shutdown.is_cancelled() {
                return;
            }
            if core.blobs.contains(&digest).await || !body_still_needed(&core, &digest) {
                missing.remove(&digest);
                continue;
            }
            // Named holders first, then any other member.
            let mut candidates = holders.clone();
            candidates.extend(core.members().keys().filter(|id| !holders.contains(id)));
            match pull_body(&core, digest, &candidates).await {
                Ok(()) => {
                    info!(%digest, "body_repaired");
                    core.metrics.blobs.repaired.inc();
                    missing.remove(&digest);
                }
                Err(cause) => {
                    debug!(%digest, %cause, "body_repair_failed");
                    core.metrics.blobs.repair_failures.inc();
                    if let Some(entry) = missing.get_mut(&digest) {
                        entry.1 = Instant::now();
                    }
                }
            }
        }
    }
}

fn body_still_needed(core: &QueueCore, digest: &BodyDigest) -> bool {
    core.state
        .read(|q| q.live_entries().any(|e| &e.body == digest))
        .unwrap_or(true)
}

// Ages (from QueueConfig): a body that no entry references is an orphan, replicated
// for a write that then failed (no quorum) and was never committed; it is deleted once
// `orphan_body_age` old, long after any write that could still commit it timed out. A
// finished message's body written within `body_gc_grace` may be the same bytes as a
// submission being committed right now; it is kept until a later collection.

fn blob_age(core: &QueueCore, digest: &BodyDigest) -> Option<Duration> {
    std::fs::metadata(core.blobs.path(digest))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
}

/// Deletes bodies whose every message finished at or before `covered_index`, and
/// orphaned bodies older than `orphan_body_age`.
async fn collect_finished_bodies(core: &QueueCore, covered_index: u64) {
    collect_orphans(core).await;
    let garbage: HashSet<BodyDigest> = core
        .state
        .read(|q| {
            let live: HashSet<BodyDigest> = q.live_entries().map(|e| e.body).collect();
            q.entries
                .values()
                .filter(|e| e.finished_at_index.is_some_and(|i| i <= covered_index))
                .map(|e| e.body)
                .filter(|body| !live.contains(body))
                .collect()
        })
        .unwrap_or_default();
    for digest in garbage {
        if blob_age(core, &digest).is_none_or(|age| age < core.config.body_gc_grace) {
            continue;
        }
        match core.blobs.delete(&digest).await {
            Ok(true) => info!(%digest, "body_collected"),
            Ok(false) => {}
            Err(e) => warn!(%digest, cause = %e, "body_collect_failed"),
        }
    }
}

async fn collect_orphans(core: &QueueCore) {
    let Ok(stored) = core.blobs.list().await else {
        return;
    };
    let referenced: HashSet<BodyDigest> = core
        .state
        .read(|q| q.entries.values().map(|e| e.body).collect())
        .unwrap_or_default();
    for digest in stored.into_iter().filter(|d| !referenced.contains(d)) {
        if blob_age(core, &digest).is_some_and(|age| age >= core.config.orphan_body_age) {
            match core.blobs.delete(&digest).await {
                Ok(true) => info!(%digest, "orphan_body_collected"),
                Ok(false) => {}
                Err(e) => warn!(%digest, cause = %e, "body_collect_failed"),
            }
        }
    }
}
