//! Address syntax for MAIL FROM and RCPT TO: [`parse_path`] turns the path smtp-proto
//! hands us into a [`Mailbox`], or names the one rule it broke ([`AddressError`]).
//! [`AddressError::fault`] is the single place that sorts those errors into syntax,
//! not-fully-qualified, and routing tricks; `relay.rs` turns each class into a reply.
//!
//! Checks run in a fixed order, so an address that breaks several rules always gets the
//! same error: brackets, empty, control characters, length, source route, local part
//! (routing characters before other characters), local-part length, `@` count, domain.

use std::fmt;
use std::net::Ipv4Addr;

use thiserror::Error;

use super::domain::{self, NameFault, NameRules};

/// Longest local part, in octets as written (quotes included), RFC 5321 §4.5.3.1.1.
pub const MAX_LOCAL_PART: usize = 64;
/// Longest address, in octets without the angle brackets: the 256-octet path of
/// RFC 5321 §4.5.3.1.3 less `<` and `>`.
pub const MAX_ADDRESS: usize = 254;

/// A parsed, checked address.
///
/// `local` keeps the case the client sent (local parts are case-sensitive to the
/// primary, which we forward to) and keeps the quotes of a quoted local part that needs
/// them (`"john doe"`), so that `Display` gives back a valid address. A quoted local part
/// that did not need quotes (`"john"`) is stored unquoted: RFC 5321 §4.1.2 makes the two
/// spellings the same mailbox. `domain` is lower-cased.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mailbox {
    pub local: String,
    pub domain: String,
}

impl Mailbox {
    /// False when the address needs SMTPUTF8 (RFC 6531) to be sent on.
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Why an address was refused. Each variant carries the input exactly as given.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("{:?}: {}", .0, self.reason())]
    Empty(String),
    #[error("{:?}: {}", .0, self.reason())]
    UnbalancedBrackets(String),
    #[error("{:?}: {}", .0, self.reason())]
    ControlOrSpace(String),
    #[error("{:?}: {}", .0, self.reason())]
    TooLong(String),
    /// `@a,@b:user@c` or `@a:user@c` (RFC 5321 §4.1.1.3 / Appendix C).
    #[error("{:?}: {}", .0, self.reason())]
    SourceRoute(String),
    /// `user%victim.example@our.domain`.
    #[error("{:?}: {}", .0, self.reason())]
    PercentHack(String),
    /// `victim.example!user@our.domain` (UUCP bang path).
    #[error("{:?}: {}", .0, self.reason())]
    BangPath(String),
    /// `"user@victim.example"@our.domain`, or a quoted `%` or `!`.
    #[error("{:?}: {}", .0, self.reason())]
    QuotedRouting(String),
    /// Bad characters, empty local part, unterminated quotes; the `&str` says which.
    #[error("{:?}: {}", .0, .1)]
    InvalidLocalPart(String, &'static str),
    #[error("{:?}: {}", .0, self.reason())]
    LocalPartTooLong(String),
    /// `user@victim.example@our.domain`.
    #[error("{:?}: {}", .0, self.reason())]
    MultipleAt(String),
    /// `user@[192.0.2.1]`, `user@[IPv6:...]`, and an unbracketed `user@192.0.2.1`.
    #[error("{:?}: {}", .0, self.reason())]
    IpLiteral(String),
    /// `user@example.org.`
    #[error("{:?}: {}", .0, self.reason())]
    TrailingDot(String),
    /// No `@domain` at all, or a single-label domain such as `localhost`.
    #[error("{:?}: {}", .0, self.reason())]
    NotFqdn(String),
    /// The domain breaks host-name syntax; the `&str` says how.
    #[error("{:?}: {}", .0, .1)]
    InvalidDomain(String, &'static str),
}

/// The three ways an address can be wrong, which decide the reply (see `relay.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressFault {
    /// Malformed: `501`.
    Syntax,
    /// Well-formed but not fully qualified: `504 5.5.2` (Postfix `reject_non_fqdn_*`).
    NotFullyQualified,
    /// An attempt to route through us to somewhere else: `554 5.7.1 Relay access denied`
    /// for recipients (senders get `501 5.1.7`).
    Routing,
}

impl AddressError {
    /// The address as the client gave it.
    pub fn input(&self) -> &str {
        match self {
            AddressError::Empty(input)
            | AddressError::UnbalancedBrackets(input)
            | AddressError::ControlOrSpace(input)
            | AddressError::TooLong(input)
            | AddressError::SourceRoute(input)
            | AddressError::PercentHack(input)
            | AddressError::BangPath(input)
            | AddressError::QuotedRouting(input)
            | AddressError::InvalidLocalPart(input, _)
            | AddressError::LocalPartTooLong(input)
            | AddressError::MultipleAt(input)
            | AddressError::IpLiteral(input)
            | AddressError::TrailingDot(input)
            | AddressError::NotFqdn(input)
            | AddressError::InvalidDomain(input, _) => input,
        }
    }

