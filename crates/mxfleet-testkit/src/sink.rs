//! `SinkMx`: a small scriptable SMTP server that plays the primary MX in tests.
//!
//! It listens on loopback, speaks enough ESMTP for a sending MTA (EHLO/HELO,
//! PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8, optional STARTTLS, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT), and records every message it accepts. How it answers
//! is a [`Behavior`] that tests may change at any time; each session reads the current
//! one at every decision.
//!
//! Main types:
//! - [`SinkMx`]: start (optionally with TLS, via [`SinkBuilder`]), `stop` (the primary
//!   goes dark: listener closed, open sessions dropped), `restart` on the same port.
//! - [`Behavior`] and [`DataEnd`]: the script.
//! - [`SinkMessage`]: one accepted message, content dot-unstuffed.
//!
//! Lifecycle: each start creates one generation: a `CancellationToken` and a
//! `TaskTracker` holding the accept loop and every session. `stop` cancels the token
//! and waits for the tracker, so when it returns no socket of that generation is open.
//! Recorded messages and counters live in `Shared` and survive restarts.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// Decides the reply to the final dot from the message received.
pub type DataEndFn = Arc<dyn Fn(&SinkMessage) -> String + Send + Sync>;

/// What happens after the final dot.
#[derive(Clone, Default)]
pub enum DataEnd {
    /// `250 2.0.0 Ok: queued`.
    #[default]
    Accept,
    /// This reply line (e.g. `"554 5.7.1 rejected"`); recorded only if 2xx.
    Reply(String),
    /// Read the whole content, then close without a reply.
    Drop,
    /// Wait, then accept (the message is recorded before the wait ends).
    Delay(Duration),
    /// Full control: a reply line computed from the message.
    Decide(DataEndFn),
}

impl fmt::Debug for DataEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataEnd::Accept => f.write_str("Accept"),
            DataEnd::Reply(reply) => write!(f, "Reply({reply:?})"),
            DataEnd::Drop => f.write_str("Drop"),
            DataEnd::Delay(delay) => write!(f, "Delay({delay:?})"),
            DataEnd::Decide(_) => f.write_str("Decide(..)"),
        }
    }
}

/// How the sink answers. Reply lines are given without CRLF, e.g.
/// `"550 5.1.1 no such user"`; a reply starting with `421` also closes the session.
#[derive(Clone, Debug, Default)]
pub struct Behavior {
    /// Replaces the `220` greeting; anything but 2xx is followed by closing.
    pub greeting: Option<String>,
    /// Wait this long before the greeting.
    pub greeting_delay: Duration,
    /// The reply to every MAIL, instead of `250`.
    pub mail_reply: Option<String>,
    /// The reply to RCPT by recipient address (lower case); others get `250`.
    pub rcpt_replies: HashMap<String, String>,
    pub data_end: DataEnd,
}

impl Behavior {
    /// Accepts everything (the default).
    pub fn accept() -> Self {
        Behavior::default()
    }

    /// `421 4.3.2` instead of the greeting, then close.
    pub fn temp_fail_greeting() -> Self {
        Behavior {
            greeting: Some("421 4.3.2 sink.test service not available".into()),
            ..Behavior::default()
        }
    }

    /// `451 4.3.0` to every MAIL.
    pub fn temp_fail_mail() -> Self {
        Behavior {
            mail_reply: Some("451 4.3.0 try again later".into()),
            ..Behavior::default()
        }
    }

    /// `554 5.7.1` after the final dot.
    pub fn perm_fail_data() -> Self {
        Behavior::default().data_end(DataEnd::Reply("554 5.7.1 message rejected".into()))
    }

    /// Reads DATA to the end, then closes without a reply.
    pub fn drop_after_data() -> Self {
        Behavior::default().data_end(DataEnd::Drop)
    }

    /// Waits `delay` before the reply to the final dot.
    pub fn slow(delay: Duration) -> Self {
        Behavior::default().data_end(DataEnd::Delay(delay))
    }

