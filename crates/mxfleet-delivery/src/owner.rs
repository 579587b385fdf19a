//! The owner-side half of delivery, on every node: pick up the messages the leader
//! assigned to this node, deliver them through per-destination workers (`attempt`),
//! commit the outcomes in batches, and renew the leases of work in flight.
//!
//! Lifecycle and ownership:
//! - `DeliveryOwner` is shared (`Arc`) by its scan loop, its workers, the committer
//!   and the renewer; all of them run on the node's tracker and stop on its token.
//! - `OwnerBook` (behind a std mutex, never held across an await) is the local
//!   bookkeeping. An `(id, token)` enters `started` when a worker is given it and is
//!   never started again by this node: a new attempt always needs a new `Assign`. It
//!   leaves `in_flight` when its outcome is committed, or given up.
//! - Work is started only while this node is in contact with the cluster and the
//!   lease allows (`LeaseTiming::may_deliver`); see `lease` for why that is safe.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mxfleet_core::{AttemptReport, MessageState, QueueEntry, QueueId, UnixMillis};
use mxfleet_queue::Queue;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::DeliveryConfig;
use crate::route::Router;

/// How often the owner looks for newly assigned work.
const SCAN_EVERY: Duration = Duration::from_millis(50);
/// Outcomes committed per Raft entry at most.
const MAX_REPORTS_PER_COMMIT: usize = 200;
/// How often a failed commit of outcomes is retried before it is given up.
const COMMIT_ATTEMPTS: u32 = 5;

/// One assigned message waiting for (or in) a worker.
#[derive(Clone, Debug)]
pub(crate) struct Work {
    pub entry: QueueEntry,
    pub token: u64,
}

#[derive(Default)]
struct DestinationQueue {
    pending: VecDeque<Work>,
    workers: u32,
    /// This node's connection share, from its latest assignment for the destination.
    connections: u32,
}

/// Work handed to a worker and not yet committed.
struct InFlight {
    token: u64,
    lease_until: UnixMillis,
    /// The last instant the final dot may be written; renewals move it, and the SMTP
    /// client reads it right before the dot.
    dot_deadline: watch::Sender<Instant>,
}

#[derive(Default)]
struct OwnerBook {
    started: HashSet<(QueueId, u64)>,
    in_flight: HashMap<QueueId, InFlight>,
    destinations: HashMap<String, DestinationQueue>,
}

/// This node as a delivery owner.
pub(crate) struct DeliveryOwner {
    pub(crate) queue: Queue,
    pub(crate) config: Arc<DeliveryConfig>,
    pub(crate) router: Arc<Router>,
    pub(crate) metrics: crate::metrics::DeliveryMetrics,
    book: Mutex<OwnerBook>,
    reports: mpsc::UnboundedSender<AttemptReport>,
    tracker: TaskTracker,
    pub(crate) cancel: CancellationToken,
}

