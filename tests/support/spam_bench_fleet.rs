//! The spam benchmark's fleet: a 3-node [`QueueCluster`] (real Raft, real fsyncs) with,
//! on every node and for every [`Variant`] (a set of checks, DNS caching on or off),
//! an SMTP listener over the node's `QueueIntake`. All variants share the cluster, so
//! they are measured on the same queue, one after another.
//!
//! The DNS is [`dns_zones`] on an in-process `TestDns` (loopback): two DNSBL zones and
//! an RHSBL zone where nothing is listed (every query is NXDOMAIN), the sender domain
//! with MX, A and SPF (`pass` for the client), and forward-confirmed reverse DNS for
//! the client.
//!
//! The client is not 127.0.0.1 when the machine has another address
//! ([`client_address`]): hickory answers `127.in-addr.arpa` PTR and `localhost` A
//! queries itself (RFC 6761) without asking any server, which would make the reverse
//! DNS check look free. The listeners bind that address, so the sessions come from it.
//!
//! Each variant's checks are built as `mxfleet-node`'s `spam_setup::build` builds
//! them (one resolver shared by the DNS checks and SPF, the fleet state over the
//! queue), except that the prober is a `ScriptedProber` answering `Valid` and the
//! resolver cache and DNSBL cache are off for the uncached variants.
//!
//! [`BenchFleet::prime`] brings the fleet's replicated spam state where a busy backup
//! MX has it: every (client, sender, recipient) triplet passed greylisting, every
//! recipient verified at the primary (through `greylist::decide` and `verify::decide`,
//! the checks' own decisions, so the facts travel through Raft as in production), and
//! the primary reported down by every node.
//!
//! Lifecycle: listeners and the facts batchers run on the fleet's tracker until
//! [`BenchFleet::stop`] cancels its token, then the cluster stops.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mxfleet_core::spam::greylist_key;
use mxfleet_node::intake::QueueIntake;
use mxfleet_node::spam_state::QueueSpamState;
use mxfleet_queue::{Queue, QueueConfig};
use mxfleet_smtp::checks::config::{GreylistConfig, RateLimitConfig, VerifyConfig};
use mxfleet_smtp::checks::dns::{CheckResolver, CheckResolverOptions};
use mxfleet_smtp::checks::dnsbl::Dnsbl;
use mxfleet_smtp::checks::memory::ScriptedProber;
use mxfleet_smtp::checks::rate::network_of;
use mxfleet_smtp::checks::spf::SpfChecker;
use mxfleet_smtp::checks::verify::{self, VerifyOutcome};
use mxfleet_smtp::checks::{
    Check, CheckSet, DnsChecks, FleetChecks, ProbeOutcome, SpamChecks, SpamConfig, greylist,
};
use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::listener::ConnectionLimits;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy};
use mxfleet_smtp::{MessageIntake, PolicyHandle, SessionConfig, SessionLimits, SmtpMetrics};
use mxfleet_testkit::dns::Zone;
use mxfleet_testkit::{QueueCluster, wait_for};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::spam_bench_client::{HELO, RECIPIENTS, RELAY_DOMAIN, SENDER_DOMAIN, SENDERS};
use crate::spam_bench_client::{recipient, sender, sender_label};

pub const NODES: usize = 3;
pub const DNSBL_SITES: [&str; 2] = ["bl1.test", "bl2.test"];
pub const RHSBL_SITE: &str = "rhsbl.test";
/// The per-lookup limit of the checks (the config's `dns_timeout`).
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node's report on the primary counts; longer than any run.
const REPORT_FRESH_FOR: Duration = Duration::from_secs(3600);
/// Anvil limits that are on (so they count) but never reached.
const NEVER_REACHED: u32 = 1_000_000_000;
/// How often quiescence and priming look at the nodes.
const POLL: Duration = Duration::from_millis(100);
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);
const PRIME_DEADLINE: Duration = Duration::from_secs(30);

/// A local IPv4 address other than loopback, for the listeners and thus the clients:
/// the one the kernel would send from towards a documentation address (no packet
/// leaves: a UDP `connect` only picks the route). 127.0.0.1 when there is none.
pub fn client_address() -> Ipv4Addr {
    let routed = |target: &str| {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        socket.connect(target).ok()?;
        match socket.local_addr().ok()?.ip() {
            IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => {
                std::net::TcpListener::bind((v4, 0)).ok()?;
                Some(v4)
            }
            _ => None,
        }
    };
    ["198.51.100.1:9", "192.0.2.1:9", "203.0.113.1:9"]
        .into_iter()
        .find_map(routed)
        .unwrap_or(Ipv4Addr::LOCALHOST)
}

