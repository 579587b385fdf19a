//! DSNs owed by the replicated state, sent by the leader: a failure DSN for every
//! message with bounced recipients nobody was told about, and one delay warning per
//! message still queued after its destination's `delay_warning` time.
//!
//! Each DSN is built only from replicated facts (entry, replies, times) and the
//! fleet-wide reporting name, so a DSN rebuilt after a leader change is byte-identical
//! and the queue's dedup stores it once. The DSN is enqueued through Raft like any
//! message (null sender, to the original sender); then `Notified` records it.

use std::sync::Arc;

use mxfleet_core::{
    Envelope, HistoryEvent, MessageState, NotificationKind, OutcomeStatus, QueueEntry,
    RecipientState, UnixMillis,
};
use mxfleet_queue::Queue;
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

use crate::attempt::dsn_code;
use crate::config::DeliveryConfig;
use crate::dsn::{
    DiagnosticCode, DsnKind, DsnRequest, RecipientAction, RecipientReport, should_notify,
};

/// DSNs sent per scheduler round at most.
const MAX_PER_ROUND: usize = 50;
/// Bytes of the original read for quoting when only headers are quoted.
const HEADER_READ_LIMIT: u64 = 64 * 1024;

pub(crate) struct Notifier {
    queue: Queue,
    config: Arc<DeliveryConfig>,
}

impl Notifier {
    pub(crate) fn new(queue: Queue, config: Arc<DeliveryConfig>) -> Self {
        Notifier { queue, config }
    }

    /// Sends the DSNs the state says are owed at `now`.
    pub(crate) async fn send_owed(&self, now: UnixMillis) {
        let config = self.config.clone();
        let owed = self.queue.read_state(|state| {
            state
                .entries
                .values()
                .filter_map(|entry| {
                    if entry.owes_failure_dsn() {
                        return Some((entry.clone(), NotificationKind::Failure));
                    }
                    // Cheap checks first: this runs over every entry each round, and
                    // only deferred, unwarned messages need their policy looked up.
                    let may_warn = entry.state == MessageState::Queued
                        && !entry.delay_warned
                        && entry.last_attempt_at.is_some()
                        && should_notify(&entry.envelope.sender);
                    if !may_warn {
                        return None;
                    }
                    let warn_after = config.policy(&entry.destination()).delay_warning?;
                    let warning_due = now.0 >= entry.received_at.0 + warn_after.as_millis() as u64;
                    warning_due.then(|| (entry.clone(), NotificationKind::DelayWarning))
                })
                .take(MAX_PER_ROUND)
                .collect::<Vec<_>>()
        });
        let owed = match owed {
            Ok(owed) => owed,
            Err(e) => {
                warn!(cause = %e, "notifier_state_unreadable");
                return;
            }
        };
        for (entry, kind) in owed {
            if let Err(e) = self.send(&entry, kind).await {
                warn!(queue_id = %entry.id, ?kind, cause = %e, "dsn_failed");
            }
        }
    }

