//! mxfleet-queue: the Raft-replicated message queue.

pub mod blob_store;
pub mod log_store;
mod sled_store;
mod snapshot_file;
pub mod state_machine;
pub mod types;
#[cfg(test)]
mod storage_suite;