/// One configuration of the checks on the relay domain.
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    pub checks: CheckSet,
    /// Every anvil rate limit on, far above what the benchmark sends.
    pub rate_limits: bool,
    /// Resolver and DNSBL caches on; off, every session asks the DNS server.
    pub dns_cache: bool,
}

impl Variant {
    /// `SpamChecks::none()`.
    pub fn off() -> Variant {
        Variant {
            name: "off".into(),
            checks: CheckSet::new(),
            rate_limits: false,
            dns_cache: true,
        }
    }

    /// Every check, and the rate limits.
    pub fn all(dns_cache: bool) -> Variant {
        Variant {
            name: format!("all on, {}", cache_word(dns_cache)),
            checks: Check::ALL.into_iter().collect(),
            rate_limits: true,
            dns_cache,
        }
    }

    /// `check` alone.
    pub fn only(check: Check, dns_cache: bool) -> Variant {
        let name = if is_dns_check(check) {
            format!("{} only, {}", check.as_str(), cache_word(dns_cache))
        } else {
            format!("{} only", check.as_str())
        };
        Variant {
            name,
            checks: [check].into(),
            rate_limits: false,
            dns_cache,
        }
    }

    /// The rate limits alone.
    pub fn rate_limits_only() -> Variant {
        Variant {
            name: "rate_limits only".into(),
            checks: CheckSet::new(),
            rate_limits: true,
            dns_cache: true,
        }
    }

    pub fn is_off(&self) -> bool {
        self.checks.is_empty() && !self.rate_limits
    }

    pub fn uses_dns(&self) -> bool {
        self.checks.iter().any(|check| is_dns_check(*check))
    }
}

fn cache_word(dns_cache: bool) -> &'static str {
    if dns_cache { "cached" } else { "uncached DNS" }
}

pub fn is_dns_check(check: Check) -> bool {
    matches!(
        check,
        Check::Dnsbl
            | Check::RhsblSender
            | Check::UnknownSenderDomain
            | Check::UnknownClientHostname
            | Check::Spf
    )
}

/// What the in-process DNS server serves, for sessions from `client`.
pub fn dns_zones(client: Ipv4Addr) -> Vec<Zone> {
    let mut zones: Vec<Zone> = DNSBL_SITES.iter().map(|zone| Zone::new(zone)).collect();
    zones.push(Zone::new(RHSBL_SITE));
    let spf = format!("v=spf1 ip4:{client} -all");
    let senders = (0..SENDERS)
        .map(sender_label)
        .fold(Zone::new(SENDER_DOMAIN).a("mail", client), |zone, label| {
            zone.mx(&label, 10, &format!("{HELO}.")).txt(&label, &spf)
        });
    zones.push(senders);
    let [a, b, c, d] = client.octets();
    zones.push(
        Zone::new(&format!("{c}.{b}.{a}.in-addr.arpa")).ptr(&d.to_string(), &format!("{HELO}.")),
    );
    zones
}

/// The spam config of `variant` for the relay domain.
fn spam_config(variant: &Variant) -> SpamConfig {
    let mut config = SpamConfig {
        dns_timeout: DNS_TIMEOUT,
        ..SpamConfig::default()
    };
    config
        .domain_checks
        .insert(RELAY_DOMAIN.into(), variant.checks.clone());
    let site = |text: &str| text.parse().expect("DNSBL site");
    config.dnsbl.sites = DNSBL_SITES.iter().map(|zone| site(zone)).collect();
    config.dnsbl.rhsbl_sender_sites = vec![site(RHSBL_SITE)];
    if !variant.dns_cache {
        config.dnsbl.cache_entries = 0;
    }
    // Off, so that every RCPT looks its triplet up (the fleet's auto-allowlist would
    // answer from the network's pass count instead).
    config.greylisting.auto_allowlist_after = 0;
    if variant.rate_limits {
        config.rate_limits = RateLimitConfig {
            client_connection_rate_limit: NEVER_REACHED,
            client_message_rate_limit: NEVER_REACHED,
            client_recipient_rate_limit: NEVER_REACHED,
            network_connection_rate_limit: NEVER_REACHED,
            network_message_rate_limit: NEVER_REACHED,
            network_recipient_rate_limit: NEVER_REACHED,
            ..RateLimitConfig::default()
        };
    }
    config
}

