//! A 3-node in-process fleet with delivery running on every node, and a `SinkMx` as
//! the primary: the harness of the delivery end-to-end tests and the drain benchmark
//! (each uses a different part of it).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mxfleet_core::{Envelope, MessageState, NodeId, QueueId};
use mxfleet_delivery::backoff::Backoff;
use mxfleet_delivery::lease::LeaseTiming;
use mxfleet_delivery::route::{
    HickoryOptions, HickoryResolver, NextHop, OwnIdentity, Route, Router,
};
use mxfleet_delivery::{DeliveryConfig, DeliveryService, DestinationPolicy};
use mxfleet_queue::{Queue, QueueConfig};
use mxfleet_testkit::QueueCluster;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The relay domain every test delivers to.
pub const DOMAIN: &str = "example.org";

/// Delivery timings short enough for tests, long enough for a loaded 2-core machine.
pub fn test_delivery_config(primary: SocketAddr) -> DeliveryConfig {
    let mut config = DeliveryConfig::new("backup.example.net");
    config.lease = LeaseTiming {
        lease: Duration::from_secs(4),
        clock_drift_bound: Duration::from_millis(500),
        dot_margin: Duration::from_millis(500),
        contact_timeout: Duration::from_secs(2),
    };
    config.lease.validate().expect("test lease timing");
    // Long backoff: in these tests, only a probe (drain on recovery) retries.
    config.backoff = Backoff {
        min: Duration::from_secs(120),
        max: Duration::from_secs(600),
    };
    config.probe_interval = Duration::from_millis(500);
    config.node_dead_after = Duration::from_secs(1);
    config.scheduler_tick = Duration::from_millis(50);
    config.client.timeouts.connect = Duration::from_secs(2);
    let to_primary = DestinationPolicy {
        route: Route::new(
            NextHop::parse(&format!("[{}]:{}", primary.ip(), primary.port())).unwrap(),
        ),
        max_connections: 6,
        ..DestinationPolicy::default()
    };
    config
        .destinations
        .insert(DOMAIN.into(), to_primary.clone());
    // DSNs to senders go to the same sink.
    config.default_policy = to_primary;
    config
}

struct Running {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// The fleet: a queue cluster plus delivery on each running node.
pub struct DeliveryFleet {
    pub cluster: QueueCluster,
    config: DeliveryConfig,
    delivery: BTreeMap<NodeId, Running>,
}

impl DeliveryFleet {
    pub async fn start(config: DeliveryConfig) -> DeliveryFleet {
        let cluster = QueueCluster::start_tuned(
            3,
            Arc::new(|queue: &mut QueueConfig| {
                queue.write_timeout = Duration::from_secs(5);
            }),
        )
        .await;
        let mut fleet = DeliveryFleet {
            cluster,
            config,
            delivery: BTreeMap::new(),
        };
        for id in fleet.cluster.running() {
            fleet.start_delivery(id);
        }
        fleet
    }

    fn start_delivery(&mut self, id: NodeId) {
        let resolver = HickoryResolver::from_nameservers(
            &["127.0.0.1:9".parse().unwrap()],
            &HickoryOptions::default(),
        )
        .expect("resolver");
        let router = Router::new(Arc::new(resolver), OwnIdentity::default());
        let running = Running {
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        DeliveryService::start(
            self.cluster.queue(id).clone(),
            self.config.clone(),
            router,
            &running.tracker,
            running.cancel.clone(),
        );
        self.delivery.insert(id, running);
    }

    pub fn queue(&self, id: NodeId) -> &Queue {
        self.cluster.queue(id)
    }

    /// Stops node `id` (delivery first, then the queue), as a clean shutdown would.
    pub async fn stop(&mut self, id: NodeId) {
        if let Some(running) = self.delivery.remove(&id) {
            running.cancel.cancel();
            running.tracker.close();
            let _ = tokio::time::timeout(Duration::from_secs(10), running.tracker.wait()).await;
        }
        self.cluster.stop(id).await;
    }

    pub async fn stop_all(&mut self) {
        for id in self.cluster.running() {
            self.stop(id).await;
        }
    }

    /// Enqueues `count` messages through node `via`, 16 at a time; returns their ids.
    pub async fn enqueue_many(&self, via: NodeId, count: usize, sender: &str) -> Vec<QueueId> {
        let queue = self.queue(via).clone();
        let mut ids = Vec::with_capacity(count);
        let mut batch = Vec::new();
        for n in 0..count {
            let queue = queue.clone();
            let sender = sender.to_string();
            batch.push(tokio::spawn(async move {
                queue
                    .enqueue_bytes(test_envelope(n, &sender), &test_body(n))
                    .await
                    .expect("enqueue")
                    .id
            }));
            if batch.len() == 16 || n + 1 == count {
                for handle in batch.drain(..) {
                    ids.push(handle.await.expect("enqueue task"));
                }
            }
        }
        ids
    }

    /// Entries in `state` on node `id`.
    pub fn count_in_state(&self, id: NodeId, state: MessageState) -> usize {
        self.queue(id)
            .entries()
            .iter()
            .filter(|e| e.state == state)
            .count()
    }
}

pub fn message_id(n: usize) -> String {
    format!("<delivery-test-{n}@client.example>")
}

pub fn test_envelope(n: usize, sender: &str) -> Envelope {
    Envelope {
        sender: sender.to_string(),
        recipients: vec![format!("user{n}@{DOMAIN}")],
        message_id: Some(message_id(n)),
        trace: None,
    }
}

pub fn test_body(n: usize) -> Vec<u8> {
    format!(
        "From: <sender@client.example>\r\nTo: <user{n}@{DOMAIN}>\r\nMessage-ID: {}\r\nSubject: test {n}\r\n\r\nbody {n}\r\n.leading dot line\r\n",
        message_id(n)
    )
    .into_bytes()
}
