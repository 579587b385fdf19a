//! `DeliveryService`: delivery on one node. It starts the owner (scan, workers,
//! committer, renewer), the prober, and the leader's scheduler (idle on followers),
//! all on the node's tracker, stopping on its cancellation token.

use std::sync::Arc;

use mxfleet_queue::Queue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::DeliveryConfig;
use crate::metrics::DeliveryMetrics;
use crate::owner::DeliveryOwner;
use crate::route::Router;
use crate::scheduler::Scheduler;

/// The running delivery side of a node.
pub struct DeliveryService {
    config: Arc<DeliveryConfig>,
    /// Recorded by this node's workers; the node adds it to its metrics registry.
    metrics: DeliveryMetrics,
}

impl DeliveryService {
    /// Starts delivery for `queue`. Check `config.lease.validate()` first (the node's
    /// config validation does).
    pub fn start(
        queue: Queue,
        config: DeliveryConfig,
        router: Router,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> DeliveryService {
        let config = Arc::new(config);
        let metrics = DeliveryMetrics::default();
        let owner = DeliveryOwner::start(
            queue.clone(),
            config.clone(),
            Arc::new(router),
            metrics.clone(),
            tracker,
            cancel.clone(),
        );
        tracker.spawn(owner.probe_loop());
        let scheduler = Scheduler::new(queue, config.clone());
        tracker.spawn(scheduler.run(cancel));
        DeliveryService { config, metrics }
    }

    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// This node's delivery metrics.
    pub fn metrics(&self) -> &DeliveryMetrics {
        &self.metrics
    }
}
