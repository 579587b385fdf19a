//! The fleet-wide state of the spam checks: greylisting triplets, auto-allowlisted
//! client networks, and the recipient-verification cache. Replicated through Raft like
//! the queue, so a sender is judged the same whichever node it reaches.
//!
//! Nodes do not propose one entry per SMTP event: they send [`SpamFact`]s, batched, in
//! `Command::SpamFacts`. Every record carries its own `expires_at`, stamped by the node
//! that saw the event, and `Command::ExpireSpamState { now }` drops what has run out.
//! Keys are SHA-256 digests so that a record's key has a fixed size on disk whatever
//! the addresses in it.
//!
//! Main types: [`SpamState`] (the three tables), [`SpamFact`], [`GreylistKey`],
//! [`GreylistRecord`], [`AllowlistRecord`], [`RecipientVerdict`], [`SpamKey`] (what an
//! apply changed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{NodeId, UnixMillis};

/// A fixed-size key of one of the spam tables.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SpamDigest(pub [u8; 32]);

impl std::fmt::Debug for SpamDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in &self.0[..6] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

fn digest(parts: &[&str]) -> SpamDigest {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        // A separator that cannot occur in an address or a network name.
        hasher.update([0u8]);
    }
    SpamDigest(hasher.finalize().into())
}

/// A greylisting triplet: the client's network (/24 or /64, as text), the sender and
/// the recipient, all lower-cased.
pub type GreylistKey = SpamDigest;

/// The key of the triplet `(network, sender, recipient)`.
pub fn greylist_key(network: &str, sender: &str, recipient: &str) -> GreylistKey {
    digest(&[
        "greylist",
        &network.to_ascii_lowercase(),
        &sender.to_lowercase(),
        &recipient.to_lowercase(),
    ])
}

/// The key of an auto-allowlisted client network.
pub fn allowlist_key(network: &str) -> SpamDigest {
    digest(&["allowlist", &network.to_ascii_lowercase()])
}

/// The key of a verified recipient address.
pub fn verification_key(address: &str) -> SpamDigest {
    digest(&["verify", &address.to_lowercase()])
}

/// One greylisting triplet as the fleet knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreylistRecord {
    /// The first attempt: the triplet passes once `first_seen + delay` has gone by.
    pub first_seen: UnixMillis,
    /// When a retry first passed; `None` while the triplet still waits.
    pub passed_at: Option<UnixMillis>,
    /// When the record is forgotten: `first_seen + retry_window` while waiting, the
    /// last pass + expiry once passed.
    pub expires_at: UnixMillis,
}

/// A client network that passed enough triplets to skip greylisting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowlistRecord {
    /// The network, as text (`192.0.2.0/24`), for operators.
    pub network: String,
    /// Triplets from this network that passed.
    pub passes: u32,
    pub last_pass: UnixMillis,
    pub expires_at: UnixMillis,
}

/// What the primary said about a recipient when it was probed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientVerdict {
    /// The address, lower-cased.
    pub address: String,
    /// `true` when the primary accepted `RCPT TO`, `false` when it refused it for good.
    pub valid: bool,
    /// The primary's reply, for the `550` we give and for operators.
    pub reply: String,
    pub checked_at: UnixMillis,
    pub checked_by: NodeId,
    pub expires_at: UnixMillis,
}

/// An event a node saw, sent to the fleet in a `Command::SpamFacts` batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpamFact {
    /// A new triplet was refused. Ignored if the fleet already has the triplet (the
    /// first sighting anywhere in the fleet counts).
    GreylistSeen {
        key: GreylistKey,
        at: UnixMillis,
        expires_at: UnixMillis,
    },
    /// A retry of a known triplet passed (or a passed one came back): the record is
    /// kept until `expires_at`. The first pass of a triplet counts for its network's
    /// auto-allowlisting.
    GreylistPassed {
        key: GreylistKey,
        network: String,
        at: UnixMillis,
        expires_at: UnixMillis,
    },
    /// A probe of the primary answered for a recipient.
    RecipientVerified { verdict: RecipientVerdict },
}

/// A key of [`SpamState`] that an apply changed, so that storage writes just that one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpamKey {
    Greylist(GreylistKey),
    Allowlist(SpamDigest),
    Verification(SpamDigest),
}

