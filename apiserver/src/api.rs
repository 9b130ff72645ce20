//! The generic registry behind every REST path: parses the path into a
//! resource request, and runs get, list, watch, create, update, patch and
//! delete on the event log with the kind's strategy. Discovery is served here
//! too, from the same resource table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use keel_store::{
    Consistency, KeyValue, Member, Op, RangeRequest, StoreError, WatchMessage, WatchStart,
};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::kinds::{self, ResourceType};
use crate::meta;

/// Largest request body accepted (the store's own value limit is 1.5 MiB).
pub const MAX_BODY: usize = 3 << 20;

/// Shared by every request.
pub struct ApiState {
    pub member: Arc<Member>,
    pub types: &'static [ResourceType],
    /// Watch events decoded and encoded once for all watchers.
    prepared: Arc<crate::prepared::PreparedEvents>,
}

/// A parsed resource path.
struct Target {
    rt: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

type Query = BTreeMap<String, String>;

fn query(uri: &Uri) -> Query {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0.into_iter().collect())
        .unwrap_or_default()
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

impl ApiState {
    pub fn new(member: Arc<Member>) -> ApiState {
        ApiState {
            member,
            types: kinds::all(),
            prepared: Arc::default(),
        }
    }

    fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Entry point for every `/api` and `/apis` request.
    pub async fn handle(
        self: Arc<Self>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        match self.route(&method, &uri, &headers, body).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn route(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let segs: Vec<&str> = uri
            .path()
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api"] | ["apis"] if wants_aggregated(headers) => {
                return Ok(self.aggregated(segs[0] == "api"));
            }
            ["api"] => return Ok(json_response(StatusCode::OK, &self.api_versions(headers))),
            ["apis"] => return Ok(json_response(StatusCode::OK, &self.group_list())),
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g] => return self.group(g).map(|v| json_response(StatusCode::OK, &v)),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => return Err(ApiError::NoRoute),
        };
        if rest.is_empty() {
            return self
                .resource_list(group, version)
                .map(|v| json_response(StatusCode::OK, &v));
        }
        // namespaces/{ns}/{plural}/... is namespaced unless it names the namespace itself.
        let (namespace, rest) = match rest {
            ["namespaces", ns, plural, tail @ ..]
                if self
                    .find(group, version, plural)
                    .is_some_and(|t| t.namespaced) =>
            {
                (Some(ns.to_string()), [&[*plural][..], tail].concat())
            }
            _ => (None, rest.to_vec()),
        };
        let rt = self
            .find(group, version, rest[0])
            .ok_or(ApiError::NoRoute)?;
        if rest.len() > 3 {
            return Err(ApiError::NoRoute);
        }
        let t = Target {
            rt,
            namespace,
            name: rest.get(1).map(|s| s.to_string()),
            subresource: rest.get(2).map(|s| s.to_string()),
        };
        let q = query(uri);
        let table = wants_table(headers).map(|o| table_opts_from_query(o, &q));
        if let (Some(sub), Some(name)) = (t.subresource.clone(), t.name.clone()) {
            return match (sub.as_str(), method.clone()) {
                ("status", _) if !t.rt.has_status() => Err(ApiError::NoRoute),
                ("scale", _) if !t.rt.has_scale() => Err(ApiError::NoRoute),
                ("binding", Method::POST) if t.rt.kind == "Pod" => {
                    self.bind(&t, &name, &q, body).await
                }
                ("status", Method::GET) => self.get(&t, &name, &q, table).await,
                ("status", Method::PUT) => self.update(&t, &name, &q, headers, body).await,
                ("status", Method::PATCH) => self.patch(&t, &name, &q, headers, body).await,
                ("scale", Method::GET) => {
                    let (kv, obj) = self.current(&t, &name).await?;
                    Ok(json_response(
                        StatusCode::OK,
                        &scale_of(&obj, kv.mod_revision),
                    ))
                }
                ("scale", Method::PUT | Method::PATCH) => {
                    self.scale(&t, &name, &q, method.clone(), headers, body)
                        .await
                }
                ("status" | "scale", _) => Err(ApiError::MethodNotAllowed),
                _ => Err(ApiError::NoRoute),
            };
        }
        if t.subresource.is_some() {
            return Err(ApiError::NoRoute);
        }
        match (method.clone(), &t.name) {
            (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
                self.watch(&t, &q, table).await
            }
            (Method::GET, None) => self.list(&t, &q, table).await,
            (Method::GET, Some(name)) => self.get(&t, name, &q, table).await,
            (Method::POST, None) => self.create(&t, &q, headers, body).await,
            (Method::PUT, Some(name)) => self.update(&t, name, &q, headers, body).await,
            (Method::PATCH, Some(name)) => self.patch(&t, name, &q, headers, body).await,
            (Method::DELETE, Some(name)) => self.delete(&t, name, &q, body).await,
            (Method::DELETE, None) => self.delete_collection(&t, &q).await,
            _ => Err(ApiError::MethodNotAllowed),
        }
    }

    // ---- discovery -------------------------------------------------------

    /// Aggregated discovery (`apidiscovery.k8s.io/v2`): every resource of the
    /// core group (`/api`) or of the named groups (`/apis`) in one answer.
    fn aggregated(&self, core: bool) -> Response {
        let mut items = Vec::new();
        let groups: Vec<&'static str> = if core {
            vec![""]
        } else {
            self.groups().into_iter().map(|(g, _)| g).collect()
        };
        for group in groups {
            let mut versions = Vec::new();
            let mut seen = Vec::new();
            for t in self.types.iter().filter(|t| t.group == group) {
                if seen.contains(&t.version) {
                    continue;
                }
                seen.push(t.version);
                let resources: Vec<Value> = self
                    .types
                    .iter()
                    .filter(|r| r.group == group && r.version == t.version)
                    .map(|r| {
                        let kind = |k: &str| json!({"group": r.group, "version": r.version, "kind": k});
                        let mut subs = Vec::new();
                        if r.has_status() {
                            subs.push(json!({"subresource": "status", "responseKind": kind(r.kind), "verbs": ["get", "patch", "update"]}));
                        }
                        if r.has_scale() {
                            subs.push(json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]}));
                        }
                        if r.kind == "Pod" {
                            subs.push(json!({"subresource": "binding", "responseKind": {"group": "", "version": "v1", "kind": "Binding"}, "verbs": ["create"]}));
                        }
                        let mut v = json!({
                            "resource": r.plural,
                            "responseKind": kind(r.kind),
                            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": r.singular,
                            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                            "subresources": subs,
                        });
                        if !r.short_names.is_empty() {
                            v["shortNames"] = json!(r.short_names);
                        }
                        if !r.categories.is_empty() {
                            v["categories"] = json!(r.categories);
                        }
                        v
                    })
                    .collect();
                versions.push(
                    json!({"version": t.version, "freshness": "Current", "resources": resources}),
                );
            }
            items.push(json!({"metadata": {"name": group}, "versions": versions}));
        }
        let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            )],
            body.to_string(),
        )
            .into_response()
    }

    fn api_versions(&self, _headers: &HeaderMap) -> Value {
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
    }

    fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for t in self.types.iter().filter(|t| !t.group.is_empty()) {
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, vs)) if !vs.contains(&t.version) => vs.push(t.version),
                Some(_) => {}
                None => out.push((t.group, vec![t.version])),
            }
        }
        out
    }

    fn group_json(group: &str, versions: &[&str]) -> Value {
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
    }

    fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .iter()
            .map(|(g, vs)| Self::group_json(g, vs))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    fn group(&self, group: &str) -> Result<Value, ApiError> {
        let groups = self.groups();
        let (g, vs) = groups
            .iter()
            .find(|(g, _)| *g == group)
            .ok_or(ApiError::NoRoute)?;
        let mut v = Self::group_json(g, vs);
        v["kind"] = json!("APIGroup");
        v["apiVersion"] = json!("v1");
        Ok(v)
    }

    fn resource_list(&self, group: &str, version: &str) -> Result<Value, ApiError> {
        let types: Vec<&'static ResourceType> = self
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .collect();
        if types.is_empty() {
            return Err(ApiError::NoRoute);
        }
        let resources: Vec<Value> = types
            .iter()
            .map(|t| {
                let mut r = json!({
                    "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                });
                if !t.short_names.is_empty() {
                    r["shortNames"] = json!(t.short_names);
                }
                if !t.categories.is_empty() {
                    r["categories"] = json!(t.categories);
                }
                r
            })
            .chain(types.iter().filter(|t| t.has_status()).map(|t| {
                json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]})
            }))
            .chain(types.iter().filter(|t| t.kind == "Pod").map(|t| {
                json!({"name": format!("{}/binding", t.plural), "singularName": "", "namespaced": true, "kind": "Binding", "verbs": ["create"]})
            }))
            .chain(types.iter().filter(|t| t.has_scale()).map(|t| {
                json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": t.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
            }))
            .collect();
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Ok(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    }

    // ---- reads -------------------------------------------------------------

    fn decode(&self, kv: &KeyValue) -> Result<Value, ApiError> {
        let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
            ApiError::Internal(format!("stored object {} does not decode: {e}", kv.key))
        })?;
        obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        Ok(obj)
    }

    fn not_found(t: &Target, name: &str) -> ApiError {
        ApiError::NotFound {
            group: t.rt.group.into(),
            resource: t.rt.plural.into(),
            name: name.into(),
        }
    }

    async fn get(
        &self,
        t: &Target,
        name: &str,
        q: &Query,
        table: Option<TableOpts>,
    ) -> Result<Response, ApiError> {
        let consistency = if q.get("resourceVersion").is_some_and(|rv| rv == "0") {
            Consistency::Local
        } else {
            Consistency::Linearizable
        };
        let (kv, _) = self
            .member
            .get(&t.rt.key(t.namespace.as_deref(), name), consistency)
            .await?;
        let obj = self.decode(&kv.ok_or_else(|| Self::not_found(t, name))?)?;
        Ok(match table {
            Some(opts) => json_response(
                StatusCode::OK,
                &render_table(t.rt, &[obj], None, None, opts),
            ),
            None => json_response(StatusCode::OK, &obj),
        })
    }

    async fn list(
        &self,
        t: &Target,
        q: &Query,
        table: Option<TableOpts>,
    ) -> Result<Response, ApiError> {
        let (labels, fields) = selectors(q)?;
        let limit: usize = match q.get("limit") {
            Some(l) => l
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid limit {l:?}")))?,
            None => 0,
        };
        let rv = q.get("resourceVersion").filter(|s| !s.is_empty());
        let rv_num = rv
            .filter(|r| *r != "0")
            .map(|r| {
                r.parse::<u64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {r:?}")))
            })
            .transpose()?;
        let cont = q.get("continue").filter(|s| !s.is_empty()).cloned();
        if cont.is_some() && rv_num.is_some() {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        let exact = q.get("resourceVersionMatch").map(String::as_str) == Some("Exact")
            || (limit > 0 && cont.is_none() && rv_num.is_some());
        let mut req = RangeRequest::prefix(t.rt.prefix(t.namespace.as_deref()));
        req.consistency = if rv.is_some_and(|r| r == "0") {
            Consistency::Local
        } else {
            Consistency::Linearizable
        };
        req.revision = if exact { rv_num } else { None };
        req.continue_token = cont;
        // Tables need every object at once; plain lists encode each object
        // as soon as it is read and keep only the bytes, so a LIST of many
        // objects never holds them all as JSON values.
        let mut items = Vec::new();
        let mut encoded: Vec<u8> = Vec::new();
        let mut count = 0usize;
        let (revision, token) = loop {
            req.limit = if limit == 0 { 0 } else { limit - count };
            let resp = self.member.range(req.clone()).await?;
            if table.is_none() {
                let bytes: usize = resp.kvs.iter().map(|kv| kv.value.len() + 40).sum();
                encoded.reserve(bytes);
            }
            for kv in &resp.kvs {
                if !may_match(&kv.value, &fields) {
                    continue;
                }
                let obj = self.decode(kv)?;
                if matches(&obj, &labels, &fields) {
                    count += 1;
                    if table.is_some() {
                        items.push(obj);
                    } else {
                        if count > 1 {
                            encoded.push(b',');
                        }
                        serde_json::to_writer(&mut encoded, &obj)
                            .map_err(|e| ApiError::Internal(format!("encoding a list: {e}")))?;
                    }
                }
            }
            let token = resp.continue_token;
            if token.is_none() || (limit > 0 && count >= limit) {
                break (resp.revision, token);
            }
            // Later pages continue at the first page's revision (the token pins it).
            req.continue_token = token;
            req.revision = None;
        };
        if let Some(opts) = table {
            return Ok(json_response(
                StatusCode::OK,
                &render_table(t.rt, &items, Some(revision), token.as_deref(), opts),
            ));
        }
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if let Some(tok) = token {
            meta["continue"] = json!(tok);
        }
        let head = json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": meta})
            .to_string();
        let mut body = Vec::with_capacity(head.len() + encoded.len() + 16);
        // `head` is an object: reopen it to append the items.
        body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        body.extend_from_slice(b",\"items\":[");
        body.extend_from_slice(&encoded);
        drop(encoded);
        body.extend_from_slice(b"]}");
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response())
    }

    async fn watch(
        &self,
        t: &Target,
        q: &Query,
        table: Option<TableOpts>,
    ) -> Result<Response, ApiError> {
        let (labels, fields) = selectors(q)?;
        let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(1800));
        let prefix = t.rt.prefix(t.namespace.as_deref());
        let rv = q
            .get("resourceVersion")
            .filter(|s| !s.is_empty() && *s != "0");
        let explicit_initial = q.get("sendInitialEvents").is_some_and(|s| s == "true");
        let send_initial = q
            .get("sendInitialEvents")
            .map(|s| s == "true")
            .unwrap_or(rv.is_none());
        // Start: an exact revision, or now with the current state as ADDED events.
        let mut initial = Vec::new();
        let start = match rv {
            Some(r) if !send_initial => r
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {r:?}")))?,
            _ => {
                let mut req = RangeRequest::prefix(prefix.clone());
                req.consistency = Consistency::Linearizable;
                let resp = self.member.range(req).await?;
                for kv in &resp.kvs {
                    let obj = self.decode(kv)?;
                    if matches(&obj, &labels, &fields) {
                        initial.push(json!({"type": "ADDED", "object": obj}));
                    }
                }
                resp.revision
            }
        };
        let rt_kind = t.rt.kind;
        let api_version = t.rt.api_version();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
        let stream = self.member.watch(prefix, WatchStart::After(start));
        let rt = t.rt;
        let prepared = self.prepared.clone();
        let line = move |mut ev: Value| -> Bytes {
            if let Some(opts) = table
                && ev["type"] != "ERROR"
                && ev["type"] != "BOOKMARK"
            {
                let obj = ev["object"].take();
                ev["object"] = render_table(rt, &[obj], None, None, opts);
            }
            let mut s = ev.to_string();
            s.push('\n');
            Bytes::from(s)
        };
        match stream {
            Err(e) => {
                let err = ApiError::from(e);
                let _ = tx
                    .send(Ok(line(json!({"type": "ERROR", "object": err.status()}))))
                    .await;
            }
            Ok(mut stream) => {
                // With sendInitialEvents=true (watch-list) the initial events end
                // with a bookmark annotated k8s.io/initial-events-end.
                let end_bookmark = explicit_initial.then(|| {
                    json!({"type": "BOOKMARK", "object": {
                        "kind": rt_kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": start.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}},
                    }})
                });
                tokio::spawn(async move {
                    for ev in initial.into_iter().chain(end_bookmark) {
                        if tx.send(Ok(line(ev))).await.is_err() {
                            return;
                        }
                    }
                    let deadline = tokio::time::Instant::now() + timeout;
                    loop {
                        let msg = tokio::select! {
                            m = stream.next() => m,
                            _ = tokio::time::sleep_until(deadline) => return,
                            _ = tx.closed() => return,
                        };
                        let (lines, end): (Vec<Bytes>, bool) = match msg {
                            None => return,
                            Some(Err(e)) => (
                                vec![line(
                                    json!({"type": "ERROR", "object": ApiError::from(e).status()}),
                                )],
                                true,
                            ),
                            Some(Ok(WatchMessage::Progress { revision })) if bookmarks => (
                                vec![line(json!({
                                    "type": "BOOKMARK",
                                    "object": {"kind": rt_kind, "apiVersion": api_version, "metadata": {"resourceVersion": revision.to_string()}},
                                }))],
                                false,
                            ),
                            Some(Ok(WatchMessage::Progress { .. })) => (vec![], false),
                            Some(Ok(WatchMessage::Events { events, .. })) => {
                                let mut lines = Vec::new();
                                for e in events.iter() {
                                    let p = prepared.get(e);
                                    if let Some((kind, obj)) = watch_event(&p, &labels, &fields) {
                                        lines.push(if table.is_some() {
                                            line(json!({"type": kind, "object": obj.value.clone()}))
                                        } else {
                                            crate::prepared::line(kind, &obj.json)
                                        });
                                    }
                                }
                                (lines, false)
                            }
                        };
                        for l in lines {
                            if tx.send(Ok(l)).await.is_err() {
                                return;
                            }
                        }
                        if end {
                            return;
                        }
                    }
                });
            }
        }
        let body = Body::from_stream(tokio_stream_from(rx));
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(body)
            .expect("static response parts"))
    }

    // ---- writes ----------------------------------------------------------------

    fn parse_body(
        &self,
        t: &Target,
        headers: &HeaderMap,
        body: &Bytes,
        patch: bool,
    ) -> Result<Value, ApiError> {
        if body.len() > MAX_BODY {
            return Err(ApiError::TooLarge {
                size: body.len(),
                limit: MAX_BODY,
            });
        }
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        let base = ct.split(';').next().unwrap_or("").trim();
        if !patch && base != "application/json" && base != "*/*" && !base.is_empty() {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (got {base})"
            )));
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
        })?;
        if !v.is_object() {
            return Err(ApiError::BadRequest(format!(
                "the request body must be a JSON object describing a {}",
                t.rt.kind
            )));
        }
        Ok(v)
    }

    /// Decode into the kind's Kubernetes type (a wrong type is a 400 naming
    /// the field), drop unknown fields from `obj`, and apply `fieldValidation`
    /// (Strict: refuse, Warn (default): warn, Ignore). Returns the warnings to
    /// send back as `Warning` headers.
    fn field_validation(t: &Target, obj: &mut Value, q: &Query) -> Result<Vec<String>, ApiError> {
        let check = crate::typed::check_for(t.rt.group, t.rt.kind).ok_or_else(|| {
            ApiError::Internal(format!("no Kubernetes type is known for {}", t.rt.kind))
        })?;
        let known = check(obj).map_err(|e| {
            ApiError::BadRequest(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: {msg} (field {path})",
                kind = t.rt.kind,
                v = t.rt.version,
                msg = e.message,
                path = e.path
            ))
        })?;
        let (unknown, pruned) = crate::typed::prune(obj, &known);
        *obj = pruned;
        if unknown.is_empty() {
            return Ok(vec![]);
        }
        let listed: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        match q.get("fieldValidation").map(String::as_str) {
            Some("Strict") => Err(ApiError::BadRequest(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                listed.join(", "),
                kind = t.rt.kind,
                v = t.rt.version
            ))),
            Some("Ignore") => Ok(vec![]),
            _ => Ok(listed),
        }
    }

    /// apiVersion and kind must name the URL's type; missing ones are taken
    /// from the URL, as Kubernetes does (the Python client omits them).
    fn check_type(t: &Target, obj: &mut Value) -> Result<(), ApiError> {
        let av = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if (!av.is_empty() && av != t.rt.api_version()) || (!kind.is_empty() && kind != t.rt.kind) {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({}), or the kind ({kind}) does not match {}",
                t.rt.api_version(),
                t.rt.kind
            )));
        }
        obj["apiVersion"] = json!(t.rt.api_version());
        obj["kind"] = json!(t.rt.kind);
        Ok(())
    }

    async fn namespace_exists(&self, ns: &str) -> Result<(), ApiError> {
        let ns_type = self
            .find("", "v1", "namespaces")
            .expect("namespaces are served");
        let (kv, _) = self
            .member
            .get(&ns_type.key(None, ns), Consistency::Linearizable)
            .await?;
        match kv {
            Some(_) => Ok(()),
            None => Err(ApiError::NotFound {
                group: String::new(),
                resource: "namespaces".into(),
                name: ns.into(),
            }),
        }
    }

    /// Field errors of an object, and on update of the change from `old`.
    fn validate(t: &Target, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        let mut causes = meta::validate_meta(obj, t.rt.namespaced, t.rt.strategy.name_rule());
        causes.extend(t.rt.strategy.validate(obj));
        if let Some(old) = old {
            causes.extend(t.rt.strategy.validate_update(obj, old));
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid {
                group: t.rt.group.into(),
                kind: t.rt.kind.into(),
                name: obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                causes,
            })
        }
    }

    async fn create(
        &self,
        t: &Target,
        q: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let mut obj = self.parse_body(t, headers, &body, false)?;
        Self::check_type(t, &mut obj)?;
        let warnings = Self::field_validation(t, &mut obj, q)?;
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        if t.rt.namespaced {
            let ns = t
                .namespace
                .clone()
                .ok_or_else(|| ApiError::BadRequest("a namespace is required".into()))?;
            match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
                }
                _ => obj["metadata"]["namespace"] = json!(ns),
            }
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty()
            && let Some(g) = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
        {
            let suffix: String = meta::new_uid()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(5)
                .collect();
            obj["metadata"]["name"] = json!(format!("{g}{suffix}"));
        }
        let m = obj["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        for f in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            m.remove(f);
        }
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert(
            "creationTimestamp".into(),
            json!(meta::rfc3339(meta::now_secs())),
        );
        if obj.get("spec").is_some() {
            obj["metadata"]["generation"] = json!(1);
        }
        t.rt.strategy.prepare_create(&mut obj);
        Self::validate(t, &obj, None)?;
        if let Some(ns) = &t.namespace {
            self.namespace_exists(ns).await?;
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if q.get("dryRun").is_some_and(|d| d == "All") {
            // A dry run answers as the write would: an existing name is a conflict.
            if self.current(t, &name).await.is_ok() {
                return Err(ApiError::AlreadyExists {
                    group: t.rt.group.into(),
                    resource: t.rt.plural.into(),
                    name,
                });
            }
            return Ok(with_warnings(
                json_response(StatusCode::CREATED, &obj),
                &warnings,
            ));
        }
        let uid = obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = t.rt.key(t.namespace.as_deref(), &name);
        match self
            .member
            .txn(vec![
                Op::create(key, obj.to_string().into_bytes()).with_uid(uid),
            ])
            .await
        {
            Ok(rev) => {
                obj["metadata"]["resourceVersion"] = json!(rev.to_string());
                Ok(with_warnings(
                    json_response(StatusCode::CREATED, &obj),
                    &warnings,
                ))
            }
            Err(StoreError::Precondition(_)) => Err(ApiError::AlreadyExists {
                group: t.rt.group.into(),
                resource: t.rt.plural.into(),
                name,
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn current(&self, t: &Target, name: &str) -> Result<(KeyValue, Value), ApiError> {
        let (kv, _) = self
            .member
            .get(
                &t.rt.key(t.namespace.as_deref(), name),
                Consistency::Linearizable,
            )
            .await?;
        let kv = kv.ok_or_else(|| Self::not_found(t, name))?;
        let obj = self.decode(&kv)?;
        Ok((kv, obj))
    }

    /// Write `new` over `old` (both full objects), or report a conflict.
    async fn replace(
        &self,
        t: &Target,
        name: &str,
        kv: &KeyValue,
        old: &Value,
        mut new: Value,
        q: &Query,
    ) -> Result<Response, ApiError> {
        Self::check_type(t, &mut new)?;
        let warnings = Self::field_validation(t, &mut new, q)?;
        if new.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                new.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )));
        }
        if let Some(rv) = new
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            let rv: u64 = rv
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?;
            if rv != kv.mod_revision {
                return Err(self.conflict(t, name));
            }
        }
        // The main resource never changes status; /status changes only status.
        if t.rt.has_status() {
            if t.subresource.as_deref() == Some("status") {
                let status = new.get("status").cloned();
                let rv = new["metadata"]["resourceVersion"].clone();
                new = old.clone();
                new["metadata"]["resourceVersion"] = rv;
                match status {
                    Some(st) => new["status"] = st,
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            } else {
                match old.get("status") {
                    Some(st) => new["status"] = st.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
        }
        // Fields the system owns are kept from the stored object.
        for f in [
            "uid",
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "generation",
        ] {
            match old["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        t.rt.strategy.prepare_update(&mut new, old);
        if new.get("spec").is_some() && new.get("spec") != old.get("spec") {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            new["metadata"]["generation"] = json!(g);
        }
        Self::validate(t, &new, Some(old))?;
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == *old || q.get("dryRun").is_some_and(|d| d == "All") {
            // A no-op write keeps the resourceVersion.
            return Ok(with_warnings(
                json_response(StatusCode::OK, &new),
                &warnings,
            ));
        }
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        let key = t.rt.key(t.namespace.as_deref(), name);
        match self
            .member
            .txn(vec![
                Op::update(key, new.to_string().into_bytes()).if_mod_revision(kv.mod_revision),
            ])
            .await
        {
            Ok(rev) => {
                new["metadata"]["resourceVersion"] = json!(rev.to_string());
                Ok(with_warnings(
                    json_response(StatusCode::OK, &new),
                    &warnings,
                ))
            }
            Err(StoreError::Precondition(_)) => Err(self.conflict(t, name)),
            Err(e) => Err(e.into()),
        }
    }

    fn conflict(&self, t: &Target, name: &str) -> ApiError {
        ApiError::Conflict {
            group: t.rt.group.into(),
            resource: t.rt.plural.into(),
            name: name.into(),
            message: "the object has been modified; please apply your changes to the latest version and try again".into(),
        }
    }

    async fn update(
        &self,
        t: &Target,
        name: &str,
        q: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let new = self.parse_body(t, headers, &body, false)?;
        let (kv, old) = self.current(t, name).await?;
        self.replace(t, name, &kv, &old, new, q).await
    }

    async fn patch(
        &self,
        t: &Target,
        name: &str,
        q: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let base = ct.split(';').next().unwrap_or("").trim().to_string();
        let patch: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the patch is not valid JSON: {e}")))?;
        // Optimistic retry: a concurrent writer makes the compare-and-swap fail.
        for _ in 0..5 {
            let (kv, old) = self.current(t, name).await?;
            let mut new = old.clone();
            match base.as_str() {
                "application/merge-patch+json" => crate::patch::merge(&mut new, &patch),
                // Without lists or directives a strategic merge patch means the
                // same as a merge patch; list merge keys are not supported yet.
                "application/strategic-merge-patch+json"
                    if crate::patch::smp_is_plain_merge(&patch) =>
                {
                    crate::patch::merge(&mut new, &patch)
                }
                "application/json-patch+json" => {
                    crate::patch::json_patch(&mut new, &patch).map_err(ApiError::BadRequest)?
                }
                other => {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (got {other})"
                    )));
                }
            }
            // A patch that names a resourceVersion is a precondition; otherwise it applies to the latest.
            if patch.pointer("/metadata/resourceVersion").is_none() {
                new["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
            }
            match self.replace(t, name, &kv, &old, new, q).await {
                Err(ApiError::Conflict { .. })
                    if patch.pointer("/metadata/resourceVersion").is_none() =>
                {
                    continue;
                }
                r => return r,
            }
        }
        Err(self.conflict(t, name))
    }

    /// POST `pods/{name}/binding`: assign the pod to a node, once.
    async fn bind(
        &self,
        t: &Target,
        name: &str,
        q: &Query,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let binding: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
        })?;
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::Invalid {
                group: String::new(),
                kind: "Binding".into(),
                name: name.into(),
                causes: vec![crate::error::Cause::required("target.name")],
            })?
            .to_string();
        let (kv, old) = self.current(t, name).await?;
        if let Some(current) = old
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::Conflict {
                group: String::new(),
                resource: "pods/binding".into(),
                name: name.into(),
                message: format!("pod {name} is already assigned to node \"{current}\""),
            });
        }
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!(node);
        new["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        let main = Target {
            rt: t.rt,
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            subresource: None,
        };
        self.replace(&main, name, &kv, &old, new, q).await?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }

    /// PUT or PATCH of `/scale`: only `spec.replicas` of the resource changes.
    async fn scale(
        &self,
        t: &Target,
        name: &str,
        q: &Query,
        method: Method,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let body: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
        })?;
        let (kv, old) = self.current(t, name).await?;
        let current = scale_of(&old, kv.mod_revision);
        let wanted = if method == Method::PUT {
            body
        } else {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let mut s = current.clone();
            match ct.split(';').next().unwrap_or("").trim() {
                "application/json-patch+json" => {
                    crate::patch::json_patch(&mut s, &body).map_err(ApiError::BadRequest)?
                }
                "application/merge-patch+json" => crate::patch::merge(&mut s, &body),
                "application/strategic-merge-patch+json"
                    if crate::patch::smp_is_plain_merge(&body) =>
                {
                    crate::patch::merge(&mut s, &body)
                }
                other => {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "unsupported patch type {other}"
                    )));
                }
            }
            s
        };
        let invalid = |cause| ApiError::Invalid {
            group: "autoscaling".into(),
            kind: "Scale".into(),
            name: name.into(),
            causes: vec![cause],
        };
        let replicas = wanted
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid(crate::error::Cause::required("spec.replicas")))?;
        if replicas < 0 {
            return Err(invalid(crate::error::Cause::invalid(
                "spec.replicas",
                "must be greater than or equal to 0",
            )));
        }
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        // A resourceVersion in the Scale is a precondition on the resource.
        new["metadata"]["resourceVersion"] = wanted
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(json!(kv.mod_revision.to_string()));
        let main = Target {
            rt: t.rt,
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            subresource: None,
        };
        self.replace(&main, name, &kv, &old, new, q).await?;
        let (kv, obj) = self.current(t, name).await?;
        Ok(json_response(
            StatusCode::OK,
            &scale_of(&obj, kv.mod_revision),
        ))
    }

    async fn delete(
        &self,
        t: &Target,
        name: &str,
        q: &Query,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let opts: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
        };
        let (kv, obj) = self.current(t, name).await?;
        if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
            && obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
        {
            return Err(ApiError::Conflict {
                group: t.rt.group.into(),
                resource: t.rt.plural.into(),
                name: name.into(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    obj.pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ),
            });
        }
        if let Some(rv) = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && rv != kv.mod_revision.to_string()
        {
            return Err(self.conflict(t, name));
        }
        if q.get("dryRun").is_some_and(|d| d == "All")
            || opts
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|d| d == "All"))
        {
            return Ok(json_response(StatusCode::OK, &obj));
        }
        let finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let key = t.rt.key(t.namespace.as_deref(), name);
        if finalizers {
            // Kept until its finalizers are removed; marked for deletion now.
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(json_response(StatusCode::ACCEPTED, &obj));
            }
            let mut marked = obj.clone();
            marked["metadata"]["deletionTimestamp"] = json!(meta::rfc3339(meta::now_secs()));
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if let Some(m) = marked["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            let rev = self
                .member
                .txn(vec![
                    Op::update(key, marked.to_string().into_bytes())
                        .if_mod_revision(kv.mod_revision),
                ])
                .await
                .map_err(|e| match e {
                    StoreError::Precondition(_) => self.conflict(t, name),
                    e => e.into(),
                })?;
            marked["metadata"]["resourceVersion"] = json!(rev.to_string());
            return Ok(json_response(StatusCode::ACCEPTED, &marked));
        }
        match self
            .member
            .txn(vec![Op::delete(key).if_mod_revision(kv.mod_revision)])
            .await
        {
            Ok(_) => Ok(json_response(StatusCode::OK, &obj)),
            Err(StoreError::Precondition(f)) if f.current.is_none() => {
                Err(Self::not_found(t, name))
            }
            Err(StoreError::Precondition(_)) => Err(self.conflict(t, name)),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_collection(&self, t: &Target, q: &Query) -> Result<Response, ApiError> {
        let (labels, fields) = selectors(q)?;
        let resp = self
            .member
            .range(RangeRequest::prefix(t.rt.prefix(t.namespace.as_deref())))
            .await?;
        let mut deleted = Vec::new();
        for kv in &resp.kvs {
            let obj = self.decode(kv)?;
            if !matches(&obj, &labels, &fields) {
                continue;
            }
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            let target = Target {
                rt: t.rt,
                namespace: ns,
                name: Some(name.clone()),
                subresource: None,
            };
            match self.delete(&target, &name, q, Bytes::new()).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => deleted.push(obj),
                Err(e) => return Err(e),
            }
        }
        Ok(json_response(
            StatusCode::OK,
            &json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {"resourceVersion": resp.revision.to_string()}, "items": deleted}),
        ))
    }
}

