//! The damage scan: a read-only pass over the WAL's chunk files, before raft-log opens
//! them, that tells the torn tail a crash leaves from damage (rules in the parent
//! module's docs).
//!
//! Main items: [`scan_wal`] and its [`WalVerdict`]; [`ChunkLimits`], which the scan
//! needs to recognise a full chunk. Records are decoded with raft-log's own codec
//! (`RaftLogRecord`, CRC-32 checked), from bytes read whole into memory, so every decode
//! failure is a fact about the bytes, never an I/O hiccup.

use std::io;
use std::path::{Path, PathBuf};

use raft_log::codeq::Decode;

use crate::log_store::{CHUNK_MAX_BYTES, CHUNK_MAX_RECORDS, WalTypes};

/// A candidate record is decoded from at most this many bytes: more than any record we
/// write (an entry is bounded by `MAX_ENVELOPE_BYTES`), and a bound on the work one
/// candidate costs when searching damaged bytes.
const RECORD_SEARCH_WINDOW: usize = 1 << 20;

type WalRecord = raft_log::RaftLogRecord<WalTypes>;

/// When raft-log closes a chunk and opens the next. The scan needs them to tell an
/// empty last chunk after a full one (an interrupted rotation) from a lost one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkLimits {
    pub max_bytes: usize,
    pub max_records: usize,
}

impl ChunkLimits {
    /// The limits every node runs with.
    pub(crate) const PRODUCTION: ChunkLimits = ChunkLimits {
        max_bytes: CHUNK_MAX_BYTES,
        max_records: CHUNK_MAX_RECORDS,
    };
}

/// Proven damage: where, and what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalDamage {
    pub path: PathBuf,
    /// Byte offset in `path` where the bad data starts (`None`: not known).
    pub offset: Option<u64>,
    pub cause: String,
}

impl std::fmt::Display for WalDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(offset) => write!(
                f,
                "{} at byte {offset}: {}",
                self.path.display(),
                self.cause
            ),
            None => write!(f, "{}: {}", self.path.display(), self.cause),
        }
    }
}

/// What a read-only pass over the WAL's chunk files found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WalVerdict {
    /// Every chunk decodes to its end.
    Intact,
    /// No complete record at all: no chunk, or one chunk without its first record
    /// (`first_chunk` is the log offset it starts at). Whether that is a new node or a
    /// lost log depends on the vote (see `judge_empty_log`).
    Empty {
        first_chunk: Option<u64>,
    },
    /// What a crash leaves: the last chunk ends in an incomplete record, or is an empty
    /// successor of a full chunk. raft-log cuts `dropped_bytes` off at `offset`.
    TornTail {
        path: PathBuf,
        offset: u64,
        dropped_bytes: u64,
    },
    Damaged(WalDamage),
}

