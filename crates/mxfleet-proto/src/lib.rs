//! mxfleet-proto: the gRPC wire types and service stubs generated from `proto/`.
//!
//! - [`raft::v1`]: the peer protocol (Raft RPCs, forwarding, blob side channel).
//! - [`admin::v1`]: the operators' admin API (cluster status and membership, queue).
//!
//! Generated code only; conversions to domain types live with the crates that own them.

/// Peer protocol between fleet members.
pub mod raft {
    /// Version 1 of the peer protocol.
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("mxfleet.raft.v1");
    }
}

/// The admin API that `mxfleet cluster …` and `mxfleet queue …` call.
pub mod admin {
    /// Version 1 of the admin API.
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("mxfleet.admin.v1");
    }
}

/// The largest gRPC message any mxfleet service sends or accepts.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The size of one blob or snapshot chunk.
pub const CHUNK_BYTES: usize = 1024 * 1024;
