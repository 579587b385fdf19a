//! What the simulated network does to the bytes of one directed link, decided without IO.
//!
//! A link is a directed pair of host names (`from` → `to`). Its [`LinkCondition`] is read
//! by the pumps of every proxied connection between the two hosts, whichever side opened
//! it. Everything here takes `now` and returns values, so the pacing rules are tested
//! with made-up instants and the async shell in `pump.rs` only moves bytes.
//!
//! Layout:
//! - [`LinkCondition`], [`Cut`]: the fault set on one directed link.
//! - [`LinkStats`] and `LinkCounters`: what crossed (or failed to cross) a link.
//! - `Ending`, `ending_for_change`: how a live connection ends when a cut is set later.
//! - `Verdict`, `verdict`: what a pump does with the bytes it holds.
//! - `DueClock`: due times for latency and jitter that never reorder chunks.
//! - `TokenBucket`: the bandwidth cap of one direction of one connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The condition of bytes flowing from one host to another. The default is a clean pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkCondition {
    /// A cut of the link; `None` lets bytes through (subject to the fields below).
    pub cut: Option<Cut>,
    /// Added one-way delay per chunk; order is preserved.
    pub latency: Duration,
    /// A uniform extra delay in `0..=jitter` per chunk; order is still preserved.
    pub jitter: Duration,
    /// Bytes per second through a token bucket kept per direction of each connection
    /// (two connections on the same link get the cap each). `None` is unlimited and
    /// `Some(0)` is treated as 1 byte per second.
    pub bandwidth: Option<u64>,
}

impl LinkCondition {
    /// A link cut the given way, with no delay or cap.
    pub fn cut(cut: Cut) -> LinkCondition {
        LinkCondition {
            cut: Some(cut),
            ..LinkCondition::default()
        }
    }

    /// True when the link passes every byte at once.
    pub fn is_clean(&self) -> bool {
        *self == LinkCondition::default()
    }
}

/// How a link is cut. Every cut acts on the bytes of one direction; see the module
/// documentation of `proxy` for how each cut treats new and live connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Like a firewall REJECT: new connections in this direction are reset at once
    /// (accepted, then closed with `SO_LINGER` 0, so the client sees RST), and live
    /// connections between the two hosts are reset both ways.
    Refuse,
    /// Like a middlebox that lost its state: live connections are cut at once (closed
    /// both ways with FIN); new connections are accepted and then held silently, as
    /// under [`Cut::Blackhole`].
    Drop,
    /// Accepted and never answered: new connections are accepted and held with nothing
    /// passing; live connections stall with their bytes in this direction silently
    /// discarded. Peers only notice through their own timeouts.
    Blackhole,
}

/// Counters of one directed link since the network was created. Connections count on
/// the link from the connecting host to the fronted one; bytes count in the direction
/// they flowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub from: String,
    pub to: String,
    /// Connections accepted and relayed to the fronted host.
    pub connections_accepted: u64,
    /// Connections accepted and held silently (the link was cut with Drop or Blackhole).
    pub connections_held: u64,
    /// Connections reset at accept (the link was cut with Refuse).
    pub connections_refused: u64,
    /// Bytes delivered to the receiving host.
    pub bytes_passed: u64,
    /// Bytes read from the sending host and thrown away.
    pub bytes_discarded: u64,
}

/// The live counters behind one [`LinkStats`]; shared by the network's table and every
/// connection on the link, so pumps count without taking the network's lock.
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_held: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) bytes_passed: AtomicU64,
    pub(crate) bytes_discarded: AtomicU64,
}

