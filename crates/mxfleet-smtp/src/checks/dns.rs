//! [`CheckResolver`]: the DNS resolver every DNS-based check shares (DNSBL, RHSBL,
//! sender domain, reverse DNS; SPF reuses its hickory resolver), on top of
//! hickory-resolver.
//!
//! Every query goes out for an absolute name (a trailing dot is added), so the search
//! list of `/etc/resolv.conf` never turns `2.0.0.127.zen.spamhaus.org` into
//! `2.0.0.127.zen.spamhaus.org.corp.lan`. Every failure is sorted in one place,
//! `classify`, into [`DnsLookupError`]: the name is known not to exist (or to have no
//! records of that type), or the answer is unknown for now. The checks build on that
//! split: only a definite absence ever refuses mail; anything else fails open or
//! defers.
//!
//! Layout: [`CheckResolver`] (built by [`CheckResolver::from_system_config`] or
//! [`CheckResolver::from_nameservers`] with [`CheckResolverOptions`]), its lookups
//! ([`CheckResolver::ipv4`], [`CheckResolver::ipv6`], [`CheckResolver::addresses`],
//! [`CheckResolver::mx`], [`CheckResolver::ptr`]), [`DnsLookupError`], and
//! [`reversed_address`], the reversed-octet / nibble form DNSBL and PTR names use.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};

/// Query behaviour of a [`CheckResolver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResolverOptions {
    /// How long one query to one nameserver may take (hickory's per-attempt timeout).
    pub timeout: Duration,
    /// Retries after a failed query (0: ask once).
    pub attempts: usize,
    /// How many answers hickory caches, honouring their TTLs; 0 turns it off.
    pub cache_size: u64,
}

impl CheckResolverOptions {
    /// `timeout` per query, one retry, hickory's usual cache size.
    pub fn new(timeout: Duration) -> Self {
        CheckResolverOptions {
            timeout,
            attempts: 1,
            cache_size: 8_192,
        }
    }
}

/// Why a [`CheckResolver`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResolverSetupError {
    #[error("cannot read the system DNS configuration")]
    SystemConfig(#[source] NetError),
    #[error("no DNS nameservers given")]
    NoNameservers,
    #[error("cannot build the DNS resolver")]
    Build(#[source] NetError),
}

/// The record type of a failed lookup, for messages and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    A,
    Aaaa,
    Mx,
    Ptr,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::A => "A",
            RecordKind::Aaaa => "AAAA",
            RecordKind::Mx => "MX",
            RecordKind::Ptr => "PTR",
        })
    }
}

/// A lookup that gave no records. Made only by `classify`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsLookupError {
    /// The name does not exist (NXDOMAIN, `no_such_name`), or has no record of this
    /// type. Also a name that cannot exist in the DNS at all (bad syntax).
    #[error("{name} {query}: {}", if *no_such_name { "no such name" } else { "no records" })]
    NotFound {
        name: String,
        query: RecordKind,
        no_such_name: bool,
    },
    /// No answer for now: a timeout, SERVFAIL or REFUSED, a network error.
    #[error("{name} {query}: temporary DNS failure: {cause}")]
    Temporary {
        name: String,
        query: RecordKind,
        cause: String,
    },
}

impl DnsLookupError {
    pub fn is_temporary(&self) -> bool {
        matches!(self, DnsLookupError::Temporary { .. })
    }

    /// What went wrong, without the name: `no records`, `timed out after 300ms`.
    pub fn cause(&self) -> String {
        match self {
            DnsLookupError::NotFound {
                no_such_name: true, ..
            } => "no such name".to_owned(),
            DnsLookupError::NotFound { .. } => "no records".to_owned(),
            DnsLookupError::Temporary { cause, .. } => cause.clone(),
        }
    }
}

/// Everything a lookup can fail with, before `classify` sorts it.
enum Failure {
    Net(NetError),
    /// The caller's deadline passed before hickory gave up on its own.
    Deadline(Duration),
    /// An answer without records of the asked type (e.g. only a CNAME).
    NoMatchingRecords,
    InvalidName,
}

/// One MX record; `exchange` is lower-case without the trailing dot, and `.` for a
/// null MX (RFC 7505).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxRecord {
    pub preference: u16,
    pub exchange: String,
}

impl MxRecord {
    /// `MX 0 .`: the domain accepts no mail. Any preference counts.
    pub fn is_null(&self) -> bool {
        self.exchange == "."
    }
}

/// The checks' resolver: cheap to clone (the connection pool and cache are shared).
#[derive(Clone)]
pub struct CheckResolver {
    resolver: TokioResolver,
    /// An overall limit per lookup on top of hickory's own timeouts; `None` relies on
    /// hickory's `timeout × (attempts + 1)` per nameserver.
    deadline: Option<Duration>,
}

