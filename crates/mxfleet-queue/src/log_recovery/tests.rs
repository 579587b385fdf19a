//! Damage detection and repair on real WAL files: each test writes a log the way a node
//! does (votes, entries, clean close), changes its bytes the way a crash or a bad disk
//! would, and checks what opening it again decides.

use std::path::{Path, PathBuf};

use mxfleet_core::{Command, UnixMillis};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::vote::RaftLeaderId;
use openraft::vote::leader_id_adv::CommittedLeaderId;
use openraft::{EntryPayload, RaftLogReader};

use super::wal_scan::{decode_record, list_chunks};
use super::*;
use crate::log_store::CHUNK_MAX_RECORDS;
use crate::types::{Entry, LogId};

const NOW: UnixMillis = UnixMillis(1_700_000_000_000);
/// Small chunks, so that a few dozen entries span several of them.
const SMALL: ChunkLimits = ChunkLimits {
    max_bytes: 512,
    max_records: CHUNK_MAX_RECORDS,
};
/// The vote a follower last cast in `write_log`: after every entry.
const LAST_VOTE_TERM: u64 = 3;

fn last_vote() -> Vote {
    Vote::new_committed(LAST_VOTE_TERM, 2)
}

fn entry(index: u64) -> Entry {
    let mut entry = Entry::new_blank(LogId::new(CommittedLeaderId::new(2, 1), index));
    entry.payload = EntryPayload::Normal(Command::ExpireDedup {
        now: UnixMillis(index),
    });
    entry
}

async fn open(data: &Path, limits: ChunkLimits) -> Result<OpenedLog, LogOpenError> {
    open_log_async(data.to_path_buf(), limits, NOW).await
}

/// Closes the log the way a clean shutdown does (final sync, lock released).
async fn close(log: LogStore) {
    tokio::task::spawn_blocking(move || drop(log))
        .await
        .expect("close");
}

/// Writes what a follower writes: two votes in term 2 (on a new log), entries
/// `from..=to`, then the vote in term 3; closes the log.
async fn write_log(data: &Path, limits: ChunkLimits, from: u64, to: u64) {
    let OpenedLog { mut log, recovery } = open(data, limits).await.expect("open");
    assert_eq!(recovery, None);
    if log.read_vote().await.unwrap().is_none() {
        log.save_vote(&Vote::new(2, 1)).await.unwrap();
        log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
    }
    for index in from..=to {
        log.append([entry(index)], IOFlushed::noop()).await.unwrap();
    }
    // Synced: everything appended before it is durable too (the WAL is FIFO).
    log.save_vote(&last_vote()).await.unwrap();
    close(log).await;
}

fn chunks(data: &Path) -> Vec<PathBuf> {
    list_chunks(&data.join(LOG_DIR))
        .unwrap()
        .into_iter()
        .map(|(_, path)| path)
        .collect()
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    change(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
}

/// (start, length, record type) of every record in a chunk file.
fn records(path: &Path) -> Vec<(usize, usize, u8)> {
    let bytes = std::fs::read(path).unwrap();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = decode_record(&bytes[at..]).expect("an intact chunk");
        found.push((at, len, bytes[at + 3]));
        at += len;
    }
    found
}

