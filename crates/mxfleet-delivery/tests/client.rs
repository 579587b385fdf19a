//! The outbound SMTP client against `SinkMx`, a scriptable primary on loopback: plain and
//! pipelined delivery, per-recipient results, several messages per connection,
//! STARTTLS under each policy, SIZE, dot-stuffing, and every way a connection can fail.

use std::net::SocketAddr;
use std::time::Duration;

use mxfleet_delivery::client::{
    ClientError, ClientOptions, OutgoingMessage, SendOutcome, SmtpConnection, Stage, TlsPolicy,
};
use mxfleet_delivery::{ConnectTarget, Severity};
use mxfleet_testkit::sink::{Behavior, SinkMx};
use mxfleet_testkit::tls::TestCa;
use mxfleet_testkit::{init_test_logging, wait_for};

const PREFIX: &[u8] =
    b"Received: from relay.test by backup.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n";
const BODY: &[u8] = b"Message-ID: <one@example.org>\r\nSubject: hi\r\n\r\nHello.\r\n";

fn target(host: &str, addr: SocketAddr) -> ConnectTarget {
    ConnectTarget {
        host: host.into(),
        addr,
        preference: Some(10),
    }
}

fn options(tls: TlsPolicy) -> ClientOptions {
    ClientOptions {
        tls,
        ..ClientOptions::new("backup.test")
    }
}

fn message(recipients: &[&str], body: &[u8]) -> OutgoingMessage {
    OutgoingMessage {
        sender: "alice@example.org".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        size: body.len() as u64,
        prefix: PREFIX.to_vec(),
        not_after: None,
    }
}

async fn connect(sink: &SinkMx, tls: TlsPolicy) -> SmtpConnection {
    SmtpConnection::connect(&target("localhost", sink.addr()), &options(tls))
        .await
        .expect("connects")
}

async fn send(connection: &mut SmtpConnection, recipients: &[&str], body: &[u8]) -> SendOutcome {
    connection
        .send(&message(recipients, body), body)
        .await
        .expect("transaction completes")
}

/// `(recipient, code, status)` per recipient, for compact assertions.
fn summary(outcome: &SendOutcome) -> Vec<(&str, u16, Option<&str>)> {
    outcome
        .recipients
        .iter()
        .map(|r| {
            (
                r.recipient.as_str(),
                r.reply.code,
                r.reply.status.as_deref(),
            )
        })
        .collect()
}

fn with_prefix(body: &[u8]) -> Vec<u8> {
    [PREFIX, body].concat()
}

#[tokio::test]
async fn plain_delivery_arrives_byte_for_byte() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    assert!(connection.tls().is_none(), "the sink offers no STARTTLS");
    assert!(connection.capabilities().pipelining);

    let outcome = send(&mut connection, &["bob@example.net"], BODY).await;
    assert_eq!(summary(&outcome), [("bob@example.net", 250, Some("2.0.0"))]);
    assert_eq!(outcome.delivered().count(), 1);
    connection.quit().await;

    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].from, "alice@example.org");
    assert_eq!(received[0].rcpts, ["bob@example.net"]);
    assert_eq!(received[0].data, with_prefix(BODY));
    assert_eq!(received[0].message_id.as_deref(), Some("<one@example.org>"));
    assert!(!received[0].tls);
}

#[tokio::test]
async fn pipelined_partial_failure_gives_each_recipient_its_reply() {
    init_test_logging();
    let sink = SinkMx::start().await;
    sink.set_behavior(
        Behavior::accept()
            .rcpt_reply("bad@example.net", "550 5.1.1 no such user")
            .rcpt_reply("later@example.net", "451 4.2.0 mailbox busy"),
    );
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    let recipients = ["bad@example.net", "later@example.net", "good@example.net"];
    let outcome = send(&mut connection, &recipients, BODY).await;

    assert_eq!(
        summary(&outcome),
        [
            ("bad@example.net", 550, Some("5.1.1")),
            ("later@example.net", 451, Some("4.2.0")),
            ("good@example.net", 250, Some("2.0.0")),
        ]
    );
    assert_eq!(outcome.recipients[0].reply.text, "no such user");
    assert_eq!(outcome.recipients[0].severity(), Severity::Permanent);
    assert_eq!(outcome.recipients[1].severity(), Severity::Temporary);
    assert!(outcome.recipients[2].is_delivered());
    assert_eq!(sink.received()[0].rcpts, ["good@example.net"]);
}

