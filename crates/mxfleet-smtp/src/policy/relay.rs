//! [`RelayPolicy`]: the relay domains and their recipient rules, and the MAIL FROM and
//! RCPT TO decisions with their replies, worded as Postfix words them so that operators
//! and remote postmasters recognise them.

use std::collections::HashMap;

use crate::reply::Reply;

use super::address::{AddressError, AddressFault, Mailbox, parse_path, unbracketed};
use super::echo;
use super::recipients::RecipientRule;

/// The domains we are backup MX for, each with its recipient rule. Immutable once
/// built; a config reload builds a new one and swaps it in (`config::PolicyHandle`).
#[derive(Clone, Debug, Default)]
pub struct RelayPolicy {
    /// Lower-cased domain to rule. Matching is exact: a subdomain is a relay domain only
    /// if it is listed itself (unlike Postfix's `parent_domain_matches_subdomains`).
    domains: HashMap<String, RecipientRule>,
}

impl RelayPolicy {
    /// Builds the policy. Domains are lower-cased, and listed local parts too. Every
    /// domain comes with its rule; nothing is implied. A domain given twice gets the
    /// union of its rules, so a duplicate can never make us refuse a listed user (config
    /// validation should still report duplicates). Domains should have passed
    /// [`super::parse_domain`]: one that does not can never match an address.
    pub fn new(domains: Vec<(String, RecipientRule)>) -> Self {
        let mut map: HashMap<String, RecipientRule> = HashMap::new();
        for (domain, rule) in domains {
            let rule = rule.normalized();
            let domain = domain.to_lowercase();
            let merged = match map.remove(&domain) {
                Some(existing) => existing.union(rule),
                None => rule,
            };
            map.insert(domain, merged);
        }
        RelayPolicy { domains: map }
    }

    /// Whether we relay for `domain` (any case).
    pub fn is_relay_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(&domain.to_lowercase())
    }

    /// The relay domains, lower-cased, in no particular order.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    /// Decides a RCPT TO. `Ok` only for a well-formed address in a relay domain whose
    /// rule accepts the local part; every refusal is permanent, and happens now rather
    /// than as a bounce later (no backscatter).
    pub fn check_recipient(&self, raw: &str) -> Result<Mailbox, Reply> {
        let mailbox = parse_path(raw).map_err(|e| recipient_rejection(raw, &e))?;
        let Some(rule) = self.domains.get(&mailbox.domain) else {
            return Err(relay_denied(raw));
        };
        if !rule.accepts(&mailbox.local) {
            return Err(Reply::new(
                550,
                "5.1.1",
                format!(
                    "<{}>: Recipient address rejected: User unknown in relay recipient table",
                    echo(unbracketed(raw))
                ),
            ));
        }
        Ok(mailbox)
    }

    /// Decides a MAIL FROM. The null sender (`""` or `<>`) is always accepted: bounces
    /// and other DSNs must be deliverable (RFC 5321 §4.5.5).
    ///
    /// Every routing form refused in recipients is refused in senders too, IP literals
    /// included, as `501 5.1.7`: the sender is where our own bounces go, so a sender
    /// like `victim%third.example@host` or `user@[192.0.2.1]` would let the client aim
    /// our DSNs through a relay chain or at a bare IP, past MX records. Mail from real
    /// MTAs does not use IP-literal senders. The sender's domain need not be ours.
    pub fn check_sender(&self, raw: &str) -> Result<Option<Mailbox>, Reply> {
        if raw.is_empty() || raw == "<>" {
            return Ok(None);
        }
        parse_path(raw)
            .map(Some)
            .map_err(|e| sender_rejection(raw, &e))
    }
}

fn relay_denied(raw: &str) -> Reply {
    Reply::new(
        554,
        "5.7.1",
        format!("<{}>: Relay access denied", echo(unbracketed(raw))),
    )
}

fn recipient_rejection(raw: &str, error: &AddressError) -> Reply {
    let addr = echo(unbracketed(raw));
    match error.fault() {
        AddressFault::Routing => relay_denied(raw),
        AddressFault::NotFullyQualified => Reply::new(
            504,
            "5.5.2",
            format!("<{addr}>: Recipient address rejected: need fully-qualified address"),
        ),
        AddressFault::Syntax => Reply::new(
            501,
            "5.1.3",
            format!(
                "<{addr}>: Recipient address rejected: Bad recipient address syntax ({})",
                error.reason()
            ),
        ),
    }
}

fn sender_rejection(raw: &str, error: &AddressError) -> Reply {
    let addr = echo(unbracketed(raw));
    match error.fault() {
        AddressFault::NotFullyQualified => Reply::new(
            504,
            "5.5.2",
            format!("<{addr}>: Sender address rejected: need fully-qualified address"),
        ),
        AddressFault::Syntax | AddressFault::Routing => Reply::new(
            501,
            "5.1.7",
            format!(
                "<{addr}>: Sender address rejected: Bad sender address syntax ({})",
                error.reason()
            ),
        ),
    }
}

#[cfg(test)]
mod tests;
