//! One mail transaction: RSET if the previous one left state behind, MAIL, RCPT for
//! every recipient, DATA, content, final dot; then which reply decided each recipient.
//!
//! With PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write and the
//! replies are read back in order. Without it, each command waits for its reply, and
//! the transaction stops early when MAIL fails or no RCPT is accepted.
//!
//! Which reply decides a recipient: the MAIL reply when MAIL failed (for all); its own
//! RCPT reply when that was not 2xx; for accepted recipients the DATA reply when DATA
//! was refused, else the reply to the final dot.
//!
//! A pipelined DATA after MAIL failed or every RCPT failed gets an error reply, which is
//! read and ignored. Once every recipient's fate is settled, a lost connection while
//! reading such leftover replies is not an error for this message; it only makes the
//! connection unusable for the next one.
//!
//! A recipient check (address verification) is the envelope without a message: MAIL
//! and one RCPT, step by step even under PIPELINING (two round trips, and a refused MAIL
//! leaves no stray RCPT reply to read), and never DATA. It leaves the transaction open;
//! RSET closes it before the next one, or QUIT ends the session.

use tokio::io::AsyncRead;
use tracing::{debug, info};

use super::mail::{check_mail_command, mail_command, rcpt_command, refuse_before_mail};
use super::{
    ClientError, OutgoingMessage, RecipientCheck, RecipientResult, SendOutcome, SmtpConnection,
    Stage,
};
use crate::reply::RemoteReply;

/// The replies of the envelope phase. `rcpts[i]` is `None` when RCPT was not sent.
struct EnvelopeReplies {
    mail: RemoteReply,
    rcpts: Vec<Option<RemoteReply>>,
    /// `None` when DATA was not sent, or its reply was lost after everything was
    /// settled.
    data: Option<RemoteReply>,
}

fn is_success(reply: &RemoteReply) -> bool {
    (200..300).contains(&reply.code)
}

impl SmtpConnection {
    pub(super) async fn run_transaction(
        &mut self,
        message: &OutgoingMessage,
        body: impl AsyncRead + Unpin,
    ) -> Result<SendOutcome, ClientError> {
        if let Some(reply) = refuse_before_mail(&self.capabilities, message, &self.host) {
            info!(host = %self.host, %reply, "smtp_client_refused_before_mail");
            return Ok(outcome_for_all(message, &reply));
        }
        if self.needs_reset {
            self.reset().await?;
        }
        let envelope = if self.capabilities.pipelining {
            self.pipelined_envelope(message).await?
        } else {
            self.stepwise_envelope(message).await?
        };
        if !is_success(&envelope.mail) {
            info!(host = %self.host, reply = %envelope.mail, "smtp_client_mail_rejected");
            self.abandon_stray_data(envelope.data.as_ref()).await;
            return Ok(outcome_for_all(message, &envelope.mail));
        }
        // MAIL opened a transaction; only a final-dot reply closes it cleanly.
        self.needs_reset = true;
        for (recipient, reply) in message.recipients.iter().zip(&envelope.rcpts) {
            if let Some(reply) = reply.as_ref().filter(|r| !is_success(r)) {
                info!(host = %self.host, %recipient, %reply, "smtp_client_rcpt_rejected");
            }
        }
        let any_accepted = envelope.rcpts.iter().flatten().any(is_success);
        let deciding = if !any_accepted {
            self.abandon_stray_data(envelope.data.as_ref()).await;
            None
        } else {
            match envelope.data.as_ref() {
                Some(data) if data.code == 354 => {
                    self.send_content(&message.prefix, body, message.not_after.as_ref())
                        .await?;
                    let reply = self.read_final_reply().await?;
                    self.needs_reset = false;
                    Some(reply)
                }
                Some(refused) => {
                    info!(host = %self.host, reply = %refused, "smtp_client_data_rejected");
                    Some(refused.clone())
                }
                None => None,
            }
        };
        let outcome = settle(message, &envelope, deciding.as_ref());
        info!(
            host = %self.host,
            accepted = outcome.delivered().count(),
            recipients = message.recipients.len(),
            reply = %deciding.as_ref().map(ToString::to_string).unwrap_or_default(),
            tls = self.tls.is_some(),
            "smtp_client_transaction_done"
        );
        Ok(outcome)
    }

    pub(super) async fn run_recipient_check(
        &mut self,
        sender: &str,
        recipient: &str,
    ) -> Result<RecipientCheck, ClientError> {
        let command = match check_mail_command(&self.capabilities, sender, recipient, &self.host) {
            Ok(command) => command,
            Err(reply) => {
                info!(host = %self.host, %reply, "smtp_client_refused_before_mail");
                return Ok(RecipientCheck {
                    mail: reply,
                    rcpt: None,
                });
            }
        };
        if self.needs_reset {
            self.reset().await?;
        }
        self.write_all(command.as_bytes(), Stage::Mail, self.timeouts.mail)
            .await?;
        let mail = self.read_reply(Stage::Mail, self.timeouts.mail).await?;
        if !is_success(&mail) {
            return Ok(RecipientCheck { mail, rcpt: None });
        }
        // No final dot will close this transaction.
        self.needs_reset = true;
        let command = rcpt_command(recipient);
        self.write_all(command.as_bytes(), Stage::Rcpt, self.timeouts.rcpt)
            .await?;
        let rcpt = self.read_reply(Stage::Rcpt, self.timeouts.rcpt).await?;
        debug!(host = %self.host, %recipient, reply = %rcpt, "smtp_client_recipient_checked");
        Ok(RecipientCheck {
            mail,
            rcpt: Some(rcpt),
        })
    }