    async fn send(&self, entry: &QueueEntry, kind: NotificationKind) -> Result<(), String> {
        let policy = self.config.policy(&entry.destination());
        let (dsn_kind, action, recipients, date): (_, _, Vec<_>, _) = match kind {
            NotificationKind::Failure => (
                DsnKind::Failure,
                RecipientAction::Failed,
                entry.unreported_bounces().collect(),
                entry.last_attempt_at.unwrap_or(entry.received_at),
            ),
            NotificationKind::DelayWarning => (
                DsnKind::DelayWarning {
                    will_retry_until: entry
                        .received_at
                        .plus_millis(policy.lifetime.as_millis() as u64),
                },
                RecipientAction::Delayed,
                entry
                    .recipients
                    .iter()
                    .filter(|r| r.state == RecipientState::Pending)
                    .collect(),
                entry.received_at.plus_millis(
                    policy
                        .delay_warning
                        .map_or(0, |after| after.as_millis() as u64),
                ),
            ),
        };
        let remote_mta = last_relay(entry);
        let outcome = match action {
            RecipientAction::Failed => OutcomeStatus::Bounced,
            RecipientAction::Delayed => OutcomeStatus::Deferred,
        };
        let reports: Vec<RecipientReport> = recipients
            .iter()
            .map(|recipient| {
                let reply = recipient.last_reply.clone().unwrap_or_default();
                RecipientReport {
                    final_recipient: recipient.address.clone(),
                    original_recipient: None,
                    action,
                    status: dsn_code(&reply, outcome),
                    remote_mta: remote_mta.clone(),
                    diagnostic: Some(diagnostic(&reply)),
                    last_attempt: entry.last_attempt_at.unwrap_or(entry.received_at),
                }
            })
            .collect();
        let original = self.original_for_quoting(entry).await;
        let request = DsnRequest {
            kind: dsn_kind,
            reporting_mta: &self.config.reporting_mta,
            queue_id: entry.id,
            envelope: &entry.envelope,
            arrival_date: entry.received_at,
            date,
            recipients: &reports,
            original: &original,
            original_size: entry.size,
            max_quoted_body: self.config.dsn_max_quoted_body,
        };
        let dsn_envelope = Envelope {
            sender: String::new(),
            recipients: vec![entry.envelope.sender.clone()],
            message_id: Some(request.message_id()),
            trace: None,
        };
        let receipt = self
            .queue
            .enqueue_bytes(dsn_envelope, &request.render())
            .await
            .map_err(|e| format!("enqueue: {e}"))?;
        self.queue
            .record_notification(entry.id, kind, Some(receipt.id))
            .await
            .map_err(|e| format!("record: {e}"))?;
        info!(
            queue_id = %entry.id,
            dsn_id = %receipt.id,
            kind = ?kind,
            to = %entry.envelope.sender,
            recipients = reports.len(),
            duplicate = receipt.duplicate,
            "dsn_enqueued"
        );
        Ok(())
    }

    /// The start of the original message: all of it when small enough to quote whole,
    /// else enough for its headers. Empty if the body cannot be read (the DSN then
    /// quotes nothing rather than not being sent).
    async fn original_for_quoting(&self, entry: &QueueEntry) -> Vec<u8> {
        let limit = if entry.size <= self.config.dsn_max_quoted_body as u64 {
            entry.size
        } else {
            HEADER_READ_LIMIT.min(entry.size)
        };
        let mut original = Vec::with_capacity(limit as usize);
        match self.queue.open_body(&entry.body, &entry.body_holders).await {
            Ok((file, _)) => {
                if let Err(e) = file.take(limit).read_to_end(&mut original).await {
                    warn!(queue_id = %entry.id, cause = %e, "dsn_original_unreadable");
                    original.clear();
                }
            }
            Err(e) => warn!(queue_id = %entry.id, cause = %e, "dsn_original_unavailable"),
        }
        original
    }
}

/// `dns; host` of the relay that gave the last reply, from the history.
fn last_relay(entry: &QueueEntry) -> Option<String> {
    entry.history.iter().rev().find_map(|event| match event {
        HistoryEvent::Attempt {
            relay: Some(relay), ..
        } => Some(format!(
            "dns; {}",
            relay.split('[').next().unwrap_or(relay.as_str())
        )),
        _ => None,
    })
}

/// `smtp; 550 5.1.1 ...` for a remote reply, a local diagnostic otherwise.
fn diagnostic(reply: &str) -> DiagnosticCode {
    let starts_with_code = reply.len() >= 3
        && reply.as_bytes()[..3].iter().all(u8::is_ascii_digit)
        && matches!(reply.as_bytes()[0], b'4' | b'5');
    if starts_with_code {
        DiagnosticCode::Smtp(reply.to_string())
    } else {
        DiagnosticCode::Local(reply.to_string())
    }
}
