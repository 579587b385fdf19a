//! The verbs with nothing to decide: RSET, NOOP, QUIT, VRFY (252: we never confirm or
//! deny addresses), EXPN (disabled), HELP.

use super::{Session, SessionEnd, Stop};
use crate::reply::Reply;

impl Session {
    pub(super) fn rset(&mut self) -> Result<(), Stop> {
        self.transaction = None;
        self.ok(Reply::new(250, "2.0.0", "Ok"))
    }

    pub(super) fn noop(&mut self) -> Result<(), Stop> {
        self.ok(Reply::new(250, "2.0.0", "Ok"))
    }

    pub(super) fn quit(&mut self) -> Result<(), Stop> {
        self.close_with(Reply::new(221, "2.0.0", "Bye"), SessionEnd::Quit)
    }

    pub(super) fn vrfy(&mut self) -> Result<(), Stop> {
        // RFC 5321 §3.5.3: 252 when we will accept mail but do not verify.
        self.ok(Reply::new(
            252,
            "2.0.0",
            "Cannot VRFY user, but will accept message and attempt delivery",
        ))
    }

    pub(super) fn expn(&mut self) -> Result<(), Stop> {
        self.ok(Reply::new(502, "5.5.1", "Error: EXPN command is disabled"))
    }

    pub(super) fn help(&mut self) -> Result<(), Stop> {
        self.ok(Reply::new(
            214,
            "2.0.0",
            "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY STARTTLS",
        ))
    }
}
