//! The openraft type configuration and the aliases the rest of the crate uses.
//!
//! Every openraft type stays inside this crate; these aliases are `pub(crate)`.

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

/// The encoding of every openraft message on the wire and in the log: postcard.
/// Bumped whenever that encoding changes incompatibly, so that a mixed-version fleet
/// refuses to talk instead of misreading.
/// 3: `Command::SpamFacts`, `Command::ExpireSpamState`, `ReceivedTrace::received_spf`.
pub(crate) const WIRE_FORMAT: u32 = 3;

/// Encodes a value with the crate's wire/disk encoding.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Decodes a value encoded by [`encode`].
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
