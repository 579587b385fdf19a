//! Recipient verification against `SinkMx` as the primary: a 2xx to RCPT is valid, a 5xx
//! invalid with the primary's reply; a 4xx, a refused MAIL, a refused connection, a
//! primary that never speaks, or TLS the policy needs and the primary lacks, all
//! unknown. No probe ever sends DATA: the sink never records a message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mxfleet_delivery::client::TlsPolicy;
use mxfleet_delivery::route::{
    HickoryOptions, HickoryResolver, NextHop, OwnIdentity, Route, Router,
};
use mxfleet_delivery::{DeliveryConfig, DestinationPolicy, RecipientVerifier, VerifyResult};
use mxfleet_testkit::init_test_logging;
use mxfleet_testkit::sink::{Behavior, SinkMx};
use mxfleet_testkit::tls::TestCa;
use tokio::net::TcpListener;

const DOMAIN: &str = "example.org";
const SENDER: &str = "alice@client.example";
/// Generous: only the silent-primary test waits for its timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

fn hop(addr: SocketAddr) -> String {
    format!("[{}]:{}", addr.ip(), addr.port())
}

/// A verifier routing `DOMAIN` to `next_hop` under `tls`; DNS is never asked (the next
/// hops are IP literals), so the resolver points nowhere.
fn verifier(next_hop: &str, tls: TlsPolicy) -> RecipientVerifier {
    let mut config = DeliveryConfig::new("backup.test");
    config.client.timeouts.connect = Duration::from_secs(2);
    let policy = DestinationPolicy {
        route: Route::new(NextHop::parse(next_hop).expect("next hop")),
        tls,
        ..DestinationPolicy::default()
    };
    config.destinations.insert(DOMAIN.into(), policy);
    let resolver = HickoryResolver::from_nameservers(
        &["127.0.0.1:9".parse().expect("literal address")],
        &HickoryOptions::default(),
    )
    .expect("resolver");
    let router = Router::new(Arc::new(resolver), OwnIdentity::default());
    RecipientVerifier::new(Arc::new(config), Arc::new(router))
}

/// An address nothing listens on: connecting is refused.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local address")
}

fn unknown_reason(result: VerifyResult) -> String {
    match result {
        VerifyResult::Unknown { reason } => reason,
        other => panic!("expected Unknown, got {other:?}"),
    }
}

#[tokio::test]
async fn accepted_recipient_is_valid_and_no_message_is_sent() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let verifier = verifier(&hop(sink.addr()), TlsPolicy::Opportunistic);

    // The domain is matched case-insensitively, as delivery's policies are.
    let result = verifier
        .verify("Example.ORG", "bob@example.org", SENDER, TIMEOUT)
        .await;
    assert_eq!(
        result,
        VerifyResult::Valid {
            reply: "250 2.1.5 Ok".into()
        }
    );
    assert_eq!(sink.connections(), 1);
    assert_eq!(sink.received_count(), 0, "a probe never sends DATA");
}

#[tokio::test]
async fn refused_recipient_is_invalid_with_the_primarys_reply() {
    init_test_logging();
    let sink = SinkMx::builder()
        .behavior(Behavior::accept().rcpt_reply(
            "nobody@example.org",
            "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown",
        ))
        .start()
        .await;
    let verifier = verifier(&hop(sink.addr()), TlsPolicy::Opportunistic);

    // The null sender, as Postfix's address verification uses by default.
    let result = verifier
        .verify(DOMAIN, "nobody@example.org", "", TIMEOUT)
        .await;
    assert_eq!(
        result,
        VerifyResult::Invalid {
            reply: "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"
                .into()
        }
    );
    let other = verifier
        .verify(DOMAIN, "bob@example.org", "", TIMEOUT)
        .await;
    assert_eq!(other.as_str(), "valid");
    assert_eq!(sink.received_count(), 0, "a probe never sends DATA");
}

