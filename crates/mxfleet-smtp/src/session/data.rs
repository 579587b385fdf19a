//! DATA: stream the message into durable storage as it arrives, then answer.
//!
//! The body goes chunk by chunk through the sans-IO `DataReceiver` (which alone decides
//! where the message ends: only CRLF.CRLF) into the intake's body sink; it is never held
//! whole in memory. After the final dot the message is judged, in order: too large
//! (`552 5.3.4`), storage trouble (`452 4.3.1` / `451 4.3.0`), bare CR or LF (`554
//! 5.6.0`, SMTP smuggling, unless configured to normalise), a mail loop (`554 5.4.6`).
//! Only then is the envelope committed through the queue, and `250 ... queued as`
//! answered once it is durable on a majority. A transaction in flight when shutdown
//! starts is finished.

use tokio::time::Instant;

use mxfleet_core::{Envelope, ReceivedTrace};
use tracing::info;

use super::{Session, SessionEnd, Stop, Transaction};
use crate::data::{BareLineEndings, DataReceiver};
use crate::headers::HeaderCapture;
use crate::intake::{BodySink, IntakeError};
use crate::metrics::RejectReason;
use crate::reply::Reply;

/// More `Received:` headers than this means the message is looping (RFC 5321 §6.3).
const MAX_RECEIVED_HEADERS: usize = 50;

fn intake_reply(error: &IntakeError) -> Reply {
    match error {
        IntakeError::NoQuorum(_) | IntakeError::Unavailable(_) => {
            Reply::new(451, "4.3.0", "Error: queue not available, try again later")
        }
        IntakeError::StorageFull(_) => Reply::new(452, "4.3.1", "Insufficient system storage"),
        IntakeError::TooLarge { .. } => {
            Reply::new(552, "5.3.4", "Message size exceeds fixed limit")
        }
    }
}

/// Why DATA refused a message: the intake's error when there was one, else the check
/// that chose the reply (each uses its own enhanced status code).
fn rejection_reason(reply: &Reply, error: Option<&IntakeError>) -> RejectReason {
    match (error, reply.status) {
        (Some(IntakeError::NoQuorum(_)), _) => RejectReason::NoQuorum,
        (Some(IntakeError::StorageFull(_)), _) => RejectReason::StorageFull,
        (Some(IntakeError::TooLarge { .. }), _) | (None, "5.3.4") => RejectReason::MessageTooLarge,
        (None, "5.6.0") => RejectReason::BareLineEnding,
        (None, "5.4.6") => RejectReason::MailLoop,
        (Some(IntakeError::Unavailable(_)), _) | (None, _) => RejectReason::QueueUnavailable,
    }
}

