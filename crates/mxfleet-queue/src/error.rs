//! The errors the queue's public handle returns. Each one maps to one SMTP answer at
//! intake: `NoQuorum` → 451 4.3.0, `StorageFull` → 452 4.3.1, `TooLarge` → 552 5.3.4.

use std::time::Duration;

use mxfleet_core::Rejection;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No majority could be reached in time: nothing was acknowledged. The caller
    /// answers a temporary failure; a retry is deduplicated.
    #[error("no quorum within {waited:?}: {detail}")]
    NoQuorum { waited: Duration, detail: String },
    /// This node (or too many peers) cannot store the body.
    #[error("storage full: {detail}")]
    StorageFull { detail: String },
    /// The message or its envelope is larger than allowed.
    #[error("too large: {what} exceeds {limit} bytes")]
    TooLarge { what: &'static str, limit: u64 },
    /// The state machine refused the command (stale token, unknown message, ...).
    #[error("refused: {0}")]
    Refused(Rejection),
    /// The leader refused the request for good (a membership change openraft does not
    /// allow, a leadership transfer it cannot start): retrying will not help.
    #[error("declined: {0}")]
    Declined(String),
    /// The node is shutting down or its storage failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Why a queue node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open {what} under {path}: {source}")]
    Storage {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for peers on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid raft settings: {0}")]
    RaftConfig(String),
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("raft log: {0}")]
    RaftLog(#[from] LogOpenError),
    /// The data directory's format marker refuses this binary (see `data_format`).
    #[error(transparent)]
    DataFormat(#[from] DataFormatError),
}

/// Why this binary will not open a data directory: its format marker
/// (`<data_dir>/FORMAT`) says it was written in a storage format this binary does not
/// read. Checked before any store is opened; nothing in the directory was changed.
#[derive(Debug, thiserror::Error)]
pub enum DataFormatError {
    /// Written by a newer mxfleet: run that release (or a newer one) again.
    #[error(
        "{}: this data directory was written by mxfleet {written_by} with storage format \
         {found}; this binary (mxfleet {this_version}) reads formats {oldest}..={newest}: \
         run a newer binary, or restore from a snapshot",
        marker.display()
    )]
    TooNew {
        marker: std::path::PathBuf,
        found: u32,
        written_by: String,
        oldest: u32,
        newest: u32,
        this_version: String,
    },
    /// Older than this binary can migrate: start it once with a release in between.
    #[error(
        "{}: this data directory was written by mxfleet {written_by} with storage format \
         {found}; this binary (mxfleet {this_version}) reads formats {oldest}..={newest}: \
         first run a release that reads format {found}, so that it migrates the \
         directory, or restore from a snapshot",
        marker.display()
    )]
    TooOld {
        marker: std::path::PathBuf,
        found: u32,
        written_by: String,
        oldest: u32,
        newest: u32,
        this_version: String,
    },
    /// The marker exists but is not one mxfleet wrote (edited, or damaged).
    #[error(
        "{}: the data format marker is unreadable ({reason}); refusing to guess the \
         format of this data directory: restore the file (`storage_format = N`)",
        marker.display()
    )]
    Unreadable {
        marker: std::path::PathBuf,
        reason: String,
    },
    /// The marker could not be read or written (permissions, no space, an I/O error).
    #[error("cannot use the data format marker {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why this node's Raft log could not be opened. Damage the node can repair is not an
/// error: the log is set aside and the node rejoins from its peers (logged as
/// `raft_log_corrupt` and `rejoining_from_peers`).
#[derive(Debug, thiserror::Error)]
pub enum LogOpenError {
    /// An operational failure (permission denied, no space, the directory locked by
    /// another process, an I/O error). Nothing was moved aside; fix the cause and start
    /// again.
    #[error("cannot use {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The log is damaged, and the shadow copy of the vote is missing or damaged too, so
    /// the node cannot prove which vote it last cast: rejoining on its own could let it
    /// vote twice in a term. Restore the vote file from a backup, or remove the node from
    /// the cluster and add it back under a new id with an empty data directory.
    #[error(
        "the raft log is damaged ({damage}) and the vote cannot be recovered from \
         {vote_file}: {reason}; not repairing {log} automatically"
    )]
    VoteUnknown {
        log: std::path::PathBuf,
        vote_file: std::path::PathBuf,
        damage: String,
        reason: String,
    },
}
