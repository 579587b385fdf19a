//! Connection-level failures of the SMTP client: everything that is not a reply to one
//! recipient. Each variant names the host (`host[ip]:port`) and, where it matters, the
//! protocol step. Whether a failure is temporary is decided in [`super::classify()`].

use std::fmt;
use std::io;
use std::time::Duration;

use crate::reply::{RemoteReply, Severity};

/// The protocol step a connection was at when something went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Connect,
    Greeting,
    Ehlo,
    Starttls,
    Rset,
    Mail,
    Rcpt,
    /// The DATA command, its `354`, and streaming the content.
    Data,
    /// Waiting for the reply to the final dot.
    Dot,
    Quit,
}

impl Stage {
    /// The lower-case name used in logs and error texts.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "ehlo",
            Stage::Starttls => "starttls",
            Stage::Rset => "rset",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::Dot => "dot",
            Stage::Quit => "quit",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of the connection as a whole. After any of these (except a refused
/// STARTTLS under `Opportunistic`, which never surfaces as an error) the connection is
/// unusable and should be dropped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{host}: connect failed: {source}")]
    Connect {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{host}: {stage}: no reply within {after:?}")]
    Timeout {
        host: String,
        stage: Stage,
        after: Duration,
    },
    #[error("{host}: {stage}: connection error: {source}")]
    Io {
        host: String,
        stage: Stage,
        #[source]
        source: io::Error,
    },
    #[error("{host}: {stage}: connection closed by the server")]
    Closed { host: String, stage: Stage },
    #[error("{host}: {stage}: malformed reply: {detail}")]
    MalformedReply {
        host: String,
        stage: Stage,
        detail: String,
    },
    /// The server refused the session itself: a greeting other than `220`, EHLO and
    /// HELO both refused, STARTTLS refused when TLS is required, or RSET refused. A
    /// `5xx` here still only means "try another host" (RFC 5321 §3.1, Postfix
    /// `smtp_skip_5xx_greeting`), so it is temporary for the message.
    #[error("{host}: {stage}: server refused: {reply}")]
    Rejected {
        host: String,
        stage: Stage,
        reply: RemoteReply,
    },
    #[error("{host}: TLS is required but the server does not offer STARTTLS")]
    StartTlsNotOffered { host: String },
    /// The TLS handshake failed, including certificate verification under `Verify`.
    #[error("{host}: TLS handshake failed: {source}")]
    Tls {
        host: String,
        #[source]
        source: io::Error,
    },
    /// Our own TLS settings are unusable (bad extra root PEM, host not a valid name).
    #[error("{host}: TLS settings: {detail}")]
    TlsConfig { host: String, detail: String },
    /// Reading the message content from local storage failed mid-DATA.
    #[error("{host}: reading the message content: {source}")]
    BodyRead {
        host: String,
        #[source]
        source: io::Error,
    },
    /// The final dot was sent, but no reply came (closed, reset or timed out). The
    /// server may have accepted the message, so a retry may duplicate it (RFC 1047).
    #[error("{host}: lost after the final dot; the message may have been delivered: {source}")]
    LostAfterDot {
        host: String,
        #[source]
        source: Box<ClientError>,
    },
    /// An earlier error left the connection in an unknown state.
    #[error("{host}: connection unusable after an earlier {stage} error")]
    Unusable { host: String, stage: Stage },
    /// The message's `not_after` instant passed before the final dot: the content was
    /// abandoned without its end marker, so the server did not take the message.
    #[error("{host}: delivery window closed before the final dot; message not sent")]
    WindowClosed { host: String },
}

impl ClientError {
    /// Temporary or permanent, as [`super::classify()`] decides.
    pub fn severity(&self) -> Severity {
        super::classify::classify(Err(self))
    }

    /// True when the message may have been delivered although no reply said so.
    pub fn is_lost_after_dot(&self) -> bool {
        matches!(self, ClientError::LostAfterDot { .. })
    }

    /// The server's reply, when the error is a refusal.
    pub fn reply(&self) -> Option<&RemoteReply> {
        match self {
            ClientError::Rejected { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// The step the connection was at.
    pub fn stage(&self) -> Stage {
        match self {
            ClientError::Connect { .. } => Stage::Connect,
            ClientError::Timeout { stage, .. }
            | ClientError::Io { stage, .. }
            | ClientError::Closed { stage, .. }
            | ClientError::MalformedReply { stage, .. }
            | ClientError::Rejected { stage, .. }
            | ClientError::Unusable { stage, .. } => *stage,
            ClientError::StartTlsNotOffered { .. }
            | ClientError::Tls { .. }
            | ClientError::TlsConfig { .. } => Stage::Starttls,
            ClientError::BodyRead { .. } | ClientError::WindowClosed { .. } => Stage::Data,
            ClientError::LostAfterDot { .. } => Stage::Dot,
        }
    }

    /// The host as `host[ip]:port`.
    pub fn host(&self) -> &str {
        match self {
            ClientError::Connect { host, .. }
            | ClientError::Timeout { host, .. }
            | ClientError::Io { host, .. }
            | ClientError::Closed { host, .. }
            | ClientError::MalformedReply { host, .. }
            | ClientError::Rejected { host, .. }
            | ClientError::StartTlsNotOffered { host }
            | ClientError::Tls { host, .. }
            | ClientError::TlsConfig { host, .. }
            | ClientError::BodyRead { host, .. }
            | ClientError::LostAfterDot { host, .. }
            | ClientError::Unusable { host, .. }
            | ClientError::WindowClosed { host } => host,
        }
    }
}
