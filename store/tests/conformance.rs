//! openraft's storage conformance suite against Keel's RocksDB log store and
//! state machine.

use keel_store::TypeConfig;
use keel_store::db::Db;
use keel_store::log_store::LogStore;
use keel_store::state_machine::{AppliedState, StateMachine};
use keel_store::watch::{WatchConfig, WatchHub};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path()).expect("open db");
        let state = AppliedState::load(&db).expect("applied state");
        let hub = WatchHub::new(db.clone(), WatchConfig::default(), 0, 0);
        let sm = StateMachine::new(db.clone(), hub, state);
        Ok((dir, LogStore::new(db), sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_conformance_suite() {
    if let Err(e) = Suite::test_all(Builder).await {
        panic!("conformance suite failed: {e}");
    }
}
