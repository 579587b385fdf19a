//! RCPT TO: add a recipient. Only relay domains and, where a list is configured, known
//! recipients are accepted; an unknown one is refused now (`550 5.1.1`), never bounced
//! later, so the fleet never sends backscatter. Then the recipient domain's spam checks
//! run (`checks::ClientChecks::on_rcpt`), which log their own refusals.

use smtp_proto::RcptTo;
use tracing::info;

use super::{Session, Stop};
use crate::metrics::RejectReason;
use crate::reply::Reply;

impl Session {
    pub(super) async fn rcpt(&mut self, to: RcptTo<String>) -> Result<(), Stop> {
        let max_recipients = self.config.limits.max_recipients;
        let Some(transaction) = self.transaction.as_ref() else {
            return self.error_reply(Reply::new(503, "5.5.1", "Error: need MAIL command"));
        };
        if !transaction.smtputf8 && !to.address.is_ascii() {
            self.config.metrics.rejected(RejectReason::Smtputf8Required);
            return self.error_reply(Reply::new(
                553,
                "5.6.7",
                "Must declare SMTPUTF8 to send a UTF-8 address",
            ));
        }
        if transaction.recipients.len() >= max_recipients {
            // RFC 5321 §4.5.3.1.10: a temporary failure; the client sends the rest later.
            self.config
                .metrics
                .rejected(RejectReason::TooManyRecipients);
            return self.ok(Reply::new(452, "4.5.3", "Error: too many recipients"));
        }
        let sender = transaction.sender.clone();
        let transaction_checks = transaction.spam.clone();
        match self.config.policy.current().check_recipient(&to.address) {
            Ok(mailbox) => {
                let helo = self
                    .greeting
                    .as_ref()
                    .map(|g| g.name.clone())
                    .unwrap_or_default();
                let checked = self
                    .spam
                    .on_rcpt(
                        &transaction_checks,
                        &self.config.hostname,
                        &helo,
                        sender.as_ref(),
                        &mailbox,
                    )
                    .await;
                if let Err(refusal) = checked {
                    self.config.metrics.rejected(refusal.reason);
                    return self.error_reply(refusal.reply);
                }
                if let Some(transaction) = self.transaction.as_mut()
                    && !transaction.recipients.contains(&mailbox)
                {
                    transaction.recipients.push(mailbox);
                }
                self.ok(Reply::new(250, "2.1.5", "Ok"))
            }
            Err(reply) => {
                info!(
                    client = %self.client.addr,
                    helo = self.greeting.as_ref().map(|g| g.name.as_str()).unwrap_or(""),
                    to = %to.address,
                    reply = %reply,
                    "smtp_recipient_rejected"
                );
                let reason = RejectReason::of_recipient_reply(&reply);
                self.config.metrics.rejected(reason);
                self.error_reply(reply)
            }
        }
    }
}