#[tokio::test]
async fn temporary_refusal_of_the_recipient_is_unknown() {
    init_test_logging();
    let sink = SinkMx::builder()
        .behavior(Behavior::accept().rcpt_reply("busy@example.org", "450 4.2.1 mailbox busy"))
        .start()
        .await;
    let verifier = verifier(&hop(sink.addr()), TlsPolicy::Opportunistic);

    let reason = unknown_reason(
        verifier
            .verify(DOMAIN, "busy@example.org", SENDER, TIMEOUT)
            .await,
    );
    assert!(reason.contains("450 4.2.1 mailbox busy"), "{reason}");
    assert_eq!(sink.received_count(), 0, "a probe never sends DATA");
}

#[tokio::test]
async fn refused_mail_from_says_nothing_about_the_recipient() {
    init_test_logging();
    let sink = SinkMx::builder()
        .behavior(Behavior {
            mail_reply: Some("550 5.7.1 backup MX probes not welcome".into()),
            ..Behavior::accept()
        })
        .start()
        .await;
    let verifier = verifier(&hop(sink.addr()), TlsPolicy::Opportunistic);

    let reason = unknown_reason(
        verifier
            .verify(DOMAIN, "bob@example.org", SENDER, TIMEOUT)
            .await,
    );
    assert!(reason.contains("550 5.7.1"), "{reason}");
    assert_eq!(sink.received_count(), 0, "a probe never sends DATA");
}

#[tokio::test]
async fn refused_connection_is_unknown() {
    init_test_logging();
    let verifier = verifier(&hop(closed_port()), TlsPolicy::Opportunistic);

    let reason = unknown_reason(
        verifier
            .verify(DOMAIN, "bob@example.org", SENDER, TIMEOUT)
            .await,
    );
    assert!(reason.contains("connect failed"), "{reason}");
}

#[tokio::test]
async fn refused_connection_gives_way_to_the_next_primary_host() {
    init_test_logging();
    let sink = SinkMx::builder()
        .behavior(Behavior::accept().rcpt_reply("nobody@example.org", "550 5.1.1 user unknown"))
        .start()
        .await;
    let next_hop = format!("{}, {}", hop(closed_port()), hop(sink.addr()));
    let verifier = verifier(&next_hop, TlsPolicy::Opportunistic);

    let result = verifier
        .verify(DOMAIN, "nobody@example.org", SENDER, TIMEOUT)
        .await;
    assert_eq!(
        result,
        VerifyResult::Invalid {
            reply: "550 5.1.1 user unknown".into()
        }
    );
    assert_eq!(sink.received_count(), 0, "a probe never sends DATA");
}

#[tokio::test]
async fn silent_primary_is_unknown_once_the_timeout_passes() {
    init_test_logging();
    // Accepts connections and never says a word (no greeting).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let verifier = verifier(&hop(addr), TlsPolicy::Opportunistic);

    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let reason = unknown_reason(
        verifier
            .verify(DOMAIN, "bob@example.org", SENDER, timeout)
            .await,
    );
    let took = started.elapsed();
    assert!(reason.contains("no verdict within"), "{reason}");
    assert!(took >= timeout, "gave up early, after {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "the timeout did not hold: {took:?}"
    );
    silent.abort();
}

#[tokio::test]
async fn required_tls_the_primary_does_not_offer_is_unknown() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let verifier = verifier(&hop(sink.addr()), TlsPolicy::Required);

    let reason = unknown_reason(
        verifier
            .verify(DOMAIN, "bob@example.org", SENDER, TIMEOUT)
            .await,
    );
    assert!(reason.contains("does not offer STARTTLS"), "{reason}");
}

#[tokio::test]
async fn required_tls_the_primary_offers_is_used_for_the_probe() {
    init_test_logging();
    let leaf = TestCa::new("test CA").issue("sink");
    let sink = SinkMx::start_with_tls(&leaf.cert_pem, &leaf.key_pem).await;
    let verifier = verifier(&hop(sink.addr()), TlsPolicy::Required);

    let result = verifier
        .verify(DOMAIN, "bob@example.org", SENDER, TIMEOUT)
        .await;
    assert_eq!(result.as_str(), "valid", "{result:?}");
    assert_eq!(sink.received_count(), 0, "a probe never sends DATA");
}