#[tokio::test]
async fn without_pipelining_the_same_results_come_step_by_step() {
    init_test_logging();
    let sink = SinkMx::builder()
        .pipelining(false)
        .behavior(Behavior::accept().rcpt_reply("bad@example.net", "550 5.1.1 no such user"))
        .start()
        .await;
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    assert!(!connection.capabilities().pipelining);
    let outcome = send(
        &mut connection,
        &["bad@example.net", "good@example.net"],
        BODY,
    )
    .await;
    assert_eq!(
        summary(&outcome),
        [
            ("bad@example.net", 550, Some("5.1.1")),
            ("good@example.net", 250, Some("2.0.0")),
        ]
    );
    // Every recipient refused: no DATA, and the next message still goes through.
    let refused = send(&mut connection, &["bad@example.net"], BODY).await;
    assert_eq!(summary(&refused), [("bad@example.net", 550, Some("5.1.1"))]);
    let next = send(&mut connection, &["good@example.net"], BODY).await;
    assert_eq!(next.delivered().count(), 1);
    assert_eq!(sink.received().len(), 2);
}

#[tokio::test]
async fn several_messages_share_one_connection_even_after_refusals() {
    init_test_logging();
    let sink = SinkMx::start().await;
    sink.set_behavior(Behavior::accept().rcpt_reply("bad@example.net", "550 5.1.1 no such user"));
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;

    let first = send(&mut connection, &["one@example.net"], b"first\r\n").await;
    // All recipients refused, so the pipelined DATA is refused too and must be skipped.
    let refused = send(&mut connection, &["bad@example.net"], b"never\r\n").await;
    let third = send(
        &mut connection,
        &["two@example.net", "three@example.net"],
        b"third\r\n",
    )
    .await;

    assert_eq!(first.delivered().count(), 1);
    assert_eq!(summary(&refused), [("bad@example.net", 550, Some("5.1.1"))]);
    assert_eq!(third.delivered().count(), 2);
    assert!(connection.is_usable());
    connection.quit().await;

    let received = sink.received();
    let bodies: Vec<Vec<u8>> = received.iter().map(|m| m.data.clone()).collect();
    assert_eq!(
        bodies,
        [with_prefix(b"first\r\n"), with_prefix(b"third\r\n")]
    );
    assert_eq!(received[1].rcpts, ["two@example.net", "three@example.net"]);
    assert_eq!(sink.connections(), 1);
}

#[tokio::test]
async fn mail_refusal_applies_to_every_recipient() {
    init_test_logging();
    let sink = SinkMx::start().await;
    sink.set_behavior(Behavior::temp_fail_mail());
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    let outcome = send(&mut connection, &["a@example.net", "b@example.net"], BODY).await;
    assert_eq!(
        summary(&outcome),
        [
            ("a@example.net", 451, Some("4.3.0")),
            ("b@example.net", 451, Some("4.3.0")),
        ]
    );
    assert!(
        outcome
            .failed()
            .all(|r| r.severity() == Severity::Temporary)
    );

    sink.set_behavior(Behavior::accept());
    let retried = send(&mut connection, &["a@example.net"], BODY).await;
    assert_eq!(retried.delivered().count(), 1);
}

#[tokio::test]
async fn final_dot_refusal_decides_only_the_accepted_recipients() {
    init_test_logging();
    let sink = SinkMx::start().await;
    sink.set_behavior(
        Behavior::perm_fail_data().rcpt_reply("later@example.net", "452 4.2.2 mailbox full"),
    );
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    let outcome = send(
        &mut connection,
        &["a@example.net", "later@example.net"],
        BODY,
    )
    .await;
    assert_eq!(
        summary(&outcome),
        [
            ("a@example.net", 554, Some("5.7.1")),
            ("later@example.net", 452, Some("4.2.2")),
        ]
    );
    assert_eq!(outcome.recipients[0].severity(), Severity::Permanent);
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn lines_starting_with_a_dot_arrive_intact_across_chunks() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    // Larger than the client's 64 KiB chunk, so `\r\n` and `.` straddle reads.
    let mut body = b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n".to_vec();
    while body.len() < 300_000 {
        body.extend_from_slice(b"..two dots\r\n.\r\nplain line\r\n.");
        body.extend_from_slice(b"x\r\n");
    }
    let outcome = send(&mut connection, &["bob@example.net"], &body).await;
    assert_eq!(outcome.delivered().count(), 1);
    assert_eq!(sink.received()[0].data, with_prefix(&body));
}

