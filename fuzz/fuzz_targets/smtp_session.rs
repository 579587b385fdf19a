//! Fuzz target: a whole SMTP session fed arbitrary bytes in arbitrary chunks. It must
//! not panic, must end (the input ends, so the session sees EOF), and must only ever
//! write well-formed reply lines (`NNN` then space or dash, CRLF-terminated).
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mxfleet_core::{BodyDigest, Envelope, QueueId};
use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy};
use mxfleet_smtp::{
    BodySink, ClientInfo, IntakeError, MessageIntake, PolicyHandle, Receipt, SessionConfig,
    SessionLimits, StoredBody, run_session,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Discard(u64);

#[async_trait::async_trait]
impl BodySink for Discard {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), IntakeError> {
        self.0 += chunk.len() as u64;
        Ok(())
    }
    async fn finish(self: Box<Self>) -> Result<StoredBody, IntakeError> {
        Ok(StoredBody { digest: BodyDigest::of(&self.0.to_be_bytes()), size: self.0 })
    }
}

struct NullIntake;

#[async_trait::async_trait]
impl MessageIntake for NullIntake {
    async fn body_sink(&self) -> Result<Box<dyn BodySink>, IntakeError> {
        Ok(Box::new(Discard(0)))
    }
    async fn enqueue(&self, _: Envelope, _: StoredBody) -> Result<Receipt, IntakeError> {
        Ok(Receipt { id: QueueId(1), duplicate: false })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else { return };
    let step = (step as usize % 64) + 1;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let config = Arc::new(SessionConfig {
            hostname: "fuzz.example".into(),
            limits: SessionLimits {
                max_message_size: 4096,
                command_timeout: Duration::from_secs(5),
                ..SessionLimits::default()
            },
            bare_line_endings: BareLineEndings::Reject,
            tls: None,
            policy: Arc::new(PolicyHandle::new(RelayPolicy::new(vec![(
                "example.org".into(),
                RecipientRule::CatchAll,
            )]))),
            etrn_networks: Vec::new(),
            metrics: Default::default(),
            spam: Arc::new(mxfleet_smtp::checks::SpamChecks::none()),
        });
        let (client, server) = tokio::io::duplex(1 << 20);
        let session = tokio::spawn(run_session(
            server,
            ClientInfo { addr: "192.0.2.1:25".parse().unwrap() },
            config,
            Arc::new(NullIntake),
            CancellationToken::new(),
        ));
        let (mut reader, mut writer) = tokio::io::split(client);
        for chunk in input.chunks(step) {
            if writer.write_all(chunk).await.is_err() {
                break;
            }
        }
        // Signal EOF: the session sees the client hang up after its input.
        let _ = writer.shutdown().await;
        let mut output = Vec::new();
        let _ = reader.read_to_end(&mut output).await;
        session.await.expect("the session task does not panic");
        for line in output.split_inclusive(|b| *b == b'\n') {
            assert!(line.ends_with(b"\r\n"), "reply line without CRLF: {line:?}");
            assert!(line.len() >= 5 && line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
            assert!(line[3] == b' ' || line[3] == b'-', "{line:?}");
        }
    });
});
