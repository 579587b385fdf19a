//! Prometheus metrics of one node, served over HTTP at `GET /metrics`.
//!
//! One [`NodeMetrics`] per node, each with its own `prometheus-client` registry: no
//! global recorder, because `mxfleet dev` and the tests run several nodes in one
//! process. The registry holds clones of the component metrics (counted where events
//! happen: `mxfleet_smtp::SmtpMetrics`, `mxfleet_delivery::DeliveryMetrics`,
//! `mxfleet_queue::QueueMetrics`) and a collector that reads the replicated state and
//! Raft at each scrape.
//!
//! Layout:
//! - `collector`: `FleetCollector`: queue depth and bytes by state and domain, oldest
//!   age, fleet delivery counters, Raft term, indices and replication lag.
//! - `http`: the HTTP/1.1 endpoint (hyper); [`serve`] runs it until shutdown.
//!
//! Names: prefix `mxfleet_`, the unit in the name (`_seconds`, `_bytes`), counters end
//! in `_total`. Each module that defines metrics lists its names in its header.

mod collector;
mod http;

use std::sync::Arc;

use mxfleet_delivery::DeliveryMetrics;
use mxfleet_queue::Queue;
use mxfleet_smtp::SmtpMetrics;
use prometheus_client::registry::Registry;

pub use http::serve;

/// The content type of [`NodeMetrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A node's metrics registry. Cheap to clone; built once when the node starts.
#[derive(Clone)]
pub struct NodeMetrics {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// The registry of a node with this queue, and SMTP and delivery if it runs them.
    pub fn new(
        queue: &Queue,
        smtp: Option<&SmtpMetrics>,
        delivery: Option<&DeliveryMetrics>,
    ) -> Self {
        let mut registry = Registry::default();
        queue.metrics().register(&mut registry);
        if let Some(smtp) = smtp {
            smtp.register(&mut registry);
        }
        if let Some(delivery) = delivery {
            delivery.register(&mut registry);
        }
        registry.register_collector(Box::new(collector::FleetCollector::new(queue.clone())));
        NodeMetrics {
            registry: Arc::new(registry),
        }
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an encoder error would be a bug in a
        // collector, and a partial page is still worth serving.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(cause = %e, "metrics_encode_failed");
        }
        text
    }
}
