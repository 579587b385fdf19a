//! The spam benchmark's load generator: `clients` concurrent plain-TCP SMTP senders,
//! each session carrying one message the way an MTA relays one (connect, banner, EHLO,
//! MAIL, RCPT, DATA, QUIT, one command at a time, no pipelining), spread over the
//! nodes' listeners.
//!
//! Every message has a unique Message-ID (also the first header of its body, so every
//! body is a new blob). Its sender and recipient cycle through [`SENDERS`] x
//! [`RECIPIENTS`] addresses, the greylisting triplets the fleet primes beforehand.
//!
//! Latency is measured at the client, from before `connect` to the `250` after the
//! final dot; the envelope latency from before `connect` to the `250` after RCPT TO,
//! where the spam checks decide, without DATA and its durable commit. Any other reply, a timeout or a broken connection is a failure, counted
//! with its first few transcripts.
//!
//! Layout: addresses ([`sender`], [`recipient`]), [`Batch`] → [`send_batch`] →
//! [`BatchOutcome`], and the one-session client (`Transcript`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The parent of the senders' domains; they publish MX and SPF (see the fleet's
/// zones).
pub const SENDER_DOMAIN: &str = "sender.test";
/// The relay domain every message goes to; the checks are configured for it.
pub const RELAY_DOMAIN: &str = "relay.test";
/// What the clients say in EHLO; also the client's reverse-DNS name.
pub const HELO: &str = "mail.sender.test";
/// Distinct sender addresses, each in its own domain (`d<i>.sender.test`), so that
/// concurrent sessions ask the DNS about different sender domains.
pub const SENDERS: usize = 8;
/// Distinct recipient addresses.
pub const RECIPIENTS: usize = 8;
/// How long one reply may take before the session counts as failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Failure transcripts kept per batch.
const FAILURE_SAMPLES: usize = 5;

/// The domain of sender `index`, relative to [`SENDER_DOMAIN`].
pub fn sender_label(index: usize) -> String {
    format!("d{index}")
}

pub fn sender(index: usize) -> String {
    format!("s{index}@{}.{SENDER_DOMAIN}", sender_label(index))
}

pub fn recipient(index: usize) -> String {
    format!("r{index}@{RELAY_DOMAIN}")
}

/// One batch of sessions.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Unique per batch; goes into every Message-ID.
    pub tag: String,
    pub clients: usize,
    pub messages: usize,
    pub body_bytes: usize,
}

/// What the clients of one batch saw.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// One per accepted message: connect to the `250` after DATA.
    pub latencies: Vec<Duration>,
    /// One per accepted message: connect to the `250` after RCPT TO.
    pub envelope_latencies: Vec<Duration>,
    pub failures: usize,
    pub failure_samples: Vec<String>,
}

impl BatchOutcome {
    fn merge(&mut self, other: BatchOutcome) {
        self.latencies.extend(other.latencies);
        self.envelope_latencies.extend(other.envelope_latencies);
        self.failures += other.failures;
        let room = FAILURE_SAMPLES.saturating_sub(self.failure_samples.len());
        self.failure_samples
            .extend(other.failure_samples.into_iter().take(room));
    }
}

/// Sends `batch.messages` sessions from `batch.clients` concurrent clients; client `c`
/// sends its `k`-th session to `listeners[(c + k) % len]`.
pub async fn send_batch(listeners: &[SocketAddr], batch: &Batch) -> BatchOutcome {
    let claimed = Arc::new(AtomicUsize::new(0));
    let listeners: Arc<Vec<SocketAddr>> = Arc::new(listeners.to_vec());
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..batch.clients {
        let (claimed, listeners, batch) = (claimed.clone(), listeners.clone(), batch.clone());
        clients.spawn(async move {
            let mut outcome = BatchOutcome::default();
            let filler = filler(batch.body_bytes);
            for sent in 0.. {
                let seq = claimed.fetch_add(1, Ordering::Relaxed);
                if seq >= batch.messages {
                    break;
                }
                let addr = listeners[(client + sent) % listeners.len()];
                let from = sender(seq % SENDERS);
                let to = recipient((seq / SENDERS) % RECIPIENTS);
                let body = message(&batch.tag, seq, &from, &to, &filler);
                match one_session(addr, &from, &to, &body).await {
                    Ok((envelope, latency)) => {
                        outcome.envelope_latencies.push(envelope);
                        outcome.latencies.push(latency);
                    }
                    Err(transcript) => {
                        outcome.failures += 1;
                        if outcome.failure_samples.len() < FAILURE_SAMPLES {
                            outcome
                                .failure_samples
                                .push(format!("to {addr}: {transcript}"));
                        }
                    }
                }
            }
            outcome
        });
    }
    let mut outcome = BatchOutcome::default();
    while let Some(joined) = clients.join_next().await {
        outcome.merge(joined.expect("a load-generator client panicked"));
    }
    outcome
}

