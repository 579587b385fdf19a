//! One submission attempt: one message over one fresh connection, without pipelining,
//! and [`classify`], the one function that decides what the sender may conclude from how
//! the attempt ended.
//!
//! The conversation is generic over the stream, so tests script the server side over an
//! in-memory pipe; [`submit`] adds the TCP connect. Steps in order: connect, banner
//! (`220`), `EHLO load.chaos`, `MAIL FROM`, `RCPT TO` (one recipient), `DATA` (`354`),
//! the dot-stuffed content with its final dot, the reply to it, then `QUIT`, whose
//! failure changes nothing. Every step has its own timeout; the reply to the final dot
//! gets three times as long, because that is when the fleet replicates the message.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::history::Outcome;
use super::message::{ChaosMessage, dot_stuff};
use super::reply::{GarbageReply, Reply, parse_reply};

/// The name this client gives in EHLO.
const EHLO_NAME: &str = "load.chaos";

/// A step of the conversation, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Connect,
    Banner,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    /// Sending the dot-stuffed content and the final dot; no reply of its own.
    Content,
    /// The reply to the final dot.
    DataEnd,
}

impl Step {
    /// Whether any content may have left this host by the end of this step: from here
    /// on, a failure does not prove that nothing was stored.
    fn content_started(self) -> bool {
        matches!(self, Step::Content | Step::DataEnd)
    }

    /// Whether `reply` is the one that lets the conversation go on.
    fn accepts(self, reply: &Reply) -> bool {
        match self {
            Step::Banner => reply.code == 220,
            Step::Data => reply.code == 354,
            Step::Ehlo | Step::Mail | Step::Rcpt | Step::DataEnd => reply.class() == 2,
            Step::Connect | Step::Content => false,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Connect => "connect",
            Step::Banner => "banner",
            Step::Ehlo => "EHLO",
            Step::Mail => "MAIL",
            Step::Rcpt => "RCPT",
            Step::Data => "DATA",
            Step::Content => "content",
            Step::DataEnd => "final dot",
        })
    }
}

/// A step that got no reply.
#[derive(Debug)]
pub enum StepError {
    Timeout(Duration),
    /// The server closed the connection.
    Closed,
    Io(io::Error),
    Garbage(GarbageReply),
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Timeout(after) => write!(f, "timed out after {after:?}"),
            StepError::Closed => f.write_str("connection closed"),
            StepError::Io(error) => write!(f, "{error}"),
            StepError::Garbage(garbage) => write!(f, "{garbage}"),
        }
    }
}

/// What the sender may conclude when `step` ended with `result`; `None` if the step did
/// what was asked and the conversation goes on (after [`Step::DataEnd`], that means
/// [`Outcome::Ok`]). Steps without a reply (connect, content) pass only their failures.
///
/// - a 5xx at any step: [`Outcome::Fail`];
/// - anything else unwelcome before content was sent (a 4xx such as `421 4.3.2` from a
///   drained node or `451 4.3.0` without quorum, a banner other than 220, a timeout, a
///   closed connection, garbage, a failed connect): [`Outcome::Refused`], because the
///   server cannot have stored a message it never saw;
/// - anything else unwelcome once content was being sent (a 4xx to the final dot, a
///   timeout, a dropped connection, garbage): [`Outcome::Unknown`].
pub fn classify(step: Step, result: Result<&Reply, &StepError>) -> Option<Outcome> {
    match result {
        Ok(reply) if step.accepts(reply) => None,
        Ok(reply) if reply.class() == 5 => Some(Outcome::Fail),
        _ if step.content_started() => Some(Outcome::Unknown),
        _ => Some(Outcome::Refused),
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub outcome: Outcome,
    /// The last reply line, or `"{step}: {error}"`.
    pub reply: String,
    /// When the outcome was known (QUIT comes after).
    pub at: Instant,
}

impl Ended {
    fn new(step: Step, outcome: Outcome, result: Result<&Reply, &StepError>) -> Ended {
        let reply = match result {
            Ok(reply) => reply.last_line().to_owned(),
            Err(error) => format!("{step}: {error}"),
        };
        Ended {
            outcome,
            reply,
            at: Instant::now(),
        }
    }
}

/// Submits `message` to `addr` over a new connection.
pub async fn submit(addr: SocketAddr, message: &ChaosMessage, step_timeout: Duration) -> Ended {
    let connected = match timeout(step_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(StepError::Io(error)),
        Err(_) => Err(StepError::Timeout(step_timeout)),
    };
    match connected {
        Ok(stream) => {
            // One write per command; Nagle would hold each back for a delayed ACK.
            let _ = stream.set_nodelay(true);
            converse(stream, message, step_timeout).await
        }
        Err(error) => {
            let outcome = classify(Step::Connect, Err(&error)).unwrap_or(Outcome::Refused);
            Ended::new(Step::Connect, outcome, Err(&error))
        }
    }
}

/// Runs the whole conversation for `message` over `io`.
pub async fn converse<S>(io: S, message: &ChaosMessage, step_timeout: Duration) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = SmtpClient {
        io,
        input: Vec::new(),
        step_timeout,
    };
    let (ended, still_talking) = client.transaction(message).await;
    if still_talking {
        client.quit().await;
    }
    ended
}

