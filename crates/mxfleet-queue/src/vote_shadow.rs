//! The shadow copy of this node's Raft vote: a small checksummed file beside the log.
//!
//! Why it exists: the vote must outlive the Raft log. A voter that forgets its vote can
//! grant a second, lower vote, which lets two candidates win the same election. When the
//! log is damaged and set aside (`log_recovery`), this file is what tells the fresh log
//! which vote to start from; and when a damaged tail silently drops a `SaveVote` record,
//! it puts the vote back.
//!
//! Ordering (the invariant the rest relies on): `LogStore::save_vote` writes this file,
//! durably, *before* the vote goes into the WAL, and openraft only answers with a vote once
//! both are durable. So the shadow is never behind any vote this node has acted on; it may
//! be ahead by the one vote whose WAL write a crash interrupted, which was never sent.
//!
//! Layout of `<data>/raft-vote`: `MXFVOTE1` magic, `u32 LE` format, `u32 LE` payload
//! length, `u32 LE` CRC-32 of the payload, then postcard `Option<Vote>`. Written
//! `tmp → fsync → rename → fsync dir`, so a crash leaves the old or the new copy.
//!
//! The shadow only moves forward: `store` ignores a vote lower than the one it holds
//! (raft-log refuses such a vote too), so the shadow is the highest vote ever saved.
//!
//! Lifecycle: one `VoteShadow` per `LogStore`, shared by its clones. `last_written`
//! caches what the file holds, so that openraft re-saving an unchanged vote costs no
//! fsync; `log_recovery` fills it at open, and each durable write updates it.

use std::io;
use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use crate::snapshot_file::write_durably;
use crate::types::{Vote, decode, encode};

const MAGIC: &[u8; 8] = b"MXFVOTE1";
const FORMAT: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 4;

/// What the shadow file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShadowState {
    /// No file: a new node, or one that ran a version without shadows.
    Missing,
    /// The file fails its checks; `why` says which.
    Corrupt { why: String },
    /// The vote this node last saved (`None`: it never voted).
    Stored(Option<Vote>),
}

/// The durable shadow copy of the vote. See the module docs for the ordering rule.
#[derive(Debug)]
pub(crate) struct VoteShadow {
    path: PathBuf,
    /// What the file holds, once known (`None`: not known yet). Serializes writers, so
    /// that a later vote is never overwritten by an earlier one that finishes last.
    last_written: Mutex<Option<Option<Vote>>>,
}

impl VoteShadow {
    pub(crate) fn new(path: PathBuf) -> Self {
        VoteShadow {
            path,
            last_written: Mutex::new(None),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file. Only an I/O failure other than "not found" is an error; a file
    /// that fails its checks is reported as [`ShadowState::Corrupt`].
    pub(crate) fn read(&self) -> io::Result<ShadowState> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ShadowState::Missing),
            Err(e) => return Err(e),
        };
        if let Some(found) = newer_format(&bytes) {
            // Not damage: a newer mxfleet wrote it. Rewriting it from the log (what a
            // corrupt shadow gets) would throw away what that binary recorded.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the vote file has format {found}, written by a newer mxfleet; this \
                     binary reads vote format {FORMAT}: run a newer binary, or restore the \
                     data directory from a backup"
                ),
            ));
        }
        Ok(match decode_shadow(&bytes) {
            Ok(vote) => ShadowState::Stored(vote),
            Err(why) => ShadowState::Corrupt { why },
        })
    }

    /// Writes `vote` durably. Blocking: for opening and recovery, which run on a
    /// blocking thread before Raft starts.
    pub(crate) fn write_blocking(&self, vote: Option<Vote>) -> io::Result<()> {
        write_shadow(&self.path, vote)?;
        *self.last_written.blocking_lock() = Some(vote);
        Ok(())
    }

    /// Records that the file holds `vote` (read and checked at open). Blocking.
    pub(crate) fn remember(&self, vote: Option<Vote>) {
        *self.last_written.blocking_lock() = Some(vote);
    }

    /// Writes `vote` durably unless the file already holds it or a greater vote. For
    /// `save_vote`.
    pub(crate) async fn store(&self, vote: Vote) -> io::Result<()> {
        let mut last_written = self.last_written.lock().await;
        if let Some(Some(held)) = *last_written
            && vote <= held
        {
            return Ok(());
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_shadow(&path, Some(vote)))
            .await
            .map_err(io::Error::other)??;
        *last_written = Some(Some(vote));
        Ok(())
    }
}