async fn state_of(log: &mut LogStore) -> (Option<u64>, Option<Vote>, Vec<u64>) {
    let state = log.get_log_state().await.unwrap();
    let indexes = log
        .try_get_log_entries(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    let vote = log.read_vote().await.unwrap();
    (state.last_log_id.map(|l| l.index), vote, indexes)
}

fn quarantined(data: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(data.join(QUARANTINE_DIR)) {
        Ok(dirs) => dirs.map(|d| d.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn scan(data: &Path, limits: ChunkLimits) -> WalVerdict {
    scan_wal(&data.join(LOG_DIR), limits).unwrap()
}

#[tokio::test]
async fn a_clean_reopen_keeps_everything_and_moves_nothing() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), ChunkLimits::PRODUCTION, 1, 20).await;
    assert_eq!(
        scan(data.path(), ChunkLimits::PRODUCTION),
        WalVerdict::Intact
    );
    let OpenedLog { mut log, recovery } = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    assert_eq!(recovery, None);
    let (last, vote, indexes) = state_of(&mut log).await;
    assert_eq!(last, Some(20));
    assert_eq!(vote, Some(last_vote()));
    assert_eq!(indexes, (1..=20).collect::<Vec<_>>());
    assert!(quarantined(data.path()).is_empty());
    assert_eq!(
        VoteShadow::new(data.path().join(VOTE_FILE)).read().unwrap(),
        ShadowState::Stored(Some(last_vote()))
    );
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_and_the_rest_kept() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), ChunkLimits::PRODUCTION, 1, 20).await;
    let chunk = &chunks(data.path())[0];
    // A crash in the middle of appending the last record (the term-3 vote).
    edit(chunk, |bytes| bytes.truncate(bytes.len() - 5));
    assert!(matches!(
        scan(data.path(), ChunkLimits::PRODUCTION),
        WalVerdict::TornTail { dropped_bytes, .. } if dropped_bytes > 0
    ));
    let OpenedLog { mut log, recovery } = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    assert_eq!(recovery, None);
    let (last, vote, indexes) = state_of(&mut log).await;
    assert_eq!(last, Some(20), "every complete entry is kept");
    assert_eq!(indexes.len(), 20);
    // The torn record was the vote; the shadow, written first, puts it back.
    assert_eq!(vote, Some(last_vote()));
    assert!(quarantined(data.path()).is_empty());
}

#[tokio::test]
async fn a_flipped_byte_mid_chunk_is_damage_and_the_node_restarts_empty_with_its_vote() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), ChunkLimits::PRODUCTION, 1, 40).await;
    for derived in [SLED_DIR, SNAPSHOT_DIR, "bodies"] {
        std::fs::create_dir_all(data.path().join(derived)).unwrap();
        std::fs::write(data.path().join(derived).join("marker"), derived).unwrap();
    }
    let chunk = chunks(data.path())[0].clone();
    edit(&chunk, |bytes| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
    });
    assert!(matches!(
        scan(data.path(), ChunkLimits::PRODUCTION),
        WalVerdict::Damaged(_)
    ));

    let OpenedLog { mut log, recovery } = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    let recovery = recovery.expect("damage is repaired");
    assert_eq!(recovery.restored_vote, Some(last_vote()));
    assert_eq!(
        recovery.quarantine,
        data.path().join(QUARANTINE_DIR).join(NOW.0.to_string())
    );
    let (last, vote, indexes) = state_of(&mut log).await;
    assert_eq!((last, indexes.len()), (None, 0), "a fresh, empty log");
    assert_eq!(vote, Some(last_vote()), "the vote survives the repair");
    // The damaged log and the state derived from it are kept for inspection; bodies
    // stay where they are.
    let file_name = chunk.file_name().unwrap();
    assert!(recovery.quarantine.join(LOG_DIR).join(file_name).exists());
    for derived in [SLED_DIR, SNAPSHOT_DIR] {
        assert!(recovery.quarantine.join(derived).join("marker").exists());
        assert!(!data.path().join(derived).exists());
    }
    assert!(data.path().join("bodies/marker").exists());
    close(log).await;

    // The repaired log is an ordinary one from then on.
    let reopened = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    assert_eq!(reopened.recovery, None);
    assert_eq!(quarantined(data.path()).len(), 1);
}

#[tokio::test]
async fn a_length_field_made_longer_is_damage_not_a_torn_tail() {
    // raft-log alone truncates here and silently drops every later record: the
    // record's length runs past the end of the file, exactly like a torn append.
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), ChunkLimits::PRODUCTION, 1, 40).await;
    let chunk = chunks(data.path())[0].clone();
    let appends: Vec<_> = records(&chunk)
        .into_iter()
        .filter(|(_, _, kind)| *kind == 1)
        .collect();
    let (start, _, _) = appends[appends.len() / 2];
    // The high byte of the first length-prefixed field (the entry's log id).
    edit(&chunk, |bytes| bytes[start + 4] |= 0x01);
    match scan(data.path(), ChunkLimits::PRODUCTION) {
        WalVerdict::Damaged(damage) => {
            assert_eq!(damage.offset, Some(start as u64));
            assert!(damage.cause.contains("follows"), "{}", damage.cause);
        }
        other => panic!("expected damage, got {other:?}"),
    }
    let opened = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    assert!(opened.recovery.is_some());
}

