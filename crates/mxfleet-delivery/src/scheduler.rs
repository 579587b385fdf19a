//! The leader's scheduler: every tick it reads the replicated state, decides which due
//! messages go to which live owner (`plan`), paces each destination (`pacing`), and
//! commits one `Assign` per owner and destination. It also sends the DSNs the state
//! says are owed (`notifier`). On a follower it does nothing.
//!
//! Lifecycle: spawned by `DeliveryService::start` on the node's tracker; it stops on
//! the node's cancellation token. Leadership can move at any tick: the new leader's
//! scheduler starts from the replicated state, and leases keep the old one's grants
//! safe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mxfleet_core::NodeId;
use mxfleet_queue::Queue;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::DeliveryConfig;
use crate::notifier::Notifier;
use crate::pacing::RateBucket;
use crate::plan::{SplitLimits, collect_work, split_work};

/// The leader-side half of delivery.
pub(crate) struct Scheduler {
    queue: Queue,
    config: Arc<DeliveryConfig>,
    notifier: Notifier,
    /// Per-destination rate buckets; created on first use, kept while leading.
    buckets: HashMap<String, RateBucket>,
    /// When the deferred queue was last scanned (`queue_run_delay`).
    last_deferred_scan: Option<Instant>,
}

impl Scheduler {
    pub(crate) fn new(queue: Queue, config: Arc<DeliveryConfig>) -> Self {
        Scheduler {
            notifier: Notifier::new(queue.clone(), config.clone()),
            queue,
            config,
            buckets: HashMap::new(),
            last_deferred_scan: None,
        }
    }

    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(self.config.scheduler_tick);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            self.tick().await;
        }
    }

    /// One round: assign due work, then send owed DSNs.
    pub(crate) async fn tick(&mut self) {
        let contact = self.queue.contact();
        if !contact.is_leader {
            self.last_deferred_scan = None;
            self.buckets.clear();
            return;
        }
        if !contact.in_contact_within(self.config.lease.contact_timeout) {
            debug!("scheduler_waiting_for_quorum");
            return;
        }
        let mut live: Vec<NodeId> = contact
            .peer_acks
            .iter()
            .filter(|(_, ack)| ack.is_some_and(|ack| ack <= self.config.node_dead_after))
            .map(|(node, _)| *node)
            .collect();
        live.push(contact.node_id);
        live.sort_unstable();
        // Nodes that stopped delivering, or that an operator drained, get no work.
        let fleet = self
            .queue
            .read_state(|state| state.fleet.clone())
            .unwrap_or_default();
        live.retain(|node| fleet.takes_delivery_work(*node));

        let mono = Instant::now();
        let deferred_scan = self
            .last_deferred_scan
            .is_none_or(|last| mono.duration_since(last) >= self.config.queue_run_delay);
        if deferred_scan {
            self.last_deferred_scan = Some(mono);
        }
        let now = self.queue.clock_now();
        let timing = self.config.lease;
        let work = match self
            .queue
            .read_state(|state| collect_work(state, now, &timing, deferred_scan))
        {
            Ok(work) => work,
            Err(e) => {
                warn!(cause = %e, "scheduler_state_unreadable");
                return;
            }
        };
        let mut grants = Vec::new();
        for (destination, work) in &work {
            if work.due.is_empty() {
                continue;
            }
            let policy = self.config.policy(destination);
            let budget = match policy.max_messages_per_second {
                Some(rate) => self
                    .buckets
                    .entry(destination.clone())
                    .or_insert_with(|| RateBucket::new(rate, mono))
                    .available(mono),
                None => usize::MAX,
            };
            let limits = SplitLimits {
                max_connections: policy.max_connections,
                window_per_connection: self.config.window_per_connection,
                budget,
            };
            let destination_grants = split_work(destination, work, &live, limits);
            if let Some(bucket) = self.buckets.get_mut(destination) {
                bucket.take(destination_grants.iter().map(|g| g.ids.len()).sum());
            }
            grants.extend(destination_grants);
        }
        let lease_until = self.config.lease.lease_until(now);
        let proposals = grants.into_iter().map(|grant| {
            let queue = self.queue.clone();
            async move {
                let count = grant.ids.len();
                match queue
                    .assign(grant.ids, grant.owner, lease_until, grant.connections)
                    .await
                {
                    Ok((token, assigned)) => info!(
                        destination = %grant.destination,
                        owner = grant.owner,
                        token,
                        offered = count,
                        assigned = assigned.len(),
                        connections = grant.connections,
                        "delivery_assigned"
                    ),
                    Err(e) => warn!(
                        destination = %grant.destination,
                        owner = grant.owner,
                        cause = %e,
                        "delivery_assign_failed"
                    ),
                }
            }
        });
        futures::future::join_all(proposals).await;
        self.notifier.send_owed(now).await;
    }
}

/// How long the scheduler waits between rounds by default.
pub(crate) const DEFAULT_TICK: Duration = Duration::from_millis(100);
