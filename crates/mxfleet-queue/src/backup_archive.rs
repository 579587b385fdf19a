//! The backup archive (`mxfleet cluster snapshot --out FILE`): one self-describing file
//! that holds a node's whole queue, metadata and bodies, and restores onto an empty
//! data directory (`mxfleet cluster recover --from-snapshot FILE`).
//!
//! Sans-IO: [`ArchiveWriter`] turns sections into bytes and [`ArchiveReader`] checks and
//! decodes bytes fed in pieces of any size. Neither touches a file or a socket; the
//! node's admin service streams what the writer makes, the CLI feeds what it receives
//! into a reader before the file gets its final name, and restore reads it back.
//!
//! Layout (all integers little-endian):
//! - `MXFBKUP1` magic, `u32` archive format ([`ARCHIVE_FORMAT`]).
//! - Records, each `u8` kind, `u32` payload length, payload:
//!   - `1` HEADER (once, first): postcard [`ArchiveHeader`].
//!   - `2` METADATA (one or more): pieces of at most 1 MiB that concatenate to one
//!     snapshot file (`snapshot_file`: `MXFSNAP1`, queue table, dedup index, fleet and
//!     spam state, Raft membership at the last applied log id).
//!   - `3` BLOB: 32-byte SHA-256 and `u64` length of the body whose DATA records follow.
//!   - `4` DATA: at most 1 MiB of the current body. A body's DATA records add up to its
//!     length, and its bytes hash to its SHA-256 (checked by the reader).
//!   - `5` TRAILER (once): postcard [`ArchiveTrailer`], including the bodies a live
//!     message referenced that the node could not read (never skipped silently).
//!   - `6` END (once, last): 32 bytes, the SHA-256 of every byte before this record.
//!
//! Nothing may follow END. Record kinds come in the order above; anything else is a
//! clear [`ArchiveError`], never a panic.

use mxfleet_core::{BodyDigest, NodeId, QueueId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::types::{decode, encode};

/// First bytes of every archive.
pub const ARCHIVE_MAGIC: &[u8; 8] = b"MXFBKUP1";
/// Bumped with every incompatible change of the layout or of the header and trailer.
pub const ARCHIVE_FORMAT: u32 = 1;
/// The most bytes in one METADATA or DATA record.
pub const ARCHIVE_PIECE_BYTES: usize = 1024 * 1024;
/// The most bytes a HEADER or TRAILER record may claim (a corrupt length is refused
/// before anything is allocated for it).
const MAX_SMALL_RECORD: usize = 64 * 1024 * 1024;
const PREAMBLE_LEN: usize = 8 + 4;
const RECORD_HEAD_LEN: usize = 1 + 4;

const KIND_HEADER: u8 = 1;
const KIND_METADATA: u8 = 2;
const KIND_BLOB: u8 = 3;
const KIND_DATA: u8 = 4;
const KIND_TRAILER: u8 = 5;
const KIND_END: u8 = 6;

/// One member of the Raft membership the archive was taken under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveMember {
    pub id: NodeId,
    pub addr: String,
    pub site: String,
    pub voter: bool,
}

/// What the archive holds, before any of it: enough to judge it without reading on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveHeader {
    /// Openraft's cluster name (`mxfleet`).
    pub cluster_name: String,
    /// The node that wrote the archive, and its Raft term then.
    pub source_node: NodeId,
    pub term: u64,
    /// The last log entry the metadata includes: term, leader node and index.
    pub last_applied_term: u64,
    pub last_applied_node: NodeId,
    pub last_applied_index: u64,
    /// Whether the node confirmed with the leader before it read (`false`: its own
    /// replica, possibly behind the leader).
    pub linearizable: bool,
    pub created_at_ms: u64,
    pub members: Vec<ArchiveMember>,
    /// Entries in the queue table (live and finished), and how many are live.
    pub entries: u64,
    pub live_entries: u64,
    /// Distinct bodies the live entries reference, and their total size.
    pub bodies: u64,
    pub body_bytes: u64,
    /// Length of the metadata section (the snapshot file).
    pub metadata_bytes: u64,
}

/// A body a live message referenced that is not in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingBody {
    pub digest: BodyDigest,
    pub queue_ids: Vec<QueueId>,
    pub reason: String,
}

/// What the archive ended up holding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveTrailer {
    pub bodies_written: u64,
    pub body_bytes_written: u64,
    pub missing: Vec<MissingBody>,
}

