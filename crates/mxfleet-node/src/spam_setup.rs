//! Builds a node's spam checks once its queue and delivery exist: the DNS machinery
//! (a resolver shared by DNSBL, sender and client checks, and SPF), the fleet's
//! replicated spam state over the queue, and a prober that asks the primary about
//! recipients with delivery's own client and routes.
//!
//! The primaries' addresses (every static next hop that resolves) are never
//! greylisted: mail from the primary itself, such as its bounces routed through the
//! backup, must not wait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mxfleet_delivery::{RecipientVerifier, VerifyResult};
use mxfleet_queue::Queue;
use mxfleet_smtp::checks::Check;
use mxfleet_smtp::checks::config::SpamConfig;
use mxfleet_smtp::checks::dns::{CheckResolver, CheckResolverOptions};
use mxfleet_smtp::checks::dnsbl::Dnsbl;
use mxfleet_smtp::checks::spf::SpfChecker;
use mxfleet_smtp::checks::{
    DnsChecks, FleetChecks, FleetSpamState, ProbeOutcome, RecipientProber, SpamChecks,
    SpamChecksError,
};
use mxfleet_smtp::policy::IpNetwork;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::spam_state::QueueSpamState;

/// What a node's config says about spam checks, carried to `Node::start`.
#[derive(Clone, Debug)]
pub struct SpamSetup {
    pub config: SpamConfig,
    /// `delivery.dns_servers`; empty for the system resolver.
    pub dns_servers: Vec<SocketAddr>,
    /// The static next hops of the relay domains (`host:port`), never greylisted.
    pub primaries: Vec<String>,
}

/// Why the spam checks could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpamSetupError {
    #[error("spam checks: cannot build the DNS resolver: {0}")]
    Resolver(String),
    #[error("spam checks: {0}")]
    Checks(#[from] SpamChecksError),
}

/// [`RecipientProber`] over delivery's [`RecipientVerifier`].
pub struct VerifierProber {
    verifier: Option<RecipientVerifier>,
    sender: String,
    timeout: Duration,
}

#[async_trait::async_trait]
impl RecipientProber for VerifierProber {
    async fn probe(&self, domain: &str, address: &str) -> ProbeOutcome {
        let Some(verifier) = self.verifier.as_ref() else {
            return ProbeOutcome::Unknown {
                reason: "this node does not deliver, so it cannot ask the primary".into(),
            };
        };
        match verifier
            .verify(domain, address, &self.sender, self.timeout)
            .await
        {
            VerifyResult::Valid { reply } => ProbeOutcome::Valid { reply },
            VerifyResult::Invalid { reply } => ProbeOutcome::Invalid { reply },
            VerifyResult::Unknown { reason } => ProbeOutcome::Unknown { reason },
        }
    }
}

/// How long one primary's name may take to resolve for the greylisting allowlist.
const PRIMARY_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The addresses of `primaries` (`host:port`), as host networks; names that do not
/// resolve (in time) are skipped.
async fn primary_addresses(primaries: &[String]) -> Vec<IpNetwork> {
    let mut networks = Vec::new();
    for primary in primaries {
        // Bounded: a reload waits for this, and a dead resolver must not hold it.
        let lookup = tokio::time::timeout(
            PRIMARY_LOOKUP_TIMEOUT,
            tokio::net::lookup_host(primary.as_str()),
        );
        if let Ok(Ok(addresses)) = lookup.await {
            for address in addresses {
                if let Ok(network) = address.ip().to_string().parse::<IpNetwork>() {
                    networks.push(network);
                }
            }
        }
    }
    networks.sort_by_key(|n| format!("{n:?}"));
    networks.dedup();
    networks
}

/// The DNS machinery, when a relay domain uses a DNS-based check.
fn build_dns(
    config: &SpamConfig,
    dns_servers: &[SocketAddr],
) -> Result<Option<DnsChecks>, SpamSetupError> {
    let uses_dns = [
        Check::Dnsbl,
        Check::RhsblSender,
        Check::UnknownSenderDomain,
        Check::UnknownClientHostname,
        Check::Spf,
    ]
    .into_iter()
    .any(|check| config.any_domain_uses(check));
    if !uses_dns {
        return Ok(None);
    }
    let options = CheckResolverOptions::new(config.dns_timeout);
    let resolver = if dns_servers.is_empty() {
        CheckResolver::from_system_config(&options)
    } else {
        CheckResolver::from_nameservers(dns_servers, &options)
    }
    .map_err(|e| SpamSetupError::Resolver(e.to_string()))?;
    Ok(Some(DnsChecks {
        dnsbl: Dnsbl::new(&config.dnsbl, &resolver, config.dns_timeout),
        spf: SpfChecker::new(&resolver),
        resolver,
    }))
}

/// The fleet-backed parts of the spam checks (replicated state, primary prober), made
/// once when the node starts and shared by every rebuild of its checks (SIGHUP).
#[derive(Clone)]
pub struct FleetSpamParts {
    state: Arc<dyn FleetSpamState>,
    prober: Arc<dyn RecipientProber>,
}

impl FleetSpamParts {
    /// Starts the fleet state's fact batcher on `tracker`; it runs until `shutdown`.
    pub fn start(
        setup: &SpamSetup,
        queue: &Queue,
        verifier: Option<RecipientVerifier>,
        report_fresh_for: Duration,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let config = &setup.config;
        FleetSpamParts {
            state: QueueSpamState::start(queue.clone(), report_fresh_for, tracker, shutdown),
            prober: Arc::new(VerifierProber {
                verifier,
                sender: config.verify.probe_sender.clone(),
                timeout: config.verify.probe_timeout,
            }),
        }
    }
}

/// Builds the node's spam checks from `setup` over the fleet parts: at start, and
/// again on every reload (which also re-reads the DNS settings and the primaries'
/// addresses). The rate limiters start empty each time.
pub async fn build(
    setup: &SpamSetup,
    fleet: &FleetSpamParts,
) -> Result<SpamChecks, SpamSetupError> {
    let config = &setup.config;
    let dns = build_dns(config, &setup.dns_servers)?;
    let primaries = primary_addresses(&setup.primaries).await;
    info!(
        domains = config.domain_checks.len(),
        never_greylisted = primaries.len(),
        "spam_checks_ready"
    );
    Ok(SpamChecks::new(
        config.clone(),
        dns,
        Some(FleetChecks {
            state: fleet.state.clone(),
            prober: fleet.prober.clone(),
        }),
        primaries,
    )?)
}
