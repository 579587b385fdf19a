//! `host:port` addresses that other fleet members dial.
//!
//! Unlike `SocketAddr`, the host may be a DNS name, because a peer's address is resolved
//! when it is dialled, not when the config is read. Parsing normalizes the text (names
//! lowercased, IPs in canonical form) so that two spellings of one address compare equal,
//! which is what the "this node's entry in `initial_members`" check needs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU16;

use super::dns_name;

/// A dialable address: an IP literal or a DNS name, and a non-zero port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    host: Host,
    port: NonZeroU16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    /// Lowercased, without a trailing dot.
    Name(String),
}

const EXAMPLE: &str = r#"e.g. "10.0.1.5:7401", "mx1.example.net:7401" or "[2001:db8::5]:7401""#;

impl HostPort {
    /// Parses `host:port`, where host is an IPv4 address, a DNS name or a bracketed IPv6
    /// address. The error says what is wrong, without the key path.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err(format!("must not be empty; expected host:port, {EXAMPLE}"));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(format!(
                "{text:?} contains whitespace; expected host:port, {EXAMPLE}"
            ));
        }
        let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
            let (inside, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{text:?} has an unclosed '['; {EXAMPLE}"))?;
            let ip: Ipv6Addr = inside
                .parse()
                .map_err(|_| format!("{inside:?} inside brackets is not an IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| format!("{text:?} has no port; expected [ipv6]:port"))?;
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = text
                .rsplit_once(':')
                .ok_or_else(|| format!("{text:?} has no port; expected host:port, {EXAMPLE}"))?;
            if host.contains(':') {
                return Err(format!(
                    "{text:?}: an IPv6 address needs brackets, e.g. \"[2001:db8::5]:7401\""
                ));
            }
            (
                parse_host(host).map_err(|why| format!("{text:?}: {why}"))?,
                port,
            )
        };
        let port = parse_port(port).map_err(|why| format!("{text:?}: {why}"))?;
        Ok(Self { host, port })
    }

    /// The address peers dial when `advertise` is not set: the listen address itself.
    pub(crate) fn from_socket_addr(addr: SocketAddr) -> Result<Self, String> {
        let port = NonZeroU16::new(addr.port())
            .ok_or_else(|| "port 0 is an ephemeral port that peers cannot dial".to_owned())?;
        Ok(Self {
            host: Host::Ip(addr.ip()),
            port,
        })
    }

    /// True for 0.0.0.0 and ::, which can be bound but never dialled.
    pub(crate) fn is_unspecified(&self) -> bool {
        matches!(self.host, Host::Ip(ip) if ip.is_unspecified())
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

fn parse_port(port: &str) -> Result<NonZeroU16, String> {
    let number = port
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| port.parse::<u16>().ok())
        .flatten()
        .ok_or_else(|| format!("port {port:?} is not a number from 1 to 65535"))?;
    NonZeroU16::new(number)
        .ok_or_else(|| "port 0 is an ephemeral port that peers cannot dial".to_owned())
}

/// An IPv4 literal, or a DNS name (see [`super::dns_name`]), normalized.
fn parse_host(host: &str) -> Result<Host, String> {
    if host.is_empty() {
        return Err("the host is missing".to_owned());
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    dns_name::host_name(host).map(Host::Name).map_err(|why| {
        format!("{host:?} is neither an IPv4 address nor a valid DNS name: it {why}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalizes_dialable_addresses() {
        let cases = [
            ("10.0.1.5:7401", "10.0.1.5:7401"),
            ("MX1.Example.NET:7401", "mx1.example.net:7401"),
            ("mx1.example.net.:7401", "mx1.example.net:7401"),
            ("localhost:1", "localhost:1"),
            ("[2001:DB8:0::5]:7401", "[2001:db8::5]:7401"),
            ("[::1]:65535", "[::1]:65535"),
        ];
        for (text, normalized) in cases {
            let parsed = HostPort::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.to_string(), normalized, "{text}");
        }
    }

    #[test]
    fn rejects_what_a_peer_could_not_dial() {
        let cases = [
            ("", "empty"),
            ("10.0.1.5", "no port"),
            ("10.0.1.5:", "not a number"),
            ("10.0.1.5:0", "port 0"),
            ("10.0.1.5:70000", "not a number"),
            (":7401", "host is missing"),
            ("2001:db8::5:7401", "brackets"),
            ("[2001:db8::5:7401", "unclosed"),
            ("[10.0.1.5]:7401", "not an IPv6"),
            ("[::1]7401", "no port"),
            ("10.0.1.300:7401", "neither"),
            ("mx_1.example.net:7401", "neither"),
            ("-mx.example.net:7401", "neither"),
            ("mx..example.net:7401", "neither"),
            ("mx1 .example.net:7401", "whitespace"),
        ];
        for (text, expected) in cases {
            match HostPort::parse(text) {
                Ok(parsed) => panic!("{text:?} was accepted as {parsed}"),
                Err(why) => assert!(why.contains(expected), "{text:?}: {why}"),
            }
        }
    }

    #[test]
    fn equal_addresses_compare_equal_whatever_the_spelling() {
        let listen: SocketAddr = "[::1]:7401".parse().expect("socket addr");
        let from_listen = HostPort::from_socket_addr(listen).expect("dialable");
        assert_eq!(HostPort::parse("[0:0::1]:7401"), Ok(from_listen));
        assert!(
            HostPort::parse("0.0.0.0:7401")
                .expect("parses")
                .is_unspecified()
        );
    }
}
