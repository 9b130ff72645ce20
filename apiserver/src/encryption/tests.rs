//! Encryption at rest: the configuration file's checks, each provider's
//! round trip, wrong and unknown keys, tampering, staleness, the default
//! configuration, and the storage layer over an in-memory storage.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use futures::StreamExt;

use super::aesgcmsiv::random_secret;
use super::config::{self, ProviderConfig};
use super::*;
use crate::registry::storage::{
    Actor, Consistency, EventKind, MemoryStorage, Preconditions, RangeRequest, Storage,
    StorageError, WatchMessage,
};

const SECRET_KEY: &str = "/registry/core/secrets/default/s1";

/// The actor of the tests' writes.
fn who() -> Actor {
    Actor::new("tester", ["testers"])
}

fn b64(k: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// A configuration of secrets with these aesgcmsiv keys (first encrypts),
/// then identity when `identity`.
fn yaml(keys: &[(&str, [u8; 32])], identity: bool) -> String {
    let mut s = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n",
    );
    if !keys.is_empty() {
        s.push_str("      - aesgcmsiv:\n          keys:\n");
        for (n, k) in keys {
            s.push_str(&format!(
                "            - name: {n}\n              secret: {}\n",
                b64(k)
            ));
        }
    }
    if identity {
        s.push_str("      - identity: {}\n");
    }
    s
}

fn enc(text: &str) -> Arc<Encryption> {
    let cfg = config::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Arc::new(Encryption::new(&cfg, PathBuf::from("test.yaml")))
}

fn t(e: &Encryption) -> Arc<Transformer> {
    e.transformer(SECRET_KEY)
        .expect("secrets are configured")
        .clone()
}

#[test]
fn yaml_and_json_configurations_parse_and_name_their_resources() {
    let k = random_secret();
    let cfg = config::parse(&yaml(&[("k1", k)], true)).unwrap();
    assert_eq!(cfg.rules.len(), 1);
    assert_eq!(
        cfg.rules[0].resources,
        vec![("secrets".to_string(), "/registry/core/secrets/".to_string())]
    );
    assert_eq!(
        cfg.rules[0].providers,
        vec![
            ProviderConfig::AesGcmSiv(vec![("k1".into(), k)]),
            ProviderConfig::Identity
        ]
    );
    let json = format!(
        r#"{{"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [{{"resources": ["configmaps", "widgets.example.com", "*.apps"],
              "providers": [{{"kms": {{"apiVersion": "v2", "name": "vault", "endpoint": "unix:///run/kms.sock", "timeout": "1m30s"}}}},
                            {{"aesgcmsiv": {{"keys": [{{"name": "old", "secret": "{}"}}]}}}}]}}]}}"#,
        b64(&k)
    );
    let cfg = config::parse(&json).unwrap();
    let prefixes: Vec<&str> = cfg.rules[0]
        .resources
        .iter()
        .map(|(_, p)| p.as_str())
        .collect();
    assert_eq!(
        prefixes,
        [
            "/registry/core/configmaps/",
            "/registry/example.com/widgets/",
            "/registry/apps/"
        ]
    );
    match &cfg.rules[0].providers[0] {
        ProviderConfig::Kms(k) => {
            assert_eq!(
                (k.name.as_str(), k.socket.as_str()),
                ("vault", "/run/kms.sock")
            );
            assert_eq!(k.timeout, std::time::Duration::from_secs(90));
        }
        p => panic!("expected kms, got {p:?}"),
    }
    assert_eq!(config::key_prefix("*.*").as_deref(), Some("/registry/"));
    assert_eq!(config::key_prefix("*.").as_deref(), Some("/registry/core/"));
    assert_eq!(config::key_prefix("Secrets"), None);
}

#[test]
fn configuration_errors_say_what_and_where() {
    let k = b64(&random_secret());
    let cases = [
        (
            "apiVersion: v1\nkind: EncryptionConfiguration\nresources: []\n",
            "apiVersion is \"v1\"",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: []\n",
            "at least one entry",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers: []\n",
            "resources[0].providers: at least one provider",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aesgcmsiv:\n          keys:\n            - name: k1\n              secret: c2hvcnQ=\n",
            "resources[0].providers[0].aesgcmsiv.keys[0].secret: 5 bytes, expected 32",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aesgcmsiv:\n          keys:\n            - name: k1\n              secret: '!!'\n",
            "not base64",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys: []\n",
            "the aescbc provider is not supported",
        ),
        (
            &format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aesgcmsiv:\n          keys:\n            - name: k1\n              secret: {k}\n            - name: k1\n              secret: {k}\n"
            ),
            "keys[1].name: \"k1\" is used twice",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms:\n          apiVersion: v2\n          name: vault\n          endpoint: tcp://10.0.0.1:80\n",
            "kms.endpoint: \"tcp://10.0.0.1:80\" is not a Unix socket",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms:\n          name: vault\n          endpoint: unix:///s\n",
            "Keel speaks KMS v2",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets, secrets]\n    providers:\n      - identity: {}\n",
            "\"secrets\" is named twice",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n        aesgcmsiv: {keys: []}\n",
            "exactly one of",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    provider:\n      - identity: {}\n",
            "unknown field",
        ),
        ("resources: [", "invalid YAML"),
    ];
    for (text, want) in cases {
        let e = config::parse(text).expect_err(text);
        assert!(e.contains(want), "{want:?} not in {e:?}\n{text}");
    }
}

