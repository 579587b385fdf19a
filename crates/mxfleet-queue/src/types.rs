//! The openraft type configuration and the aliases the rest of the crate uses.
//!
//! Every openraft type stays inside this crate; these aliases are `pub(crate)`. Also
//! the wire format: what this binary writes, the range it reads, and the one check
//! ([`check_wire_format`]) every peer message goes through.

use std::fmt;

use mxfleet_core::{Command, Response};
use serde::{Deserialize, Serialize};

/// A fleet member as recorded in the Raft membership: where its peer port is and which
/// site (datacenter) it lives in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerNode {
    /// `host:port` of the node's peer (Raft) listener.
    pub addr: String,
    /// Datacenter label, used to reason about site-wide failures.
    pub site: String,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.addr, self.site)
    }
}

openraft::declare_raft_types!(
    /// mxfleet's Raft: queue commands in, apply responses out, `u64` node ids.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = PeerNode,
        Term = u64,
);

pub(crate) type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachineStore>;
pub(crate) type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub(crate) type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub(crate) type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub(crate) type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub(crate) type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub(crate) type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// Snapshots are files on disk; openraft passes around an open handle to one.
pub(crate) type SnapshotData = tokio::fs::File;

/// The encoding this binary *writes*, on the wire and in the log: postcard of the types
/// above. A mixed-version fleet must refuse what it cannot read instead of misreading
/// it: postcard is not self-describing, so an added field shifts everything after it.
///
/// 3: `Command::SpamFacts`, `Command::ExpireSpamState`, `ReceivedTrace::received_spf`.
///
/// Changing it during a rolling upgrade takes two releases (nodes restart one at a
/// time, so old and new binaries talk for a while, and a node may go back one release):
/// 1. Release N+1 learns format F+1: `MAX_READABLE_WIRE_FORMAT = F+1`, but it still
///    writes F (`WIRE_FORMAT = F`). Roll it out to every node.
/// 2. Release N+2 writes F+1 (`WIRE_FORMAT = F+1`). Every node it talks to reads F+1
///    already. It may keep reading F (`MIN_READABLE_WIRE_FORMAT = F`) until no N+1
///    node is left; raising the minimum is a later release's business.
///
/// The Raft log holds entries in this encoding, so step 2 also bumps the data
/// directory's `STORAGE_FORMAT` (see `data_format`), and snapshots (their own
/// `FORMAT`, in `snapshot_file`) follow the same two steps. A receiver outside the range
/// answers `FailedPrecondition` and logs `peer_wire_format_refused` (see
/// [`check_wire_format`]).
pub(crate) const WIRE_FORMAT: u32 = 3;
/// The oldest wire format this binary reads.
pub(crate) const MIN_READABLE_WIRE_FORMAT: u32 = 3;
/// The newest wire format this binary reads (above `WIRE_FORMAT` only in the release
/// that prepares a change).
pub(crate) const MAX_READABLE_WIRE_FORMAT: u32 = WIRE_FORMAT;

const _: () =
    assert!(MIN_READABLE_WIRE_FORMAT <= WIRE_FORMAT && WIRE_FORMAT <= MAX_READABLE_WIRE_FORMAT);

/// A peer's message in a wire format this binary does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the peer speaks wire format {peer}; this node (mxfleet {version}) reads formats \
     {min}..={max} and writes {writes}: {advice}",
    version = crate::data_format::BINARY_VERSION,
    advice = upgrade_advice(.peer, .max)
)]
pub(crate) struct WireFormatMismatch {
    pub peer: u32,
    pub min: u32,
    pub max: u32,
    pub writes: u32,
}

impl WireFormatMismatch {
    /// True when the peer runs the newer binary (this node must be upgraded).
    pub(crate) fn peer_is_newer(&self) -> bool {
        self.peer > self.max
    }
}

/// Which side of a refused exchange has to be upgraded.
fn upgrade_advice(peer: &u32, max: &u32) -> &'static str {
    if peer > max {
        "upgrade this node"
    } else {
        "upgrade the peer"
    }
}

/// Whether a message in wire format `peer` is readable by a binary that reads
/// `min..=max` and writes `writes`. Pure, so that the rule is tested on its own.
pub(crate) fn wire_format_verdict(
    peer: u32,
    min: u32,
    max: u32,
    writes: u32,
) -> Result<(), WireFormatMismatch> {
    if (min..=max).contains(&peer) {
        Ok(())
    } else {
        Err(WireFormatMismatch {
            peer,
            min,
            max,
            writes,
        })
    }
}

