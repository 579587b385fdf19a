//! The load generator: paced SMTP submissions to random fleet nodes, and the history of
//! what each sender was told, for the checker to compare with what the primary received.
//!
//! Message `n` of a run is `Message-ID: <chaos-{seed}-{n}@load.chaos>` and starts with
//! the header `X-Chaos-Id: n`. A worker sends it to a node picked at random, one message
//! per connection. When that first attempt ends `Refused` or `Unknown` the message is
//! always sent once more to another node, and an acknowledged message is sent again with
//! probability `resubmit_fraction`, the same bytes both times, as a real sender does
//! after losing a `250`: this is what exercises the fleet's dedup. Every random choice is
//! drawn from the seed and the message number, never from which worker ran first.
//!
//! Layout:
//! - this file: [`LoadConfig`], [`start`] and [`LoadHandle`]: the pacer and the workers;
//! - `history`: [`History`], [`Submitted`], [`Attempt`], [`Outcome`];
//! - `message`: building [`ChaosMessage`]s, dot-stuffing and hashing (sans-IO);
//! - `reply`: parsing SMTP replies, multi-line included (sans-IO);
//! - `session`: one attempt over one connection, and `classify`, the one function that
//!   turns how an attempt ended into an [`Outcome`].
//!
//! Lifecycle: [`start`] spawns one pacer and `concurrency` workers on a `TaskTracker`
//! under one `CancellationToken`. The pacer hands message numbers to idle workers through
//! a channel of one slot at `rate_per_sec`, so a slow fleet lowers the offered load
//! instead of piling up a burst. [`LoadHandle::stop`] cancels: the pacer stops at once,
//! each worker finishes the attempt in hand (bounded by its step timeouts) but starts no
//! resubmission, and the history is returned once every task has ended. Dropping the
//! handle cancels the same way without waiting.

mod history;
mod message;
mod reply;
mod session;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

pub use history::{Attempt, History, Outcome, Submitted};
pub use message::{CHAOS_ID_HEADER, ChaosMessage, dot_stuff, sha256_hex};

/// Decision streams of [`message::message_rng`], so adding a draw to one stream does
/// not change the others (and so not every message's body).
const DECISIONS: u64 = 1;
const BODY_SIZE: u64 = 2;

/// What to send, where, and how fast.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Nodes to send to; one is picked at random for each attempt.
    pub targets: Vec<Target>,
    /// Parallel SMTP sessions (at least one).
    pub concurrency: usize,
    /// New messages per second over all workers, evenly spaced; zero sends nothing.
    pub rate_per_sec: f64,
    /// Body size in bytes, picked per message.
    pub body_size: RangeInclusive<usize>,
    /// Share of acknowledged messages also sent again to another node (clamped to
    /// 0..=1). Messages whose first attempt was `Refused` or `Unknown` are always sent
    /// again; those rejected with a 5xx never are.
    pub resubmit_fraction: f64,
    /// Recipients are `user{n % 50}@{recipient_domain}`.
    pub recipient_domain: String,
    /// The envelope and `From:` sender.
    pub sender: String,
    pub seed: u64,
    /// Limit for each SMTP step; the reply to the final dot gets three times as long.
    pub step_timeout: Duration,
}

/// One node the load may send to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The node's name, as recorded in [`Attempt::node`].
    pub node: String,
    /// Its SMTP listener (or the fault proxy in front of it).
    pub addr: SocketAddr,
}

/// Starts the load; times in the history are milliseconds since `epoch`. Must be called
/// inside a tokio runtime.
pub fn start(mut config: LoadConfig, epoch: Instant) -> LoadHandle {
    let targets = std::mem::take(&mut config.targets);
    let workers = config.concurrency.max(1);
    let rate_per_sec = config.rate_per_sec;
    info!(
        targets = targets.len(),
        workers,
        rate_per_sec,
        seed = config.seed,
        "load_started"
    );
    let generator = Arc::new(Generator {
        config,
        epoch,
        targets: Mutex::new(targets),
        history: Mutex::new(History::default()),
        acked: AtomicU64::new(0),
    });
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (numbers, inbox) = mpsc::channel(1);
    let inbox = Arc::new(tokio::sync::Mutex::new(inbox));
    tracker.spawn(pace(numbers, rate_per_sec, shutdown.clone()));
    for _ in 0..workers {
        let (generator, inbox, shutdown) =
            (Arc::clone(&generator), Arc::clone(&inbox), shutdown.clone());
        tracker.spawn(async move { generator.work(&inbox, &shutdown).await });
    }
    tracker.close();
    LoadHandle {
        generator,
        shutdown,
        tracker,
    }
}

