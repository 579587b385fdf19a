//! Opening the Raft log safely: tell the torn tail a crash leaves from damage, and repair
//! damage by setting the node's replicated data aside and rejoining from peers.
//!
//! What raft-log 0.4.6 does on its own when it opens a WAL whose files were changed
//! (every record carries a CRC-32; a record has no length frame, it ends where its
//! fields say):
//! - an incomplete last record (a crash mid-append): truncated, the rest kept. Correct:
//!   those bytes were never fsynced, so never acknowledged.
//! - a flipped byte inside a record: refused (`InvalidData`, checksum or decode error).
//! - a flipped byte in a length field that makes it longer, in the *last* chunk:
//!   indistinguishable from a torn append, so raft-log silently truncates there and loses
//!   every later, fsynced record (entries and votes).
//! - the last chunk truncated to zero: removed as an interrupted chunk creation, with its
//!   records (the whole log, vote included, when it is the only chunk).
//! - an earlier chunk truncated to zero: raft-log panics (index underflow); an earlier
//!   chunk removed: refused ("gap between chunks").
//!
//! So before raft-log opens the directory, [`scan_wal`] reads every chunk itself,
//! holding the WAL's directory lock, and returns a [`WalVerdict`]. A failure in the last
//! chunk is a torn tail only when no complete, checksummed record follows it, and an
//! empty last chunk is an interrupted rotation only when the chunk before it is full;
//! anything else is [`WalVerdict::Damaged`]. Failing to *read* a file (permissions, an
//! I/O error, the lock held by another process) is never damage: opening fails and
//! nothing moves. [`classify_open_failure`] is the one place that tells the two apart
//! for raft-log's own errors.
//!
//! Recovery of a damaged log (automatic, and loud):
//! 1. The vote comes from the shadow file (`vote_shadow`). Without a readable shadow the
//!    node cannot prove which vote it last cast, so it refuses to start
//!    ([`LogOpenError::VoteUnknown`]) rather than risk voting twice.
//! 2. `<data>/raft-log`, `<data>/state` (sled) and `<data>/snapshots` move to
//!    `<data>/quarantine/<unix-millis>/`. Nothing is deleted; an operator removes the
//!    directory once it has been looked at. Bodies (`<data>/bodies`) stay: they are
//!    content-addressed, and the body keeper fetches any that are missing.
//! 3. A fresh log starts with the vote restored, and an empty state machine. The
//!    leader finds the follower's log behind what it had matched, starts replication
//!    over (the Raft config allows that reversion), and sends a snapshot if it has purged
//!    the entries, then the log.
//!
//! Durability while it catches up (why this is safe, and where it is weaker): the
//! entries this node had acknowledged are gone from it. Each committed entry is still on
//! the other nodes that acknowledged it, the leader among them (a Raft leader holds every
//! committed entry), so the repair itself loses nothing: the leader sends it all back.
//! What is weaker until the node has caught up: its log is empty, so it grants its vote
//! to any candidate with a greater term. If the leader is lost in that window, an entry
//! that only this node and fewer than a majority of others held can be outvoted: this
//! node's vote can help elect a candidate that lacks it. That takes a second fault (the
//! leader's loss) inside the catch-up window; while a leader heartbeats, its lease makes
//! the node refuse votes. The vote itself is never lost, so the node never votes twice
//! in a term. The recovery logs `raft_log_corrupt` (error) and `rejoining_from_peers`
//! (warn, with this caveat).
//!
//! Crash safety of the recovery itself: an interrupted move or a crash before the fresh
//! log holds the vote leaves an empty log beside a shadow that says the node voted, which
//! the next start judges damaged and repairs again.
//!
//! Layout: this file opens and repairs ([`open_log`], `recover`, `reconcile_vote`,
//! `move_aside`); `wal_scan` reads and judges the chunk files; `tests` damages real WAL
//! files on purpose.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mxfleet_core::UnixMillis;
use tracing::{error, info, warn};

