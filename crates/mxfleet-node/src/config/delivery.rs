//! `[delivery]`: how queued mail leaves the fleet, for the primaries of the relay domains
//! and for senders' domains (DSNs), turned into an [`mxfleet_delivery::DeliveryConfig`].
//!
//! Keys are the Postfix parameter names where Postfix has the setting
//! (`minimal_backoff_time`, `smtp_helo_name`, `smtp_connect_timeout`, `relayhost`,
//! `bounce_size_limit`, ...); the lease and probe timings are mxfleet's own. Every key is
//! optional, with the defaults of `DeliveryConfig::new`.
//!
//! Two settings concern the node's wiring rather than delivery, and end up on
//! [`NodeConfig`](super::NodeConfig) instead: `dns_servers` (the resolver's nameservers)
//! and `mx_port` (the port MX hosts are contacted on, 25 except in test fleets).
//!
//! The destination keys (`smtp_tls_security_level`, `maximal_queue_lifetime`, ...) set
//! the policy for destinations that are not relay domains and the defaults every
//! `[[relay_domains]]` table inherits; they are checked in [`super::destination`].
//!
//! Layout: [`DeliverySection`] (what this table yields), [`check_delivery`], which
//! checks every key on its own into a [`DeliveryDraft`], then one function per group of
//! keys (lease, backoff, client, nameservers).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mxfleet_delivery::DeliveryConfig;
use mxfleet_delivery::backoff::Backoff;
use mxfleet_delivery::client::ClientTimeouts;
use mxfleet_delivery::lease::LeaseTiming;
use mxfleet_delivery::route::{DEFAULT_SMTP_PORT, NextHop, Route};

use super::FileChecks;
use super::destination::{
    DEFAULT_CONCURRENCY_LIMIT_NAME, DestinationDraft, DestinationKeys, check_destination, next_hop,
};
use super::dns_name;
use super::error::ErrorReport;
use super::fields::{MAX_MESSAGE_SIZE, bind_address, duration, size};
use super::raw::{DurationText, RawDelivery};
use super::relay_domains::RelayDomainConfig;

/// The port a `dns_servers` entry without one is contacted on.
const DNS_PORT: u16 = 53;

/// What `[delivery]` yields for the node config.
pub(super) struct DeliverySection {
    pub(super) delivery: DeliveryConfig,
    pub(super) dns_servers: Vec<SocketAddr>,
    pub(super) mx_port: u16,
}

/// `[delivery]` with each key checked on its own: `None` where it was wrong.
pub(super) struct DeliveryDraft {
    helo_name: Option<String>,
    reporting_mta: Option<String>,
    lease: Option<LeaseTiming>,
    backoff: Option<Backoff>,
    queue_run_delay: Option<Duration>,
    probe_interval: Option<Duration>,
    node_dead_after: Option<Duration>,
    bind_address: Option<Option<IpAddr>>,
    timeouts: Option<ClientTimeouts>,
    dsn_max_quoted_body: Option<usize>,
    relayhost: Option<NextHop>,
    /// The policy of non-relay destinations (without its route), and what every
    /// `[[relay_domains]]` table inherits.
    pub(super) destination_defaults: DestinationDraft,
    dns_servers: Option<Vec<SocketAddr>>,
    mx_port: Option<u16>,
}

impl DeliveryDraft {
    /// The delivery config, with one destination policy per relay domain.
    pub(super) fn finish(self, relay_domains: &[RelayDomainConfig]) -> Option<DeliverySection> {
        let default_policy = self
            .destination_defaults
            .finish(Route::new(self.relayhost?))?;
        let mut delivery = DeliveryConfig::new(self.helo_name?);
        delivery.reporting_mta = self.reporting_mta?;
        delivery.lease = self.lease?;
        delivery.backoff = self.backoff?;
        delivery.queue_run_delay = self.queue_run_delay?;
        delivery.probe_interval = self.probe_interval?;
        delivery.node_dead_after = self.node_dead_after?;
        delivery.dsn_max_quoted_body = self.dsn_max_quoted_body?;
        delivery.client.bind_address = self.bind_address?;
        delivery.client.timeouts = self.timeouts?;
        delivery.client.tls = default_policy.tls.clone();
        delivery.default_policy = default_policy;
        delivery.destinations = relay_domains
            .iter()
            .map(|relay| (relay.domain.clone(), relay.delivery.clone()))
            .collect();
        Some(DeliverySection {
            delivery,
            dns_servers: self.dns_servers?,
            mx_port: self.mx_port?,
        })
    }
}

