//! `mxfleet loadgen`: our own smtp-source. C concurrent SMTP sessions push N messages of
//! a given size at one or more servers, then report throughput and end-of-DATA latency.
//!
//! Each session holds one connection at a time: it connects, says EHLO, then sends
//! message after message over that connection (MAIL, RCPT, DATA), like `smtp-source -d
//! -s C -m N`. Sessions take message numbers from one shared counter, so a slow session
//! sends fewer. Session `i` talks to server `i mod servers` for its whole life.
//!
//! A message ends in the class of the reply that ended it: 2xx ok, 4xx temp, 5xx perm, or
//! error (I/O, timeout after 60 s per reply, protocol violation). After anything but ok
//! the session drops its connection and reconnects for its next message. Latency is
//! measured from handing the whole DATA content, final `CRLF.CRLF` included, to the kernel
//! until the final reply has been read completely.
//!
//! Layout:
//! - `LoadgenArgs`, `run`: the CLI shell; spawns the sessions and prints the report.
//! - `run_session`: one session's loop over messages and reconnections.
//! - `SmtpClient`: a minimal hand-written SMTP client, generic over the stream.
//! - Sans-IO: `parse_reply_line`, `classify`, `build_message`, `dot_stuff`, `Summary`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use mxfleet_core::UnixMillis;
use mxfleet_core::envelope::rfc5322_date;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::{debug, error};

use super::EXIT_FAILED;

#[derive(Args)]
pub struct LoadgenArgs {
    /// SMTP server as HOST:PORT; repeat it to spread the sessions round-robin.
    #[arg(long = "server", required = true, value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// Messages to send in total.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,
    /// Concurrent sessions (connections).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
    /// Message size in bytes, headers included, before dot-stuffing.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Envelope sender (empty for the null sender `<>`).
    #[arg(long, default_value = "loadgen@mxfleet.invalid", value_parser = parse_sender)]
    from: String,
    /// Envelope recipient.
    #[arg(long, default_value = "postmaster@example.test", value_parser = parse_recipient)]
    to: String,
    /// QUIT and reconnect after this many messages on one connection (default: never;
    /// 1 behaves like smtp-source without -d).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    messages_per_connection: Option<u64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// How long one reply (or one write, or the TCP connect) may take before the message
/// counts as an error.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest reply line accepted, CRLF included (RFC 5321 §4.5.3.1.5 says 512).
const MAX_REPLY_LINE: usize = 4096;
/// Longest filler line, CRLF excluded (RFC 5322 §2.1.1 recommends 78).
const FILLER_LINE_CHARS: usize = 78;
const HELO_NAME: &str = "loadgen.mxfleet.invalid";

pub async fn run(args: LoadgenArgs) -> u8 {
    let plan = Arc::new(Plan::new(&args));
    let next_message = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut sessions = JoinSet::new();
    for session in 0..args.concurrency as usize {
        let server = args.servers[session % args.servers.len()].clone();
        sessions.spawn(run_session(plan.clone(), server, next_message.clone()));
    }
    let mut reports = Vec::new();
    let mut lost_sessions = 0;
    while let Some(joined) = sessions.join_next().await {
        match joined {
            Ok(report) => reports.push(report),
            Err(e) => {
                error!(cause = %e, "loadgen_session_lost");
                lost_sessions += 1;
            }
        }
    }
    let summary = Summary::new(reports, started.elapsed());
    if args.json {
        println!("{}", summary.to_json(&args));
    } else {
        print!("{}", summary.to_table(&args));
    }
    if lost_sessions == 0 && summary.all_ok() {
        0
    } else {
        EXIT_FAILED
    }
}

fn parse_sender(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    parse_recipient(raw)
}

/// Accepts a bare ASCII address; anything that could break the command line is refused.
fn parse_recipient(raw: &str) -> Result<String, String> {
    let raw = raw.trim_start_matches('<').trim_end_matches('>');
    if raw.is_empty() {
        return Err("the address is empty".into());
    }
    if !raw.is_ascii()
        || raw
            .bytes()
            .any(|b| b.is_ascii_control() || b" <>".contains(&b))
    {
        return Err("use a plain ASCII address such as user@example.test".into());
    }
    Ok(raw.to_string())
}

/// What every session shares: the envelope and how to build message number `index`.
struct Plan {
    messages: u64,
    size: usize,
    from: String,
    to: String,
    messages_per_connection: Option<u64>,
    /// Makes Message-IDs unique across runs, so a server that deduplicates by Message-ID
    /// never answers a repeat from memory.
    run_id: String,
    date: String,
}

impl Plan {
    fn new(args: &LoadgenArgs) -> Plan {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Plan {
            messages: args.messages,
            size: args.size,
            from: args.from.clone(),
            to: args.to.clone(),
            messages_per_connection: args.messages_per_connection,
            run_id: format!("{:x}.{:x}", now.as_nanos(), std::process::id()),
            date: rfc5322_date(UnixMillis(now.as_millis() as u64)),
        }
    }