/// Add `Warning` headers, as kubectl prints them.
fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("299 - {w:?}")) {
            r.headers_mut().append("warning", v);
        }
    }
    r
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// The `autoscaling/v1` Scale of a resource with `spec.replicas`.
fn scale_of(obj: &Value, revision: u64) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "uid": obj.pointer("/metadata/uid"),
            "resourceVersion": revision.to_string(),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// The label and field selectors of a request.
fn selectors(q: &Query) -> Result<(Vec<meta::Requirement>, Vec<meta::FieldRequirement>), ApiError> {
    let labels = q
        .get("labelSelector")
        .map(|s| meta::parse_label_selector(s))
        .transpose()?
        .unwrap_or_default();
    let fields = q
        .get("fieldSelector")
        .map(|s| meta::parse_field_selector(s))
        .transpose()?
        .unwrap_or_default();
    Ok((labels, fields))
}

/// The type of watch event a prepared store event is for this watcher,
/// with the object to send, or `None` when neither version matches.
fn watch_event<'a>(
    p: &'a crate::prepared::Prepared,
    labels: &[meta::Requirement],
    fields: &[meta::FieldRequirement],
) -> Option<(&'static str, &'a crate::prepared::Object)> {
    let new_match = p
        .new
        .as_ref()
        .is_some_and(|o| matches(&o.value, labels, fields));
    let old_match = p
        .old
        .as_ref()
        .is_some_and(|o| matches(&o.value, labels, fields));
    // An object leaving the selection is DELETED for this watcher, entering it ADDED.
    match (&p.new, new_match, old_match) {
        (Some(o), true, true) => Some(("MODIFIED", o)),
        (Some(o), true, false) => Some(("ADDED", o)),
        (Some(o), false, true) => Some(("DELETED", o)),
        (None, _, true) => p.old.as_ref().map(|o| ("DELETED", o)),
        _ => None,
    }
}

