//! The replicated state machine: `mxfleet_core::QueueState` in memory, mirrored to
//! sled, with snapshots as files.
//!
//! Lifecycle of the state:
//! - `open` loads sled. If sled is behind the newest snapshot file (sled is not
//!   power-safe), or unreadable, the state is rebuilt from that snapshot; openraft then
//!   re-applies the rest of the log. So the snapshot file plus the log are the truth.
//! - `apply` runs `QueueState::apply` for each entry, then writes the changed keys and
//!   `last_applied` in one sled batch, then answers the proposers.
//! - `build_snapshot` encodes the state under a read lock and writes it durably;
//!   `install_snapshot` replaces the state wholesale with one received from the leader.
//!
//! The store tells the rest of the node what it needs to know through `StateEvent`s:
//! bodies this node must fetch, and which log prefix a snapshot now covers (blob GC).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use mxfleet_core::{Change, Command, QueueState, Response};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::sled_store::{PersistedState, SledStore};
use crate::snapshot_file::{
    decode_snapshot, encode_snapshot, list_snapshots, read_snapshot, snapshot_name, write_durably,
};
use crate::types::{LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};

/// What the state machine tells the node after applying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StateEvent {
    /// A live message's body should be present locally; fetch it if it is not.
    BodyNeeded {
        digest: mxfleet_core::BodyDigest,
        holders: Vec<u64>,
    },
    /// A snapshot now covers the log up to `index`: bodies of messages finished at or
    /// before it may be collected.
    SnapshotCovers { index: u64 },
}

struct MachineData {
    queue: QueueState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// The newest snapshot built or installed, and its file.
    current_snapshot: Option<(SnapshotMeta, PathBuf)>,
}

struct Inner {
    data: RwLock<MachineData>,
    sled: SledStore,
    snapshot_dir: PathBuf,
    events: Option<mpsc::UnboundedSender<StateEvent>>,
}

/// The state machine handle. Clones share one state.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

fn poisoned() -> io::Error {
    io::Error::other("state machine lock poisoned by an earlier panic")
}

/// The sled database under the data directory.
pub(crate) const SLED_DIR: &str = "state";
/// Snapshot files under the data directory.
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";

impl StateMachineStore {
    /// Opens the state under `dir` (`dir/state` for sled, `dir/snapshots`).
    pub(crate) fn open(
        dir: &Path,
        events: Option<mpsc::UnboundedSender<StateEvent>>,
    ) -> io::Result<Self> {
        let snapshot_dir = dir.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&snapshot_dir)?;
        for entry in std::fs::read_dir(&snapshot_dir)? {
            let path = entry?.path();
            // Half-written snapshots and half-received ones from a crash.
            if path
                .extension()
                .is_some_and(|ext| ext == "tmp" || ext == "spool")
            {
                warn!(path = %path.display(), "snapshot_tmp_removed");
                std::fs::remove_file(&path)?;
            }
        }
        let sled = SledStore::open(&dir.join(SLED_DIR))?;
        let mut persisted = sled.load().unwrap_or_else(|e| {
            warn!(cause = %e, "state_unreadable_rebuilding_from_snapshot");
            PersistedState::default()
        });