    async fn reset(&mut self) -> Result<(), ClientError> {
        let limit = self.timeouts.rset;
        self.write_all(b"RSET\r\n", Stage::Rset, limit).await?;
        let reply = self.read_reply(Stage::Rset, limit).await?;
        if !is_success(&reply) {
            return Err(ClientError::Rejected {
                host: self.host.clone(),
                stage: Stage::Rset,
                reply,
            });
        }
        self.needs_reset = false;
        Ok(())
    }

    async fn pipelined_envelope(
        &mut self,
        message: &OutgoingMessage,
    ) -> Result<EnvelopeReplies, ClientError> {
        let mut commands = mail_command(&self.capabilities, message);
        for recipient in &message.recipients {
            commands.push_str(&rcpt_command(recipient));
        }
        commands.push_str("DATA\r\n");
        self.write_all(commands.as_bytes(), Stage::Mail, self.timeouts.mail)
            .await?;

        let mail = self.read_reply(Stage::Mail, self.timeouts.mail).await?;
        let mut settled = !is_success(&mail);
        let mut rcpts = Vec::with_capacity(message.recipients.len());
        for _ in &message.recipients {
            let reply = self
                .read_leftover_reply(Stage::Rcpt, self.timeouts.rcpt, settled)
                .await?;
            let Some(reply) = reply else {
                break;
            };
            rcpts.push(Some(reply));
        }
        rcpts.resize(message.recipients.len(), None);
        settled |= !rcpts.iter().flatten().any(is_success);
        let data = if self.failed_at.is_some() {
            None
        } else {
            self.read_leftover_reply(Stage::Data, self.timeouts.data_initiation, settled)
                .await?
        };
        Ok(EnvelopeReplies { mail, rcpts, data })
    }

    async fn stepwise_envelope(
        &mut self,
        message: &OutgoingMessage,
    ) -> Result<EnvelopeReplies, ClientError> {
        let command = mail_command(&self.capabilities, message);
        self.write_all(command.as_bytes(), Stage::Mail, self.timeouts.mail)
            .await?;
        let mail = self.read_reply(Stage::Mail, self.timeouts.mail).await?;
        let mut rcpts = vec![None; message.recipients.len()];
        if !is_success(&mail) {
            return Ok(EnvelopeReplies {
                mail,
                rcpts,
                data: None,
            });
        }
        for (slot, recipient) in rcpts.iter_mut().zip(&message.recipients) {
            let command = rcpt_command(recipient);
            self.write_all(command.as_bytes(), Stage::Rcpt, self.timeouts.rcpt)
                .await?;
            *slot = Some(self.read_reply(Stage::Rcpt, self.timeouts.rcpt).await?);
        }
        let data = if rcpts.iter().flatten().any(is_success) {
            let limit = self.timeouts.data_initiation;
            self.write_all(b"DATA\r\n", Stage::Data, limit).await?;
            Some(self.read_reply(Stage::Data, limit).await?)
        } else {
            None
        };
        Ok(EnvelopeReplies { mail, rcpts, data })
    }

    /// Reads a reply; when `settled`, a failure only retires the connection.
    async fn read_leftover_reply(
        &mut self,
        stage: Stage,
        limit: std::time::Duration,
        settled: bool,
    ) -> Result<Option<RemoteReply>, ClientError> {
        match self.read_reply(stage, limit).await {
            Ok(reply) => Ok(Some(reply)),
            Err(error) if settled => {
                debug!(host = %self.host, cause = %error, "smtp_client_leftover_reply_lost");
                self.failed_at = Some(stage);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// A server that answered `354` although nothing can be delivered gets an empty
    /// message end; its reply is read and ignored, and RSET follows before the next
    /// transaction.
    async fn abandon_stray_data(&mut self, data: Option<&RemoteReply>) {
        if data.is_none_or(|reply| reply.code != 354) || self.failed_at.is_some() {
            return;
        }
        info!(host = %self.host, "smtp_client_abandoning_stray_data");
        self.needs_reset = true;
        let ended = self
            .write_all(b".\r\n", Stage::Data, self.timeouts.data_block)
            .await;
        let replied = match ended {
            Ok(()) => self
                .read_reply(Stage::Dot, self.timeouts.data_termination)
                .await
                .map(drop),
            Err(error) => Err(error),
        };
        if let Err(error) = replied {
            debug!(host = %self.host, cause = %error, "smtp_client_leftover_reply_lost");
            self.failed_at = Some(Stage::Data);
        }
    }
}

fn outcome_for_all(message: &OutgoingMessage, reply: &RemoteReply) -> SendOutcome {
    SendOutcome {
        recipients: message
            .recipients
            .iter()
            .map(|recipient| RecipientResult {
                recipient: recipient.clone(),
                reply: reply.clone(),
            })
            .collect(),
    }
}

/// Each recipient's deciding reply: a rejecting RCPT reply, else `deciding` (the DATA
/// or final-dot reply). `deciding` is `None` only when no recipient was accepted.
fn settle(
    message: &OutgoingMessage,
    envelope: &EnvelopeReplies,
    deciding: Option<&RemoteReply>,
) -> SendOutcome {
    // Only reachable if a server stops answering in the middle of a settled
    // transaction; temporary, so the recipient is tried again.
    let unanswered = RemoteReply {
        code: 451,
        status: Some("4.4.2".into()),
        text: "no reply before the connection was lost".into(),
    };
    let recipients = message
        .recipients
        .iter()
        .zip(&envelope.rcpts)
        .map(|(recipient, rcpt)| {
            let reply = match rcpt {
                Some(rcpt) if !is_success(rcpt) => rcpt.clone(),
                Some(_) => deciding.unwrap_or(&unanswered).clone(),
                None => unanswered.clone(),
            };
            RecipientResult {
                recipient: recipient.clone(),
                reply,
            }
        })
        .collect();
    SendOutcome { recipients }
}
