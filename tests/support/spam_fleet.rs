//! The harness of the spam-check end-to-end tests: an SMTP listener in front of one
//! node's queue whose checks run over the node's replicated spam state (built by
//! `mxfleet_node::spam_setup::build`, as `Node::start` does), a manual clock a whole
//! cluster shares, and two clients nobody here wrote: lettre (a whole message, or a
//! transcript that stops after RCPT) and Python's smtplib.
//!
//! Layout:
//! - [`ManualClock`]: the queue's wall clock, moved only by the test.
//! - [`spam_setup`]: a `SpamSetup` with one relay domain and one check.
//! - [`SpamEndpoint`]: the listener, its spam checks and their fact batcher.
//! - [`send`], [`rcpt`], [`send_with_smtplib`]: the clients; [`reply_line`] and
//!   [`queued_id`] read their answers.

#![allow(dead_code)]

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mxfleet_core::{QueueId, UnixMillis};
use mxfleet_delivery::RecipientVerifier;
use mxfleet_node::intake::QueueIntake;
use mxfleet_node::spam_setup::{self, SpamSetup};
use mxfleet_queue::{Clock, Queue, SystemClock};
use mxfleet_smtp::checks::config::SpamConfig;
use mxfleet_smtp::checks::{Check, CheckSet};
use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::listener::ConnectionLimits;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy};
use mxfleet_smtp::{MessageIntake, PolicyHandle, SessionConfig, SessionLimits};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long one client conversation may take on a loaded machine.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A wall clock that stands still until the test moves it, shared by every node of a
/// cluster (`QueueConfig::clock`), so that greylisting's delay passes without waiting.
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// Starts at the real time, so that records look like ordinary ones.
    pub fn starting_now() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now_ms: AtomicU64::new(SystemClock.now().0),
        })
    }

    pub fn advance(&self, by: Duration) {
        self.now_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.now_ms.load(Ordering::SeqCst))
    }
}

/// Spam checks for one relay domain applying `check`. `primaries` are the static next
/// hops (`host:port`), never greylisted, as the node derives them from its routes.
pub fn spam_setup(domain: &str, check: Check, primaries: Vec<String>) -> SpamSetup {
    let mut config = SpamConfig::default();
    config
        .domain_checks
        .insert(domain.to_string(), CheckSet::from([check]));
    SpamSetup {
        config,
        dns_servers: Vec::new(),
        primaries,
    }
}