/// The three replicated tables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpamState {
    pub greylist: BTreeMap<GreylistKey, GreylistRecord>,
    pub allowlist: BTreeMap<SpamDigest, AllowlistRecord>,
    pub verified: BTreeMap<SpamDigest, RecipientVerdict>,
}

impl SpamState {
    /// Applies a batch of facts; returns the keys it changed.
    pub fn apply_facts(&mut self, facts: &[SpamFact]) -> Vec<SpamKey> {
        let mut changed = Vec::new();
        for fact in facts {
            match fact {
                SpamFact::GreylistSeen {
                    key,
                    at,
                    expires_at,
                } => {
                    if !self.greylist.contains_key(key) {
                        self.greylist.insert(
                            *key,
                            GreylistRecord {
                                first_seen: *at,
                                passed_at: None,
                                expires_at: *expires_at,
                            },
                        );
                        changed.push(SpamKey::Greylist(*key));
                    }
                }
                SpamFact::GreylistPassed {
                    key,
                    network,
                    at,
                    expires_at,
                } => {
                    let record = self.greylist.entry(*key).or_insert(GreylistRecord {
                        first_seen: *at,
                        passed_at: None,
                        expires_at: *expires_at,
                    });
                    let first_pass = record.passed_at.is_none();
                    record.passed_at.get_or_insert(*at);
                    record.expires_at = record.expires_at.max(*expires_at);
                    changed.push(SpamKey::Greylist(*key));
                    if first_pass {
                        let network_key = allowlist_key(network);
                        let entry =
                            self.allowlist
                                .entry(network_key)
                                .or_insert_with(|| AllowlistRecord {
                                    network: network.to_ascii_lowercase(),
                                    passes: 0,
                                    last_pass: *at,
                                    expires_at: *expires_at,
                                });
                        entry.passes = entry.passes.saturating_add(1);
                        entry.last_pass = entry.last_pass.max(*at);
                        entry.expires_at = entry.expires_at.max(*expires_at);
                        changed.push(SpamKey::Allowlist(network_key));
                    }
                }
                SpamFact::RecipientVerified { verdict } => {
                    let key = verification_key(&verdict.address);
                    // An older probe arriving late never overwrites a newer one.
                    let newer = self
                        .verified
                        .get(&key)
                        .is_none_or(|known| known.checked_at <= verdict.checked_at);
                    if newer {
                        self.verified.insert(key, verdict.clone());
                        changed.push(SpamKey::Verification(key));
                    }
                }
            }
        }
        changed
    }

    /// Drops every record whose `expires_at` is at or before `now`.
    pub fn expire(&mut self, now: UnixMillis) -> Vec<SpamKey> {
        let mut changed = Vec::new();
        self.greylist.retain(|key, record| {
            let keep = record.expires_at > now;
            if !keep {
                changed.push(SpamKey::Greylist(*key));
            }
            keep
        });
        self.allowlist.retain(|key, record| {
            let keep = record.expires_at > now;
            if !keep {
                changed.push(SpamKey::Allowlist(*key));
            }
            keep
        });
        self.verified.retain(|key, record| {
            let keep = record.expires_at > now;
            if !keep {
                changed.push(SpamKey::Verification(*key));
            }
            keep
        });
        changed
    }

    /// The verdict cached for `address`, if it has not expired at `now`.
    pub fn verdict(&self, address: &str, now: UnixMillis) -> Option<&RecipientVerdict> {
        self.verified
            .get(&verification_key(address))
            .filter(|v| v.expires_at > now)
    }

    /// The triplet's record, if it has not expired at `now`.
    pub fn triplet(&self, key: &GreylistKey, now: UnixMillis) -> Option<&GreylistRecord> {
        self.greylist.get(key).filter(|r| r.expires_at > now)
    }

    /// How many triplets `network` has passed, counting only an unexpired record.
    pub fn network_passes(&self, network: &str, now: UnixMillis) -> u32 {
        self.allowlist
            .get(&allowlist_key(network))
            .filter(|r| r.expires_at > now)
            .map_or(0, |r| r.passes)
    }
}

#[cfg(test)]
mod tests;
