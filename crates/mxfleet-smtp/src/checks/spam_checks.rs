//! [`SpamChecks`]: every spam check of a node, built once from the config and shared
//! by all sessions. [`SpamChecks::client`] starts the per-session state
//! ([`ClientChecks`]), which caches what it learns about the client (DNSBL score,
//! reverse DNS) for the whole session.

use std::net::IpAddr;
use std::sync::Arc;

use super::client::ClientChecks;
use super::config::{Check, SpamConfig};
use super::dns::CheckResolver;
use super::dnsbl::Dnsbl;
use super::fleet::{FleetSpamState, RecipientProber};
use super::rate::RateLimiter;
use super::spf::SpfChecker;
use crate::metrics::SmtpMetrics;
use crate::policy::IpNetwork;

/// The DNS-based machinery; absent when no check needs DNS.
pub struct DnsChecks {
    pub resolver: CheckResolver,
    pub dnsbl: Dnsbl,
    pub spf: SpfChecker,
}

/// The fleet-backed machinery: greylisting, verification and primary-aware mode.
pub struct FleetChecks {
    pub state: Arc<dyn FleetSpamState>,
    pub prober: Arc<dyn RecipientProber>,
}

/// All spam checks of a node.
pub struct SpamChecks {
    pub(crate) config: SpamConfig,
    pub(crate) dns: Option<DnsChecks>,
    pub(crate) fleet: Option<FleetChecks>,
    pub(crate) rates: RateLimiter,
    /// Never greylisted: `greylisting.allowlist_networks` plus the primaries.
    pub(crate) greylist_allowlist: Vec<IpNetwork>,
}

impl std::fmt::Debug for SpamChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpamChecks")
            .field("config", &self.config)
            .field("dns", &self.dns.is_some())
            .field("fleet", &self.fleet.is_some())
            .finish_non_exhaustive()
    }
}

/// Why checks could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum SpamChecksError {
    #[error("relay domain {domain} uses {check}, which needs {needs}")]
    Missing {
        domain: String,
        check: &'static str,
        needs: &'static str,
    },
}

impl SpamChecks {
    /// No checks at all (no `[spam]` section): every session passes through.
    pub fn none() -> Self {
        SpamChecks {
            config: SpamConfig::default(),
            dns: None,
            fleet: None,
            rates: RateLimiter::new(Default::default()),
            greylist_allowlist: Vec::new(),
        }
    }

    /// Builds the checks. `dns` is needed when a domain uses a DNS-based check, `fleet`
    /// when one uses greylisting, verification or primary-aware mode; `primaries` are
    /// the primaries' addresses, never greylisted.
    pub fn new(
        config: SpamConfig,
        dns: Option<DnsChecks>,
        fleet: Option<FleetChecks>,
        primaries: Vec<IpNetwork>,
    ) -> Result<Self, SpamChecksError> {
        for (domain, checks) in &config.domain_checks {
            for check in checks {
                let needs = match check {
                    Check::Greylisting | Check::VerifyRecipients | Check::PrimaryAware => {
                        fleet.is_none().then_some("the fleet's state")
                    }
                    _ => dns.is_none().then_some("a DNS resolver"),
                };
                if let Some(needs) = needs {
                    return Err(SpamChecksError::Missing {
                        domain: domain.clone(),
                        check: check.as_str(),
                        needs,
                    });
                }
            }
        }
        let mut greylist_allowlist = config.greylisting.allowlist_networks.clone();
        greylist_allowlist.extend(primaries);
        Ok(SpamChecks {
            rates: RateLimiter::new(config.rate_limits.clone()),
            config,
            dns,
            fleet,
            greylist_allowlist,
        })
    }

    pub fn config(&self) -> &SpamConfig {
        &self.config
    }

    /// The state of one session with client `ip`. Starts the DNSBL lookup at once
    /// when a domain uses it, so that its answer is usually there by RCPT TO.
    pub fn client(self: &Arc<Self>, ip: IpAddr, metrics: SmtpMetrics) -> ClientChecks {
        let client = ClientChecks::new(self.clone(), ip, metrics);
        if self.config.any_domain_uses(Check::Dnsbl) {
            client.prefetch_dnsbl();
        }
        client
    }
}
