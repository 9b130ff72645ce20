//! Kubernetes API semantics of a `keel server` process, checked over HTTPS
//! with curl and the admin client certificate: input that used to panic a
//! handler, writes that lost or kept data wrongly, resourceVersion and
//! continue rules, and the wording of messages.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_tests::server::KeelServer;
use keel_tests::{keel_bin, wait_until};
use serde_json::{Value, json};

/// A single-member `keel server` in a temp directory, killed on drop.
struct Server {
    keel: KeelServer,
}

/// One HTTP answer: code, raw headers (lowercased names) and JSON body
/// (`Null` when the body is not JSON).
struct Reply {
    code: u16,
    headers: String,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

impl Server {
    fn start() -> Server {
        let s = Server {
            keel: KeelServer::start(&[]),
        };
        wait_until("the server to be ready", Duration::from_secs(60), || {
            (s.curl(&["BASE/api/v1/namespaces/default"]).code == 200).then_some(())
        });
        s
    }

    fn curl_cmd(&self, args: &[&str]) -> Command {
        self.keel.curl(args)
    }

    /// A request; `BASE` in an argument is replaced by the server's URL.
    fn curl(&self, args: &[&str]) -> Reply {
        let out = self
            .curl_cmd(&[&["-i", "--max-time", "30"][..], args].concat())
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
        let code = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Reply {
            code,
            headers: head.to_string(),
            body: serde_json::from_str(body).unwrap_or(Value::Null),
        }
    }

    fn send(&self, method: &str, ct: &str, body: &str, url: &str) -> Reply {
        self.curl(&[
            "-X",
            method,
            "-H",
            &format!("Content-Type: {ct}"),
            "--data-binary",
            body,
            url,
        ])
    }

    fn json(&self, method: &str, url: &str, body: &Value) -> Reply {
        self.send(method, "application/json", &body.to_string(), url)
    }

    /// A watch streaming into a file until `timeoutSeconds` or the kill.
    fn watch(&self, url: &str, out: &Path) -> Child {
        self.curl_cmd(&["-N", "--max-time", "60", url])
            .stdout(std::fs::File::create(out).unwrap())
            .spawn()
            .expect("curl watch")
    }
}

const CMS: &str = "BASE/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

/// The watch events written to `file` so far.
fn events(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_event(file: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, Duration::from_secs(20), || {
        events(file).into_iter().find(|e| pred(e))
    })
}

fn assert_status(r: &Reply, code: u16, reason: &str, what: &str) {
    assert_eq!(r.code, code, "{what}: {}", r.body);
    assert_eq!(r.body["kind"], "Status", "{what}: {}", r.body);
    assert_eq!(r.body["reason"], reason, "{what}: {}", r.body);
    assert_eq!(r.body["code"], code, "{what}: {}", r.body);
}

#[test]
fn patches_of_any_shape_and_stored_garbage_get_a_status() {
    let s = Server::start();
    assert_eq!(s.json("POST", CMS, &cm("p")).code, 201);
    let url = format!("{CMS}/p");
    for (ct, patch, code, reason) in [
        (
            "application/merge-patch+json",
            r#"{"metadata":"x"}"#,
            422,
            "Invalid",
        ),
        ("application/merge-patch+json", "5", 422, "Invalid"),
        (
            "application/merge-patch+json",
            r#"{"metadata":null}"#,
            422,
            "Invalid",
        ),
        (
            "application/strategic-merge-patch+json",
            r#"{"metadata":"x"}"#,
            422,
            "Invalid",
        ),
        (
            "application/json-patch+json",
            r#"[{"op":"add","path":"","value":1}]"#,
            422,
            "Invalid",
        ),
        (
            "application/json-patch+json",
            r#"[{"op":"replace","path":"","value":{}}]"#,
            422,
            "Invalid",
        ),
        (
            "application/json-patch+json",
            r#"[{"op":"remove","path":"/metadata"}]"#,
            422,
            "Invalid",
        ),
        (
            "application/json-patch+json",
            r#"{"op":"add"}"#,
            400,
            "BadRequest",
        ),
    ] {
        let r = s.send("PATCH", ct, patch, &url);
        assert_status(&r, code, reason, &format!("{ct} {patch}"));
    }
    let r = s.curl(&[&url]);
    assert_eq!(r.code, 200);
    assert_eq!(r.body["data"]["k"], "v", "{}", r.body);

    // Values written around the API that are not Kubernetes objects.
    assert_eq!(s.json("POST", CMS, &cm("q")).code, 201);
    for (name, value) in [("bad-number", "5"), ("bad-meta", r#"{"metadata":"x"}"#)] {
        let key = format!("/registry/core/configmaps/default/{name}");
        let st = Command::new(keel_bin())
            .args(["kv", "--addr", &s.keel.peer_addr(), "--data-dir"])
            .arg(s.keel.data())
            .args(["create", &key, value])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "keel kv create {key}");
        let r = s.curl(&[&format!("{CMS}/{name}")]);
        assert_status(&r, 500, "InternalError", name);
        assert!(
            r.body["message"].as_str().unwrap_or("").contains(&key),
            "{}",
            r.body
        );
    }
    // The rest of the list still works; the skipped keys are named.
    let r = s.curl(&[CMS]);
    assert_eq!(r.code, 200, "{}", r.body);
    let names: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["p", "q"], "{}", r.body);
    let warnings = r.header("warning").join("\n");
    assert!(
        warnings.contains("/registry/core/configmaps/default/bad-number")
            && warnings.contains("/registry/core/configmaps/default/bad-meta"),
        "{warnings}"
    );
    let r = s.curl(&["BASE/api/v1/configmaps?limit=1"]);
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(s.curl(&["BASE/readyz"]).code, 200);
}

