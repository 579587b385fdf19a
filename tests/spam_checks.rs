//! Spam defence end to end (issue 7), on 3-node fleets with real Raft, real SMTP
//! listeners and real clients (lettre, Python's smtplib):
//! - greylisting is fleet-wide: refused at node 1, passed after the delay at node 2,
//!   and the pass survives node 2's restart (the spam tables are in sled);
//! - recipient verification's cache is primed while the primary is up and used while
//!   it is down, at another node;
//! - primary-aware mode follows the primary down and back within a probe interval.

#[path = "support/delivery_fleet.rs"]
mod delivery_fleet;
#[path = "support/spam_fleet.rs"]
mod spam_fleet;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use delivery_fleet::{DOMAIN, DeliveryFleet, test_delivery_config};
use mxfleet_core::{NodeId, QueueId};
use mxfleet_node::spam_setup::SpamSetup;
use mxfleet_queue::{Queue, QueueConfig};
use mxfleet_smtp::checks::Check;
use mxfleet_smtp::checks::config::UnknownRecipientAction;
use mxfleet_testkit::sink::{Behavior, SinkMx};
use mxfleet_testkit::{QueueCluster, init_test_logging, wait_for, wait_for_async};
use spam_fleet::{
    ManualClock, SpamEndpoint, queued_id, rcpt, reply_line, send, send_with_smtplib, spam_setup,
};

const SENDER: &str = "sender@client.example";
/// The primary watch's period in the fleets below.
const PROBE_INTERVAL: Duration = Duration::from_millis(300);
/// Room for a probe, a Raft commit and a loaded 2-core machine on top of one interval.
const SLACK: Duration = Duration::from_secs(3);
/// For conditions with no latency claim: replication, elections.
const PATIENCE: Duration = Duration::from_secs(30);

/// Waits until every running node of `cluster` holds message `id`.
async fn wait_until_everywhere(cluster: &QueueCluster, id: QueueId) {
    for node in cluster.running() {
        wait_for(
            &format!("node {node} to hold message {id}"),
            PATIENCE,
            || cluster.queue(node).entry(id).is_some(),
        )
        .await;
    }
}