impl Session {
    pub(super) async fn data(&mut self) -> Result<(), Stop> {
        let Some(transaction) = self.transaction.clone() else {
            return self.error_reply(Reply::new(503, "5.5.1", "Error: need MAIL command"));
        };
        if transaction.recipients.is_empty() {
            return self.error_reply(Reply::new(503, "5.5.1", "Error: need RCPT command"));
        }
        // Storage first: never invite a body we cannot store.
        let sink = match self.intake.body_sink().await {
            Ok(sink) => sink,
            Err(error) => {
                let reply = intake_reply(&error);
                self.log_outcome(&transaction, 0, None, &reply, Some(&error));
                self.transaction = None;
                return self.ok(reply);
            }
        };
        self.queue_reply(&Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
        self.flush().await?;

        let received = self.receive_body(sink).await?;
        self.transaction = None;
        self.transactions += 1;
        let size = received.size;
        let reply = match received.verdict {
            Err(reply) => {
                self.log_outcome(&transaction, size, None, &reply, received.error.as_ref());
                reply
            }
            Ok(sink) => {
                self.commit(&transaction, sink, size, received.message_id)
                    .await
            }
        };
        self.ok(reply)
    }

    /// Reads DATA up to the final dot, writing content into `sink`. Returns the sink
    /// (if the message is acceptable so far) or the reply that refuses it.
    async fn receive_body(&mut self, sink: Box<dyn BodySink>) -> Result<ReceivedBody, Stop> {
        let limits = self.config.limits.clone();
        let deadline = Instant::now() + limits.data_total_timeout;
        let mut receiver = DataReceiver::new(self.config.bare_line_endings);
        let mut headers = HeaderCapture::default();
        let mut sink = Some(sink);
        let mut too_large = false;
        let mut error: Option<IntakeError> = None;
        let mut content = Vec::with_capacity(64 * 1024);
        loop {
            if !self.input.is_empty() {
                let fed = receiver.feed(&self.input, &mut content);
                self.input.drain(..fed.consumed);
                headers.push(&content);
                if receiver.content_len() > limits.max_message_size && !too_large {
                    too_large = true;
                    info!(client = %self.client.addr, limit = limits.max_message_size, "smtp_message_too_large");
                    sink = None; // dropping the sink discards what was stored
                }
                if let Some(writer) = sink.as_mut()
                    && !content.is_empty()
                    && let Err(e) = writer.write(&content).await
                {
                    error = Some(e);
                    sink = None;
                }
                content.clear();
                if fed.finished {
                    break;
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                let reply = Reply::new(
                    421,
                    "4.4.2",
                    format!("{} Error: timeout exceeded", self.config.hostname),
                );
                return self
                    .close_with(reply, SessionEnd::Timeout)
                    .map(|()| unreachable_body());
            }
            self.read_more(remaining.min(limits.data_block_timeout))
                .await?;
        }
        let size = receiver.content_len();
        let verdict = if too_large {
            Err(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"))
        } else if let Some(e) = &error {
            Err(intake_reply(e))
        } else if receiver.bare_line_ending_seen()
            && self.config.bare_line_endings == BareLineEndings::Reject
        {
            Err(Reply::new(
                554,
                "5.6.0",
                "Message contains bare CR or LF characters (SMTP smuggling protection)",
            ))
        } else if receiver.received_headers() > MAX_RECEIVED_HEADERS {
            Err(Reply::new(
                554,
                "5.4.6",
                "Too many \"Received\" headers: message is looping",
            ))
        } else {
            sink.ok_or_else(|| {
                Reply::new(451, "4.3.0", "Error: queue not available, try again later")
            })
        };
        let message_id = headers.field("Message-ID");
        Ok(ReceivedBody {
            verdict,
            size,
            error,
            message_id,
        })
    }

    /// Makes the body durable and commits the envelope through the queue.
    async fn commit(
        &mut self,
        transaction: &Transaction,
        sink: Box<dyn BodySink>,
        size: u64,
        message_id: Option<String>,
    ) -> Reply {
        let stored = match sink.finish().await {
            Ok(stored) => stored,
            Err(error) => {
                let reply = intake_reply(&error);
                self.log_outcome(transaction, size, None, &reply, Some(&error));
                return reply;
            }
        };
        let envelope = Envelope {
            sender: transaction
                .sender
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
            recipients: transaction
                .recipients
                .iter()
                .map(|m| m.to_string())
                .collect(),
            message_id,
            trace: Some(ReceivedTrace {
                helo: self
                    .greeting
                    .as_ref()
                    .map(|g| g.name.clone())
                    .unwrap_or_default(),
                client_ip: self.client.addr.ip().to_string(),
                by_host: self.config.hostname.clone(),
                protocol: self.protocol().to_string(),
                tls: self.tls.clone(),
                received_spf: transaction.spam.received_spf(),
            }),
        };
        match self.intake.enqueue(envelope, stored).await {
            Ok(receipt) => {
                let reply = Reply::new(250, "2.0.0", format!("Ok: queued as {}", receipt.id));
                self.log_outcome(transaction, size, Some(receipt), &reply, None);
                reply
            }
            Err(error) => {
                let reply = intake_reply(&error);
                self.log_outcome(transaction, size, None, &reply, Some(&error));
                reply
            }
        }
    }

    /// One greppable line per message, accepted or not.
    fn log_outcome(
        &self,
        transaction: &Transaction,
        size: u64,
        receipt: Option<crate::intake::Receipt>,
        reply: &Reply,
        error: Option<&IntakeError>,
    ) {
        let from = transaction
            .sender
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        let to: Vec<String> = transaction
            .recipients
            .iter()
            .map(|m| m.to_string())
            .collect();
        let helo = self
            .greeting
            .as_ref()
            .map(|g| g.name.as_str())
            .unwrap_or("");
        let protocol = self.protocol();
        let queue_id = receipt.map(|r| r.id.to_string()).unwrap_or_default();
        let duplicate = receipt.is_some_and(|r| r.duplicate);
        let tls = self.tls.as_deref().unwrap_or("none");
        let cause = error.map(|e| e.to_string()).unwrap_or_default();
        if reply.is_error() {
            let reason = rejection_reason(reply, error);
            self.config.metrics.rejected(reason);
            info!(client = %self.client.addr, helo, protocol, tls, from = %from, to = %to.join(","), size, reply = %reply, cause, "smtp_message_rejected");
        } else {
            self.config.metrics.message_accepted(size);
            info!(client = %self.client.addr, helo, protocol, tls, from = %from, to = %to.join(","), size, queue_id, duplicate, reply = %reply, "smtp_message_accepted");
        }
    }
}

impl Session {
    /// RFC 3848 protocol name for the `with` clause of `Received:`.
    fn protocol(&self) -> &'static str {
        match (&self.greeting, &self.tls) {
            (Some(g), Some(_)) if g.extended => "ESMTPS",
            (Some(g), None) if g.extended => "ESMTP",
            _ => "SMTP",
        }
    }
}

struct ReceivedBody {
    verdict: Result<Box<dyn BodySink>, Reply>,
    size: u64,
    error: Option<IntakeError>,
    message_id: Option<String>,
}

/// Never called: `close_with` always returns `Err`.
fn unreachable_body() -> ReceivedBody {
    ReceivedBody {
        verdict: Err(Reply::new(421, "4.4.2", "timeout")),
        size: 0,
        error: None,
        message_id: None,
    }
}