#[test]
fn delete_on_the_all_namespaces_path_is_refused() {
    let s = Server::start();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}});
    assert_eq!(s.json("POST", "BASE/api/v1/namespaces", &ns).code, 201);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "YQ=="}});
    for ns in ["default", "other"] {
        let url = format!("BASE/api/v1/namespaces/{ns}/secrets");
        assert_eq!(s.json("POST", &url, &secret).code, 201);
    }
    let r = s.curl(&["-X", "DELETE", "BASE/api/v1/secrets"]);
    assert_status(&r, 405, "MethodNotAllowed", "DELETE /api/v1/secrets");
    let r = s.curl(&["-X", "DELETE", "BASE/apis/apps/v1/deployments"]);
    assert_status(
        &r,
        405,
        "MethodNotAllowed",
        "DELETE /apis/apps/v1/deployments",
    );
    for ns in ["default", "other"] {
        let r = s.curl(&[&format!("BASE/api/v1/namespaces/{ns}/secrets/s")]);
        assert_eq!(r.code, 200, "the secret in {ns} is kept: {}", r.body);
    }
    // A name under the all-namespaces path names nothing.
    let r = s.curl(&["BASE/api/v1/secrets/s"]);
    assert_status(&r, 404, "NotFound", "GET /api/v1/secrets/s");
}

#[test]
fn delete_collection_deletes_every_page() {
    // The store answers a range in pages of at most 16 MiB; 15 ConfigMaps of
    // 1.3 MB need two. A collection DELETE that read one page left the rest.
    let s = Server::start();
    let body = s.keel.dir().join("big.json");
    let big = "x".repeat(1_300_000);
    for i in 0..15 {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("big-{i:02}"), "labels": {"size": "big"}},
            "data": {"k": big}});
        std::fs::write(&body, obj.to_string()).unwrap();
        let r = s.curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", body.display()),
            CMS,
        ]);
        assert_eq!(r.code, 201, "create big-{i:02}: {}", r.body);
    }
    assert_eq!(s.json("POST", CMS, &cm("small")).code, 201);
    let r = s.curl(&["-X", "DELETE", &format!("{CMS}?labelSelector=size%3Dbig")]);
    assert_eq!(r.code, 200, "deletecollection: {}", r.body);
    assert_eq!(
        r.body["items"].as_array().map(Vec::len),
        Some(15),
        "every matching object is deleted and returned"
    );
    let names = |r: &Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("a list: {}", r.body))
            .iter()
            .map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let left = s.curl(&[CMS]);
    assert_eq!(left.code, 200, "{}", left.body);
    let mut left = names(&left);
    left.retain(|n| n != "kube-root-ca.crt");
    assert_eq!(
        left,
        vec!["small".to_string()],
        "only the unselected object is left"
    );
}