/// [`wire_format_verdict`] with this binary's range. On a refusal it logs
/// `peer_wire_format_refused` (at most once a minute per peer and format, since Raft
/// retries every few hundred milliseconds); `peer` names the other side and `rpc`
/// what it sent.
pub(crate) fn check_wire_format(
    format: u32,
    peer: &dyn fmt::Display,
    rpc: &str,
) -> Result<(), WireFormatMismatch> {
    wire_format_verdict(
        format,
        MIN_READABLE_WIRE_FORMAT,
        MAX_READABLE_WIRE_FORMAT,
        WIRE_FORMAT,
    )
    .inspect_err(|refused| {
        if refusal_not_logged_lately(peer.to_string(), format) {
            tracing::warn!(
                %peer,
                rpc,
                peer_format = refused.peer,
                min_readable = refused.min,
                max_readable = refused.max,
                writes = refused.writes,
                upgrade = if refused.peer_is_newer() { "this node" } else { "the peer" },
                "peer_wire_format_refused"
            );
        }
    })
}

/// Rate limit for `peer_wire_format_refused`: true when `(peer, format)` was not logged
/// in the last minute. The map holds one entry per peer and format seen, a handful.
fn refusal_not_logged_lately(peer: String, format: u32) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static LOGGED: Mutex<Option<HashMap<(String, u32), Instant>>> = Mutex::new(None);
    let mut logged = LOGGED.lock().unwrap_or_else(|p| p.into_inner());
    let logged = logged.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    match logged.get(&(peer.clone(), format)) {
        Some(at) if now.duration_since(*at) < Duration::from_secs(60) => false,
        _ => {
            logged.insert((peer, format), now);
            true
        }
    }
}

/// Encodes a value with the crate's wire/disk encoding.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Decodes a value encoded by [`encode`].
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_format_range_accepts_inside_and_says_who_must_upgrade_outside() {
        // (peer, min, max, writes, accepted, advice)
        let table = [
            (3, 3, 3, 3, true, ""),
            (2, 3, 3, 3, false, "upgrade the peer"),
            (4, 3, 3, 3, false, "upgrade this node"),
            // Release N+1 of the two-step rule: reads 3 and 4, writes 3.
            (3, 3, 4, 3, true, ""),
            (4, 3, 4, 3, true, ""),
            (5, 3, 4, 3, false, "upgrade this node"),
            // Release N+2: writes 4, still reads 3.
            (3, 3, 4, 4, true, ""),
            (0, 3, 4, 4, false, "upgrade the peer"),
            (u32::MAX, 3, 4, 4, false, "upgrade this node"),
        ];
        for (peer, min, max, writes, accepted, advice) in table {
            let verdict = wire_format_verdict(peer, min, max, writes);
            assert_eq!(verdict.is_ok(), accepted, "peer {peer} vs {min}..={max}");
            if let Err(refused) = verdict {
                let message = refused.to_string();
                assert!(
                    message.contains(&format!("the peer speaks wire format {peer}"))
                        && message.contains(&format!("reads formats {min}..={max}"))
                        && message.contains(&format!("writes {writes}"))
                        && message.ends_with(advice),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn this_binary_reads_what_it_writes() {
        assert!(check_wire_format(WIRE_FORMAT, &"test-peer", "test").is_ok());
        assert!(check_wire_format(MAX_READABLE_WIRE_FORMAT + 1, &"test-peer", "test").is_err());
    }

    /// What an older binary meets in a newer binary's entry: a command it does not
    /// know, or a truncated payload. Both are errors, never a panic.
    #[test]
    fn decoding_a_command_this_binary_does_not_know_is_an_error_not_a_panic() {
        let known = encode(&Command::ExpireDedup {
            now: mxfleet_core::UnixMillis(7),
        })
        .unwrap();
        assert!(decode::<Command>(&known).is_ok());
        // The variant index is the first varint; one far beyond the last variant.
        let mut unknown = known.clone();
        unknown[0] = 0x7f;
        assert!(decode::<Command>(&unknown).is_err());
        for cut in 0..known.len() {
            assert!(decode::<Command>(&known[..cut]).is_err(), "cut at {cut}");
        }
        // Garbage of every short length decodes to an error or a value, never a panic.
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = decode::<Command>(&bytes);
            let _ = decode::<Entry>(&bytes);
        }
    }
}