use crate::error::LogOpenError;
use crate::log_store::{LogStore, WalTypes};
use crate::state_machine::{SLED_DIR, SNAPSHOT_DIR};
use crate::types::Vote;
use crate::vote_shadow::{ShadowState, VoteShadow};

/// The WAL's directory under the data directory.
pub(crate) const LOG_DIR: &str = "raft-log";
/// The vote's shadow file under the data directory (outside `LOG_DIR`, so that it stays
/// when the log is set aside).
pub(crate) const VOTE_FILE: &str = "raft-vote";
/// Where damaged data is set aside, one timestamped directory per recovery.
pub(crate) const QUARANTINE_DIR: &str = "quarantine";

/// The log, opened; and the recovery, if it had to be repaired.
pub(crate) struct OpenedLog {
    pub log: LogStore,
    pub recovery: Option<Recovery>,
}

/// A repair that happened while opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    pub damage: WalDamage,
    /// Where the damaged log and the state machine were moved.
    pub quarantine: PathBuf,
    /// The vote the fresh log starts with.
    pub restored_vote: Option<Vote>,
}

/// Whether a failure to open the log proves damage (repair it) or is operational
/// (refuse to start, move nothing). The one place that decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenFailure {
    Damage,
    Operational,
}

/// Classifies an error raft-log returned while opening a directory the scan passed.
/// Only a format failure is damage: raft-log reports checksum, decode and chunk-layout
/// failures as `InvalidData` or `UnexpectedEof`. Everything else (permission denied,
/// no space, the lock held elsewhere, an I/O error, a replay that breaks raft-log's own
/// invariants) is operational: quarantining on it would throw away a healthy log.
pub(crate) fn classify_open_failure(error: &io::Error) -> OpenFailure {
    match error.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => OpenFailure::Damage,
        _ => OpenFailure::Operational,
    }
}

/// Wraps an operational failure on `path` (see [`classify_open_failure`]).
fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LogOpenError + use<> {
    let path = path.to_path_buf();
    move |source| LogOpenError::Io { path, source }
}

/// Opens the Raft log under `data_dir`, repairing it if it is damaged (module docs).
/// Blocking. `now` names the quarantine directory.
pub(crate) fn open_log(
    data_dir: &Path,
    limits: ChunkLimits,
    now: UnixMillis,
) -> Result<OpenedLog, LogOpenError> {
    let log_dir = data_dir.join(LOG_DIR);
    std::fs::create_dir_all(&log_dir).map_err(io_error(&log_dir))?;
    let shadow = Arc::new(VoteShadow::new(data_dir.join(VOTE_FILE)));
    let shadow_state = shadow.read().map_err(io_error(shadow.path()))?;

    let verdict = {
        // Another process appending to this log would make its tail look torn.
        let _lock = lock_log_dir(&log_dir).map_err(io_error(&log_dir))?;
        scan_wal(&log_dir, limits).map_err(io_error(&log_dir))?
    };
    let damage = match judge_empty_log(verdict, &log_dir, &shadow_state) {
        WalVerdict::Damaged(damage) => damage,
        verdict => {
            if let WalVerdict::TornTail {
                path,
                offset,
                dropped_bytes,
            } = &verdict
            {
                warn!(
                    path = %path.display(),
                    offset,
                    dropped_bytes,
                    "raft_log_torn_tail_truncated"
                );
            }
            match LogStore::open_after_scan(&log_dir, shadow.clone(), limits.max_bytes) {
                Ok(log) => {
                    reconcile_vote(&log, &shadow, shadow_state).map_err(io_error(&log_dir))?;
                    info!(
                        path = %log_dir.display(),
                        last_index = log.last_index().ok().flatten(),
                        vote_term = log.vote().ok().flatten().map(|v| v.leader_id.term),
                        "raft_log_opened"
                    );
                    return Ok(OpenedLog {
                        log,
                        recovery: None,
                    });
                }
                Err(e) if classify_open_failure(&e) == OpenFailure::Damage => WalDamage {
                    path: log_dir.clone(),
                    offset: None,
                    cause: e.to_string(),
                },
                Err(e) => return Err(io_error(&log_dir)(e)),
            }
        }
    };
    recover(
        data_dir,
        &log_dir,
        shadow,
        shadow_state,
        damage,
        limits,
        now,
    )
}