/// An SMTP listener in front of one node's queue, catch-all for the relay domains of
/// its spam config. Owns the tracker of its sessions and of its spam-fact batcher:
/// `stop` ends both, before the node's queue is stopped.
pub struct SpamEndpoint {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl SpamEndpoint {
    /// `verifier` asks the primary about recipients (`None`: the node does not
    /// deliver); `report_fresh_for` is how long a primary-watch report counts.
    pub async fn start(
        queue: &Queue,
        setup: &SpamSetup,
        verifier: Option<RecipientVerifier>,
        report_fresh_for: Duration,
    ) -> SpamEndpoint {
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let fleet = spam_setup::FleetSpamParts::start(
            setup,
            queue,
            verifier,
            report_fresh_for,
            &tracker,
            shutdown.clone(),
        );
        let checks = spam_setup::build(setup, &fleet)
            .await
            .expect("spam checks build");
        let policy = RelayPolicy::new(
            setup
                .config
                .domain_checks
                .keys()
                .map(|domain| (domain.clone(), RecipientRule::CatchAll))
                .collect(),
        );
        let session = Arc::new(SessionConfig {
            hostname: format!("node{}.test", queue.node_id()),
            limits: SessionLimits::default(),
            bare_line_endings: BareLineEndings::Reject,
            tls: None,
            policy: Arc::new(PolicyHandle::new(policy)),
            etrn_networks: Vec::new(),
            metrics: Default::default(),
            spam: Arc::new(checks),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind SMTP listener");
        let addr = listener.local_addr().expect("listener address");
        let intake: Arc<dyn MessageIntake> = Arc::new(QueueIntake::new(queue.clone()));
        tracker.spawn(mxfleet_smtp::listener::serve(
            listener,
            session,
            ConnectionLimits::default(),
            intake,
            shutdown.clone(),
            tracker.clone(),
        ));
        SpamEndpoint {
            addr,
            shutdown,
            tracker,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(15), self.tracker.wait())
            .await
            .expect("SMTP sessions and the fact batcher stop");
    }
}

/// A whole message from `from` to `to` through lettre's SMTP transport.
pub async fn send(
    addr: SocketAddr,
    from: &str,
    to: &str,
    subject: &str,
) -> Result<Response, lettre::transport::smtp::Error> {
    let message = Message::builder()
        .from(from.parse().expect("sender mailbox"))
        .to(to.parse().expect("recipient mailbox"))
        .subject(subject)
        .body(format!("{subject}\r\n"))
        .expect("message builds");
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .timeout(Some(CLIENT_TIMEOUT))
        .build()
        .send(message)
        .await
}

/// A transcript through lettre's connection: EHLO, `MAIL FROM:<from>`,
/// `RCPT TO:<to>`, QUIT; never DATA. Returns the RCPT reply.
pub async fn rcpt(addr: SocketAddr, from: &str, to: &str) -> String {
    let hello = ClientId::Domain("client.example".into());
    let mut connection =
        AsyncSmtpConnection::connect_tokio1(addr, Some(CLIENT_TIMEOUT), &hello, None, None)
            .await
            .expect("connect and EHLO");
    let from = from.parse().expect("sender address");
    connection
        .command(Mail::new(Some(from), Vec::new()))
        .await
        .expect("MAIL accepted");
    let to = to.parse().expect("recipient address");
    let reply = reply_line(connection.command(Rcpt::new(to, Vec::new())).await);
    let _ = connection.quit().await;
    reply
}

/// A reply as one line, `code text` (e.g. `451 4.7.1 <x>: ...`), whether lettre took
/// it as a success or as an error.
pub fn reply_line(result: Result<Response, lettre::transport::smtp::Error>) -> String {
    match result {
        Ok(response) => format!(
            "{} {}",
            response.code(),
            response.message().collect::<Vec<_>>().join(" ")
        ),
        Err(error) => match (error.status(), error.source()) {
            (Some(code), Some(text)) => format!("{code} {text}"),
            _ => panic!("no SMTP reply: {error}"),
        },
    }
}

/// Parses "Ok: queued as 00000000000A" out of a 250 reply line.
pub fn queued_id(line: &str) -> QueueId {
    let hex = line
        .rsplit("queued as ")
        .next()
        .expect("queue id in reply")
        .trim();
    hex.parse()
        .unwrap_or_else(|_| panic!("no queue id in {line:?}"))
}

/// Python's smtplib: EHLO, MAIL, RCPT, and DATA when RCPT got 250. Prints one line per
/// reply.
const SMTPLIB_CLIENT: &str = r#"
import smtplib, sys
port, sender, rcpt, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
s.ehlo("python.client.example")
s.mail(sender)
code, reply = s.rcpt(rcpt)
print(code, reply.decode())
if code == 250:
    msg = "From: " + sender + "\r\nTo: " + rcpt + "\r\nSubject: " + subject + "\r\n\r\nhello\r\n"
    code, reply = s.data(msg)
    print(code, reply.decode())
s.quit()
"#;

/// Sends one message with Python's smtplib; returns the RCPT reply and, when RCPT was
/// accepted, the DATA reply.
pub async fn send_with_smtplib(
    addr: SocketAddr,
    from: &str,
    to: &str,
    subject: &str,
) -> Vec<String> {
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SMTPLIB_CLIENT)
        .arg(addr.port().to_string())
        .arg(from)
        .arg(to)
        .arg(subject)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "smtplib: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_string).collect()
}
