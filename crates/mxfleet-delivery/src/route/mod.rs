//! Next-hop routing: which hosts, in which order, the SMTP client connects to for a
//! recipient domain, like Postfix's transport maps plus its MX lookup.
//!
//! A [`Route`] is a domain's validated setting: a primary [`NextHop`] (an explicit
//! host list, or `mx`) and an optional fallback relay. The [`Router`] turns a next hop
//! into [`ConnectTarget`]s, asking DNS through an injected [`DnsResolver`] and
//! refusing to route mail back into the fleet ([`OwnIdentity`]). Failures are
//! [`RouteError`]s that know their [`Severity`](crate::Severity) and DSN status.
//!
//! Layout:
//! - [`next_hop`]: `NextHop`, `HostPort` and the `mx` / `[host]:port` parser.
//! - [`resolver`]: the `DnsResolver` trait, `MxAnswer`, and `DnsError` (NXDOMAIN,
//!   NODATA, server failure, timeout kept apart).
//! - [`hickory`]: `HickoryResolver`, the hickory-resolver implementation.
//! - `mx`: RFC 5321 §5.1 / RFC 7505 rules without I/O (null MX, ordering, loops).
//! - [`error`]: `RouteError`, its severity, and its enhanced status code.

pub mod error;
pub mod hickory;
mod mx;
pub mod next_hop;
pub mod resolver;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tracing::{debug, info, warn};

use crate::{ConnectTarget, Severity};
pub use error::{RouteError, RouteStatus};
pub use hickory::{HickoryOptions, HickoryResolver, ResolverSetupError};
pub use next_hop::{DEFAULT_SMTP_PORT, HostPort, NextHop, NextHopHost, NextHopParseError};
pub use resolver::{DnsError, DnsQuery, DnsResolver, MxAnswer, MxRecord};

/// Who the fleet is, for loop avoidance: an MX exchange that is one of these names,
/// or resolves to one of these addresses, is us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnIdentity {
    /// Host names the fleet's nodes answer to (compared case-insensitively, trailing
    /// dots ignored).
    pub hostnames: Vec<String>,
    /// Addresses the fleet receives mail on, including any public address a NAT or
    /// load balancer maps to the nodes.
    pub addresses: Vec<IpAddr>,
}

impl OwnIdentity {
    /// True when `name` is one of our host names.
    pub fn is_own_hostname(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        self.hostnames.iter().any(|own| {
            let own = own.strip_suffix('.').unwrap_or(own);
            own.eq_ignore_ascii_case(name)
        })
    }

    /// True when `address` is one of our addresses (an IPv4-mapped IPv6 address counts
    /// as its IPv4 form).
    pub fn is_own_address(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.addresses
            .iter()
            .any(|own| own.to_canonical() == address)
    }
}

/// A domain's routing setting: where mail goes, and where it goes when that fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub primary: NextHop,
    /// Postfix's `smtp_fallback_relay`: tried when every primary target failed
    /// temporarily (or routing the primary failed temporarily). Never used after a
    /// permanent failure, which would relay mail the destination refused.
    pub fallback: Option<NextHop>,
}

impl Route {
    /// A route with no fallback.
    pub fn new(primary: NextHop) -> Route {
        Route {
            primary,
            fallback: None,
        }
    }
}

/// Resolves next hops into connect targets. One per process, shared by every delivery.
pub struct Router {
    resolver: Arc<dyn DnsResolver>,
    identity: OwnIdentity,
    /// The port MX hosts (and the implicit MX) are contacted on: 25 in production;
    /// tests that deliver through MX routing point it at their listener.
    mx_port: u16,
    /// Shuffles MX hosts of equal preference. Locked only around the synchronous
    /// shuffle, never across an await; seeded from the OS unless a test fixes it.
    equal_preference_rng: Mutex<StdRng>,
}

impl Router {
    /// A router contacting MX hosts on port 25, shuffling equal preferences randomly.
    pub fn new(resolver: Arc<dyn DnsResolver>, identity: OwnIdentity) -> Router {
        Router {
            resolver,
            identity,
            mx_port: DEFAULT_SMTP_PORT,
            equal_preference_rng: Mutex::new(StdRng::from_os_rng()),
        }
    }