impl fmt::Debug for CheckResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckResolver")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl CheckResolver {
    /// The nameservers of `/etc/resolv.conf` (and the hosts file), with `options`'
    /// timeout, attempts and cache size instead of resolv.conf's.
    pub fn from_system_config(
        options: &CheckResolverOptions,
    ) -> Result<CheckResolver, ResolverSetupError> {
        let mut builder =
            TokioResolver::builder_tokio().map_err(ResolverSetupError::SystemConfig)?;
        apply_options(builder.options_mut(), options);
        let resolver = builder.build().map_err(ResolverSetupError::Build)?;
        Ok(CheckResolver {
            resolver,
            deadline: None,
        })
    }

    /// Asks exactly these nameservers, over UDP and (for truncated answers) TCP on
    /// each address's port, in the given order; the hosts file is not consulted.
    pub fn from_nameservers(
        nameservers: &[SocketAddr],
        options: &CheckResolverOptions,
    ) -> Result<CheckResolver, ResolverSetupError> {
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
        apply_options(&mut resolver_options, options);
        resolver_options.use_hosts_file = ResolveHosts::Never;
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
        .with_options(resolver_options)
        .build()
        .map_err(ResolverSetupError::Build)?;
        Ok(CheckResolver {
            resolver,
            deadline: None,
        })
    }

    /// The same resolver (shared pool and cache), each lookup limited to `deadline`.
    pub fn with_deadline(&self, deadline: Duration) -> CheckResolver {
        CheckResolver {
            resolver: self.resolver.clone(),
            deadline: Some(deadline),
        }
    }

    /// The hickory resolver underneath, for mail-auth (SPF).
    pub(crate) fn hickory(&self) -> &TokioResolver {
        &self.resolver
    }

    /// The A records of `name`.
    pub async fn ipv4(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsLookupError> {
        self.query(name, RecordKind::A, |data| match data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    /// The AAAA records of `name`.
    pub async fn ipv6(&self, name: &str) -> Result<Vec<Ipv6Addr>, DnsLookupError> {
        self.query(name, RecordKind::Aaaa, |data| match data {
            RData::AAAA(aaaa) => Some(aaaa.0),
            _ => None,
        })
        .await
    }

    /// A and AAAA of `name`, asked together. Some addresses win over any failure of
    /// the other half; otherwise a temporary failure wins over "not found", because
    /// the records it hid might exist.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, DnsLookupError> {
        let (v4, v6) = tokio::join!(self.ipv4(name), self.ipv6(name));
        let mut addresses: Vec<IpAddr> = Vec::new();
        let mut errors = Vec::new();
        match v4 {
            Ok(found) => addresses.extend(found.into_iter().map(IpAddr::V4)),
            Err(error) => errors.push(error),
        }
        match v6 {
            Ok(found) => addresses.extend(found.into_iter().map(IpAddr::V6)),
            Err(error) => errors.push(error),
        }
        if !addresses.is_empty() {
            return Ok(addresses);
        }
        let temporary = errors.iter().position(DnsLookupError::is_temporary);
        Err(errors.swap_remove(temporary.unwrap_or(0)))
    }

    /// The MX records of `name`, in the order received.
    pub async fn mx(&self, name: &str) -> Result<Vec<MxRecord>, DnsLookupError> {
        self.query(name, RecordKind::Mx, |data| match data {
            RData::MX(mx) => Some(MxRecord {
                preference: mx.preference,
                exchange: display_name(&mx.exchange),
            }),
            _ => None,
        })
        .await
    }

    /// The PTR names of `ip` (lower-case, without the trailing dot).
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsLookupError> {
        let suffix = match canonical_ip(ip) {
            IpAddr::V4(_) => "in-addr.arpa",
            IpAddr::V6(_) => "ip6.arpa",
        };
        let name = format!("{}.{suffix}", reversed_address(ip));
        self.query(&name, RecordKind::Ptr, |data| match data {
            RData::PTR(ptr) => Some(display_name(&ptr.0)),
            _ => None,
        })
        .await
    }

    /// Asks for `kind` records of `name` and keeps what `pick` takes from the answer
    /// (which may also hold the CNAME chain that led there).
    async fn query<T>(
        &self,
        name: &str,
        kind: RecordKind,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Vec<T>, DnsLookupError> {
        let query_name = absolute_name(name).map_err(|f| classify(name, kind, f))?;
        let record_type = match kind {
            RecordKind::A => RecordType::A,
            RecordKind::Aaaa => RecordType::AAAA,
            RecordKind::Mx => RecordType::MX,
            RecordKind::Ptr => RecordType::PTR,
        };
        let lookup = self.resolver.lookup(query_name, record_type);
        let answer = match self.deadline {
            None => lookup.await,
            Some(deadline) => match tokio::time::timeout(deadline, lookup).await {
                Ok(answer) => answer,
                Err(_) => return Err(classify(name, kind, Failure::Deadline(deadline))),
            },
        };
        let lookup = answer.map_err(|error| classify(name, kind, Failure::Net(error)))?;
        let found: Vec<T> = lookup
            .answers()
            .iter()
            .filter_map(|record| pick(&record.data))
            .collect();
        if found.is_empty() {
            return Err(classify(name, kind, Failure::NoMatchingRecords));
        }
        Ok(found)
    }
}

fn apply_options(target: &mut ResolverOpts, options: &CheckResolverOptions) {
    target.timeout = options.timeout;
    target.attempts = options.attempts;
    target.cache_size = options.cache_size;
    // Names are always absolute, so ndots never matters; set it anyway so that no
    // relative name could slip through the search list.
    target.ndots = 0;
}

/// `name` as an absolute DNS name. ASCII names are taken as they are (DNSBL zones and
/// PTR names may hold `_`); others are converted to their A-labels.
fn absolute_name(name: &str) -> Result<Name, Failure> {
    let parsed = if name.is_ascii() {
        Name::from_ascii(name)
    } else {
        Name::from_utf8(name)
    };
    let mut parsed = parsed.map_err(|_| Failure::InvalidName)?;
    if parsed.is_root() {
        return Err(Failure::InvalidName);
    }
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// The one translation of lookup failures into [`DnsLookupError`].
fn classify(name: &str, query: RecordKind, failure: Failure) -> DnsLookupError {
    let name = name.to_owned();
    let not_found = |no_such_name| DnsLookupError::NotFound {
        name: name.clone(),
        query,
        no_such_name,
    };
    let temporary = |cause: String| DnsLookupError::Temporary {
        name: name.clone(),
        query,
        cause,
    };
    match failure {
        Failure::NoMatchingRecords => not_found(false),
        // A name that cannot be written in the DNS cannot be listed or exist there.
        Failure::InvalidName => not_found(true),
        Failure::Deadline(deadline) => temporary(format!("timed out after {deadline:?}")),
        Failure::Net(NetError::Dns(HickoryDnsError::NoRecordsFound(NoRecords {
            response_code,
            ..
        }))) => match response_code {
            ResponseCode::NXDomain => not_found(true),
            ResponseCode::NoError => not_found(false),
            other => temporary(format!("server answered {other}")),
        },
        Failure::Net(NetError::Dns(HickoryDnsError::ResponseCode(code))) => {
            temporary(format!("server answered {code}"))
        }
        Failure::Net(NetError::Timeout) => temporary("timed out".to_owned()),
        // Anything else (a malformed answer, a refused connection, DNSSEC trouble) is
        // a problem of this moment, not an answer about the name.
        Failure::Net(other) => temporary(other.to_string()),
    }
}

/// A name as the checks show it: lower-case, no trailing dot; the root stays `.`.
fn display_name(name: &Name) -> String {
    if name.is_root() {
        return ".".to_owned();
    }
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) is the IPv4 client it stands for.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The labels DNSBL and PTR names start with: reversed octets for IPv4
/// (`1.2.0.192`), reversed nibbles for IPv6 (32 labels, RFC 3596 §2.5; RFC 5782 §2.4).
/// No suffix and no trailing dot.
pub fn reversed_address(ip: IpAddr) -> String {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::with_capacity(32);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.join(".")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_addresses_follow_rfc_5782() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(reversed_address(v4), "1.2.0.192");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(reversed_address(mapped), "1.2.0.192");
        // RFC 5782 §2.4's example.
        let v6: IpAddr = "2001:db8:1:2:3:4:567:89ab".parse().unwrap();
        assert_eq!(
            reversed_address(v6),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
        );
    }

    #[test]
    fn names_are_made_absolute() {
        let name = absolute_name("Example.ORG").ok().unwrap();
        assert!(name.is_fqdn());
        assert_eq!(name.to_ascii().to_ascii_lowercase(), "example.org.");
        assert!(absolute_name("under_score.example").is_ok());
        assert!(absolute_name(".").is_err());
        assert!(absolute_name("bad..name").is_err());
    }

    #[test]
    fn classification_splits_absence_from_trouble() {
        let kind = RecordKind::A;
        let nx = Failure::Net(NetError::Dns(HickoryDnsError::NoRecordsFound(
            NoRecords::new(
                hickory_resolver::proto::op::Query::new(),
                ResponseCode::NXDomain,
            ),
        )));
        assert_eq!(
            classify("x.test", kind, nx),
            DnsLookupError::NotFound {
                name: "x.test".to_owned(),
                query: kind,
                no_such_name: true
            }
        );
        let servfail = Failure::Net(NetError::Dns(HickoryDnsError::ResponseCode(
            ResponseCode::ServFail,
        )));
        assert!(classify("x.test", kind, servfail).is_temporary());
        assert!(classify("x.test", kind, Failure::Net(NetError::Timeout)).is_temporary());
        let late = classify(
            "x.test",
            kind,
            Failure::Deadline(Duration::from_millis(300)),
        );
        assert_eq!(late.cause(), "timed out after 300ms");
        assert_eq!(
            classify("x.test", kind, Failure::NoMatchingRecords).to_string(),
            "x.test A: no records"
        );
    }
}