/// Text lines filling a body up to `bytes`; no line starts with a dot.
fn filler(bytes: usize) -> Vec<u8> {
    let line = b"The quick brown fox jumps over the lazy dog, 0123456789 times, again.\r\n";
    let mut filler = Vec::with_capacity(bytes + line.len());
    while filler.len() < bytes {
        filler.extend_from_slice(line);
    }
    filler
}

/// The message of sequence `seq`: headers, then whole lines of `filler`, as long as
/// `filler` give or take a line; it ends in CRLF.
fn message(tag: &str, seq: usize, from: &str, to: &str, filler: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "Message-ID: <{tag}-{seq:09}@{SENDER_DOMAIN}>\r\nFrom: <{from}>\r\nTo: <{to}>\r\n\
         Subject: mxfleet spam-check benchmark\r\n\r\n"
    )
    .into_bytes();
    // Whole filler lines only: a cut line could leave a bare CR.
    let line = filler
        .iter()
        .position(|b| *b == b'\n')
        .map_or(1, |end| end + 1);
    let room = filler.len().saturating_sub(body.len()).div_ceil(line) * line;
    body.extend_from_slice(&filler[..room.min(filler.len())]);
    body
}

/// One session; `Ok` with the times from before `connect` to the `250` after RCPT TO
/// and to the `250` after DATA, or `Err` with the transcript up to the unexpected
/// reply.
async fn one_session(
    addr: SocketAddr,
    from: &str,
    to: &str,
    body: &[u8],
) -> Result<(Duration, Duration), String> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let (reader, writer) = stream.into_split();
    let mut session = Transcript {
        reader: BufReader::new(reader),
        writer,
        log: String::new(),
    };
    session.expect(None, "220").await?;
    session.expect(Some(&format!("EHLO {HELO}")), "250").await?;
    session
        .expect(Some(&format!("MAIL FROM:<{from}>")), "250")
        .await?;
    session
        .expect(Some(&format!("RCPT TO:<{to}>")), "250")
        .await?;
    let envelope = started.elapsed();
    session.expect(Some("DATA"), "354").await?;
    session.send_raw(body).await?;
    session.expect(Some("."), "250").await?;
    let latency = started.elapsed();
    // The session is done for the sender once the message is accepted; QUIT is
    // politeness, and its answer is not part of the latency.
    let _ = session.expect(Some("QUIT"), "221").await;
    Ok((envelope, latency))
}

/// One client connection and what was said on it, for failure reports.
struct Transcript {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    log: String,
}

impl Transcript {
    async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(|e| format!("{} / write: {e}", self.log))
    }

    /// Sends `command` (if any) and reads a whole reply, which must start with `code`.
    async fn expect(&mut self, command: Option<&str>, code: &str) -> Result<(), String> {
        if let Some(command) = command {
            self.log.push_str(&format!("C: {command} | "));
            self.send_raw(format!("{command}\r\n").as_bytes()).await?;
        }
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_line(&mut line))
                .await
                .map_err(|_| format!("{} / no reply within {REPLY_TIMEOUT:?}", self.log))?
                .map_err(|e| format!("{} / read: {e}", self.log))?;
            if read == 0 {
                return Err(format!("{} / connection closed", self.log));
            }
            reply.push_str(line.trim_end());
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
            reply.push_str(" / ");
        }
        self.log.push_str(&format!("S: {reply} | "));
        if reply.starts_with(code) {
            Ok(())
        } else {
            Err(self.log.clone())
        }
    }
}