impl LinkCounters {
    pub(crate) fn add(counter: &AtomicU64, amount: usize) {
        counter.fetch_add(amount as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, from: &str, to: &str) -> LinkStats {
        LinkStats {
            from: from.to_owned(),
            to: to.to_owned(),
            connections_accepted: self.connections_accepted.load(Ordering::Relaxed),
            connections_held: self.connections_held.load(Ordering::Relaxed),
            connections_refused: self.connections_refused.load(Ordering::Relaxed),
            bytes_passed: self.bytes_passed.load(Ordering::Relaxed),
            bytes_discarded: self.bytes_discarded.load(Ordering::Relaxed),
        }
    }
}

/// How the proxy ends a live connection on its own (rather than because its peers
/// closed it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Both sockets are closed with `SO_LINGER` 0: each peer sees RST.
    Reset,
    /// Both sockets are shut down for writing and closed: each peer sees FIN.
    Close,
}

/// What a live connection must do when the cut of one of its directions changes from
/// `old` to `new`. Only a change acts, so setting the same cut twice is harmless;
/// Blackhole needs no ending, the pumps discard on their own.
pub(crate) fn ending_for_change(old: Option<Cut>, new: Option<Cut>) -> Option<Ending> {
    if old == new {
        return None;
    }
    match new {
        Some(Cut::Refuse) => Some(Ending::Reset),
        Some(Cut::Drop) => Some(Ending::Close),
        Some(Cut::Blackhole) | None => None,
    }
}

/// What a pump does with bytes in hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    /// Throw the bytes away, and everything after them in this direction.
    Discard,
    /// Reset the whole connection.
    Reset,
}

/// The verdict for bytes in a direction that is `dead` (it discarded bytes before) and
/// whose link is cut by `cut`. A dead direction never passes again: its peer lost bytes
/// in the middle of the stream, and delivering later ones would corrupt it.
pub(crate) fn verdict(dead: bool, cut: Option<Cut>) -> Verdict {
    match cut {
        Some(Cut::Refuse) => Verdict::Reset,
        Some(Cut::Drop | Cut::Blackhole) => Verdict::Discard,
        None if dead => Verdict::Discard,
        None => Verdict::Pass,
    }
}

/// Stamps each chunk of one direction with the time it may be written. A chunk is never
/// due before the chunk read ahead of it, so jitter delays but never reorders.
#[derive(Debug, Default)]
pub(crate) struct DueClock {
    last_due: Option<Instant>,
}

impl DueClock {
    /// The due time of a chunk read at `now` on a link with `latency`, given a jitter
    /// sample already drawn from `0..=jitter`.
    pub(crate) fn stamp(&mut self, now: Instant, latency: Duration, jitter: Duration) -> Instant {
        let wanted = now + latency + jitter;
        let due = match self.last_due {
            Some(last) if last > wanted => last,
            _ => wanted,
        };
        self.last_due = Some(due);
        due
    }
}

/// A uniform sample from `0..=jitter`.
pub(crate) fn jitter_sample(jitter: Duration) -> Duration {
    use rand::Rng;
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// The answer of a [`TokenBucket`] to a request to write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Grant {
    /// Write this many bytes now (at least 1, at most what was asked).
    Send(usize),
    /// Nothing may be written before this much time has passed; ask again then.
    Wait(Duration),
}