    fn headers(&self, index: u64) -> String {
        let from = if self.from.is_empty() {
            "MAILER-DAEMON@loadgen.mxfleet.invalid"
        } else {
            &self.from
        };
        format!(
            "From: <{from}>\r\nTo: <{}>\r\nSubject: mxfleet loadgen message {index}\r\n\
             Date: {}\r\nMessage-ID: <{}.{index}@loadgen.mxfleet.invalid>\r\n\r\n",
            self.to, self.date, self.run_id
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Temp,
    Perm,
    Error,
}

/// The one place that maps a final reply code to an outcome.
fn classify(code: u16) -> Outcome {
    match code / 100 {
        2 => Outcome::Ok,
        4 => Outcome::Temp,
        5 => Outcome::Perm,
        _ => Outcome::Error,
    }
}

/// Why a message did not end in 2xx. `detail` names the step and quotes the reply.
#[derive(Debug)]
struct Failure {
    outcome: Outcome,
    detail: String,
}

impl Failure {
    fn error(step: &str, cause: impl std::fmt::Display) -> Failure {
        Failure {
            outcome: Outcome::Error,
            detail: format!("{step}: {cause}"),
        }
    }
}

/// One session's results; merged into a `Summary` when the session ends.
#[derive(Default)]
struct SessionReport {
    ok_latencies: Vec<Duration>,
    temp: u64,
    perm: u64,
    error: u64,
    connections: u64,
    first_failure: Option<String>,
}

impl SessionReport {
    fn record_failure(&mut self, server: &str, failure: Failure) {
        debug!(server, outcome = ?failure.outcome, detail = %failure.detail, "loadgen_message_failed");
        match failure.outcome {
            Outcome::Temp => self.temp += 1,
            Outcome::Perm => self.perm += 1,
            Outcome::Ok | Outcome::Error => self.error += 1,
        }
        self.first_failure
            .get_or_insert_with(|| format!("{server}: {}", failure.detail));
    }
}

/// Sends messages until the shared counter passes `plan.messages`. The connection lives
/// in `connection` between messages and is dropped after any failure (reconnect next
/// time) or QUIT after `messages_per_connection`.
async fn run_session(
    plan: Arc<Plan>,
    server: String,
    next_message: Arc<AtomicU64>,
) -> SessionReport {
    let mut report = SessionReport::default();
    let mut connection: Option<(SmtpClient<TcpStream>, u64)> = None;
    loop {
        let index = next_message.fetch_add(1, Ordering::Relaxed);
        if index >= plan.messages {
            break;
        }
        let (mut client, sent_before) = match connection.take() {
            Some(open) => open,
            None => {
                report.connections += 1;
                match connect(&server).await {
                    Ok(client) => (client, 0),
                    Err(failure) => {
                        report.record_failure(&server, failure);
                        continue;
                    }
                }
            }
        };
        let data = build_message(&plan.headers(index), plan.size);
        match client.send_message(&plan.from, &plan.to, &data).await {
            Ok(latency) => {
                report.ok_latencies.push(latency);
                let sent = sent_before + 1;
                if plan
                    .messages_per_connection
                    .is_some_and(|limit| sent >= limit)
                {
                    client.quit().await;
                } else {
                    connection = Some((client, sent));
                }
            }
            Err(failure) => report.record_failure(&server, failure),
        }
    }
    if let Some((client, _)) = connection {
        client.quit().await;
    }
    report
}

async fn connect(server: &str) -> Result<SmtpClient<TcpStream>, Failure> {
    let stream = match timeout(REPLY_TIMEOUT, TcpStream::connect(server)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Failure::error("connect", e)),
        Err(_) => return Err(Failure::error("connect", "timed out")),
    };
    // Commands and replies are small and strictly alternate; never wait for Nagle.
    stream
        .set_nodelay(true)
        .map_err(|e| Failure::error("connect", e))?;
    SmtpClient::open(stream, HELO_NAME).await
}

/// A final reply: its code and the text of its last line (for reports only).
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    code: u16,
    text: String,
}

/// Checks that `reply` is of class `want` (2 or 3); otherwise the message failed.
fn expect(step: &str, reply: Reply, want: u16) -> Result<(), Failure> {
    if reply.code / 100 == want {
        return Ok(());
    }
    let outcome = match classify(reply.code) {
        // A 2xx where 354 was due (or the reverse) is a protocol error, not success.
        Outcome::Ok => Outcome::Error,
        other => other,
    };
    Err(Failure {
        outcome,
        detail: format!("{step}: {} {}", reply.code, reply.text),
    })
}

/// One parsed reply line.
#[derive(Debug, PartialEq, Eq)]
struct ReplyLine {
    code: u16,
    /// A space (or nothing) after the code ends the reply; a hyphen continues it.
    last: bool,
    text: String,
}

fn parse_reply_line(line: &[u8]) -> Result<ReplyLine, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let shown = || String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    let code = match line {
        [a @ b'2'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', ..] => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(format!("malformed reply line {:?}", shown())),
    };
    let last = match line.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return Err(format!("malformed reply line {:?}", shown())),
    };
    let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default())
        .chars()
        .take(200)
        .collect();
    Ok(ReplyLine { code, last, text })
}

