//! mxfleet-queue: the Raft-replicated message queue.
//!
//! A message's envelope travels through the Raft log (openraft, pinned exactly); its
//! body travels beside it, through a blob side channel, and is fsynced on a write
//! quorum before the envelope is proposed. No openraft type leaves this crate: callers
//! see [`Queue`], its errors, and `mxfleet_core`'s vocabulary.
//!
//! Layout:
//! - [`queue`]: the `Queue` handle: start, enqueue, delivery outcomes, operator
//!   actions, reads.
//! - `write_path`: proposing on the leader, forwarding from followers, retries.
//! - `cluster`: membership changes and `ClusterStatus`.
//! - `admin_ops`: bulk operator actions, drain, linearizable reads, the leader's
//!   replication view.
//! - `delivery_ops`: assignment, leases, attempt reports, reachability, flushes, and
//!   `ClusterContact` (may this node deliver?).
//! - `spam_ops`: recording and expiring what the spam checks saw (`SpamFact`s).
//! - [`config`]: `QueueConfig`, `PeerTls`, the injectable `Clock`.
//! - [`error`]: `QueueError`, `StartError`, `DataFormatError`.
//! - `data_format`: the data directory's format marker (`<data_dir>/FORMAT`), checked
//!   before any store opens.
//! - `types`: openraft's type configuration (crate-private aliases).
//! - `log_store`: the Raft log and vote on the raft-log WAL (group commit).
//! - `log_recovery`: opening the log: torn tail versus damage, and the repair of a
//!   damaged log from peers; `vote_shadow`: the vote's own checksummed file.
//! - `state_machine`, `sled_store`, `snapshot_file`: the applied state on sled, and
//!   metadata-only snapshot files.
//! - [`blob_store`], `blob_replication`: bodies on disk, and between nodes.
//! - `body_reader`: [`BodyReader`], a body read for use, verified again at its end.
//! - [`metrics`]: `QueueMetrics`, the queue's event metrics (commit latency, leader
//!   changes, blobs).
//! - `peer`: the gRPC peer protocol (client, server, forwarding, TLS).
//! - `backup` ([`Queue::backup`]), [`backup_archive`]: the backup archive of a running
//!   node (metadata and bodies, streamed); [`recover`]: the offline recovery of a lone
//!   survivor, or the restore of an archive, as the only voter of a new membership.

mod admin_ops;
mod backup;
pub mod backup_archive;
mod blob_replication;
pub mod blob_store;
mod body_reader;
mod cluster;
pub mod config;
mod data_format;
mod delivery_ops;
pub mod error;
mod log_recovery;
mod log_store;
pub mod metrics;
mod peer;
pub mod queue;
pub mod recover;
mod sled_store;
mod snapshot_file;
mod spam_ops;
mod state_machine;
mod types;
mod vote_shadow;
mod write_path;

pub use admin_ops::MAX_IDS_PER_OPERATOR_COMMAND;
pub use backup::{Backup, BackupSummary};
pub use blob_store::{BlobError, BlobStore, BlobWriter, StoredBlob};
pub use body_reader::BodyReader;
pub use cluster::{ClusterStatus, MemberStatus};
pub use config::{Clock, InitialMember, PeerTls, QueueConfig, SystemClock};
pub use delivery_ops::ClusterContact;
pub use error::{DataFormatError, LogOpenError, QueueError, StartError};
pub use metrics::{BlobMetrics, QueueMetrics};
pub use peer::forward::{LeaderView, MemberReplication};
pub use queue::{EnqueueReceipt, Queue};

#[cfg(test)]
mod storage_suite;
