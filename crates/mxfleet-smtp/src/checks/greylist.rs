//! Greylisting, fleet-wide: the first attempt of a triplet (client network, sender,
//! recipient) is refused with `451 4.7.1`; a retry after `delay` passes at any node,
//! because the triplet was recorded through Raft. Real MTAs retry; most spamware does
//! not.
//!
//! Never greylisted: clients in `allowlist_networks` or at a primary's address (the
//! node adds those), and networks that passed `auto_allowlist_after` triplets
//! (postgrey's auto-whitelisting). A triplet that passed is remembered for `expiry`
//! after it was last seen; its record is refreshed at most once per tenth of `expiry`,
//! so a steady sender costs a Raft write every few days, not one per message.

use std::net::IpAddr;
use std::time::Duration;

use mxfleet_core::SpamFact;
use mxfleet_core::spam::greylist_key;

use super::config::GreylistConfig;
use super::fleet::FleetSpamState;
use super::rate::network_of;
use crate::policy::IpNetwork;

/// What greylisting decided for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GreylistOutcome {
    /// The client is in an allowlisted network (configured, or a primary).
    Allowlisted,
    /// The client's network passed enough triplets.
    AutoAllowlisted,
    /// The triplet passed before.
    Known,
    /// A retry after the delay: this is the pass.
    Passed,
    /// First sighting: refused, and recorded fleet-wide.
    New,
    /// Seen, but the delay has not gone by: refused.
    TooEarly { retry_in: Duration },
}

impl GreylistOutcome {
    /// True when the recipient is refused for now.
    pub fn defers(&self) -> bool {
        matches!(
            self,
            GreylistOutcome::New | GreylistOutcome::TooEarly { .. }
        )
    }

    /// The stable word for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            GreylistOutcome::Allowlisted => "allowlisted",
            GreylistOutcome::AutoAllowlisted => "auto_allowlisted",
            GreylistOutcome::Known => "known",
            GreylistOutcome::Passed => "passed",
            GreylistOutcome::New => "new",
            GreylistOutcome::TooEarly { .. } => "too_early",
        }
    }

    /// How long the client should wait before retrying, for the reply text.
    pub fn retry_in(&self, config: &GreylistConfig) -> Duration {
        match self {
            GreylistOutcome::TooEarly { retry_in } => *retry_in,
            _ => config.delay,
        }
    }
}

/// Decides the triplet, and tells the fleet what happened (a new triplet, a pass, a
/// refresh). `allowlist` holds the configured networks and the primaries' addresses.
pub fn decide(
    config: &GreylistConfig,
    allowlist: &[IpNetwork],
    fleet: &dyn FleetSpamState,
    client: IpAddr,
    sender: &str,
    recipient: &str,
) -> GreylistOutcome {
    if allowlist.iter().any(|net| net.contains(client)) {
        return GreylistOutcome::Allowlisted;
    }
    let network = network_of(client);
    if config.auto_allowlist_after > 0
        && fleet.network_passes(&network) >= config.auto_allowlist_after
    {
        return GreylistOutcome::AutoAllowlisted;
    }
    let key = greylist_key(&network, sender, recipient);
    let now = fleet.now();
    let expiry = millis(config.expiry);
    let passed = |fleet: &dyn FleetSpamState| {
        fleet.record(SpamFact::GreylistPassed {
            key,
            network: network.clone(),
            at: now,
            expires_at: now.plus_millis(expiry),
        })
    };
    let Some(record) = fleet.triplet(&key) else {
        fleet.record(SpamFact::GreylistSeen {
            key,
            at: now,
            expires_at: now.plus_millis(millis(config.retry_window)),
        });
        return GreylistOutcome::New;
    };
    if record.passed_at.is_some() {
        // Refresh once a tenth of the expiry has gone by since the last refresh.
        if record.expires_at.0 < now.plus_millis(expiry - expiry / 10).0 {
            passed(fleet);
        }
        return GreylistOutcome::Known;
    }
    let due = record.first_seen.plus_millis(millis(config.delay));
    if now >= due {
        passed(fleet);
        GreylistOutcome::Passed
    } else {
        GreylistOutcome::TooEarly {
            retry_in: Duration::from_millis(due.0 - now.0),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
