//! Why routing found no host to connect to, and what that means for the message:
//! retry ([`Severity::Temporary`]) or return it ([`Severity::Permanent`]), with the
//! RFC 3463 enhanced status code a DSN or log line reports.
//!
//! [`RouteError::severity`] is the only place that decides temporary versus permanent
//! for routing; [`RouteError::from_domain_lookup`] is the only place that turns a DNS
//! answer about the recipient domain into a routing verdict.

use std::fmt;

use super::resolver::{DnsError, DnsQuery};
use crate::Severity;

/// Routing a domain produced no connect targets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// NXDOMAIN for the recipient domain itself.
    #[error("domain {domain} does not exist (NXDOMAIN on the {query} lookup)")]
    NoSuchDomain { domain: String, query: DnsQuery },
    /// The recipient domain is not something DNS can be asked about.
    #[error("{domain:?} is not a valid domain name: {reason}")]
    InvalidDomain { domain: String, reason: String },
    /// RFC 7505: the domain publishes a null MX, i.e. it accepts no mail at all.
    #[error("domain {domain} does not accept mail (null MX)")]
    NullMx { domain: String },
    /// The domain exists but has neither MX nor A/AAAA records, so RFC 5321 §5.1
    /// leaves no host to try.
    #[error("domain {domain} has no MX and no A/AAAA records")]
    NoMailHost { domain: String },
    /// A lookup about the recipient domain got no definite answer: SERVFAIL, REFUSED,
    /// a timeout, an unreachable server.
    #[error("{query} lookup for {domain} failed: {cause}")]
    DnsUnavailable {
        domain: String,
        query: DnsQuery,
        cause: DnsError,
    },
    /// There were next-hop hosts (MX exchanges or configured hosts) but none of them
    /// resolved to an address. `failures` has one entry per host, in routing order.
    #[error("no next-hop host for {domain} resolved: {}", JoinedErrors(failures))]
    NoHostResolved {
        domain: String,
        failures: Vec<DnsError>,
    },
    /// The best MX for the domain is this fleet (by host name or address), and no
    /// strictly better MX exists, so delivering would send the mail back to ourselves.
    ///
    /// Temporary, although Postfix bounces it: it is a configuration error (the fleet
    /// is the domain's best MX but is not configured as its final destination, or
    /// the domain's DNS lists the wrong host), not a fact about the recipient. The
    /// message has already been accepted, and an operator can fix either side in
    /// minutes; returning it meanwhile would lose mail for our own mistake. Deferred
    /// mail still bounces when it reaches the queue's maximum lifetime.
    #[error(
        "mail for {domain} loops back to myself: {exchange} (MX preference {preference}) \
         is this fleet and no better MX exists"
    )]
    MxLoopsBack {
        domain: String,
        exchange: String,
        preference: u16,
    },
}

/// The reply-shaped verdict of a routing failure, for DSNs (`Diagnostic-Code`) and
/// logs: e.g. `556 5.1.10 domain example.com does not accept mail (null MX)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteStatus {
    /// The SMTP reply code a server would use for this condition (4xx or 5xx).
    pub code: u16,
    /// The RFC 3463 enhanced status code, e.g. `"5.1.2"`.
    pub status: &'static str,
    pub text: String,
}

impl fmt::Display for RouteStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.status, self.text)
    }
}

impl RouteError {
    /// Turns a failed lookup about the recipient domain itself (its MX records, or
    /// its addresses when it has no MX) into the routing verdict. NODATA on the MX
    /// lookup never gets here: it means "use the implicit MX".
    pub fn from_domain_lookup(domain: &str, query: DnsQuery, error: DnsError) -> RouteError {
        let domain = domain.to_owned();
        match error {
            DnsError::NxDomain { .. } => RouteError::NoSuchDomain { domain, query },
            DnsError::InvalidName { reason, .. } => RouteError::InvalidDomain { domain, reason },
            DnsError::NoRecords { .. } => RouteError::NoMailHost { domain },
            cause @ (DnsError::ServerFailure { .. }
            | DnsError::Timeout { .. }
            | DnsError::Transport { .. }) => RouteError::DnsUnavailable {
                domain,
                query,
                cause,
            },
        }
    }

    /// The recipient domain that was being routed.
    pub fn domain(&self) -> &str {
        match self {
            RouteError::NoSuchDomain { domain, .. }
            | RouteError::InvalidDomain { domain, .. }
            | RouteError::NullMx { domain }
            | RouteError::NoMailHost { domain }
            | RouteError::DnsUnavailable { domain, .. }
            | RouteError::NoHostResolved { domain, .. }
            | RouteError::MxLoopsBack { domain, .. } => domain,
        }
    }

    /// Whether the message should be retried later or returned now.
    ///
    /// Permanent only when the DNS definitely says the domain takes no mail
    /// (NXDOMAIN, null MX, no MX and no address, an impossible name). Unresolvable
    /// next-hop hosts stay temporary even when each said NXDOMAIN: for MX hosts the
    /// domain exists and its administrator may be mid-change; configured hosts are
    /// our own configuration error, which must not cost anyone their mail.
    pub fn severity(&self) -> Severity {
        match self {
            RouteError::NoSuchDomain { .. }
            | RouteError::InvalidDomain { .. }
            | RouteError::NullMx { .. }
            | RouteError::NoMailHost { .. } => Severity::Permanent,
            RouteError::DnsUnavailable { .. }
            | RouteError::NoHostResolved { .. }
            | RouteError::MxLoopsBack { .. } => Severity::Temporary,
        }
    }

    /// The enhanced status code (RFC 3463, RFC 7505) and a reply code to match
    /// [`severity`](Self::severity):
    /// - `5.1.2` bad destination system: NXDOMAIN, invalid name;
    /// - `5.1.10` null MX (with reply code 556, RFC 7505 §4.2);
    /// - `5.4.4` unable to route: no MX and no address;
    /// - `4.4.3` directory server failure: DNS gave no answer, or some next-hop host
    ///   failed to resolve for that reason; `4.4.4` when every host definitely has no
    ///   address;
    /// - `4.4.6` routing loop detected.
    pub fn status(&self) -> RouteStatus {
        let (code, status) = match self {
            RouteError::NoSuchDomain { .. } | RouteError::InvalidDomain { .. } => (550, "5.1.2"),
            RouteError::NullMx { .. } => (556, "5.1.10"),
            RouteError::NoMailHost { .. } => (550, "5.4.4"),
            RouteError::DnsUnavailable { .. } => (451, "4.4.3"),
            RouteError::NoHostResolved { failures, .. } => {
                if failures.iter().all(DnsError::is_definite_absence) {
                    (451, "4.4.4")
                } else {
                    (451, "4.4.3")
                }
            }
            RouteError::MxLoopsBack { .. } => (451, "4.4.6"),
        };
        RouteStatus {
            code,
            status,
            text: self.to_string(),
        }
    }
}

/// Displays a list of DNS errors as `a; b; c`.
struct JoinedErrors<'a>(&'a [DnsError]);

impl fmt::Display for JoinedErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
