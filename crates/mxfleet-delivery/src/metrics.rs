//! Metrics of delivery on one node, counted where a worker finishes an attempt.
//!
//! [`DeliveryMetrics`] is created by `DeliveryService::start` and exposed by
//! `DeliveryService::metrics`; every worker of the node records into clones of it.
//! Fleet-wide delivery facts that live in the replicated state (internal redeliveries,
//! fencing rejections, connections lost after the dot) are read at scrape time by the
//! node, not counted here.
//!
//! Exposed names:
//! - `mxfleet_delivery_attempts_total{outcome}` (counter): one per recipient per
//!   attempt, as the `delivery_attempt` log line: `sent`, `deferred`, `bounced`,
//!   `expired`.
//! - `mxfleet_delivery_attempt_duration_seconds` (histogram): connection setup plus
//!   transmission of one message attempt that reached a server.
//! - `mxfleet_delivery_delay_seconds` (histogram): from acceptance until the primary's
//!   `250`, per delivered recipient (Postfix's `delay=`).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Delivery's metrics on one node. Clones share the values.
#[derive(Clone, Debug)]
pub struct DeliveryMetrics {
    attempts: Family<[(&'static str, &'static str); 1], Counter>,
    attempt_duration: Histogram,
    delay: Histogram,
}

/// The outcomes, as labelled (the `status` of the `delivery_attempt` log line).
const OUTCOMES: [&str; 4] = ["sent", "deferred", "bounced", "expired"];

/// Delay buckets, in seconds: an immediate relay (sub-second), retries after minutes,
/// primaries down for hours, up to the default queue lifetime of 5 days.
const DELAY_BUCKETS: [f64; 18] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
    43200.0, 86400.0, 432000.0,
];

impl Default for DeliveryMetrics {
    fn default() -> Self {
        let metrics = DeliveryMetrics {
            attempts: Family::default(),
            // 10 ms to ~5 min: a LAN primary answers in milliseconds, a slow one with
            // a large body takes minutes (the DATA timeouts are 10 minutes).
            attempt_duration: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            delay: Histogram::new(DELAY_BUCKETS),
        };
        // Every outcome exists from the start, at zero, so that `rate()` sees the first.
        for outcome in OUTCOMES {
            metrics
                .attempts
                .get_or_create_owned(&[("outcome", outcome)]);
        }
        metrics
    }
}

impl DeliveryMetrics {
    /// Adds every delivery metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mxfleet_delivery_attempts",
            "Delivery attempts, one per recipient per attempt, by outcome",
            self.attempts.clone(),
        );
        registry.register_with_unit(
            "mxfleet_delivery_attempt_duration",
            "Connection setup plus transmission of one message attempt that reached a server",
            Unit::Seconds,
            self.attempt_duration.clone(),
        );
        registry.register_with_unit(
            "mxfleet_delivery_delay",
            "Time from acceptance until the primary's 250, per delivered recipient",
            Unit::Seconds,
            self.delay.clone(),
        );
    }

    /// One recipient's outcome (`sent`, `deferred`, `bounced`, `expired`).
    pub(crate) fn attempt(&self, outcome: &'static str) {
        self.attempts.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// An attempt that had a connection took `duration` (setup plus transmission).
    pub(crate) fn attempt_took(&self, duration: Duration) {
        self.attempt_duration.observe(duration.as_secs_f64());
    }

    /// A recipient was delivered `delay` after the message was accepted.
    pub(crate) fn delivered_after(&self, delay: Duration) {
        self.delay.observe(delay.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn outcomes_and_latencies_are_exposed() {
        let metrics = DeliveryMetrics::default();
        metrics.attempt("sent");
        metrics.attempt("sent");
        metrics.attempt("deferred");
        metrics.attempt_took(Duration::from_millis(40));
        metrics.delivered_after(Duration::from_secs(2));
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        for line in [
            r#"mxfleet_delivery_attempts_total{outcome="sent"} 2"#,
            r#"mxfleet_delivery_attempts_total{outcome="deferred"} 1"#,
            r#"mxfleet_delivery_attempts_total{outcome="expired"} 0"#,
            "mxfleet_delivery_attempt_duration_seconds_count 1",
            "mxfleet_delivery_delay_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
    }
}
