//! The spam checks' view of the fleet, over the node's `Queue`: reads come from this
//! node's replica; facts (a new greylisting triplet, a pass, a verdict of the primary)
//! go to the leader in batches, so a burst of spam costs a few Raft entries, not one
//! per connection.
//!
//! Lifecycle: [`QueueSpamState::start`] spawns the batcher on the node's tracker; it
//! ends with the node's shutdown token, dropping facts not yet sent (they are only
//! hints: a triplet not recorded is greylisted again next time).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mxfleet_core::spam::{GreylistKey, GreylistRecord, RecipientVerdict};
use mxfleet_core::{SpamFact, UnixMillis};
use mxfleet_queue::Queue;
use mxfleet_smtp::checks::FleetSpamState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// Facts waiting to be sent; beyond this, new ones are dropped (and counted).
const PENDING_FACTS: usize = 10_000;
/// Most facts in one Raft entry.
const FACTS_PER_ENTRY: usize = 500;
/// How long the batcher waits for more facts after the first one of a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// [`FleetSpamState`] over a `Queue`.
pub struct QueueSpamState {
    queue: Queue,
    facts: mpsc::Sender<SpamFact>,
    /// A node's report on a primary counts for this long (see `DestinationState::seen_down`).
    report_fresh_for: Duration,
    dropped_facts: AtomicU64,
}

impl QueueSpamState {
    /// Starts the batcher. `report_fresh_for` is how long a node's report on a primary
    /// stays valid: the primary watch refreshes its reports well within it.
    pub fn start(
        queue: Queue,
        report_fresh_for: Duration,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (facts, pending) = mpsc::channel(PENDING_FACTS);
        tracker.spawn(send_batches(queue.clone(), pending, shutdown));
        Arc::new(QueueSpamState {
            queue,
            facts,
            report_fresh_for,
            dropped_facts: AtomicU64::new(0),
        })
    }

    /// Facts dropped because too many were waiting.
    pub fn dropped_facts(&self) -> u64 {
        self.dropped_facts.load(Ordering::Relaxed)
    }
}

impl FleetSpamState for QueueSpamState {
    fn now(&self) -> UnixMillis {
        self.queue.clock_now()
    }

    fn triplet(&self, key: &GreylistKey) -> Option<GreylistRecord> {
        let now = self.now();
        self.queue
            .read_state(|state| state.spam.triplet(key, now).cloned())
            .ok()
            .flatten()
    }

    fn network_passes(&self, network: &str) -> u32 {
        let now = self.now();
        self.queue
            .read_state(|state| state.spam.network_passes(network, now))
            .unwrap_or(0)
    }

    fn verdict(&self, address: &str) -> Option<RecipientVerdict> {
        let now = self.now();
        self.queue
            .read_state(|state| state.spam.verdict(address, now).cloned())
            .ok()
            .flatten()
    }

    fn primary_down(&self, domain: &str) -> Option<bool> {
        let now = self.now();
        let fresh_ms = self.report_fresh_for.as_millis() as u64;
        self.queue
            .read_state(|state| {
                state
                    .fleet
                    .destinations
                    .get(&domain.to_ascii_lowercase())
                    .and_then(|d| d.seen_down(now, fresh_ms))
            })
            .ok()
            .flatten()
    }

    fn record(&self, fact: SpamFact) {
        if self.facts.try_send(fact).is_err() {
            let dropped = self.dropped_facts.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per thousand, not one per fact, under a flood.
            if dropped % 1000 == 1 {
                warn!(dropped, "spam_facts_dropped");
            }
        }
    }

    fn node_id(&self) -> u64 {
        self.queue.node_id()
    }
}

/// Collects facts into batches and commits them, one batch at a time.
async fn send_batches(
    queue: Queue,
    mut pending: mpsc::Receiver<SpamFact>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            fact = pending.recv() => match fact {
                Some(fact) => fact,
                None => return,
            },
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < FACTS_PER_ENTRY {
            match tokio::time::timeout_at(deadline, pending.recv()).await {
                Ok(Some(fact)) => batch.push(fact),
                Ok(None) | Err(_) => break,
            }
        }
        let count = batch.len();
        match queue.record_spam_facts(batch).await {
            Ok(()) => debug!(facts = count, "spam_facts_recorded"),
            Err(e) => warn!(facts = count, cause = %e, "spam_facts_not_recorded"),
        }
    }
}