#[tokio::test]
async fn the_only_chunk_emptied_is_damage_when_the_node_has_voted() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), ChunkLimits::PRODUCTION, 1, 10).await;
    edit(&chunks(data.path())[0], Vec::clear);
    assert_eq!(
        scan(data.path(), ChunkLimits::PRODUCTION),
        WalVerdict::Empty {
            first_chunk: Some(0)
        }
    );
    let OpenedLog { mut log, recovery } = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    assert!(
        recovery
            .expect("repaired")
            .damage
            .cause
            .contains("has voted")
    );
    assert_eq!(state_of(&mut log).await.1, Some(last_vote()));
}

#[tokio::test]
async fn a_missing_log_directory_beside_a_vote_is_damage() {
    // Also what a crash between moving the log aside and restoring the vote leaves.
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), ChunkLimits::PRODUCTION, 1, 10).await;
    std::fs::remove_dir_all(data.path().join(LOG_DIR)).unwrap();
    let OpenedLog { mut log, recovery } = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    assert!(recovery.is_some());
    assert_eq!(state_of(&mut log).await.1, Some(last_vote()));
}

#[tokio::test]
async fn a_new_node_with_an_empty_log_is_not_damaged() {
    let data = tempfile::tempdir().unwrap();
    let OpenedLog { log, recovery } = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    assert_eq!(recovery, None);
    close(log).await;
    let again = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    assert_eq!(again.recovery, None);
    assert!(quarantined(data.path()).is_empty());
}

#[tokio::test]
async fn an_emptied_earlier_chunk_is_damage_not_a_panic() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), SMALL, 1, 60).await;
    let chunks = chunks(data.path());
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    edit(&chunks[1], Vec::clear);
    assert!(matches!(scan(data.path(), SMALL), WalVerdict::Damaged(_)));
    assert!(open(data.path(), SMALL).await.unwrap().recovery.is_some());
}

#[tokio::test]
async fn a_flipped_byte_in_an_earlier_chunk_is_damage() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), SMALL, 1, 60).await;
    edit(&chunks(data.path())[0], |bytes| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
    });
    assert!(matches!(scan(data.path(), SMALL), WalVerdict::Damaged(_)));
}

#[tokio::test]
async fn a_missing_middle_chunk_is_damage() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), SMALL, 1, 60).await;
    std::fs::remove_file(&chunks(data.path())[1]).unwrap();
    match scan(data.path(), SMALL) {
        WalVerdict::Damaged(damage) => assert!(damage.cause.contains("missing"), "{damage}"),
        other => panic!("expected damage, got {other:?}"),
    }
}

#[tokio::test]
async fn an_emptied_last_chunk_after_a_full_one_passes_as_an_interrupted_rotation() {
    // A known limit: a rotation writes the new chunk's first record unsynced, so a crash
    // leaves exactly this. Entries lost this way are not detected; the vote still is
    // restored from the shadow.
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), SMALL, 1, 60).await;
    edit(chunks(data.path()).last().unwrap(), Vec::clear);
    assert!(matches!(
        scan(data.path(), SMALL),
        WalVerdict::TornTail { offset: 0, .. }
    ));
    let OpenedLog { mut log, recovery } = open(data.path(), SMALL).await.unwrap();
    assert_eq!(recovery, None);
    assert_eq!(state_of(&mut log).await.1, Some(last_vote()));
}

#[tokio::test]
async fn an_emptied_last_chunk_after_a_partial_one_is_damage() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), SMALL, 1, 5).await;
    // A torn tail: the reopen truncates the chunk (now not full) and starts a new one.
    edit(&chunks(data.path())[0], |bytes| {
        bytes.truncate(bytes.len() - 5)
    });
    write_log(data.path(), SMALL, 6, 7).await;
    let chunks = chunks(data.path());
    assert_eq!(chunks.len(), 2);
    edit(&chunks[1], Vec::clear);
    match scan(data.path(), SMALL) {
        WalVerdict::Damaged(damage) => assert!(damage.cause.contains("not full"), "{damage}"),
        other => panic!("expected damage, got {other:?}"),
    }
}

