//! openraft's storage conformance suite, run against our real stores on real files:
//! the raft-log WAL (opened as a node opens it, with its vote shadow) and the
//! sled-backed state machine with file snapshots.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use tempfile::TempDir;

use crate::log_recovery::{ChunkLimits, open_log_async};
use crate::log_store::LogStore;
use crate::state_machine::StateMachineStore;
use crate::types::TypeConfig;

struct DiskStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for DiskStores {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let failed = |e: std::io::Error| StorageError::read(TypeConfig::err_from_error(&e));
        let dir = TempDir::new().map_err(failed)?;
        // Through the production path: damage scan, vote shadow, reconciliation.
        let log = open_log_async(
            dir.path().to_path_buf(),
            ChunkLimits::PRODUCTION,
            mxfleet_core::UnixMillis(0),
        )
        .await
        .map_err(|e| failed(std::io::Error::other(e)))?
        .log;
        let state = StateMachineStore::open(dir.path(), None).map_err(failed)?;
        Ok((dir, log, state))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_on_disk_stores() {
    Suite::test_all(DiskStores)
        .await
        .expect("openraft storage suite");
}