#[tokio::test]
async fn content_without_final_crlf_gets_one() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    let outcome = send(
        &mut connection,
        &["bob@example.net"],
        b"Subject: x\r\n\r\nno end",
    )
    .await;
    assert_eq!(outcome.delivered().count(), 1);
    assert_eq!(
        sink.received()[0].data,
        with_prefix(b"Subject: x\r\n\r\nno end\r\n")
    );
}

#[tokio::test]
async fn size_over_the_announced_limit_is_permanent_without_mail() {
    init_test_logging();
    let sink = SinkMx::builder().size_limit(1000).start().await;
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    assert_eq!(connection.capabilities().size_limit, Some(1000));
    let body = vec![b'x'; 2000];
    let outcome = send(&mut connection, &["a@example.net", "b@example.net"], &body).await;
    for result in &outcome.recipients {
        assert_eq!(
            (result.reply.code, result.reply.status.as_deref()),
            (552, Some("5.3.4"))
        );
        assert!(result.reply.text.contains("1000"), "{}", result.reply.text);
        assert_eq!(result.severity(), Severity::Permanent);
    }
    connection.quit().await;
    // The session never saw MAIL: EHLO then QUIT is a probe.
    wait_for("the probe to be counted", Duration::from_secs(5), || {
        sink.probes() == 1
    })
    .await;
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn starttls_opportunistic_accepts_any_certificate() {
    init_test_logging();
    let ca = TestCa::new("unknown CA");
    let leaf = ca.issue("sink");
    let sink = SinkMx::start_with_tls(&leaf.cert_pem, &leaf.key_pem).await;
    // The certificate names neither this host nor a public CA: fine when opportunistic.
    let options = options(TlsPolicy::Opportunistic);
    let mut connection =
        SmtpConnection::connect(&target("mx.other.example", sink.addr()), &options)
            .await
            .expect("connects");
    let tls = connection.tls().expect("TLS is on").clone();
    assert!(!tls.verified);
    assert!(tls.protocol.starts_with("TLSv1_"), "{tls:?}");
    assert!(
        !connection.capabilities().starttls,
        "EHLO inside TLS offers no STARTTLS"
    );

    let outcome = send(&mut connection, &["bob@example.net"], BODY).await;
    assert_eq!(outcome.delivered().count(), 1);
    let received = sink.received();
    assert!(received[0].tls);
    assert_eq!(received[0].data, with_prefix(BODY));
}

#[tokio::test]
async fn starttls_can_be_disabled() {
    init_test_logging();
    let leaf = TestCa::new("ca").issue("sink");
    let sink = SinkMx::start_with_tls(&leaf.cert_pem, &leaf.key_pem).await;
    let mut connection = connect(&sink, TlsPolicy::Disabled).await;
    assert!(connection.tls().is_none());
    assert!(connection.capabilities().starttls);
    send(&mut connection, &["bob@example.net"], BODY).await;
    assert!(!sink.received()[0].tls);
}

#[tokio::test]
async fn verify_succeeds_with_the_test_ca_as_extra_root() {
    init_test_logging();
    let ca = TestCa::new("test CA");
    let leaf = ca.issue("sink");
    let sink = SinkMx::start_with_tls(&leaf.cert_pem, &leaf.key_pem).await;
    let policy = TlsPolicy::Verify {
        extra_roots_pem: Some(ca.ca_pem().into_bytes()),
    };
    let mut connection = connect(&sink, policy).await;
    assert!(connection.tls().expect("TLS is on").verified);
    let outcome = send(&mut connection, &["bob@example.net"], BODY).await;
    assert_eq!(outcome.delivered().count(), 1);
    assert!(sink.received()[0].tls);
}

#[tokio::test]
async fn verify_fails_on_a_wrong_name_as_a_temporary_tls_error() {
    init_test_logging();
    let ca = TestCa::new("test CA");
    let leaf = ca.issue("sink");
    let sink = SinkMx::start_with_tls(&leaf.cert_pem, &leaf.key_pem).await;
    let policy = TlsPolicy::Verify {
        extra_roots_pem: Some(ca.ca_pem().into_bytes()),
    };
    let error = SmtpConnection::connect(&target("mx.wrong.example", sink.addr()), &options(policy))
        .await
        .err()
        .expect("the certificate does not name mx.wrong.example");
    assert!(matches!(error, ClientError::Tls { .. }), "{error}");
    assert_eq!(error.stage(), Stage::Starttls);
    assert_eq!(error.severity(), Severity::Temporary);
}

#[tokio::test]
async fn verify_fails_without_the_test_ca() {
    init_test_logging();
    let leaf = TestCa::new("test CA").issue("sink");
    let sink = SinkMx::start_with_tls(&leaf.cert_pem, &leaf.key_pem).await;
    let policy = TlsPolicy::Verify {
        extra_roots_pem: None,
    };
    let error = SmtpConnection::connect(&target("localhost", sink.addr()), &options(policy))
        .await
        .err()
        .expect("an unknown CA is refused");
    assert!(matches!(error, ClientError::Tls { .. }), "{error}");
}

#[tokio::test]
async fn required_tls_without_starttls_offer_is_temporary() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let error = SmtpConnection::connect(
        &target("localhost", sink.addr()),
        &options(TlsPolicy::Required),
    )
    .await
    .err()
    .expect("no STARTTLS offered");
    assert!(
        matches!(error, ClientError::StartTlsNotOffered { .. }),
        "{error}"
    );
    assert_eq!(error.severity(), Severity::Temporary);
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn drop_after_data_is_lost_after_dot() {
    init_test_logging();
    let sink = SinkMx::start().await;
    sink.set_behavior(Behavior::drop_after_data());
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    let error = connection
        .send(&message(&["bob@example.net"], BODY), BODY)
        .await
        .expect_err("no reply to the final dot");
    assert!(error.is_lost_after_dot(), "{error}");
    assert_eq!(error.severity(), Severity::Temporary);
    assert_eq!(sink.dropped(), 1, "the sink read the whole message first");

    // The connection is done; it says so instead of trying.
    assert!(!connection.is_usable());
    let again = connection
        .send(&message(&["bob@example.net"], BODY), BODY)
        .await
        .expect_err("unusable");
    assert!(
        matches!(
            again,
            ClientError::Unusable {
                stage: Stage::Dot,
                ..
            }
        ),
        "{again}"
    );
}

#[tokio::test]
async fn slow_final_reply_beyond_the_timeout_is_lost_after_dot() {
    init_test_logging();
    let sink = SinkMx::start().await;
    sink.set_behavior(Behavior::slow(Duration::from_secs(10)));
    let mut options = options(TlsPolicy::Opportunistic);
    options.timeouts.data_termination = Duration::from_millis(300);
    let mut connection = SmtpConnection::connect(&target("localhost", sink.addr()), &options)
        .await
        .expect("connects");
    let error = connection
        .send(&message(&["bob@example.net"], BODY), BODY)
        .await
        .expect_err("times out");
    let ClientError::LostAfterDot { source, .. } = &error else {
        panic!("expected LostAfterDot, got {error}");
    };
    assert!(
        matches!(
            **source,
            ClientError::Timeout {
                stage: Stage::Dot,
                ..
            }
        ),
        "{source}"
    );
    assert_eq!(error.severity(), Severity::Temporary);
}

#[tokio::test]
async fn slow_greeting_beyond_the_timeout_is_a_temporary_timeout() {
    init_test_logging();
    let sink = SinkMx::start().await;
    sink.set_behavior(Behavior::slow_greeting(Duration::from_secs(10)));
    let mut options = options(TlsPolicy::Opportunistic);
    options.timeouts.greeting = Duration::from_millis(300);
    let error = SmtpConnection::connect(&target("localhost", sink.addr()), &options)
        .await
        .err()
        .expect("times out");
    assert!(
        matches!(
            error,
            ClientError::Timeout {
                stage: Stage::Greeting,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.severity(), Severity::Temporary);
}

#[tokio::test]
async fn refused_greeting_is_temporary_and_carries_the_reply() {
    init_test_logging();
    let sink = SinkMx::start().await;
    sink.set_behavior(Behavior::temp_fail_greeting());
    let error = SmtpConnection::connect(
        &target("localhost", sink.addr()),
        &options(TlsPolicy::Opportunistic),
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(error.stage(), Stage::Greeting);
    assert_eq!(error.reply().map(|r| r.code), Some(421));
    assert_eq!(error.severity(), Severity::Temporary);
}

#[tokio::test]
async fn connect_refused_is_temporary_until_the_primary_is_back() {
    init_test_logging();
    let mut sink = SinkMx::start().await;
    let target = target("localhost", sink.addr());
    let options = options(TlsPolicy::Opportunistic);
    sink.stop().await;

    let error = SmtpConnection::connect(&target, &options)
        .await
        .err()
        .expect("nobody listens");
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
    assert_eq!(error.severity(), Severity::Temporary);

    sink.restart().await;
    let mut connection = SmtpConnection::connect(&target, &options)
        .await
        .expect("the primary is back on the same port");
    let outcome = send(&mut connection, &["bob@example.net"], BODY).await;
    assert_eq!(outcome.delivered().count(), 1);
}

#[tokio::test]
async fn stop_drops_open_sessions() {
    init_test_logging();
    let mut sink = SinkMx::start().await;
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    sink.stop().await;
    let error = connection
        .send(&message(&["bob@example.net"], BODY), BODY)
        .await
        .expect_err("the primary went dark");
    assert_eq!(error.severity(), Severity::Temporary);
    assert!(!error.is_lost_after_dot(), "{error}");
}

#[tokio::test]
async fn bind_address_is_used_as_the_source() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let mut options = options(TlsPolicy::Opportunistic);
    options.bind_address = Some("127.0.0.1".parse().expect("literal address"));
    let mut connection = SmtpConnection::connect(&target("localhost", sink.addr()), &options)
        .await
        .expect("connects from 127.0.0.1");
    assert_eq!(
        send(&mut connection, &["bob@example.net"], BODY)
            .await
            .delivered()
            .count(),
        1
    );
}

/// The server's end of an in-memory connection, driven line by line by a test.
struct ScriptedServer {
    stream: tokio::io::DuplexStream,
    input: Vec<u8>,
}

impl ScriptedServer {
    /// A client end, and the server end that has already sent `greeting`.
    async fn start(greeting: &str) -> (tokio::io::DuplexStream, ScriptedServer) {
        let (client, stream) = tokio::io::duplex(1 << 20);
        let mut server = ScriptedServer {
            stream,
            input: Vec::new(),
        };
        server.say(greeting).await;
        (client, server)
    }

    async fn say(&mut self, wire: &str) {
        use tokio::io::AsyncWriteExt;
        self.stream
            .write_all(wire.as_bytes())
            .await
            .expect("server writes");
    }

    /// Reads until `expected` arrived and asserts that nothing else did.
    async fn expect(&mut self, expected: &str) {
        use tokio::io::AsyncReadExt;
        while self.input.len() < expected.len() {
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk).await.expect("server reads");
            assert!(read > 0, "client closed; still expected {expected:?}");
            self.input.extend_from_slice(&chunk[..read]);
        }
        let got: Vec<u8> = self.input.drain(..).collect();
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    /// Reads exactly one chunk: what the client sent in one write.
    async fn expect_one_write(&mut self, expected: &str) {
        use tokio::io::AsyncReadExt;
        assert!(self.input.is_empty());
        let mut chunk = vec![0u8; 1 << 16];
        let read = self.stream.read(&mut chunk).await.expect("server reads");
        assert_eq!(String::from_utf8_lossy(&chunk[..read]), expected);
    }
}

fn scripted_target() -> ConnectTarget {
    target(
        "mx.scripted.example",
        "192.0.2.25:25".parse().expect("literal address"),
    )
}

#[tokio::test]
async fn ehlo_refused_falls_back_to_helo_and_plain_smtp() {
    init_test_logging();
    let (client, mut server) = ScriptedServer::start("220 old.example SMTP\r\n").await;
    let server_side = async move {
        server.expect("EHLO backup.test\r\n").await;
        server.say("502 5.5.2 what?\r\n").await;
        server.expect("HELO backup.test\r\n").await;
        server.say("250 old.example\r\n").await;
        // No extensions: no SIZE, no BODY, one command per reply.
        server.expect("MAIL FROM:<alice@example.org>\r\n").await;
        server.say("250 ok\r\n").await;
        server.expect("RCPT TO:<bob@example.net>\r\n").await;
        server.say("250 ok\r\n").await;
        server.expect("DATA\r\n").await;
        server.say("354 go\r\n").await;
        server
            .expect(&format!("{}..hi\r\n.\r\n", String::from_utf8_lossy(PREFIX)))
            .await;
        server.say("250 ok queued\r\n").await;
        server.expect("QUIT\r\n").await;
        server.say("221 bye\r\n").await;
    };
    let client_side = async move {
        let options = options(TlsPolicy::Opportunistic);
        let mut connection = SmtpConnection::open(client, &scripted_target(), &options)
            .await
            .expect("HELO is enough");
        assert!(!connection.capabilities().extended);
        let outcome = send(&mut connection, &["bob@example.net"], b".hi").await;
        assert_eq!(summary(&outcome), [("bob@example.net", 250, None)]);
        connection.quit().await;
    };
    tokio::join!(server_side, client_side);
}

#[tokio::test]
async fn pipelined_commands_go_in_one_write_and_a_stray_354_is_closed_off() {
    init_test_logging();
    let (client, mut server) = ScriptedServer::start("220 mx ESMTP\r\n").await;
    let server_side = async move {
        server.expect("EHLO backup.test\r\n").await;
        server
            .say("250-mx\r\n250-PIPELINING\r\n250 SIZE 100000\r\n")
            .await;
        let size = PREFIX.len() + 3;
        server
            .expect_one_write(&format!(
                "MAIL FROM:<alice@example.org> SIZE={size}\r\n\
                 RCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
            ))
            .await;
        // A sloppy server: both recipients refused, yet DATA gets 354.
        server
            .say("250 ok\r\n550 5.1.1 no a\r\n550-5.1.1 no\r\n550 5.1.1 b\r\n354 go\r\n")
            .await;
        server.expect(".\r\n").await;
        server.say("554 5.5.1 no valid recipients\r\n").await;
        // The next transaction starts with RSET.
        server.expect("RSET\r\n").await;
        server.say("250 2.0.0 ok\r\n").await;
        server
            .expect_one_write(&format!(
                "MAIL FROM:<alice@example.org> SIZE={size}\r\nRCPT TO:<a@example.net>\r\nDATA\r\n",
            ))
            .await;
        server.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        server
            .expect(&format!(
                "{}{}.\r\n",
                String::from_utf8_lossy(PREFIX),
                "x\r\n"
            ))
            .await;
        server.say("250 2.0.0 queued\r\n").await;
    };
    let client_side = async move {
        let options = options(TlsPolicy::Opportunistic);
        let mut connection = SmtpConnection::open(client, &scripted_target(), &options)
            .await
            .expect("opens");
        let refused = send(
            &mut connection,
            &["a@example.net", "b@example.net"],
            b"x\r\n",
        )
        .await;
        assert_eq!(
            summary(&refused),
            [
                ("a@example.net", 550, Some("5.1.1")),
                ("b@example.net", 550, Some("5.1.1")),
            ]
        );
        assert_eq!(refused.recipients[1].reply.text, "no b");
        let delivered = send(&mut connection, &["a@example.net"], b"x\r\n").await;
        assert_eq!(summary(&delivered), [("a@example.net", 250, Some("2.0.0"))]);
    };
    tokio::join!(server_side, client_side);
}

#[tokio::test]
async fn a_421_to_mail_settles_every_recipient_even_if_the_server_hangs_up() {
    init_test_logging();
    let (client, mut server) = ScriptedServer::start("220 mx ESMTP\r\n").await;
    let server_side = async move {
        server.expect("EHLO backup.test\r\n").await;
        server.say("250-mx\r\n250 PIPELINING\r\n").await;
        server
            .expect_one_write(
                "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n",
            )
            .await;
        server.say("421 4.3.2 shutting down\r\n").await;
        drop(server);
    };
    let client_side = async move {
        let options = options(TlsPolicy::Opportunistic);
        let mut connection = SmtpConnection::open(client, &scripted_target(), &options)
            .await
            .expect("opens");
        let outcome = send(&mut connection, &["a@example.net"], b"x\r\n").await;
        assert_eq!(summary(&outcome), [("a@example.net", 421, Some("4.3.2"))]);
        assert!(!connection.is_usable(), "the server hung up");
    };
    tokio::join!(server_side, client_side);
}

#[tokio::test]
async fn malformed_replies_are_temporary_errors_not_panics() {
    init_test_logging();
    for greeting in ["hello there\r\n", "2200 almost\r\n", "999 odd\r\n"] {
        let (client, server) = ScriptedServer::start(greeting).await;
        let options = options(TlsPolicy::Opportunistic);
        let error = SmtpConnection::open(client, &scripted_target(), &options)
            .await
            .err()
            .expect("not a greeting");
        assert!(
            matches!(error, ClientError::MalformedReply { .. }),
            "{greeting:?}: {error}"
        );
        assert_eq!(error.severity(), Severity::Temporary);
        drop(server);
    }
}

#[tokio::test]
async fn the_final_dot_is_never_written_after_the_delivery_window_closes() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    let (window, deadline) = tokio::sync::watch::channel(tokio::time::Instant::now());
    let mut closed = message(&["bob@example.net"], BODY);
    closed.not_after = Some(deadline.clone());
    let error = connection
        .send(&closed, BODY)
        .await
        .expect_err("the window had closed before the dot");
    assert!(matches!(error, ClientError::WindowClosed { .. }), "{error}");
    assert!(!connection.is_usable());
    drop(connection);

    // A renewal moves the deadline: the same message then goes through.
    window.send_replace(tokio::time::Instant::now() + Duration::from_secs(60));
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    let mut open = message(&["bob@example.net"], BODY);
    open.not_after = Some(deadline);
    let outcome = connection.send(&open, BODY).await.unwrap();
    assert_eq!(outcome.delivered().count(), 1);
    connection.quit().await;
    let received = sink.received();
    assert_eq!(
        received.len(),
        1,
        "only the second attempt reached the sink"
    );
}

#[tokio::test]
async fn a_body_that_fails_its_digest_at_the_end_is_never_ended_with_a_dot() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("body");
    // The stored bytes differ from the ones accepted (named by the digest): the reader
    // the queue hands out fails when it reaches the end, before the dot can be written.
    std::fs::write(&path, b"Message-ID: <one@example.org>\r\n\r\nHellO.\r\n").expect("body");
    let reader = mxfleet_queue::BodyReader::new(
        tokio::fs::File::open(&path).await.expect("open body"),
        mxfleet_core::BodyDigest::of(BODY),
    );
    let mut connection = connect(&sink, TlsPolicy::Opportunistic).await;
    let error = connection
        .send(&message(&["bob@example.net"], BODY), reader)
        .await
        .expect_err("the body did not match its digest");
    assert!(matches!(error, ClientError::BodyRead { .. }), "{error}");
    assert_eq!(error.stage(), Stage::Data);
    assert_eq!(error.severity(), Severity::Temporary);
    assert!(!error.is_lost_after_dot(), "{error}");
    assert!(!connection.is_usable());
    connection.quit().await;

    // The sink saw the connection end inside DATA, and kept nothing.
    let mut next = connect(&sink, TlsPolicy::Opportunistic).await;
    assert_eq!(
        send(&mut next, &["bob@example.net"], BODY)
            .await
            .delivered()
            .count(),
        1
    );
    next.quit().await;
    let received = sink.received();
    assert_eq!(received.len(), 1, "only the intact message arrived");
    assert_eq!(received[0].data, with_prefix(BODY));
}
