//! Postfix's `reject_unknown_sender_domain` and `reject_unknown_client_hostname`: the
//! sender's domain must be able to receive mail (an MX, or an address), and the
//! client's reverse DNS must resolve back to it (forward-confirmed reverse DNS).
//!
//! A DNS failure never counts as "unknown": it defers with `450`, as Postfix does,
//! so that a lost packet costs a retry, not a bounce.
//!
//! Layout: [`sender_domain_status`] → [`SenderDomainStatus`] →
//! [`sender_domain_reply`]; [`client_hostname_status`] → [`ClientHostnameStatus`] →
//! [`client_hostname_reply`].

use std::net::{IpAddr, Ipv4Addr};

use futures::future::join_all;

use crate::checks::dns::{CheckResolver, DnsLookupError, canonical_ip};
use crate::policy::echo;
use crate::reply::Reply;

/// Reverse names followed at most, as Postfix does (`smtpd_peername_lookup`).
const MAX_PTR_NAMES: usize = 10;

/// Whether a sender domain can receive mail, from the DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderDomainStatus {
    /// An MX record, or (without MX) an A or AAAA record.
    Exists,
    /// NXDOMAIN, or neither MX nor address records.
    NotFound,
    /// A null MX (`MX 0 .`, RFC 7505): the domain says it accepts no mail.
    NullMx,
    /// No answer for now (timeout, SERVFAIL); the cause.
    Temporary(String),
}

impl SenderDomainStatus {
    /// The label in logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            SenderDomainStatus::Exists => "exists",
            SenderDomainStatus::NotFound => "not_found",
            SenderDomainStatus::NullMx => "null_mx",
            SenderDomainStatus::Temporary(_) => "temporary",
        }
    }
}

/// Looks `domain` up: its MX records, or when it has none, its A and AAAA records. An
/// address literal (`[192.0.2.1]`) exists by definition.
pub async fn sender_domain_status(resolver: &CheckResolver, domain: &str) -> SenderDomainStatus {
    if domain.starts_with('[') {
        return SenderDomainStatus::Exists;
    }
    match resolver.mx(domain).await {
        // RFC 7505 §3: a null MX is the domain's only MX; next to real ones it is a
        // mistake, and the real ones still take mail.
        Ok(records) if records.iter().all(|mx| mx.is_null()) => SenderDomainStatus::NullMx,
        Ok(_) => SenderDomainStatus::Exists,
        Err(DnsLookupError::NotFound {
            no_such_name: true, ..
        }) => SenderDomainStatus::NotFound,
        Err(error @ DnsLookupError::Temporary { .. }) => {
            SenderDomainStatus::Temporary(error.to_string())
        }
        Err(DnsLookupError::NotFound { .. }) => match resolver.addresses(domain).await {
            Ok(_) => SenderDomainStatus::Exists,
            Err(error @ DnsLookupError::Temporary { .. }) => {
                SenderDomainStatus::Temporary(error.to_string())
            }
            Err(DnsLookupError::NotFound { .. }) => SenderDomainStatus::NotFound,
        },
    }
}

/// The refusal for `status`, if it refuses. `address` is the sender (without `<>`),
/// `domain` its domain, `code` is `unknown_address_reject_code` (450 or 550):
/// - not found: `<code> 4.1.8|5.1.8 <address>: Sender address rejected: Domain not found`
/// - DNS failure: `450 4.1.8 <address>: Sender address rejected: Domain not found`
/// - null MX: `550 5.7.27 <address>: Sender address rejected: Domain <domain> does not
///   accept mail (nullMX)`
pub fn sender_domain_reply(
    status: &SenderDomainStatus,
    address: &str,
    domain: &str,
    code: u16,
) -> Option<Reply> {
    let address = echo(address);
    let not_found = |code: u16| {
        Reply::new(
            code,
            if code >= 500 { "5.1.8" } else { "4.1.8" },
            format!("<{address}>: Sender address rejected: Domain not found"),
        )
    };
    match status {
        SenderDomainStatus::Exists => None,
        SenderDomainStatus::NotFound => Some(not_found(code)),
        SenderDomainStatus::Temporary(_) => Some(not_found(450)),
        SenderDomainStatus::NullMx => Some(Reply::new(
            550,
            "5.7.27",
            format!(
                "<{address}>: Sender address rejected: Domain {} does not accept mail (nullMX)",
                echo(domain)
            ),
        )),
    }
}

/// Whether the client's reverse DNS leads back to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientHostnameStatus {
    /// This PTR name has the client's address among its own.
    Verified(String),
    /// The address has no PTR record (or no such name).
    NoPtr,
    /// PTR names exist, but none resolves back to the client; the names.
    Mismatch(Vec<String>),
    /// No answer for now (timeout, SERVFAIL) on the PTR, or on a forward lookup that
    /// could have verified it; the cause.
    Temporary(String),
}

impl ClientHostnameStatus {
    /// The label in logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            ClientHostnameStatus::Verified(_) => "verified",
            ClientHostnameStatus::NoPtr => "no_ptr",
            ClientHostnameStatus::Mismatch(_) => "mismatch",
            ClientHostnameStatus::Temporary(_) => "temporary",
        }
    }
}

