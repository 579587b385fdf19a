//! The SMTP intake backed by the replicated queue: bodies stream into the local blob
//! store, and `enqueue` returns once the message is committed on a majority.

use mxfleet_core::Envelope;
use mxfleet_queue::{BlobError, BlobWriter, Queue, QueueError, StoredBlob};
use mxfleet_smtp::{BodySink, IntakeError, MessageIntake, Receipt, StoredBody};

/// `MessageIntake` over a node's `Queue`.
pub struct QueueIntake {
    queue: Queue,
}

impl QueueIntake {
    pub fn new(queue: Queue) -> Self {
        QueueIntake { queue }
    }
}

fn from_queue_error(error: QueueError) -> IntakeError {
    match error {
        QueueError::NoQuorum { .. } => IntakeError::NoQuorum(error.to_string()),
        QueueError::StorageFull { detail } => IntakeError::StorageFull(detail),
        QueueError::TooLarge { limit, .. } => IntakeError::TooLarge { limit },
        other => IntakeError::Unavailable(other.to_string()),
    }
}

fn from_blob_error(error: BlobError) -> IntakeError {
    match error {
        BlobError::StorageFull { .. } => IntakeError::StorageFull(error.to_string()),
        BlobError::TooLarge { limit } => IntakeError::TooLarge { limit },
        other => IntakeError::Unavailable(other.to_string()),
    }
}

struct BlobSink(BlobWriter);

#[async_trait::async_trait]
impl BodySink for BlobSink {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), IntakeError> {
        self.0.write_chunk(chunk).await.map_err(from_blob_error)
    }

    async fn finish(self: Box<Self>) -> Result<StoredBody, IntakeError> {
        let stored = self.0.finish(None).await.map_err(from_blob_error)?;
        Ok(StoredBody {
            digest: stored.digest,
            size: stored.size,
        })
    }
}

#[async_trait::async_trait]
impl MessageIntake for QueueIntake {
    async fn body_sink(&self) -> Result<Box<dyn BodySink>, IntakeError> {
        let writer = self.queue.body_writer().await.map_err(from_queue_error)?;
        Ok(Box::new(BlobSink(writer)))
    }

    async fn enqueue(&self, envelope: Envelope, body: StoredBody) -> Result<Receipt, IntakeError> {
        let stored = StoredBlob {
            digest: body.digest,
            size: body.size,
        };
        let receipt = self
            .queue
            .enqueue(envelope, stored)
            .await
            .map_err(from_queue_error)?;
        Ok(Receipt {
            id: receipt.id,
            duplicate: receipt.duplicate,
        })
    }

    fn refuses_sessions(&self) -> Option<String> {
        self.queue
            .is_drained()
            .then(|| "this node is drained for maintenance, try another MX".to_owned())
    }

    async fn flush_destination(&self, domain: &str) -> Result<(), IntakeError> {
        self.queue
            .flush(Some(domain))
            .await
            .map_err(from_queue_error)
    }
}
