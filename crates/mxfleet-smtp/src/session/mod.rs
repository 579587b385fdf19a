//! One SMTP session, from banner to QUIT, over any stream.
//!
//! The session owns the stream (boxed, so STARTTLS can swap plaintext for TLS), an
//! input buffer of bytes read but not yet used, and an output buffer of replies not yet
//! sent. Replies are flushed only when the input holds no further complete command,
//! which is what makes PIPELINING work (RFC 2920) without a round trip per command.
//!
//! Lifecycle: `run` sends the banner and loops: take the next command line, dispatch
//! it to its verb (one file each), repeat. It ends on QUIT, EOF, a timeout
//! (`421 4.4.2`), too many errors (`421 4.7.0`), or shutdown while idle
//! (`421 4.3.2`); a transaction in flight when shutdown starts is finished first.
//!
//! Verbs: `ehlo` (EHLO/HELO), `mail`, `rcpt`, `data`, `starttls`, and `simple`
//! (RSET, NOOP, QUIT, VRFY, EXPN, HELP).

mod data;
mod ehlo;
mod etrn;
mod mail;
mod rcpt;
mod simple;
mod starttls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::checks::{ClientChecks, TransactionChecks};
use crate::config::SessionConfig;
use crate::intake::MessageIntake;
use crate::policy::Mailbox;
use crate::reply::Reply;

/// Any stream a session can run over.
pub trait SessionStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> SessionStream for T {}

/// Who is on the other end.
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo {
    pub addr: SocketAddr,
}

/// What EHLO/HELO told us.
#[derive(Clone, Debug)]
struct Greeting {
    name: String,
    extended: bool,
}

/// The mail transaction between MAIL and the end of DATA.
#[derive(Clone, Debug, Default)]
struct Transaction {
    /// `None` for the null sender `<>`.
    sender: Option<Mailbox>,
    smtputf8: bool,
    recipients: Vec<Mailbox>,
    /// What the spam checks learnt about this sender (DNS answers, SPF).
    spam: Arc<TransactionChecks>,
}

/// How the session ended, for the connection log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    Quit,
    ClientClosed,
    Timeout,
    TooManyErrors,
    LimitReached,
    Shutdown,
    TlsFailed,
    IoError,
}

/// Why the dispatch loop must stop.
enum Stop {
    Ended(SessionEnd),
}

const READ_CHUNK: usize = 64 * 1024;

pub(crate) struct Session {
    io: Option<Box<dyn SessionStream>>,
    input: Vec<u8>,
    output: Vec<u8>,
    config: Arc<SessionConfig>,
    intake: Arc<dyn MessageIntake>,
    shutdown: CancellationToken,
    client: ClientInfo,
    /// The spam checks' view of this client, for the whole session.
    spam: ClientChecks,
    greeting: Option<Greeting>,
    transaction: Option<Transaction>,
    /// "TLSv1.3 TLS13_AES_256_GCM_SHA384" once STARTTLS completed.
    tls: Option<String>,
    errors: u32,
    commands: u32,
    transactions: u32,
}

/// Runs one session to its end.
pub async fn run_session<S: SessionStream + 'static>(
    stream: S,
    client: ClientInfo,
    config: Arc<SessionConfig>,
    intake: Arc<dyn MessageIntake>,
    shutdown: CancellationToken,
) -> SessionEnd {
    let metrics = config.metrics.clone();
    let _active = metrics.session_started();
    let spam = config.spam.client(client.addr.ip(), metrics.clone());
    let mut session = Session {
        io: Some(Box::new(stream)),
        input: Vec::new(),
        output: Vec::new(),
        config,
        intake,
        shutdown,
        client,
        spam,
        greeting: None,
        transaction: None,
        tls: None,
        errors: 0,
        commands: 0,
        transactions: 0,
    };
    let end = session.run().await;
    metrics.session_ended(end);
    info!(client = %client.addr, end = ?end, "smtp_session_closed");
    end
}

impl Session {
    async fn run(&mut self) -> SessionEnd {
        if let Err(Stop::Ended(end)) = self.greet().await {
            let _ = self.flush().await;
            if let Some(io) = self.io.as_mut() {
                let _ = io.shutdown().await;
            }
            return end;
        }
        loop {
            match self.step().await {
                Ok(()) => {}
                Err(Stop::Ended(end)) => {
                    let _ = self.flush().await;
                    if let Some(io) = self.io.as_mut() {
                        let _ = io.shutdown().await;
                    }
                    return end;
                }
            }
        }
    }