    /// A short phrase for reply texts, without the address.
    pub fn reason(&self) -> &'static str {
        match self {
            AddressError::Empty(_) => "empty address",
            AddressError::UnbalancedBrackets(_) => "unbalanced angle brackets",
            AddressError::ControlOrSpace(_) => "control character or space outside quotes",
            AddressError::TooLong(_) => "address longer than 254 octets",
            AddressError::SourceRoute(_) => "source route",
            AddressError::PercentHack(_) => "% in local part",
            AddressError::BangPath(_) => "! in local part",
            AddressError::QuotedRouting(_) => "@, % or ! in quoted local part",
            AddressError::InvalidLocalPart(_, reason) => reason,
            AddressError::LocalPartTooLong(_) => "local part longer than 64 octets",
            AddressError::MultipleAt(_) => "more than one @",
            AddressError::IpLiteral(_) => "IP address instead of domain",
            AddressError::TrailingDot(_) => "trailing dot in domain",
            AddressError::NotFqdn(_) => "need fully-qualified address",
            AddressError::InvalidDomain(_, reason) => reason,
        }
    }

    /// The one classification of address errors. Multiple `@` counts as routing, as in
    /// Postfix: `a@victim@us` means `"a@victim"@us` to any MTA that accepts it. It is
    /// also the form the quoted-`@` trick reaches us in: smtp-proto removes the quotes
    /// and hands the session `a@victim@us`.
    pub fn fault(&self) -> AddressFault {
        match self {
            AddressError::SourceRoute(_)
            | AddressError::PercentHack(_)
            | AddressError::BangPath(_)
            | AddressError::QuotedRouting(_)
            | AddressError::MultipleAt(_)
            | AddressError::IpLiteral(_)
            | AddressError::TrailingDot(_) => AddressFault::Routing,
            AddressError::NotFqdn(_) => AddressFault::NotFullyQualified,
            AddressError::Empty(_)
            | AddressError::UnbalancedBrackets(_)
            | AddressError::ControlOrSpace(_)
            | AddressError::TooLong(_)
            | AddressError::InvalidLocalPart(..)
            | AddressError::LocalPartTooLong(_)
            | AddressError::InvalidDomain(..) => AddressFault::Syntax,
        }
    }
}

/// Parses the address of a MAIL FROM or RCPT TO path, with or without `<...>`.
///
/// The null path (`""`, `<>`) is [`AddressError::Empty`]; `check_sender` accepts it
/// before calling this. A bare `postmaster` (RFC 5321 §4.5.1) is `NotFqdn`: a backup MX
/// has no local postmaster to deliver it to.
pub fn parse_path(raw: &str) -> Result<Mailbox, AddressError> {
    let input = || raw.to_owned();
    let addr = unbracketed_strict(raw).ok_or_else(|| AddressError::UnbalancedBrackets(input()))?;
    if addr.is_empty() {
        return Err(AddressError::Empty(input()));
    }
    // Control characters are refused even inside quotes: RFC 5321 qtextSMTP excludes
    // them, and a CR or LF echoed into a reply or a log line would forge the next one.
    if addr.chars().any(char::is_control) {
        return Err(AddressError::ControlOrSpace(input()));
    }
    if addr.len() > MAX_ADDRESS {
        return Err(AddressError::TooLong(input()));
    }
    if addr.starts_with('@') {
        return Err(if addr.contains(':') {
            AddressError::SourceRoute(input())
        } else {
            AddressError::InvalidLocalPart(input(), "empty local part")
        });
    }
    let local = if addr.starts_with('"') {
        quoted_local(addr, raw)?
    } else {
        dot_local(addr, raw)?
    };
    if local.wire_len > MAX_LOCAL_PART {
        return Err(AddressError::LocalPartTooLong(input()));
    }
    let Some(domain) = local.after.strip_prefix('@') else {
        return Err(if local.after.is_empty() {
            AddressError::NotFqdn(input())
        } else {
            AddressError::InvalidLocalPart(input(), "text after the closing quote")
        });
    };
    if domain.contains('@') {
        return Err(AddressError::MultipleAt(input()));
    }
    let domain = check_domain(domain, raw)?;
    Ok(Mailbox {
        local: local.stored,
        domain,
    })
}

/// Checks a domain with the same rules as the domain of an address and lower-cases it.
/// Config validation uses it, so that every relay domain can actually be matched.
pub fn parse_domain(raw: &str) -> Result<String, AddressError> {
    check_domain(raw, raw)
}

/// The address without its angle brackets, or the input unchanged when it has none or
/// only one: for quoting the client's address back in replies.
pub(crate) fn unbracketed(raw: &str) -> &str {
    unbracketed_strict(raw).unwrap_or(raw)
}