/// A running load.
pub struct LoadHandle {
    generator: Arc<Generator>,
    /// Cancelled by `stop` or drop.
    shutdown: CancellationToken,
    /// The pacer and the workers; closed at start, so `wait` ends when they all have.
    tracker: TaskTracker,
}

impl LoadHandle {
    /// A copy of the history so far.
    pub fn snapshot(&self) -> History {
        self.generator.history().clone()
    }

    /// How many attempts ended `Ok` so far.
    pub fn acked(&self) -> u64 {
        self.generator.acked.load(Ordering::Relaxed)
    }

    /// Sends the following attempts to these nodes (a node was added or removed).
    pub fn set_targets(&self, targets: Vec<Target>) {
        info!(targets = targets.len(), "load_targets_changed");
        *lock(&self.generator.targets) = targets;
    }

    /// Stops making messages, waits for the attempts in flight, and returns the whole
    /// history.
    pub async fn stop(self) -> History {
        self.shutdown.cancel();
        self.tracker.wait().await;
        let history = std::mem::take(&mut *self.generator.history());
        info!(
            messages = history.messages.len(),
            attempts = history.attempts.len(),
            acked = self.acked(),
            "load_stopped"
        );
        history
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Hands out message numbers 0, 1, 2, … one per tick, each to a worker ready to take it.
async fn pace(numbers: mpsc::Sender<u64>, rate_per_sec: f64, shutdown: CancellationToken) {
    // Zero, negative or absurdly small rates send nothing; absurdly large ones are capped
    // at one message per microsecond (a zero period would make `interval` panic).
    let Ok(period) = Duration::try_from_secs_f64(1.0 / rate_per_sec) else {
        return;
    };
    if rate_per_sec <= 0.0 || rate_per_sec.is_nan() {
        return;
    }
    let mut ticker = tokio::time::interval(period.max(Duration::from_micros(1)));
    // After a stall (every worker busy), carry on at the rate instead of catching up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for number in 0u64.. {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let slot = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            slot = numbers.reserve() => slot,
        };
        let Ok(slot) = slot else { return };
        slot.send(number);
    }
}

/// State shared by the workers and the handle, for the whole run.
struct Generator {
    /// Everything but `targets`, which moved to the field below.
    config: LoadConfig,
    epoch: Instant,
    /// Read at every pick; replaced by `set_targets`.
    targets: Mutex<Vec<Target>>,
    history: Mutex<History>,
    /// Attempts that ended `Ok`, readable without copying the history.
    acked: AtomicU64,
}

impl Generator {
    /// One worker: takes message numbers until the pacer stops or the run is cancelled.
    async fn work(
        &self,
        inbox: &tokio::sync::Mutex<mpsc::Receiver<u64>>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                next = async { inbox.lock().await.recv().await } => next,
            };
            let Some(number) = next else { return };
            self.send_message(number, shutdown).await;
        }
    }

    /// Makes message `id`, sends it, and sends it again to another node if the first
    /// answer calls for it (see [`LoadConfig::resubmit_fraction`]).
    async fn send_message(&self, id: u64, shutdown: &CancellationToken) {
        let config = &self.config;
        let mut decisions = message::message_rng(config.seed, id, DECISIONS);
        let Some(first) = self.pick_target(&mut decisions, None) else {
            debug!(chaos_id = id, "load_no_targets");
            return;
        };
        let body_len = pick_size(&config.body_size, config.seed, id);
        let message = ChaosMessage::build(
            config.seed,
            id,
            &config.sender,
            &config.recipient_domain,
            body_len,
        );
        self.history().messages.insert(
            id,
            Submitted {
                id,
                message_id: message.message_id.clone(),
                recipient: message.recipient.clone(),
                body_sha256: message.sha256.clone(),
                size: message.content.len(),
            },
        );
        let resubmit_by_chance = decisions.random_bool(config.resubmit_fraction.clamp(0.0, 1.0));
        let resubmit = match self.attempt(&first, &message).await {
            Outcome::Refused | Outcome::Unknown => true,
            Outcome::Ok => resubmit_by_chance,
            Outcome::Fail => false,
        };
        if !resubmit || shutdown.is_cancelled() {
            return;
        }
        if let Some(second) = self.pick_target(&mut decisions, Some(&first.node)) {
            self.attempt(&second, &message).await;
        }
    }

    /// A random target other than `avoid` if there is one, else any; `None` if there are
    /// no targets at all.
    fn pick_target(&self, decisions: &mut StdRng, avoid: Option<&str>) -> Option<Target> {
        let targets = lock(&self.targets);
        let others: Vec<&Target> = targets
            .iter()
            .filter(|t| Some(t.node.as_str()) != avoid)
            .collect();
        let candidates = if others.is_empty() {
            targets.iter().collect()
        } else {
            others
        };
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[decisions.random_range(0..candidates.len())].clone())
    }

    /// One session to `target`, recorded in the history.
    async fn attempt(&self, target: &Target, message: &ChaosMessage) -> Outcome {
        let started_ms = self.ms_since_epoch(Instant::now());
        let ended = session::submit(target.addr, message, self.config.step_timeout).await;
        debug!(
            chaos_id = message.id,
            node = %target.node,
            outcome = ?ended.outcome,
            reply = %ended.reply,
            "load_attempt"
        );
        let attempt = Attempt {
            message: message.id,
            node: target.node.clone(),
            started_ms,
            ended_ms: self.ms_since_epoch(ended.at),
            outcome: ended.outcome,
            reply: ended.reply,
        };
        self.history().attempts.push(attempt);
        if ended.outcome == Outcome::Ok {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
        ended.outcome
    }

    fn ms_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }
}

