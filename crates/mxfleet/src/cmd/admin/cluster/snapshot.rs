//! `mxfleet cluster snapshot --out FILE [--local]`: download a backup archive of the
//! answering node's queue (metadata and every body a live message references) into
//! FILE. Needs a token with both `cluster` and `read-body`; the node logs every use.
//!
//! The bytes go to `FILE.tmp` as they arrive, and through an `ArchiveReader` on the way,
//! which checks every body's SHA-256 and the archive's closing checksum. Only a complete
//! archive is fsynced and renamed to FILE (then the directory is fsynced), so FILE is
//! never a half archive; any failure removes `FILE.tmp`. Each chunk must come within
//! `--timeout`; the download as a whole has no limit.
//!
//! Exit codes: 0 complete; 1 a failure, or an archive written without some bodies (the
//! node could not read them: listed on stderr and in the JSON, FILE is kept because
//! the rest is still worth having); 69 the node is unreachable or has no quorum (retry,
//! or `--local` on a survivor).

use std::path::{Path, PathBuf};

use mxfleet_proto::admin::v1::SnapshotRequest;
use mxfleet_queue::backup_archive::{ArchiveEvent, ArchiveHeader, ArchiveReader, ArchiveTrailer};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::cmd::admin::connection::Admin;
use crate::cmd::admin::error::{CliError, Rpc};
use crate::cmd::admin::{print_json, print_text};

const SNAPSHOT: Rpc = Rpc {
    name: "ClusterAdmin.Snapshot",
    permission: "cluster + read-body",
};

/// `cluster snapshot --json`.
#[derive(Debug, Serialize)]
pub struct SnapshotJson {
    pub out: String,
    /// Size of the archive file.
    pub bytes: u64,
    pub answered_by: u64,
    pub term: u64,
    pub last_applied_index: u64,
    /// Whether the node confirmed with the leader first (not `--local`).
    pub linearizable: bool,
    pub entries: u64,
    pub live_entries: u64,
    pub bodies: u64,
    pub body_bytes: u64,
    /// False when bodies are missing from the archive.
    pub complete: bool,
    pub missing_bodies: Vec<MissingBodyJson>,
}

#[derive(Debug, Serialize)]
pub struct MissingBodyJson {
    pub sha256: String,
    pub queue_ids: Vec<String>,
    pub reason: String,
}

pub async fn run(admin: &Admin, out: PathBuf, local: bool, json: bool) -> Result<u8, CliError> {
    let tmp = tmp_path(&out);
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| CliError::Usage(format!("--out {}: {e}", tmp.display())))?;
    let result = download(admin, local, &mut file).await;
    let result = match result {
        Ok(done) => file
            .sync_all()
            .await
            .map(|()| done)
            .map_err(|e| write_failed(&tmp, e)),
        Err(e) => Err(e),
    };
    drop(file);
    let (header, trailer, bytes) = match result {
        Ok(done) => done,
        Err(error) => {
            if let Err(e) = tokio::fs::remove_file(&tmp).await {
                eprintln!(
                    "mxfleet: could not remove the partial file {}: {e}",
                    tmp.display()
                );
            }
            return Err(error);
        }
    };
    tokio::fs::rename(&tmp, &out)
        .await
        .map_err(|e| write_failed(&out, e))?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| write_failed(dir, e))?;

    let document = SnapshotJson {
        out: out.display().to_string(),
        bytes,
        answered_by: header.source_node,
        term: header.term,
        last_applied_index: header.last_applied_index,
        linearizable: header.linearizable,
        entries: header.entries,
        live_entries: header.live_entries,
        bodies: trailer.bodies_written,
        body_bytes: trailer.body_bytes_written,
        complete: trailer.missing.is_empty(),
        missing_bodies: trailer
            .missing
            .iter()
            .map(|m| MissingBodyJson {
                sha256: m.digest.to_hex(),
                queue_ids: m.queue_ids.iter().map(|id| id.to_string()).collect(),
                reason: m.reason.clone(),
            })
            .collect(),
    };
    for missing in &document.missing_bodies {
        eprintln!(
            "mxfleet: WARNING: body {} of message(s) {} is NOT in the archive: {}",
            missing.sha256,
            missing.queue_ids.join(", "),
            missing.reason
        );
    }
    if json {
        print_json(&document)?;
    } else {
        print_text(&render(&document))?;
    }
    if document.complete {
        Ok(0)
    } else {
        Err(CliError::Failed(format!(
            "the archive {} was written without {} bod{} that node {} could not read (see \
             above); take another snapshot from a node that holds them",
            document.out,
            document.missing_bodies.len(),
            if document.missing_bodies.len() == 1 {
                "y"
            } else {
                "ies"
            },
            document.answered_by
        )))
    }
}

fn render(document: &SnapshotJson) -> String {
    format!(
        "wrote {} ({} bytes): node {}, term {}, log index {}{}\n\
         {} entries ({} live), {} bodies ({} bytes)\n",
        document.out,
        document.bytes,
        document.answered_by,
        document.term,
        document.last_applied_index,
        if document.linearizable {
            ""
        } else {
            " (--local: this node's replica, possibly behind the leader)"
        },
        document.entries,
        document.live_entries,
        document.bodies,
        document.body_bytes,
    )
}

fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn write_failed(path: &Path, e: std::io::Error) -> CliError {
    CliError::Failed(format!("cannot write {}: {e}", path.display()))
}

/// Streams the archive into `file`, checking it on the way; returns its header,
/// trailer and size.
async fn download(
    admin: &Admin,
    local: bool,
    file: &mut tokio::fs::File,
) -> Result<(ArchiveHeader, ArchiveTrailer, u64), CliError> {
    // No grpc-timeout: a large archive may take longer than --timeout in all; each
    // chunk is bounded instead.
    let request = tonic::Request::new(SnapshotRequest { local });
    let mut stream = admin
        .open(SNAPSHOT, admin.cluster().snapshot(request))
        .await?;
    let mut reader = ArchiveReader::new();
    let mut header = None;
    let mut trailer = None;
    let mut bytes = 0u64;
    let damaged = |e: mxfleet_queue::backup_archive::ArchiveError| {
        CliError::Failed(format!("the node sent a damaged archive: {e}"))
    };
    while let Some(chunk) = admin
        .next(SNAPSHOT, &mut stream, Some(admin.timeout()))
        .await?
    {
        file.write_all(&chunk.data)
            .await
            .map_err(|e| CliError::Failed(format!("cannot write the archive: {e}")))?;
        bytes += chunk.data.len() as u64;
        reader.push(&chunk.data);
        while let Some(event) = reader.next_event().map_err(damaged)? {
            match event {
                ArchiveEvent::Header(h) => header = Some(h),
                ArchiveEvent::Trailer(t) => trailer = Some(t),
                _ => {}
            }
        }
    }
    reader.finish().map_err(damaged)?;
    match (header, trailer) {
        (Some(header), Some(trailer)) => Ok((header, trailer, bytes)),
        _ => Err(damaged(
            mxfleet_queue::backup_archive::ArchiveError::Truncated("without a header"),
        )),
    }
}
