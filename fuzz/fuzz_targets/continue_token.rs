//! libFuzzer target: continue tokens against a store holding a few keys.
#![no_main]

use std::sync::{Arc, OnceLock};

use keel_store::command::{Command, Op};
use keel_store::db::Db;
use keel_store::state_machine::{AppliedState, StateMachine};
use keel_store::watch::{WatchConfig, WatchHub};

/// One store for the whole run: three keys under `/f/` at revisions 1-3.
fn store() -> &'static Arc<Db> {
    static DB: OnceLock<(tempfile::TempDir, Arc<Db>)> = OnceLock::new();
    &DB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path()).expect("open db");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let hub = WatchHub::new(db.clone(), WatchConfig::default(), 0, 0);
            let mut sm = StateMachine::new(db.clone(), hub, AppliedState::load(&db).unwrap());
            for (i, key) in ["/f/a", "/f/b", "/f/c"].iter().enumerate() {
                let entry = keel_store::Entry {
                    log_id: keel_store::log_id(1, 1, i as u64 + 1),
                    payload: keel_store::EntryPayload::Normal(Command::txn(vec![Op::create(
                        *key,
                        b"v".to_vec(),
                    )])),
                };
                sm.apply_entries([entry]).await.expect("apply");
            }
        });
        (dir, db)
    })
    .1
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_tests::fuzz::continue_token(store(), data));
