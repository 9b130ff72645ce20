//! libFuzzer target: one API request per input against a one-member store
//! (see `keel_tests::fuzz::api_request` for how the bytes become a request).
#![no_main]

use std::sync::{Arc, OnceLock};

use keel_apiserver::http::{InProcess, UserInfo};
use keel_apiserver::registry::Registry;
use keel_tests::Cluster;

struct Env {
    rt: tokio::runtime::Runtime,
    api: InProcess,
    _cluster: Cluster,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let cluster = rt.block_on(Cluster::start(1, 1));
        let api = InProcess::new(
            Arc::new(Registry::new(cluster.member(1))),
            UserInfo {
                name: "admin".into(),
                groups: vec!["system:masters".into()],
                ..UserInfo::default()
            },
        );
        Env {
            rt,
            api,
            _cluster: cluster,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let env = env();
    env.rt
        .block_on(keel_tests::fuzz::api_request(&env.api, data));
});
