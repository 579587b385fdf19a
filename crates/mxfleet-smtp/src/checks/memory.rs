//! A fleet of one, in memory: [`MemorySpamState`] applies facts at once to its own
//! `SpamState`, with a clock the caller sets, and [`ScriptedProber`] answers probes
//! from a table. For transcript tests and for a node run without a queue; the
//! production implementation is the node's `QueueSpamState`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use mxfleet_core::spam::{GreylistKey, GreylistRecord, RecipientVerdict};
use mxfleet_core::{SpamFact, SpamState, UnixMillis};

use super::fleet::{FleetSpamState, ProbeOutcome, RecipientProber};

/// [`FleetSpamState`] without Raft.
#[derive(Debug, Default)]
pub struct MemorySpamState {
    state: Mutex<SpamState>,
    now_ms: AtomicU64,
    primary_down: Mutex<HashMap<String, bool>>,
    recorded: AtomicU64,
}

impl MemorySpamState {
    /// A state whose clock reads `now`.
    pub fn at(now: UnixMillis) -> Self {
        let state = MemorySpamState::default();
        state.set_now(now);
        state
    }

    pub fn set_now(&self, now: UnixMillis) {
        self.now_ms.store(now.0, Ordering::SeqCst);
    }

    pub fn advance(&self, millis: u64) {
        self.now_ms.fetch_add(millis, Ordering::SeqCst);
    }

    /// What the fleet sees of `domain`'s primary from now on.
    pub fn set_primary_down(&self, domain: &str, down: bool) {
        lock(&self.primary_down).insert(domain.to_ascii_lowercase(), down);
    }

    /// Facts recorded so far.
    pub fn facts_recorded(&self) -> u64 {
        self.recorded.load(Ordering::SeqCst)
    }

    /// A copy of the tables.
    pub fn snapshot(&self) -> SpamState {
        lock(&self.state).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FleetSpamState for MemorySpamState {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.now_ms.load(Ordering::SeqCst))
    }

    fn triplet(&self, key: &GreylistKey) -> Option<GreylistRecord> {
        lock(&self.state).triplet(key, self.now()).cloned()
    }

    fn network_passes(&self, network: &str) -> u32 {
        lock(&self.state).network_passes(network, self.now())
    }

    fn verdict(&self, address: &str) -> Option<RecipientVerdict> {
        lock(&self.state).verdict(address, self.now()).cloned()
    }

    fn primary_down(&self, domain: &str) -> Option<bool> {
        lock(&self.primary_down)
            .get(&domain.to_ascii_lowercase())
            .copied()
    }

    fn record(&self, fact: SpamFact) {
        self.recorded.fetch_add(1, Ordering::SeqCst);
        lock(&self.state).apply_facts(&[fact]);
    }

    fn node_id(&self) -> u64 {
        1
    }
}

/// [`RecipientProber`] answering from a table; an address not in it is `Unknown`.
#[derive(Debug, Default)]
pub struct ScriptedProber {
    answers: Mutex<HashMap<String, ProbeOutcome>>,
    probes: AtomicU64,
}

impl ScriptedProber {
    pub fn answer(&self, address: &str, outcome: ProbeOutcome) {
        lock(&self.answers).insert(address.to_lowercase(), outcome);
    }

    /// How many probes were made.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl RecipientProber for ScriptedProber {
    async fn probe(&self, _domain: &str, address: &str) -> ProbeOutcome {
        self.probes.fetch_add(1, Ordering::SeqCst);
        lock(&self.answers)
            .get(&address.to_lowercase())
            .cloned()
            .unwrap_or(ProbeOutcome::Unknown {
                reason: "no scripted answer".to_owned(),
            })
    }
}
