//! Bounded fuzzing, part of `make test`: seeded random and structured inputs
//! for every decoder and parser that sees bytes from outside (continue
//! tokens, selectors, query strings, patches, JSON and YAML bodies of every
//! kind through the API, every member-protocol message). The result must be
//! zero panics; an abort (a failed allocation) kills the test binary.
//!
//! `KEEL_FUZZ_SEED` picks another seed and `KEEL_FUZZ_SCALE` multiplies the
//! case counts; longer runs use the libFuzzer targets in `fuzz/` (see
//! docs/FUZZING.md). Each target prints its case count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use keel_apiserver::http::{InProcess, UserInfo};
use keel_apiserver::registry::Registry;
use keel_store::command::{Actor, Command, Op, Txn};
use keel_store::db::Db;
use keel_store::state_machine::{AppliedState, StateMachine};
use keel_store::watch::{WatchConfig, WatchHub};
use keel_store::{Entry, EntryPayload, KeyValue, Vote, codec};
use keel_store::{PeerRequest, PeerResponse};
use keel_tests::{Cluster, fuzz};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

static PANICS: AtomicUsize = AtomicUsize::new(0);
static FIRST_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Count every panic in the process (spawned tasks included), keeping the
/// first few messages for the report.
fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            let mut first = FIRST_PANICS.lock().unwrap_or_else(|e| e.into_inner());
            if first.len() < 10 {
                first.push(info.to_string());
            }
            drop(first);
            default(info);
        }));
    });
}

fn seed() -> u64 {
    std::env::var("KEEL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6b65_656c)
}

fn cases(base: usize) -> usize {
    let scale: usize = std::env::var("KEEL_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    base * scale.max(1)
}

/// Run `target` on every input, catching panics to name the input.
fn run(name: &str, inputs: impl Iterator<Item = Vec<u8>>, target: impl Fn(&[u8])) {
    watch_panics();
    let started = Instant::now();
    let mut n = 0usize;
    let mut failures = Vec::new();
    for input in inputs {
        n += 1;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input)));
        if r.is_err() && failures.len() < 5 {
            failures.push(format!("{:?}", String::from_utf8_lossy(&input)));
        }
    }
    println!(
        "fuzz {name}: {n} cases, {} panics, {:?}",
        failures.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "{name}: panics on {failures:?}");
}

fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = if rng.gen_bool(0.9) {
        rng.gen_range(0..48)
    } else {
        rng.gen_range(0..600)
    };
    (0..len)
        .map(|_| {
            if rng.gen_bool(0.2) {
                // bincode's varint markers and other edge bytes.
                [0, 1, 0x7f, 0x80, 0xfb, 0xfc, 0xfd, 0xfe, 0xff][rng.gen_range(0..9)]
            } else {
                rng.r#gen()
            }
        })
        .collect()
}

/// Damage a valid encoding: flip, insert forged lengths, truncate, extend.
fn mutate(rng: &mut StdRng, mut v: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.gen_range(1..4) {
        let at = if v.is_empty() {
            0
        } else {
            rng.gen_range(0..v.len())
        };
        match rng.gen_range(0..5) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.gen_range(0..8),
            1 => {
                // A varint length of up to 2^64-1.
                let big: u64 = rng.r#gen::<u64>() >> rng.gen_range(0..60);
                let mut forged = vec![0xfd];
                forged.extend_from_slice(&big.to_le_bytes());
                v.splice(at..at, forged);
            }
            2 => v.truncate(at),
            3 => v.extend(random_bytes(rng)),
            _ if !v.is_empty() => v[at] = rng.r#gen(),
            _ => {}
        }
    }
    v
}

