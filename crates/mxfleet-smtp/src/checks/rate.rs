//! Anvil-style rate limits: connections, messages and recipients per client IP and per
//! client network, in fixed windows of `anvil_rate_time_unit`.
//!
//! **Counted on this node only.** A client that spreads its connections over N nodes of
//! the fleet gets up to N × each limit. Counting fleet-wide would mean a Raft write (a
//! quorum round trip and an fsync on a majority) for every connection, message and
//! recipient, before the reply: the limiter exists to make abusive clients cheap, and
//! that would make every client, abusive or not, as expensive as queueing a message. The
//! limits stop one client from hammering one node, which is what they are for; spam
//! volume across the fleet is the DNSBL's and greylisting's job.
//!
//! As in Postfix's anvil, a client's window starts with its first counted event and
//! lasts `window`; the next event after that starts a new window at zero. An event that
//! is refused is not counted, so a client that waits for the window to roll gets
//! through. Exceptions (`smtpd_client_event_limit_exceptions`) are never counted.
//!
//! Sans-IO: every method takes `now`, so tests step time without sleeping.
//!
//! Layout: [`RateLimiter`] (the counters), [`RateLimited`] (a refusal and its Postfix
//! reply), [`RateKind`] and [`RateScope`], and [`network_of`], the /24 or /64 a client
//! belongs to, which greylisting also keys on.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::checks::config::RateLimitConfig;
use crate::reply::Reply;

/// Counters kept at most, client and network windows together, unless
/// [`RateLimiter::with_max_tracked`] says otherwise. About 64 bytes each, so a few MB.
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

/// Calls between two sweeps of ended windows, when the table is below its bound.
const SWEEP_EVERY: u32 = 1024;

/// What is being counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateKind {
    /// A new SMTP connection (`smtpd_client_connection_rate_limit`).
    Connection,
    /// A `MAIL FROM` (`smtpd_client_message_rate_limit`).
    Message,
    /// A `RCPT TO` (`smtpd_client_recipient_rate_limit`).
    Recipient,
}

/// Whom a count belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateScope {
    /// The client IP address (IPv4-mapped IPv6 counts as IPv4).
    Client,
    /// The client's network: its /24 for IPv4, its /64 for IPv6.
    Network,
}

/// An event refused because its client or network reached a limit in this window.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what:?} rate limit reached by {key}: more than {limit} in {window:?}")]
pub struct RateLimited {
    pub what: RateKind,
    pub scope: RateScope,
    /// The client IP or network, as in the reply: `192.0.2.7`, `192.0.2.0/24`.
    pub key: String,
    pub limit: u32,
    pub window: Duration,
}

impl RateLimited {
    /// The reply Postfix gives for this limit. `hostname` is the node's `myhostname`,
    /// named only by the connection refusal, which also ends the session (421).
    pub fn reply(&self, hostname: &str) -> Reply {
        let key = &self.key;
        match self.what {
            RateKind::Connection => Reply::new(
                421,
                "4.7.0",
                format!("{hostname} Error: too many connections from {key}"),
            ),
            RateKind::Message => {
                Reply::new(450, "4.7.1", format!("Error: too much mail from {key}"))
            }
            RateKind::Recipient => Reply::new(
                450,
                "4.7.1",
                format!("Error: too many recipients from {key}"),
            ),
        }
    }
}

/// The counters of one node. Shared by every session through `&self`; one lock, held
/// for a few hash lookups per event.
pub struct RateLimiter {
    config: RateLimitConfig,
    max_tracked: usize,
    counters: Mutex<Counters>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .field("tracked", &self.tracked())
            .finish()
    }
}

/// The windows of every client and network that had a counted event recently.
///
/// An entry is created by the first counted event of its key, restarted in place when
/// an event finds its window ended, and removed by a sweep once the window ended, or,
/// if the table is full of live windows, evicted oldest first.
#[derive(Default)]
struct Counters {
    windows: HashMap<CounterKey, Window>,
    calls_since_sweep: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct CounterKey {
    kind: RateKind,
    scope: RateScope,
    /// The canonical client address, or its network's first address.
    addr: IpAddr,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    count: u32,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_max_tracked(config, DEFAULT_MAX_TRACKED)
    }

    /// A limiter that keeps at most `max_tracked` counters (at least 2: one client and
    /// its network). Past that, the oldest windows are forgotten, which lets their
    /// clients start over: memory stays bounded under a flood of distinct clients.
    pub fn with_max_tracked(config: RateLimitConfig, max_tracked: usize) -> Self {
        RateLimiter {
            config,
            max_tracked: max_tracked.max(2),
            counters: Mutex::new(Counters::default()),
        }
    }

