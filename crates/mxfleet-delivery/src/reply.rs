//! A reply from a remote SMTP server, and its classification as temporary or
//! permanent.

use std::fmt;

/// Whether a failure is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Try again later (4xx, connection and DNS trouble, TLS trouble under
    /// opportunistic TLS).
    Temporary,
    /// Give up and return the message (5xx, NXDOMAIN, null MX).
    Permanent,
}

/// One reply as a remote server sent it (continuation lines joined with a space).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteReply {
    pub code: u16,
    /// The RFC 3463 enhanced status code, when the server sent one, e.g. `"5.1.1"`.
    pub status: Option<String>,
    pub text: String,
}

impl RemoteReply {
    /// True for 2xx and 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Temporary for 4xx, permanent for 5xx; positive replies are not failures and
    /// are reported as temporary only so that the function is total.
    pub fn severity(&self) -> Severity {
        if self.code >= 500 {
            Severity::Permanent
        } else {
            Severity::Temporary
        }
    }
}

impl fmt::Display for RemoteReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            Some(status) => write!(f, "{} {} {}", self.code, status, self.text),
            None => write!(f, "{} {}", self.code, self.text),
        }
    }
}