/// A cheap test before decoding an object: an equality field selector
/// (`spec.nodeName=node-1`) can only match an object whose stored JSON
/// contains the value's text. Values that JSON would escape, and empty
/// values (which match a missing field), are left to [`matches`].
fn may_match(raw: &[u8], fields: &[meta::FieldRequirement]) -> bool {
    fields.iter().all(|(_, eq, value)| {
        let plain = !value.is_empty()
            && value
                .bytes()
                .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f);
        !*eq || !plain || raw.windows(value.len()).any(|w| w == value.as_bytes())
    })
}

/// Whether an object matches label and field selectors.
fn matches(obj: &Value, labels: &[meta::Requirement], fields: &[meta::FieldRequirement]) -> bool {
    if !labels.is_empty() && !meta::labels_match(labels, &meta::labels(obj)) {
        return false;
    }
    fields.iter().all(|(pointer, eq, value)| {
        let actual = obj.pointer(pointer).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        (actual.as_deref().unwrap_or("") == value) == *eq
    })
}

/// How the client wants Table rows.
#[derive(Clone, Copy, Debug)]
pub struct TableOpts {
    include_object: IncludeObject,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum IncludeObject {
    None,
    Metadata,
    Object,
}

fn wants_aggregated(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Only v2 exactly: kubectl 1.27 asks for v2beta1, whose shape differs.
    accept.split(',').any(|a| {
        let params: Vec<&str> = a.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

fn wants_table(headers: &HeaderMap) -> Option<TableOpts> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("as=Table").then_some(TableOpts {
        include_object: IncludeObject::Metadata,
    })
}

/// A `meta.k8s.io/v1` Table of objects.
fn render_table(
    rt: &ResourceType,
    objs: &[Value],
    revision: Option<u64>,
    cont: Option<&str>,
    opts: TableOpts,
) -> Value {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for c in rt.strategy.columns() {
        cols.push(json!({"name": c.name, "type": c.kind, "format": "", "description": c.description, "priority": c.priority}));
    }
    cols.push(json!({"name": "Age", "type": "string", "format": "", "description": "Time since creation.", "priority": 0}));
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(json!(""))];
            cells.extend(rt.strategy.cells(o));
            cells.push(json!(meta::age(o.pointer("/metadata/creationTimestamp").and_then(Value::as_str))));
            let mut row = json!({"cells": cells});
            match opts.include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]});
                }
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(r) = revision {
        meta["resourceVersion"] = json!(r.to_string());
    }
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": cols, "rows": rows})
}

/// Apply the `includeObject` query parameter to table options.
pub fn table_opts_from_query(mut opts: TableOpts, q: &BTreeMap<String, String>) -> TableOpts {
    opts.include_object = match q.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    };
    opts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefilter_never_drops_a_match() {
        let pod = br#"{"metadata":{"name":"p"},"spec":{"nodeName":"node-7","replicas":3}}"#;
        let sel = |s: &str| meta::parse_field_selector(s).unwrap();
        let obj: Value = serde_json::from_slice(pod).unwrap();
        for s in [
            "spec.nodeName=node-7",
            "spec.nodeName!=node-8",
            "spec.replicas=3",
            "metadata.name=p,spec.nodeName==node-7",
        ] {
            let f = sel(s);
            assert!(matches(&obj, &[], &f), "{s} should match the pod");
            assert!(may_match(pod, &f), "{s} matches but was filtered out");
        }
        assert!(!may_match(pod, &sel("spec.nodeName=node-8")));
        assert!(!may_match(pod, &sel("metadata.name=q")));
    }
}