fn entry(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: keel_store::log_id(3, 1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

/// Valid encodings of every bincode type a member decodes, to mutate.
fn valid_encodings() -> Vec<Vec<u8>> {
    let cmd = Command::txn(vec![
        Op::create("/registry/core/configmaps/default/x", b"{\"a\":1}".to_vec()),
        Op::update("/k", vec![7; 40]),
        Op::delete("/gone"),
    ]);
    let kv = KeyValue {
        key: "/k".into(),
        value: b"value".to_vec(),
        create_revision: 3,
        mod_revision: 9,
        version: 2,
        uid: Some("u-1".into()),
    };
    let vote = Vote::new(4, 2);
    let by = |user: &str| Txn {
        ops: vec![Op::delete("/gone")],
        actor: Some(Actor::new(user, ["dev", "system:authenticated"])),
    };
    let batch = Command::batch_as(vec![by("alice"), by("bob")]);
    let event = keel_store::Event {
        revision: 9,
        op_index: 0,
        kind: keel_store::EventKind::Modified,
        key: "/k".into(),
        value: Some(kv.clone()),
        prev: Some(kv.clone()),
        at_ms: 5,
        actor: Some(Arc::new(Actor::new("alice", ["dev"]))),
        wire: Default::default(),
    };
    vec![
        codec::encode(&cmd),
        codec::encode(&Command::txn_as(by("carol"))),
        codec::encode(&PeerRequest::Forward(batch)),
        codec::encode_event(&event),
        codec::encode(&kv),
        codec::encode(&entry(12, cmd.clone())),
        codec::encode(&PeerRequest::Forward(cmd.clone())),
        codec::encode(&PeerRequest::ReadIndex),
        codec::encode(&PeerRequest::Vote(openraft::raft::VoteRequest {
            vote,
            last_log_id: Some(keel_store::log_id(3, 1, 11)),
            leadership_transfer: false,
        })),
        codec::encode(&PeerRequest::Append(openraft::raft::AppendEntriesRequest {
            vote,
            prev_log_id: None,
            entries: vec![entry(1, cmd)],
            leader_commit: None,
        })),
        codec::encode(&PeerResponse::ReadIndex(Ok(5))),
        codec::encode(&(5u64, "/f/", "/f/b")),
    ]
}

fn bincode_inputs(rng: &mut StdRng, n: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let valid = valid_encodings();
    (0..n).map(move |i| {
        if i % 2 == 0 {
            random_bytes(rng)
        } else {
            let base = valid[rng.gen_range(0..valid.len())].clone();
            mutate(rng, base)
        }
    })
}

#[test]
fn fuzz_bincode_payloads_and_stored_values() {
    let mut rng = StdRng::seed_from_u64(seed());
    run(
        "bincode payloads",
        bincode_inputs(&mut rng, cases(6000)),
        fuzz::bincode_payloads,
    );
}

#[test]
fn fuzz_proto_messages() {
    let mut rng = StdRng::seed_from_u64(seed() ^ 1);
    let valid: Vec<Vec<u8>> = {
        use keel_proto::member as pb;
        use keel_proto::prost::Message;
        vec![
            pb::RangeRequest {
                prefix: "/a".into(),
                limit: 3,
                continue_token: "kc1.00".into(),
                revision: 9,
                serializable: true,
            }
            .encode_to_vec(),
            pb::TxnRequest {
                ops: vec![pb::Operation {
                    key: "/k".into(),
                    value: vec![1, 2, 3],
                    if_mod_revision: Some(4),
                    ..Default::default()
                }],
            }
            .encode_to_vec(),
            pb::WatchReply {
                revision: 5,
                events: vec![pb::Event {
                    kv: Some(pb::KeyValue::default()),
                    ..Default::default()
                }],
                progress: false,
            }
            .encode_to_vec(),
            pb::RaftPayload {
                data: codec::encode(&PeerRequest::ReadIndex),
                crc32: 0,
            }
            .encode_to_vec(),
        ]
    };
    let n = cases(6000);
    let inputs = (0..n).map(|i| {
        if i % 2 == 0 {
            random_bytes(&mut rng)
        } else {
            let base = valid[rng.gen_range(0..valid.len())].clone();
            mutate(&mut rng, base)
        }
    });
    run(
        "proto messages",
        inputs.collect::<Vec<_>>().into_iter(),
        fuzz::proto_messages,
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn fuzz_store_continue_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let hub = WatchHub::new(db.clone(), WatchConfig::default(), 0, 0);
    let mut sm = StateMachine::new(db.clone(), hub, AppliedState::load(&db).unwrap());
    for (i, key) in ["/f/a", "/f/b", "/f/c"].iter().enumerate() {
        sm.apply_entries([entry(
            i as u64 + 1,
            Command::txn(vec![Op::create(*key, b"v".to_vec())]),
        )])
        .await
        .unwrap();
    }
    let mut rng = StdRng::seed_from_u64(seed() ^ 2);
    let valid = codec::encode(&(2u64, "/f/", "/f/a"));
    let n = cases(3000);
    let mut inputs: Vec<Vec<u8>> = vec![
        b"kc1.00fd0000000000800000".to_vec(),
        "kc1.a\u{e9}a".as_bytes().to_vec(),
        b"kc1.a%C3%A9a".to_vec(),
    ];
    for i in 0..n {
        inputs.push(match i % 3 {
            0 => random_bytes(&mut rng),
            // Hex of a damaged token (the continue_token target adds `kc1.`).
            1 => hex(&mutate(&mut rng, valid.clone())).into_bytes(),
            _ => {
                let mut h = hex(&mutate(&mut rng, valid.clone())).into_bytes();
                let at = rng.gen_range(0..=h.len());
                h.splice(at..at, "é".bytes());
                h
            }
        });
    }
    run("continue tokens (store)", inputs.into_iter(), |b| {
        fuzz::continue_token(&db, b)
    });
}

const SELECTOR_PIECES: &[&str] = &[
    "app",
    "tier",
    "a.b/c",
    "x",
    "=",
    "==",
    "!=",
    ",",
    " in ",
    " notin ",
    "(",
    ")",
    "!",
    " ",
    "web",
    "",
    "-",
    "_",
    ".",
    "/",
    "é",
    "\u{0}",
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
    "%",
    "\\",
    "a,b",
    "((",
    "))",
    "=",
    "in",
    "notin",
];

fn pieces(rng: &mut StdRng, from: &[&str], max: usize) -> String {
    (0..rng.gen_range(0..max))
        .map(|_| from[rng.gen_range(0..from.len())])
        .collect()
}

#[test]
fn fuzz_selectors() {
    let mut rng = StdRng::seed_from_u64(seed() ^ 3);
    let n = cases(8000);
    let inputs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            if i % 4 == 0 {
                random_bytes(&mut rng)
            } else {
                pieces(&mut rng, SELECTOR_PIECES, 12).into_bytes()
            }
        })
        .collect();
    run(
        "label and field selectors",
        inputs.into_iter(),
        fuzz::selectors,
    );
}

const KEYS: &[&str] = &[
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "spec",
    "status",
    "data",
    "kind",
    "apiVersion",
    "resourceVersion",
    "uid",
    "finalizers",
    "deletionTimestamp",
    "generateName",
    "containers",
    "image",
    "replicas",
    "selector",
    "matchLabels",
    "template",
    "ports",
    "port",
    "type",
    "clusterIP",
    "rules",
    "subjects",
    "roleRef",
    "stringData",
    "binaryData",
    "items",
    "$patch",
    "$setElementOrder/containers",
    "op",
    "path",
    "value",
    "from",
    "",
];

fn random_string(rng: &mut StdRng) -> String {
    match rng.gen_range(0..6) {
        0 => KEYS[rng.gen_range(0..KEYS.len())].to_string(),
        1 => "x".repeat(rng.gen_range(0..300)),
        2 => String::from_utf8_lossy(&random_bytes(rng)).into_owned(),
        3 => [
            "",
            "/",
            "/metadata",
            "/metadata/labels/a",
            "/list/-",
            "/list/99999999999999",
            "/~1/~0",
            "/spec/containers/0/image",
            "-1",
            "1e400",
            "2024-01-01T00:00:00Z",
        ][rng.gen_range(0..11)]
        .to_string(),
        4 => [
            "add", "remove", "replace", "move", "copy", "test", "merge", "delete",
        ][rng.gen_range(0..8)]
        .to_string(),
        _ => format!("n{}", rng.gen_range(0..5)),
    }
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    let leaf = depth == 0 || rng.gen_bool(0.4);
    match rng.gen_range(0..if leaf { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.gen_bool(0.5)),
        2 => match rng.gen_range(0..5) {
            0 => json!(u64::MAX),
            1 => json!(i64::MIN),
            2 => json!(rng.r#gen::<f64>() * 1e300),
            3 => json!(-1),
            _ => json!(rng.gen_range(0..100)),
        },
        3 | 4 => json!(random_string(rng)),
        5 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.gen_range(0..5) {
                m.insert(random_string(rng), random_json(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// A JSON patch: a list of operations with random ops, paths and values.
fn random_json_patch(rng: &mut StdRng) -> Value {
    Value::Array(
        (0..rng.gen_range(0..4))
            .map(|_| {
                let mut op = json!({"op": random_string(rng), "path": random_string(rng)});
                if rng.gen_bool(0.7) {
                    op["value"] = random_json(rng, 3);
                }
                if rng.gen_bool(0.3) {
                    op["from"] = json!(random_string(rng));
                }
                op
            })
            .collect(),
    )
}

#[test]
fn fuzz_patches() {
    let mut rng = StdRng::seed_from_u64(seed() ^ 4);
    let n = cases(4000);
    let inputs: Vec<Vec<u8>> = (0..n)
        .map(|i| match i % 4 {
            0 => random_bytes(&mut rng),
            1 => random_json(&mut rng, 4).to_string().into_bytes(),
            2 => random_json_patch(&mut rng).to_string().into_bytes(),
            _ => json!([random_json(&mut rng, 3), random_json(&mut rng, 3)])
                .to_string()
                .into_bytes(),
        })
        .collect();
    run(
        "merge, JSON and strategic patches",
        inputs.into_iter(),
        fuzz::patches,
    );
}

/// A plausible object of a served kind with random damage in places.
fn kind_body(rng: &mut StdRng, rt: &keel_apiserver::kinds::ResourceType) -> Value {
    let mut obj = json!({
        "apiVersion": rt.api_version(),
        "kind": rt.kind,
        "metadata": {"name": format!("n{}", rng.gen_range(0..5))},
    });
    if rt.namespaced {
        obj["metadata"]["namespace"] = json!("default");
    }
    for _ in 0..rng.gen_range(0..4) {
        let v = random_json(rng, 3);
        match rng.gen_range(0..4) {
            0 => obj["metadata"] = v,
            1 => obj["spec"] = v,
            2 => {
                let key = random_string(rng);
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.insert(key, v);
                }
            }
            _ => {
                let key = random_string(rng);
                if let Some(o) = obj.as_object_mut() {
                    o.insert(key, v);
                }
            }
        }
    }
    obj
}

fn yaml_of(v: &Value) -> String {
    // JSON is YAML; indenting it block-style exercises the YAML parser more.
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[test]
fn fuzz_bodies_of_every_kind() {
    let mut rng = StdRng::seed_from_u64(seed() ^ 5);
    let all = keel_apiserver::kinds::Kinds::builtin().all();
    let n = cases(300);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for i in 0..n {
        let rt = &all[i % all.len()];
        inputs.push(match i % 4 {
            0 => random_bytes(&mut rng),
            1 => yaml_of(&kind_body(&mut rng, rt)).into_bytes(),
            2 => format!("a: [\n- {}\n  b: &x {{c: *x}}", random_string(&mut rng)).into_bytes(),
            _ => kind_body(&mut rng, rt).to_string().into_bytes(),
        });
    }
    run(
        "JSON and YAML bodies (typed checks)",
        inputs.into_iter(),
        fuzz::bodies,
    );
}

const QUERY_KEYS: &[&str] = &[
    "limit",
    "continue",
    "labelSelector",
    "fieldSelector",
    "resourceVersion",
    "resourceVersionMatch",
    "watch",
    "timeoutSeconds",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "dryRun",
    "fieldManager",
    "fieldValidation",
    "propagationPolicy",
    "gracePeriodSeconds",
    "pretty",
    "includeObject",
    "force",
];
const QUERY_VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "18446744073709551615",
    "99999999999999999999999",
    "true",
    "false",
    "Exact",
    "NotOlderThan",
    "kc1.00fd0000000000800000",
    "kc1.a%C3%A9a",
    "kc1.zz",
    "app%3Dweb",
    "metadata.name%3Dn1",
    "All",
    "Strict",
    "Ignore",
    "Orphan",
    "Foreground",
    "%FF",
    "%",
    "",
];

fn random_query(rng: &mut StdRng) -> String {
    (0..rng.gen_range(0..4))
        .map(|_| {
            let k = QUERY_KEYS[rng.gen_range(0..QUERY_KEYS.len())];
            let v = if rng.gen_bool(0.8) {
                QUERY_VALUES[rng.gen_range(0..QUERY_VALUES.len())].to_string()
            } else {
                pieces(rng, SELECTOR_PIECES, 6)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            };
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "text/plain",
    "",
];

/// An API request in the layout `fuzz::api_request` reads.
fn api_input(rng: &mut StdRng, i: usize) -> Vec<u8> {
    let all = keel_apiserver::kinds::Kinds::builtin().all();
    let k = rng.gen_range(0..all.len());
    let method: u8 = rng.r#gen();
    let name = if rng.gen_bool(0.6) {
        format!("n{}", rng.gen_range(0..5))
    } else {
        String::new()
    };
    // A watch answers with a stream, which the harness drops at once.
    let query = random_query(rng);
    let ctype = CONTENT_TYPES[rng.gen_range(0..CONTENT_TYPES.len())];
    let body: Vec<u8> = match i % 5 {
        0 => random_bytes(rng),
        1 => random_json_patch(rng).to_string().into_bytes(),
        2 => yaml_of(&kind_body(rng, &all[k])).into_bytes(),
        _ => kind_body(rng, &all[k]).to_string().into_bytes(),
    };
    let mut out = vec![method, k as u8];
    for part in [name.as_bytes(), query.as_bytes(), ctype.as_bytes()] {
        out.extend_from_slice(part);
        out.push(0);
    }
    out.extend(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_api_requests() {
    watch_panics();
    let cluster = Cluster::start(1, seed()).await;
    let api = Arc::new(InProcess::new(
        Arc::new(Registry::new(cluster.member(1))),
        UserInfo {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..UserInfo::default()
        },
    ));
    let ns = [1u8, 0];
    let mut setup = ns.to_vec();
    setup.extend_from_slice(b"\0\0application/json\0");
    setup.extend_from_slice(
        br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}}"#,
    );
    // The Namespace kind's index, whatever the order of `Kinds::all()`.
    let idx = api
        .registry()
        .kinds
        .all()
        .iter()
        .position(|rt| rt.kind == "Namespace")
        .unwrap();
    setup[1] = idx as u8;
    fuzz::api_request(&api, &setup).await;

    let mut rng = StdRng::seed_from_u64(seed() ^ 6);
    let n = cases(600);
    let started = Instant::now();
    let before = PANICS.load(Ordering::SeqCst);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut failures = Vec::new();
    for i in 0..n {
        let input = api_input(&mut rng, i);
        let api2 = api.clone();
        let data = input.clone();
        let task = tokio::spawn(async move { fuzz::api_request(&api2, &data).await });
        match tokio::time::timeout(Duration::from_secs(20), task).await {
            Ok(Ok(status)) => *statuses.entry(status.unwrap_or(0)).or_default() += 1,
            Ok(Err(e)) if e.is_panic() => failures.push(input),
            Ok(Err(e)) => panic!("request task failed: {e}"),
            Err(_) => panic!(
                "a request did not answer within 20 s: {:?}",
                String::from_utf8_lossy(&input)
            ),
        }
    }
    let panics = PANICS.load(Ordering::SeqCst) - before;
    println!(
        "fuzz API requests: {n} cases, {panics} panics, {:?}, statuses {statuses:?}",
        started.elapsed()
    );
    let shown: Vec<String> = failures
        .iter()
        .take(5)
        .map(|i| format!("{:?}", String::from_utf8_lossy(i)))
        .collect();
    let first = FIRST_PANICS.lock().unwrap().clone();
    assert!(
        panics == 0 && failures.is_empty(),
        "API requests panicked {panics} times; inputs {shown:?}; messages {first:?}"
    );
}