#[test]
fn a_missing_or_malformed_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let e = Encryption::load(Some(&missing), dir.path()).err().unwrap();
    assert!(e.to_string().contains("nope.yaml"), "{e}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "kind: EncryptionConfiguration\n").unwrap();
    let e = Encryption::load(Some(&bad), dir.path()).err().unwrap();
    assert!(
        e.to_string().contains("bad.yaml") && e.to_string().contains("apiVersion"),
        "{e}"
    );
}

#[tokio::test]
async fn aesgcmsiv_round_trips_with_a_prefix_and_no_plaintext() {
    let e = enc(&yaml(&[("k1", random_secret())], false));
    let stored = t(&e)
        .encrypt(SECRET_KEY, b"{\"data\":\"hunter2\"}")
        .await
        .unwrap();
    assert!(stored.starts_with(b"k8s:enc:aesgcmsiv:v1:k1:"));
    assert!(!stored.windows(7).any(|w| w == b"hunter2"));
    let back = t(&e).decrypt(SECRET_KEY, &stored).await.unwrap();
    assert_eq!(back.plaintext, b"{\"data\":\"hunter2\"}");
    assert!(!back.stale);
    // Bound to its storage key: moved under another name it does not open.
    let moved = t(&e)
        .decrypt("/registry/core/secrets/default/s2", &stored)
        .await;
    assert!(
        matches!(moved, Err(EncryptionError::Decrypt { .. })),
        "{moved:?}"
    );
}

#[tokio::test]
async fn identity_stores_plain_json() {
    let e = enc(&yaml(&[], true));
    let stored = t(&e).encrypt(SECRET_KEY, b"{}").await.unwrap();
    assert_eq!(stored, b"{}");
    let back = t(&e).decrypt(SECRET_KEY, &stored).await.unwrap();
    assert_eq!((back.plaintext.as_slice(), back.stale), (&b"{}"[..], false));
}

#[tokio::test]
async fn a_wrong_key_tampering_and_an_unknown_key_are_errors_naming_the_object() {
    let k1 = random_secret();
    let e = enc(&yaml(&[("k1", k1)], false));
    let stored = t(&e).encrypt(SECRET_KEY, b"{\"a\":1}").await.unwrap();
    // Same name, other secret.
    let wrong = enc(&yaml(&[("k1", random_secret())], false));
    let err = t(&wrong).decrypt(SECRET_KEY, &stored).await.unwrap_err();
    assert!(matches!(err, EncryptionError::Decrypt { .. }), "{err}");
    assert!(err.to_string().contains(SECRET_KEY), "{err}");
    // One byte of the ciphertext altered.
    let mut tampered = stored.clone();
    *tampered.last_mut().unwrap() ^= 0x80;
    let err = t(&e).decrypt(SECRET_KEY, &tampered).await.unwrap_err();
    assert!(matches!(err, EncryptionError::Decrypt { .. }), "{err}");
    // The key was removed from the configuration.
    let other = enc(&yaml(&[("k2", random_secret())], true));
    let err = t(&other).decrypt(SECRET_KEY, &stored).await.unwrap_err();
    assert!(
        err.to_string().contains(SECRET_KEY) && err.to_string().contains("\"k1\""),
        "{err}"
    );
    // Plaintext while identity is not listed.
    let err = t(&e).decrypt(SECRET_KEY, b"{}").await.unwrap_err();
    assert!(matches!(err, EncryptionError::Unencrypted { .. }), "{err}");
    // A truncated prefix.
    let err = t(&e)
        .decrypt(SECRET_KEY, b"k8s:enc:aesgcmsiv")
        .await
        .unwrap_err();
    assert!(matches!(err, EncryptionError::Malformed { .. }), "{err}");
}