/// Forward-confirmed reverse DNS: the PTR names of `ip` (at most ten), then each
/// name's addresses of the client's family, all at once. Verified when any of them is
/// `ip`. A PTR name that is itself a dotted quad is skipped: it proves nothing.
pub async fn client_hostname_status(resolver: &CheckResolver, ip: IpAddr) -> ClientHostnameStatus {
    let ip = canonical_ip(ip);
    let names = match resolver.ptr(ip).await {
        Ok(names) => names,
        Err(DnsLookupError::NotFound { .. }) => return ClientHostnameStatus::NoPtr,
        Err(error @ DnsLookupError::Temporary { .. }) => {
            return ClientHostnameStatus::Temporary(error.to_string());
        }
    };
    let names: Vec<String> = names
        .into_iter()
        .filter(|name| name.parse::<Ipv4Addr>().is_err())
        .take(MAX_PTR_NAMES)
        .collect();
    if names.is_empty() {
        return ClientHostnameStatus::NoPtr;
    }
    let forward = join_all(names.iter().map(|name| async move {
        match ip {
            IpAddr::V4(_) => resolver
                .ipv4(name)
                .await
                .map(|found| found.into_iter().map(IpAddr::V4).collect::<Vec<_>>()),
            IpAddr::V6(_) => resolver
                .ipv6(name)
                .await
                .map(|found| found.into_iter().map(IpAddr::V6).collect::<Vec<_>>()),
        }
    }))
    .await;
    let mut temporary = None;
    for (name, answer) in names.iter().zip(forward) {
        match answer {
            Ok(addresses) if addresses.contains(&ip) => {
                return ClientHostnameStatus::Verified(name.clone());
            }
            Err(error @ DnsLookupError::Temporary { .. }) => {
                temporary.get_or_insert(error.to_string());
            }
            _ => {}
        }
    }
    match temporary {
        Some(cause) => ClientHostnameStatus::Temporary(cause),
        None => ClientHostnameStatus::Mismatch(names),
    }
}

/// The refusal for `status`, if it refuses; `code` is `unknown_client_reject_code`:
/// `<code> 4.7.25|5.7.25 Client host rejected: cannot find your hostname, [ip]`, and
/// always `450 4.7.25` on a DNS failure.
pub fn client_hostname_reply(
    status: &ClientHostnameStatus,
    ip: IpAddr,
    code: u16,
) -> Option<Reply> {
    let code = match status {
        ClientHostnameStatus::Verified(_) => return None,
        ClientHostnameStatus::NoPtr | ClientHostnameStatus::Mismatch(_) => code,
        ClientHostnameStatus::Temporary(_) => 450,
    };
    Some(Reply::new(
        code,
        if code >= 500 { "5.7.25" } else { "4.7.25" },
        format!(
            "Client host rejected: cannot find your hostname, [{}]",
            canonical_ip(ip)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reply: Option<Reply>) -> String {
        reply.expect("a refusal").to_string()
    }

    #[test]
    fn sender_domain_replies_are_postfix_worded() {
        let (address, domain) = ("a@nowhere.test", "nowhere.test");
        let reply = |status, code| text(sender_domain_reply(&status, address, domain, code));
        assert_eq!(
            reply(SenderDomainStatus::NotFound, 550),
            "550 5.1.8 <a@nowhere.test>: Sender address rejected: Domain not found"
        );
        assert_eq!(
            reply(SenderDomainStatus::NotFound, 450),
            "450 4.1.8 <a@nowhere.test>: Sender address rejected: Domain not found"
        );
        assert_eq!(
            reply(SenderDomainStatus::Temporary("timed out".into()), 550),
            "450 4.1.8 <a@nowhere.test>: Sender address rejected: Domain not found"
        );
        assert_eq!(
            reply(SenderDomainStatus::NullMx, 450),
            "550 5.7.27 <a@nowhere.test>: Sender address rejected: Domain nowhere.test does not accept mail (nullMX)"
        );
        assert!(sender_domain_reply(&SenderDomainStatus::Exists, address, domain, 550).is_none());
    }

    #[test]
    fn echoed_sender_cannot_break_the_reply_line() {
        let status = SenderDomainStatus::NotFound;
        let wire = sender_domain_reply(&status, "a\r\n250 ok@x.test", "x.test", 550)
            .expect("refusal")
            .to_wire();
        assert_eq!(wire.matches("\r\n").count(), 1, "{wire:?}");
    }

    #[test]
    fn client_hostname_replies_are_postfix_worded() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let reply = |status, code| text(client_hostname_reply(&status, ip, code));
        assert_eq!(
            reply(ClientHostnameStatus::NoPtr, 550),
            "550 5.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]"
        );
        assert_eq!(
            reply(ClientHostnameStatus::Mismatch(vec!["x.test".into()]), 450),
            "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]"
        );
        assert_eq!(
            reply(ClientHostnameStatus::Temporary("SERVFAIL".into()), 550),
            "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]"
        );
        let verified = ClientHostnameStatus::Verified("mail.test".into());
        assert!(client_hostname_reply(&verified, ip, 550).is_none());
    }
}