/// Checks every key of `[delivery]` on its own, then the rules between them.
/// `smtp_hostname` is the validated `smtp.hostname`, the default HELO name (`None` if it
/// was wrong, and reported there).
pub(super) fn check_delivery(
    mut raw: RawDelivery,
    smtp_hostname: Option<&str>,
    checks: FileChecks,
    report: &mut ErrorReport,
) -> DeliveryDraft {
    // Keys are checked in the order they are documented, so errors come in that order.
    let defaults = DeliveryConfig::new(smtp_hostname.unwrap_or_default());
    let lease = lease_timing(report, &mut raw, defaults.lease);
    let backoff = backoff(report, &mut raw, defaults.backoff);
    let mut timing = |key: &str, text: Option<DurationText>, default: Duration| {
        duration(report, key, text, default).map(|setting| setting.value)
    };
    let queue_run_delay = timing(
        "delivery.queue_run_delay",
        raw.queue_run_delay.take(),
        defaults.queue_run_delay,
    );
    let probe_interval = timing(
        "delivery.probe_interval",
        raw.probe_interval.take(),
        defaults.probe_interval,
    );
    let node_dead_after = timing(
        "delivery.node_dead_after",
        raw.node_dead_after.take(),
        defaults.node_dead_after,
    );
    let bind_address = bind_address(
        report,
        "delivery.smtp_bind_address",
        raw.smtp_bind_address.take(),
    );
    let helo_name = match raw.smtp_helo_name.take() {
        Some(text) => host_name(report, "delivery.smtp_helo_name", &text),
        None => smtp_hostname.map(str::to_owned),
    };
    let reporting_mta = match raw.reporting_mta.take() {
        Some(text) => host_name(report, "delivery.reporting_mta", &text),
        None => helo_name.clone(),
    };
    let timeouts = client_timeouts(report, &mut raw, defaults.client.timeouts);
    let dsn_max_quoted_body = size(
        report,
        "delivery.bounce_size_limit",
        raw.bounce_size_limit.take(),
        defaults.dsn_max_quoted_body as u64,
        MAX_MESSAGE_SIZE,
    )
    .and_then(|bytes| usize::try_from(bytes).ok());
    let relayhost = match raw.relayhost.take() {
        Some(text) => next_hop(report, "delivery.relayhost", &text),
        None => Some(defaults.default_policy.route.primary.clone()),
    };
    let dns_servers = dns_servers(report, raw.dns_servers.take());
    let mx_port = match raw.mx_port {
        Some(0) => {
            report.push("delivery.mx_port", "must be from 1 to 65535, got 0");
            None
        }
        Some(port) => Some(port),
        None => Some(DEFAULT_SMTP_PORT),
    };
    let destination_keys = DestinationKeys {
        prefix: "delivery".to_owned(),
        concurrency_limit_name: DEFAULT_CONCURRENCY_LIMIT_NAME,
        tls_security_level: raw.smtp_tls_security_level,
        tls_ca_file: raw.smtp_tls_ca_file,
        concurrency_limit: raw.default_destination_concurrency_limit,
        rate: raw.default_destination_rate,
        queue_lifetime: raw.maximal_queue_lifetime,
        delay_warning_time: raw.delay_warning_time,
    };
    let destination_defaults = check_destination(
        report,
        destination_keys,
        &DestinationDraft::built_in(),
        checks,
    );
    DeliveryDraft {
        helo_name,
        reporting_mta,
        lease,
        backoff,
        queue_run_delay,
        probe_interval,
        node_dead_after,
        bind_address,
        timeouts,
        dsn_max_quoted_body,
        relayhost,
        destination_defaults,
        dns_servers,
        mx_port,
    }
}

fn host_name(report: &mut ErrorReport, key: &str, text: &str) -> Option<String> {
    dns_name::host_name(text)
        .map_err(|why| report.push(key, format!("{text:?} {why}")))
        .ok()
}

/// The four lease timings, then the relation between them that keeps two owners from
/// delivering the same message at once (`LeaseTiming::validate`), reported at
/// `delivery.lease`.
fn lease_timing(
    report: &mut ErrorReport,
    raw: &mut RawDelivery,
    defaults: LeaseTiming,
) -> Option<LeaseTiming> {
    let mut timing = |key: &str, text: Option<DurationText>, default: Duration| {
        duration(report, key, text, default).map(|setting| setting.value)
    };
    let lease = timing("delivery.lease", raw.lease.take(), defaults.lease);
    let clock_drift_bound = timing(
        "delivery.clock_drift_bound",
        raw.clock_drift_bound.take(),
        defaults.clock_drift_bound,
    );
    let dot_margin = timing(
        "delivery.dot_margin",
        raw.dot_margin.take(),
        defaults.dot_margin,
    );
    let contact_timeout = timing(
        "delivery.contact_timeout",
        raw.contact_timeout.take(),
        defaults.contact_timeout,
    );
    let lease = LeaseTiming {
        lease: lease?,
        clock_drift_bound: clock_drift_bound?,
        dot_margin: dot_margin?,
        contact_timeout: contact_timeout?,
    };
    if let Err(why) = lease.validate() {
        report.push(
            "delivery.lease",
            format!(
                "{why}; otherwise a message could be delivered by two nodes at once \
                 (defaults: lease 30s, clock_drift_bound 2s, dot_margin 2s, \
                 contact_timeout 5s)"
            ),
        );
        return None;
    }
    Some(lease)
}