/// The client side of one connection.
struct SmtpClient<S> {
    io: S,
    /// Bytes read but not yet parsed as a reply.
    input: Vec<u8>,
    step_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// The steps after connect; also says whether the server still expects a QUIT (it
    /// replied, and not with 421, which closes).
    async fn transaction(&mut self, message: &ChaosMessage) -> (Ended, bool) {
        let commands = [
            (Step::Banner, None),
            (Step::Ehlo, Some(format!("EHLO {EHLO_NAME}"))),
            (Step::Mail, Some(format!("MAIL FROM:<{}>", message.sender))),
            (Step::Rcpt, Some(format!("RCPT TO:<{}>", message.recipient))),
            (Step::Data, Some("DATA".to_owned())),
        ];
        for (step, command) in commands {
            let result = match command {
                Some(command) => self.command(&command).await,
                None => self.read_reply(self.step_timeout).await,
            };
            if let Some(outcome) = classify(step, result.as_ref()) {
                return (Ended::new(step, outcome, result.as_ref()), talking(&result));
            }
        }
        if let Err(error) = self.send(&dot_stuff(&message.content)).await {
            let outcome = classify(Step::Content, Err(&error)).unwrap_or(Outcome::Unknown);
            return (Ended::new(Step::Content, outcome, Err(&error)), false);
        }
        let result = self.read_reply(3 * self.step_timeout).await;
        let outcome = classify(Step::DataEnd, result.as_ref()).unwrap_or(Outcome::Ok);
        (
            Ended::new(Step::DataEnd, outcome, result.as_ref()),
            talking(&result),
        )
    }

    async fn quit(&mut self) {
        // The outcome is decided; QUIT only lets the server close cleanly.
        let _ = self.command("QUIT").await;
    }

    /// Sends one command line and reads its reply.
    async fn command(&mut self, line: &str) -> Result<Reply, StepError> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply(self.step_timeout).await
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), StepError> {
        let write = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        };
        match timeout(self.step_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(StepError::Io(error)),
            Err(_) => Err(StepError::Timeout(self.step_timeout)),
        }
    }

    /// The next whole reply, within `limit`.
    async fn read_reply(&mut self, limit: Duration) -> Result<Reply, StepError> {
        let read = async {
            loop {
                if let Some((reply, consumed)) =
                    parse_reply(&self.input).map_err(StepError::Garbage)?
                {
                    self.input.drain(..consumed);
                    return Ok(reply);
                }
                let mut chunk = [0u8; 4096];
                match self.io.read(&mut chunk).await {
                    Ok(0) => return Err(StepError::Closed),
                    Ok(read) => self.input.extend_from_slice(&chunk[..read]),
                    Err(error) => return Err(StepError::Io(error)),
                }
            }
        };
        timeout(limit, read)
            .await
            .unwrap_or(Err(StepError::Timeout(limit)))
    }
}

/// Whether the server is still in the conversation after `result`.
fn talking(result: &Result<Reply, StepError>) -> bool {
    matches!(result, Ok(reply) if reply.code != 421)
}

#[cfg(test)]
mod tests {
    use tokio::io::{DuplexStream, duplex};
    use tokio::task::JoinHandle;

    use super::*;

    fn reply(code: u16) -> Reply {
        Reply {
            code,
            lines: vec![format!("{code} text")],
        }
    }

