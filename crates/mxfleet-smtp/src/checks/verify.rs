//! Recipient verification against the primary (Postfix's `reject_unverified_recipient`,
//! Exim's callout), with the answers cached fleet-wide.
//!
//! For a domain with no recipient list, RCPT TO asks the cache first. A known-good
//! address passes and a known-bad one gets `550 5.1.1`, whether the primary is up or
//! not. An address the cache does not know is probed at the primary while the fleet
//! sees it up, and the answer (`2xx` valid, `5xx` invalid) is cached for
//! `positive_expiry` or `negative_expiry`. While the primary is down, or when the probe
//! gets no answer worth keeping, the configured `unknown_action` decides: accept (the
//! primary decides later) or `450 4.1.1` (the sender retries).
//!
//! So the cache is primed while the primary is up and used while it is down, which a
//! single backup host cannot do: here every node primes it for every other.

use mxfleet_core::SpamFact;
use mxfleet_core::spam::RecipientVerdict;

use super::config::{UnknownRecipientAction, VerifyConfig};
use super::fleet::{FleetSpamState, ProbeOutcome, RecipientProber};

/// Where the decision came from, and what it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The cache knew the address as valid.
    CachedValid,
    /// The cache knew the address as invalid; the primary's reply.
    CachedInvalid { reply: String },
    /// A probe just now found it valid.
    ProbedValid,
    /// A probe just now found it invalid.
    ProbedInvalid { reply: String },
    /// Not known and not probed (primary down) or the probe got no answer: the
    /// configured action applies.
    Unknown {
        reason: String,
        action: UnknownRecipientAction,
    },
}

impl VerifyOutcome {
    /// The stable words for logs and metrics: (source, result).
    pub fn labels(&self) -> (&'static str, &'static str) {
        match self {
            VerifyOutcome::CachedValid => ("cache", "valid"),
            VerifyOutcome::CachedInvalid { .. } => ("cache", "invalid"),
            VerifyOutcome::ProbedValid => ("probe", "valid"),
            VerifyOutcome::ProbedInvalid { .. } => ("probe", "invalid"),
            VerifyOutcome::Unknown { .. } => ("none", "unknown"),
        }
    }
}

/// Decides `address` (lower-cased `local@domain`) of relay domain `domain`.
pub async fn decide(
    config: &VerifyConfig,
    fleet: &dyn FleetSpamState,
    prober: &dyn RecipientProber,
    domain: &str,
    address: &str,
) -> VerifyOutcome {
    if let Some(verdict) = fleet.verdict(address) {
        return if verdict.valid {
            VerifyOutcome::CachedValid
        } else {
            VerifyOutcome::CachedInvalid {
                reply: verdict.reply,
            }
        };
    }
    let unknown = |reason: String| VerifyOutcome::Unknown {
        reason,
        action: config.unknown_action,
    };
    if fleet.primary_down(domain) == Some(true) {
        return unknown("the primary MX is down and the address is not in the cache".into());
    }
    let outcome =
        match tokio::time::timeout(config.probe_timeout, prober.probe(domain, address)).await {
            Ok(outcome) => outcome,
            Err(_) => ProbeOutcome::Unknown {
                reason: format!(
                    "no answer from the primary within {:?}",
                    config.probe_timeout
                ),
            },
        };
    let now = fleet.now();
    let cache = |valid: bool, reply: &str, keep: std::time::Duration| {
        fleet.record(SpamFact::RecipientVerified {
            verdict: RecipientVerdict {
                address: address.to_owned(),
                valid,
                reply: reply.to_owned(),
                checked_at: now,
                checked_by: fleet.node_id(),
                expires_at: now.plus_millis(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX)),
            },
        })
    };
    match outcome {
        ProbeOutcome::Valid { reply } => {
            cache(true, &reply, config.positive_expiry);
            VerifyOutcome::ProbedValid
        }
        ProbeOutcome::Invalid { reply } => {
            cache(false, &reply, config.negative_expiry);
            VerifyOutcome::ProbedInvalid { reply }
        }
        ProbeOutcome::Unknown { reason } => unknown(reason),
    }
}

#[cfg(test)]
mod tests;