/// [`open_log`] on a blocking thread.
pub(crate) async fn open_log_async(
    data_dir: PathBuf,
    limits: ChunkLimits,
    now: UnixMillis,
) -> Result<OpenedLog, LogOpenError> {
    let log_dir = data_dir.join(LOG_DIR);
    tokio::task::spawn_blocking(move || open_log(&data_dir, limits, now))
        .await
        .map_err(|e| LogOpenError::Io {
            path: log_dir,
            source: io::Error::other(e),
        })?
}

fn recover(
    data_dir: &Path,
    log_dir: &Path,
    shadow: Arc<VoteShadow>,
    shadow_state: ShadowState,
    damage: WalDamage,
    limits: ChunkLimits,
    now: UnixMillis,
) -> Result<OpenedLog, LogOpenError> {
    let vote = match shadow_state {
        ShadowState::Stored(vote) => vote,
        ShadowState::Missing => {
            return Err(vote_unknown(
                log_dir,
                &shadow,
                &damage,
                "the file does not exist".into(),
            ));
        }
        ShadowState::Corrupt { why } => {
            return Err(vote_unknown(log_dir, &shadow, &damage, why));
        }
    };
    error!(
        path = %damage.path.display(),
        offset = ?damage.offset,
        cause = %damage.cause,
        "raft_log_corrupt"
    );
    let quarantine = {
        let _lock = lock_log_dir(log_dir).map_err(io_error(log_dir))?;
        move_aside(data_dir, now).map_err(io_error(data_dir))?
    };
    shadow.remember(vote);
    let log =
        LogStore::open_after_scan(log_dir, shadow, limits.max_bytes).map_err(io_error(log_dir))?;
    // The exact vote, committed flag included: a committed vote for this node cannot
    // make it a leader of an empty log, because openraft also requires it to be in the
    // membership, which it only learns from a leader whose vote is greater.
    if let Some(vote) = vote {
        log.restore_vote(vote).map_err(io_error(log_dir))?;
    }
    warn!(
        quarantine = %quarantine.display(),
        vote_term = vote.map(|v| v.leader_id.term),
        voted_for = vote.map(|v| v.leader_id.node_id),
        durability = "entries this node acknowledged are gone from it; the leader holds \
                      every committed one and sends them back, but until this node has \
                      caught up its vote no longer protects them if the leader is lost",
        "rejoining_from_peers"
    );
    Ok(OpenedLog {
        log,
        recovery: Some(Recovery {
            damage,
            quarantine,
            restored_vote: vote,
        }),
    })
}

fn vote_unknown(
    log_dir: &Path,
    shadow: &VoteShadow,
    damage: &WalDamage,
    reason: String,
) -> LogOpenError {
    error!(
        path = %damage.path.display(),
        cause = %damage.cause,
        vote_file = %shadow.path().display(),
        reason = %reason,
        "raft_log_corrupt_vote_unknown"
    );
    LogOpenError::VoteUnknown {
        log: log_dir.to_path_buf(),
        vote_file: shadow.path().to_path_buf(),
        damage: damage.to_string(),
        reason,
    }
}

