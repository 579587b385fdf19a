//! Where accepted mail goes: the session hands each message to a `MessageIntake`.
//! In production that is the replicated queue (wired in `mxfleet-node`); transcript
//! tests use an in-memory one. The trait keeps this crate free of Raft and storage.

use mxfleet_core::{BodyDigest, Envelope, QueueId};

/// A body being received: chunks go to durable storage as they arrive.
#[async_trait::async_trait]
pub trait BodySink: Send {
    /// Appends a chunk of message content.
    async fn write(&mut self, chunk: &[u8]) -> Result<(), IntakeError>;
    /// Makes the body durable and returns its digest and size.
    async fn finish(self: Box<Self>) -> Result<StoredBody, IntakeError>;
}

/// A stored body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredBody {
    pub digest: BodyDigest,
    pub size: u64,
}

/// The queue's answer for an accepted message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub id: QueueId,
    /// The fleet already had this submission; nothing new was stored.
    pub duplicate: bool,
}

/// Why a message could not be queued. Each maps to one SMTP reply.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// No majority in time: `451 4.3.0`, nothing promised.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// Disk full here or on too many peers: `452 4.3.1`.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// Over the size limit: `552 5.3.4`.
    #[error("message larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Anything else temporary: `451 4.3.0`.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The destination of accepted messages.
#[async_trait::async_trait]
pub trait MessageIntake: Send + Sync + 'static {
    /// A sink for one message body.
    async fn body_sink(&self) -> Result<Box<dyn BodySink>, IntakeError>;
    /// Commits the envelope; returns once the message is durable on a majority.
    async fn enqueue(&self, envelope: Envelope, body: StoredBody) -> Result<Receipt, IntakeError>;
    /// Why new SMTP sessions must be refused right now (`421 4.3.2` before the
    /// banner, so that the client tries another MX), or `None` to serve them. An
    /// operator's `mxfleet cluster drain` sets this.
    fn refuses_sessions(&self) -> Option<String> {
        None
    }
    /// ETRN: start delivering `domain`'s deferred mail now. Intakes without a queue
    /// behind them cannot.
    async fn flush_destination(&self, domain: &str) -> Result<(), IntakeError> {
        Err(IntakeError::Unavailable(format!(
            "no delivery queue to flush for {domain}"
        )))
    }
}