#[tokio::test]
async fn a_log_locked_by_another_process_is_not_damage_and_nothing_moves() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), ChunkLimits::PRODUCTION, 1, 5).await;
    let holder = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    match open(data.path(), ChunkLimits::PRODUCTION).await {
        Err(LogOpenError::Io { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::WouldBlock)
        }
        Err(other) => panic!("expected an operational error, got {other}"),
        Ok(_) => panic!("a locked log must not open twice"),
    }
    assert!(quarantined(data.path()).is_empty());
    close(holder.log).await;
}

#[tokio::test]
async fn an_unreadable_chunk_is_not_damage_and_nothing_moves() {
    // Running as root, permissions cannot make a file unreadable; a directory where the
    // chunk file should be fails the read just as EACCES or EIO would.
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), ChunkLimits::PRODUCTION, 1, 5).await;
    let chunk = chunks(data.path())[0].clone();
    std::fs::remove_file(&chunk).unwrap();
    std::fs::create_dir(&chunk).unwrap();
    assert!(matches!(
        open(data.path(), ChunkLimits::PRODUCTION).await,
        Err(LogOpenError::Io { .. })
    ));
    assert!(quarantined(data.path()).is_empty());
    assert!(chunk.is_dir(), "left in place");
}

#[test]
fn only_format_failures_count_as_damage() {
    use io::ErrorKind::*;
    for kind in [InvalidData, UnexpectedEof] {
        assert_eq!(
            classify_open_failure(&io::Error::from(kind)),
            OpenFailure::Damage,
            "{kind:?}"
        );
    }
    for kind in [
        PermissionDenied,
        StorageFull,
        WouldBlock,
        NotFound,
        Interrupted,
        Other,
    ] {
        assert_eq!(
            classify_open_failure(&io::Error::from(kind)),
            OpenFailure::Operational,
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn damage_without_a_readable_vote_refuses_to_start_and_moves_nothing() {
    for shadow_fault in ["missing", "corrupt"] {
        let data = tempfile::tempdir().unwrap();
        write_log(data.path(), ChunkLimits::PRODUCTION, 1, 20).await;
        edit(&chunks(data.path())[0], |bytes| {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
        });
        let vote_file = data.path().join(VOTE_FILE);
        match shadow_fault {
            "missing" => std::fs::remove_file(&vote_file).unwrap(),
            _ => edit(&vote_file, |bytes| bytes[VOTE_PAYLOAD_BYTE] ^= 0x01),
        }
        match open(data.path(), ChunkLimits::PRODUCTION).await {
            Err(LogOpenError::VoteUnknown { .. }) => {}
            Err(other) => panic!("{shadow_fault}: expected VoteUnknown, got {other}"),
            Ok(_) => panic!("{shadow_fault}: must not repair without the vote"),
        }
        assert!(quarantined(data.path()).is_empty(), "{shadow_fault}");
        assert_eq!(chunks(data.path()).len(), 1, "{shadow_fault}");
    }
}

/// A byte inside the vote file's payload (after its 20-byte header).
const VOTE_PAYLOAD_BYTE: usize = 21;

#[tokio::test]
async fn a_log_from_before_shadows_gets_one_at_its_first_clean_open() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), ChunkLimits::PRODUCTION, 1, 5).await;
    let vote_file = data.path().join(VOTE_FILE);
    std::fs::remove_file(&vote_file).unwrap();
    let opened = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    assert_eq!(opened.recovery, None);
    assert_eq!(
        VoteShadow::new(vote_file).read().unwrap(),
        ShadowState::Stored(Some(last_vote()))
    );
}

#[tokio::test]
async fn a_corrupt_shadow_beside_a_healthy_log_is_rewritten_from_the_log() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path(), ChunkLimits::PRODUCTION, 1, 5).await;
    let vote_file = data.path().join(VOTE_FILE);
    edit(&vote_file, |bytes| bytes[VOTE_PAYLOAD_BYTE] ^= 0x01);
    let opened = open(data.path(), ChunkLimits::PRODUCTION).await.unwrap();
    assert_eq!(opened.recovery, None);
    assert_eq!(
        VoteShadow::new(vote_file).read().unwrap(),
        ShadowState::Stored(Some(last_vote()))
    );
}