/// Why bytes are not a valid archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("not an mxfleet backup archive (bad magic)")]
    BadMagic,
    #[error("archive format {found} is not supported (this mxfleet reads {ARCHIVE_FORMAT})")]
    UnsupportedFormat { found: u32 },
    #[error("unknown record kind {kind} at byte {offset}")]
    UnknownRecord { kind: u8, offset: u64 },
    #[error("record {kind} at byte {offset} is out of order: {why}")]
    OutOfOrder {
        kind: &'static str,
        offset: u64,
        why: &'static str,
    },
    #[error("record {kind} at byte {offset} claims {len} bytes, more than {limit}")]
    RecordTooLarge {
        kind: &'static str,
        offset: u64,
        len: usize,
        limit: usize,
    },
    #[error("{what} at byte {offset} does not decode: {detail}")]
    Undecodable {
        what: &'static str,
        offset: u64,
        detail: String,
    },
    #[error("body {digest} has {actual} bytes in the archive, its record says {expected}")]
    BodyLength {
        digest: BodyDigest,
        expected: u64,
        actual: u64,
    },
    #[error("body {digest} in the archive hashes to {actual}: its bytes are damaged")]
    BodyDigest {
        digest: BodyDigest,
        actual: BodyDigest,
    },
    #[error("the metadata section has {actual} bytes, the header says {expected}")]
    MetadataLength { expected: u64, actual: u64 },
    #[error("the archive's checksum does not match its contents: it is damaged")]
    Checksum,
    #[error("{0} bytes follow the end of the archive")]
    TrailingBytes(usize),
    #[error("the archive is truncated: it stops {0}")]
    Truncated(&'static str),
}

fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(RECORD_HEAD_LEN + payload.len());
    bytes.push(kind);
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn encoded<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard only fails on types it cannot represent; these structs have none.
    encode(value).unwrap_or_default()
}

/// Makes an archive's bytes, section by section, hashing everything it returns.
/// The caller sends the returned bytes on in order.
pub struct ArchiveWriter {
    hash: Sha256,
}

impl ArchiveWriter {
    /// The preamble and the HEADER record.
    pub fn start(header: &ArchiveHeader) -> (ArchiveWriter, Vec<u8>) {
        let mut bytes = ARCHIVE_MAGIC.to_vec();
        bytes.extend_from_slice(&ARCHIVE_FORMAT.to_le_bytes());
        bytes.extend(record(KIND_HEADER, &encoded(header)));
        let mut writer = ArchiveWriter {
            hash: Sha256::new(),
        };
        writer.hash.update(&bytes);
        (writer, bytes)
    }

    fn emit(&mut self, kind: u8, payload: &[u8]) -> Vec<u8> {
        let bytes = record(kind, payload);
        self.hash.update(&bytes);
        bytes
    }

    /// METADATA records for the whole snapshot file.
    pub fn metadata(&mut self, snapshot_file: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(snapshot_file.len() + 16);
        for piece in snapshot_file.chunks(ARCHIVE_PIECE_BYTES) {
            bytes.extend(self.emit(KIND_METADATA, piece));
        }
        bytes
    }

    /// The BLOB record that announces a body of `len` bytes.
    pub fn blob(&mut self, digest: &BodyDigest, len: u64) -> Vec<u8> {
        let mut payload = digest.0.to_vec();
        payload.extend_from_slice(&len.to_le_bytes());
        self.emit(KIND_BLOB, &payload)
    }

    /// DATA records for the next bytes of the current body.
    pub fn data(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() + 8);
        for piece in bytes.chunks(ARCHIVE_PIECE_BYTES) {
            out.extend(self.emit(KIND_DATA, piece));
        }
        out
    }

    /// The TRAILER and END records.
    pub fn finish(mut self, trailer: &ArchiveTrailer) -> Vec<u8> {
        let mut bytes = self.emit(KIND_TRAILER, &encoded(trailer));
        let sum: [u8; 32] = self.hash.finalize().into();
        bytes.extend(record(KIND_END, &sum));
        bytes
    }
}

/// One decoded part of an archive, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveEvent {
    Header(ArchiveHeader),
    /// The next piece of the snapshot file.
    Metadata(Vec<u8>),
    BlobStart {
        digest: BodyDigest,
        len: u64,
    },
    BlobData(Vec<u8>),
    /// The current body is complete, and its bytes hash to its digest.
    BlobEnd {
        digest: BodyDigest,
    },
    Trailer(ArchiveTrailer),
    /// The checksum over everything matched; nothing more may follow.
    End,
}

/// Where the reader is in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Preamble,
    Header,
    Metadata,
    Blobs,
    InBlob,
    End,
    Done,
}

