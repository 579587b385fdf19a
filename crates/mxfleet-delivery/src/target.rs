//! What routing hands to the SMTP client: one address to connect to, and the host
//! name that TLS checks the certificate against.

use std::fmt;
use std::net::SocketAddr;

/// One next-hop host address, in the order routing prefers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectTarget {
    /// The host name (MX exchange, or the configured relay host), without a trailing
    /// dot. Used for SNI and certificate verification, and in logs as `host[ip]:port`.
    pub host: String,
    pub addr: SocketAddr,
    /// The MX preference this target came from (`None` for explicit next hops and the
    /// implicit MX of RFC 5321 §5.1).
    pub preference: Option<u16>,
}

impl fmt::Display for ConnectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]:{}", self.host, self.addr.ip(), self.addr.port())
    }
}
