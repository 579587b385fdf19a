//! One worker of a destination: route, connect (trying each target, then the
//! fallback relay), send the assigned messages over that connection one after another,
//! and turn every result into per-recipient outcomes, with a Postfix-style log line
//! per recipient (`delivery_attempt`: queue id, recipient, relay, delays, DSN code,
//! status, remote reply).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mxfleet_core::{AttemptReport, OutcomeStatus, QueueEntry, RecipientOutcome, destination_of};
use tracing::{info, warn};

use crate::client::{ClientError, ClientOptions, OutgoingMessage, SendOutcome, SmtpConnection};
use crate::config::DestinationPolicy;
use crate::owner::{DeliveryOwner, Work};
use crate::reply::Severity;
use crate::route::RouteError;
use crate::target::ConnectTarget;

/// Why a worker could not get a usable connection.
enum NoConnection {
    /// Routing said no for good (NXDOMAIN, null MX): bounce.
    Permanent(String),
    /// Nothing answered, or routing failed for now: defer.
    Temporary(String),
}

impl DeliveryOwner {
    /// Delivers queued work for `destination` until none is left.
    pub(crate) async fn run_worker(self: Arc<Self>, destination: &str) {
        let policy = self.config.policy(destination).clone();
        while !self.cancel.is_cancelled() {
            let Some(first) = self.next_work(destination) else {
                return;
            };
            let setup_started = Instant::now();
            let mut connection = match self.open_connection(destination, &policy).await {
                Ok(connection) => connection,
                Err(NoConnection::Permanent(reply)) => {
                    self.finish_without_connection(destination, first, &reply, true);
                    continue;
                }
                Err(NoConnection::Temporary(reply)) => {
                    self.note_reachability(destination, false, &reply).await;
                    self.finish_without_connection(destination, first, &reply, false);
                    continue;
                }
            };
            self.note_reachability(destination, true, "connected").await;
            let setup = setup_started.elapsed();
            let mut next = Some(first);
            let mut sent = 0;
            while let Some(work) = next.take() {
                sent += 1;
                let usable = self
                    .deliver_one(&mut connection, work, destination, setup)
                    .await;
                if !usable || self.cancel.is_cancelled() {
                    break;
                }
                if sent < self.config.messages_per_connection {
                    next = self.next_work(destination);
                }
            }
            connection.quit().await;
        }
    }

    /// Routes and connects, trying every target in order, then the fallback relay.
    async fn open_connection(
        &self,
        destination: &str,
        policy: &DestinationPolicy,
    ) -> Result<SmtpConnection, NoConnection> {
        let mut problems = Vec::new();
        match self.router.route(destination, &policy.route.primary).await {
            Ok(targets) => match self.connect_any(&targets, policy).await {
                Ok(connection) => return Ok(connection),
                Err(problem) => problems.push(problem),
            },
            Err(e) if e.severity() == Severity::Permanent => {
                return Err(NoConnection::Permanent(route_reply(&e)));
            }
            Err(e) => problems.push(route_reply(&e)),
        }
        if let Some(fallback) = self.router.route_fallback(destination, &policy.route).await {
            match fallback {
                Ok(targets) => match self.connect_any(&targets, policy).await {
                    Ok(connection) => return Ok(connection),
                    Err(problem) => problems.push(format!("fallback relay: {problem}")),
                },
                Err(e) => problems.push(format!("fallback relay: {}", route_reply(&e))),
            }
        }
        Err(NoConnection::Temporary(problems.join("; ")))
    }

    /// The first target that opens a session. Under opportunistic TLS, a target whose
    /// TLS handshake fails is retried once in plaintext, as Postfix does.
    async fn connect_any(
        &self,
        targets: &[ConnectTarget],
        policy: &DestinationPolicy,
    ) -> Result<SmtpConnection, String> {
        let options = ClientOptions {
            tls: policy.tls.clone(),
            ..self.config.client.clone()
        };
        let mut last = String::from("no targets");
        for target in targets {
            match SmtpConnection::connect(target, &options).await {
                Ok(connection) => return Ok(connection),
                Err(ClientError::Tls { .. }) if !policy.tls.requires_tls() => {
                    let plaintext = ClientOptions {
                        tls: crate::client::TlsPolicy::Disabled,
                        ..options.clone()
                    };
                    match SmtpConnection::connect(target, &plaintext).await {
                        Ok(connection) => return Ok(connection),
                        Err(e) => last = failure_reply(&e),
                    }
                }
                Err(e) => last = failure_reply(&e),
            }
        }
        Err(last)
    }