/// A minimal SMTP client: no pipelining, no TLS; it only moves bytes and parses replies.
struct SmtpClient<S> {
    stream: BufReader<S>,
    /// Reused buffer for one reply line.
    line: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// Reads the greeting and says EHLO.
    async fn open(stream: S, helo: &str) -> Result<SmtpClient<S>, Failure> {
        let mut client = SmtpClient {
            stream: BufReader::new(stream),
            line: Vec::with_capacity(512),
        };
        let greeting = client.read_reply("greeting").await?;
        expect("greeting", greeting, 2)?;
        let ehlo = client.command("EHLO", &format!("EHLO {helo}\r\n")).await?;
        expect("EHLO", ehlo, 2)?;
        Ok(client)
    }

    /// One transaction; `data` is the dot-stuffed content ending in CRLF.CRLF. Returns
    /// the time from having written `data` to having read the final reply.
    async fn send_message(
        &mut self,
        from: &str,
        to: &str,
        data: &[u8],
    ) -> Result<Duration, Failure> {
        let reply = self
            .command("MAIL FROM", &format!("MAIL FROM:<{from}>\r\n"))
            .await?;
        expect("MAIL FROM", reply, 2)?;
        let reply = self
            .command("RCPT TO", &format!("RCPT TO:<{to}>\r\n"))
            .await?;
        expect("RCPT TO", reply, 2)?;
        let reply = self.command("DATA", "DATA\r\n").await?;
        expect("DATA", reply, 3)?;
        self.write("end of data", data).await?;
        let sent = Instant::now();
        let reply = self.read_reply("end of data").await?;
        let latency = sent.elapsed();
        expect("end of data", reply, 2)?;
        Ok(latency)
    }

    /// Best effort: the results are already recorded, so failures here do not count.
    async fn quit(mut self) {
        if self.write("QUIT", b"QUIT\r\n").await.is_ok() {
            let _ = self.read_reply("QUIT").await;
        }
    }

    async fn command(&mut self, step: &str, line: &str) -> Result<Reply, Failure> {
        self.write(step, line.as_bytes()).await?;
        self.read_reply(step).await
    }