    /// Waits `delay` before the greeting.
    pub fn slow_greeting(delay: Duration) -> Self {
        Behavior {
            greeting_delay: delay,
            ..Behavior::default()
        }
    }

    /// The final-dot reply computed by `decide`.
    pub fn decide(decide: impl Fn(&SinkMessage) -> String + Send + Sync + 'static) -> Self {
        Behavior::default().data_end(DataEnd::Decide(Arc::new(decide)))
    }

    /// Answers RCPT for `recipient` with `reply`.
    pub fn rcpt_reply(mut self, recipient: &str, reply: &str) -> Self {
        self.rcpt_replies
            .insert(recipient.to_ascii_lowercase(), reply.to_owned());
        self
    }

    pub fn data_end(mut self, data_end: DataEnd) -> Self {
        self.data_end = data_end;
        self
    }
}

/// One message the sink accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkMessage {
    /// The reverse path without brackets; empty for `<>`.
    pub from: String,
    /// The recipients RCPT accepted, in order.
    pub rcpts: Vec<String>,
    /// The content exactly as sent, dot-unstuffed, without the final `.` line.
    pub data: Vec<u8>,
    /// Received inside STARTTLS.
    pub tls: bool,
    pub message_id: Option<String>,
    /// The connecting client's address (tells fleet nodes apart when each binds its
    /// own source address).
    pub client: SocketAddr,
    /// When the final dot arrived.
    pub received_at: std::time::Instant,
}

/// Recorded results and the script; shared by the handle and every session, and kept
/// across `stop`/`restart`.
#[derive(Default)]
struct SinkState {
    behavior: Behavior,
    received: Vec<SinkMessage>,
    connections: usize,
    probes: usize,
    dropped: usize,
}

struct Shared {
    hostname: String,
    size_limit: u64,
    pipelining: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Mutex<SinkState>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, SinkState> {
        // A panicking test thread must not hide the records from the others.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Settings before start.
#[derive(Debug)]
pub struct SinkBuilder {
    addr: SocketAddr,
    hostname: String,
    size_limit: u64,
    pipelining: bool,
    tls: Option<(String, String)>,
    behavior: Behavior,
}

impl SinkBuilder {
    /// Listen on `addr` instead of an ephemeral loopback port.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = hostname.to_owned();
        self
    }

    /// The limit announced with SIZE and enforced at MAIL and DATA (default 10 MB).
    pub fn size_limit(mut self, bytes: u64) -> Self {
        self.size_limit = bytes;
        self
    }

    /// Whether EHLO announces PIPELINING (default yes); without it, clients must wait
    /// for each reply (the sink itself handles pipelined input either way).
    pub fn pipelining(mut self, announce: bool) -> Self {
        self.pipelining = announce;
        self
    }

    /// Offers STARTTLS with this certificate chain and key (PEM).
    pub fn tls(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.tls = Some((cert_pem.to_owned(), key_pem.to_owned()));
        self
    }

    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }

    pub async fn start(self) -> SinkMx {
        let tls = self
            .tls
            .map(|(cert, key)| server_tls_config(&cert, &key).expect("sink TLS certificate"));
        let shared = Arc::new(Shared {
            hostname: self.hostname,
            size_limit: self.size_limit,
            pipelining: self.pipelining,
            tls,
            state: Mutex::new(SinkState {
                behavior: self.behavior,
                ..SinkState::default()
            }),
        });
        let listener = bind(self.addr).expect("sink binds");
        let addr = listener.local_addr().expect("sink local address");
        let mut sink = SinkMx {
            addr,
            shared,
            running: None,
        };
        sink.serve(listener);
        sink
    }
}

/// The running generation of a sink.
struct Running {
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// A scriptable primary MX on loopback.
pub struct SinkMx {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// `None` while stopped.
    running: Option<Running>,
}

impl SinkMx {
    pub fn builder() -> SinkBuilder {
        SinkBuilder {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            hostname: "sink.test".into(),
            size_limit: 10_000_000,
            pipelining: true,
            tls: None,
            behavior: Behavior::default(),
        }
    }

