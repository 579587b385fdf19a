//! Event metrics of the replicated queue, counted where the events happen. Gauges of
//! the replicated state (depth, ages, fleet counters, Raft indices) are not here: the
//! node computes them at scrape time from `Queue::read_state` and `Queue::status`.
//!
//! Main types:
//! - [`QueueMetrics`]: owned by the queue (`Queue::metrics`), created at start.
//! - [`BlobMetrics`]: owned by the `BlobStore` (counts every body it makes durable,
//!   and every corrupt one it quarantines) and shared with the body keeper (missing and
//!   repaired bodies).
//!
//! Exposed names (`register` adds them to a node's registry):
//! - `mxfleet_raft_commit_latency_seconds` (histogram): from proposing a write on
//!   this node, as leader, until openraft reports it committed and applied there.
//! - `mxfleet_raft_leader_changes_total` (counter): times this node saw a new leader.
//! - `mxfleet_raft_log_recoveries_total` (counter): times this node found its Raft log
//!   damaged at start, set it aside and rejoined from its peers (at most one per start).
//! - `mxfleet_blobs_stored_total`, `mxfleet_blob_stored_bytes_total` (counters):
//!   bodies made durable here (accepted here, pushed by a peer, or pulled in repair).
//! - `mxfleet_blobs_missing` (gauge): bodies the log says this node should hold and
//!   it does not yet (waiting for, or failing, repair).
//! - `mxfleet_blobs_repaired_total`, `mxfleet_blob_repair_failures_total` (counters):
//!   pulls of missing bodies from peers that succeeded or failed.
//! - `mxfleet_blobs_corrupt_total` (counter): bodies found damaged on disk (their bytes
//!   no longer match their SHA-256) and moved into quarantine; each is then pulled
//!   again from a peer before it is used.
//!
//! Every metric is an `Arc`-backed handle: clones share one value, so the struct is
//! cloned into whichever task records, and into the registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::types::Raft;

/// Bodies in this node's blob store.
#[derive(Clone, Debug, Default)]
pub struct BlobMetrics {
    pub(crate) stored: Counter,
    pub(crate) stored_bytes: Counter,
    pub(crate) missing: Gauge,
    pub(crate) repaired: Counter,
    pub(crate) repair_failures: Counter,
    pub(crate) corrupt: Counter,
}

impl BlobMetrics {
    /// Bodies found corrupt and quarantined so far (`mxfleet_blobs_corrupt_total`).
    pub fn corrupt_count(&self) -> u64 {
        self.corrupt.get()
    }
}

/// The queue's event metrics.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    pub(crate) commit_latency: Histogram,
    pub(crate) leader_changes: Counter,
    pub(crate) raft_log_recoveries: Counter,
    pub(crate) blobs: BlobMetrics,
}

impl Default for QueueMetrics {
    fn default() -> Self {
        QueueMetrics::new(BlobMetrics::default())
    }
}

impl QueueMetrics {
    /// Queue metrics around the blob store's own counters.
    pub(crate) fn new(blobs: BlobMetrics) -> Self {
        QueueMetrics {
            // 0.5 ms to ~16 s: a healthy LAN commit is a few ms (one fsync round), a
            // write across sites tens of ms, and writes time out after seconds.
            commit_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            leader_changes: Counter::default(),
            raft_log_recoveries: Counter::default(),
            blobs,
        }
    }

    /// Times this node repaired a damaged Raft log (`mxfleet_raft_log_recoveries_total`).
    pub fn raft_log_recoveries(&self) -> u64 {
        self.raft_log_recoveries.get()
    }

    /// Adds every queue metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "mxfleet_raft_commit_latency",
            "Time from proposing a write on the leader until it is committed and applied there",
            Unit::Seconds,
            self.commit_latency.clone(),
        );
        registry.register(
            "mxfleet_raft_leader_changes",
            "Times this node saw a new Raft leader",
            self.leader_changes.clone(),
        );
        registry.register(
            "mxfleet_raft_log_recoveries",
            "Times this node found its Raft log damaged, set it aside and rejoined from peers",
            self.raft_log_recoveries.clone(),
        );
        registry.register(
            "mxfleet_blobs_stored",
            "Bodies made durable in this node's blob store (accepted, replicated or repaired)",
            self.blobs.stored.clone(),
        );
        registry.register_with_unit(
            "mxfleet_blob_stored",
            "Bytes of bodies made durable in this node's blob store",
            Unit::Bytes,
            self.blobs.stored_bytes.clone(),
        );
        registry.register(
            "mxfleet_blobs_missing",
            "Bodies this node should hold and does not yet (being repaired from peers)",
            self.blobs.missing.clone(),
        );
        registry.register(
            "mxfleet_blobs_repaired",
            "Missing bodies fetched from a peer",
            self.blobs.repaired.clone(),
        );
        registry.register(
            "mxfleet_blob_repair_failures",
            "Attempts to fetch a missing body from peers that failed (retried later)",
            self.blobs.repair_failures.clone(),
        );
        registry.register(
            "mxfleet_blobs_corrupt",
            "Bodies whose bytes no longer matched their SHA-256, moved into quarantine",
            self.blobs.corrupt.clone(),
        );
    }
}

/// Counts leader changes as this node sees them, from openraft's metrics channel.
/// Runs until `shutdown` or until Raft drops the channel.
pub(crate) async fn count_leader_changes(
    raft: Raft,
    leader_changes: Counter,
    shutdown: CancellationToken,
) {
    use openraft::async_runtime::WatchReceiver;
    let mut watch = raft.metrics();
    drop(raft);
    let mut known = None;
    let mut leading_in_term = None;
    loop {
        let (leader, term, leading) = {
            let metrics = watch.borrow_watched();
            (
                metrics.current_leader,
                metrics.current_term,
                metrics.state == openraft::ServerState::Leader,
            )
        };
        if leader.is_some() && leader != known {
            leader_changes.inc();
            known = leader;
            info!(
                leader = leader.unwrap_or_default(),
                term, "raft_leader_changed"
            );
        }
        // One line per term this node leads: two nodes logging it for the same term
        // would be a split brain (the chaos checker greps for it).
        if leading && leading_in_term != Some(term) {
            leading_in_term = Some(term);
            info!(term, "raft_became_leader");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = watch.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn names_carry_units_and_counter_suffixes() {
        let metrics = QueueMetrics::default();
        metrics.commit_latency.observe(0.002);
        metrics.raft_log_recoveries.inc();
        metrics.blobs.stored.inc();
        metrics.blobs.stored_bytes.inc_by(512);
        metrics.blobs.corrupt.inc();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        for line in [
            "mxfleet_raft_commit_latency_seconds_count 1",
            "mxfleet_raft_leader_changes_total 0",
            "mxfleet_raft_log_recoveries_total 1",
            "mxfleet_blobs_stored_total 1",
            "mxfleet_blob_stored_bytes_total 512",
            "mxfleet_blobs_missing 0",
            "mxfleet_blobs_repaired_total 0",
            "mxfleet_blob_repair_failures_total 0",
            "mxfleet_blobs_corrupt_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
    }
}