/// Reads every chunk file in `dir` and judges it (module docs). Only reading can fail;
/// every decode failure is part of the verdict.
pub(crate) fn scan_wal(dir: &Path, limits: ChunkLimits) -> io::Result<WalVerdict> {
    let chunks = list_chunks(dir)?;
    let Some(tail) = chunks.len().checked_sub(1) else {
        return Ok(WalVerdict::Empty { first_chunk: None });
    };
    // (end offset in the log, bytes, records) of the chunk before the current one.
    let mut previous: Option<(u64, usize, usize)> = None;
    for (i, (start, path)) in chunks.iter().enumerate() {
        let damaged = |offset: usize, cause: String| {
            Ok(WalVerdict::Damaged(WalDamage {
                path: path.clone(),
                offset: Some(offset as u64),
                cause,
            }))
        };
        if let Some((end, _, _)) = previous
            && end != *start
        {
            return damaged(
                0,
                format!(
                    "chunk starts at log offset {start} but the one before it ends at {end}: \
                     a chunk is missing or was cut short"
                ),
            );
        }
        let bytes = std::fs::read(path)?;
        let read = decode_chunk(&bytes);
        if i < tail {
            if let Some(e) = read.failure {
                return damaged(read.valid_len, e.to_string());
            }
            if read.records == 0 {
                return damaged(0, "chunk holds no record, but a later chunk exists".into());
            }
            previous = Some((start + bytes.len() as u64, bytes.len(), read.records));
            continue;
        }
        let torn = match read.failure {
            None => None,
            Some(e) => {
                if let Some(at) = first_record_after(&bytes, read.valid_len + 1) {
                    return damaged(
                        read.valid_len,
                        format!(
                            "{e}; a complete checksummed record follows at byte {at}, so \
                             these bytes were written before it, not torn by a crash"
                        ),
                    );
                }
                let rest = &bytes[read.valid_len..];
                if e.kind() != io::ErrorKind::UnexpectedEof && rest.iter().any(|b| *b != 0) {
                    return damaged(read.valid_len, e.to_string());
                }
                Some((read.valid_len as u64, rest.len() as u64))
            }
        };
        if read.records == 0 {
            return match previous {
                None => Ok(WalVerdict::Empty {
                    first_chunk: Some(*start),
                }),
                Some((_, prev_bytes, prev_records))
                    if prev_bytes >= limits.max_bytes || prev_records >= limits.max_records =>
                {
                    Ok(WalVerdict::TornTail {
                        path: path.clone(),
                        offset: 0,
                        dropped_bytes: bytes.len() as u64,
                    })
                }
                Some((_, prev_bytes, prev_records)) => damaged(
                    0,
                    format!(
                        "the last chunk holds no complete record, yet the chunk before it is \
                         not full ({prev_bytes} bytes, {prev_records} records), so this one \
                         is not an interrupted rotation: its records were lost"
                    ),
                ),
            };
        }
        if let Some((offset, dropped_bytes)) = torn {
            return Ok(WalVerdict::TornTail {
                path: path.clone(),
                offset,
                dropped_bytes,
            });
        }
    }
    Ok(WalVerdict::Intact)
}

/// Chunk files in `dir` as (log offset, path), in log order. Other files (the lock,
/// strays) are ignored, as raft-log ignores them.
pub(super) fn list_chunks(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut chunks = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Ok(start) =
            raft_log::chunked_wal::Config::parse_chunk_file_name(&name.to_string_lossy())
        {
            chunks.push((start, entry.path()));
        }
    }
    chunks.sort();
    Ok(chunks)
}

/// How far a chunk's bytes decode.
struct ChunkRead {
    records: usize,
    /// Bytes taken by the records that decoded.
    valid_len: usize,
    /// Why decoding stopped before the end.
    failure: Option<io::Error>,
}

fn decode_chunk(bytes: &[u8]) -> ChunkRead {
    let mut read = ChunkRead {
        records: 0,
        valid_len: 0,
        failure: None,
    };
    while read.valid_len < bytes.len() {
        match decode_record(&bytes[read.valid_len..]) {
            Ok(len) => {
                read.records += 1;
                read.valid_len += len;
            }
            Err(e) => {
                read.failure = Some(e);
                break;
            }
        }
    }
    read
}

/// Decodes (and checksums) the record at the start of `bytes`; returns its length.
pub(super) fn decode_record(bytes: &[u8]) -> io::Result<usize> {
    let mut reader = bytes;
    WalRecord::decode(&mut reader)?;
    Ok(bytes.len() - reader.len())
}

/// The first offset at or after `from` where a complete record decodes and checksums.
fn first_record_after(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| {
        let candidate = &bytes[at..bytes.len().min(at + RECORD_SEARCH_WINDOW)];
        plausible_record_start(candidate) && decode_record(candidate).is_ok()
    })
}

/// A cheap filter before a full decode: a record starts with a big-endian `u32` type
/// (0..=4 actions, 5 checkpoint); an action's first field is a length-prefixed id or
/// vote of a few dozen bytes at most.
fn plausible_record_start(bytes: &[u8]) -> bool {
    let Some(&[a, b, c, record_type]) = bytes.get(..4) else {
        return false;
    };
    if (a, b, c) != (0, 0, 0) || record_type > 5 {
        return false;
    }
    let field_len = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    match record_type {
        0 | 1 | 2 | 4 => field_len(4).is_some_and(|len| len <= 64),
        3 => match bytes.get(4) {
            Some(0) => true,
            Some(1) => field_len(5).is_some_and(|len| len <= 64),
            _ => false,
        },
        _ => true,
    }
}