#[test]
fn removing_the_last_finalizer_deletes_the_object() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let list = s.curl(&[CMS]);
    let rv = list.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let file = dir.path().join("watch");
    let mut watch = s.watch(&format!("{CMS}?watch=1&resourceVersion={rv}"), &file);
    let names = ["by-merge", "by-json-patch", "by-put"];
    for name in names {
        let mut obj = cm(name);
        obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
        assert_eq!(s.json("POST", CMS, &obj).code, 201);
        let r = s.curl(&["-X", "DELETE", &format!("{CMS}/{name}")]);
        assert_eq!(r.code, 200, "{}", r.body);
        assert!(r.body["metadata"]["deletionTimestamp"].is_string());
        assert_eq!(
            s.curl(&[&format!("{CMS}/{name}")]).code,
            200,
            "{name} is held"
        );
    }
    let r = s.send(
        "PATCH",
        "application/merge-patch+json",
        r#"{"metadata":{"finalizers":null}}"#,
        &format!("{CMS}/by-merge"),
    );
    assert_eq!(r.code, 200, "{}", r.body);
    let r = s.send(
        "PATCH",
        "application/json-patch+json",
        r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#,
        &format!("{CMS}/by-json-patch"),
    );
    assert_eq!(r.code, 200, "{}", r.body);
    let mut held = s.curl(&[&format!("{CMS}/by-put")]).body;
    held["metadata"]["finalizers"] = json!([]);
    let r = s.json("PUT", &format!("{CMS}/by-put"), &held);
    assert_eq!(r.code, 200, "{}", r.body);
    for name in names {
        let r = s.curl(&[&format!("{CMS}/{name}")]);
        assert_status(&r, 404, "NotFound", name);
        wait_event(&file, &format!("DELETED of {name}"), |e| {
            e["type"] == "DELETED" && e["object"]["metadata"]["name"] == name
        });
    }
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn resource_versions_and_continue_tokens_follow_kubernetes() {
    let s = Server::start();
    for name in ["a", "b", "c"] {
        assert_eq!(s.json("POST", CMS, &cm(name)).code, 201);
    }
    for (query, what) in [
        (
            "resourceVersionMatch=NotOlderThan",
            "NotOlderThan without a resourceVersion",
        ),
        (
            "resourceVersionMatch=Exact&resourceVersion=0",
            "Exact with 0",
        ),
        (
            "resourceVersionMatch=Exact&resourceVersion=2&continue=x",
            "a match with continue",
        ),
        (
            "resourceVersionMatch=Newest&resourceVersion=2",
            "an unknown match",
        ),
        (
            "watch=1&resourceVersionMatch=NotOlderThan",
            "a match on a watch without sendInitialEvents",
        ),
        (
            "watch=1&sendInitialEvents=true",
            "sendInitialEvents without NotOlderThan",
        ),
    ] {
        let r = s.curl(&[&format!("{CMS}?{query}")]);
        assert_status(&r, 422, "Invalid", what);
        assert_eq!(r.body["details"]["kind"], "ListOptions", "{what}");
        assert_eq!(
            r.body["details"]["causes"][0]["field"], "resourceVersionMatch",
            "{what}: {}",
            r.body
        );
    }
    // Newer than anything stored: 504 with the cause client-go looks for.
    let future = "1000000000000";
    for url in [
        format!("{CMS}/a?resourceVersion={future}"),
        format!("{CMS}?resourceVersion={future}"),
        format!("{CMS}?resourceVersion={future}&resourceVersionMatch=NotOlderThan"),
        format!("{CMS}?resourceVersion={future}&resourceVersionMatch=Exact"),
        format!("{CMS}?resourceVersion={future}&limit=1"),
    ] {
        let r = s.curl(&[&url]);
        assert_status(&r, 504, "Timeout", &url);
        assert_eq!(
            r.body["details"]["causes"][0]["reason"], "ResourceVersionTooLarge",
            "{url}: {}",
            r.body
        );
        assert_eq!(r.header("retry-after"), ["1"], "{url}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("future");
    let mut w = s.watch(&format!("{CMS}?watch=1&resourceVersion={future}"), &file);
    let err = wait_event(&file, "an ERROR event", |e| e["type"] == "ERROR");
    assert_eq!(err["object"]["code"], 504, "{err}");
    assert_eq!(err["object"]["reason"], "Timeout", "{err}");
    assert_eq!(
        err["object"]["details"]["causes"][0]["reason"], "ResourceVersionTooLarge",
        "{err}"
    );
    let _ = w.kill();
    let _ = w.wait();

    // Malformed and foreign continue tokens are the client's mistake: 400.
    let secrets = s.curl(&["BASE/api/v1/namespaces/kube-system/secrets?limit=1"]);
    let page = s.curl(&[&format!("{CMS}?limit=1")]);
    let token = page.body["metadata"]["continue"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tokens = vec!["abc".to_string(), "kc1.zz".to_string(), "kc1.0".to_string()];
    if let Some(t) = secrets.body["metadata"]["continue"].as_str() {
        tokens.push(t.to_string());
    }
    // A token of the configmaps of every namespace, used in one namespace.
    let all = s.curl(&["BASE/api/v1/configmaps?limit=1"]);
    tokens.push(
        all.body["metadata"]["continue"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    for t in &tokens {
        let r = s.curl(&[&format!("{CMS}?limit=1&continue={t}")]);
        assert_status(&r, 400, "BadRequest", &format!("continue={t}"));
    }
    let r = s.curl(&[&format!("{CMS}?limit=1&continue={token}")]);
    assert_eq!(r.code, 200, "a good token still works: {}", r.body);

    // sendInitialEvents=false: only changes from now on, so the existing
    // objects never show up as ADDED.
    let file = dir.path().join("no-initial");
    let mut w = s.watch(
        &format!("{CMS}?watch=1&sendInitialEvents=false&resourceVersionMatch=NotOlderThan"),
        &file,
    );
    // The watch has started once a change made after it shows up: touch
    // one object until its MODIFIED event arrives.
    let mut n = 0;
    wait_until(
        "an event after the watch started",
        Duration::from_secs(20),
        || {
            n += 1;
            let patch = json!({"data": {"tick": n.to_string()}});
            let r = s.send(
                "PATCH",
                "application/merge-patch+json",
                &patch.to_string(),
                &format!("{CMS}/a"),
            );
            assert_eq!(r.code, 200, "{}", r.body);
            (!events(&file).is_empty()).then_some(())
        },
    );
    let seen = events(&file);
    assert!(
        seen.iter()
            .all(|e| e["type"] == "MODIFIED" && e["object"]["metadata"]["name"] == "a"),
        "initial events were sent: {seen:?}"
    );
    let _ = w.kill();
    let _ = w.wait();
}

#[test]
fn writes_without_a_resource_version_retry_instead_of_conflicting() {
    let s = Server::start();
    assert_eq!(s.json("POST", CMS, &cm("hot")).code, 201);
    let url = format!("{CMS}/hot");
    let codes: Vec<(String, u16)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let (s, url) = (&s, &url);
                sc.spawn(move || {
                    let mut codes = Vec::new();
                    for i in 0..12 {
                        let r = if t % 2 == 0 {
                            let mut obj = cm("hot");
                            obj["data"] = json!({"put": format!("{t}-{i}")});
                            s.json("PUT", url, &obj)
                        } else {
                            let patch = json!({"data": {format!("p{t}-{i}"): "x"}});
                            s.send(
                                "PATCH",
                                "application/merge-patch+json",
                                &patch.to_string(),
                                url,
                            )
                        };
                        codes.push((format!("{t}-{i}: {}", r.body), r.code));
                    }
                    codes
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let failed: Vec<&(String, u16)> = codes.iter().filter(|(_, c)| *c != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        codes.len()
    );
    // A stale resourceVersion is still a precondition, and still a 409.
    let mut stale = cm("hot");
    stale["metadata"]["resourceVersion"] = json!("1");
    let r = s.json("PUT", &url, &stale);
    assert_status(&r, 409, "Conflict", "a stale resourceVersion");
}

#[test]
fn uid_and_namespace_in_the_body_must_agree() {
    let s = Server::start();
    let created = s.json("POST", CMS, &cm("u")).body;
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let url = format!("{CMS}/u");
    let mut body = cm("u");
    body["metadata"]["uid"] = json!("not-the-uid");
    body["data"] = json!({"k": "changed"});
    let r = s.json("PUT", &url, &body);
    assert_status(&r, 409, "Conflict", "another uid");
    assert!(
        r.body["message"].as_str().unwrap_or("").contains(&format!(
            "Precondition failed: UID in precondition: not-the-uid, UID in object meta: {uid}"
        )),
        "{}",
        r.body
    );
    let mut body = cm("u");
    body["metadata"]["namespace"] = json!("kube-system");
    body["data"] = json!({"k": "changed"});
    let r = s.json("PUT", &url, &body);
    assert_status(&r, 400, "BadRequest", "another namespace");
    let r = s.send(
        "PATCH",
        "application/merge-patch+json",
        r#"{"metadata":{"namespace":"kube-system"}}"#,
        &url,
    );
    assert_status(&r, 400, "BadRequest", "a patch to another namespace");
    let now = s.curl(&[&url]).body;
    assert_eq!(now["metadata"]["uid"], uid.as_str());
    assert_eq!(now["metadata"]["namespace"], "default");
    assert_eq!(now["data"]["k"], "v", "nothing was overwritten: {now}");
    // The same uid is fine.
    let mut body = cm("u");
    body["metadata"]["uid"] = json!(uid);
    assert_eq!(s.json("PUT", &url, &body).code, 200);
}

#[test]
fn yaml_bodies_are_accepted() {
    let s = Server::start();
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n";
    let r = s.send("POST", "application/yaml", yaml, CMS);
    assert_eq!(r.code, 201, "{}", r.body);
    let r = s.send(
        "PUT",
        "application/yaml; charset=utf-8",
        &yaml.replace("\"1\"", "two"),
        &format!("{CMS}/web"),
    );
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(s.curl(&[&format!("{CMS}/web")]).body["data"]["a"], "two");
    let r = s.send("POST", "application/yaml", "a: [1", CMS);
    assert_status(&r, 400, "BadRequest", "malformed YAML");
}

#[test]
fn messages_name_the_group() {
    let s = Server::start();
    for (url, message) in [
        (
            "BASE/apis/apps/v1/namespaces/default/deployments/nope",
            r#"deployments.apps "nope" not found"#,
        ),
        (
            "BASE/api/v1/namespaces/default/configmaps/nope",
            r#"configmaps "nope" not found"#,
        ),
        (
            "BASE/apis/rbac.authorization.k8s.io/v1/clusterroles/nope",
            r#"clusterroles.rbac.authorization.k8s.io "nope" not found"#,
        ),
    ] {
        let r = s.curl(&[url]);
        assert_status(&r, 404, "NotFound", url);
        assert_eq!(r.body["message"], message, "{url}");
    }
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
    let url = "BASE/apis/apps/v1/namespaces/default/deployments";
    let r = s.json("POST", url, &dep);
    assert_status(&r, 422, "Invalid", "a deployment without a selector");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .starts_with(r#"Deployment.apps "d" is invalid"#),
        "{}",
        r.body
    );
}