    #[test]
    fn classification_table() {
        let before_content = [Step::Banner, Step::Ehlo, Step::Mail, Step::Rcpt, Step::Data];
        let errors = || {
            [
                StepError::Timeout(Duration::from_secs(1)),
                StepError::Closed,
                StepError::Io(io::ErrorKind::ConnectionReset.into()),
                StepError::Garbage(GarbageReply { line: "x".into() }),
            ]
        };
        for step in before_content {
            for code in [421, 450, 451, 452] {
                assert_eq!(classify(step, Ok(&reply(code))), Some(Outcome::Refused));
            }
            for code in [500, 550, 554] {
                assert_eq!(classify(step, Ok(&reply(code))), Some(Outcome::Fail));
            }
            for error in errors() {
                assert_eq!(classify(step, Err(&error)), Some(Outcome::Refused));
            }
        }
        for error in errors() {
            assert_eq!(classify(Step::Connect, Err(&error)), Some(Outcome::Refused));
            assert_eq!(classify(Step::Content, Err(&error)), Some(Outcome::Unknown));
            assert_eq!(classify(Step::DataEnd, Err(&error)), Some(Outcome::Unknown));
        }
        assert_eq!(classify(Step::Banner, Ok(&reply(220))), None);
        assert_eq!(
            classify(Step::Banner, Ok(&reply(250))),
            Some(Outcome::Refused)
        );
        assert_eq!(classify(Step::Ehlo, Ok(&reply(250))), None);
        assert_eq!(classify(Step::Mail, Ok(&reply(250))), None);
        assert_eq!(classify(Step::Rcpt, Ok(&reply(251))), None);
        assert_eq!(classify(Step::Data, Ok(&reply(354))), None);
        assert_eq!(
            classify(Step::Data, Ok(&reply(250))),
            Some(Outcome::Refused)
        );
        assert_eq!(classify(Step::DataEnd, Ok(&reply(250))), None, "None is Ok");
        assert_eq!(
            classify(Step::DataEnd, Ok(&reply(451))),
            Some(Outcome::Unknown)
        );
        assert_eq!(
            classify(Step::DataEnd, Ok(&reply(421))),
            Some(Outcome::Unknown)
        );
        assert_eq!(
            classify(Step::DataEnd, Ok(&reply(354))),
            Some(Outcome::Unknown)
        );
        assert_eq!(
            classify(Step::DataEnd, Ok(&reply(554))),
            Some(Outcome::Fail)
        );
    }

    /// What the scripted server does after sending its replies.
    #[derive(Debug)]
    enum Then {
        /// Closes its side (the client reads end of stream) but still reads.
        Close,
        /// Reads everything and says nothing more.
        StaySilent,
        /// Drops the connection once the client has sent this.
        DropAfter(&'static str),
    }

    /// A server that sends `replies` (one per step, banner first) at once, then does
    /// `then`; it returns what the client sent. The pipe holds only 256 bytes each way,
    /// so a client writing content to a server that went away sees the failure.
    fn scripted(replies: &[&str], then: Then) -> (DuplexStream, JoinHandle<Vec<u8>>) {
        let (client, mut server) = duplex(256);
        let replies: String = replies.iter().map(|r| format!("{r}\r\n")).collect();
        let serve = tokio::spawn(async move {
            let mut transcript = Vec::new();
            server.write_all(replies.as_bytes()).await.unwrap();
            if matches!(then, Then::Close) {
                server.shutdown().await.unwrap();
            }
            let mut chunk = [0u8; 1024];
            loop {
                match server.read(&mut chunk).await {
                    Ok(0) | Err(_) => return transcript,
                    Ok(read) => transcript.extend_from_slice(&chunk[..read]),
                }
                if let Then::DropAfter(marker) = then
                    && transcript
                        .windows(marker.len())
                        .any(|w| w == marker.as_bytes())
                {
                    return transcript;
                }
            }
        });
        (client, serve)
    }

    fn message() -> ChaosMessage {
        ChaosMessage::build(1, 3, "load@client.chaos", "example.test", 2000)
    }

    const GOOD: [&str; 5] = [
        "220 mx.test ESMTP",
        "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000000",
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "354 go ahead",
    ];