    /// Contacts MX hosts (and the implicit MX) on `port` instead of 25.
    pub fn with_mx_port(mut self, port: u16) -> Router {
        self.mx_port = port;
        self
    }

    /// Shuffles equal MX preferences with a generator seeded by `seed`, so that the
    /// order is reproducible.
    pub fn with_shuffle_seed(mut self, seed: u64) -> Router {
        self.equal_preference_rng = Mutex::new(StdRng::seed_from_u64(seed));
        self
    }

    /// Who this router considers "ourselves".
    pub fn identity(&self) -> &OwnIdentity {
        &self.identity
    }

    /// The targets for mail to `domain` through `next_hop`, best first: explicit hosts
    /// in their configured order, or MX hosts by preference (addresses of one host
    /// IPv4 first, then IPv6). Never empty on success.
    pub async fn route(
        &self,
        domain: &str,
        next_hop: &NextHop,
    ) -> Result<Vec<ConnectTarget>, RouteError> {
        let domain = normalize_domain(domain);
        let result = match next_hop {
            NextHop::Explicit(hosts) => self.route_explicit(&domain, hosts).await,
            NextHop::Mx => self.route_mx(&domain).await,
        };
        // Resolved routes are routine (one per delivery attempt); a permanent failure
        // is the recipient domain's problem; a temporary one is ours or the DNS's.
        match &result {
            Ok(targets) => debug!(
                domain = %domain,
                next_hop = %next_hop,
                targets = %TargetList(targets),
                "route_resolved"
            ),
            Err(error) => {
                let status = error.status().status;
                match error.severity() {
                    Severity::Permanent => {
                        info!(
                            domain = %domain,
                            next_hop = %next_hop,
                            severity = "permanent",
                            status,
                            cause = %error,
                            "route_failed"
                        )
                    }
                    Severity::Temporary => {
                        warn!(
                            domain = %domain,
                            next_hop = %next_hop,
                            severity = "temporary",
                            status,
                            cause = %error,
                            "route_failed"
                        )
                    }
                }
            }
        }
        result
    }

    /// The fallback relay's targets for `domain`, or `None` when the route has no
    /// fallback. The caller asks for these once every primary target failed
    /// temporarily.
    pub async fn route_fallback(
        &self,
        domain: &str,
        route: &Route,
    ) -> Option<Result<Vec<ConnectTarget>, RouteError>> {
        let fallback = route.fallback.as_ref()?;
        Some(self.route(domain, fallback).await)
    }

    /// Explicit hosts, in order; a host that does not resolve is skipped. No loop
    /// check: an operator who names a host means it (Postfix's `[127.0.0.1]:10025`
    /// content filter is a local address on purpose).
    async fn route_explicit(
        &self,
        domain: &str,
        hosts: &[HostPort],
    ) -> Result<Vec<ConnectTarget>, RouteError> {
        let lookups = join_all(hosts.iter().map(|host_port| async move {
            match &host_port.host {
                NextHopHost::Ip(ip) => Ok(vec![*ip]),
                NextHopHost::Name(name) => self.resolver.ip(name).await,
            }
        }))
        .await;
        let mut targets = Vec::new();
        let mut failures = Vec::new();
        for (host_port, lookup) in hosts.iter().zip(lookups) {
            match lookup {
                Ok(addresses) => targets.extend(addresses.into_iter().map(|ip| ConnectTarget {
                    host: host_port.host.to_string(),
                    addr: SocketAddr::new(ip, host_port.port),
                    preference: None,
                })),
                Err(error) => {
                    warn!(
                        domain,
                        host = %host_port.host,
                        dns_error = error.kind_label(),
                        cause = %error,
                        "route_host_skipped"
                    );
                    failures.push(error);
                }
            }
        }
        if targets.is_empty() {
            return Err(RouteError::NoHostResolved {
                domain: domain.to_owned(),
                failures,
            });
        }
        Ok(targets)
    }

