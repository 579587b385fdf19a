//! What the spam checks are told by the node's config (`[spam]` and each relay
//! domain's `checks` list). Plain values, already validated; the node builds them from
//! TOML in `mxfleet-node`'s `config/spam.rs`, and a SIGHUP reload replaces them whole.
//!
//! Layout: [`SpamConfig`] holds one struct per mechanism ([`DnsblConfig`],
//! [`GreylistConfig`], [`VerifyConfig`], [`RateLimitConfig`], [`HygieneConfig`],
//! [`SpfConfig`]) and the per-domain [`CheckSet`]s, named by [`Check`].

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::checks::dnsbl::DnsblSite;
use crate::policy::IpNetwork;

/// A check that a relay domain can switch on. Connection-level limits (rates,
/// pregreet) apply to every session and are not in this list.
///
/// The declaration order is the order in which RCPT TO runs a domain's checks (a
/// `CheckSet` iterates in it): cheapest and most certain first, greylisting last, so
/// that mail another check refuses never creates a greylisting triplet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// Accept only while the fleet sees the primary down; otherwise `451 4.7.1`.
    PrimaryAware,
    /// Client IP against the DNSBL sites (`reject_rbl_client`, postscreen's score).
    Dnsbl,
    /// Sender domain against the RHSBL sites (`reject_rhsbl_sender`).
    RhsblSender,
    /// The client's reverse DNS must resolve back to it (`reject_unknown_client_hostname`).
    UnknownClientHostname,
    /// The sender domain must have an MX or an address record
    /// (`reject_unknown_sender_domain`).
    UnknownSenderDomain,
    /// Evaluate SPF and record it in a `Received-SPF:` header at delivery; refuse a
    /// `fail` only when [`SpfConfig::reject_fail`] is set.
    Spf,
    /// Recipients checked against the primary, cached fleet-wide
    /// (`reject_unverified_recipient`). Only for domains without a recipient list.
    VerifyRecipients,
    /// Fleet-wide greylisting of (client network, sender, recipient).
    Greylisting,
}

impl Check {
    pub const ALL: [Check; 8] = [
        Check::PrimaryAware,
        Check::Dnsbl,
        Check::RhsblSender,
        Check::UnknownClientHostname,
        Check::UnknownSenderDomain,
        Check::Spf,
        Check::VerifyRecipients,
        Check::Greylisting,
    ];

    /// The name in config files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Dnsbl => "dnsbl",
            Check::RhsblSender => "rhsbl_sender",
            Check::Greylisting => "greylisting",
            Check::VerifyRecipients => "verify_recipients",
            Check::PrimaryAware => "primary_aware",
            Check::UnknownSenderDomain => "unknown_sender_domain",
            Check::UnknownClientHostname => "unknown_client_hostname",
            Check::Spf => "spf",
        }
    }

    /// The check named `name` in config.
    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// The checks one relay domain applies.
pub type CheckSet = BTreeSet<Check>;

/// The whole spam-defence configuration of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpamConfig {
    /// Checks for each relay domain (lower-case). A domain not listed here gets none.
    pub domain_checks: HashMap<String, CheckSet>,
    /// How long one DNS query of the checks may take. A timeout never rejects mail.
    pub dns_timeout: Duration,
    pub dnsbl: DnsblConfig,
    pub greylisting: GreylistConfig,
    pub verify: VerifyConfig,
    pub rate_limits: RateLimitConfig,
    pub hygiene: HygieneConfig,
    pub spf: SpfConfig,
}

impl Default for SpamConfig {
    /// No checks for any domain; the mechanisms at their Postfix-like defaults.
    fn default() -> Self {
        SpamConfig {
            domain_checks: HashMap::new(),
            dns_timeout: Duration::from_secs(5),
            dnsbl: DnsblConfig::default(),
            greylisting: GreylistConfig::default(),
            verify: VerifyConfig::default(),
            rate_limits: RateLimitConfig::default(),
            hygiene: HygieneConfig::default(),
            spf: SpfConfig::default(),
        }
    }
}

impl SpamConfig {
    /// The checks `domain` (lower-case) applies.
    pub fn checks_for(&self, domain: &str) -> Option<&CheckSet> {
        self.domain_checks.get(domain)
    }

    /// Whether any relay domain applies `check`.
    pub fn any_domain_uses(&self, check: Check) -> bool {
        self.domain_checks.values().any(|set| set.contains(&check))
    }
}

/// `[spam.dnsbl]`: postscreen's weighted DNSBL, and `reject_rhsbl_sender`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsblConfig {
    /// `postscreen_dnsbl_sites`: `zone[=filter][*weight]` each.
    pub sites: Vec<DnsblSite>,
    /// `postscreen_dnsbl_threshold`: the summed weight that rejects (default 1).
    pub threshold: i32,
    /// `reject_rhsbl_sender` zones, same syntax; any listing rejects.
    pub rhsbl_sender_sites: Vec<DnsblSite>,
    /// How long a client's result is remembered (`postscreen_dnsbl_ttl`, 1h).
    pub cache_ttl: Duration,
    /// Most cached results kept (oldest dropped first).
    pub cache_entries: usize,
}