        let mut current_snapshot = None;
        for (_, path) in list_snapshots(&snapshot_dir)? {
            let bytes = std::fs::read(&path)?;
            match decode_snapshot(&path, &bytes) {
                Ok(body) => {
                    if body.meta.last_log_id > persisted.last_applied {
                        info!(
                            snapshot = %path.display(),
                            sled_applied = ?persisted.last_applied.map(|l| l.index),
                            "state_rebuilt_from_snapshot"
                        );
                        persisted = PersistedState {
                            queue: body.queue,
                            last_applied: body.meta.last_log_id,
                            membership: body.meta.last_membership.clone(),
                        };
                        sled.replace_all(&persisted)?;
                    }
                    current_snapshot = Some((body.meta, path));
                    break;
                }
                Err(e) => warn!(cause = %e, "snapshot_unreadable_skipped"),
            }
        }
        Ok(StateMachineStore {
            inner: Arc::new(Inner {
                data: RwLock::new(MachineData {
                    queue: persisted.queue,
                    last_applied: persisted.last_applied,
                    membership: persisted.membership,
                    current_snapshot,
                }),
                sled,
                snapshot_dir,
                events,
            }),
        })
    }

    /// Runs `read` against the current queue state.
    pub(crate) fn read<R>(&self, read: impl FnOnce(&QueueState) -> R) -> io::Result<R> {
        let data = self.inner.data.read().map_err(|_| poisoned())?;
        Ok(read(&data.queue))
    }

    /// A consistent copy of the applied state and of the metadata that says how far it
    /// goes, taken under one read lock (for backups and offline recovery).
    pub(crate) fn copy_state(&self) -> io::Result<(QueueState, Option<LogId>, StoredMembership)> {
        let data = self.inner.data.read().map_err(|_| poisoned())?;
        Ok((
            data.queue.clone(),
            data.last_applied,
            data.membership.clone(),
        ))
    }

    fn emit(&self, event: StateEvent) {
        if let Some(events) = &self.inner.events {
            // The receiver is gone only during shutdown; nothing left to do then.
            let _ = events.send(event);
        }
    }

    /// Deletes snapshot files older than the two newest. A sender that has one open
    /// keeps reading it (unlinked files live on while open).
    fn prune_old_snapshots(&self) -> io::Result<()> {
        for (_, path) in list_snapshots(&self.inner.snapshot_dir)?
            .into_iter()
            .skip(2)
        {
            std::fs::remove_file(&path)?;
        }
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let data = self.inner.data.read().map_err(|_| poisoned())?;
        Ok((data.last_applied, data.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        let batch: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let mut replies = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        {
            let mut data = self.inner.data.write().map_err(|_| poisoned())?;
            let mut changes: Vec<Change> = Vec::new();
            for (entry, responder) in batch {
                data.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Nothing,
                    EntryPayload::Normal(ref command) => {
                        let applied = data.queue.apply(entry.log_id.index, command);
                        if let (
                            Command::Enqueue {
                                body, body_holders, ..
                            },
                            Response::Enqueued {
                                duplicate: false, ..
                            },
                        ) = (command, &applied.response)
                        {
                            events.push(StateEvent::BodyNeeded {
                                digest: *body,
                                holders: body_holders.clone(),
                            });
                        }
                        changes.extend(applied.changes);
                        applied.response
                    }
                    EntryPayload::Membership(ref membership) => {
                        data.membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                        Response::Nothing
                    }
                };
                replies.push((responder, response));
            }
            self.inner
                .sled
                .persist(&data.queue, &changes, &data.last_applied, &data.membership)?;
        }
        for (responder, response) in replies {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        for event in events {
            self.emit(event);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let mut file = snapshot.into_std().await;
        let dir = self.inner.snapshot_dir.clone();
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let (body, path) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let origin = dir.join("(received)");
            let body = read_snapshot(&origin, &mut file)?;
            let bytes = encode_snapshot(&body.meta, &body.queue)?;
            let path = write_durably(&dir, &snapshot_name(index), &bytes)?;
            Ok((body, path))
        })
        .await
        .map_err(io::Error::other)??;

        let live: Vec<StateEvent> = body
            .queue
            .live_entries()
            .map(|e| StateEvent::BodyNeeded {
                digest: e.body,
                holders: e.body_holders.clone(),
            })
            .collect();
        {
            let mut data = self.inner.data.write().map_err(|_| poisoned())?;
            let persisted = PersistedState {
                queue: body.queue,
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            };
            self.inner.sled.replace_all(&persisted)?;
            data.queue = persisted.queue;
            data.last_applied = persisted.last_applied;
            data.membership = persisted.membership;
            data.current_snapshot = Some((meta.clone(), path));
        }
        info!(index, "snapshot_installed");
        self.prune_old_snapshots()?;
        for event in live {
            self.emit(event);
        }
        self.emit(StateEvent::SnapshotCovers { index });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let current = {
            let data = self.inner.data.read().map_err(|_| poisoned())?;
            data.current_snapshot.clone()
        };
        match current {
            None => Ok(None),
            Some((meta, path)) => {
                let file = tokio::fs::File::open(&path).await?;
                Ok(Some(Snapshot {
                    meta,
                    snapshot: file,
                }))
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, bytes) = {
            let data = self.inner.data.read().map_err(|_| poisoned())?;
            let meta = SnapshotMeta {
                last_log_id: data.last_applied,
                last_membership: data.membership.clone(),
            };
            let bytes = encode_snapshot(&meta, &data.queue)?;
            (meta, bytes)
        };
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let dir = self.inner.snapshot_dir.clone();
        let path =
            tokio::task::spawn_blocking(move || write_durably(&dir, &snapshot_name(index), &bytes))
                .await
                .map_err(io::Error::other)??;
        {
            let mut data = self.inner.data.write().map_err(|_| poisoned())?;
            data.current_snapshot = Some((meta.clone(), path.clone()));
        }
        info!(index, "snapshot_built");
        self.prune_old_snapshots()?;
        self.emit(StateEvent::SnapshotCovers { index });
        let file = tokio::fs::File::open(&path).await?;
        Ok(Snapshot {
            meta,
            snapshot: file,
        })
    }
}
