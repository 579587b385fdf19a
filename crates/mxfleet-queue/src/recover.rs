//! Offline disaster recovery (`mxfleet cluster recover`): when a majority of the voters
//! is lost for good, rewrite one stopped survivor's Raft state so that it starts as the
//! only voter of a new membership {itself}, with all the queue state it has; or build
//! that state on an empty data directory from a backup archive (restore).
//!
//! How openraft 0.10.0-alpha.37 starts (`StorageHelper::get_initial_state`,
//! storage/helper.rs:86-245), and what this module writes for it:
//! - the vote comes from the log store (`read_vote`); here a *committed* vote for this
//!   node in a new term T. With a membership in which it is the only voter, the engine
//!   restores it as leader at once (`Engine::startup`, engine/engine_impl.rs:186-189,
//!   `enable_leader_restore` defaults to true, config/config.rs:689); with restore off
//!   it would stand as a follower and win its own election.
//! - `last_applied` and the membership come from the state machine (`applied_state`),
//!   which loads the newest snapshot file when sled is behind it. We write a snapshot
//!   file at a new log id N = (T, this node, last index + 1) whose membership is {this
//!   node} at N. Its queue is the survivor's state with every entry still in its log
//!   applied, committed or not.
//! - the log range comes from `get_log_state`; the new log is purged up to N, so it is
//!   empty and starts after N (raft-log's purge beyond the last entry moves `last` up
//!   to it). openraft would purge that hole itself (helper.rs:163-186), which is what
//!   makes a crash between our steps harmless: snapshot first, then vote, then log.
//! - committed: below `last_applied` it is raised to it (helper.rs:125-127), so nothing
//!   is re-applied.
//! - `initialize` is refused on a node with a log (`is_initialized`,
//!   raft_state/mod.rs:231-244), so the old `initial_members` in the config cannot
//!   re-bootstrap it; `Queue::start` only tries when nothing is on disk anyway.
//!
//! Why not openraft's own tools: `initialize` only works on a pristine node, and
//! `change_membership` must be committed by a quorum of the old membership, which is
//! exactly what is lost. There is no supported way to force a membership.
//!
//! What may be lost or doubled (the caller prints it): entries the dead majority
//! committed that this node never received; and an entry this node held but that was
//! never committed is applied anyway (its sender got no 250, so it may have sent the
//! message again elsewhere: at worst a duplicate delivery). The old log is kept under
//! `quarantine/recover-<millis>/`.
//!
//! Layout: this file (the two entry points and the common rewrite); the archive import
//! is in `recover/restore.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::stream;
use mxfleet_core::{BodyDigest, NodeId, QueueId, QueueState, UnixMillis};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::vote::RaftLeaderId;
use openraft::vote::leader_id_adv::CommittedLeaderId;
use openraft::{LogIdOptionExt, Membership, RaftLogReader};
use tracing::{info, warn};

use crate::backup_archive::ArchiveError;
use crate::blob_store::BlobStore;
use crate::data_format::check_data_dir;
use crate::log_recovery::{
    ChunkLimits, LOG_DIR, QUARANTINE_DIR, VOTE_FILE, WalVerdict, lock_log_dir, scan_wal,
};
use crate::log_store::{CHUNK_MAX_BYTES, LogStore};
use crate::snapshot_file::{encode_snapshot, snapshot_name, write_durably};
use crate::state_machine::{SLED_DIR, SNAPSHOT_DIR, StateMachineStore};
use crate::types::{LogId, PeerNode, SnapshotMeta, StoredMembership, Vote};
use crate::vote_shadow::{ShadowState, VoteShadow};

mod restore;

/// Where the new log is built before it replaces the old one.
const NEW_LOG_DIR: &str = "raft-log.recovering";
/// Entries applied per batch while replaying the log.
const REPLAY_BATCH: u64 = 64;

/// The node being recovered, as its configuration describes it.
#[derive(Debug, Clone)]
pub struct RecoverTarget {
    pub data_dir: PathBuf,
    pub node_id: NodeId,
    /// The peer address other nodes will reach it at (`[peer] advertise`).
    pub addr: String,
    pub site: String,
}

