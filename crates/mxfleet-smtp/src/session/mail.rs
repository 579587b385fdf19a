//! MAIL FROM: start a transaction. Checks the sequence, the declared SIZE, SMTPUTF8 for
//! non-ASCII addresses, and the sender (the null sender `<>` is always accepted).

use smtp_proto::{MAIL_SMTPUTF8, MailFrom};
use tracing::info;

use super::{Session, SessionEnd, Stop, Transaction};
use crate::metrics::RejectReason;
use crate::reply::Reply;

impl Session {
    pub(super) fn mail(&mut self, from: MailFrom<String>) -> Result<(), Stop> {
        if self.greeting.is_none() {
            return self.error_reply(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"));
        }
        if self.transaction.is_some() {
            return self.error_reply(Reply::new(503, "5.5.1", "Error: nested MAIL command"));
        }
        if self.transactions >= self.config.limits.max_transactions {
            let reply = Reply::new(
                421,
                "4.7.0",
                format!(
                    "{} Error: too many messages in one session",
                    self.config.hostname
                ),
            );
            self.config.metrics.rejected(RejectReason::TooManyMessages);
            return self.close_with(reply, SessionEnd::LimitReached);
        }
        let max = self.config.limits.max_message_size;
        if from.size as u64 > max {
            info!(client = %self.client.addr, declared = from.size, limit = max, "smtp_size_refused");
            self.config.metrics.rejected(RejectReason::MessageTooLarge);
            return self.error_reply(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        if !smtputf8 && !from.address.is_ascii() {
            self.config.metrics.rejected(RejectReason::Smtputf8Required);
            return self.error_reply(Reply::new(
                553,
                "5.6.7",
                "Must declare SMTPUTF8 to send a UTF-8 address",
            ));
        }
        let sender = match self.config.policy.current().check_sender(&from.address) {
            Ok(sender) => sender,
            Err(reply) => {
                info!(client = %self.client.addr, from = %from.address, reply = %reply, "smtp_sender_rejected");
                self.config.metrics.rejected(RejectReason::BadSenderAddress);
                return self.error_reply(reply);
            }
        };
        if let Err(refusal) = self.spam.on_mail(&self.config.hostname) {
            self.config.metrics.rejected(refusal.reason);
            return self.error_reply(refusal.reply);
        }
        self.transaction = Some(Transaction {
            sender,
            smtputf8,
            recipients: Vec::new(),
            spam: Default::default(),
        });
        self.ok(Reply::new(250, "2.1.0", "Ok"))
    }
}
