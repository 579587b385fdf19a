//! EHLO and HELO: check the client's name, reset any transaction, and announce the
//! extensions (EHLO only). HELO is enough to send mail; one of them must come first.

use super::{Greeting, Session, Stop};
use crate::metrics::RejectReason;
use crate::policy::check_helo;
use crate::reply::Reply;

impl Session {
    pub(super) fn ehlo(&mut self, host: String, extended: bool) -> Result<(), Stop> {
        if let Err(reply) = check_helo(&host) {
            self.config.metrics.rejected(RejectReason::InvalidHelo);
            return self.error_reply(reply);
        }
        // RFC 5321 §4.1.4: EHLO/HELO in the middle of a session resets the transaction.
        self.transaction = None;
        self.greeting = Some(Greeting {
            name: host,
            extended,
        });
        let hostname = self.config.hostname.clone();
        if !extended {
            return self.ok(Reply::new(250, "", hostname));
        }
        let mut lines: Vec<std::borrow::Cow<'static, str>> = vec![
            hostname.into(),
            "PIPELINING".into(),
            format!("SIZE {}", self.config.limits.max_message_size).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if !self.config.etrn_networks.is_empty() {
            lines.push("ETRN".into());
        }
        if self.config.tls.is_some() && self.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        // RFC 2034: no enhanced status code on the EHLO reply itself.
        self.ok(Reply {
            code: 250,
            status: "",
            lines,
        })
    }
}