/// `variant`'s checks on the node of `queue`, as the node's `spam_setup` builds them.
fn spam_checks(
    variant: &Variant,
    queue: &Queue,
    dns_server: SocketAddr,
    prober: &Arc<ScriptedProber>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> SpamChecks {
    if variant.is_off() {
        return SpamChecks::none();
    }
    let config = spam_config(variant);
    let dns = variant.uses_dns().then(|| {
        let mut options = CheckResolverOptions::new(DNS_TIMEOUT);
        if !variant.dns_cache {
            options.cache_size = 0;
        }
        let resolver =
            CheckResolver::from_nameservers(&[dns_server], &options).expect("check resolver");
        DnsChecks {
            dnsbl: Dnsbl::new(&config.dnsbl, &resolver, DNS_TIMEOUT),
            spf: SpfChecker::new(&resolver),
            resolver,
        }
    });
    let state = QueueSpamState::start(queue.clone(), REPORT_FRESH_FOR, tracker, shutdown.clone());
    let fleet = FleetChecks {
        state,
        prober: prober.clone(),
    };
    SpamChecks::new(config, dns, Some(fleet), Vec::new()).expect("spam checks")
}

/// One variant's listeners (one per node) and the metrics they share.
pub struct VariantEndpoints {
    pub listeners: Vec<SocketAddr>,
    pub metrics: SmtpMetrics,
}

/// The cluster and its listeners.
pub struct BenchFleet {
    cluster: QueueCluster,
    /// Where the listeners are bound, and so where every session comes from.
    client: IpAddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Indexed like the variants given to `start`.
    pub endpoints: Vec<VariantEndpoints>,
    /// Answers `Valid` for every recipient; shared by every node and variant.
    pub prober: Arc<ScriptedProber>,
}

fn tune(config: &mut QueueConfig) {
    config.heartbeat_interval = Duration::from_millis(50);
    config.election_timeout = Duration::from_millis(300);
    // Production values (QueueConfig::new): a slow fsync shows as latency, not as a
    // failed write.
    config.write_timeout = Duration::from_secs(5);
    config.blob_quorum_timeout = Duration::from_secs(10);
}

impl BenchFleet {
    pub async fn start(
        variants: &[Variant],
        dns_server: SocketAddr,
        client: Ipv4Addr,
    ) -> BenchFleet {
        let cluster = QueueCluster::start_tuned(NODES, Arc::new(tune)).await;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let prober = Arc::new(ScriptedProber::default());
        for index in 0..RECIPIENTS {
            prober.answer(
                &recipient(index),
                ProbeOutcome::Valid {
                    reply: "250 2.1.5 Ok".into(),
                },
            );
        }
        let policy = Arc::new(PolicyHandle::new(RelayPolicy::new(vec![(
            RELAY_DOMAIN.into(),
            RecipientRule::CatchAll,
        )])));
        let intakes: Vec<Arc<dyn MessageIntake>> = (1..=NODES as u64)
            .map(|id| Arc::new(QueueIntake::new(cluster.queue(id).clone())) as _)
            .collect();
        let mut endpoints = Vec::new();
        for variant in variants {
            let metrics = SmtpMetrics::default();
            let mut listeners = Vec::new();
            for (id, intake) in (1..=NODES as u64).zip(&intakes) {
                let queue = cluster.queue(id);
                let checks = spam_checks(variant, queue, dns_server, &prober, &tracker, &shutdown);
                let session = Arc::new(SessionConfig {
                    hostname: format!("node{id}.backup.test"),
                    limits: SessionLimits::default(),
                    bare_line_endings: BareLineEndings::Reject,
                    tls: None,
                    policy: policy.clone(),
                    etrn_networks: Vec::new(),
                    metrics: metrics.clone(),
                    spam: Arc::new(checks),
                });
                let listener = tokio::net::TcpListener::bind((client, 0))
                    .await
                    .expect("bind SMTP listener");
                listeners.push(listener.local_addr().expect("listener address"));
                tracker.spawn(mxfleet_smtp::listener::serve(
                    listener,
                    session,
                    ConnectionLimits::default(),
                    intake.clone(),
                    shutdown.clone(),
                    tracker.clone(),
                ));
            }
            endpoints.push(VariantEndpoints { listeners, metrics });
        }
        BenchFleet {
            cluster,
            client: IpAddr::V4(client),
            shutdown,
            tracker,
            endpoints,
            prober,
        }
    }

    fn queues(&self) -> Vec<Queue> {
        (1..=NODES as u64)
            .map(|id| self.cluster.queue(id).clone())
            .collect()
    }

    /// Triplets passed, recipients verified, primary down: on every node.
    pub async fn prime(&self) {
        let queues = self.queues();
        let state = QueueSpamState::start(
            queues[0].clone(),
            REPORT_FRESH_FOR,
            &self.tracker,
            self.shutdown.clone(),
        );
        let triplets: Vec<(String, String)> = (0..SENDERS)
            .flat_map(|s| (0..RECIPIENTS).map(move |r| (sender(s), recipient(r))))
            .collect();
        let network = network_of(self.client);
        let keys: Vec<_> = triplets
            .iter()
            .map(|(s, r)| greylist_key(&network, s, r))
            .collect();
        // A zero delay: the retry right after the first sighting is the pass.
        let greylisting = GreylistConfig {
            delay: Duration::ZERO,
            auto_allowlist_after: 0,
            ..GreylistConfig::default()
        };
        for passed in [false, true] {
            for (s, r) in &triplets {
                greylist::decide(&greylisting, &[], state.as_ref(), self.client, s, r);
            }
            wait_for("greylisting triplets on every node", PRIME_DEADLINE, || {
                queues.iter().all(|queue| {
                    let now = queue.clock_now();
                    queue
                        .read_state(|state| {
                            keys.iter().all(|key| {
                                state
                                    .spam
                                    .triplet(key, now)
                                    .is_some_and(|t| !passed || t.passed_at.is_some())
                            })
                        })
                        .unwrap_or(false)
                })
            })
            .await;
        }
        // The primary is up (not reported) while the verifier asks it.
        let verify_config = VerifyConfig::default();
        for index in 0..RECIPIENTS {
            let address = recipient(index);
            let outcome = verify::decide(
                &verify_config,
                state.as_ref(),
                self.prober.as_ref(),
                RELAY_DOMAIN,
                &address,
            )
            .await;
            assert_eq!(outcome, VerifyOutcome::ProbedValid, "priming {address}");
        }
        wait_for("recipient verdicts on every node", PRIME_DEADLINE, || {
            queues.iter().all(|queue| {
                let now = queue.clock_now();
                queue
                    .read_state(|state| {
                        (0..RECIPIENTS).all(|index| {
                            state
                                .spam
                                .verdict(&recipient(index), now)
                                .is_some_and(|v| v.valid)
                        })
                    })
                    .unwrap_or(false)
            })
        })
        .await;
        for queue in &queues {
            queue
                .report_reachability(RELAY_DOMAIN, false, "spam bench: primary down".into())
                .await
                .expect("report the primary down");
        }
        let fresh_ms = REPORT_FRESH_FOR.as_millis() as u64;
        wait_for(
            "the primary seen down on every node",
            PRIME_DEADLINE,
            || {
                queues.iter().all(|queue| {
                    let now = queue.clock_now();
                    queue
                        .read_state(|state| {
                            state
                                .fleet
                                .destinations
                                .get(RELAY_DOMAIN)
                                .and_then(|d| d.seen_down(now, fresh_ms))
                        })
                        .ok()
                        .flatten()
                        == Some(true)
                })
            },
        )
        .await;
    }

    /// Waits until every node applied the same index and it stopped moving.
    pub async fn wait_quiet(&self) {
        let queues = self.queues();
        let applied = || -> Vec<Option<u64>> {
            queues
                .iter()
                .map(|q| q.status().last_applied_index)
                .collect()
        };
        let deadline = Instant::now() + SETTLE_DEADLINE;
        let mut last = applied();
        loop {
            tokio::time::sleep(POLL).await;
            let now = applied();
            if now == last && now.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            if Instant::now() >= deadline {
                eprintln!("warning: cluster not quiet after {SETTLE_DEADLINE:?} ({now:?})");
                return;
            }
            last = now;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(15), self.tracker.wait())
            .await
            .is_err()
        {
            eprintln!("warning: SMTP listeners still running 15 s after shutdown");
        }
        self.cluster.stop_all().await;
    }
}

/// `mxfleet_spam_checks_total` by (check, result), read through a Prometheus registry
/// as a scraper would.
pub fn check_counts(metrics: &SmtpMetrics) -> BTreeMap<(String, String), u64> {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode metrics");
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("mxfleet_spam_checks_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        let value: u64 = value.trim().parse().unwrap_or(0);
        counts.insert((label("check"), label("result")), value);
    }
    counts
}
