//! openraft's storage conformance suite, run against our real stores on real files:
//! the raft-log WAL and the sled-backed state machine with file snapshots.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use tempfile::TempDir;

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
        let log = LogStore::open_async(&dir.path().join("raft-log"))
            .await
            .map_err(failed)?;
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
