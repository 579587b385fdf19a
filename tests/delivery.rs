//! Delivery end to end against a 3-node fleet and a scriptable primary (`SinkMx`):
//! drain on recovery with every message delivered once, owner loss during a drain,
//! bounces with DSNs, partial recipient failures, lifetime expiry and delay warnings.

#[path = "support/delivery_fleet.rs"]
mod delivery_fleet;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use delivery_fleet::{DOMAIN, DeliveryFleet, message_id, test_delivery_config};
use mxfleet_core::{Envelope, MessageState};
use mxfleet_testkit::sink::{Behavior, SinkMx};
use mxfleet_testkit::{init_test_logging, wait_for};

/// How many times each Message-ID reached the primary.
fn deliveries_by_message_id(sink: &SinkMx) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for message in sink.received() {
        let id = message.message_id.unwrap_or_default();
        *seen.entry(id).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_drains_once_within_the_probe_interval_after_the_primary_returns() {
    init_test_logging();
    const MESSAGES: usize = 1000;
    let mut sink = SinkMx::start().await;
    let config = test_delivery_config(sink.addr());
    let probe_interval = config.probe_interval;
    sink.stop().await;
    let mut fleet = DeliveryFleet::start(config).await;

    let ids = fleet
        .enqueue_many(2, MESSAGES, "sender@client.example")
        .await;
    assert_eq!(ids.len(), MESSAGES);
    // Every message is tried once and deferred while the primary is down.
    wait_for(
        "every message to be deferred",
        Duration::from_secs(60),
        || {
            let entries = fleet.queue(1).entries();
            entries.len() == MESSAGES
                && entries.iter().all(|e| {
                    e.state == MessageState::Queued
                        && e.last_attempt_at.is_some()
                        && e.assignment.is_none()
                })
        },
    )
    .await;
    assert_eq!(sink.received().len(), 0);

    sink.restart().await;
    let recovered = Instant::now();
    wait_for("the first delivery", Duration::from_secs(30), || {
        !sink.received().is_empty()
    })
    .await;
    let first = recovered.elapsed();
    wait_for("the whole backlog", Duration::from_secs(120), || {
        sink.received().len() >= MESSAGES
    })
    .await;
    let last = recovered.elapsed();
    wait_for(
        "every node to see every message delivered",
        Duration::from_secs(30),
        || {
            fleet
                .cluster
                .running()
                .iter()
                .all(|id| fleet.count_in_state(*id, MessageState::Delivered) == MESSAGES)
        },
    )
    .await;
    let seen = deliveries_by_message_id(&sink);
    assert_eq!(seen.len(), MESSAGES, "every message reached the primary");
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "delivered more than once: {duplicated:?}"
    );
    for n in 0..MESSAGES {
        assert_eq!(seen.get(&message_id(n)), Some(&1));
    }
    eprintln!(
        "drain of {MESSAGES}: first delivery {first:?} after recovery, last {last:?} ({:.0} msg/s)",
        MESSAGES as f64 / last.as_secs_f64()
    );
    assert!(
        first <= probe_interval + Duration::from_secs(3),
        "the drain started {first:?} after recovery; probes run every {probe_interval:?}"
    );
    fleet.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_an_owner_during_a_drain_hands_its_work_to_the_others_without_duplicates() {
    init_test_logging();
    const MESSAGES: usize = 200;
    let sink = SinkMx::builder()
        .behavior(Behavior::slow(Duration::from_millis(40)))
        .start()
        .await;
    let mut fleet = DeliveryFleet::start(test_delivery_config(sink.addr())).await;
    let leader = fleet.cluster.wait_for_leader().await;
    fleet
        .enqueue_many(leader, MESSAGES, "sender@client.example")
        .await;
    // Stop a follower that owns work in flight.
    let mut victim = None;
    wait_for(
        "a follower holding assignments",
        Duration::from_secs(30),
        || {
            let entries = fleet.queue(leader).entries();
            victim = entries
                .iter()
                .filter(|e| e.state == MessageState::Queued)
                .filter_map(|e| e.assignment.map(|a| a.owner))
                .find(|owner| *owner != leader);
            victim.is_some()
        },
    )
    .await;
    let victim = victim.unwrap();
    fleet.stop(victim).await;

    wait_for("every message delivered", Duration::from_secs(90), || {
        fleet.count_in_state(leader, MessageState::Delivered) == MESSAGES
    })
    .await;
    let seen = deliveries_by_message_id(&sink);
    assert_eq!(seen.len(), MESSAGES, "every message reached the primary");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let fleet_state = fleet.queue(leader).read_state(|s| s.fleet.clone()).unwrap();
    eprintln!(
        "owner {victim} stopped: {duplicates} duplicate deliveries, {} lapsed reassignments, {} lost after dot",
        fleet_state.lapsed_reassignments, fleet_state.lost_after_dot
    );
    // A clean stop: workers finish the message in hand and commit its outcome, then
    // the node hands back what it never started. Nothing is delivered twice.
    assert_eq!(duplicates, 0, "a clean stop duplicated deliveries");
    fleet.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partial_failure_delivers_some_defers_some_and_bounces_the_rest_with_one_dsn() {
    init_test_logging();
    let sink = SinkMx::builder()
        .behavior(
            Behavior::accept()
                .rcpt_reply(
                    "gone@example.org",
                    "550 5.1.1 <gone@example.org>: no such user",
                )
                .rcpt_reply("full@example.org", "452 4.2.2 mailbox full"),
        )
        .start()
        .await;
    let mut fleet = DeliveryFleet::start(test_delivery_config(sink.addr())).await;
    let envelope = Envelope {
        sender: "alice@client.example".into(),
        recipients: vec![
            "bob@example.org".into(),
            "gone@example.org".into(),
            "full@example.org".into(),
        ],
        message_id: Some("<partial@client.example>".into()),
        trace: None,
    };
    let body = b"From: alice@client.example\r\nMessage-ID: <partial@client.example>\r\nSubject: partial\r\n\r\nhello\r\n";
    let receipt = fleet.queue(1).enqueue_bytes(envelope, body).await.unwrap();

    // bob gets it; alice gets one DSN naming gone@ only.
    let received = sink.wait_for_messages(2, Duration::from_secs(30)).await;
    let original = received
        .iter()
        .find(|m| m.message_id.as_deref() == Some("<partial@client.example>"))
        .expect("the original reached the primary");
    assert_eq!(original.rcpts, vec!["bob@example.org".to_string()]);
    let dsn = received
        .iter()
        .find(|m| m.from.is_empty())
        .expect("a DSN from the null sender");
    assert_eq!(dsn.rcpts, vec!["alice@client.example".to_string()]);
    let text = String::from_utf8_lossy(&dsn.data);
    assert!(
        text.contains("multipart/report; report-type=delivery-status"),
        "{text}"
    );
    assert!(
        text.contains("Final-Recipient: rfc822; gone@example.org"),
        "{text}"
    );
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(
        !text.contains("Final-Recipient: rfc822; full@example.org"),
        "{text}"
    );

    wait_for(
        "the entry to record the partial result",
        Duration::from_secs(10),
        || {
            let entry = fleet.queue(1).entry(receipt.id).unwrap();
            entry.state == MessageState::Queued
                && entry.pending_recipients().collect::<Vec<_>>() == vec!["full@example.org"]
                && !entry.owes_failure_dsn()
        },
    )
    .await;
    // The state records the DSN as sent, so no scheduler round sends a second one.
    assert_eq!(
        sink.received().iter().filter(|m| m.from.is_empty()).count(),
        1
    );
    fleet.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifetime_expiry_bounces_after_exactly_one_delay_warning() {
    init_test_logging();
    let sink = SinkMx::builder()
        .behavior(Behavior::decide(|message| {
            if message.from.is_empty() {
                "250 2.0.0 Ok".to_string()
            } else {
                "451 4.3.0 try again later".to_string()
            }
        }))
        .start()
        .await;
    let mut config = test_delivery_config(sink.addr());
    config.backoff = mxfleet_delivery::backoff::Backoff {
        min: Duration::from_millis(500),
        max: Duration::from_secs(1),
    };
    config.queue_run_delay = Duration::from_millis(200);
    let policy = config.destinations.get_mut(DOMAIN).unwrap();
    policy.lifetime = Duration::from_secs(6);
    policy.delay_warning = Some(Duration::from_secs(2));
    let mut fleet = DeliveryFleet::start(config).await;
    let envelope = Envelope {
        sender: "alice@client.example".into(),
        recipients: vec!["bob@example.org".into()],
        message_id: Some("<late@client.example>".into()),
        trace: None,
    };
    let receipt = fleet
        .queue(1)
        .enqueue_bytes(
            envelope,
            b"Message-ID: <late@client.example>\r\n\r\nlate\r\n",
        )
        .await
        .unwrap();
    wait_for("the message to bounce", Duration::from_secs(30), || {
        fleet.queue(1).entry(receipt.id).unwrap().state == MessageState::Bounced
    })
    .await;
    wait_for("the failure DSN", Duration::from_secs(15), || {
        sink.received().iter().any(|m| {
            m.from.is_empty() && String::from_utf8_lossy(&m.data).contains("Action: failed")
        })
    })
    .await;
    let dsns: Vec<String> = sink
        .received()
        .iter()
        .filter(|m| m.from.is_empty())
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect();
    let warnings = dsns
        .iter()
        .filter(|d| d.contains("Action: delayed"))
        .count();
    let failures: Vec<&String> = dsns
        .iter()
        .filter(|d| d.contains("Action: failed"))
        .collect();
    assert_eq!(warnings, 1, "{dsns:#?}");
    assert_eq!(failures.len(), 1, "{dsns:#?}");
    assert!(failures[0].contains("Status: 4.4.7"), "{}", failures[0]);
    let entry = fleet.queue(1).entry(receipt.id).unwrap();
    assert!(
        entry.attempts >= 2,
        "retried with backoff before expiring: {}",
        entry.attempts
    );
    fleet.stop_all().await;
}