/// `minimal_backoff_time` and `maximal_backoff_time`, the latter at least the former.
fn backoff(report: &mut ErrorReport, raw: &mut RawDelivery, defaults: Backoff) -> Option<Backoff> {
    let min = duration(
        report,
        "delivery.minimal_backoff_time",
        raw.minimal_backoff_time.take(),
        defaults.min,
    );
    let max = duration(
        report,
        "delivery.maximal_backoff_time",
        raw.maximal_backoff_time.take(),
        defaults.max,
    );
    let (min, max) = (min?, max?);
    if max.value < min.value {
        report.push(
            "delivery.maximal_backoff_time",
            format!(
                "must be at least minimal_backoff_time, now {}; got {}",
                min.describe(),
                max.describe()
            ),
        );
        return None;
    }
    Some(Backoff {
        min: min.value,
        max: max.value,
    })
}

/// The Postfix `smtp_*_timeout` keys. The greeting timeout follows `smtp_helo_timeout`
/// (Postfix waits for the banner that long too); STARTTLS, RSET and QUIT keep the
/// client's defaults.
fn client_timeouts(
    report: &mut ErrorReport,
    raw: &mut RawDelivery,
    defaults: ClientTimeouts,
) -> Option<ClientTimeouts> {
    let mut timeout = |key: &str, text: Option<DurationText>, default: Duration| {
        duration(report, key, text, default).map(|setting| setting.value)
    };
    let connect = timeout(
        "delivery.smtp_connect_timeout",
        raw.smtp_connect_timeout.take(),
        defaults.connect,
    );
    let helo = timeout(
        "delivery.smtp_helo_timeout",
        raw.smtp_helo_timeout.take(),
        defaults.helo,
    );
    let mail = timeout(
        "delivery.smtp_mail_timeout",
        raw.smtp_mail_timeout.take(),
        defaults.mail,
    );
    let rcpt = timeout(
        "delivery.smtp_rcpt_timeout",
        raw.smtp_rcpt_timeout.take(),
        defaults.rcpt,
    );
    let data_initiation = timeout(
        "delivery.smtp_data_init_timeout",
        raw.smtp_data_init_timeout.take(),
        defaults.data_initiation,
    );
    let data_block = timeout(
        "delivery.smtp_data_xfer_timeout",
        raw.smtp_data_xfer_timeout.take(),
        defaults.data_block,
    );
    let data_termination = timeout(
        "delivery.smtp_data_done_timeout",
        raw.smtp_data_done_timeout.take(),
        defaults.data_termination,
    );
    let helo = helo?;
    Some(ClientTimeouts {
        connect: connect?,
        greeting: helo,
        helo,
        mail: mail?,
        rcpt: rcpt?,
        data_initiation: data_initiation?,
        data_block: data_block?,
        data_termination: data_termination?,
        ..defaults
    })
}

/// `dns_servers`: `ip:port` entries (a bare IP means port 53); absent means the system
/// resolver, which is not the same as an empty list, refused here.
fn dns_servers(report: &mut ErrorReport, entries: Option<Vec<String>>) -> Option<Vec<SocketAddr>> {
    const KEY: &str = "delivery.dns_servers";
    let Some(entries) = entries else {
        return Some(Vec::new());
    };
    if entries.is_empty() {
        report.push(
            KEY,
            "is empty, so no name could be resolved; list nameservers such as \
             [\"192.0.2.53:53\"], or remove the key to use the system resolver",
        );
        return None;
    }
    let mut servers = Vec::with_capacity(entries.len());
    for (position, text) in entries.iter().enumerate() {
        let parsed = text.parse::<SocketAddr>().or_else(|_| {
            text.parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, DNS_PORT))
        });
        match parsed {
            Ok(server) if server.port() == 0 => report.push(
                format!("{KEY}[{position}]"),
                format!("{text:?} has port 0; nameservers answer on port 53"),
            ),
            Ok(server) => servers.push(server),
            Err(_) => report.push(
                format!("{KEY}[{position}]"),
                format!(
                    r#"{text:?} is not a nameserver address; write an IP:port such as "192.0.2.53:53" or "[2001:db8::53]:53""#
                ),
            ),
        }
    }
    (servers.len() == entries.len()).then_some(servers)
}