    async fn write(&mut self, step: &str, bytes: &[u8]) -> Result<(), Failure> {
        let stream = self.stream.get_mut();
        match timeout(REPLY_TIMEOUT, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::error(step, e)),
            Err(_) => Err(Failure::error(step, "write timed out")),
        }
    }

    async fn read_reply(&mut self, step: &str) -> Result<Reply, Failure> {
        match timeout(REPLY_TIMEOUT, self.read_reply_lines()).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(cause)) => Err(Failure::error(step, cause)),
            Err(_) => Err(Failure::error(step, "no reply within 60 s")),
        }
    }

    /// Reads lines until one with a space (or nothing) after the code.
    async fn read_reply_lines(&mut self) -> Result<Reply, String> {
        let mut code = None;
        loop {
            self.line.clear();
            let read = (&mut self.stream)
                .take(MAX_REPLY_LINE as u64)
                .read_until(b'\n', &mut self.line)
                .await
                .map_err(|e| e.to_string())?;
            if !self.line.ends_with(b"\n") {
                return Err(match read {
                    0 => "connection closed".into(),
                    MAX_REPLY_LINE => "reply line too long".into(),
                    _ => "connection closed mid-line".into(),
                });
            }
            let line = parse_reply_line(&self.line)?;
            if let Some(first) = code
                && first != line.code
            {
                return Err(format!("reply mixes codes {first} and {}", line.code));
            }
            code = Some(line.code);
            if line.last {
                return Ok(Reply {
                    code: line.code,
                    text: line.text,
                });
            }
        }
    }
}

/// The DATA content for one message: `headers` (ending in the blank line), then filler
/// lines of at most 78 characters so that the message is `size` bytes (one byte more
/// when the remainder is a single byte; the headers alone when they exceed `size`),
/// dot-stuffed, followed by the final `.CRLF`.
fn build_message(headers: &str, size: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(size.max(headers.len()) + 64);
    message.extend_from_slice(headers.as_bytes());
    let mut remaining = size.saturating_sub(message.len());
    let mut line_number = 0;
    while remaining > 0 {
        let chars = match remaining {
            1 => 0,
            2..=80 => remaining - 2,
            // 78 + CRLF would leave one byte, which no line can fill.
            81 => FILLER_LINE_CHARS - 1,
            _ => FILLER_LINE_CHARS,
        };
        // Printable ASCII from '!' on; every line starts 13 further, so line 1 (and every
        // 94th after it) starts with '.' and exercises dot-stuffing on the wire.
        message.extend((0..chars).map(|i| b'!' + ((line_number * 13 + i) % 94) as u8));
        message.extend_from_slice(b"\r\n");
        remaining = remaining.saturating_sub(chars + 2);
        line_number += 1;
    }
    let mut data = dot_stuff(&message);
    data.extend_from_slice(b".\r\n");
    data
}

/// RFC 5321 §4.5.2: a line that starts with '.' gets one more.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut stuffed = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut at_line_start = true;
    for &byte in message {
        if at_line_start && byte == b'.' {
            stuffed.push(b'.');
        }
        stuffed.push(byte);
        at_line_start = byte == b'\n';
    }
    stuffed
}

/// The merged results of every session.
struct Summary {
    ok: u64,
    temp: u64,
    perm: u64,
    error: u64,
    connections: u64,
    wall: Duration,
    /// Latencies of the ok messages, sorted ascending.
    latencies: Vec<Duration>,
    first_failure: Option<String>,
}

impl Summary {
    fn new(reports: Vec<SessionReport>, wall: Duration) -> Summary {
        let mut summary = Summary {
            ok: 0,
            temp: 0,
            perm: 0,
            error: 0,
            connections: 0,
            wall,
            latencies: Vec::new(),
            first_failure: None,
        };
        for report in reports {
            summary.ok += report.ok_latencies.len() as u64;
            summary.temp += report.temp;
            summary.perm += report.perm;
            summary.error += report.error;
            summary.connections += report.connections;
            summary.latencies.extend(report.ok_latencies);
            if summary.first_failure.is_none() {
                summary.first_failure = report.first_failure;
            }
        }
        summary.latencies.sort_unstable();
        summary
    }

    fn sent(&self) -> u64 {
        self.ok + self.temp + self.perm + self.error
    }

