//! The validated next-hop setting of a destination domain, and its parser.
//!
//! Two forms, after Postfix's transport maps:
//! - `mx`: look up the recipient domain's MX records (RFC 5321 §5.1).
//! - a list of `[host]` / `[host]:port` entries, separated by commas and/or spaces:
//!   connect to these hosts in the given order, with no MX lookup. A host is a DNS
//!   name (resolved with A/AAAA) or an IP literal: `[192.0.2.1]`, `[2001:db8::1]`, or
//!   Postfix's `[ipv6:2001:db8::1]`. The port defaults to 25.
//!
//! The brackets are required. In Postfix a bare `host` means "look up the MX records
//! of host", which is never what an explicit list here does; rejecting the bare form
//! keeps a Postfix-trained reader from guessing wrong.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The SMTP port used when an entry names none.
pub const DEFAULT_SMTP_PORT: u16 = 25;

/// Where mail for a domain goes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// These hosts, tried in order, with no MX lookup. Never empty when built by the
    /// parser.
    Explicit(Vec<HostPort>),
    /// MX lookup for the recipient domain, with the implicit MX fallback and loop
    /// avoidance of RFC 5321 §5.1.
    Mx,
}

/// One explicit next-hop host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: NextHopHost,
    pub port: u16,
}

/// The host part of an explicit next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHopHost {
    /// A DNS name, lowercase, without a trailing dot; resolved with A and AAAA.
    Name(String),
    /// An address used as it is.
    Ip(IpAddr),
}

/// Why a next-hop setting was rejected; every variant carries the offending text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NextHopParseError {
    #[error("empty next hop: expected \"mx\" or a list of [host]:port entries")]
    Empty,
    #[error("next hop entry {entry:?} needs brackets: write [host] or [host]:port")]
    MissingBrackets { entry: String },
    #[error("next hop entry {entry:?} has no closing bracket")]
    UnclosedBracket { entry: String },
    #[error("next hop entry {entry:?}: unexpected {rest:?} after the closing bracket")]
    TrailingText { entry: String, rest: String },
    #[error("next hop entry {entry:?} has an empty host")]
    EmptyHost { entry: String },
    #[error("next hop entry {entry:?}: {host:?} is neither a host name nor an IP address")]
    InvalidHost { entry: String, host: String },
    #[error("next hop entry {entry:?}: port {port:?} is not a number from 1 to 65535")]
    InvalidPort { entry: String, port: String },
    #[error("next hop {text:?}: \"mx\" stands alone and cannot be part of a host list")]
    MxInList { text: String },
}

impl NextHop {
    /// Parses `"mx"` or a comma/space separated list of `[host]` / `[host]:port`.
    pub fn parse(text: &str) -> Result<NextHop, NextHopParseError> {
        let entries: Vec<&str> = text
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|entry| !entry.is_empty())
            .collect();
        match entries.as_slice() {
            [] => Err(NextHopParseError::Empty),
            [only] if only.eq_ignore_ascii_case("mx") => Ok(NextHop::Mx),
            _ if entries.iter().any(|entry| entry.eq_ignore_ascii_case("mx")) => {
                Err(NextHopParseError::MxInList {
                    text: text.to_owned(),
                })
            }
            _ => Self::parse_entries(entries),
        }
    }

    /// Builds an explicit next hop from separate entries (a TOML array, say), each a
    /// `[host]` or `[host]:port`.
    pub fn parse_entries<I, S>(entries: I) -> Result<NextHop, NextHopParseError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let hosts = entries
            .into_iter()
            .map(|entry| HostPort::parse(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if hosts.is_empty() {
            return Err(NextHopParseError::Empty);
        }
        Ok(NextHop::Explicit(hosts))
    }
}

impl FromStr for NextHop {
    type Err = NextHopParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        NextHop::parse(text)
    }
}

impl fmt::Display for NextHop {
    /// Prints the form `parse` reads back: `mx`, or `[a]:25, [b]:2525`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHop::Mx => f.write_str("mx"),
            NextHop::Explicit(hosts) => {
                for (index, host) in hosts.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{host}")?;
                }
                Ok(())
            }
        }
    }
}

impl HostPort {
    /// Parses one `[host]` or `[host]:port` entry.
    pub fn parse(entry: &str) -> Result<HostPort, NextHopParseError> {
        let entry = entry.trim();
        let invalid_host = |host: &str| NextHopParseError::InvalidHost {
            entry: entry.to_owned(),
            host: host.to_owned(),
        };
        let Some(inner) = entry.strip_prefix('[') else {
            return Err(NextHopParseError::MissingBrackets {
                entry: entry.to_owned(),
            });
        };
        let Some((host, rest)) = inner.split_once(']') else {
            return Err(NextHopParseError::UnclosedBracket {
                entry: entry.to_owned(),
            });
        };
        let port = match rest {
            "" => DEFAULT_SMTP_PORT,
            _ => match rest.strip_prefix(':') {
                Some(port) => parse_port(port).ok_or_else(|| NextHopParseError::InvalidPort {
                    entry: entry.to_owned(),
                    port: port.to_owned(),
                })?,
                None => {
                    return Err(NextHopParseError::TrailingText {
                        entry: entry.to_owned(),
                        rest: rest.to_owned(),
                    });
                }
            },
        };
        if host.is_empty() {
            return Err(NextHopParseError::EmptyHost {
                entry: entry.to_owned(),
            });
        }
        let host = if let Some(v6) = strip_prefix_ignore_case(host, "ipv6:") {
            NextHopHost::Ip(IpAddr::V6(v6.parse().map_err(|_| invalid_host(host))?))
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            NextHopHost::Ip(ip)
        } else {
            NextHopHost::Name(normalize_host_name(host).ok_or_else(|| invalid_host(host))?)
        };
        Ok(HostPort { host, port })
    }
}

impl FromStr for HostPort {
    type Err = NextHopParseError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        HostPort::parse(entry)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            NextHopHost::Name(name) => write!(f, "[{name}]:{}", self.port),
            NextHopHost::Ip(IpAddr::V4(ip)) => write!(f, "[{ip}]:{}", self.port),
            NextHopHost::Ip(IpAddr::V6(ip)) => write!(f, "[ipv6:{ip}]:{}", self.port),
        }
    }
}

impl fmt::Display for NextHopHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHopHost::Name(name) => f.write_str(name),
            NextHopHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Lowercases a host name and drops one trailing dot, or returns `None` when it is not
/// a letters-digits-hyphens name (RFC 1123): labels of 1 to 63 characters, no leading
/// or trailing hyphen, at most 253 characters in all, and a last label that is not all
/// digits (so a mistyped address like `999.0.0.1` is not taken for a name).
/// Underscores are allowed because real relay names carry them, and resolvers look
/// them up fine.
pub(crate) fn normalize_host_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let last_label = name.rsplit('.').next().unwrap_or(name);
    if last_label.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let labels_valid = name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    labels_valid.then(|| name.to_ascii_lowercase())
}
