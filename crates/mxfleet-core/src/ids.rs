//! Identifiers and plain values shared by every crate: node ids, queue ids, body
//! digests, dedup keys and wall-clock instants carried inside commands.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A fleet member's id, stable for the node's lifetime and unique in the cluster.
pub type NodeId = u64;

/// Milliseconds since the Unix epoch, as stamped into commands by the proposing node.
/// The state machine only ever compares these values; it never reads a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// `self + millis`, saturating.
    pub fn plus_millis(self, millis: u64) -> Self {
        UnixMillis(self.0.saturating_add(millis))
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A queued message's id: the Raft log index of the `Enqueue` entry that created it.
///
/// Every replica derives the same id without coordination, and ids grow with time, so
/// listing the queue in id order lists it in arrival order. Displayed as 12 upper-case
/// hex digits, in the style of Postfix queue ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueId(pub u64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012X}", self.0)
    }
}

impl std::str::FromStr for QueueId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(QueueId)
    }
}

/// SHA-256 of a message body: the name of its blob in every node's blob store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BodyDigest(pub [u8; 32]);

impl BodyDigest {
    /// The digest of `bytes` (for tests and small bodies; large bodies are hashed
    /// while they stream).
    pub fn of(bytes: &[u8]) -> Self {
        BodyDigest(Sha256::digest(bytes).into())
    }

    /// Lower-case hex, as used in blob file names.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(BodyDigest(out))
    }
}

impl fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodyDigest({})", self.to_hex())
    }
}

impl fmt::Display for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The fleet-wide identity of a submission: SHA-256 over Message-ID, sender, the
/// sorted recipients and the body digest. A sender that retries the same message (to
/// the same node or another one) produces the same key, and the fleet stores it once.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DedupKey(pub [u8; 32]);

impl DedupKey {
    /// Derives the key. Recipients are compared case-sensitively in the local part and
    /// case-insensitively in the domain, as SMTP does, and their order does not matter.
    pub fn derive(
        message_id: Option<&str>,
        sender: &str,
        recipients: &[String],
        body: &BodyDigest,
    ) -> Self {
        let mut sorted: Vec<String> = recipients.iter().map(|r| canonical_address(r)).collect();
        sorted.sort();
        sorted.dedup();
        let mut hasher = Sha256::new();
        // Length-prefix every field so that no two different tuples hash alike.
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        field(message_id.unwrap_or("").trim().as_bytes());
        field(canonical_address(sender).as_bytes());
        for recipient in &sorted {
            field(recipient.as_bytes());
        }
        field(&body.0);
        DedupKey(hasher.finalize().into())
    }
}

impl fmt::Debug for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DedupKey({})", hex::encode(&self.0[..8]))
    }
}

/// `Local@Domain.Example` becomes `Local@domain.example`.
fn canonical_address(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_id_displays_as_fixed_width_hex_and_parses_back() {
        let id = QueueId(0x3F2A1C);
        assert_eq!(id.to_string(), "0000003F2A1C");
        assert_eq!("0000003F2A1C".parse::<QueueId>().unwrap(), id);
    }

    #[test]
    fn dedup_key_ignores_recipient_order_and_domain_case() {
        let body = BodyDigest::of(b"hello");
        let a = DedupKey::derive(
            Some("<m1@x>"),
            "s@x",
            &["b@Example.org".into(), "a@example.org".into()],
            &body,
        );
        let b = DedupKey::derive(
            Some("<m1@x>"),
            "s@X",
            &["a@example.org".into(), "b@example.ORG".into()],
            &body,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn dedup_key_differs_when_any_part_differs() {
        let body = BodyDigest::of(b"hello");
        let rcpts = vec!["a@example.org".to_string()];
        let base = DedupKey::derive(Some("<m1@x>"), "s@x", &rcpts, &body);
        assert_ne!(base, DedupKey::derive(Some("<m2@x>"), "s@x", &rcpts, &body));
        assert_ne!(base, DedupKey::derive(Some("<m1@x>"), "t@x", &rcpts, &body));
        assert_ne!(
            base,
            DedupKey::derive(Some("<m1@x>"), "s@x", &["B@example.org".into()], &body)
        );
        assert_ne!(
            base,
            DedupKey::derive(Some("<m1@x>"), "s@x", &rcpts, &BodyDigest::of(b"x"))
        );
        // Local parts are case-sensitive (RFC 5321 §2.4).
        assert_ne!(
            base,
            DedupKey::derive(Some("<m1@x>"), "s@x", &["A@example.org".into()], &body)
        );
    }

    #[test]
    fn body_digest_hex_round_trips() {
        let digest = BodyDigest::of(b"abc");
        assert_eq!(
            digest.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(BodyDigest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(BodyDigest::from_hex("zz"), None);
    }
}
