//! [`DnsResolver`] on top of hickory-resolver: the production implementation, and the
//! one the tests point at an in-process hickory-server.
//!
//! Every query goes out for an absolute name (a trailing dot is added), so the search
//! list of `/etc/resolv.conf` never turns `example.com` into `example.com.corp.lan`.
//! hickory's errors are translated into [`DnsError`] in one place,
//! `classify_lookup_error`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};

use super::resolver::{DnsError, DnsQuery, DnsResolver, MxAnswer, MxRecord};

/// Query behaviour of a [`HickoryResolver`] built from explicit nameservers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HickoryOptions {
    /// How long one query may take before it counts as timed out.
    pub timeout: Duration,
    /// Retries after a failed query (0: ask once).
    pub attempts: usize,
    /// How many responses the resolver caches (honouring their TTLs).
    pub cache_size: u64,
}

impl Default for HickoryOptions {
    /// The resolv.conf defaults: 5 s, 2 retries; hickory's default cache size.
    fn default() -> Self {
        HickoryOptions {
            timeout: Duration::from_secs(5),
            attempts: 2,
            cache_size: 8_192,
        }
    }
}

/// Why a [`HickoryResolver`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResolverSetupError {
    #[error("cannot read the system DNS configuration")]
    SystemConfig(#[source] NetError),
    #[error("no DNS nameservers given")]
    NoNameservers,
    #[error("cannot build the DNS resolver")]
    Build(#[source] NetError),
}

/// A hickory `TokioResolver` answering the [`DnsResolver`] questions.
#[derive(Clone)]
pub struct HickoryResolver {
    resolver: TokioResolver,
}

impl HickoryResolver {
    /// Uses the system configuration (`/etc/resolv.conf`, including its timeout and
    /// attempts) and the hosts file.
    pub fn from_system_config() -> Result<HickoryResolver, ResolverSetupError> {
        let builder = TokioResolver::builder_tokio().map_err(ResolverSetupError::SystemConfig)?;
        let resolver = builder.build().map_err(ResolverSetupError::Build)?;
        Ok(HickoryResolver { resolver })
    }

    /// Asks exactly these nameservers, over UDP and (for truncated answers) TCP on
    /// each address's port, in the given order; the hosts file is not consulted.
    pub fn from_nameservers(
        nameservers: &[SocketAddr],
        options: &HickoryOptions,
    ) -> Result<HickoryResolver, ResolverSetupError> {
        if nameservers.is_empty() {
            return Err(ResolverSetupError::NoNameservers);
        }
        let servers = nameservers
            .iter()
            .map(|server| {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                NameServerConfig::new(server.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut resolver_options = ResolverOpts::default();
        resolver_options.timeout = options.timeout;
        resolver_options.attempts = options.attempts;
        resolver_options.cache_size = options.cache_size;
        resolver_options.use_hosts_file = ResolveHosts::Never;
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
        .with_options(resolver_options)
        .build()
        .map_err(ResolverSetupError::Build)?;
        Ok(HickoryResolver { resolver })
    }

    async fn ipv4(&self, name: &Name, display: &str) -> Result<Vec<IpAddr>, DnsError> {
        let lookup = self
            .resolver
            .ipv4_lookup(name.clone())
            .await
            .map_err(|error| classify_lookup_error(display, DnsQuery::Address, error))?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect())
    }

    async fn ipv6(&self, name: &Name, display: &str) -> Result<Vec<IpAddr>, DnsError> {
        let lookup = self
            .resolver
            .ipv6_lookup(name.clone())
            .await
            .map_err(|error| classify_lookup_error(display, DnsQuery::Address, error))?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect())
    }
}

#[async_trait]
impl DnsResolver for HickoryResolver {
    async fn mx(&self, name: &str) -> Result<MxAnswer, DnsError> {
        let query_name = absolute_name(name)?;
        let lookup = self
            .resolver
            .mx_lookup(query_name)
            .await
            .map_err(|error| classify_lookup_error(name, DnsQuery::Mx, error))?;
        // The answer may also hold the CNAME chain that led to the MX set.
        let records: Vec<MxRecord> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some(MxRecord::new(mx.preference, &mx.exchange.to_ascii())),
                _ => None,
            })
            .collect();
        if records.is_empty() {
            return Err(DnsError::NoRecords {
                name: name.to_owned(),
                query: DnsQuery::Mx,
            });
        }
        Ok(MxAnswer { records })
    }

    async fn ip(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let query_name = absolute_name(name)?;
        let (v4, v6) = tokio::join!(self.ipv4(&query_name, name), self.ipv6(&query_name, name));
        match (v4, v6) {
            (Ok(mut v4), Ok(v6)) => {
                v4.extend(v6);
                if v4.is_empty() {
                    return Err(DnsError::NoRecords {
                        name: name.to_owned(),
                        query: DnsQuery::Address,
                    });
                }
                Ok(v4)
            }
            (Ok(addresses), Err(error)) | (Err(error), Ok(addresses)) => {
                if addresses.is_empty() {
                    Err(error)
                } else {
                    Ok(addresses)
                }
            }
            (Err(v4_error), Err(v6_error)) => Err(merge_address_errors(v4_error, v6_error)),
        }
    }
}

/// Both halves of an address lookup failed: report the one that says the most. An
/// unknown answer (server failure, timeout) beats "no AAAA", because the A records
/// might exist; NXDOMAIN beats NODATA.
fn merge_address_errors(v4_error: DnsError, v6_error: DnsError) -> DnsError {
    match (
        v4_error.is_definite_absence(),
        v6_error.is_definite_absence(),
    ) {
        (true, false) => v6_error,
        (false, _) => v4_error,
        (true, true) => match (&v4_error, &v6_error) {
            (DnsError::NoRecords { .. }, DnsError::NxDomain { .. }) => v6_error,
            _ => v4_error,
        },
    }
}

/// `name` as an absolute DNS name; UTF-8 names are converted to their A-labels.
fn absolute_name(name: &str) -> Result<Name, DnsError> {
    let invalid = |reason: String| DnsError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let mut parsed = Name::from_utf8(name).map_err(|error| invalid(error.to_string()))?;
    if parsed.is_root() {
        return Err(invalid("the root name has no mail exchanger".to_owned()));
    }
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// The one translation from hickory's lookup errors into [`DnsError`].
fn classify_lookup_error(name: &str, query: DnsQuery, error: NetError) -> DnsError {
    let name = name.to_owned();
    match error {
        NetError::Dns(HickoryDnsError::NoRecordsFound(NoRecords { response_code, .. })) => {
            match response_code {
                ResponseCode::NXDomain => DnsError::NxDomain { name },
                ResponseCode::NoError => DnsError::NoRecords { name, query },
                other => DnsError::ServerFailure {
                    name,
                    response_code: other.to_string(),
                },
            }
        }
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => DnsError::ServerFailure {
            name,
            response_code: code.to_string(),
        },
        NetError::Timeout => DnsError::Timeout { name },
        // The names are parsed before the query, so anything else (a malformed answer,
        // refused connection, DNSSEC trouble) is a problem of this moment.
        other => DnsError::Transport {
            name,
            reason: other.to_string(),
        },
    }
}