/// The greylisting triplets in `queue`'s replica: (seen, passed).
fn triplets(queue: &Queue) -> (usize, usize) {
    queue
        .read_state(|state| {
            let records = state.spam.greylist.values();
            let passed = records.clone().filter(|r| r.passed_at.is_some()).count();
            (records.count(), passed)
        })
        .expect("state readable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn greylisted_at_node_1_then_passed_at_node_2_after_the_delay_and_still_after_a_restart() {
    init_test_logging();
    let started = Instant::now();
    let clock = ManualClock::starting_now();
    let shared = clock.clone();
    let mut cluster = QueueCluster::start_tuned(
        3,
        Arc::new(move |queue: &mut QueueConfig| queue.clock = shared.clone()),
    )
    .await;
    let setup = spam_setup("example.org", Check::Greylisting, Vec::new());
    let delay = setup.config.greylisting.delay;
    assert_eq!(delay, Duration::from_secs(300));
    let fresh = Duration::from_secs(60);
    let node1 = SpamEndpoint::start(cluster.queue(1), &setup, None, fresh).await;
    let node2 = SpamEndpoint::start(cluster.queue(2), &setup, None, fresh).await;
    let to = "alice@example.org";

    // The first try, at node 1: 451 Greylisted, and the triplet goes to the fleet.
    let error = send(node1.addr, SENDER, to, "first try")
        .await
        .expect_err("the first try is greylisted");
    assert!(error.is_transient(), "{error}");
    let first = reply_line(Err(error));
    assert!(first.starts_with("451 4.7.1 "), "{first}");
    assert!(
        first.contains("Greylisted, try again in 300 seconds"),
        "{first}"
    );
    wait_for("node 2's replica to hold the triplet", PATIENCE, || {
        triplets(cluster.queue(2)) == (1, 0)
    })
    .await;

    // A retry at node 2 before the delay is refused with what is left of it.
    clock.advance(Duration::from_secs(200));
    let early = reply_line(send(node2.addr, SENDER, to, "too early").await);
    assert!(early.starts_with("451 4.7.1 "), "{early}");
    assert!(
        early.contains("Greylisted, try again in 100 seconds"),
        "{early}"
    );

    // After the delay, smtplib's retry at node 2 passes and the message is on every node.
    clock.advance(Duration::from_secs(101));
    let replies = send_with_smtplib(node2.addr, SENDER, to, "retry").await;
    assert_eq!(replies.first().map(String::as_str), Some("250 2.1.5 Ok"));
    let data = replies.get(1).expect("DATA reply");
    assert!(data.starts_with("250 2.0.0 Ok: queued as "), "{data}");
    wait_until_everywhere(&cluster, queued_id(data)).await;
    for node in 1..=3 {
        wait_for(&format!("node {node} to see the pass"), PATIENCE, || {
            triplets(cluster.queue(node)) == (1, 1)
        })
        .await;
    }

    // Node 2 restarts from its data directory: the pass is in its replica at once
    // (before any leader contact), and the same sender and recipient go straight
    // through.
    node2.stop().await;
    cluster.stop(2).await;
    cluster.restart(2).await;
    assert_eq!(triplets(cluster.queue(2)), (1, 1), "loaded from disk");
    cluster.wait_for_leader().await;
    let node2 = SpamEndpoint::start(cluster.queue(2), &setup, None, fresh).await;
    let again = reply_line(send(node2.addr, SENDER, to, "after restart").await);
    assert!(again.starts_with("250 2.0.0 Ok: queued as "), "{again}");
    wait_until_everywhere(&cluster, queued_id(&again)).await;

    node1.stop().await;
    node2.stop().await;
    cluster.stop_all().await;
    eprintln!("greylisting test took {:?}", started.elapsed());
}

/// A fleet delivering `DOMAIN` to `primary`, which every node watches every
/// `PROBE_INTERVAL`.
async fn watched_fleet(primary: SocketAddr) -> DeliveryFleet {
    let mut config = test_delivery_config(primary);
    config.probe_interval = PROBE_INTERVAL;
    config.watched_primaries = BTreeSet::from([DOMAIN.to_string()]);
    DeliveryFleet::start(config).await
}

/// An endpoint on node `id` whose prober is that node's delivery.
async fn endpoint(fleet: &DeliveryFleet, id: NodeId, setup: &SpamSetup) -> SpamEndpoint {
    SpamEndpoint::start(
        fleet.queue(id),
        setup,
        Some(fleet.recipient_verifier(id)),
        fleet.config().reachability_fresh_within(),
    )
    .await
}

/// Whether node `id` sees `DOMAIN`'s primary down, as the spam checks ask it.
fn seen_down(fleet: &DeliveryFleet, id: NodeId) -> Option<bool> {
    let queue = fleet.queue(id);
    let now = queue.clock_now();
    let fresh = fleet.config().reachability_fresh_within().as_millis() as u64;
    queue
        .read_state(|state| {
            state
                .fleet
                .destinations
                .get(DOMAIN)
                .and_then(|d| d.seen_down(now, fresh))
        })
        .expect("state readable")
}

/// Node `id`'s cached verdict on `address`: (valid, the primary's reply).
fn verdict(fleet: &DeliveryFleet, id: NodeId, address: &str) -> Option<(bool, String)> {
    let queue = fleet.queue(id);
    let now = queue.clock_now();
    queue
        .read_state(|state| {
            state
                .spam
                .verdict(address, now)
                .map(|v| (v.valid, v.reply.clone()))
        })
        .expect("state readable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verdicts_primed_while_the_primary_is_up_answer_at_another_node_while_it_is_down() {
    init_test_logging();
    let started = Instant::now();
    let good = format!("good@{DOMAIN}");
    let bad = format!("bad@{DOMAIN}");
    let unknown = format!("unknown@{DOMAIN}");
    let user_unknown = format!("550 5.1.1 <{bad}>: User unknown");
    let mut sink = SinkMx::builder()
        .behavior(
            Behavior::accept()
                .rcpt_reply(&good, "250 2.1.5 good is a mailbox here")
                .rcpt_reply(&bad, &user_unknown),
        )
        .start()
        .await;
    let mut fleet = watched_fleet(sink.addr()).await;
    let mut accept = spam_setup(
        DOMAIN,
        Check::VerifyRecipients,
        vec![sink.addr().to_string()],
    );
    accept.config.verify.unknown_action = UnknownRecipientAction::Accept;
    let mut defer = accept.clone();
    defer.config.verify.unknown_action = UnknownRecipientAction::Defer;
    let node1 = endpoint(&fleet, 1, &accept).await;
    let node3_accepting = endpoint(&fleet, 3, &accept).await;
    let node3_deferring = endpoint(&fleet, 3, &defer).await;

    // Up: node 1 asks the primary; a good recipient passes, a bad one gets the
    // primary's own refusal.
    assert_eq!(rcpt(node1.addr, SENDER, &good).await, "250 2.1.5 Ok");
    let refused = rcpt(node1.addr, SENDER, &bad).await;
    assert!(refused.starts_with("550 5.1.1 "), "{refused}");
    assert!(
        refused.contains(&format!("the primary MX said: {user_unknown}")),
        "{refused}"
    );
    // Both verdicts reach every node, in the primary's own words (so it was asked);
    // it never got DATA.
    for node in 1..=3 {
        wait_for(
            &format!("node {node} to hold both verdicts"),
            PATIENCE,
            || verdict(&fleet, node, &good).is_some() && verdict(&fleet, node, &bad).is_some(),
        )
        .await;
    }
    let (valid, reply) = verdict(&fleet, 3, &good).expect("cached");
    assert!(valid && reply.contains("good is a mailbox here"), "{reply}");
    assert_eq!(
        verdict(&fleet, 3, &bad),
        Some((false, user_unknown.clone()))
    );
    assert_eq!(sink.received_count(), 0, "a probe never sends DATA");

    // Down: node 3 answers from the cache; an address nobody asked about gets the
    // configured action.
    sink.stop().await;
    wait_for("node 3 to see the primary down", PATIENCE, || {
        seen_down(&fleet, 3) == Some(true)
    })
    .await;
    assert_eq!(
        rcpt(node3_accepting.addr, SENDER, &good).await,
        "250 2.1.5 Ok"
    );
    let refused = rcpt(node3_accepting.addr, SENDER, &bad).await;
    assert!(refused.starts_with("550 5.1.1 "), "{refused}");
    assert!(refused.contains(&user_unknown), "{refused}");
    assert_eq!(
        rcpt(node3_accepting.addr, SENDER, &unknown).await,
        "250 2.1.5 Ok"
    );
    let deferred = rcpt(node3_deferring.addr, SENDER, &unknown).await;
    assert!(deferred.starts_with("450 4.1.1 "), "{deferred}");
    assert!(deferred.contains("the primary MX is down"), "{deferred}");
    assert_eq!(
        verdict(&fleet, 3, &unknown),
        None,
        "nothing cached while down"
    );

    for endpoint in [node1, node3_accepting, node3_deferring] {
        endpoint.stop().await;
    }
    fleet.stop_all().await;
    eprintln!("verification test took {:?}", started.elapsed());
}

/// How long until `rcpt` at `addr` gets a reply starting with `code`; panics beyond
/// `PROBE_INTERVAL + SLACK`.
async fn flip_time(addr: SocketAddr, to: &str, code: &str, what: &str) -> Duration {
    let since = Instant::now();
    wait_for_async(what, PROBE_INTERVAL + SLACK, || async {
        rcpt(addr, SENDER, to).await.starts_with(code)
    })
    .await;
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primary_aware_mode_flips_within_a_probe_interval_of_the_primary_going_down_and_back() {
    init_test_logging();
    let started = Instant::now();
    let mut sink = SinkMx::start().await;
    let mut fleet = watched_fleet(sink.addr()).await;
    let setup = spam_setup(DOMAIN, Check::PrimaryAware, vec![sink.addr().to_string()]);
    let node2 = endpoint(&fleet, 2, &setup).await;
    let to = format!("bob@{DOMAIN}");

    // Up: the backup sends clients to the primary.
    wait_for("node 2 to see the primary up", PATIENCE, || {
        seen_down(&fleet, 2) == Some(false)
    })
    .await;
    let refused = rcpt(node2.addr, SENDER, &to).await;
    assert!(refused.starts_with("451 4.7.1 "), "{refused}");
    assert!(refused.contains("try the primary MX"), "{refused}");

    // Down: accepted within a probe interval (plus slack).
    sink.stop().await;
    let down = flip_time(node2.addr, &to, "250", "RCPT accepted, primary down").await;
    // Back: refused again within the same bound.
    sink.restart().await;
    let up = flip_time(node2.addr, &to, "451", "RCPT refused, primary up").await;
    eprintln!(
        "primary-aware flip: probe interval {PROBE_INTERVAL:?}, down->accept {down:?}, up->refuse {up:?}"
    );
    assert_eq!(sink.received_count(), 0);

    node2.stop().await;
    fleet.stop_all().await;
    eprintln!("primary-aware test took {:?}", started.elapsed());
}