#[tokio::test]
async fn every_listed_key_decrypts_and_only_the_first_is_current() {
    let (k1, k2) = (random_secret(), random_secret());
    let old = enc(&yaml(&[("k1", k1)], true));
    let by_k1 = t(&old).encrypt(SECRET_KEY, b"{\"v\":1}").await.unwrap();
    let rotated = enc(&yaml(&[("k2", k2), ("k1", k1)], true));
    let back = t(&rotated).decrypt(SECRET_KEY, &by_k1).await.unwrap();
    assert_eq!(
        (back.plaintext.as_slice(), back.stale),
        (&b"{\"v\":1}"[..], true)
    );
    let by_k2 = t(&rotated).encrypt(SECRET_KEY, b"{\"v\":1}").await.unwrap();
    assert!(by_k2.starts_with(b"k8s:enc:aesgcmsiv:v1:k2:"));
    assert!(!t(&rotated).decrypt(SECRET_KEY, &by_k2).await.unwrap().stale);
    // Unencrypted values are stale while identity is not first.
    assert!(t(&rotated).decrypt(SECRET_KEY, b"{}").await.unwrap().stale);
}

#[test]
fn only_configured_resources_are_encrypted() {
    let e = enc(&yaml(&[("k1", random_secret())], true));
    assert!(e.transformer(SECRET_KEY).is_some());
    assert!(
        e.transformer("/registry/core/configmaps/default/c")
            .is_none()
    );
    assert!(e.transformer("/registry/core/secretsx/default/c").is_none());
    assert!(Encryption::within_one("/registry/core/secrets/"));
    assert!(Encryption::within_one("/registry/core/secrets/default/"));
    assert!(!Encryption::within_one("/registry/"));
    assert!(!Encryption::within_one("/registry/apps/"));
}

#[test]
fn the_default_configuration_derives_one_key_per_ca() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // Without a CA key there is nothing to derive from: refused by name.
    let e = Encryption::load(None, a.path()).err().unwrap();
    assert!(e.to_string().contains("ca.key"), "{e}");
    for (d, ca) in [(&a, "CA ONE"), (&b, "CA ONE"), (&c, "CA TWO")] {
        std::fs::create_dir_all(d.path().join("pki")).unwrap();
        std::fs::write(d.path().join("pki/ca.key"), ca).unwrap();
        Encryption::load(None, d.path()).unwrap();
    }
    let read = |d: &tempfile::TempDir| std::fs::read_to_string(default::path(d.path())).unwrap();
    assert_eq!(read(&a), read(&b), "members sharing a CA share the key");
    assert_ne!(read(&a), read(&c));
    let cfg = config::parse(&read(&a)).unwrap();
    assert_eq!(cfg.rules[0].resources[0].0, "secrets");
    assert!(matches!(
        cfg.rules[0].providers[..],
        [ProviderConfig::AesGcmSiv(_), ProviderConfig::Identity]
    ));
    // Written once: a changed CA key later does not change it.
    std::fs::write(a.path().join("pki/ca.key"), "CA THREE").unwrap();
    Encryption::load(None, a.path()).unwrap();
    assert_eq!(read(&a), read(&b));
}

/// The storage layer over an in-memory storage, and what the inner one holds.
fn layered(text: &str) -> (Arc<MemoryStorage>, EncryptedStorage) {
    let inner = Arc::new(MemoryStorage::new());
    let s = EncryptedStorage::new(inner.clone(), enc(text));
    (inner, s)
}

#[tokio::test]
async fn the_storage_layer_encrypts_writes_and_decrypts_reads_lists_and_watches() {
    let (inner, s) = layered(&yaml(&[("k1", random_secret())], true));
    let mut w = s.watch("/registry/", 0).await.unwrap();
    s.create(SECRET_KEY, b"{\"p\":\"hunter2\"}".to_vec(), None, &who())
        .await
        .unwrap();
    s.create(
        "/registry/core/configmaps/default/c",
        b"{\"p\":\"open\"}".to_vec(),
        None,
        &who(),
    )
    .await
    .unwrap();
    let (raw, _) = inner
        .get(SECRET_KEY, Consistency::Linearizable)
        .await
        .unwrap();
    assert!(raw.value.starts_with(b"k8s:enc:aesgcmsiv:v1:k1:"));
    let (raw_cm, _) = inner
        .get(
            "/registry/core/configmaps/default/c",
            Consistency::Linearizable,
        )
        .await
        .unwrap();
    assert_eq!(
        raw_cm.value, b"{\"p\":\"open\"}",
        "unconfigured resources are stored as is"
    );
    let (kv, _) = s.get(SECRET_KEY, Consistency::Linearizable).await.unwrap();
    assert_eq!(kv.value, b"{\"p\":\"hunter2\"}");
    let all = s.list(RangeRequest::prefix("/registry/")).await.unwrap();
    assert!(
        all.kvs.iter().all(|kv| kv.value.starts_with(b"{")),
        "{:?}",
        all.kvs
    );
    match w.next().await.unwrap().unwrap() {
        WatchMessage::Events { events, .. } => {
            assert_eq!(
                events[0].value.as_ref().unwrap().value,
                b"{\"p\":\"hunter2\"}"
            );
            // Decrypting the value keeps who wrote it.
            assert_eq!(events[0].actor.as_deref(), Some(&who()));
        }
        m => panic!("expected the secret's event, got {m:?}"),
    }
}

