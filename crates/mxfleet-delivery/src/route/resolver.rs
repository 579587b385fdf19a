//! The DNS lookups routing needs, as a trait injected into the [`Router`](super::Router).
//!
//! Production uses [`HickoryResolver`](super::HickoryResolver); tests point the same
//! implementation at an in-process DNS server. The trait answers in routing's terms:
//! NXDOMAIN, "no records of this type" (NODATA), a server failure, a timeout, or a
//! transport problem are separate errors, because routing treats them differently.

use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;

/// Looks up MX and address records. Names are absolute: implementations must not
/// append search domains.
#[async_trait]
pub trait DnsResolver: Send + Sync {
    /// The MX records of `name`. NODATA is `Err(DnsError::NoRecords)`, never an empty
    /// answer (routing treats an empty answer the same way, to be safe).
    async fn mx(&self, name: &str) -> Result<MxAnswer, DnsError>;

    /// The A and AAAA addresses of `name`, IPv4 first. NODATA for both types is
    /// `Err(DnsError::NoRecords)`; when one type answers, a failure of the other is
    /// ignored (a host with working A records is reachable even if its AAAA lookup
    /// fails).
    async fn ip(&self, name: &str) -> Result<Vec<IpAddr>, DnsError>;
}

/// The MX records of one domain, in the order the server sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxAnswer {
    pub records: Vec<MxRecord>,
}

/// One MX record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MxRecord {
    pub preference: u16,
    /// Lowercase, without the trailing dot; the root name (RFC 7505's null MX) is `"."`.
    pub exchange: String,
}

impl MxRecord {
    /// The exchange of a null MX (RFC 7505), as [`MxRecord::exchange`] spells it.
    pub const ROOT_EXCHANGE: &'static str = ".";

    /// Builds a record, normalizing the exchange: lowercase, no trailing dot, and the
    /// root name as `"."`.
    pub fn new(preference: u16, exchange: &str) -> MxRecord {
        let trimmed = exchange.strip_suffix('.').unwrap_or(exchange);
        let exchange = if trimmed.is_empty() {
            Self::ROOT_EXCHANGE.to_owned()
        } else {
            trimmed.to_ascii_lowercase()
        };
        MxRecord {
            preference,
            exchange,
        }
    }

    /// True when the exchange is the root name, i.e. "this host accepts no mail".
    pub fn is_null(&self) -> bool {
        self.exchange == Self::ROOT_EXCHANGE
    }
}

/// The record types routing asks for; used as context in errors and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DnsQuery {
    Mx,
    /// A and AAAA together.
    Address,
}

impl fmt::Display for DnsQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DnsQuery::Mx => "MX",
            DnsQuery::Address => "A/AAAA",
        })
    }
}

/// Why a lookup produced no records.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN): an authoritative "no".
    #[error("{name}: no such domain (NXDOMAIN)")]
    NxDomain { name: String },
    /// The name exists but has no records of the asked type (NOERROR with an empty
    /// answer, "NODATA"): an authoritative "no" for this type.
    #[error("{name}: no {query} records")]
    NoRecords { name: String, query: DnsQuery },
    /// The server answered with an error code other than NXDOMAIN: SERVFAIL, REFUSED,
    /// FORMERR, and so on. `response_code` is the code's name.
    #[error("{name}: the DNS server answered {response_code}")]
    ServerFailure { name: String, response_code: String },
    /// No answer within the configured time.
    #[error("{name}: DNS lookup timed out")]
    Timeout { name: String },
    /// No usable server: connection refused, network unreachable, no servers
    /// configured, a truncated answer with no TCP to fall back on.
    #[error("{name}: DNS transport failed: {reason}")]
    Transport { name: String, reason: String },
    /// The name cannot be put into a DNS query at all (bad syntax, too long).
    #[error("{name:?} is not a valid DNS name: {reason}")]
    InvalidName { name: String, reason: String },
}

impl DnsError {
    /// The name that was looked up.
    pub fn name(&self) -> &str {
        match self {
            DnsError::NxDomain { name }
            | DnsError::NoRecords { name, .. }
            | DnsError::ServerFailure { name, .. }
            | DnsError::Timeout { name }
            | DnsError::Transport { name, .. }
            | DnsError::InvalidName { name, .. } => name,
        }
    }

    /// True when the DNS itself said the records do not exist (NXDOMAIN, NODATA) or
    /// the name cannot exist; false when the answer is unknown (server failure,
    /// timeout, transport). Asking again later can only change the second kind.
    pub fn is_definite_absence(&self) -> bool {
        matches!(
            self,
            DnsError::NxDomain { .. } | DnsError::NoRecords { .. } | DnsError::InvalidName { .. }
        )
    }

    /// A short, stable label for structured logs (`dns_error = "servfail"`).
    pub fn kind_label(&self) -> &'static str {
        match self {
            DnsError::NxDomain { .. } => "nxdomain",
            DnsError::NoRecords { .. } => "nodata",
            DnsError::ServerFailure { .. } => "server_failure",
            DnsError::Timeout { .. } => "timeout",
            DnsError::Transport { .. } => "transport",
            DnsError::InvalidName { .. } => "invalid_name",
        }
    }
}