struct OpenBlob {
    digest: BodyDigest,
    len: u64,
    seen: u64,
    hash: Sha256,
}

/// Checks and decodes an archive fed in pieces of any size (see the module docs).
pub struct ArchiveReader {
    buffer: Vec<u8>,
    /// Bytes consumed from the start of the archive (for error offsets).
    offset: u64,
    stage: Stage,
    hash: Sha256,
    blob: Option<OpenBlob>,
    metadata_expected: u64,
    metadata_seen: u64,
}

impl Default for ArchiveReader {
    fn default() -> Self {
        ArchiveReader::new()
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_HEADER => "HEADER",
        KIND_METADATA => "METADATA",
        KIND_BLOB => "BLOB",
        KIND_DATA => "DATA",
        KIND_TRAILER => "TRAILER",
        KIND_END => "END",
        _ => "unknown",
    }
}

impl ArchiveReader {
    pub fn new() -> ArchiveReader {
        ArchiveReader {
            buffer: Vec::new(),
            offset: 0,
            stage: Stage::Preamble,
            hash: Sha256::new(),
            blob: None,
            metadata_expected: 0,
            metadata_seen: 0,
        }
    }

    /// Adds received bytes; call [`ArchiveReader::next_event`] until it returns `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// True once END was read and checked.
    pub fn is_complete(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Checks that the archive ended where it should: after END, with nothing after it.
    pub fn finish(&self) -> Result<(), ArchiveError> {
        match self.stage {
            Stage::Done if self.buffer.is_empty() => Ok(()),
            Stage::Done => Err(ArchiveError::TrailingBytes(self.buffer.len())),
            Stage::Preamble | Stage::Header => Err(ArchiveError::Truncated("before its header")),
            Stage::Metadata => Err(ArchiveError::Truncated("in its metadata")),
            Stage::Blobs | Stage::InBlob => Err(ArchiveError::Truncated("in its bodies")),
            Stage::End => Err(ArchiveError::Truncated("before its checksum")),
        }
    }

    /// The next complete event, `None` when more bytes are needed (or after END).
    pub fn next_event(&mut self) -> Result<Option<ArchiveEvent>, ArchiveError> {
        if self.stage == Stage::Done {
            return match self.buffer.len() {
                0 => Ok(None),
                n => Err(ArchiveError::TrailingBytes(n)),
            };
        }
        if self.stage == Stage::Preamble {
            if self.buffer.len() < PREAMBLE_LEN {
                if !ARCHIVE_MAGIC.starts_with(&self.buffer[..self.buffer.len().min(8)]) {
                    return Err(ArchiveError::BadMagic);
                }
                return Ok(None);
            }
            if &self.buffer[..8] != ARCHIVE_MAGIC {
                return Err(ArchiveError::BadMagic);
            }
            let format = u32::from_le_bytes([
                self.buffer[8],
                self.buffer[9],
                self.buffer[10],
                self.buffer[11],
            ]);
            if format != ARCHIVE_FORMAT {
                return Err(ArchiveError::UnsupportedFormat { found: format });
            }
            self.consume(PREAMBLE_LEN, true);
            self.stage = Stage::Header;
        }
        if self.stage == Stage::InBlob
            && let Some(blob) = &self.blob
            && blob.seen == blob.len
        {
            return self.close_blob().map(Some);
        }
        if self.buffer.len() < RECORD_HEAD_LEN {
            return Ok(None);
        }
        let kind = self.buffer[0];
        let len = u32::from_le_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]) as usize;
        let at = self.offset;
        let name = kind_name(kind);
        let limit = match kind {
            KIND_HEADER | KIND_TRAILER => MAX_SMALL_RECORD,
            KIND_METADATA | KIND_DATA => ARCHIVE_PIECE_BYTES,
            KIND_BLOB => 40,
            KIND_END => 32,
            _ => return Err(ArchiveError::UnknownRecord { kind, offset: at }),
        };
        if len > limit {
            return Err(ArchiveError::RecordTooLarge {
                kind: name,
                offset: at,
                len,
                limit,
            });
        }
        self.check_order(kind, at)?;
        if self.buffer.len() < RECORD_HEAD_LEN + len {
            return Ok(None);
        }
        let payload = self.buffer[RECORD_HEAD_LEN..RECORD_HEAD_LEN + len].to_vec();
        if kind == KIND_END {
            let expected: [u8; 32] = std::mem::take(&mut self.hash).finalize().into();
            if payload.len() != 32 || payload[..] != expected[..] {
                return Err(ArchiveError::Checksum);
            }
            self.consume(RECORD_HEAD_LEN + len, false);
            self.stage = Stage::Done;
            return Ok(Some(ArchiveEvent::End));
        }
        self.consume(RECORD_HEAD_LEN + len, true);
        self.record(kind, payload, at).map(Some)
    }

    fn consume(&mut self, n: usize, hashed: bool) {
        if hashed {
            self.hash.update(&self.buffer[..n]);
        }
        self.buffer.drain(..n);
        self.offset += n as u64;
    }

    fn check_order(&self, kind: u8, offset: u64) -> Result<(), ArchiveError> {
        let out_of_order = |why| ArchiveError::OutOfOrder {
            kind: kind_name(kind),
            offset,
            why,
        };
        let allowed = match (self.stage, kind) {
            (Stage::Header, KIND_HEADER) => true,
            (Stage::Header, _) => return Err(out_of_order("the header must come first")),
            (Stage::Metadata, KIND_METADATA) => true,
            (Stage::Metadata, _) if self.metadata_seen < self.metadata_expected => {
                return Err(out_of_order("the metadata section is not complete"));
            }
            (Stage::Metadata | Stage::Blobs, KIND_BLOB | KIND_TRAILER) => true,
            (Stage::InBlob, KIND_DATA) => true,
            (Stage::InBlob, _) => return Err(out_of_order("the current body is not complete")),
            (Stage::End, KIND_END) => true,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(out_of_order("not expected here"))
        }
    }

    fn record(
        &mut self,
        kind: u8,
        payload: Vec<u8>,
        offset: u64,
    ) -> Result<ArchiveEvent, ArchiveError> {
        let undecodable = |what, detail: String| ArchiveError::Undecodable {
            what,
            offset,
            detail,
        };
        match kind {
            KIND_HEADER => {
                let header: ArchiveHeader =
                    decode(&payload).map_err(|e| undecodable("the header", e.to_string()))?;
                self.metadata_expected = header.metadata_bytes;
                self.stage = Stage::Metadata;
                Ok(ArchiveEvent::Header(header))
            }
            KIND_METADATA => {
                self.metadata_seen += payload.len() as u64;
                if self.metadata_seen > self.metadata_expected {
                    return Err(ArchiveError::MetadataLength {
                        expected: self.metadata_expected,
                        actual: self.metadata_seen,
                    });
                }
                Ok(ArchiveEvent::Metadata(payload))
            }
            KIND_BLOB => {
                let (Some(digest), Some(len)) = (payload.get(..32), payload.get(32..40)) else {
                    return Err(undecodable("a BLOB record", "shorter than 40 bytes".into()));
                };
                let digest = BodyDigest(digest.try_into().unwrap_or([0; 32]));
                let len = u64::from_le_bytes(len.try_into().unwrap_or([0; 8]));
                self.blob = Some(OpenBlob {
                    digest,
                    len,
                    seen: 0,
                    hash: Sha256::new(),
                });
                self.stage = Stage::InBlob;
                Ok(ArchiveEvent::BlobStart { digest, len })
            }
            KIND_DATA => {
                let Some(blob) = self.blob.as_mut() else {
                    return Err(undecodable("a DATA record", "no body is open".into()));
                };
                blob.seen += payload.len() as u64;
                if blob.seen > blob.len {
                    return Err(ArchiveError::BodyLength {
                        digest: blob.digest,
                        expected: blob.len,
                        actual: blob.seen,
                    });
                }
                blob.hash.update(&payload);
                Ok(ArchiveEvent::BlobData(payload))
            }
            KIND_TRAILER => {
                let trailer: ArchiveTrailer =
                    decode(&payload).map_err(|e| undecodable("the trailer", e.to_string()))?;
                self.stage = Stage::End;
                Ok(ArchiveEvent::Trailer(trailer))
            }
            _ => Err(ArchiveError::UnknownRecord { kind, offset }),
        }
    }

    fn close_blob(&mut self) -> Result<ArchiveEvent, ArchiveError> {
        let Some(blob) = self.blob.take() else {
            return Err(ArchiveError::Truncated("in its bodies"));
        };
        let actual = BodyDigest(blob.hash.finalize().into());
        if actual != blob.digest {
            return Err(ArchiveError::BodyDigest {
                digest: blob.digest,
                actual,
            });
        }
        self.stage = Stage::Blobs;
        Ok(ArchiveEvent::BlobEnd {
            digest: blob.digest,
        })
    }
}

#[cfg(test)]
mod tests;