/// The body size of message `id`: from its own random stream, so it is the same
/// whichever worker builds it.
fn pick_size(range: &RangeInclusive<usize>, seed: u64, id: u64) -> usize {
    if range.is_empty() {
        return *range.start();
    }
    message::message_rng(seed, id, BODY_SIZE).random_range(range.clone())
}

/// A worker that panicked must not take the history of the others with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mxfleet_testkit::sink::Behavior;
    use mxfleet_testkit::{SinkMx, wait_for};

    use super::*;
    use crate::checker::{Delivery, check};

    fn config(targets: Vec<Target>, rate_per_sec: f64, resubmit_fraction: f64) -> LoadConfig {
        LoadConfig {
            targets,
            concurrency: 4,
            rate_per_sec,
            body_size: 200..=3000,
            resubmit_fraction,
            recipient_domain: "example.test".into(),
            sender: "load@client.chaos".into(),
            seed: 20,
            step_timeout: Duration::from_secs(2),
        }
    }

    fn target(node: &str, addr: SocketAddr) -> Target {
        Target {
            node: node.into(),
            addr,
        }
    }

    /// An address nothing listens on: bound once, then released.
    fn closed_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    }

    async fn run_until_messages(handle: LoadHandle, count: usize) -> History {
        wait_for(
            &format!("{count} messages submitted"),
            Duration::from_secs(4),
            || handle.snapshot().messages.len() >= count,
        )
        .await;
        handle.stop().await
    }

    fn attempts_by_message(history: &History) -> BTreeMap<u64, Vec<&Attempt>> {
        let mut by_message: BTreeMap<u64, Vec<&Attempt>> = BTreeMap::new();
        for attempt in &history.attempts {
            by_message.entry(attempt.message).or_default().push(attempt);
        }
        by_message
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_acked_message_reaches_an_accepting_sink_intact() {
        let sink = SinkMx::start().await;
        let epoch = Instant::now();
        let targets = vec![target("a", sink.addr()), target("b", sink.addr())];
        let handle = start(config(targets, 50.0, 0.2), epoch);
        let history = run_until_messages(handle, 45).await;
        let elapsed = epoch.elapsed();

        let paced_limit = (elapsed.as_secs_f64() * 50.0) as usize + 3;
        assert!(
            history.messages.len() <= paced_limit,
            "{} messages in {elapsed:?}: not paced",
            history.messages.len()
        );
        assert!(
            history.attempts.iter().all(|a| a.outcome == Outcome::Ok),
            "{:?}",
            history.attempts.iter().find(|a| a.outcome != Outcome::Ok)
        );
        for attempts in attempts_by_message(&history).values() {
            if let [first, second] = attempts.as_slice() {
                assert_ne!(first.node, second.node, "a resubmission goes elsewhere");
            }
            assert!(attempts.len() <= 2);
        }
        let received = sink.received();
        assert_eq!(received.len(), history.attempts.len(), "one copy per Ok");
        assert!(
            received.len() > history.messages.len(),
            "some messages were resubmitted"
        );

        let deliveries: Vec<Delivery> = received
            .iter()
            .map(|m| Delivery::from_sink(m, |_| Some("sink".into()), epoch))
            .collect();
        for delivery in &deliveries {
            let id = delivery.chaos_id.expect("a chaos id");
            let submitted = &history.messages[&id];
            assert_eq!(delivery.body_sha256.as_ref(), Some(&submitted.body_sha256));
            assert_eq!(delivery.message_id.as_ref(), Some(&submitted.message_id));
        }
        let verdict = check(&history, &deliveries);
        assert!(verdict.holds(), "{verdict:?}");
        assert_eq!(verdict.acked, verdict.submitted);
        assert_eq!(verdict.delivered, verdict.submitted);
        assert_eq!(verdict.duplicated_resubmission_missed, 0);
    }

    #[tokio::test]
    async fn a_closed_port_gives_only_refusals_each_retried_elsewhere() {
        let epoch = Instant::now();
        let targets = vec![target("a", closed_port()), target("b", closed_port())];
        let history = run_until_messages(start(config(targets, 100.0, 0.0), epoch), 8).await;

        assert!(!history.attempts.is_empty());
        assert!(
            history
                .attempts
                .iter()
                .all(|a| a.outcome == Outcome::Refused && a.reply.starts_with("connect: ")),
            "{:?}",
            history.attempts
        );
        let by_message = attempts_by_message(&history);
        assert!(by_message.values().any(|attempts| attempts.len() == 2));
        for attempts in by_message.values() {
            if let [first, second] = attempts.as_slice() {
                assert_ne!(first.node, second.node);
            }
        }
        let verdict = check(&history, &[]);
        assert!(verdict.holds(), "{verdict:?}");
        assert_eq!(verdict.acked, 0);
        assert_eq!(verdict.refused_or_failed, verdict.submitted);
    }

    #[tokio::test]
    async fn a_temporary_failure_at_mail_is_refused() {
        let sink = SinkMx::builder()
            .behavior(Behavior::temp_fail_mail())
            .start()
            .await;
        let targets = vec![target("a", sink.addr())];
        let history =
            run_until_messages(start(config(targets, 100.0, 0.0), Instant::now()), 5).await;
        assert!(!history.attempts.is_empty());
        for attempt in &history.attempts {
            assert_eq!(attempt.outcome, Outcome::Refused);
            assert_eq!(attempt.reply, "451 4.3.0 try again later");
        }
        assert_eq!(sink.received_count(), 0);
    }

    #[tokio::test]
    async fn a_connection_dropped_after_the_final_dot_is_unknown() {
        let sink = SinkMx::builder()
            .behavior(Behavior::drop_after_data())
            .start()
            .await;
        let targets = vec![target("a", sink.addr())];
        let history =
            run_until_messages(start(config(targets, 100.0, 0.0), Instant::now()), 5).await;
        assert!(
            history
                .attempts
                .iter()
                .all(|a| a.outcome == Outcome::Unknown),
            "{:?}",
            history.attempts
        );
        let verdict = check(&history, &[]);
        assert!(verdict.holds(), "{verdict:?}");
        assert_eq!(verdict.unknown, verdict.submitted);
        assert_eq!(verdict.unknown_delivered, 0);
    }

    #[tokio::test]
    async fn a_rejection_after_the_final_dot_is_a_failure_and_not_retried() {
        let sink = SinkMx::builder()
            .behavior(Behavior::perm_fail_data())
            .start()
            .await;
        let targets = vec![target("a", sink.addr()), target("b", sink.addr())];
        let history =
            run_until_messages(start(config(targets, 100.0, 1.0), Instant::now()), 5).await;
        assert!(history.attempts.iter().all(|a| a.outcome == Outcome::Fail));
        assert_eq!(history.attempts.len(), history.messages.len());
    }

    #[tokio::test]
    async fn new_targets_take_effect_during_a_run() {
        let sink = SinkMx::start().await;
        let handle = start(
            config(vec![target("gone", closed_port())], 100.0, 0.0),
            Instant::now(),
        );
        wait_for("a refusal", Duration::from_secs(2), || {
            !handle.snapshot().attempts.is_empty()
        })
        .await;
        handle.set_targets(vec![target("sink", sink.addr())]);
        wait_for("three acks", Duration::from_secs(2), || handle.acked() >= 3).await;
        let history = handle.stop().await;
        let ok_nodes: Vec<&str> = history
            .attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Ok)
            .map(|a| a.node.as_str())
            .collect();
        assert!(ok_nodes.len() >= 3 && ok_nodes.iter().all(|n| *n == "sink"));
        assert!(history.attempts.iter().any(|a| a.node == "gone"));
    }

    /// On the paused clock: neither run touches the network, so a virtual second of
    /// ticks passes in no time.
    #[tokio::test(start_paused = true)]
    async fn no_targets_and_no_rate_make_no_messages() {
        let handle = start(config(vec![], 100.0, 0.0), Instant::now());
        let idle = start(
            config(vec![target("a", closed_port())], 0.0, 0.0),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(handle.stop().await.messages.is_empty());
        assert!(idle.stop().await.messages.is_empty());
    }

    #[test]
    fn body_sizes_follow_the_range_and_the_seed() {
        for id in 0..100 {
            let size = pick_size(&(10..=20), 1, id);
            assert!((10..=20).contains(&size));
            assert_eq!(size, pick_size(&(10..=20), 1, id));
        }
        assert_eq!(pick_size(&(7..=7), 1, 1), 7);
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 9..=3;
        assert_eq!(pick_size(&empty, 1, 1), 9);
    }
}