    fn all_ok(&self) -> bool {
        self.ok == self.sent()
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile of the ok latencies, in milliseconds (0 when none).
    fn percentile_ms(&self, percent: f64) -> f64 {
        let count = self.latencies.len();
        if count == 0 {
            return 0.0;
        }
        let rank = ((percent / 100.0) * count as f64).ceil() as usize;
        self.latencies[rank.clamp(1, count) - 1].as_secs_f64() * 1000.0
    }

    fn to_table(&self, args: &LoadgenArgs) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "mxfleet loadgen: {} messages of {} bytes, {} sessions, {} server(s): {}",
            args.messages,
            args.size,
            args.concurrency,
            args.servers.len(),
            args.servers.join(" ")
        );
        for (name, value) in [
            ("sent", self.sent()),
            ("ok", self.ok),
            ("temp (4xx)", self.temp),
            ("perm (5xx)", self.perm),
            ("error", self.error),
            ("connections", self.connections),
        ] {
            let _ = writeln!(out, "  {name:<13} {value:>10}");
        }
        let _ = writeln!(
            out,
            "  {:<13} {:>10.3} s",
            "wall time",
            self.wall.as_secs_f64()
        );
        let _ = writeln!(out, "  {:<13} {:>10.1} msg/s (ok)", "rate", self.rate());
        let _ = writeln!(
            out,
            "  {:<13} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms (ok, end of DATA to reply)",
            "latency",
            self.percentile_ms(50.0),
            self.percentile_ms(90.0),
            self.percentile_ms(99.0),
            self.percentile_ms(100.0)
        );
        if let Some(failure) = &self.first_failure {
            let _ = writeln!(out, "  {:<13} {failure}", "first failure");
        }
        out
    }

    fn to_json(&self, args: &LoadgenArgs) -> String {
        let servers: Vec<String> = args.servers.iter().map(|s| json_string(s)).collect();
        format!(
            "{{\"servers\":[{}],\"messages\":{},\"concurrency\":{},\"size\":{},\
             \"sent\":{},\"ok\":{},\"temp\":{},\"perm\":{},\"error\":{},\"connections\":{},\
             \"wall_s\":{:.3},\"msgs_per_s\":{:.1},\"latency_ms\":{{\"p50\":{:.3},\
             \"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}},\"first_failure\":{}}}",
            servers.join(","),
            args.messages,
            args.concurrency,
            args.size,
            self.sent(),
            self.ok,
            self.temp,
            self.perm,
            self.error,
            self.connections,
            self.wall.as_secs_f64(),
            self.rate(),
            self.percentile_ms(50.0),
            self.percentile_ms(90.0),
            self.percentile_ms(99.0),
            self.percentile_ms(100.0),
            self.first_failure
                .as_deref()
                .map_or_else(|| "null".to_string(), json_string)
        )
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, DuplexStream, duplex};

    #[test]
    fn reply_lines_parse_continuations_and_refuse_garbage() {
        let line = parse_reply_line(b"250-node1.mxfleet.dev\r\n").expect("continuation");
        assert_eq!((line.code, line.last), (250, false));
        let line = parse_reply_line(b"250 2.0.0 Ok: queued as 7\r\n").expect("last");
        assert_eq!(
            (line.code, line.last, line.text.as_str()),
            (250, true, "2.0.0 Ok: queued as 7")
        );
        assert!(parse_reply_line(b"354\r\n").expect("bare code").last);
        assert!(parse_reply_line(b"25 x\r\n").is_err());
        assert!(parse_reply_line(b"250x\r\n").is_err());
        assert!(parse_reply_line(b"650 no\r\n").is_err());
    }

    #[test]
    fn classification_follows_the_first_digit() {
        assert_eq!(classify(250), Outcome::Ok);
        assert_eq!(classify(421), Outcome::Temp);
        assert_eq!(classify(554), Outcome::Perm);
        assert_eq!(classify(354), Outcome::Error);
        let failure = expect(
            "DATA",
            Reply {
                code: 250,
                text: String::new(),
            },
            3,
        );
        assert_eq!(failure.map_err(|f| f.outcome).err(), Some(Outcome::Error));
    }

    #[test]
    fn messages_have_the_requested_size_short_lines_and_stuffed_dots() {
        let headers = "Subject: t\r\n\r\n";
        for size in [0, 10, 14, 15, 16, 95, 96, 97, 4096, 10_000] {
            let data = build_message(headers, size);
            assert!(data.ends_with(b"\r\n.\r\n"), "size {size}");
            let message = unstuff(&data[..data.len() - 3]);
            let expected = match size.saturating_sub(headers.len()) {
                0 => headers.len(),
                1 => size + 1,
                _ => size,
            };
            assert_eq!(message.len(), expected, "size {size}");
            for line in message.split(|&b| b == b'\n') {
                assert!(line.len() <= FILLER_LINE_CHARS + 1, "size {size}");
            }
        }
        let data = build_message(headers, 4096);
        assert!(
            data.windows(4).any(|w| w == b"\n../"),
            "line 1 starts with a stuffed dot"
        );
    }

    #[test]
    fn dot_stuffing_doubles_only_leading_dots() {
        assert_eq!(dot_stuff(b".a\r\nb.\r\n.\r\n"), b"..a\r\nb.\r\n..\r\n");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let reports = vec![SessionReport {
            ok_latencies: (1..=100).map(Duration::from_millis).collect(),
            ..SessionReport::default()
        }];
        let summary = Summary::new(reports, Duration::from_secs(1));
        assert_eq!(summary.percentile_ms(50.0).round(), 50.0);
        assert_eq!(summary.percentile_ms(99.0).round(), 99.0);
        assert_eq!(summary.percentile_ms(100.0).round(), 100.0);
        assert!(summary.all_ok());
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\r"), "\"a\\\"b\\\\c\\r\"");
    }

    /// A scripted server: sends each reply (split into small pieces) after reading one
    /// line, except for DATA content, which it reads up to the final dot.
    #[tokio::test]
    async fn a_transaction_reads_multi_line_replies_split_anywhere() {
        let (client_side, server_side) = duplex(64);
        let server = tokio::spawn(async move {
            let mut server = BufReader::new(server_side);
            send_split(&mut server, b"220-first\r\n220 mx ESMTP\r\n").await;
            let mut transcript = Vec::new();
            for reply in [
                &b"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n"[..],
                b"250 2.1.0 Ok\r\n",
                b"250 2.1.5 Ok\r\n",
                b"354 go ahead\r\n",
            ] {
                let mut line = String::new();
                server.read_line(&mut line).await.expect("command");
                transcript.push(line);
                send_split(&mut server, reply).await;
            }
            let mut content = Vec::new();
            while !content.ends_with(b"\r\n.\r\n") {
                server.read_until(b'\n', &mut content).await.expect("data");
            }
            send_split(&mut server, b"250 2.0.0 Ok: queued as 1\r\n").await;
            let mut line = String::new();
            server.read_line(&mut line).await.expect("quit");
            transcript.push(line);
            send_split(&mut server, b"221 bye\r\n").await;
            (transcript, content)
        });
        let mut client = SmtpClient::open(client_side, "client.test")
            .await
            .expect("greeting and EHLO");
        let data = build_message("Subject: t\r\n\r\n", 300);
        client
            .send_message("a@b.test", "c@example.test", &data)
            .await
            .expect("250");
        client.quit().await;
        let (transcript, content) = server.await.expect("server");
        assert_eq!(
            transcript,
            [
                "EHLO client.test\r\n",
                "MAIL FROM:<a@b.test>\r\n",
                "RCPT TO:<c@example.test>\r\n",
                "DATA\r\n",
                "QUIT\r\n"
            ]
        );
        assert_eq!(content, data);
    }

    #[tokio::test]
    async fn a_temporary_refusal_is_temp_and_a_closed_connection_is_an_error() {
        let (client_side, server_side) = duplex(1024);
        let mut server = BufReader::new(server_side);
        server
            .get_mut()
            .write_all(b"220 mx\r\n250 mx\r\n421 4.7.0 too many messages\r\n")
            .await
            .expect("script");
        let mut client = SmtpClient::open(client_side, "client.test")
            .await
            .expect("open");
        let failure = client
            .send_message("a@b.test", "c@example.test", b".\r\n")
            .await
            .expect_err("421");
        assert_eq!(failure.outcome, Outcome::Temp);
        drop(server);
        let failure = client
            .send_message("a@b.test", "c@example.test", b".\r\n")
            .await
            .expect_err("closed");
        assert_eq!(failure.outcome, Outcome::Error);
    }

    async fn send_split(server: &mut BufReader<DuplexStream>, reply: &[u8]) {
        for piece in reply.chunks(3) {
            server.get_mut().write_all(piece).await.expect("write");
        }
    }

    /// Undoes dot-stuffing: the first of two leading dots goes.
    fn unstuff(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at_line_start = true;
        for (i, &byte) in data.iter().enumerate() {
            let stuffed = at_line_start && byte == b'.' && data.get(i + 1) == Some(&b'.');
            at_line_start = byte == b'\n';
            if !stuffed {
                out.push(byte);
            }
        }
        out
    }
}