#[tokio::test]
async fn a_value_under_an_old_key_is_stale_until_rewritten() {
    let (k1, k2) = (random_secret(), random_secret());
    let (inner, old) = layered(&yaml(&[("k1", k1)], true));
    old.create(SECRET_KEY, b"{}".to_vec(), None, &who())
        .await
        .unwrap();
    let new = EncryptedStorage::new(inner.clone(), enc(&yaml(&[("k2", k2), ("k1", k1)], true)));
    let (kv, _) = new
        .get(SECRET_KEY, Consistency::Linearizable)
        .await
        .unwrap();
    assert!(new.stale(&kv));
    new.update(
        SECRET_KEY,
        kv.value.clone(),
        Preconditions::mod_revision(kv.mod_revision),
        &who(),
    )
    .await
    .unwrap();
    let (kv, _) = new
        .get(SECRET_KEY, Consistency::Linearizable)
        .await
        .unwrap();
    assert!(!new.stale(&kv));
    let (raw, _) = inner
        .get(SECRET_KEY, Consistency::Linearizable)
        .await
        .unwrap();
    assert!(raw.value.starts_with(b"k8s:enc:aesgcmsiv:v1:k2:"));
    // The old key can go now.
    let only_k2 = EncryptedStorage::new(inner, enc(&yaml(&[("k2", k2)], false)));
    assert_eq!(
        only_k2
            .get(SECRET_KEY, Consistency::Linearizable)
            .await
            .unwrap()
            .0
            .value,
        b"{}"
    );
}

#[tokio::test]
async fn an_undecryptable_value_fails_its_object_and_is_left_out_of_the_cache_feed() {
    let (inner, s) = layered(&yaml(&[("k1", random_secret())], true));
    s.create(SECRET_KEY, b"{}".to_vec(), None, &who())
        .await
        .unwrap();
    s.create(
        "/registry/core/secrets/default/s2",
        b"{}".to_vec(),
        None,
        &who(),
    )
    .await
    .unwrap();
    let lost = EncryptedStorage::new(inner.clone(), enc(&yaml(&[("k9", random_secret())], true)));
    let e = lost
        .get(SECRET_KEY, Consistency::Linearizable)
        .await
        .unwrap_err();
    match &e {
        StorageError::Internal(m) => assert!(m.contains(SECRET_KEY) && m.contains("\"k1\""), "{m}"),
        e => panic!("expected an internal error, got {e:?}"),
    }
    assert_eq!(crate::error::ApiError::from(e).status()["code"], 500);
    // A list of secrets fails; the cache's list of everything leaves them out.
    let e = lost
        .list(RangeRequest::prefix("/registry/core/secrets/"))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Internal(_)), "{e:?}");
    let all = lost.list(RangeRequest::prefix("/registry/")).await.unwrap();
    assert!(all.kvs.is_empty(), "{:?}", all.kvs);
    // Its watch events too: a new one is left out (the watcher gets the
    // revision as progress); a change to one takes it out of the cache,
    // which never keeps a superseded version.
    let mut w = lost.watch("/registry/", inner.revision()).await.unwrap();
    s.create(
        "/registry/core/secrets/default/s3",
        b"{}".to_vec(),
        None,
        &who(),
    )
    .await
    .unwrap();
    match w.next().await.unwrap().unwrap() {
        WatchMessage::Progress { revision } => assert_eq!(revision, inner.revision()),
        m => panic!("expected progress, got {m:?}"),
    }
    s.update(
        SECRET_KEY,
        b"{\"v\":2}".to_vec(),
        Preconditions::default(),
        &who(),
    )
    .await
    .unwrap();
    match w.next().await.unwrap().unwrap() {
        WatchMessage::Events { events, .. } => {
            let e = &events[0];
            assert_eq!((e.kind, e.key.as_str()), (EventKind::Deleted, SECRET_KEY));
            assert_eq!((&e.value, &e.prev), (&None, &None));
        }
        m => panic!("expected a deletion, got {m:?}"),
    }
    // A watch of secrets alone fails instead.
    let mut only = lost
        .watch("/registry/core/secrets/", inner.revision())
        .await
        .unwrap();
    s.update(
        SECRET_KEY,
        b"{\"v\":3}".to_vec(),
        Preconditions::default(),
        &who(),
    )
    .await
    .unwrap();
    let e = only.next().await.unwrap().unwrap_err();
    assert!(e.to_string().contains(SECRET_KEY), "{e}");
    // The get, the list of secrets (stops at the first), two left out of
    // the full list, and three events.
    let metrics = lost.render_metrics();
    assert!(
        metrics.contains("keel_encryption_decrypt_failures_total 7"),
        "{metrics}"
    );
}