fn write_shadow(path: &Path, vote: Option<Vote>) -> io::Result<()> {
    let invalid_path = || io::Error::new(io::ErrorKind::InvalidInput, "vote file has no name");
    let dir = path.parent().ok_or_else(invalid_path)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(invalid_path)?;
    write_durably(dir, name, &encode_shadow(vote)?)?;
    Ok(())
}

fn encode_shadow(vote: Option<Vote>) -> io::Result<Vec<u8>> {
    let payload = encode(&vote).map_err(io::Error::other)?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// The format of a well-formed header (magic and all) that is newer than [`FORMAT`].
fn newer_format(bytes: &[u8]) -> Option<u32> {
    let header = bytes.get(..HEADER_LEN)?;
    if &header[..8] != MAGIC {
        return None;
    }
    let format = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    (format > FORMAT).then_some(format)
}

fn decode_shadow(bytes: &[u8]) -> Result<Option<Vote>, String> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| format!("{} bytes is shorter than the header", bytes.len()))?;
    if &header[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (format, len, crc) = (word(8), word(12), word(16));
    if format != FORMAT {
        return Err(format!(
            "format {format} is not one this binary reads (vote format {FORMAT})"
        ));
    }
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len as usize {
        return Err(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    decode(payload).map_err(|e| format!("undecodable vote: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shadow(dir: &Path) -> VoteShadow {
        VoteShadow::new(dir.join("raft-vote"))
    }

    #[test]
    fn a_written_vote_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let shadow = shadow(dir.path());
        assert_eq!(shadow.read().unwrap(), ShadowState::Missing);
        shadow.write_blocking(None).unwrap();
        assert_eq!(shadow.read().unwrap(), ShadowState::Stored(None));
        let vote = Vote::new_committed(7, 2);
        shadow.write_blocking(Some(vote)).unwrap();
        assert_eq!(shadow.read().unwrap(), ShadowState::Stored(Some(vote)));
        assert!(!dir.path().join("raft-vote.tmp").exists());
    }

    #[test]
    fn a_flipped_bit_or_a_short_file_is_corrupt_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let shadow = shadow(dir.path());
        shadow.write_blocking(Some(Vote::new(3, 1))).unwrap();
        let mut bytes = std::fs::read(shadow.path()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(shadow.path(), &bytes).unwrap();
        assert!(
            matches!(shadow.read().unwrap(), ShadowState::Corrupt { why } if why.contains("checksum"))
        );
        std::fs::write(shadow.path(), &bytes[..5]).unwrap();
        assert!(matches!(
            shadow.read().unwrap(),
            ShadowState::Corrupt { .. }
        ));
    }

    #[test]
    fn a_vote_file_from_a_newer_format_is_refused_not_taken_for_damage() {
        let dir = tempfile::tempdir().unwrap();
        let shadow = shadow(dir.path());
        shadow.write_blocking(Some(Vote::new(3, 1))).unwrap();
        let mut bytes = std::fs::read(shadow.path()).unwrap();
        bytes[8..12].copy_from_slice(&(FORMAT + 1).to_le_bytes());
        std::fs::write(shadow.path(), &bytes).unwrap();
        let error = shadow.read().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let message = error.to_string();
        assert!(
            message.contains(&format!("format {}", FORMAT + 1))
                && message.contains("written by a newer mxfleet")
                && message.contains("run a newer binary"),
            "{message}"
        );
        // An older (unknown) format is damage, as before.
        bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
        std::fs::write(shadow.path(), &bytes).unwrap();
        assert!(matches!(
            shadow.read().unwrap(),
            ShadowState::Corrupt { why } if why.contains("format 0")
        ));
    }

    #[tokio::test]
    async fn store_skips_an_unchanged_or_lower_vote() {
        let dir = tempfile::tempdir().unwrap();
        let shadow = shadow(dir.path());
        shadow.store(Vote::new(4, 1)).await.unwrap();
        shadow.store(Vote::new_committed(4, 1)).await.unwrap();
        assert_eq!(
            shadow.read().unwrap(),
            ShadowState::Stored(Some(Vote::new_committed(4, 1)))
        );
        // Saving the vote it already holds costs no write (the file is not recreated).
        std::fs::remove_file(shadow.path()).unwrap();
        shadow.store(Vote::new_committed(4, 1)).await.unwrap();
        assert_eq!(shadow.read().unwrap(), ShadowState::Missing);
        shadow.store(Vote::new(5, 3)).await.unwrap();
        assert_eq!(
            shadow.read().unwrap(),
            ShadowState::Stored(Some(Vote::new(5, 3)))
        );
        // Never backwards.
        shadow.store(Vote::new_committed(4, 1)).await.unwrap();
        assert_eq!(
            shadow.read().unwrap(),
            ShadowState::Stored(Some(Vote::new(5, 3)))
        );
    }
}