    /// The banner, after the connection rate limits; with a pregreet test when
    /// `greet_wait` is set: the first banner line goes out, and a client that talks
    /// before the last one is refused (postscreen's pregreet test; real MTAs wait for
    /// the whole banner, much spamware does not).
    async fn greet(&mut self) -> Result<(), Stop> {
        let hostname = self.config.hostname.clone();
        if let Err(refusal) = self.spam.on_connect(&hostname) {
            self.config.metrics.rejected(refusal.reason);
            return self.close_with(refusal.reply, SessionEnd::LimitReached);
        }
        let wait = self.spam.greet_wait();
        if !wait.is_zero() {
            self.output
                .extend_from_slice(format!("220-{hostname} ESMTP mxfleet\r\n").as_bytes());
            self.flush().await?;
            let idle_limit = self.config.limits.command_timeout;
            if let Ok(read) = tokio::time::timeout(wait, self.read_more(idle_limit)).await {
                read?;
                info!(client = %self.client.addr, bytes = self.input.len(), "smtp_pregreet");
                self.config
                    .metrics
                    .rejected(crate::metrics::RejectReason::Pregreet);
                let reply = Reply::new(554, "5.5.1", "Error: talked before the banner");
                return self.close_with(reply, SessionEnd::LimitReached);
            }
        }
        let banner = Reply::new(220, "", format!("{hostname} ESMTP mxfleet"));
        self.queue_reply(&banner);
        Ok(())
    }

    /// Reads and handles one command.
    async fn step(&mut self) -> Result<(), Stop> {
        let line = self.next_line().await?;
        self.commands += 1;
        if self.commands > self.config.limits.max_commands {
            return self.close_with(
                Reply::new(
                    421,
                    "4.7.0",
                    format!("{} Error: too many commands", self.config.hostname),
                ),
                SessionEnd::LimitReached,
            );
        }
        let Some(line) = line else {
            let reply = Reply::new(500, "5.5.2", "Error: line too long");
            return self.error_reply(reply);
        };
        let parsed = Request::parse(&mut line.iter()).map(|r| r.into_owned());
        match parsed {
            Ok(request) => self.dispatch(request).await,
            Err(error) => {
                debug!(client = %self.client.addr, ?error, "smtp_command_unparsable");
                let reply = match error {
                    ParseError::UnknownCommand | ParseError::NeedsMoreData { .. } => {
                        Reply::new(500, "5.5.2", "Error: command not recognized")
                    }
                    ParseError::InvalidSenderAddress => {
                        Reply::new(501, "5.1.7", "Bad sender address syntax")
                    }
                    ParseError::InvalidRecipientAddress => {
                        Reply::new(501, "5.1.3", "Bad recipient address syntax")
                    }
                    ParseError::SyntaxError { syntax } => {
                        Reply::new(501, "5.5.4", format!("Syntax: {syntax}"))
                    }
                    ParseError::InvalidParameter { param } => {
                        Reply::new(501, "5.5.4", format!("Bad {param} parameter syntax"))
                    }
                    ParseError::UnsupportedParameter { param } => {
                        Reply::new(555, "5.5.4", format!("Unsupported option: {param}"))
                    }
                    ParseError::ResponseTooLong | ParseError::InvalidResponse { .. } => {
                        Reply::new(500, "5.5.2", "Error: line too long")
                    }
                };
                self.error_reply(reply)
            }
        }
    }