/// What the recovery did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverReport {
    /// `local data` or the archive's path.
    pub source: String,
    /// The highest term seen before (vote, log, state), and the voters of the last
    /// membership this node knew.
    pub previous_term: u64,
    pub previous_voters: Vec<NodeId>,
    pub previous_last_index: Option<u64>,
    /// The last index this node knew to be committed (it may have been committed
    /// further on the lost nodes, or not as far: see `replayed_uncommitted`).
    pub previous_committed_index: Option<u64>,
    /// Log entries applied now, and how many of them lay beyond the known commit.
    pub replayed: u64,
    pub replayed_uncommitted: u64,
    /// The new membership's log id: its term and index.
    pub new_term: u64,
    pub new_index: u64,
    pub entries: u64,
    pub live_entries: u64,
    /// Bodies written from the archive (restore only).
    pub restored_bodies: u64,
    /// Live messages whose body this node does not hold: nobody can send it to it now.
    pub missing_bodies: Vec<(BodyDigest, Vec<QueueId>)>,
    /// Where the old log was moved (local recovery only).
    pub old_log: Option<PathBuf>,
}

/// Why recovery refused or failed. Nothing is changed before the checks pass.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(
        "the data directory {path} is in use ({detail}); stop the node first (`systemctl stop \
         mxfleet` or SIGTERM) and run recover again"
    )]
    InUse { path: PathBuf, detail: String },
    #[error(
        "the data directory {path} holds no queue state; give --from-snapshot FILE to restore \
         a backup archive into it"
    )]
    NothingToRecover { path: PathBuf },
    #[error(
        "the data directory {path} is not empty; restoring a backup needs an empty (or new) \
         data directory, so that nothing of another state is mixed in"
    )]
    NotEmpty { path: PathBuf },
    #[error(
        "the Raft log under {path} is damaged ({detail}); restore from a backup archive \
         (--from-snapshot) into an empty data directory instead"
    )]
    LogDamaged { path: PathBuf, detail: String },
    #[error(
        "the state machine has applied up to {applied:?} but the log was purged up to \
         {purged}: the entries in between are gone (the snapshot file is missing or \
         unreadable)"
    )]
    StateBehindLog { applied: Option<u64>, purged: u64 },
    #[error("backup archive {path}: {source}")]
    Archive {
        path: PathBuf,
        #[source]
        source: ArchiveError,
    },
    /// The data directory's format marker (`data_format`) refuses it.
    #[error(transparent)]
    DataFormat(#[from] crate::error::DataFormatError),
    #[error("cannot {what} ({path}): {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RecoverError + use<> {
    let path = path.to_path_buf();
    move |source| RecoverError::Io { what, path, source }
}

/// Blocking work on a blocking thread; a panic there becomes an I/O error.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    path: &Path,
    work: impl FnOnce() -> Result<T, RecoverError> + Send + 'static,
) -> Result<T, RecoverError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| io_error(what, path)(io::Error::other(e)))?
}

/// Fails when a running node (or another recover) holds the Raft log's lock.
fn ensure_not_running(data_dir: &Path) -> Result<(), RecoverError> {
    let log_dir = data_dir.join(LOG_DIR);
    if !log_dir.exists() {
        return Ok(());
    }
    match lock_log_dir(&log_dir) {
        Ok(_lock) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(RecoverError::InUse {
            path: data_dir.to_path_buf(),
            detail: "another process holds the Raft log's lock".into(),
        }),
        Err(e) => Err(io_error("lock the Raft log", &log_dir)(e)),
    }
}