    #[tokio::test(start_paused = true)]
    async fn a_full_conversation_sends_the_expected_transcript() {
        let mut replies = GOOD.to_vec();
        replies.extend(["250 2.0.0 queued as 00000000002A", "221 bye"]);
        let (client, serve) = scripted(&replies, Then::StaySilent);
        let ended = converse(client, &message(), Duration::from_secs(2)).await;
        assert_eq!(ended.outcome, Outcome::Ok);
        assert_eq!(ended.reply, "250 2.0.0 queued as 00000000002A");

        let mut expected = b"EHLO load.chaos\r\nMAIL FROM:<load@client.chaos>\r\n\
            RCPT TO:<user3@example.test>\r\nDATA\r\n"
            .to_vec();
        expected.extend(dot_stuff(&message().content));
        expected.extend(b"QUIT\r\n");
        let transcript = serve.await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&transcript),
            String::from_utf8_lossy(&expected)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn endings_are_classified_at_every_step() {
        let cases: Vec<(Vec<&str>, Then, Outcome, &str)> = vec![
            (
                vec!["421 4.3.2 drained"],
                Then::Close,
                Outcome::Refused,
                "421 4.3.2 drained",
            ),
            (
                vec!["451 4.3.0 no quorum"],
                Then::Close,
                Outcome::Refused,
                "451 4.3.0 no quorum",
            ),
            (
                vec!["554 5.3.2 no"],
                Then::Close,
                Outcome::Fail,
                "554 5.3.2 no",
            ),
            (
                vec!["hello"],
                Then::StaySilent,
                Outcome::Refused,
                "banner: not an SMTP reply",
            ),
            (
                vec![],
                Then::Close,
                Outcome::Refused,
                "banner: connection closed",
            ),
            (
                vec![],
                Then::StaySilent,
                Outcome::Refused,
                "banner: timed out after 2s",
            ),
            (
                GOOD[..2].to_vec(),
                Then::Close,
                Outcome::Refused,
                "MAIL: connection closed",
            ),
            (
                [&GOOD[..2], &["451 4.3.0 later"]].concat(),
                Then::StaySilent,
                Outcome::Refused,
                "451 4.3.0 later",
            ),
            (
                [&GOOD[..3], &["550 5.1.1 no such user"]].concat(),
                Then::StaySilent,
                Outcome::Fail,
                "550 5.1.1 no such user",
            ),
            (
                [&GOOD[..4], &["250 not 354"]].concat(),
                Then::StaySilent,
                Outcome::Refused,
                "250 not 354",
            ),
            (
                GOOD.to_vec(),
                Then::DropAfter("DATA\r\n"),
                Outcome::Unknown,
                "content: ",
            ),
            (
                GOOD.to_vec(),
                Then::Close,
                Outcome::Unknown,
                "final dot: connection closed",
            ),
            (
                GOOD.to_vec(),
                Then::StaySilent,
                Outcome::Unknown,
                "final dot: timed out after 6s",
            ),
            (
                [&GOOD[..], &["451 4.3.0 replication timed out"]].concat(),
                Then::StaySilent,
                Outcome::Unknown,
                "451 4.3.0 replication timed out",
            ),
            (
                [&GOOD[..], &["554 5.6.0 rejected"]].concat(),
                Then::StaySilent,
                Outcome::Fail,
                "554 5.6.0 rejected",
            ),
            (
                [&GOOD[..], &["2.0.0 queued"]].concat(),
                Then::StaySilent,
                Outcome::Unknown,
                "final dot: not an SMTP reply",
            ),
        ];
        for (replies, then, outcome, reply) in cases {
            let what = format!("{replies:?} then {then:?}");
            let (client, serve) = scripted(&replies, then);
            let ended = converse(client, &message(), Duration::from_secs(2)).await;
            assert_eq!(ended.outcome, outcome, "{what}: {}", ended.reply);
            assert!(ended.reply.starts_with(reply), "{what}: {}", ended.reply);
            serve.await.unwrap();
        }
    }

    /// A slow peer on the paused clock: each reply trickles in three bytes at a time,
    /// the EHLO reply over most of its step timeout.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reply_arriving_in_pieces_is_still_one_reply() {
        let (client, mut server) = duplex(1 << 20);
        let replies: Vec<&str> = GOOD.iter().copied().chain(["250 2.0.0 ok"]).collect();
        let serve = tokio::spawn(async move {
            for reply in replies {
                for piece in format!("{reply}\r\n").as_bytes().chunks(3) {
                    server.write_all(piece).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            server
        });
        let ended = converse(client, &message(), Duration::from_secs(2)).await;
        assert_eq!(ended.outcome, Outcome::Ok, "{}", ended.reply);
        drop(serve.await.unwrap());
    }
}
