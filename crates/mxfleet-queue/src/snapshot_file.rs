//! The snapshot file: the state machine's metadata (queue table, dedup index, Raft
//! membership) at one log index. Bodies are never in it; they live in the blob store.
//!
//! Layout: `MXFSNAP1` magic, `u32 LE` format, `u64 LE` payload length, `u32 LE`
//! CRC-32 of the payload, then the postcard payload. A file that fails any check is
//! refused rather than half-loaded. Files are written `tmp → fsync → rename → fsync
//! dir`, so a crash leaves either the old or the new snapshot, never a torn one.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use mxfleet_core::QueueState;
use serde::{Deserialize, Serialize};

use crate::types::{SnapshotMeta, decode, encode};

const MAGIC: &[u8; 8] = b"MXFSNAP1";
/// Bumped with every incompatible change of the encoded state: 2 added the spam
/// checks' tables (`QueueState::spam`) and `ReceivedTrace::received_spf`.
const FORMAT: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 8 + 4;

#[derive(Serialize)]
struct SnapshotBodyRef<'a> {
    meta: &'a SnapshotMeta,
    queue: &'a QueueState,
}

/// A decoded snapshot.
#[derive(Deserialize)]
pub(crate) struct SnapshotBody {
    pub meta: SnapshotMeta,
    pub queue: QueueState,
}

fn invalid(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot {}: {why}", path.display()),
    )
}

/// Encodes a snapshot into bytes (header included).
pub(crate) fn encode_snapshot(meta: &SnapshotMeta, queue: &QueueState) -> io::Result<Vec<u8>> {
    let payload = encode(&SnapshotBodyRef { meta, queue }).map_err(io::Error::other)?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Checks and decodes snapshot bytes read from `origin`.
pub(crate) fn decode_snapshot(origin: &Path, bytes: &[u8]) -> io::Result<SnapshotBody> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(invalid(origin, "not an mxfleet snapshot (bad magic)"));
    }
    let format = u32::from_le_bytes(
        bytes[8..12]
            .try_into()
            .map_err(|_| invalid(origin, "header"))?,
    );
    if format > FORMAT {
        return Err(invalid(
            origin,
            format!(
                "snapshot format {format} was written by a newer mxfleet; this binary \
                 reads snapshot format {FORMAT}: run a newer binary on this node"
            ),
        ));
    }
    if format != FORMAT {
        return Err(invalid(
            origin,
            format!(
                "snapshot format {format} was written by an older mxfleet; this binary \
                 reads snapshot format {FORMAT} only"
            ),
        ));
    }
    let len = u64::from_le_bytes(
        bytes[12..20]
            .try_into()
            .map_err(|_| invalid(origin, "header"))?,
    );
    let crc = u32::from_le_bytes(
        bytes[20..24]
            .try_into()
            .map_err(|_| invalid(origin, "header"))?,
    );
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(invalid(
            origin,
            format!("truncated: {} of {len} bytes", payload.len()),
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err(invalid(origin, "checksum mismatch"));
    }
    decode(payload).map_err(|e| invalid(origin, e))
}

/// Reads the whole file behind `file` (from its start) and decodes it.
pub(crate) fn read_snapshot(origin: &Path, file: &mut File) -> io::Result<SnapshotBody> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    decode_snapshot(origin, &bytes)
}

/// Writes `bytes` durably as `dir/name`.
pub(crate) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, &target)?;
    File::open(dir)?.sync_all()?;
    Ok(target)
}

/// The file name of the snapshot that covers the log up to `index`.
pub(crate) fn snapshot_name(index: u64) -> String {
    format!("snapshot-{index:020}.bin")
}

/// Snapshot files in `dir`, newest (highest index) first.
pub(crate) fn list_snapshots(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for item in fs::read_dir(dir)? {
        let path = item?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(index) = name
            .strip_prefix("snapshot-")
            .and_then(|rest| rest.strip_suffix(".bin"))
            .and_then(|digits| digits.parse::<u64>().ok())
        {
            found.push((index, path));
        }
    }
    found.sort_by_key(|(index, _)| std::cmp::Reverse(*index));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_format(format: u32) -> Vec<u8> {
        let mut bytes = encode_snapshot(&SnapshotMeta::default(), &QueueState::default()).unwrap();
        bytes[8..12].copy_from_slice(&format.to_le_bytes());
        bytes
    }

    #[test]
    fn a_snapshot_of_another_format_is_refused_with_who_wrote_it() {
        let origin = Path::new("/data/snapshots/snapshot-1.bin");
        assert!(decode_snapshot(origin, &with_format(FORMAT)).is_ok());
        let newer = decode_snapshot(origin, &with_format(FORMAT + 1))
            .err()
            .expect("a newer format is refused")
            .to_string();
        assert!(
            newer.contains("/data/snapshots/snapshot-1.bin")
                && newer.contains(&format!(
                    "snapshot format {} was written by a newer",
                    FORMAT + 1
                ))
                && newer.contains("run a newer binary"),
            "{newer}"
        );
        let older = decode_snapshot(origin, &with_format(FORMAT - 1))
            .err()
            .expect("an older format is refused")
            .to_string();
        assert!(older.contains("written by an older mxfleet"), "{older}");
    }
}
