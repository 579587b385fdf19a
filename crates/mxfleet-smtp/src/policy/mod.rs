//! Relay policy: which mail a backup MX accepts, decided at MAIL, RCPT and HELO time.
//!
//! A backup MX accepts mail for its relay domains from anyone on the Internet and
//! forwards it to the primary, so the one thing it must never be is an open relay.
//! Every address goes through one parser, [`parse_path`], before any domain lookup, and
//! the parser refuses each way of hiding a second destination in an address:
//!
//! - **percent hack** `user%victim.example@our.domain`: sendmail-lineage MTAs (and
//!   Postfix's `allow_percent_hack`) rewrite it to `user@victim.example`. We would accept
//!   it for our domain, and the primary, or a catch-all, would send it on to the victim.
//! - **bang path** `victim.example!user@our.domain`: the UUCP spelling of the same.
//! - **source route** `@our.domain:user@victim.example`: RFC 5321 Appendix C lets a
//!   receiver relay to the last hop; the last hop is someone else.
//! - **quoted or repeated `@`** `"user@victim.example"@our.domain`, `a@victim@us`: once
//!   an MTA strips the quotes, the address has a new domain.
//! - **IP literals** `user@[192.0.2.1]`: a host, not a domain; we have no mailboxes of
//!   our own, so the only thing to do with it is relay.
//! - **trailing dot** `user@our.domain.`: one domain with two spellings; a relay check
//!   and a router that normalise differently would disagree.
//!
//! These get `554 5.7.1 Relay access denied`. Unknown users in a listed domain get
//! `550 5.1.1` at RCPT time: accepting them and bouncing later would mail our bounces to
//! forged senders (backscatter). Senders are checked too ([`RelayPolicy::check_sender`]),
//! because they are where our bounces go. Reply texts follow Postfix's wording.
//!
//! The session passes the path as smtp-proto parsed it, which has already removed
//! source routes (`@a:user@b` arrives as `user@b`, so the final destination is what we
//! check) and the quotes of a quoted local part (`"a@b"@us` arrives as `a@b@us`). The
//! parser still refuses both forms itself, for other callers and for recipient files.
//!
//! Everything here is sans-IO and pure except [`load_recipient_file`]; logging the
//! refusals is the session's job, which has the client and queue context.
//!
//! Layout:
//! - `address.rs`: [`Mailbox`], [`parse_path`], [`AddressError`] and its one
//!   classification, [`AddressFault`].
//! - `domain.rs`: host-name and address-literal syntax shared with HELO.
//! - `recipients.rs`: [`RecipientRule`] and the recipient list format.
//! - `relay.rs`: [`RelayPolicy`] and the MAIL/RCPT replies.
//! - `helo.rs`: [`check_helo`].

mod address;
mod domain;
mod helo;
mod network;
mod recipients;
mod relay;

pub use address::{
    AddressError, AddressFault, MAX_ADDRESS, MAX_LOCAL_PART, Mailbox, parse_domain, parse_path,
};
pub use helo::check_helo;
pub use network::IpNetwork;
pub use recipients::{
    RecipientListError, RecipientRule, load_recipient_file, parse_recipient_list,
};
pub use relay::RelayPolicy;

/// How text from the client is quoted back in a reply: control characters become `?`
/// (a CR or LF would end our reply line early and let the client write the rest), and
/// text past 256 octets is cut with `...`, keeping the reply line well inside the
/// 512 octets of RFC 5321 §4.5.3.1.5.
pub(crate) fn echo(text: &str) -> String {
    const MAX_ECHO: usize = 256;
    let mut out = String::with_capacity(text.len().min(MAX_ECHO + 3));
    for c in text.chars() {
        if out.len() + c.len_utf8() > MAX_ECHO {
            out.push_str("...");
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}
