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
//! - [`greylist`]: the greylisting decision over the fleet's triplets.
//! - [`verify`]: recipient verification: the fleet's cache, then a probe.
//! - [`spam_checks`]: [`SpamChecks`], everything above built once per node.
//! - [`client`]: [`ClientChecks`] and [`TransactionChecks`], one session's state, and
//!   the RCPT TO decision in order.
//! - [`memory`]: an in-memory fleet and a scripted prober, for tests.

pub mod client;
pub mod config;
pub mod dns;
pub mod dnsbl;
pub mod fleet;
pub mod greylist;
pub mod memory;
pub mod rate;
pub mod sender;
pub mod spam_checks;
pub mod spf;
pub mod verify;

pub use client::{ClientChecks, Refusal, TransactionChecks};
pub use config::{Check, CheckSet, SpamConfig};
pub use fleet::{FleetSpamState, ProbeOutcome, RecipientProber};
pub use spam_checks::{DnsChecks, FleetChecks, SpamChecks, SpamChecksError};
