//! Shared helpers for the SMTP session tests: an in-memory intake and a session
//! config relaying for `example.org` (alice, bob) and `example.net` (anyone).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mxfleet_core::{BodyDigest, Envelope, QueueId};
use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy};
use mxfleet_smtp::{
    BodySink, ClientInfo, IntakeError, MessageIntake, PolicyHandle, Receipt, SessionConfig,
    SessionEnd, SessionLimits, StoredBody, run_session,
};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts a session from client 192.0.2.7 over an in-memory stream; returns the
/// client's end of the stream and the session task.
pub fn spawn_session(
    config: Arc<SessionConfig>,
    intake: Arc<dyn MessageIntake>,
    shutdown: CancellationToken,
) -> (DuplexStream, JoinHandle<SessionEnd>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let client_info = ClientInfo {
        addr: "192.0.2.7:40000".parse().expect("literal address"),
    };
    let session = tokio::spawn(run_session(server, client_info, config, intake, shutdown));
    (client, session)
}

/// What the in-memory intake does with messages.
#[derive(Default)]
pub struct MemoryIntake {
    pub queued: Mutex<Vec<(Envelope, Vec<u8>)>>,
    pub fail_with: Mutex<Option<fn() -> IntakeError>>,
    /// Domains ETRN asked to flush.
    pub flushed: Mutex<Vec<String>>,
}

struct MemorySink(Vec<u8>);

#[async_trait::async_trait]
impl BodySink for MemorySink {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), IntakeError> {
        self.0.extend_from_slice(chunk);
        Ok(())
    }
    async fn finish(self: Box<Self>) -> Result<StoredBody, IntakeError> {
        Ok(StoredBody {
            digest: BodyDigest::of(&self.0),
            size: self.0.len() as u64,
        })
    }
}

#[async_trait::async_trait]
impl MessageIntake for MemoryIntake {
    async fn body_sink(&self) -> Result<Box<dyn BodySink>, IntakeError> {
        Ok(Box::new(MemorySink(Vec::new())))
    }
    async fn enqueue(&self, envelope: Envelope, body: StoredBody) -> Result<Receipt, IntakeError> {
        if let Some(fail) = *self.fail_with.lock().unwrap() {
            return Err(fail());
        }
        let mut queued = self.queued.lock().unwrap();
        queued.push((envelope, body.digest.0.to_vec()));
        Ok(Receipt {
            id: QueueId(queued.len() as u64),
            duplicate: false,
        })
    }
    async fn flush_destination(&self, domain: &str) -> Result<(), IntakeError> {
        if let Some(fail) = *self.fail_with.lock().unwrap() {
            return Err(fail());
        }
        self.flushed.lock().unwrap().push(domain.to_string());
        Ok(())
    }
}

pub fn config(tune: impl FnOnce(&mut SessionLimits)) -> Arc<SessionConfig> {
    let mut limits = SessionLimits {
        command_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    tune(&mut limits);
    let policy = RelayPolicy::new(vec![
        (
            "example.org".to_string(),
            RecipientRule::Listed(
                ["alice".to_string(), "bob".to_string()]
                    .into_iter()
                    .collect(),
            ),
        ),
        ("example.net".to_string(), RecipientRule::CatchAll),
    ]);
    Arc::new(SessionConfig {
        hostname: "mx2.example.org".into(),
        limits,
        bare_line_endings: BareLineEndings::Reject,
        tls: None,
        policy: Arc::new(PolicyHandle::new(policy)),
        etrn_networks: Vec::new(),
        metrics: Default::default(),
        spam: std::sync::Arc::new(mxfleet_smtp::checks::SpamChecks::none()),
    })
}