/// `None` when only one of `<` and `>` is there.
fn unbracketed_strict(raw: &str) -> Option<&str> {
    match (raw.strip_prefix('<'), raw.ends_with('>')) {
        (Some(inner), true) => inner.strip_suffix('>'),
        (None, false) => Some(raw),
        _ => None,
    }
}

/// The local part, as found by the scanners below.
struct LocalPart<'a> {
    /// What `Mailbox::local` will hold.
    stored: String,
    /// Octets on the wire, quotes and escapes included.
    wire_len: usize,
    /// The rest of the address: `@domain`, empty, or junk after a closing quote.
    after: &'a str,
}

/// An unquoted (dot-string) local part, up to the first `@`.
///
/// Dots are not checked for placement: `john..doe.@docomo.ne.jp` is invalid per
/// RFC 5321 but real (Japanese mobile carriers), Postfix accepts it, and a backup MX must
/// not refuse what the primary accepts. It carries no routing meaning.
fn dot_local<'a>(addr: &'a str, raw: &str) -> Result<LocalPart<'a>, AddressError> {
    let (local, after) = addr.split_at(addr.find('@').unwrap_or(addr.len()));
    if local.contains('%') {
        return Err(AddressError::PercentHack(raw.to_owned()));
    }
    if local.contains('!') {
        return Err(AddressError::BangPath(raw.to_owned()));
    }
    if local.chars().any(char::is_whitespace) {
        return Err(AddressError::ControlOrSpace(raw.to_owned()));
    }
    if !local.chars().all(|c| is_atext(c) || c == '.') {
        return Err(AddressError::InvalidLocalPart(
            raw.to_owned(),
            "character not allowed outside quotes",
        ));
    }
    Ok(LocalPart {
        stored: local.to_owned(),
        wire_len: local.len(),
        after,
    })
}

/// A quoted-string local part (RFC 5321 §4.1.2, RFC 6531 for UTF-8 in it). Quotes are
/// how `"user@victim"@us` smuggles a route past a naive `@` split, so the unescaped
/// content must hold none of `@ % !`.
fn quoted_local<'a>(addr: &'a str, raw: &str) -> Result<LocalPart<'a>, AddressError> {
    let mut content = String::new();
    let mut chars = addr.char_indices().skip(1);
    let mut close = None;
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                close = Some(at);
                break;
            }
            // quoted-pairSMTP is a backslash and one printable ASCII character.
            '\\' => match chars.next() {
                Some((_, escaped)) if escaped.is_ascii() => content.push(escaped),
                _ => {
                    return Err(AddressError::InvalidLocalPart(
                        raw.to_owned(),
                        "bad quoted pair",
                    ));
                }
            },
            c => content.push(c),
        }
    }
    let Some(close) = close else {
        return Err(AddressError::InvalidLocalPart(
            raw.to_owned(),
            "unterminated quotes",
        ));
    };
    if content.contains(['@', '%', '!']) {
        return Err(AddressError::QuotedRouting(raw.to_owned()));
    }
    if content.is_empty() {
        return Err(AddressError::InvalidLocalPart(
            raw.to_owned(),
            "empty local part",
        ));
    }
    let wire = &addr[..=close];
    let needs_quotes = !content.chars().all(|c| is_atext(c) || c == '.');
    let stored = if needs_quotes {
        wire.to_owned()
    } else {
        content
    };
    Ok(LocalPart {
        stored,
        wire_len: wire.len(),
        after: &addr[close + 1..],
    })
}

/// RFC 5321 atext, plus UTF-8 for SMTPUTF8 (RFC 6531 §3.3). `%` and `!` are atext but
/// are refused before this is asked.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
}

/// The domain of an address: routing forms first (IP literal, trailing dot), then
/// host-name syntax, then the FQDN requirement.
fn check_domain(domain: &str, raw: &str) -> Result<String, AddressError> {
    let input = || raw.to_owned();
    // A backup MX has no mailboxes of its own, so `user@[our address]` has nowhere to
    // go, and `user@[anyone else]` is relaying to a host we never agreed to serve.
    if domain.starts_with('[') || domain.parse::<Ipv4Addr>().is_ok() {
        return Err(AddressError::IpLiteral(input()));
    }
    // `example.org.` is the same domain in absolute form. Refusing it (rather than
    // trimming it) keeps one spelling per domain, so the relay check and the delivery
    // router can never disagree about which domain an address is in.
    if domain.ends_with('.') {
        return Err(AddressError::TrailingDot(input()));
    }
    match domain::check_name(
        domain,
        NameRules {
            allow_underscore: false,
        },
    ) {
        Ok(()) => {}
        Err(NameFault::Space) => return Err(AddressError::ControlOrSpace(input())),
        Err(fault) => return Err(AddressError::InvalidDomain(input(), fault.reason())),
    }
    if !domain.contains('.') {
        return Err(AddressError::NotFqdn(input()));
    }
    Ok(domain.to_lowercase())
}

#[cfg(test)]
mod tests;