impl DeliveryOwner {
    /// Starts the scan loop, the committer and the renewer.
    pub(crate) fn start(
        queue: Queue,
        config: Arc<DeliveryConfig>,
        router: Arc<Router>,
        metrics: crate::metrics::DeliveryMetrics,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<DeliveryOwner> {
        let (reports, incoming) = mpsc::unbounded_channel();
        let owner = Arc::new(DeliveryOwner {
            queue,
            config,
            router,
            metrics,
            book: Mutex::new(OwnerBook::default()),
            reports,
            tracker: tracker.clone(),
            cancel,
        });
        tracker.spawn(owner.clone().announce_delivering());
        tracker.spawn(owner.clone().scan_loop());
        tracker.spawn(owner.clone().commit_loop(incoming));
        tracker.spawn(owner.clone().renew_loop());
        owner
    }

    fn book(&self) -> MutexGuard<'_, OwnerBook> {
        // A panic while holding the lock is a bug; the bookkeeping is still the best
        // information there is, so keep using it.
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True when this node may start deliveries now.
    pub(crate) fn in_contact(&self) -> bool {
        self.queue
            .contact()
            .in_contact_within(self.config.lease.contact_timeout)
    }

    /// The current lease end of work in flight (renewals move it).
    pub(crate) fn lease_until(&self, id: QueueId) -> Option<UnixMillis> {
        self.book().in_flight.get(&id).map(|f| f.lease_until)
    }

    /// The moving deadline for the final dot of work in flight.
    pub(crate) fn dot_deadline(&self, id: QueueId) -> Option<watch::Receiver<Instant>> {
        self.book()
            .in_flight
            .get(&id)
            .map(|f| f.dot_deadline.subscribe())
    }

    /// The monotonic instant matching the last moment `lease_until` allows a dot.
    fn dot_deadline_for(&self, lease_until: UnixMillis, now: UnixMillis) -> Instant {
        Instant::now() + self.config.lease.delivery_window(lease_until, now)
    }

    /// If the fleet has this node down as stopped (a clean stop earlier), says that it
    /// delivers again, retrying until that commits or the node stops.
    async fn announce_delivering(self: Arc<Self>) {
        let me = self.queue.node_id();
        loop {
            let stopped = self
                .queue
                .read_state(|state| state.fleet.owners_stopped.contains(&me))
                .unwrap_or(true);
            if !stopped {
                return;
            }
            match self.queue.set_delivering(true).await {
                Ok(()) => {
                    info!(node_id = me, "delivery_owner_available");
                    return;
                }
                Err(e) => debug!(cause = %e, "delivery_owner_available_retry"),
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn scan_loop(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(SCAN_EVERY);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut draining = false;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if self.queue.is_drained() {
                // An operator took this node out of service: finish what is in hand,
                // hand back the rest, and pick up nothing new until undrained.
                if !draining {
                    draining = true;
                    info!(node_id = self.queue.node_id(), "delivery_owner_drained");
                    self.return_waiting().await;
                }
                continue;
            }
            if draining {
                draining = false;
                info!(node_id = self.queue.node_id(), "delivery_owner_undrained");
            }
            if self.in_contact() {
                self.pick_up_assigned_work();
            }
        }
    }

    /// Moves newly assigned messages into their destination queues and starts
    /// workers up to this node's connection share.
    fn pick_up_assigned_work(self: &Arc<Self>) {
        let me = self.queue.node_id();
        let now = self.queue.clock_now();
        let timing = self.config.lease;
        let assigned = self.queue.read_state(|state| {
            state
                .entries
                .values()
                .filter(|entry| entry.state == MessageState::Queued)
                .filter_map(|entry| {
                    let assignment = entry.assignment?;
                    (assignment.owner == me && timing.may_deliver(assignment.lease_until, now))
                        .then(|| (entry.clone(), assignment))
                })
                .collect::<Vec<_>>()
        });
        let assigned = match assigned {
            Ok(assigned) => assigned,
            Err(e) => {
                warn!(cause = %e, "delivery_owner_state_unreadable");
                return;
            }
        };
        let mut to_spawn = Vec::new();
        {
            let mut book = self.book();
            for (entry, assignment) in assigned {
                if !book.started.insert((entry.id, assignment.token)) {
                    continue;
                }
                let (dot_deadline, _) =
                    watch::channel(self.dot_deadline_for(assignment.lease_until, now));
                book.in_flight.insert(
                    entry.id,
                    InFlight {
                        token: assignment.token,
                        lease_until: assignment.lease_until,
                        dot_deadline,
                    },
                );
                let queue = book.destinations.entry(entry.destination()).or_default();
                queue.connections = assignment.connections.max(1);
                queue.pending.push_back(Work {
                    entry,
                    token: assignment.token,
                });
            }
            for (destination, queue) in book.destinations.iter_mut() {
                while !queue.pending.is_empty() && queue.workers < queue.connections {
                    queue.workers += 1;
                    to_spawn.push(destination.clone());
                }
            }
            if book.started.len() > 4 * book.in_flight.len() + 10_000 {
                // Forget started tokens that can no longer be current: anything not in
                // flight whose entry moved on (finished or reassigned).
                let keep: HashSet<(QueueId, u64)> = self
                    .queue
                    .read_state(|state| {
                        state
                            .entries
                            .values()
                            .filter_map(|e| e.assignment.map(|a| (e.id, a.token)))
                            .collect()
                    })
                    .unwrap_or_default();
                let in_flight: HashSet<QueueId> = book.in_flight.keys().copied().collect();
                book.started
                    .retain(|key| keep.contains(key) || in_flight.contains(&key.0));
            }
        }
        for destination in to_spawn {
            let owner = self.clone();
            self.tracker.spawn(async move {
                owner.clone().run_worker(&destination).await;
                owner.worker_finished(&destination);
            });
        }
    }

    /// The next message for a worker of `destination`, if any.
    pub(crate) fn next_work(&self, destination: &str) -> Option<Work> {
        self.book()
            .destinations
            .get_mut(destination)
            .and_then(|queue| queue.pending.pop_front())
    }

    /// Takes every message waiting for `destination` (when it is found unreachable,
    /// they are all deferred at once instead of one connection failure each).
    pub(crate) fn drain_pending(&self, destination: &str) -> Vec<Work> {
        self.book()
            .destinations
            .get_mut(destination)
            .map(|queue| queue.pending.drain(..).collect())
            .unwrap_or_default()
    }

    fn worker_finished(self: &Arc<Self>, destination: &str) {
        let respawn = {
            let mut book = self.book();
            let Some(queue) = book.destinations.get_mut(destination) else {
                return;
            };
            queue.workers = queue.workers.saturating_sub(1);
            // Work that arrived after the worker looked last would otherwise wait for
            // the next scan to notice; a worker stays if any is waiting.
            if !queue.pending.is_empty()
                && queue.workers < queue.connections
                && !self.cancel.is_cancelled()
            {
                queue.workers += 1;
                true
            } else {
                if queue.pending.is_empty() && queue.workers == 0 {
                    book.destinations.remove(destination);
                }
                false
            }
        };
        if respawn {
            let owner = self.clone();
            let destination = destination.to_string();
            self.tracker.spawn(async move {
                owner.clone().run_worker(&destination).await;
                owner.worker_finished(&destination);
            });
        }
    }

    /// Abandons work without an outcome (the lease ran short, or this node lost
    /// contact): the lease will lapse and the leader will give it to someone else.
    pub(crate) fn abandon(&self, work: &Work, why: &str) {
        self.book().in_flight.remove(&work.entry.id);
        info!(queue_id = %work.entry.id, token = work.token, why, "delivery_abandoned");
    }

    /// Hands an outcome to the committer.
    pub(crate) fn report(&self, report: AttemptReport) {
        if self.reports.send(report).is_err() {
            debug!("delivery_report_after_shutdown");
        }
    }

    async fn commit_loop(self: Arc<Self>, mut incoming: mpsc::UnboundedReceiver<AttemptReport>) {
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                received = incoming.recv_many(&mut batch, MAX_REPORTS_PER_COMMIT) => {
                    if received == 0 {
                        return;
                    }
                    self.commit(std::mem::take(&mut batch)).await;
                }
                _ = self.cancel.cancelled() => break,
            }
        }
        // Stop: first ask for no more work, so that nothing is assigned here while
        // the rest of the node is still up and answering heartbeats.
        if let Err(e) = self.queue.set_delivering(false).await {
            warn!(cause = %e, "delivery_owner_stop_not_announced");
        }
        // Workers finish the message in hand; commit every outcome they
        // report until the last one is gone, so that nothing delivered is left
        // uncommitted (which would make its next owner deliver it again).
        loop {
            let workers: u32 = self.book().destinations.values().map(|d| d.workers).sum();
            match tokio::time::timeout(
                SCAN_EVERY,
                incoming.recv_many(&mut batch, MAX_REPORTS_PER_COMMIT),
            )
            .await
            {
                Ok(0) => break,
                Ok(_) => self.commit(std::mem::take(&mut batch)).await,
                Err(_) if workers == 0 => break,
                Err(_) => {}
            }
        }
        self.return_unstarted().await;
    }

    /// Hands back every assignment this node holds and never started (waiting in a
    /// destination queue, or assigned after the scan loop stopped), so that the leader
    /// gives it to another node now instead of when its lease runs out. Work that was
    /// attempted but whose outcome did not commit is left to lapse: the primary may
    /// have it, and the lapse is what counts that.
    async fn return_unstarted(&self) {
        let me = self.queue.node_id();
        let assigned: Vec<(QueueId, u64)> = self
            .queue
            .read_state(|state| {
                state
                    .entries
                    .values()
                    .filter(|e| e.state == MessageState::Queued)
                    .filter_map(|e| {
                        e.assignment
                            .filter(|a| a.owner == me)
                            .map(|a| (e.id, a.token))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let leases: Vec<(QueueId, u64)> = {
            let mut book = self.book();
            let unstarted: Vec<(QueueId, u64)> = assigned
                .into_iter()
                .filter(|(id, token)| {
                    !book.started.contains(&(*id, *token))
                        || book.in_flight.get(id).is_some_and(|f| f.token == *token)
                })
                .collect();
            book.destinations.clear();
            book.in_flight.clear();
            unstarted
        };
        if leases.is_empty() {
            return;
        }
        let count = leases.len();
        match self.queue.return_leases(leases).await {
            Ok(_) => info!(count, "delivery_assignments_returned"),
            Err(e) => warn!(count, cause = %e, "delivery_assignments_not_returned"),
        }
    }

    /// Hands back the assignments waiting in destination queues, which no worker has
    /// taken yet; workers finish the message in hand and then find nothing more.
    /// Unlike [`Self::return_unstarted`], this runs while workers are busy.
    /// Assignments the scan loop has not picked up yet go back too.
    async fn return_waiting(&self) {
        let me = self.queue.node_id();
        let assigned_to_me: Vec<(QueueId, u64)> = self
            .queue
            .read_state(|state| {
                state
                    .live_entries()
                    .filter_map(|e| {
                        e.assignment
                            .filter(|a| a.owner == me)
                            .map(|a| (e.id, a.token))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let leases: Vec<(QueueId, u64)> = {
            let mut book = self.book();
            let mut waiting: Vec<(QueueId, u64)> = book
                .destinations
                .values_mut()
                .flat_map(|queue| queue.pending.drain(..))
                .map(|work| (work.entry.id, work.token))
                .collect();
            for (id, _) in &waiting {
                book.in_flight.remove(id);
            }
            waiting.extend(
                assigned_to_me
                    .into_iter()
                    .filter(|lease| !book.started.contains(lease)),
            );
            waiting
        };
        if leases.is_empty() {
            return;
        }
        let count = leases.len();
        match self.queue.return_leases(leases).await {
            Ok(_) => info!(count, "delivery_assignments_returned"),
            Err(e) => warn!(count, cause = %e, "delivery_assignments_not_returned"),
        }
    }

    async fn commit(&self, reports: Vec<AttemptReport>) {
        let ids: Vec<QueueId> = reports.iter().map(|r| r.id).collect();
        let mut pause = Duration::from_millis(100);
        for attempt in 1..=COMMIT_ATTEMPTS {
            match self.queue.record_attempts(reports.clone()).await {
                Ok(rejected) => {
                    for rejection in &rejected {
                        warn!(cause = %rejection, "delivery_outcome_rejected");
                    }
                    break;
                }
                Err(e) if !self.queue.is_member() => {
                    // Removed from the cluster: no write of ours can commit again, so
                    // waiting only holds up the shutdown that usually follows. The
                    // leases lapse and the leader gives the messages to a member.
                    warn!(cause = %e, reports = reports.len(), "delivery_commit_abandoned_not_a_member");
                    break;
                }
                Err(e) if attempt < COMMIT_ATTEMPTS => {
                    warn!(attempt, cause = %e, reports = reports.len(), "delivery_commit_retry");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => {
                    // The leases lapse and the leader reassigns; if a primary took a
                    // message, the next owner may deliver it again (counted as a
                    // lapsed reassignment).
                    warn!(cause = %e, reports = reports.len(), "delivery_commit_failed");
                }
            }
        }
        let mut book = self.book();
        for id in ids {
            book.in_flight.remove(&id);
        }
    }

    async fn renew_loop(self: Arc<Self>) {
        let timing = self.config.lease;
        let mut ticks = tokio::time::interval(timing.lease / 4);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = self.queue.clock_now();
            let due: Vec<(QueueId, u64)> = self
                .book()
                .in_flight
                .iter()
                .filter(|(_, f)| timing.needs_renewal(f.lease_until, now))
                .map(|(id, f)| (*id, f.token))
                .collect();
            if due.is_empty() || !self.in_contact() {
                continue;
            }
            let lease_until = timing.lease_until(now);
            match self.queue.renew_leases(due.clone(), lease_until).await {
                Ok(rejected) => {
                    let refused: HashSet<QueueId> = rejected
                        .iter()
                        .filter_map(|r| match r {
                            mxfleet_core::Rejection::StaleToken { id, .. } => Some(*id),
                            _ => None,
                        })
                        .collect();
                    let deadline = self.dot_deadline_for(lease_until, self.queue.clock_now());
                    let mut book = self.book();
                    for (id, token) in due {
                        if refused.contains(&id) {
                            continue;
                        }
                        if let Some(flight) = book.in_flight.get_mut(&id)
                            && flight.token == token
                        {
                            flight.lease_until = lease_until;
                            flight.dot_deadline.send_replace(deadline);
                        }
                    }
                }
                Err(e) => warn!(cause = %e, "delivery_lease_renewal_failed"),
            }
        }
    }
}
