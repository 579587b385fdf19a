//! Spam defence at SMTP time: the checks a good primary applies, applied the same
//! way on every node of the fleet.
//!
//! Decisions are delayed to RCPT TO, as Postfix's `smtpd_delay_reject` does, so that
//! each relay domain's own check list applies and the reply names the recipient.
//! Connection-level limits (rates, pregreet) apply to every session.
//!
//! Layout:
//! - [`config`]: [`SpamConfig`] and the per-domain [`Check`] lists.
//! - [`fleet`]: the traits the node implements: [`FleetSpamState`] (the replicated
//!   tables) and [`RecipientProber`] (asking the primary).
//! - [`dns`]: the resolver the DNS-based checks share (hickory).
//! - [`dnsbl`]: DNSBL/RHSBL sites, weighted scores and the per-client cache.
//! - [`sender`]: `reject_unknown_sender_domain` and `reject_unknown_client_hostname`.
//! - [`spf`]: SPF through mail-auth, and the `Received-SPF:` header.
//! - [`rate`]: anvil-style rate limits per client IP and per network, per node.

pub mod config;
pub mod dns;
pub mod dnsbl;
pub mod fleet;
pub mod rate;
pub mod sender;
pub mod spf;

pub use config::{Check, CheckSet, SpamConfig};
pub use fleet::{FleetSpamState, ProbeOutcome, RecipientProber};
