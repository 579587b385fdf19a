//! Reading a backup archive into an empty data directory: first one pass that checks
//! the whole file (structure, every body's SHA-256, the checksum at its end) and keeps
//! the metadata, then a second pass that writes the bodies into the blob store, each
//! one verified against its name again as it is made durable. A damaged archive is
//! refused before anything is written. The data directory gets its format marker
//! (`data_format`) before the first body, as a start would write it.

use std::io::Read;
use std::path::{Path, PathBuf};

use mxfleet_core::{NodeId, QueueState};

use super::{RecoverError, blocking, io_error};
use crate::backup_archive::{ARCHIVE_PIECE_BYTES, ArchiveEvent, ArchiveHeader, ArchiveReader};
use crate::blob_store::{BlobStore, BlobWriter};
use crate::data_format::check_data_dir;
use crate::snapshot_file::decode_snapshot;
use crate::types::LogId;

/// What the archive held.
pub(super) struct Restored {
    pub queue: QueueState,
    pub last_applied: LogId,
    /// The source node's term when it wrote the archive.
    pub term: u64,
    pub voters: Vec<NodeId>,
    pub bodies: u64,
}

fn archive_error(path: &Path) -> impl Fn(crate::backup_archive::ArchiveError) -> RecoverError {
    let path = path.to_path_buf();
    move |source| RecoverError::Archive {
        path: path.clone(),
        source,
    }
}

/// Reads `path` through an [`ArchiveReader`], calling `on_event` for each event.
fn read_archive(
    path: &Path,
    mut on_event: impl FnMut(ArchiveEvent) -> Result<(), RecoverError>,
) -> Result<(), RecoverError> {
    let mut file = std::fs::File::open(path).map_err(io_error("open the archive", path))?;
    let mut reader = ArchiveReader::new();
    let mut buffer = vec![0u8; ARCHIVE_PIECE_BYTES];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(io_error("read the archive", path))?;
        if n == 0 {
            break;
        }
        reader.push(&buffer[..n]);
        while let Some(event) = reader.next_event().map_err(archive_error(path))? {
            on_event(event)?;
        }
    }
    reader.finish().map_err(archive_error(path))
}

/// Checks the archive and imports it into `data_dir` (which the caller found empty).
pub(super) async fn import(archive: &Path, data_dir: &Path) -> Result<Restored, RecoverError> {
    let path = archive.to_path_buf();
    let (header, metadata) = blocking("read the archive", archive, move || {
        let mut header: Option<ArchiveHeader> = None;
        let mut metadata = Vec::new();
        read_archive(&path, |event| {
            match event {
                ArchiveEvent::Header(h) => header = Some(h),
                ArchiveEvent::Metadata(piece) => metadata.extend_from_slice(&piece),
                _ => {}
            }
            Ok(())
        })?;
        // `finish` passed, so the header was there.
        let header = header.ok_or_else(|| {
            archive_error(&path)(crate::backup_archive::ArchiveError::Truncated(
                "before its header",
            ))
        })?;
        Ok((header, metadata))
    })
    .await?;
    let body =
        decode_snapshot(archive, &metadata).map_err(io_error("decode the metadata", archive))?;
    let Some(last_applied) = body.meta.last_log_id else {
        return Err(io_error("decode the metadata", archive)(
            std::io::Error::other("the archive's metadata covers no log entry"),
        ));
    };
    let voters = body.meta.last_membership.membership().voter_ids().collect();

    std::fs::create_dir_all(data_dir).map_err(io_error("create the data directory", data_dir))?;
    // The format marker first, as a start writes it on a new directory.
    let dir = data_dir.to_path_buf();
    blocking("write the data directory's format", data_dir, move || {
        check_data_dir(&dir)?;
        Ok(())
    })
    .await?;
    let blob_dir = data_dir.join("bodies");
    let blobs = BlobStore::open(&blob_dir).await.map_err(|e| {
        io_error("open the blob store", &blob_dir)(std::io::Error::other(e.to_string()))
    })?;
    let bodies = write_bodies(archive.to_path_buf(), blobs).await?;
    Ok(Restored {
        queue: body.queue,
        last_applied,
        term: header.term,
        voters,
        bodies,
    })
}

/// The second pass: every body into the blob store. The reader runs on a blocking
/// thread and hands events to this task, which owns the async blob writer.
async fn write_bodies(archive: PathBuf, blobs: BlobStore) -> Result<u64, RecoverError> {
    let (sender, mut events) = tokio::sync::mpsc::channel::<ArchiveEvent>(4);
    let path = archive.clone();
    let reading = tokio::task::spawn_blocking(move || {
        read_archive(&path, |event| {
            if matches!(
                event,
                ArchiveEvent::BlobStart { .. }
                    | ArchiveEvent::BlobData(_)
                    | ArchiveEvent::BlobEnd { .. }
            ) {
                // The writer stops listening only after it failed; its error is the
                // one reported.
                let _ = sender.blocking_send(event);
            }
            Ok(())
        })
    });
    let blob_error = |e: crate::blob_store::BlobError| {
        io_error("write a body", &archive)(std::io::Error::other(e.to_string()))
    };
    let mut writer: Option<BlobWriter> = None;
    let mut written = 0u64;
    while let Some(event) = events.recv().await {
        match event {
            ArchiveEvent::BlobStart { .. } => {
                writer = Some(blobs.writer(u64::MAX).await.map_err(blob_error)?);
            }
            ArchiveEvent::BlobData(bytes) => {
                if let Some(writer) = writer.as_mut() {
                    writer.write_chunk(&bytes).await.map_err(blob_error)?;
                }
            }
            ArchiveEvent::BlobEnd { digest } => {
                if let Some(writer) = writer.take() {
                    writer.finish(Some(digest)).await.map_err(blob_error)?;
                    written += 1;
                }
            }
            _ => {}
        }
    }
    reading
        .await
        .map_err(|e| io_error("read the archive", &archive)(std::io::Error::other(e)))??;
    Ok(written)
}