    /// Defers (or bounces) `first` and everything else waiting for `destination`.
    fn finish_without_connection(
        &self,
        destination: &str,
        first: Work,
        reply: &str,
        permanent: bool,
    ) {
        let mut all = vec![first];
        all.extend(self.drain_pending(destination));
        for work in all {
            let recipients = recipients_for(&work.entry, destination);
            let status = if permanent {
                OutcomeStatus::Bounced
            } else {
                OutcomeStatus::Deferred
            };
            let results = recipients
                .into_iter()
                .map(|recipient| RecipientOutcome {
                    recipient,
                    status,
                    reply: reply.to_string(),
                })
                .collect();
            self.finish(work, None, results, false, Duration::ZERO, Duration::ZERO);
        }
    }

    /// Sends one message over `connection`. Returns false when the connection is no
    /// longer usable.
    async fn deliver_one(
        &self,
        connection: &mut SmtpConnection,
        work: Work,
        destination: &str,
        setup: Duration,
    ) -> bool {
        let id = work.entry.id;
        let lease_until = self.lease_until(id);
        let now = self.queue.clock_now();
        if !lease_until.is_some_and(|until| self.config.lease.may_deliver(until, now))
            || !self.in_contact()
        {
            self.abandon(&work, "lease or contact lost before the attempt");
            return true;
        }
        let recipients = recipients_for(&work.entry, destination);
        let (body, _) = match self
            .queue
            .open_body(&work.entry.body, &work.entry.body_holders)
            .await
        {
            Ok(opened) => opened,
            Err(e) => {
                warn!(queue_id = %id, cause = %e, "delivery_body_unavailable");
                let reply = format!("451 4.3.0 message content not available on this node: {e}");
                let results = recipients
                    .into_iter()
                    .map(|recipient| RecipientOutcome {
                        recipient,
                        status: OutcomeStatus::Deferred,
                        reply: reply.clone(),
                    })
                    .collect();
                self.finish(work, None, results, false, setup, Duration::ZERO);
                return true;
            }
        };
        let prefix = work
            .entry
            .envelope
            .trace
            .as_ref()
            .map(|trace| trace.received_header(id, work.entry.received_at, &recipients))
            .unwrap_or_default()
            .into_bytes();
        let message = OutgoingMessage {
            sender: work.entry.envelope.sender.clone(),
            recipients: recipients.clone(),
            size: work.entry.size,
            prefix,
            not_after: self.dot_deadline(id),
        };
        let relay = connection.target().to_string();
        let started = Instant::now();
        let result = connection.send(&message, body).await;
        let transmission = started.elapsed();
        let (results, lost_after_dot) = outcomes_of(&recipients, &result);
        let usable = connection.is_usable();
        self.finish(
            work,
            Some(relay),
            results,
            lost_after_dot,
            setup,
            transmission,
        );
        usable
    }

    /// Applies the lifetime, logs every recipient, and hands the report to the
    /// committer.
    fn finish(
        &self,
        work: Work,
        relay: Option<String>,
        mut results: Vec<RecipientOutcome>,
        lost_after_dot: bool,
        setup: Duration,
        transmission: Duration,
    ) {
        let entry = &work.entry;
        let now = self.queue.clock_now();
        let policy = self.config.policy(&entry.destination());
        let expired = now.0
            >= entry
                .received_at
                .0
                .saturating_add(policy.lifetime.as_millis() as u64);
        for result in results.iter_mut() {
            if result.status == OutcomeStatus::Deferred && expired {
                result.status = OutcomeStatus::Bounced;
                result.reply = format!(
                    "4.4.7 message expired after {} in the queue; last reply: {}",
                    humanize(policy.lifetime),
                    result.reply
                );
            }
        }
        let delay = self
            .config
            .backoff
            .delay(entry.attempts.saturating_add(1), &mut rand::rng());
        let next_attempt_at = if results.is_empty() {
            // Only recipients of other destinations remain: they are due at once.
            now
        } else {
            now.plus_millis(delay.as_millis() as u64)
        };
        let since_accepted = Duration::from_millis(now.0.saturating_sub(entry.received_at.0));
        let queued_for = since_accepted.saturating_sub(setup + transmission);
        if relay.is_some() {
            self.metrics.attempt_took(setup + transmission);
        }
        for result in &results {
            let status = match (result.status, expired) {
                (OutcomeStatus::Delivered, _) => "sent",
                (OutcomeStatus::Deferred, _) => "deferred",
                (OutcomeStatus::Bounced, true) => "expired",
                (OutcomeStatus::Bounced, false) => "bounced",
            };
            self.metrics.attempt(status);
            if result.status == OutcomeStatus::Delivered {
                self.metrics.delivered_after(since_accepted);
            }
            info!(
                queue_id = %entry.id,
                from = %entry.envelope.sender,
                to = %result.recipient,
                relay = relay.as_deref().unwrap_or("none"),
                delay = format_args!("{:.2}", since_accepted.as_secs_f64()),
                delays = format_args!(
                    "{:.2}/{:.2}/{:.2}",
                    queued_for.as_secs_f64(),
                    setup.as_secs_f64(),
                    transmission.as_secs_f64()
                ),
                dsn = dsn_code(&result.reply, result.status),
                status,
                reply = %result.reply,
                token = work.token,
                "delivery_attempt"
            );
        }
        self.report(AttemptReport {
            id: entry.id,
            token: work.token,
            at: now,
            relay,
            results,
            next_attempt_at,
            lost_after_dot,
        });
    }

