//! The Raft log and vote: openraft's `RaftLogStorage` over the `raft-log` WAL.
//!
//! raft-log (by openraft's author) is a chunked, checksummed write-ahead log with one
//! flush thread that batches requests: every append asks for a synced flush, and the
//! thread folds all requests that arrive within `flush_batch_wait` into one
//! `fdatasync` (group commit). openraft's `IOFlushed` callback is invoked from that
//! thread once the entries are durable; a follower acknowledges, and a leader counts
//! itself in the quorum, only after that.
//!
//! Records are our own postcard encoding of openraft's types behind a length prefix
//! (`Encoded<T>`), so a record never depends on the decoder knowing where it ends.
//!
//! The vote has a second, separately checksummed home, the shadow file (`vote_shadow`):
//! `save_vote` writes it durably before the WAL record, so the vote survives a log that
//! has to be set aside.
//!
//! Lifecycle: `log_recovery::open_log` checks the WAL's files for damage, then calls
//! `LogStore::open_after_scan` (blocking, so all of it runs on a blocking thread); the
//! `RaftLog` sits behind a std `RwLock` that is never held across an `.await`; dropping
//! the last handle shuts the flush thread down after a final sync.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{LogIdOptionExt, OptionalSend, RaftLogReader};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::{Decode, Encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::types::{Entry, LogId, TypeConfig, Vote, decode, encode};
use crate::vote_shadow::VoteShadow;

/// How long the flush thread waits for more requests before one fdatasync.
const GROUP_COMMIT_WINDOW: Duration = Duration::from_micros(500);
/// WAL chunk size: bounds the memory pinned by the open chunk and the replay unit.
pub(crate) const CHUNK_MAX_BYTES: usize = 64 << 20;
/// Records per chunk before raft-log rotates (its default, stated so that the damage
/// scan can tell a full chunk from one that lost its end).
pub(crate) const CHUNK_MAX_RECORDS: usize = 1024 * 1024;

/// A serde value stored in the WAL as `u32 length ++ postcard bytes`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Encoded<T>(pub T);

impl<T: Serialize> Encode for Encoded<T> {
    fn encode<W: io::Write>(&self, writer: W) -> io::Result<usize> {
        encode(&self.0).map_err(io::Error::other)?.encode(writer)
    }
}

impl<T: DeserializeOwned> Decode for Encoded<T> {
    fn decode<R: io::Read>(reader: R) -> io::Result<Self> {
        let bytes: Vec<u8> = Decode::decode(reader)?;
        decode(&bytes)
            .map(Encoded)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Completion of a flush, run on raft-log's flush thread.
pub(crate) enum FlushDone {
    /// openraft waits for these entries to be durable.
    Raft(IOFlushed<TypeConfig>),
    /// An async caller (save_vote) awaits this.
    Waiter(oneshot::Sender<io::Result<()>>),
}

impl raft_log::Callback for FlushDone {
    fn send(self, result: io::Result<()>) {
        match self {
            FlushDone::Raft(flushed) => flushed.io_completed(result),
            FlushDone::Waiter(tx) => {
                // The waiter may have been cancelled (shutdown); nothing else to tell.
                let _ = tx.send(result);
            }
        }
    }
}

/// raft-log's type parameters for our Raft.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WalTypes;

impl raft_log::Types for WalTypes {
    type LogId = Encoded<LogId>;
    type LogPayload = Encoded<Entry>;
    type Vote = Encoded<Vote>;
    type Callback = FlushDone;
    type UserData = Encoded<()>;

    fn log_index(log_id: &Self::LogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &Self::LogPayload) -> u64 {
        // Only used for cache accounting; an envelope is typically well under 1 KiB.
        match &payload.0.payload {
            openraft::EntryPayload::Normal(command) => 256 + command_size_hint(command),
            _ => 128,
        }
    }
}

fn command_size_hint(command: &mxfleet_core::Command) -> u64 {
    match command {
        mxfleet_core::Command::Enqueue { envelope, .. } => {
            envelope
                .recipients
                .iter()
                .map(|r| r.len() as u64 + 8)
                .sum::<u64>()
                + envelope.sender.len() as u64
        }
        _ => 0,
    }
}

/// The Raft log and vote of one node. Cheap to clone; clones share the WAL and the
/// vote's shadow file.
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<RwLock<raft_log::RaftLog<WalTypes>>>,
    vote_shadow: Arc<VoteShadow>,
}

fn poisoned() -> io::Error {
    io::Error::other("raft log lock poisoned by an earlier panic")
}

fn flush_thread_stopped() -> io::Error {
    io::Error::other("raft log flush thread stopped")
}

impl LogStore {
    /// Opens (or creates) the WAL in `dir`, replaying it, and makes whatever replay
    /// created durable. Blocking. Checks nothing beyond what raft-log checks: callers go
    /// through `log_recovery::open_log`, which scans the files for damage first.
    ///
    /// raft-log truncates an incomplete last record (a crash mid-append: those bytes
    /// were never fsynced, so never acknowledged) and drops a last chunk that lacks its
    /// first record; the scan has already refused both when they hide damage.
    pub(crate) fn open_after_scan(
        dir: &Path,
        vote_shadow: Arc<VoteShadow>,
        chunk_max_bytes: usize,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut config = raft_log::Config::new(dir.display());
        config.wal.chunk_max_size = Some(chunk_max_bytes);
        config.wal.chunk_max_records = Some(CHUNK_MAX_RECORDS);
        config.wal.flush_batch_wait = Some(GROUP_COMMIT_WINDOW);
        config.wal.truncate_incomplete_record = Some(true);
        let wal = raft_log::RaftLog::open(Arc::new(config))?;
        let store = LogStore {
            wal: Arc::new(RwLock::new(wal)),
            vote_shadow,
        };
        // Replay may have created a chunk whose first record is not yet synced. Syncing
        // it now means an empty last chunk can later only come from an interrupted
        // rotation (after a full chunk), which is what lets the scan call any other
        // empty last chunk damage.
        store.flush_blocking()?;
        Ok(store)
    }

