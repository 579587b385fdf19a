//! `DeliveryService`: delivery on one node. It starts the owner (scan, workers,
//! committer, renewer), the prober, the primary watch (idle without watched
//! primaries), and the leader's scheduler (idle on followers), all on the node's
//! tracker, stopping on its cancellation token. It also hands out
//! `RecipientVerifier`s that share its config and router.

use std::sync::Arc;

use mxfleet_queue::Queue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::DeliveryConfig;
use crate::metrics::DeliveryMetrics;
use crate::owner::DeliveryOwner;
use crate::route::Router;
use crate::scheduler::Scheduler;
use crate::verify::RecipientVerifier;

/// The running delivery side of a node.
pub struct DeliveryService {
    config: Arc<DeliveryConfig>,
    /// Shared with the owner and with every verifier handed out.
    router: Arc<Router>,
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
        let router = Arc::new(router);
        let metrics = DeliveryMetrics::default();
        let owner = DeliveryOwner::start(
            queue.clone(),
            config.clone(),
            router.clone(),
            metrics.clone(),
            tracker,
            cancel.clone(),
        );
        tracker.spawn(owner.clone().probe_loop());
        tracker.spawn(owner.primary_watch_loop());
        let scheduler = Scheduler::new(queue, config.clone());
        tracker.spawn(scheduler.run(cancel));
        DeliveryService {
            config,
            router,
            metrics,
        }
    }

    /// A verifier asking primaries about recipients with this node's delivery config
    /// and router.
    pub fn recipient_verifier(&self) -> RecipientVerifier {
        RecipientVerifier::new(self.config.clone(), self.router.clone())
    }

    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// This node's delivery metrics.
    pub fn metrics(&self) -> &DeliveryMetrics {
        &self.metrics
    }
}
