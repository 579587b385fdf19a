//! The peer side of a node: everything that crosses the network between fleet members.
//!
//! - [`transport`]: plaintext or mutual-TLS channels to peers, pooled per address.
//! - [`raft_client`]: openraft's network (`RaftNetworkV2`) over gRPC, with a native
//!   bidirectional stream for pipelined AppendEntries and a chunked snapshot stream.
//! - [`service`]: the gRPC server every node runs on its peer port.
//! - [`forward`]: the writes a follower hands to the leader, and their answers.

pub mod forward;
pub mod raft_client;
pub mod service;
pub mod transport;