    /// The vote in the WAL.
    pub(crate) fn vote(&self) -> io::Result<Option<Vote>> {
        Ok(self.read()?.log_state().vote().map(|v| v.0))
    }

    /// The index of the last entry in the WAL.
    pub(crate) fn last_index(&self) -> io::Result<Option<u64>> {
        Ok(self.read()?.log_state().last().map(|id| id.0.index))
    }

    /// Writes `vote` into the WAL and waits until it is durable. Blocking; for opening
    /// and recovery only, before Raft runs (openraft uses `save_vote`). The shadow
    /// already holds `vote` or a greater one, so it is not written here.
    pub(crate) fn restore_vote(&self, vote: Vote) -> io::Result<()> {
        self.write()?.save_vote(Encoded(vote))?;
        self.flush_blocking()
    }

    /// Purges the log up to `upto`, which may lie beyond its last entry (the log then
    /// starts right after `upto`), and waits until that is durable. Blocking; for the
    /// offline `recover` only, before Raft runs.
    pub(crate) fn purge_blocking(&self, upto: LogId) -> io::Result<()> {
        self.write()?.purge(Encoded(upto))?;
        self.flush_blocking()
    }

    fn flush_blocking(&self) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.write()?.flush(true, Some(FlushDone::Waiter(tx)))?;
        rx.blocking_recv().map_err(|_| flush_thread_stopped())?
    }

    /// How many fdatasync batches the WAL has performed (group commit shows as far
    /// fewer syncs than appends).
    pub fn sync_count(&self) -> u64 {
        self.read()
            .map(|wal| wal.stat().flush_metrics.sync_batch_count)
            .unwrap_or(0)
    }

    /// Waits until this handle is the last one holding the WAL (openraft's replication
    /// tasks hold readers for a moment after shutdown), so that dropping it closes the
    /// WAL and releases its directory lock. False if others still hold it at `deadline`.
    pub async fn wait_until_sole_owner(&self, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        while Arc::strong_count(&self.wal) > 1 {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    fn read(&self) -> io::Result<RwLockReadGuard<'_, raft_log::RaftLog<WalTypes>>> {
        self.wal.read().map_err(|_| poisoned())
    }

    fn write(&self) -> io::Result<RwLockWriteGuard<'_, raft_log::RaftLog<WalTypes>>> {
        self.wal.write().map_err(|_| poisoned())
    }
}

fn index_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&n) => n,
        Bound::Excluded(&n) => n.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&n) => n.saturating_add(1),
        Bound::Excluded(&n) => n,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = index_bounds(&range);
        let wal = self.read()?;
        wal.read(start, end)
            .map(|item| item.map(|(_, payload)| payload.0))
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.read()?.log_state().vote().map(|v| v.0))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let wal = self.read()?;
        let state = wal.log_state();
        Ok(LogState {
            last_purged_log_id: state.purged().map(|id| id.0),
            last_log_id: state.last().map(|id| id.0),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // Shadow first: a crash between the two writes leaves the shadow ahead of the
        // WAL (reconciled at the next open), never behind a vote we answered with.
        self.vote_shadow.store(*vote).await?;
        let (tx, rx) = oneshot::channel();
        {
            let mut wal = self.write()?;
            wal.save_vote(Encoded(*vote))?;
            wal.flush(true, Some(FlushDone::Waiter(tx)))?;
        }
        // The vote must be durable before we answer anyone with it.
        rx.await.map_err(|_| flush_thread_stopped())?
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let Some(committed) = committed else {
            return Ok(());
        };
        let mut wal = self.write()?;
        let state = wal.log_state();
        // raft-log refuses a commit that goes backwards or beyond its last entry; both
        // can legitimately be asked for around truncation, and neither needs recording.
        if state.committed().map(|id| &id.0) >= Some(&committed)
            || state.last().map(|id| &id.0) < Some(&committed)
        {
            return Ok(());
        }
        wal.commit(Encoded(committed))?;
        // Not synced on its own: the next synced append carries it (the WAL is FIFO).
        wal.flush(false, None)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.read()?.log_state().committed().map(|id| id.0))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut wal = self.write()?;
        wal.append(
            entries
                .into_iter()
                .map(|entry| (Encoded(entry.log_id), Encoded(entry))),
        )?;
        wal.flush(true, Some(FlushDone::Raft(callback)))
    }

    async fn truncate_after(&mut self, last_kept: Option<LogId>) -> Result<(), io::Error> {
        let mut wal = self.write()?;
        let first_removed = last_kept.next_index();
        if first_removed >= wal.log_state().last().map(|id| &id.0).next_index() {
            return Ok(());
        }
        wal.truncate(first_removed)?;
        Ok(())
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        let mut wal = self.write()?;
        if upto.index < wal.log_state().purged().map(|id| &id.0).next_index() {
            return Ok(());
        }
        wal.purge(Encoded(upto))?;
        // A synced flush lets the flush thread delete chunk files that are fully purged.
        wal.flush(true, None)
    }
}