impl Default for DnsblConfig {
    fn default() -> Self {
        DnsblConfig {
            sites: Vec::new(),
            threshold: 1,
            rhsbl_sender_sites: Vec::new(),
            cache_ttl: Duration::from_secs(3600),
            cache_entries: 100_000,
        }
    }
}

/// `[spam.greylisting]`: postgrey's settings, kept fleet-wide through Raft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GreylistConfig {
    /// How long a new triplet is refused (postgrey `--delay`, 5 min).
    pub delay: Duration,
    /// How long a first-seen triplet waits for its retry before it is forgotten
    /// (postgrey `--retry-window`, 2 days).
    pub retry_window: Duration,
    /// How long a passed triplet, or an allowlisted client, is remembered after it was
    /// last seen (postgrey `--max-age`, 35 days).
    pub expiry: Duration,
    /// Clients (by /24 or /64) are allowlisted after this many passed triplets
    /// (postgrey `--auto-whitelist-clients`, 5); 0 turns it off.
    pub auto_allowlist_after: u32,
    /// Never greylisted. The addresses of every static next hop (the primaries) are
    /// added by the node.
    pub allowlist_networks: Vec<IpNetwork>,
}

impl Default for GreylistConfig {
    fn default() -> Self {
        GreylistConfig {
            delay: Duration::from_secs(300),
            retry_window: Duration::from_secs(2 * 86_400),
            expiry: Duration::from_secs(35 * 86_400),
            auto_allowlist_after: 5,
            allowlist_networks: Vec::new(),
        }
    }
}

/// What to answer for a recipient the cache does not know while the primary is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownRecipientAction {
    /// Accept it (the primary decides later; a bad one bounces then).
    Accept,
    /// `450 4.1.1`: the sender retries, perhaps once the primary is back.
    Defer,
}

/// `[spam.recipient_verification]`: Postfix's `address_verify_*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyConfig {
    /// `address_verify_positive_expire_time` (31 days).
    pub positive_expiry: Duration,
    /// `address_verify_negative_expire_time` (3 days).
    pub negative_expiry: Duration,
    pub unknown_action: UnknownRecipientAction,
    /// The whole probe: connect, EHLO, MAIL, RCPT.
    pub probe_timeout: Duration,
    /// `address_verify_sender`: empty for the null sender.
    pub probe_sender: String,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            positive_expiry: Duration::from_secs(31 * 86_400),
            negative_expiry: Duration::from_secs(3 * 86_400),
            unknown_action: UnknownRecipientAction::Accept,
            probe_timeout: Duration::from_secs(10),
            probe_sender: String::new(),
        }
    }
}

/// `[spam.rate_limits]`: Postfix's anvil limits, counted on each node (not fleet-wide).
/// A limit of 0 is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `anvil_rate_time_unit` (60 s).
    pub window: Duration,
    /// `smtpd_client_connection_rate_limit`, per client IP.
    pub client_connection_rate_limit: u32,
    /// `smtpd_client_message_rate_limit`.
    pub client_message_rate_limit: u32,
    /// `smtpd_client_recipient_rate_limit`.
    pub client_recipient_rate_limit: u32,
    /// The same three for a client's network (/24 for IPv4, /64 for IPv6).
    pub network_connection_rate_limit: u32,
    pub network_message_rate_limit: u32,
    pub network_recipient_rate_limit: u32,
    /// `smtpd_client_event_limit_exceptions`.
    pub exceptions: Vec<IpNetwork>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            window: Duration::from_secs(60),
            client_connection_rate_limit: 0,
            client_message_rate_limit: 0,
            client_recipient_rate_limit: 0,
            network_connection_rate_limit: 0,
            network_message_rate_limit: 0,
            network_recipient_rate_limit: 0,
            exceptions: Vec::new(),
        }
    }
}

/// `[spam.hygiene]`: reply codes of the DNS-based sender and client checks, and the
/// pregreet test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HygieneConfig {
    /// `unknown_address_reject_code` (450): a sender domain with no MX and no address.
    pub unknown_address_reject_code: u16,
    /// `unknown_client_reject_code` (450): a client whose reverse DNS does not match.
    pub unknown_client_reject_code: u16,
    /// postscreen's `postscreen_greet_wait`: the banner's first line is sent, and a
    /// client that talks before the rest is refused. Zero turns the test off.
    pub greet_wait: Duration,
}

impl Default for HygieneConfig {
    fn default() -> Self {
        HygieneConfig {
            unknown_address_reject_code: 450,
            unknown_client_reject_code: 450,
            greet_wait: Duration::ZERO,
        }
    }
}

/// `[spam.spf]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpfConfig {
    /// Refuse a sender whose SPF result is `fail` (`550 5.7.23`). Off by default: mail
    /// forwarded to the backup MX is exactly where SPF misleads.
    pub reject_fail: bool,
}
