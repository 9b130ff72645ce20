//! The audit log: one JSON line per request in Kubernetes' `audit.k8s.io/v1`
//! `Event` shape at the `Metadata` level (who, what, on which object, with
//! which answer; never bodies), written to `--audit-log-path` when it is
//! set. Requests only queue their event: one task writes the file, so a
//! slow disk never holds a request. A full queue drops events and counts
//! them rather than stall the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::error::ServerError;
use crate::http::auth::UserInfo;
use crate::kinds::Kinds;
use crate::meta;

/// Events queued before new ones are dropped.
const BACKLOG: usize = 65_536;

/// The audit log of one API server.
pub struct AuditLog {
    tx: mpsc::Sender<Value>,
    /// Events dropped because the writer fell behind.
    pub dropped: AtomicU64,
    /// Events written.
    pub written: Arc<AtomicU64>,
}

/// The user a request was impersonating, inserted beside the real
/// [`UserInfo`] by the impersonation layer, so the audit event carries both.
#[derive(Clone, Debug)]
pub struct ImpersonatedUser(pub UserInfo);

impl AuditLog {
    /// Append to `path` (created owner-only if missing). A path that cannot
    /// be opened refuses start-up, naming it.
    pub async fn open(path: &Path) -> Result<Arc<AuditLog>, ServerError> {
        let err = |e: std::io::Error| ServerError::Audit(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(err)?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .await
            .map_err(err)?;
        let (tx, rx) = mpsc::channel(BACKLOG);
        let written = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_events(file, rx, path.to_path_buf(), written.clone()));
        Ok(Arc::new(AuditLog {
            tx,
            dropped: AtomicU64::new(0),
            written,
        }))
    }

    fn record(&self, event: Value) {
        if self.tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "audit log writer is behind; events dropped");
            }
        }
    }
}

/// Writes queued events as lines; flushes whenever the queue is empty, so a
/// quiet server's log is complete on disk within moments.
async fn write_events(
    file: tokio::fs::File,
    mut rx: mpsc::Receiver<Value>,
    path: PathBuf,
    written: Arc<AtomicU64>,
) {
    let mut out = tokio::io::BufWriter::new(file);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(event) = next {
            let mut line = event.to_string();
            line.push('\n');
            if let Err(e) = out.write_all(line.as_bytes()).await {
                tracing::error!(path = %path.display(), error = %e, "cannot write the audit log");
            }
            written.fetch_add(1, Ordering::Relaxed);
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush().await {
            tracing::error!(path = %path.display(), error = %e, "cannot flush the audit log");
        }
    }
}

/// Shared by the audit layer: the log and the kinds that resolve paths.
#[derive(Clone)]
pub struct AuditState {
    pub log: Arc<AuditLog>,
    pub kinds: Kinds,
}

/// The audit layer: runs inside authentication (it reads the request's
/// user) and records one event when the response starts (for a watch,
/// `ResponseStarted`: the stream may last for hours).
pub async fn audit(State(s): State<AuditState>, req: Request, next: Next) -> Response {
    let received = now_micros();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let user = req.extensions().get::<UserInfo>().cloned();
    let user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let source = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let query = crate::request::query(&uri);
    let watch =
        method == Method::GET && query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let resp = next.run(req).await;
    let impersonated = resp.extensions().get::<ImpersonatedUser>().cloned();
    let target = object_ref(&s.kinds, uri.path());
    let verb = verb(&method, target.as_ref(), watch);
    let mut event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": meta::new_uid(),
        "stage": if watch { "ResponseStarted" } else { "ResponseComplete" },
        "requestURI": uri.to_string(),
        "verb": verb,
        "user": user_json(user.as_ref()),
        "sourceIPs": source.map(|s| vec![s]).unwrap_or_default(),
        "responseStatus": {"metadata": {}, "code": resp.status().as_u16()},
        "requestReceivedTimestamp": timestamp(received),
        "stageTimestamp": timestamp(now_micros()),
    });
    if let Some(ua) = user_agent {
        event["userAgent"] = json!(ua);
    }
    if let Some(ImpersonatedUser(u)) = impersonated {
        event["impersonatedUser"] = user_json(Some(&u));
    }
    if let Some(r) = target {
        event["objectRef"] = r.to_json();
    }
    s.log.record(event);
    resp
}

fn user_json(user: Option<&UserInfo>) -> Value {
    match user {
        None => json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}),
        Some(u) => {
            let mut v = json!({"username": u.name, "groups": u.groups});
            if !u.extra.is_empty() {
                v["extra"] = json!(u.extra);
            }
            v
        }
    }
}