    /// Accepts everything on an ephemeral loopback port.
    pub async fn start() -> SinkMx {
        Self::builder().start().await
    }

    pub async fn start_on(addr: SocketAddr) -> SinkMx {
        Self::builder().addr(addr).start().await
    }

    /// Offers STARTTLS with this certificate chain and key (PEM).
    pub async fn start_with_tls(cert_pem: &str, key_pem: &str) -> SinkMx {
        Self::builder().tls(cert_pem, key_pem).start().await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how the sink answers from the next decision on.
    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.state().behavior = behavior;
    }

    /// Closes the listener and every open session; connecting is then refused.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown.cancel();
            running.tracker.close();
            running.tracker.wait().await;
        }
    }

    /// Listens again on the same address (after `stop`).
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = bind(self.addr).expect("sink binds its old address again");
        self.serve(listener);
    }

    /// Every accepted message so far, in order.
    pub fn received(&self) -> Vec<SinkMessage> {
        self.shared.state().received.clone()
    }

    /// How many messages were accepted so far (cheap: copies nothing).
    pub fn received_count(&self) -> usize {
        self.shared.state().received.len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.state().connections
    }

    /// Sessions that said EHLO/HELO and QUIT without any MAIL.
    pub fn probes(&self) -> usize {
        self.shared.state().probes
    }

    /// Messages read to the final dot and then dropped without a reply
    /// ([`DataEnd::Drop`]).
    pub fn dropped(&self) -> usize {
        self.shared.state().dropped
    }

    /// Waits until at least `count` messages were accepted; returns them all.
    pub async fn wait_for_messages(&self, count: usize, deadline: Duration) -> Vec<SinkMessage> {
        let what = format!("{count} message(s) at the sink");
        crate::wait_for(&what, deadline, || {
            self.shared.state().received.len() >= count
        })
        .await;
        self.received()
    }

    fn serve(&mut self, listener: TcpListener) {
        let running = Running {
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        let (shared, shutdown, tracker) = (
            Arc::clone(&self.shared),
            running.shutdown.clone(),
            running.tracker.clone(),
        );
        running.tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = shutdown.cancelled() => return,
                };
                let Ok((stream, peer)) = accepted else {
                    continue;
                };
                // Replies to pipelined commands go out as separate small writes; without
                // this, Nagle holds each one back until the client's delayed ACK.
                let _ = stream.set_nodelay(true);
                shared.state().connections += 1;
                debug!(%peer, "sink_connection_accepted");
                let (shared, shutdown) = (Arc::clone(&shared), shutdown.clone());
                tracker.spawn(async move {
                    let session = Session::new(stream, peer, shared);
                    tokio::select! {
                        _ = session.run() => {}
                        _ = shutdown.cancelled() => {}
                    }
                });
            }
        });
        self.running = Some(running);
    }
}

impl Drop for SinkMx {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown.cancel();
        }
    }
}

/// Binds with SO_REUSEADDR, so `restart` gets the port back while old sessions linger
/// in TIME_WAIT.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