/// Recovers the stopped node from its own data directory (see the module docs).
pub async fn recover_local(
    target: &RecoverTarget,
    now: UnixMillis,
) -> Result<RecoverReport, RecoverError> {
    let data_dir = target.data_dir.clone();
    if !data_dir.join(LOG_DIR).exists() && !data_dir.join(SLED_DIR).exists() {
        return Err(RecoverError::NothingToRecover { path: data_dir });
    }
    ensure_not_running(&data_dir)?;
    // The same check a start makes, before any store is opened: a directory written in
    // a format this binary does not read is refused with nothing changed.
    let dir = data_dir.clone();
    blocking("check the data directory's format", &data_dir, move || {
        check_data_dir(&dir)?;
        Ok(())
    })
    .await?;
    let dir = data_dir.clone();
    let (log, shadow_vote) =
        blocking("open the Raft log", &data_dir, move || open_log(&dir)).await?;
    let dir = data_dir.clone();
    let mut state = blocking("open the state machine", &data_dir, move || {
        StateMachineStore::open(&dir, None).map_err(io_error("open the state machine", &dir))
    })
    .await?;

    let mut log_reader = log.clone();
    let mut log_writer = log.clone();
    let log_io = |e| io_error("read the Raft log", &data_dir.join(LOG_DIR))(e);
    let log_state = log_writer.get_log_state().await.map_err(log_io)?;
    let committed = log_writer.read_committed().await.map_err(log_io)?;
    let log_vote = log_reader.read_vote().await.map_err(log_io)?;
    let (applied, _) = state
        .applied_state()
        .await
        .map_err(io_error("read the state machine", &data_dir))?;
    if applied.is_none() && log_state.last_log_id.is_none() {
        return Err(RecoverError::NothingToRecover { path: data_dir });
    }
    if applied.next_index() < log_state.last_purged_log_id.next_index() {
        return Err(RecoverError::StateBehindLog {
            applied: applied.map(|l| l.index),
            purged: log_state.last_purged_log_id.map(|l| l.index).unwrap_or(0),
        });
    }

    // Apply everything still in the log, committed or not, with the node's own apply.
    let mut replayed = 0u64;
    let mut replayed_uncommitted = 0u64;
    let mut next = applied.next_index();
    let end = log_state.last_log_id.next_index();
    while next < end {
        let upto = end.min(next + REPLAY_BATCH);
        let entries = log_reader
            .try_get_log_entries(next..upto)
            .await
            .map_err(log_io)?;
        if entries.len() as u64 != upto - next {
            return Err(log_io(io::Error::other(format!(
                "expected entries {next}..{upto}, read {}",
                entries.len()
            ))));
        }
        replayed += entries.len() as u64;
        replayed_uncommitted += entries
            .iter()
            .filter(|e| Some(e.log_id.index) > committed.map(|c| c.index))
            .count() as u64;
        let items = entries.into_iter().map(|entry| Ok((entry, None)));
        state
            .apply(stream::iter(items))
            .await
            .map_err(io_error("apply the log", &data_dir))?;
        next = upto;
    }
    let (queue, applied, membership) = state
        .copy_state()
        .map_err(io_error("read the state machine", &data_dir))?;
    blocking("close the state machine", &data_dir, move || {
        drop(state);
        Ok(())
    })
    .await?;

    let previous_term = [
        shadow_vote.map(|v| v.leader_id.term),
        log_vote.map(|v| v.leader_id.term),
        log_state.last_log_id.map(|l| l.leader_id.term),
        applied.map(|l| l.leader_id.term),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    let last_index = applied
        .map(|l| l.index)
        .max(log_state.last_log_id.map(|l| l.index));
    let mut report = RecoverReport {
        source: "local data".into(),
        previous_term,
        previous_voters: membership.membership().voter_ids().collect(),
        previous_last_index: log_state.last_log_id.map(|l| l.index),
        previous_committed_index: committed.map(|l| l.index),
        replayed,
        replayed_uncommitted,
        new_term: previous_term + 1,
        new_index: last_index.map_or(0, |i| i + 1),
        entries: queue.entries.len() as u64,
        live_entries: queue.live_entries().count() as u64,
        restored_bodies: 0,
        missing_bodies: Vec::new(),
        old_log: None,
    };
    let old_log = rewrite(target, &queue, Some(log), &report, now).await?;
    report.old_log = old_log;
    report.missing_bodies = missing_bodies(&data_dir, &queue).await?;
    Ok(report)
}

/// Restores a backup archive into `target`'s empty data directory and makes the node
/// the only voter of a new membership (see the module docs).
pub async fn recover_from_archive(
    target: &RecoverTarget,
    archive: &Path,
    now: UnixMillis,
) -> Result<RecoverReport, RecoverError> {
    let data_dir = target.data_dir.clone();
    if directory_has_entries(&data_dir).map_err(io_error("read the data directory", &data_dir))? {
        return Err(RecoverError::NotEmpty { path: data_dir });
    }
    let restored = restore::import(archive, &data_dir).await?;
    let queue = restored.queue;
    let last = restored.last_applied;
    let previous_term = restored.term.max(last.leader_id.term);
    let mut report = RecoverReport {
        source: archive.display().to_string(),
        previous_term,
        previous_voters: restored.voters,
        previous_last_index: Some(last.index),
        previous_committed_index: Some(last.index),
        replayed: 0,
        replayed_uncommitted: 0,
        new_term: previous_term + 1,
        new_index: last.index + 1,
        entries: queue.entries.len() as u64,
        live_entries: queue.live_entries().count() as u64,
        restored_bodies: restored.bodies,
        missing_bodies: Vec::new(),
        old_log: None,
    };
    rewrite(target, &queue, None, &report, now).await?;
    report.missing_bodies = missing_bodies(&data_dir, &queue).await?;
    Ok(report)
}

/// True when `dir` exists and holds anything but `lost+found`.
fn directory_has_entries(dir: &Path) -> io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                if entry?.file_name() != "lost+found" {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens the log for reading, refusing a damaged one (the automatic repair would set it
/// aside and leave nothing to recover). Returns the log and the vote's shadow copy.
fn open_log(data_dir: &Path) -> Result<(LogStore, Option<Vote>), RecoverError> {
    let log_dir = data_dir.join(LOG_DIR);
    std::fs::create_dir_all(&log_dir).map_err(io_error("create the Raft log", &log_dir))?;
    let verdict = {
        let _lock = lock_log_dir(&log_dir).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => RecoverError::InUse {
                path: data_dir.to_path_buf(),
                detail: e.to_string(),
            },
            _ => io_error("lock the Raft log", &log_dir)(e),
        })?;
        scan_wal(&log_dir, ChunkLimits::PRODUCTION)
            .map_err(io_error("scan the Raft log", &log_dir))?
    };
    if let WalVerdict::Damaged(damage) = verdict {
        return Err(RecoverError::LogDamaged {
            path: log_dir,
            detail: damage.to_string(),
        });
    }
    let shadow = Arc::new(VoteShadow::new(data_dir.join(VOTE_FILE)));
    let shadow_vote = match shadow
        .read()
        .map_err(io_error("read the vote", shadow.path()))?
    {
        ShadowState::Stored(vote) => vote,
        ShadowState::Missing | ShadowState::Corrupt { .. } => None,
    };
    let log = LogStore::open_after_scan(&log_dir, shadow, CHUNK_MAX_BYTES).map_err(|e| {
        RecoverError::LogDamaged {
            path: log_dir.clone(),
            detail: e.to_string(),
        }
    })?;
    Ok((log, shadow_vote))
}

/// Writes the new state: the snapshot at the new log id with membership {this node},
/// then the vote (shadow first), then a fresh log purged up to that id, which replaces
/// the old log (moved to quarantine). Returns where the old log went.
async fn rewrite(
    target: &RecoverTarget,
    queue: &QueueState,
    old_log: Option<LogStore>,
    report: &RecoverReport,
    now: UnixMillis,
) -> Result<Option<PathBuf>, RecoverError> {
    let target = target.clone();
    let mut queue = queue.clone();
    // Deliveries leased to the lost nodes: the operator declared those nodes gone for
    // good, so their leases would only hold this node back (for up to a lease, with
    // the mail waiting) from delivering those messages. A lost node that still runs
    // could deliver one of them twice, as the warning says.
    for entry in queue.entries.values_mut() {
        if entry
            .assignment
            .is_some_and(|assignment| assignment.owner != target.node_id)
        {
            entry.assignment = None;
        }
    }
    let new_term = report.new_term;
    let new_index = report.new_index;
    let data_dir = target.data_dir.clone();
    blocking("rewrite the Raft state", &data_dir, move || {
        let data_dir = &target.data_dir;
        let me = target.node_id;
        let log_id = LogId::new(CommittedLeaderId::new(new_term, me), new_index);
        let nodes = BTreeMap::from([(
            me,
            PeerNode {
                addr: target.addr.clone(),
                site: target.site.clone(),
            },
        )]);
        let membership = Membership::new(vec![BTreeSet::from([me])], nodes)
            .map_err(|e| io_error("build the membership", data_dir)(io::Error::other(e)))?;
        let meta = SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::new(Some(log_id), membership),
        };
        // 1. The snapshot: from here on, a start sees the new membership (openraft
        //    purges an older log up to it by itself).
        let snapshot_dir = data_dir.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&snapshot_dir)
            .map_err(io_error("create the snapshot directory", &snapshot_dir))?;
        let bytes = encode_snapshot(&meta, &queue)
            .map_err(io_error("encode the snapshot", &snapshot_dir))?;
        write_durably(&snapshot_dir, &snapshot_name(new_index), &bytes)
            .map_err(io_error("write the snapshot", &snapshot_dir))?;
        // 2. The vote, shadow first (it only moves forward: the new term is above every
        //    term seen).
        let vote = Vote::new_committed(new_term, me);
        let shadow = Arc::new(VoteShadow::new(data_dir.join(VOTE_FILE)));
        shadow
            .write_blocking(Some(vote))
            .map_err(io_error("write the vote", shadow.path()))?;
        // 3. A fresh log beside the old one, then the swap.
        drop(old_log);
        let new_dir = data_dir.join(NEW_LOG_DIR);
        remove_dir_if_present(&new_dir).map_err(io_error("clear a leftover log", &new_dir))?;
        {
            let log = LogStore::open_after_scan(&new_dir, shadow, CHUNK_MAX_BYTES)
                .map_err(io_error("create the new log", &new_dir))?;
            log.restore_vote(vote)
                .map_err(io_error("write the vote", &new_dir))?;
            log.purge_blocking(log_id)
                .map_err(io_error("start the new log", &new_dir))?;
        }
        let log_dir = data_dir.join(LOG_DIR);
        let mut moved = None;
        if log_dir.exists() {
            let dest = data_dir
                .join(QUARANTINE_DIR)
                .join(format!("recover-{}", now.0));
            std::fs::create_dir_all(&dest).map_err(io_error("create the quarantine", &dest))?;
            std::fs::rename(&log_dir, dest.join(LOG_DIR))
                .map_err(io_error("move the old log aside", &log_dir))?;
            moved = Some(dest.join(LOG_DIR));
        }
        std::fs::rename(&new_dir, &log_dir).map_err(io_error("install the new log", &log_dir))?;
        std::fs::File::open(data_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error("sync the data directory", data_dir))?;
        info!(
            node_id = me,
            term = new_term,
            index = new_index,
            "cluster_recovered_as_sole_voter"
        );
        Ok(moved)
    })
    .await
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Live messages whose body is not in this node's blob store.
async fn missing_bodies(
    data_dir: &Path,
    queue: &QueueState,
) -> Result<Vec<(BodyDigest, Vec<QueueId>)>, RecoverError> {
    let blob_dir = data_dir.join("bodies");
    let blobs = BlobStore::open(&blob_dir)
        .await
        .map_err(|e| io_error("open the blob store", &blob_dir)(io::Error::other(e.to_string())))?;
    let mut missing: BTreeMap<BodyDigest, Vec<QueueId>> = BTreeMap::new();
    for entry in queue.live_entries() {
        if !blobs.contains(&entry.body).await {
            missing.entry(entry.body).or_default().push(entry.id);
        }
    }
    if !missing.is_empty() {
        warn!(count = missing.len(), "recover_bodies_missing");
    }
    Ok(missing.into_iter().collect())
}

#[cfg(test)]
mod tests;
