//! A 3-node in-process fleet with delivery running on every node, and a `SinkMx` as
//! the primary: the harness of the delivery and spam-check end-to-end tests and of the
//! drain benchmark (each uses a different part of it).

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
use mxfleet_delivery::{DeliveryConfig, DeliveryService, DestinationPolicy, RecipientVerifier};
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

/// Delivery on one node, from `start_delivery` until `stop` cancels and drains it.
struct Running {
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Kept for the recipient verifiers it hands out (spam checks' prober).
    service: DeliveryService,
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
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let service = DeliveryService::start(
            self.cluster.queue(id).clone(),
            self.config.clone(),
            router,
            &tracker,
            cancel.clone(),
        );
        self.delivery.insert(
            id,
            Running {
                cancel,
                tracker,
                service,
            },
        );
    }

    pub fn queue(&self, id: NodeId) -> &Queue {
        self.cluster.queue(id)
    }

    /// The delivery config every node runs with.
    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// A verifier asking the primary with node `id`'s delivery config and router.
    pub fn recipient_verifier(&self, id: NodeId) -> RecipientVerifier {
        self.delivery
            .get(&id)
            .unwrap_or_else(|| panic!("node {id} runs no delivery"))
            .service
            .recipient_verifier()
    }

    /// Stops node `id` (delivery first, then the queue), as a clean shutdown would.
    pub async fn stop(&mut self, id: NodeId) {
        self.stop_delivery(id).await;
        self.cluster.stop(id).await;
    }

    /// Stops every node: every delivery first, while the cluster still has the quorum
    /// that records each one's stop, then the queues.
    pub async fn stop_all(&mut self) {
        let delivering: Vec<NodeId> = self.delivery.keys().copied().collect();
        for id in delivering {
            self.stop_delivery(id).await;
        }
        self.cluster.stop_all().await;
    }

    async fn stop_delivery(&mut self, id: NodeId) {
        if let Some(running) = self.delivery.remove(&id) {
            running.cancel.cancel();
            running.tracker.close();
            let _ = tokio::time::timeout(Duration::from_secs(10), running.tracker.wait()).await;
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