/// What a resource request names, as the audit event's `objectRef`.
#[derive(Debug, PartialEq, Eq)]
struct ObjectRef {
    api_group: String,
    api_version: String,
    resource: String,
    namespace: String,
    name: String,
    subresource: String,
}

impl ObjectRef {
    fn to_json(&self) -> Value {
        let mut v = json!({"resource": self.resource, "apiVersion": self.api_version});
        for (k, f) in [
            ("apiGroup", &self.api_group),
            ("namespace", &self.namespace),
            ("name", &self.name),
            ("subresource", &self.subresource),
        ] {
            if !f.is_empty() {
                v[k] = json!(f);
            }
        }
        v
    }
}

/// The object a path names, resolved as the router resolves it; `None`
/// for non-resource paths (discovery, `/openapi`, `/metrics`).
fn object_ref(kinds: &Kinds, path: &str) -> Option<ObjectRef> {
    let segs = crate::request::segments(path);
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return None,
    };
    // Resolved as the router resolves it, so the event names what was served.
    let t = crate::request::RequestTarget::resolve(kinds, group, version, rest).ok()?;
    let name = t.name.clone().unwrap_or_default();
    // `namespaces/{name}` names the namespace itself.
    let namespace = if t.rt.plural == "namespaces" {
        name.clone()
    } else {
        t.namespace.clone().unwrap_or_default()
    };
    Some(ObjectRef {
        api_group: group.to_string(),
        api_version: version.to_string(),
        resource: t.rt.plural.to_string(),
        namespace,
        name,
        subresource: t
            .subresource
            .map(|s| s.name().to_string())
            .unwrap_or_default(),
    })
}

/// Kubernetes' verb: of the object or collection for resource requests,
/// the lowercase method otherwise.
fn verb(method: &Method, target: Option<&ObjectRef>, watch: bool) -> String {
    let Some(t) = target else {
        return method.as_str().to_ascii_lowercase();
    };
    let named = !t.name.is_empty();
    match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => return method.as_str().to_ascii_lowercase(),
    }
    .to_string()
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// RFC 3339 with microseconds, as Kubernetes writes audit timestamps.
fn timestamp(micros: u64) -> String {
    let secs = meta::rfc3339((micros / 1_000_000) as i64);
    format!("{}.{:06}Z", secs.trim_end_matches('Z'), micros % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Kinds {
        crate::kinds::Kinds::builtin()
    }

    #[test]
    fn paths_resolve_to_the_object_they_name() {
        let k = kinds();
        let r = object_ref(&k, "/api/v1/namespaces/default/pods/web/status").unwrap();
        assert_eq!(
            r,
            ObjectRef {
                api_group: "".into(),
                api_version: "v1".into(),
                resource: "pods".into(),
                namespace: "default".into(),
                name: "web".into(),
                subresource: "status".into(),
            }
        );
        let r = object_ref(&k, "/apis/apps/v1/deployments").unwrap();
        assert_eq!(
            (r.api_group.as_str(), r.resource.as_str()),
            ("apps", "deployments")
        );
        assert_eq!(r.name, "");
        let ns = object_ref(&k, "/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(
            (
                ns.resource.as_str(),
                ns.name.as_str(),
                ns.namespace.as_str()
            ),
            ("namespaces", "kube-system", "kube-system")
        );
        assert_eq!(object_ref(&k, "/apis"), None);
        assert_eq!(object_ref(&k, "/api/v1"), None);
        assert_eq!(object_ref(&k, "/openapi/v2"), None);
    }

    #[test]
    fn verbs_are_kubernetes_verbs() {
        let k = kinds();
        let one = object_ref(&k, "/api/v1/namespaces/d/pods/p");
        let all = object_ref(&k, "/api/v1/namespaces/d/pods");
        assert_eq!(verb(&Method::GET, one.as_ref(), false), "get");
        assert_eq!(verb(&Method::GET, all.as_ref(), false), "list");
        assert_eq!(verb(&Method::GET, all.as_ref(), true), "watch");
        assert_eq!(verb(&Method::POST, all.as_ref(), false), "create");
        assert_eq!(
            verb(&Method::DELETE, all.as_ref(), false),
            "deletecollection"
        );
        assert_eq!(verb(&Method::GET, None, false), "get");
    }

    #[test]
    fn timestamps_carry_microseconds() {
        assert_eq!(
            timestamp(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
    }

    #[tokio::test]
    async fn events_are_written_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit").join("audit.log");
        let log = AuditLog::open(&path).await.unwrap();
        log.record(json!({"kind": "Event", "n": 1}));
        log.record(json!({"kind": "Event", "n": 2}));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() == 2 {
                assert_eq!(lines[1]["n"], 2);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "audit lines not written: {text:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
