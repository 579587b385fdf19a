//! Delivery settings in their validated form: fleet-wide timings (leases, backoff,
//! scans, probes) and a policy per destination (route, TLS, pacing, lifetime, delay
//! warnings), plus the primaries every node watches. `mxfleet-node` builds this from the
//! `[delivery]` and `[[relay_domains]]` config; tests build it directly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::backoff::Backoff;
use crate::client::{ClientOptions, TlsPolicy};
use crate::lease::LeaseTiming;
use crate::route::{NextHop, Route};
use crate::scheduler::DEFAULT_TICK;

/// How mail for one destination (a recipient domain) is delivered.
#[derive(Clone, Debug)]
pub struct DestinationPolicy {
    pub route: Route,
    pub tls: TlsPolicy,
    /// Fleet-wide: connections the whole fleet may hold to the destination at once
    /// (Postfix's `default_destination_concurrency_limit`, but for the fleet).
    pub max_connections: u32,
    /// Fleet-wide: messages per second handed to the destination; `None` is no limit.
    pub max_messages_per_second: Option<u32>,
    /// Postfix's `maximal_queue_lifetime`: then the message bounces.
    pub lifetime: Duration,
    /// Postfix's `delay_warning_time`; `None` sends no warnings.
    pub delay_warning: Option<Duration>,
}

impl Default for DestinationPolicy {
    /// MX routing, opportunistic TLS, 10 connections, no rate limit, 28 days, warn
    /// after 4 hours.
    fn default() -> Self {
        DestinationPolicy {
            route: Route::new(NextHop::Mx),
            tls: TlsPolicy::Opportunistic,
            max_connections: 10,
            max_messages_per_second: None,
            lifetime: Duration::from_secs(28 * 24 * 3600),
            delay_warning: Some(Duration::from_secs(4 * 3600)),
        }
    }
}

/// Everything delivery needs to know, for every node of the fleet.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// This node's name in EHLO.
    pub hostname: String,
    /// The fleet-wide name DSNs report as (`Reporting-MTA`, `MAILER-DAEMON@...`). The
    /// same on every node, so that a DSN rebuilt by a new leader is byte-identical and
    /// deduplicated.
    pub reporting_mta: String,
    pub lease: LeaseTiming,
    pub backoff: Backoff,
    /// How often the leader rescans deferred messages whose backoff is over
    /// (Postfix's `queue_run_delay`). New mail and released destinations do not wait
    /// for it.
    pub queue_run_delay: Duration,
    /// How often each node probes (connect + EHLO) a destination with deferred mail,
    /// and every watched primary.
    pub probe_interval: Duration,
    /// The leader stops giving work to a node it has not heard from for this long.
    pub node_dead_after: Duration,
    /// How often the leader's scheduler runs.
    pub scheduler_tick: Duration,
    /// Messages an owner may hold per connection share (its pipeline of assigned work).
    pub window_per_connection: usize,
    /// Messages sent over one connection before it is closed and a new one opened.
    pub messages_per_connection: usize,
    /// DSNs quote the whole original message up to this size, else only its headers
    /// (Postfix's `bounce_size_limit`).
    pub dsn_max_quoted_body: usize,
    /// Timeouts, bind address and the default TLS policy of the SMTP client.
    pub client: ClientOptions,
    /// Per-destination policies (lowercase domain → policy).
    pub destinations: BTreeMap<String, DestinationPolicy>,
    /// For every other destination (DSNs to senders' domains): MX routing.
    pub default_policy: DestinationPolicy,
    /// Destinations (lowercase domains) whose primary every node probes every
    /// `probe_interval`, mail or not, keeping its reachability report fresh (see
    /// `primary_watch`); for primary-aware relay domains. Empty by default.
    pub watched_primaries: BTreeSet<String>,
}

impl DeliveryConfig {
    /// Defaults for a node called `hostname` (Postfix-compatible where Postfix has the
    /// setting; see the README's mapping table).
    pub fn new(hostname: impl Into<String>) -> Self {
        let hostname = hostname.into();
        DeliveryConfig {
            client: ClientOptions::new(hostname.clone()),
            reporting_mta: hostname.clone(),
            hostname,
            lease: LeaseTiming::default(),
            backoff: Backoff::default(),
            queue_run_delay: Duration::from_secs(60),
            probe_interval: Duration::from_secs(10),
            node_dead_after: Duration::from_secs(5),
            scheduler_tick: DEFAULT_TICK,
            window_per_connection: 20,
            messages_per_connection: 100,
            dsn_max_quoted_body: 50_000,
            destinations: BTreeMap::new(),
            default_policy: DestinationPolicy::default(),
            watched_primaries: BTreeSet::new(),
        }
    }

    /// A node watching a primary re-reports an unchanged result once its own latest
    /// report is this old, so that a live node's report never goes stale.
    pub fn reachability_heartbeat(&self) -> Duration {
        self.probe_interval * 6
    }

    /// How recent a reachability report must be to count in
    /// `DestinationState::seen_down`: two heartbeats. A live watcher refreshes its
    /// report every heartbeat plus one tick plus the probe itself (up to the connect
    /// timeout per target) plus the commit; the second heartbeat covers that, and a
    /// dead node's report still ages out within two heartbeats.
    pub fn reachability_fresh_within(&self) -> Duration {
        self.reachability_heartbeat() * 2
    }

    /// The policy for `destination` (a lowercase domain).
    pub fn policy(&self, destination: &str) -> &DestinationPolicy {
        self.destinations
            .get(destination)
            .unwrap_or(&self.default_policy)
    }
}