    /// RFC 5321 §5.1 with RFC 7505: MX hosts by preference, cut off at the fleet's own
    /// entry; the domain's own addresses when it has no MX.
    async fn route_mx(&self, domain: &str) -> Result<Vec<ConnectTarget>, RouteError> {
        let records = match self.resolver.mx(domain).await {
            Ok(answer) if !answer.records.is_empty() => answer.records,
            Ok(_) | Err(DnsError::NoRecords { .. }) => return self.route_implicit_mx(domain).await,
            Err(error) => return Err(RouteError::from_domain_lookup(domain, DnsQuery::Mx, error)),
        };
        if mx::is_null_mx(&records) {
            return Err(RouteError::NullMx {
                domain: domain.to_owned(),
            });
        }
        let ordered = {
            let mut rng = self
                .equal_preference_rng
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            mx::order_by_preference(records, &mut *rng)
        };

        // Exchanges named like us need no lookup; the others are resolved both to
        // connect to them and to catch our own addresses under another name.
        let own_by_name = mx::own_by_hostname(&ordered, &self.identity).cloned();
        let candidates: Vec<MxRecord> = ordered
            .into_iter()
            .filter(|record| {
                own_by_name
                    .as_ref()
                    .is_none_or(|own| record.preference < own.preference)
            })
            .collect();
        let lookups = join_all(
            candidates
                .iter()
                .map(|record| self.resolver.ip(&record.exchange)),
        )
        .await;
        let resolved: Vec<(MxRecord, Result<Vec<IpAddr>, DnsError>)> =
            candidates.into_iter().zip(lookups).collect();
        let own_by_address = mx::own_by_address(&resolved, &self.identity).cloned();
        let own = [own_by_name, own_by_address]
            .into_iter()
            .flatten()
            .min_by_key(|record| record.preference);

        let mut targets = Vec::new();
        let mut failures = Vec::new();
        let mut usable_exchanges = 0;
        for (record, lookup) in resolved {
            if own
                .as_ref()
                .is_some_and(|own| record.preference >= own.preference)
            {
                continue;
            }
            usable_exchanges += 1;
            match lookup {
                Ok(addresses) => targets.extend(addresses.into_iter().map(|ip| ConnectTarget {
                    host: record.exchange.clone(),
                    addr: SocketAddr::new(ip, self.mx_port),
                    preference: Some(record.preference),
                })),
                Err(error) => {
                    debug!(
                        domain,
                        exchange = %record.exchange,
                        preference = record.preference,
                        dns_error = error.kind_label(),
                        cause = %error,
                        "route_mx_skipped"
                    );
                    failures.push(error);
                }
            }
        }
        if usable_exchanges == 0
            && let Some(own) = own
        {
            return Err(RouteError::MxLoopsBack {
                domain: domain.to_owned(),
                exchange: own.exchange,
                preference: own.preference,
            });
        }
        if targets.is_empty() {
            return Err(RouteError::NoHostResolved {
                domain: domain.to_owned(),
                failures,
            });
        }
        Ok(targets)
    }

    /// No MX records: the domain itself is the only MX, at preference 0 (RFC 5321
    /// §5.1), and loop avoidance applies to it as well.
    async fn route_implicit_mx(&self, domain: &str) -> Result<Vec<ConnectTarget>, RouteError> {
        let addresses =
            self.resolver.ip(domain).await.map_err(|error| {
                RouteError::from_domain_lookup(domain, DnsQuery::Address, error)
            })?;
        if self.identity.is_own_hostname(domain)
            || addresses.iter().any(|ip| self.identity.is_own_address(*ip))
        {
            return Err(RouteError::MxLoopsBack {
                domain: domain.to_owned(),
                exchange: domain.to_owned(),
                preference: 0,
            });
        }
        Ok(addresses
            .into_iter()
            .map(|ip| ConnectTarget {
                host: domain.to_owned(),
                addr: SocketAddr::new(ip, self.mx_port),
                preference: None,
            })
            .collect())
    }
}

/// Lowercase, without a trailing dot: the form used in targets, errors and logs.
fn normalize_domain(domain: &str) -> String {
    domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase()
}

/// Displays targets as `a[ip]:port, b[ip]:port` for the `route_resolved` log line.
struct TargetList<'a>(&'a [ConnectTarget]);

impl std::fmt::Display for TargetList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, target) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{target}")?;
        }
        Ok(())
    }
}
