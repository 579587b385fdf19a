//! The primary watch on a 3-node in-process fleet (real Raft, `DeliveryService` on every
//! node) with `SinkMx` as a watched primary: the fleet's view (`seen_down`) follows the
//! primary down and back within a probe interval, unchanged reports are refreshed every
//! heartbeat, and the watch's "reachable" report releases mail deferred while the
//! primary was down (drain on recovery leaves watched primaries to the watch).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mxfleet_core::{Envelope, MessageState, NodeId, QueueId, UnixMillis};
use mxfleet_delivery::backoff::Backoff;
use mxfleet_delivery::lease::LeaseTiming;
use mxfleet_delivery::route::{
    HickoryOptions, HickoryResolver, NextHop, OwnIdentity, Route, Router,
};
use mxfleet_delivery::{DeliveryConfig, DeliveryService, DestinationPolicy};
use mxfleet_queue::Queue;
use mxfleet_testkit::sink::SinkMx;
use mxfleet_testkit::{QueueCluster, init_test_logging, wait_for};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const DOMAIN: &str = "example.org";
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Room for a probe, a Raft commit and a loaded machine on top of one probe interval.
const SLACK: Duration = Duration::from_secs(3);

fn watch_config(primary: SocketAddr) -> DeliveryConfig {
    let mut config = DeliveryConfig::new("backup.example.net");
    config.lease = LeaseTiming {
        lease: Duration::from_secs(4),
        clock_drift_bound: Duration::from_millis(500),
        dot_margin: Duration::from_millis(500),
        contact_timeout: Duration::from_secs(2),
    };
    config.lease.validate().expect("test lease timing");
    // Long backoff: a deferred message comes back only when its destination is released.
    config.backoff = Backoff {
        min: Duration::from_secs(120),
        max: Duration::from_secs(600),
    };
    config.probe_interval = PROBE_INTERVAL;
    config.node_dead_after = Duration::from_secs(1);
    config.scheduler_tick = Duration::from_millis(50);
    config.client.timeouts.connect = Duration::from_secs(2);
    let to_primary = DestinationPolicy {
        route: Route::new(
            NextHop::parse(&format!("[{}]:{}", primary.ip(), primary.port())).expect("next hop"),
        ),
        ..DestinationPolicy::default()
    };
    config.destinations.insert(DOMAIN.into(), to_primary);
    config.watched_primaries = BTreeSet::from([DOMAIN.to_string()]);
    config
}

/// Delivery on one node; stopped by cancelling and waiting for its tracker.
struct RunningDelivery {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

fn start_delivery(queue: &Queue, config: &DeliveryConfig) -> RunningDelivery {
    let resolver = HickoryResolver::from_nameservers(
        &["127.0.0.1:9".parse().expect("literal address")],
        &HickoryOptions::default(),
    )
    .expect("resolver");
    let router = Router::new(Arc::new(resolver), OwnIdentity::default());
    let running = RunningDelivery {
        cancel: CancellationToken::new(),
        tracker: TaskTracker::new(),
    };
    DeliveryService::start(
        queue.clone(),
        config.clone(),
        router,
        &running.tracker,
        running.cancel.clone(),
    );
    running
}

/// The fleet's view of the watched primary as `queue`'s node has applied it.
fn seen_down(queue: &Queue, fresh_within: Duration) -> Option<bool> {
    let now = queue.clock_now();
    queue
        .read_state(|state| {
            state
                .fleet
                .destinations
                .get(DOMAIN)
                .and_then(|d| d.seen_down(now, fresh_within.as_millis() as u64))
        })
        .expect("state readable")
}

/// `node`'s latest report about the watched primary: (reachable, at).
fn report_of(queue: &Queue, node: NodeId) -> Option<(bool, UnixMillis)> {
    queue
        .read_state(|state| {
            state
                .fleet
                .destinations
                .get(DOMAIN)
                .and_then(|d| d.reachability.get(&node))
                .map(|r| (r.reachable, r.at))
        })
        .expect("state readable")
}

fn entry_state(queue: &Queue, id: QueueId) -> Option<(MessageState, bool)> {
    queue
        .entry(id)
        .map(|e| (e.state, e.last_attempt_at.is_some()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_sees_a_watched_primary_go_down_and_come_back() {
    init_test_logging();
    let mut sink = SinkMx::start().await;
    let config = watch_config(sink.addr());
    let fresh_within = config.reachability_fresh_within();
    let mut cluster = QueueCluster::start(3).await;
    let deliveries: Vec<RunningDelivery> = cluster
        .running()
        .iter()
        .map(|id| start_delivery(cluster.queue(*id), &config))
        .collect();
    let queue = cluster.queue(1).clone();

    // Up: every node reports, with no mail queued at all.
    wait_for("every node to report the primary up", SLACK * 3, || {
        (1..=3).all(|node| report_of(&queue, node).is_some_and(|(up, _)| up))
    })
    .await;
    assert_eq!(seen_down(&queue, fresh_within), Some(false));

    // Unchanged, a node's report is still refreshed once it is a heartbeat old.
    let (_, first_at) = report_of(&queue, 2).expect("node 2 reported");
    let heartbeat = config.reachability_heartbeat();
    wait_for("node 2's heartbeat", heartbeat + SLACK, || {
        report_of(&queue, 2)
            .is_some_and(|(up, at)| up && at.0 >= first_at.0 + heartbeat.as_millis() as u64)
    })
    .await;

    // Down: within a probe interval (plus slack), every node says so.
    sink.stop().await;
    wait_for(
        "the fleet to see the primary down",
        PROBE_INTERVAL + SLACK,
        || seen_down(&queue, fresh_within) == Some(true),
    )
    .await;

    // Mail arriving meanwhile is tried once and deferred, with a long backoff.
    let receipt = queue
        .enqueue_bytes(
            Envelope {
                sender: "sender@client.example".into(),
                recipients: vec![format!("bob@{DOMAIN}")],
                message_id: Some("<watch-1@client.example>".into()),
                trace: None,
            },
            b"Message-ID: <watch-1@client.example>\r\nSubject: watch\r\n\r\nbody\r\n",
        )
        .await
        .expect("enqueue");
    wait_for("the message to be deferred", SLACK * 3, || {
        entry_state(&queue, receipt.id) == Some((MessageState::Queued, true))
    })
    .await;

    // Back: the fleet sees it up within a probe interval, and the watch's report
    // releases the deferred message long before its backoff ends.
    sink.restart().await;
    wait_for(
        "the fleet to see the primary up",
        PROBE_INTERVAL + SLACK,
        || seen_down(&queue, fresh_within) == Some(false),
    )
    .await;
    let received = sink.wait_for_messages(1, SLACK * 3).await;
    assert_eq!(
        received[0].message_id.as_deref(),
        Some("<watch-1@client.example>")
    );

    for delivery in deliveries {
        delivery.cancel.cancel();
        delivery.tracker.close();
        delivery.tracker.wait().await;
    }
    cluster.stop_all().await;
}
