//! openraft's storage conformance suite against Keel's RocksDB log store and
//! state machine (run in a plain #[test]: the suite builds its own runtime).

use keel_store::db::Db;
use keel_store::log_store::LogStore;
use keel_store::state_machine::{AppliedState, StateMachine};
use keel_store::watch::{WatchConfig, WatchHub};
use keel_store::{NodeId, TypeConfig};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path()).expect("open db");
        let state = AppliedState::load(&db).expect("applied state");
        let hub = WatchHub::new(db.clone(), WatchConfig::default(), 0, 0);
        let sm = StateMachine::new(db.clone(), hub, state);
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn openraft_storage_conformance_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("conformance suite failed: {e}");
    }
}