    async fn dispatch(&mut self, request: Request<String>) -> Result<(), Stop> {
        match request {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::Lhlo { .. } => {
                self.error_reply(Reply::new(500, "5.5.2", "Error: command not recognized"))
            }
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to).await,
            Request::Data => self.data().await,
            Request::StartTls => self.starttls().await,
            Request::Rset => self.rset(),
            Request::Noop { .. } => self.noop(),
            Request::Quit => self.quit(),
            Request::Vrfy { .. } => self.vrfy(),
            Request::Expn { .. } => self.expn(),
            Request::Help { .. } => self.help(),
            Request::Etrn { name } => self.etrn(name).await,
            Request::Bdat { .. }
            | Request::Auth { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                self.error_reply(Reply::new(502, "5.5.1", "Error: command not implemented"))
            }
        }
    }

    /// Queues a successful reply.
    fn ok(&mut self, reply: Reply) -> Result<(), Stop> {
        self.queue_reply(&reply);
        Ok(())
    }

    /// Queues an error reply and counts it; too many errors end the session.
    fn error_reply(&mut self, reply: Reply) -> Result<(), Stop> {
        self.errors += 1;
        debug!(client = %self.client.addr, reply = %reply, errors = self.errors, "smtp_error_reply");
        self.queue_reply(&reply);
        if self.errors >= self.config.limits.max_errors {
            info!(client = %self.client.addr, errors = self.errors, "smtp_too_many_errors");
            return self.close_with(
                Reply::new(
                    421,
                    "4.7.0",
                    format!("{} Error: too many errors", self.config.hostname),
                ),
                SessionEnd::TooManyErrors,
            );
        }
        Ok(())
    }

    fn close_with(&mut self, reply: Reply, end: SessionEnd) -> Result<(), Stop> {
        self.queue_reply(&reply);
        Err(Stop::Ended(end))
    }

    fn queue_reply(&mut self, reply: &Reply) {
        self.config.metrics.reply_sent(reply);
        self.output.extend_from_slice(reply.to_wire().as_bytes());
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.output.is_empty() {
            return Ok(());
        }
        let Some(io) = self.io.as_mut() else {
            return Err(Stop::Ended(SessionEnd::IoError));
        };
        let written = async {
            io.write_all(&self.output).await?;
            io.flush().await
        };
        match tokio::time::timeout(self.config.limits.command_timeout, written).await {
            Ok(Ok(())) => {
                self.output.clear();
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Ended(SessionEnd::IoError)),
            Err(_) => Err(Stop::Ended(SessionEnd::Timeout)),
        }
    }

    /// The next command line (CRLF or LF terminated), or `None` when it was longer than
    /// the limit (the excess is discarded up to the next line end). Flushes pending
    /// replies before waiting for the network; answers 421 on timeout and on shutdown
    /// while idle.
    async fn next_line(&mut self) -> Result<Option<Vec<u8>>, Stop> {
        let max = self.config.limits.max_line_length;
        let mut discarding = false;
        loop {
            if let Some(end) = self.input.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=end).collect();
                if discarding || line.len() > max {
                    return Ok(None);
                }
                return Ok(Some(line));
            }
            if self.input.len() > max {
                // Too long already: drop what we have and skip to the next line end.
                self.input.clear();
                discarding = true;
            }
            self.flush().await?;
            let idle = self.transaction.is_none();
            let timeout = self.config.limits.command_timeout;
            let shutdown = self.shutdown.clone();
            let read = tokio::select! {
                result = self.read_more(timeout) => Some(result),
                _ = shutdown.cancelled(), if idle => None,
            };
            match read {
                Some(result) => result?,
                None => {
                    info!(client = %self.client.addr, "smtp_session_shutdown");
                    let reply = Reply::new(
                        421,
                        "4.3.2",
                        format!("{} Service shutting down", self.config.hostname),
                    );
                    return self.close_with(reply, SessionEnd::Shutdown).map(|()| None);
                }
            }
        }
    }

    /// Reads at least one more byte into `input`, within `timeout`.
    async fn read_more(&mut self, timeout: Duration) -> Result<(), Stop> {
        let Some(io) = self.io.as_mut() else {
            return Err(Stop::Ended(SessionEnd::IoError));
        };
        let mut chunk = vec![0u8; READ_CHUNK];
        match tokio::time::timeout(timeout, io.read(&mut chunk)).await {
            Ok(Ok(0)) => Err(Stop::Ended(SessionEnd::ClientClosed)),
            Ok(Ok(n)) => {
                self.input.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Ended(SessionEnd::IoError)),
            Err(_) => {
                info!(client = %self.client.addr, "smtp_timeout");
                self.close_with(
                    Reply::new(
                        421,
                        "4.4.2",
                        format!("{} Error: timeout exceeded", self.config.hostname),
                    ),
                    SessionEnd::Timeout,
                )
            }
        }
    }
}