    /// Counts a new connection from `ip`, or refuses it (answer 421 and close).
    pub fn connection(&self, ip: IpAddr, now: Instant) -> Result<(), RateLimited> {
        self.event(RateKind::Connection, ip, now)
    }

    /// Counts a `MAIL FROM` from `ip`, or refuses it (450).
    pub fn message(&self, ip: IpAddr, now: Instant) -> Result<(), RateLimited> {
        self.event(RateKind::Message, ip, now)
    }

    /// Counts a `RCPT TO` from `ip`, or refuses it (450).
    pub fn recipient(&self, ip: IpAddr, now: Instant) -> Result<(), RateLimited> {
        self.event(RateKind::Recipient, ip, now)
    }

    /// Counters currently kept, ended windows not yet swept included.
    pub fn tracked(&self) -> usize {
        self.lock().windows.len()
    }

    fn limits(&self, kind: RateKind) -> (u32, u32) {
        let c = &self.config;
        match kind {
            RateKind::Connection => (
                c.client_connection_rate_limit,
                c.network_connection_rate_limit,
            ),
            RateKind::Message => (c.client_message_rate_limit, c.network_message_rate_limit),
            RateKind::Recipient => (
                c.client_recipient_rate_limit,
                c.network_recipient_rate_limit,
            ),
        }
    }