/// An empty log is a new node's, unless the node has voted (a log with entries always
/// holds a vote, and the shadow is written first) or its first chunk does not start at
/// zero (it held records that were purged). Then the records were lost.
fn judge_empty_log(verdict: WalVerdict, log_dir: &Path, shadow: &ShadowState) -> WalVerdict {
    let WalVerdict::Empty { first_chunk } = verdict else {
        return verdict;
    };
    let lost = |cause: String| {
        WalVerdict::Damaged(WalDamage {
            path: log_dir.to_path_buf(),
            offset: None,
            cause,
        })
    };
    match shadow {
        _ if first_chunk.is_some_and(|at| at > 0) => lost(format!(
            "the log holds no complete record, yet its first chunk starts at log offset {}",
            first_chunk.unwrap_or_default()
        )),
        ShadowState::Stored(Some(vote)) => lost(format!(
            "the log holds no complete record, yet this node has voted (term {})",
            vote.leader_id.term
        )),
        ShadowState::Corrupt { why } => lost(format!(
            "the log holds no complete record and the vote file is unreadable ({why})"
        )),
        ShadowState::Stored(None) | ShadowState::Missing => WalVerdict::Empty { first_chunk },
    }
}

/// Brings the shadow and the WAL's vote into line after a clean open. The greater one
/// wins: the shadow is ahead after a crash between its write and the WAL's, or when a
/// truncated tail took a `SaveVote` record with it; it is missing after an upgrade from a
/// version without shadows.
fn reconcile_vote(log: &LogStore, shadow: &VoteShadow, state: ShadowState) -> io::Result<()> {
    let in_log = log.vote()?;
    let held = match state {
        ShadowState::Stored(stored) if stored == in_log => stored,
        ShadowState::Stored(Some(stored)) if Some(stored) > in_log => {
            warn!(
                shadow_term = stored.leader_id.term,
                log_term = in_log.map(|v| v.leader_id.term),
                "raft_vote_restored_from_shadow"
            );
            log.restore_vote(stored)?;
            Some(stored)
        }
        ShadowState::Stored(stored) => {
            // Cannot follow from `save_vote` (shadow first); a restored backup can.
            warn!(
                shadow_term = stored.map(|v| v.leader_id.term),
                log_term = in_log.map(|v| v.leader_id.term),
                "raft_vote_shadow_behind_log"
            );
            shadow.write_blocking(in_log)?;
            in_log
        }
        ShadowState::Missing => {
            info!(path = %shadow.path().display(), "raft_vote_shadow_created");
            shadow.write_blocking(in_log)?;
            in_log
        }
        ShadowState::Corrupt { why } => {
            warn!(path = %shadow.path().display(), cause = %why, "raft_vote_shadow_rewritten");
            shadow.write_blocking(in_log)?;
            in_log
        }
    };
    shadow.remember(held);
    Ok(())
}

/// raft-log's own directory lock (an exclusive `flock` on `<dir>/LOCK`), held while the
/// scan reads and while the recovery moves the directory. Released on drop, before
/// raft-log takes it for itself.
pub(crate) fn lock_log_dir(dir: &Path) -> io::Result<raft_log::chunked_wal::WalLock> {
    let config = raft_log::chunked_wal::Config::new(dir.display());
    raft_log::chunked_wal::ChunkedWal::<raft_log::RaftWalTypes<WalTypes>>::acquire_lock(&config)
}

/// Moves the log and the state machine to a new `quarantine/<now>` directory.
fn move_aside(data_dir: &Path, now: UnixMillis) -> io::Result<PathBuf> {
    let root = data_dir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&root)?;
    let mut dest = root.join(now.0.to_string());
    let mut attempt = 0;
    loop {
        match std::fs::create_dir(&dest) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
                dest = root.join(format!("{}-{attempt}", now.0));
            }
            Err(e) => return Err(e),
        }
    }
    // The log moves last: until then a crash leaves it damaged in place, to be found
    // again; after, an empty log beside a shadow that says we voted, also found again.
    for name in [SLED_DIR, SNAPSHOT_DIR, LOG_DIR] {
        match std::fs::rename(data_dir.join(name), dest.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    for dir in [&dest, &root, &data_dir.to_path_buf()] {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(dest)
}

mod wal_scan;

pub(crate) use wal_scan::{ChunkLimits, WalDamage, WalVerdict, scan_wal};

#[cfg(test)]
mod tests;