fn server_tls_config(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

trait SinkStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> SinkStream for T {}

/// Why a session ends.
enum End {
    Quit,
    Closed,
}

/// The MAIL transaction in progress.
struct Transaction {
    from: String,
    rcpts: Vec<String>,
}

/// One SMTP session. Replies are written as soon as each command is handled; with
/// pipelined input the next commands are already in `input`.
struct Session {
    /// `None` only while STARTTLS swaps the stream.
    io: Option<Box<dyn SinkStream>>,
    peer: SocketAddr,
    input: Vec<u8>,
    shared: Arc<Shared>,
    tls: bool,
    greeted: bool,
    saw_mail: bool,
    transaction: Option<Transaction>,
}

impl Session {
    fn new(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Self {
        Session {
            io: Some(Box::new(stream)),
            peer,
            input: Vec::new(),
            shared,
            tls: false,
            greeted: false,
            saw_mail: false,
            transaction: None,
        }
    }

    fn behavior(&self) -> Behavior {
        self.shared.state().behavior.clone()
    }

    async fn run(mut self) {
        let end = self.converse().await;
        if matches!(end, Ok(End::Quit)) && self.greeted && !self.saw_mail {
            self.shared.state().probes += 1;
        }
        if let Some(io) = self.io.as_mut() {
            let _ = io.shutdown().await;
        }
    }

    async fn converse(&mut self) -> io::Result<End> {
        let behavior = self.behavior();
        tokio::time::sleep(behavior.greeting_delay).await;
        let greeting = behavior
            .greeting
            .unwrap_or_else(|| format!("220 {} ESMTP sink", self.shared.hostname));
        self.reply(&greeting).await?;
        if !greeting.starts_with('2') {
            return Ok(End::Closed);
        }
        loop {
            let Some(line) = self.line().await? else {
                return Ok(End::Closed);
            };
            let request = Request::parse(&mut line.iter()).map(|r| r.into_owned());
            let reply = match request {
                Ok(request) => match self.handle(request).await? {
                    Step::Reply(reply) => reply,
                    Step::Continue => continue,
                    Step::End(end, reply) => {
                        if let Some(reply) = reply {
                            self.reply(&reply).await?;
                        }
                        return Ok(end);
                    }
                },
                Err(_) => "500 5.5.2 command not recognized".into(),
            };
            self.reply(&reply).await?;
            if reply.starts_with("421") {
                return Ok(End::Closed);
            }
        }
    }

    async fn handle(&mut self, request: Request<String>) -> io::Result<Step> {
        let reply = match request {
            Request::Ehlo { .. } => {
                self.greeted = true;
                self.transaction = None;
                self.ehlo_reply()
            }
            Request::Helo { .. } => {
                self.greeted = true;
                self.transaction = None;
                format!("250 {}", self.shared.hostname)
            }
            Request::Mail { from } => self.mail(from.address, from.size as u64),
            Request::Rcpt { to } => self.rcpt(to.address),
            Request::Data => return self.data().await,
            Request::StartTls => return self.starttls().await,
            Request::Rset => {
                self.transaction = None;
                "250 2.0.0 Ok".into()
            }
            Request::Noop { .. } => "250 2.0.0 Ok".into(),
            Request::Quit => return Ok(Step::End(End::Quit, Some("221 2.0.0 Bye".into()))),
            _ => "502 5.5.1 command not implemented".into(),
        };
        Ok(Step::Reply(reply))
    }

    fn ehlo_reply(&self) -> String {
        let mut lines = vec![self.shared.hostname.clone()];
        if self.shared.pipelining {
            lines.push("PIPELINING".into());
        }
        lines.extend([
            format!("SIZE {}", self.shared.size_limit),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
        ]);
        if self.shared.tls.is_some() && !self.tls {
            lines.push("STARTTLS".into());
        }
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| format!("250{}{line}", if i == last { ' ' } else { '-' }))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    fn mail(&mut self, from: String, size: u64) -> String {
        if !self.greeted {
            return "503 5.5.1 say EHLO first".into();
        }
        if self.transaction.is_some() {
            return "503 5.5.1 nested MAIL command".into();
        }
        self.saw_mail = true;
        if size > self.shared.size_limit {
            return "552 5.3.4 message size exceeds fixed limit".into();
        }
        if let Some(reply) = self.behavior().mail_reply {
            return reply;
        }
        self.transaction = Some(Transaction {
            from,
            rcpts: Vec::new(),
        });
        "250 2.1.0 Ok".into()
    }

    fn rcpt(&mut self, to: String) -> String {
        let scripted = self
            .behavior()
            .rcpt_replies
            .get(&to.to_ascii_lowercase())
            .cloned();
        let Some(transaction) = self.transaction.as_mut() else {
            return "503 5.5.1 need MAIL command".into();
        };
        let reply = scripted.unwrap_or_else(|| "250 2.1.5 Ok".into());
        if reply.starts_with('2') {
            transaction.rcpts.push(to);
        }
        reply
    }

    async fn data(&mut self) -> io::Result<Step> {
        let Some(transaction) = self.transaction.take() else {
            return Ok(Step::Reply("503 5.5.1 need MAIL command".into()));
        };
        if transaction.rcpts.is_empty() {
            return Ok(Step::Reply("554 5.5.1 no valid recipients".into()));
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>").await?;
        let Some(data) = self.content().await? else {
            return Ok(Step::End(End::Closed, None));
        };
        if data.len() as u64 > self.shared.size_limit {
            return Ok(Step::Reply(
                "552 5.3.4 message size exceeds fixed limit".into(),
            ));
        }
        let message = SinkMessage {
            from: transaction.from,
            rcpts: transaction.rcpts,
            message_id: message_id(&data),
            data,
            tls: self.tls,
            client: self.peer,
            received_at: std::time::Instant::now(),
        };
        let accepted = "250 2.0.0 Ok: queued".to_string();
        let (reply, delay) = match self.behavior().data_end {
            DataEnd::Accept => (accepted, Duration::ZERO),
            DataEnd::Reply(reply) => (reply, Duration::ZERO),
            DataEnd::Delay(delay) => (accepted, delay),
            DataEnd::Decide(decide) => (decide(&message), Duration::ZERO),
            DataEnd::Drop => {
                self.shared.state().dropped += 1;
                return Ok(Step::End(End::Closed, None));
            }
        };
        if reply.starts_with('2') {
            self.shared.state().received.push(message);
        }
        tokio::time::sleep(delay).await;
        Ok(Step::Reply(reply))
    }

    async fn starttls(&mut self) -> io::Result<Step> {
        let Some(config) = self.shared.tls.clone() else {
            return Ok(Step::Reply("502 5.5.1 command not implemented".into()));
        };
        if self.tls {
            return Ok(Step::Reply("503 5.5.1 TLS already active".into()));
        }
        self.reply("220 2.0.0 Ready to start TLS").await?;
        // Plaintext pipelined after STARTTLS is never read inside TLS.
        self.input.clear();
        let Some(plain) = self.io.take() else {
            return Ok(Step::End(End::Closed, None));
        };
        match tokio_rustls::TlsAcceptor::from(config).accept(plain).await {
            Ok(stream) => {
                self.io = Some(Box::new(stream));
                self.tls = true;
                self.greeted = false;
                self.transaction = None;
                Ok(Step::Continue)
            }
            Err(error) => {
                debug!(cause = %error, "sink_tls_handshake_failed");
                Ok(Step::End(End::Closed, None))
            }
        }
    }

    /// The next line (up to LF), or `None` at end of stream.
    async fn line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.input.iter().position(|b| *b == b'\n') {
                return Ok(Some(self.input.drain(..=end).collect()));
            }
            if !self.read_more().await? {
                return Ok(None);
            }
        }
    }

    /// DATA content up to the `.` line, dot-unstuffed; `None` if the stream ended first.
    async fn content(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut data = Vec::new();
        loop {
            let Some(line) = self.line().await? else {
                return Ok(None);
            };
            if line == b".\r\n" {
                return Ok(Some(data));
            }
            data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
        }
    }

    async fn read_more(&mut self) -> io::Result<bool> {
        let Some(io) = self.io.as_mut() else {
            return Ok(false);
        };
        let mut chunk = [0u8; 16 * 1024];
        let read = io.read(&mut chunk).await?;
        self.input.extend_from_slice(&chunk[..read]);
        Ok(read > 0)
    }

    async fn reply(&mut self, reply: &str) -> io::Result<()> {
        let Some(io) = self.io.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        io.write_all(format!("{reply}\r\n").as_bytes()).await?;
        io.flush().await
    }
}

/// What a handled command leads to.
enum Step {
    Reply(String),
    /// Nothing to send (STARTTLS already answered).
    Continue,
    End(End, Option<String>),
}

/// The Message-ID header value from the header section, unfolded.
fn message_id(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    let headers = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = headers.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.eq_ignore_ascii_case("message-id") {
            continue;
        }
        let mut value = value.trim().to_owned();
        while let Some(next) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
            value.push(' ');
            value.push_str(next.trim());
        }
        return Some(value);
    }
    None
}