    /// Reports a change in this node's reachability of `destination` (only a change:
    /// the state already says what this node last reported).
    pub(crate) async fn note_reachability(&self, destination: &str, reachable: bool, detail: &str) {
        let me = self.queue.node_id();
        let known = self
            .queue
            .read_state(|state| {
                state
                    .fleet
                    .destinations
                    .get(destination)
                    .and_then(|d| d.reachability.get(&me).map(|r| r.reachable))
            })
            .ok()
            .flatten();
        if known == Some(reachable) || (known.is_none() && reachable) {
            return;
        }
        if let Err(e) = self
            .queue
            .report_reachability(destination, reachable, detail.to_string())
            .await
        {
            warn!(destination, reachable, cause = %e, "reachability_report_failed");
        }
    }
}

/// The pending recipients of `entry` that belong to `destination`.
pub(crate) fn recipients_for(entry: &QueueEntry, destination: &str) -> Vec<String> {
    entry
        .pending_recipients()
        .filter(|r| destination_of(r) == destination)
        .map(str::to_string)
        .collect()
}

/// Per-recipient outcomes of one `send`, and whether the connection died after the
/// final dot (the message may have been delivered).
pub(crate) fn outcomes_of(
    recipients: &[String],
    result: &Result<SendOutcome, ClientError>,
) -> (Vec<RecipientOutcome>, bool) {
    match result {
        Ok(outcome) => (
            outcome
                .recipients
                .iter()
                .map(|r| RecipientOutcome {
                    recipient: r.recipient.clone(),
                    status: if r.is_delivered() {
                        OutcomeStatus::Delivered
                    } else if r.severity() == Severity::Permanent {
                        OutcomeStatus::Bounced
                    } else {
                        OutcomeStatus::Deferred
                    },
                    reply: r.reply.to_string(),
                })
                .collect(),
            false,
        ),
        Err(error) => {
            let reply = failure_reply(error);
            let status = match crate::client::classify(Err(error)) {
                Severity::Permanent => OutcomeStatus::Bounced,
                Severity::Temporary => OutcomeStatus::Deferred,
            };
            (
                recipients
                    .iter()
                    .map(|recipient| RecipientOutcome {
                        recipient: recipient.clone(),
                        status,
                        reply: reply.clone(),
                    })
                    .collect(),
                error.is_lost_after_dot(),
            )
        }
    }
}

/// The text recorded for a connection-level failure: the remote reply when there was
/// one, else the error.
fn failure_reply(error: &ClientError) -> String {
    match error.reply() {
        Some(reply) => format!("{} (at {})", reply, error.stage().as_str()),
        None => error.to_string(),
    }
}

fn route_reply(error: &RouteError) -> String {
    format!("{} ({error})", error.status())
}

/// The enhanced status code in a reply like `550 5.1.1 ...`, or the class default.
pub(crate) fn dsn_code(reply: &str, status: OutcomeStatus) -> String {
    let enhanced = reply
        .split_whitespace()
        .take(2)
        .find(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_string);
    enhanced.unwrap_or_else(|| match status {
        OutcomeStatus::Delivered => "2.0.0".into(),
        OutcomeStatus::Deferred => "4.0.0".into(),
        OutcomeStatus::Bounced => "5.0.0".into(),
    })
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 86_400 && secs.is_multiple_of(86_400) {
        format!("{} days", secs / 86_400)
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} hours", secs / 3600)
    } else {
        format!("{secs} seconds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_codes_come_from_the_reply_or_the_class() {
        assert_eq!(
            dsn_code("550 5.1.1 no such user", OutcomeStatus::Bounced),
            "5.1.1"
        );
        assert_eq!(dsn_code("250 ok", OutcomeStatus::Delivered), "2.0.0");
        assert_eq!(
            dsn_code("connection refused", OutcomeStatus::Deferred),
            "4.0.0"
        );
        assert_eq!(
            dsn_code("451 4.3.0 later (at mail)", OutcomeStatus::Deferred),
            "4.3.0"
        );
        assert_eq!(
            dsn_code("4.4.7 message expired", OutcomeStatus::Bounced),
            "4.4.7"
        );
    }
}
