//! The outbound SMTP client: one connection to one next-hop host, carrying one or more
//! messages, with a result per recipient.
//!
//! Main types:
//! - [`SmtpConnection`]: `connect` (TCP, greeting, EHLO/HELO, STARTTLS per policy, EHLO
//!   again), `send` (one transaction), `check_recipient` (MAIL and RCPT, never DATA),
//!   `quit`.
//! - [`ClientOptions`], [`TlsPolicy`], [`ClientTimeouts`]: how to behave.
//! - [`OutgoingMessage`] in, [`SendOutcome`] out: one [`RecipientResult`] per
//!   recipient, in the message's order, each with the reply that decided it.
//! - [`ClientError`]: connection-level failures; [`classify()`] says which outcome is
//!   temporary and which permanent, in one place.
//!
//! Layout, in protocol order:
//! - `options`: client settings and RFC 5321 §4.5.3.2 timeouts.
//! - `connection`: TCP connect and the byte-moving shell with deadlines.
//! - `response`: sans-IO reply framing and parsing (smtp-proto), capabilities.
//! - `ehlo`: greeting, EHLO with HELO fallback.
//! - `tls`: STARTTLS and the rustls configs per policy.
//! - `mail`: sans-IO checks before MAIL (SIZE, SMTPUTF8) and the command lines.
//! - `transaction`: MAIL/RCPT/DATA, pipelined or step by step, and who got which reply;
//!   the recipient check ([`RecipientCheck`]).
//! - `body`: sans-IO dot-stuffing; `data`: streaming the content and the final dot.
//! - `error`, `classify`: failures and their severity.
//!
//! Lifecycle: a connection owns its stream (boxed, so STARTTLS can swap plaintext for
//! TLS) and the bytes read but not yet consumed as replies. Any [`ClientError`] from
//! `send` leaves it unusable (`failed_at` is set), and later sends fail at once with
//! [`ClientError::Unusable`]; the caller drops it and connects again.

mod body;
mod classify;
mod connection;
mod data;
mod ehlo;
mod error;
mod mail;
mod options;
mod response;
mod tls;
mod transaction;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

pub use classify::classify;
pub use connection::ClientStream;
pub use error::{ClientError, Stage};
pub use options::{ClientOptions, ClientTimeouts, TlsPolicy};
pub use response::Capabilities;
pub use tls::TlsInfo;

use self::connection::{tcp_connect, within};
use self::response::ReplyBuffer;
use self::tls::StartTlsOutcome;
use crate::reply::{RemoteReply, Severity};
use crate::target::ConnectTarget;

/// One message to send: the envelope, and what goes before the stored content.
#[derive(Clone, Debug)]
pub struct OutgoingMessage {
    /// The reverse path without angle brackets; empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<String>,
    /// Size of the stored content, without `prefix`.
    pub size: u64,
    /// Header lines sent before the content (e.g. our `Received:`), CRLF-terminated;
    /// may be empty.
    pub prefix: Vec<u8>,
    /// The final dot is never written at or after the instant this holds when the dot
    /// is due (the end of the sender's delivery lease, which renewals move while the
    /// content streams); the transaction is abandoned instead
    /// ([`ClientError::WindowClosed`]). `None`: no limit.
    pub not_after: Option<tokio::sync::watch::Receiver<tokio::time::Instant>>,
}

/// What happened to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    pub recipient: String,
    /// The reply that decided it: a refusing MAIL or RCPT reply, the DATA reply when
    /// DATA was refused, or the reply to the final dot. May be synthesized (SIZE).
    pub reply: RemoteReply,
}

impl RecipientResult {
    /// The server took responsibility for this recipient.
    pub fn is_delivered(&self) -> bool {
        (200..300).contains(&self.reply.code)
    }

    /// For a recipient not delivered: retry later, or give up.
    pub fn severity(&self) -> Severity {
        classify(Ok(&self.reply))
    }
}

/// The result of one transaction, one entry per recipient in the message's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOutcome {
    pub recipients: Vec<RecipientResult>,
}

impl SendOutcome {
    pub fn delivered(&self) -> impl Iterator<Item = &RecipientResult> {
        self.recipients.iter().filter(|r| r.is_delivered())
    }

    pub fn failed(&self) -> impl Iterator<Item = &RecipientResult> {
        self.recipients.iter().filter(|r| !r.is_delivered())
    }
}

/// The replies to a recipient check: MAIL, and RCPT when MAIL was accepted. MAIL may be
/// synthesized (`553 5.6.7`: non-ASCII address, no SMTPUTF8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientCheck {
    pub mail: RemoteReply,
    /// `None` when MAIL was refused and RCPT not sent.
    pub rcpt: Option<RemoteReply>,
}

