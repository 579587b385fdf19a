//! The built-in primary of `mxfleet dev`: an SMTP server (mxfleet's own session code)
//! that stands in for the primary MX, writes each message it accepts to
//! `<data dir>/primary/<n>.eml`, and logs `dev_primary_received`. It lets the dev
//! cluster show the whole path: intake, replication, assignment, delivery. The same
//! server runs on its own as `mxfleet test-primary` (`test_primary.rs`), the sink of
//! the compose test fleet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mxfleet_core::{BodyDigest, Envelope, QueueId};
use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::listener::ConnectionLimits;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy};
use mxfleet_smtp::{
    BodySink, IntakeError, MessageIntake, PolicyHandle, Receipt, SessionConfig, SessionLimits,
    StoredBody,
};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// Stores accepted messages as files, numbered in the order their DATA began.
struct MailDrop {
    dir: PathBuf,
    next: AtomicU64,
    /// Bodies being written, or written and not yet enqueued: handle → file number.
    /// Several sessions write at once, so the handle is what ties `enqueue` to its
    /// file. (A transaction aborted during DATA leaves its entry: a dev-only leak.)
    pending: Mutex<HashMap<BodyDigest, u64>>,
}

struct DropFile {
    number: u64,
    path: PathBuf,
    file: tokio::fs::File,
    size: u64,
}

/// The handle of file `number`. The session only passes it back to `enqueue`, so it
/// need not be a hash of the content; it must only be unique.
fn handle(number: u64) -> BodyDigest {
    BodyDigest::of(format!("dev-primary-file-{number}").as_bytes())
}

#[async_trait::async_trait]
impl BodySink for DropFile {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), IntakeError> {
        self.size += chunk.len() as u64;
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| IntakeError::Unavailable(e.to_string()))
    }

    async fn finish(mut self: Box<Self>) -> Result<StoredBody, IntakeError> {
        self.file
            .flush()
            .await
            .map_err(|e| IntakeError::Unavailable(e.to_string()))?;
        info!(path = %self.path.display(), "dev_primary_body_stored");
        Ok(StoredBody {
            digest: handle(self.number),
            size: self.size,
        })
    }
}

#[async_trait::async_trait]
impl MessageIntake for MailDrop {
    async fn body_sink(&self) -> Result<Box<dyn BodySink>, IntakeError> {
        let number = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.dir.join(format!("{number}.eml"));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| IntakeError::Unavailable(e.to_string()))?;
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(handle(number), number);
        Ok(Box::new(DropFile {
            number,
            path,
            file,
            size: 0,
        }))
    }

    async fn enqueue(&self, envelope: Envelope, body: StoredBody) -> Result<Receipt, IntakeError> {
        let n = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&body.digest)
            .ok_or_else(|| IntakeError::Unavailable("unknown body handle".into()))?;
        info!(
            from = %envelope.sender,
            to = %envelope.recipients.join(","),
            message_id = envelope.message_id.as_deref().unwrap_or(""),
            size = body.size,
            file = %self.dir.join(format!("{n}.eml")).display(),
            "dev_primary_received"
        );
        Ok(Receipt {
            id: QueueId(n),
            duplicate: false,
        })
    }
}

/// Starts the built-in primary on an ephemeral loopback port, accepting mail for
/// `domains`; returns its address.
pub async fn start(
    dir: PathBuf,
    domains: &[String],
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    serve_on(
        listener,
        "primary.mxfleet.dev",
        dir,
        domains,
        shutdown,
        tracker,
    )
    .await
}

/// Serves the primary on `listener` (also `mxfleet test-primary`), announcing
/// `hostname`; returns the listening address. Files are numbered after the highest
/// `<n>.eml` already in `dir`, so a restarted sink never overwrites what it received.
pub(crate) async fn serve_on(
    listener: tokio::net::TcpListener,
    hostname: &str,
    dir: PathBuf,
    domains: &[String],
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<SocketAddr> {
    tokio::fs::create_dir_all(&dir).await?;
    let received_before = highest_file_number(&dir).await?;
    let addr = listener.local_addr()?;
    let policy = RelayPolicy::new(
        domains
            .iter()
            .map(|d| (d.to_ascii_lowercase(), RecipientRule::CatchAll))
            .collect(),
    );
    let session = Arc::new(SessionConfig {
        hostname: hostname.to_owned(),
        limits: SessionLimits::default(),
        bare_line_endings: BareLineEndings::Reject,
        tls: None,
        policy: Arc::new(PolicyHandle::new(policy)),
        etrn_networks: Vec::new(),
        metrics: Default::default(),
        spam: std::sync::Arc::new(mxfleet_smtp::checks::SpamChecks::none()),
    });
    let intake = Arc::new(MailDrop {
        dir,
        next: AtomicU64::new(received_before),
        pending: Mutex::new(HashMap::new()),
    });
    tracker.spawn(mxfleet_smtp::listener::serve(
        listener,
        session,
        ConnectionLimits::default(),
        intake,
        shutdown,
        tracker.clone(),
    ));
    Ok(addr)
}

/// The highest `n` of the `<n>.eml` files in `dir`; 0 when there are none.
async fn highest_file_number(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut highest = 0;
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|name| name.strip_suffix(".eml"))
            .and_then(|stem| stem.parse::<u64>().ok());
        highest = highest.max(number.unwrap_or(0));
    }
    Ok(highest)
}
