//! `mxfleet queue read ID [--out FILE]`: stream a message's stored body, as the sender
//! sent it, to stdout or to a file. Needs the `read-body` permission; the node logs
//! every use.
//!
//! Chunks are written as they arrive, so a large body never sits in memory. Each chunk
//! must come within `--timeout`. A failed read removes the partial `--out` file, so a
//! file that exists afterwards is a whole body.

use std::path::{Path, PathBuf};

use mxfleet_proto::admin::v1::ReadRequest;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::READ;
use crate::cmd::admin::connection::Admin;
use crate::cmd::admin::error::CliError;
use crate::cmd::admin::json::ReadJson;
use crate::cmd::admin::print_json;

pub async fn run(
    admin: &Admin,
    id: String,
    out: Option<PathBuf>,
    json: bool,
) -> Result<u8, CliError> {
    let Some(path) = out else {
        return match copy_body(admin, &id, &mut tokio::io::stdout()).await {
            Ok(_) => Ok(0),
            // The reader went away (`| head`): not a failure of ours.
            Err(Failure::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
            Err(failure) => Err(failure.into_cli("stdout")),
        };
    };
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| CliError::Usage(format!("--out {}: {e}", path.display())))?;
    let copied = copy_body(admin, &id, &mut file).await;
    let copied = match copied {
        Ok(n) => file.sync_all().await.map(|()| n).map_err(Failure::Write),
        Err(failure) => Err(failure),
    };
    let bytes = match copied {
        Ok(n) => n,
        Err(failure) => {
            drop(file);
            remove_partial(&path).await;
            return Err(failure.into_cli(&path.display().to_string()));
        }
    };
    if json {
        print_json(&ReadJson {
            id,
            out: path.display().to_string(),
            bytes,
        })?;
    } else {
        eprintln!("wrote {bytes} bytes of message {id} to {}", path.display());
    }
    Ok(0)
}

/// Why copying stopped: the server, or our side of the copy.
enum Failure {
    Server(CliError),
    Write(std::io::Error),
}

impl Failure {
    fn into_cli(self, target: &str) -> CliError {
        match self {
            Failure::Server(error) => error,
            Failure::Write(e) => {
                CliError::Failed(format!("cannot write the body to {target}: {e}"))
            }
        }
    }
}

/// Streams the body into `sink`; returns how many bytes were written.
async fn copy_body(
    admin: &Admin,
    id: &str,
    sink: &mut (impl AsyncWrite + Unpin),
) -> Result<u64, Failure> {
    // No grpc-timeout: a large body may take longer than --timeout in all; each chunk
    // is bounded instead.
    let request = tonic::Request::new(ReadRequest { id: id.to_owned() });
    let mut queue = admin.queue();
    let mut stream = admin
        .open(READ, queue.read(request))
        .await
        .map_err(Failure::Server)?;
    let mut written = 0u64;
    while let Some(chunk) = admin
        .next(READ, &mut stream, Some(admin.timeout()))
        .await
        .map_err(Failure::Server)?
    {
        sink.write_all(&chunk.data).await.map_err(Failure::Write)?;
        written += chunk.data.len() as u64;
    }
    sink.flush().await.map_err(Failure::Write)?;
    Ok(written)
}

async fn remove_partial(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        eprintln!(
            "mxfleet: could not remove the partial file {}: {e}",
            path.display()
        );
    }
}