/// An open SMTP session with one host, past EHLO (and STARTTLS if it happened).
pub struct SmtpConnection {
    target: ConnectTarget,
    /// `host[ip]:port`, for logs and errors.
    host: String,
    helo_name: String,
    timeouts: ClientTimeouts,
    /// `None` only while STARTTLS swaps the stream, or after that failed.
    stream: Option<Box<dyn ClientStream>>,
    replies: ReplyBuffer,
    /// From the latest EHLO; replaced after STARTTLS.
    capabilities: Capabilities,
    tls: Option<TlsInfo>,
    /// A transaction was opened and not closed by a final-dot reply; RSET goes first
    /// in the next `send`.
    needs_reset: bool,
    /// Set by the first error that leaves the session in an unknown state.
    failed_at: Option<Stage>,
}

impl SmtpConnection {
    /// Connects over TCP and opens the session.
    pub async fn connect(
        target: &ConnectTarget,
        options: &ClientOptions,
    ) -> Result<SmtpConnection, ClientError> {
        let host = target.to_string();
        let stream = match within(options.timeouts.connect, tcp_connect(target, options)).await {
            Some(Ok(stream)) => stream,
            Some(Err(source)) => {
                info!(%host, cause = %source, "smtp_client_connect_failed");
                return Err(ClientError::Connect { host, source });
            }
            None => {
                info!(%host, timeout = ?options.timeouts.connect, "smtp_client_connect_failed");
                return Err(ClientError::Timeout {
                    host,
                    stage: Stage::Connect,
                    after: options.timeouts.connect,
                });
            }
        };
        Self::open(stream, target, options).await
    }

    /// Opens the session over a stream that is already connected to `target` (for
    /// tests, proxies, or connections set up elsewhere).
    pub async fn open<S>(
        stream: S,
        target: &ConnectTarget,
        options: &ClientOptions,
    ) -> Result<SmtpConnection, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut connection = SmtpConnection {
            target: target.clone(),
            host: target.to_string(),
            helo_name: options.helo_name.clone(),
            timeouts: options.timeouts,
            stream: Some(Box::new(stream)),
            replies: ReplyBuffer::default(),
            capabilities: Capabilities::default(),
            tls: None,
            needs_reset: false,
            failed_at: None,
        };
        connection.read_greeting().await?;
        connection.hello().await?;
        if let StartTlsOutcome::Established = connection.starttls(&options.tls).await? {
            connection.hello().await?;
        }
        let caps = &connection.capabilities;
        info!(
            host = %connection.host,
            tls = connection.tls.is_some(),
            esmtp = caps.extended,
            pipelining = caps.pipelining,
            size_limit = caps.size_limit.unwrap_or(0),
            "smtp_client_connected"
        );
        Ok(connection)
    }

    /// Sends one message; see [`SendOutcome`] for what each recipient gets. An `Err`
    /// means no recipient got a reply that decides it, and the connection is done.
    pub async fn send(
        &mut self,
        message: &OutgoingMessage,
        body: impl AsyncRead + Unpin,
    ) -> Result<SendOutcome, ClientError> {
        if let Some(stage) = self.failed_at {
            return Err(ClientError::Unusable {
                host: self.host.clone(),
                stage,
            });
        }
        let result = self.run_transaction(message, body).await;
        if let Err(error) = &result {
            self.failed_at = Some(error.stage());
        }
        result
    }

    /// Asks whether the server would take mail from `sender` (empty: the null sender)
    /// for `recipient`: MAIL and RCPT, never DATA (Postfix's address verification,
    /// Exim's callout). The transaction stays open: a later `send` resets it first, and
    /// `quit` ends it. An `Err` leaves the connection unusable, as for `send`.
    pub async fn check_recipient(
        &mut self,
        sender: &str,
        recipient: &str,
    ) -> Result<RecipientCheck, ClientError> {
        if let Some(stage) = self.failed_at {
            return Err(ClientError::Unusable {
                host: self.host.clone(),
                stage,
            });
        }
        let result = self.run_recipient_check(sender, recipient).await;
        if let Err(error) = &result {
            self.failed_at = Some(error.stage());
        }
        result
    }

    /// Says QUIT and closes; errors are ignored, since nothing is left to learn.
    pub async fn quit(mut self) {
        let limit = self.timeouts.quit;
        if self.failed_at.is_none()
            && self
                .write_all(b"QUIT\r\n", Stage::Quit, limit)
                .await
                .is_ok()
        {
            let _ = self.read_reply(Stage::Quit, limit).await;
        }
        if let Some(mut stream) = self.stream.take() {
            let _ = within(limit, tokio::io::AsyncWriteExt::shutdown(&mut stream)).await;
        }
        debug!(host = %self.host, "smtp_client_closed");
    }

    /// What the server announced in its latest EHLO.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// What STARTTLS negotiated; `None` in plaintext.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    pub fn target(&self) -> &ConnectTarget {
        &self.target
    }

    /// False once an error has left the session in an unknown state.
    pub fn is_usable(&self) -> bool {
        self.failed_at.is_none()
    }
}