    fn event(&self, kind: RateKind, ip: IpAddr, now: Instant) -> Result<(), RateLimited> {
        let ip = ip.to_canonical();
        let (client_limit, network_limit) = self.limits(kind);
        if (client_limit == 0 && network_limit == 0)
            || self.config.exceptions.iter().any(|net| net.contains(ip))
        {
            return Ok(());
        }
        let scopes = [
            (RateScope::Client, ip, client_limit),
            (RateScope::Network, network_addr(ip), network_limit),
        ];
        let window = self.config.window;
        let mut counters = self.lock();
        counters.maintain(now, window, self.max_tracked);

        // Both scopes are judged before either is counted, so a refused event leaves
        // no trace.
        for (scope, addr, limit) in scopes {
            if limit == 0 {
                continue;
            }
            let key = CounterKey { kind, scope, addr };
            let used = counters
                .windows
                .get(&key)
                .filter(|w| !w.ended(now, window))
                .map_or(0, |w| w.count);
            if used >= limit {
                return Err(RateLimited {
                    what: kind,
                    scope,
                    key: match scope {
                        RateScope::Client => ip.to_string(),
                        RateScope::Network => network_of(ip),
                    },
                    limit,
                    window,
                });
            }
        }
        for (scope, addr, limit) in scopes {
            if limit == 0 {
                continue;
            }
            let entry = counters
                .windows
                .entry(CounterKey { kind, scope, addr })
                .or_insert(Window {
                    start: now,
                    count: 0,
                });
            if entry.ended(now, window) {
                *entry = Window {
                    start: now,
                    count: 0,
                };
            }
            entry.count = entry.count.saturating_add(1);
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // The counters are plain numbers, consistent after any panic: keep using them.
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Window {
    fn ended(&self, now: Instant, window: Duration) -> bool {
        // Sessions read the clock before taking the lock, so `now` may be slightly
        // older than `start`: that is the same window.
        now.saturating_duration_since(self.start) >= window
    }
}

impl Counters {
    /// Sweeps ended windows every [`SWEEP_EVERY`] calls, and before an event could grow
    /// the table past `max_tracked`; if live windows alone fill it, evicts the oldest
    /// down to three quarters, so that eviction is not paid on every call.
    fn maintain(&mut self, now: Instant, window: Duration, max_tracked: usize) {
        self.calls_since_sweep += 1;
        // One event adds at most two counters (client and network).
        let full = self.windows.len() + 2 > max_tracked;
        if self.calls_since_sweep < SWEEP_EVERY && !full {
            return;
        }
        self.calls_since_sweep = 0;
        self.windows.retain(|_, w| !w.ended(now, window));
        if self.windows.len() + 2 > max_tracked {
            let keep = (max_tracked * 3 / 4).min(max_tracked - 2);
            let mut by_age: Vec<(Instant, CounterKey)> =
                self.windows.iter().map(|(k, w)| (w.start, *k)).collect();
            by_age.sort_unstable_by_key(|(start, _)| *start);
            let excess = by_age.len().saturating_sub(keep);
            for (_, key) in by_age.into_iter().take(excess) {
                self.windows.remove(&key);
            }
        }
    }
}

/// The first address of `ip`'s network (canonical IPv4 first).
fn network_addr(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & !0xff)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

/// The network a client belongs to, in canonical CIDR text: its /24 for IPv4
/// (`192.0.2.0/24`), its /64 for IPv6 (`2001:db8:1:2::/64`, RFC 5952 form), with an
/// IPv4-mapped IPv6 client counted as IPv4. Greylisting keys its triplets on this text
/// fleet-wide, so the same client must give the same text on every node and release.
pub fn network_of(ip: IpAddr) -> String {
    match network_addr(ip) {
        IpAddr::V4(v4) => format!("{v4}/24"),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn limiter(edit: impl FnOnce(&mut RateLimitConfig)) -> RateLimiter {
        let mut config = RateLimitConfig::default();
        edit(&mut config);
        RateLimiter::new(config)
    }

    #[test]
    fn network_of_is_canonical() {
        assert_eq!(network_of(ip("192.0.2.77")), "192.0.2.0/24");
        assert_eq!(network_of(ip("192.0.2.0")), "192.0.2.0/24");
        assert_eq!(network_of(ip("::ffff:192.0.2.77")), "192.0.2.0/24");
        assert_eq!(network_of(ip("2001:DB8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(network_of(ip("2001:db8:0:0:ffff::1")), "2001:db8::/64");
        assert_eq!(network_of(ip("2001:0db8:0001:0002::")), "2001:db8:1:2::/64");
        assert_eq!(network_of(ip("::1")), "::/64");
    }

    #[test]
    fn client_limit_is_hit_and_reset_when_the_window_rolls() {
        let rates = limiter(|c| c.client_connection_rate_limit = 2);
        let t0 = Instant::now();
        let client = ip("192.0.2.7");
        assert_eq!(rates.connection(client, t0), Ok(()));
        assert_eq!(
            rates.connection(client, t0 + Duration::from_secs(10)),
            Ok(())
        );
        let refused = rates
            .connection(client, t0 + Duration::from_secs(59))
            .expect_err("third connection in the window");
        assert_eq!(
            refused,
            RateLimited {
                what: RateKind::Connection,
                scope: RateScope::Client,
                key: "192.0.2.7".to_owned(),
                limit: 2,
                window: MINUTE,
            }
        );
        // The window started with the first connection, so it rolls at t0 + 60s.
        assert_eq!(rates.connection(client, t0 + MINUTE), Ok(()));
        assert_eq!(rates.connection(client, t0 + MINUTE), Ok(()));
        assert!(rates.connection(client, t0 + MINUTE).is_err());
        // Another client is counted on its own.
        assert_eq!(rates.connection(ip("192.0.2.8"), t0 + MINUTE), Ok(()));
    }

    #[test]
    fn refused_events_are_not_counted() {
        let rates = limiter(|c| {
            c.client_message_rate_limit = 1;
            c.network_message_rate_limit = 2;
        });
        let t0 = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(rates.message(a, t0), Ok(()));
        // Refused by its client limit: the network must not count these.
        for _ in 0..5 {
            assert_eq!(rates.message(a, t0).unwrap_err().scope, RateScope::Client);
        }
        assert_eq!(rates.message(b, t0), Ok(()));
        // b's window started at t0 too, and nothing refused was counted into it.
        let later = t0 + Duration::from_secs(30);
        let refused = rates.message(ip("192.0.2.3"), later).unwrap_err();
        assert_eq!(refused.scope, RateScope::Network);
        assert_eq!(rates.message(ip("192.0.2.3"), t0 + MINUTE), Ok(()));
    }

    #[test]
    fn network_scope_adds_up_the_clients_of_a_slash_24() {
        let rates = limiter(|c| c.network_recipient_rate_limit = 3);
        let t0 = Instant::now();
        assert_eq!(rates.recipient(ip("192.0.2.1"), t0), Ok(()));
        assert_eq!(rates.recipient(ip("192.0.2.2"), t0), Ok(()));
        assert_eq!(rates.recipient(ip("192.0.2.200"), t0), Ok(()));
        let refused = rates.recipient(ip("192.0.2.9"), t0).unwrap_err();
        assert_eq!(refused.scope, RateScope::Network);
        assert_eq!(refused.key, "192.0.2.0/24");
        assert_eq!(
            refused.reply("mx1.example.net").to_wire(),
            "450 4.7.1 Error: too many recipients from 192.0.2.0/24\r\n"
        );
        // The next /24 has its own count.
        assert_eq!(rates.recipient(ip("192.0.3.1"), t0), Ok(()));
    }

    #[test]
    fn ipv6_clients_count_by_slash_64() {
        let rates = limiter(|c| c.network_connection_rate_limit = 1);
        let t0 = Instant::now();
        assert_eq!(rates.connection(ip("2001:db8:1:2::1"), t0), Ok(()));
        let refused = rates
            .connection(ip("2001:db8:1:2:ffff::9"), t0)
            .unwrap_err();
        assert_eq!(refused.key, "2001:db8:1:2::/64");
        assert_eq!(rates.connection(ip("2001:db8:1:3::1"), t0), Ok(()));
    }

    #[test]
    fn ipv4_mapped_clients_count_as_ipv4() {
        let rates = limiter(|c| c.client_connection_rate_limit = 1);
        let t0 = Instant::now();
        assert_eq!(rates.connection(ip("192.0.2.7"), t0), Ok(()));
        let refused = rates.connection(ip("::ffff:192.0.2.7"), t0).unwrap_err();
        assert_eq!(refused.key, "192.0.2.7");
        assert_eq!(
            refused.reply("mx1.example.net").to_wire(),
            "421 4.7.0 mx1.example.net Error: too many connections from 192.0.2.7\r\n"
        );
    }

    #[test]
    fn exceptions_are_never_limited() {
        let rates = limiter(|c| {
            c.client_message_rate_limit = 1;
            c.network_message_rate_limit = 1;
            c.exceptions = vec![
                "127.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ];
        });
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(rates.message(ip("127.0.0.1"), t0), Ok(()));
            assert_eq!(rates.message(ip("::ffff:127.0.0.2"), t0), Ok(()));
            assert_eq!(rates.message(ip("2001:db8::25"), t0), Ok(()));
        }
        assert_eq!(rates.tracked(), 0);
        assert_eq!(rates.message(ip("192.0.2.1"), t0), Ok(()));
        assert_eq!(
            rates
                .message(ip("192.0.2.1"), t0)
                .unwrap_err()
                .reply("mx")
                .to_wire(),
            "450 4.7.1 Error: too much mail from 192.0.2.1\r\n"
        );
    }

    #[test]
    fn limit_zero_is_off() {
        let rates = limiter(|c| c.client_connection_rate_limit = 1);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(rates.message(ip("192.0.2.1"), t0), Ok(()));
            assert_eq!(rates.recipient(ip("192.0.2.1"), t0), Ok(()));
        }
        // Nothing is counted for limits that are off.
        assert_eq!(rates.tracked(), 0);
        assert_eq!(rates.connection(ip("192.0.2.1"), t0), Ok(()));
        assert_eq!(rates.tracked(), 1);
    }

    #[test]
    fn ended_windows_are_swept() {
        let rates = limiter(|c| {
            c.client_connection_rate_limit = 10;
            c.network_connection_rate_limit = 100;
        });
        let t0 = Instant::now();
        for n in 0..=255u8 {
            rates
                .connection(IpAddr::V4(Ipv4Addr::new(10, 0, n, 1)), t0)
                .unwrap();
        }
        assert_eq!(rates.tracked(), 512);
        // A full sweep period later, every window from t0 has ended.
        let later = t0 + MINUTE;
        for _ in 0..SWEEP_EVERY {
            // Mostly refused (limit 10); only the sweep matters here.
            let _ = rates.connection(ip("192.0.2.1"), later);
        }
        assert_eq!(rates.tracked(), 2);
    }

    #[test]
    fn live_windows_past_the_bound_are_evicted_oldest_first() {
        let config = RateLimitConfig {
            client_connection_rate_limit: 1,
            ..RateLimitConfig::default()
        };
        let rates = RateLimiter::with_max_tracked(config, 100);
        let t0 = Instant::now();
        for n in 0..1000u16 {
            let [high, low] = n.to_be_bytes();
            let at = t0 + Duration::from_millis(u64::from(n));
            rates
                .connection(IpAddr::V4(Ipv4Addr::new(10, 0, high, low)), at)
                .unwrap();
            assert!(rates.tracked() <= 100, "{} after {n}", rates.tracked());
        }
        let end = t0 + Duration::from_millis(1000);
        // The newest client is still limited; the first was forgotten to make room.
        assert!(rates.connection(ip("10.0.3.231"), end).is_err());
        assert_eq!(rates.connection(ip("10.0.0.0"), end), Ok(()));
    }
}