/// The bandwidth cap of one direction of one connection. The bucket holds 50 ms worth of
/// bytes, starts full, and refills at the link's current rate, which may change between
/// requests (the bucket is clamped to the new size).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// The rate the bucket last granted at; `None` while the link is unlimited.
    rate: Option<u64>,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    pub(crate) fn new(now: Instant) -> TokenBucket {
        TokenBucket {
            rate: None,
            tokens: 0.0,
            refilled: now,
        }
    }

    /// How much of `wanted` bytes may be written at `now` when the link allows `rate`
    /// bytes per second.
    pub(crate) fn grant(&mut self, wanted: usize, rate: Option<u64>, now: Instant) -> Grant {
        let elapsed = now.saturating_duration_since(self.refilled);
        self.refilled = now;
        let Some(rate) = rate else {
            self.rate = None;
            return Grant::Send(wanted);
        };
        let rate = rate.max(1);
        let capacity = (rate / 20).max(1) as f64;
        if self.rate.is_none() {
            self.tokens = capacity;
        } else {
            self.tokens = (self.tokens + elapsed.as_secs_f64() * rate as f64).min(capacity);
        }
        self.rate = Some(rate);
        if self.tokens >= 1.0 {
            let granted = wanted.min(self.tokens as usize);
            self.tokens -= granted as f64;
            return Grant::Send(granted);
        }
        let needed = (wanted as f64).min(capacity) - self.tokens;
        Grant::Wait(Duration::from_secs_f64(needed / rate as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_to_refuse_or_drop_ends_a_live_connection() {
        assert_eq!(
            ending_for_change(None, Some(Cut::Refuse)),
            Some(Ending::Reset)
        );
        assert_eq!(
            ending_for_change(None, Some(Cut::Drop)),
            Some(Ending::Close)
        );
        assert_eq!(
            ending_for_change(Some(Cut::Blackhole), Some(Cut::Drop)),
            Some(Ending::Close)
        );
        assert_eq!(ending_for_change(None, Some(Cut::Blackhole)), None);
        assert_eq!(ending_for_change(Some(Cut::Drop), Some(Cut::Drop)), None);
        assert_eq!(ending_for_change(Some(Cut::Refuse), None), None);
    }

    #[test]
    fn a_dead_direction_discards_even_after_heal() {
        assert_eq!(verdict(false, None), Verdict::Pass);
        assert_eq!(verdict(true, None), Verdict::Discard);
        assert_eq!(verdict(false, Some(Cut::Blackhole)), Verdict::Discard);
        assert_eq!(verdict(false, Some(Cut::Drop)), Verdict::Discard);
        assert_eq!(verdict(true, Some(Cut::Refuse)), Verdict::Reset);
    }

    #[test]
    fn jitter_never_makes_a_chunk_due_before_the_one_ahead_of_it() {
        let start = Instant::now();
        let latency = Duration::from_millis(10);
        let mut clock = DueClock::default();
        let first = clock.stamp(start, latency, Duration::from_millis(30));
        let second = clock.stamp(start + Duration::from_millis(1), latency, Duration::ZERO);
        assert_eq!(first, start + Duration::from_millis(40));
        assert_eq!(second, first, "the second chunk waits for the first");
        let later = clock.stamp(start + Duration::from_millis(100), latency, Duration::ZERO);
        assert_eq!(later, start + Duration::from_millis(110));
    }

    #[test]
    fn jitter_samples_stay_within_bounds() {
        let jitter = Duration::from_millis(5);
        for _ in 0..1000 {
            assert!(jitter_sample(jitter) <= jitter);
        }
        assert_eq!(jitter_sample(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn token_bucket_paces_to_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(start);
        // 1000 B/s: the bucket holds 50 bytes and starts full.
        assert_eq!(bucket.grant(400, Some(1000), start), Grant::Send(50));
        let Grant::Wait(wait) = bucket.grant(400, Some(1000), start) else {
            panic!("an empty bucket must ask to wait");
        };
        assert_eq!(wait, Duration::from_millis(50));
        assert_eq!(bucket.grant(400, Some(1000), start + wait), Grant::Send(50));
        // Idle time refills no more than the bucket holds.
        let idle = start + Duration::from_secs(10);
        assert_eq!(bucket.grant(400, Some(1000), idle), Grant::Send(50));
    }

    #[test]
    fn token_bucket_follows_rate_changes() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(start);
        assert_eq!(bucket.grant(10_000, None, start), Grant::Send(10_000));
        assert_eq!(bucket.grant(10_000, Some(20_000), start), Grant::Send(1000));
        assert_eq!(bucket.grant(10_000, None, start), Grant::Send(10_000));
        assert_eq!(bucket.grant(10, Some(0), start), Grant::Send(1));
    }
}
