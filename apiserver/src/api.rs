//! The generic registry behind every REST path: parses the path into a
//! resource request, and runs get, list, watch, create, update, patch and
//! delete on the event log with the kind's strategy. Discovery is served here
//! too, from the same resource table.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use keel_store::{Consistency, KeyValue, Member, Op, RangeRequest, StoreError};
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
            if t.rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::NoRoute);
            }
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
        // The all-namespaces path of a namespaced kind only lists and
        // watches: a DELETE there would empty every namespace.
        if t.rt.namespaced && t.namespace.is_none() {
            if t.name.is_some() {
                return Err(ApiError::NoRoute);
            }
            if method != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
        }
        let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
        if method == Method::GET && t.name.is_none() {
            crate::options::validate(&q, watch)?;
        }
        match (method.clone(), &t.name) {
            (Method::GET, None) if watch => self.watch(&t, &q, table).await,
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

    /// A stored object; one that is not a JSON object (or whose `metadata`
    /// is not one), written around the API, is a 500 naming its key. Decoded
    /// as watch events decode it ([`crate::prepared::stored`]).
    fn decode(&self, kv: &KeyValue) -> Result<Value, ApiError> {
        crate::prepared::stored(kv, kv.mod_revision).map_err(|e| {
            ApiError::Internal(format!("stored object {} does not decode: {e}", kv.key))
        })
    }

    /// Before a watch starts at `rv`: a member that has not applied it yet
    /// (a follower behind the leader a client read from) catches up first.
    /// One that still lacks it afterwards refuses it as too large.
    async fn catch_up_to(&self, rv: u64) {
        if self
            .member
            .revisions()
            .is_ok_and(|(applied, _)| applied < rv)
        {
            let _ = self.member.linearize().await;
        }
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
        let min = crate::options::min_resource_version(q)?;
        let (kv, revision) = self
            .member
            .get(&t.rt.key(t.namespace.as_deref(), name), consistency)
            .await?;
        // A linearizable read saw every write: a newer version never existed.
        if let Some(requested) = min.filter(|m| *m > revision) {
            return Err(ApiError::TooLargeResourceVersion {
                requested,
                current: revision,
            });
        }
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
        let rv_num = crate::options::min_resource_version(q)?;
        let cont = q.get("continue").filter(|s| !s.is_empty()).cloned();
        if cont.is_some() && rv_num.is_some() {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        let exact = crate::options::list_is_exact(q, limit, rv_num);
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
        // Objects that do not decode are left out and named in a Warning, so
        // one bad value does not hide every other object of the kind.
        let mut warnings = Vec::new();
        let continued = req.continue_token.is_some();
        let (revision, token) = loop {
            req.limit = if limit == 0 { 0 } else { limit - count };
            let resp = self.member.range(req.clone()).await.map_err(|e| match e {
                StoreError::Compacted { .. } if continued => ApiError::Expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                ),
                e => e.into(),
            })?;
            if table.is_none() {
                let bytes: usize = resp.kvs.iter().map(|kv| kv.value.len() + 40).sum();
                encoded.reserve(bytes);
            }
            for kv in &resp.kvs {
                if !may_match(&kv.value, &fields) {
                    continue;
                }
                let obj = match self.decode(kv) {
                    Ok(obj) => obj,
                    Err(e) => {
                        warnings.push(format!("skipped: {e}"));
                        continue;
                    }
                };
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
        // Not older than the resourceVersion asked for: a linearizable read
        // saw every write, so a newer version never existed.
        if let Some(requested) = rv_num.filter(|r| !exact && *r > revision) {
            return Err(ApiError::TooLargeResourceVersion {
                requested,
                current: revision,
            });
        }
        if let Some(opts) = table {
            return Ok(with_warnings(
                json_response(
                    StatusCode::OK,
                    &render_table(t.rt, &items, Some(revision), token.as_deref(), opts),
                ),
                &warnings,
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
        Ok(with_warnings(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            &warnings,
        ))
    }

    async fn watch(
        &self,
        t: &Target,
        q: &Query,
        table: Option<TableOpts>,
    ) -> Result<Response, ApiError> {
        let (labels, fields) = selectors(q)?;
        let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
        // Clamped, so the deadline cannot overflow (see watch::MAX_TIMEOUT).
        let deadline = tokio::time::Instant::now()
            + crate::watch::timeout(q.get("timeoutSeconds").map(String::as_str));
        let prefix = t.rt.prefix(t.namespace.as_deref());
        let rv = q
            .get("resourceVersion")
            .filter(|s| !s.is_empty() && *s != "0");
        let explicit_initial = q.get("sendInitialEvents").is_some_and(|s| s == "true");
        let send_initial = q
            .get("sendInitialEvents")
            .map(|s| s == "true")
            .unwrap_or(rv.is_none());
        // Start: an exact revision, or now with the current state as ADDED
        // events. Only the first page of that state is read here (so a store
        // error is still an HTTP status); the stream reads the rest at the
        // same revision.
        let mut initial = None;
        let start = match rv {
            Some(r) if !send_initial => {
                let rv = r
                    .parse::<u64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {r:?}")))?;
                self.catch_up_to(rv).await;
                rv
            }
            // sendInitialEvents=false: changes from now on, no current state.
            None if !send_initial => self.member.linearize().await?,
            _ => {
                let mut req = RangeRequest::prefix(prefix.clone());
                req.consistency = Consistency::Linearizable;
                req.limit = crate::watch::INITIAL_PAGE;
                let first = self.member.range(req).await?;
                let revision = first.revision;
                initial = Some(first);
                revision
            }
        };
        let rt = t.rt;
        let line = move |mut ev: Value| -> Bytes {
            if let Some(opts) = table {
                let obj = ev["object"].take();
                ev["object"] = render_table(rt, &[obj], None, None, opts);
            }
            let mut s = ev.to_string();
            s.push('\n');
            Bytes::from(s)
        };
        let selected = Arc::new((labels, fields));
        let sel = selected.clone();
        let added =
            move |kv: &KeyValue| -> Result<Option<Bytes>, ApiError> {
                if !may_match(&kv.value, &sel.1) {
                    return Ok(None);
                }
                let obj = crate::prepared::stored(kv, kv.mod_revision).map_err(|e| {
                    ApiError::Internal(format!("stored object {} does not decode: {e}", kv.key))
                })?;
                Ok(matches(&obj, &sel.0, &sel.1)
                    .then(|| line(json!({"type": "ADDED", "object": obj}))))
            };
        let prepared = self.prepared.clone();
        let event = move |e: &keel_store::Event| -> Option<Bytes> {
            let p = prepared.get(e);
            let (kind, obj) = watch_event(&p, &selected.0, &selected.1)?;
            Some(if table.is_some() {
                line(json!({"type": kind, "object": obj.value.clone()}))
            } else {
                crate::prepared::line(kind, &obj.json)
            })
        };
        let body = crate::watch::Watch {
            member: self.member.clone(),
            prefix,
            start,
            initial,
            // With sendInitialEvents=true (watch-list) the initial events end
            // with a bookmark annotated k8s.io/initial-events-end.
            initial_end_bookmark: explicit_initial,
            bookmarks,
            deadline,
            kind: t.rt.kind,
            api_version: t.rt.api_version(),
            added: Box::new(added),
            event: Box::new(event),
        }
        .into_body();
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
        let yaml = base == "application/yaml";
        if !patch && !yaml && base != "application/json" && base != "*/*" && !base.is_empty() {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {base})"
            )));
        }
        let v: Value = if yaml {
            crate::typed::from_yaml(body).map_err(|e| {
                ApiError::BadRequest(format!("the request body is not valid YAML: {e}"))
            })?
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
            })?
        };
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

    /// The one read-modify-write path of update, patch, status, scale and
    /// binding (kube-apiserver's `GuaranteedUpdate`): read the object, let
    /// `mutate` make the new one from it, and swap it in if nothing wrote in
    /// between; if something did, read again and redo the mutation. A
    /// resourceVersion in the new object is a precondition and fails at once
    /// with a 409; without one the write applies to whatever is current.
    async fn guaranteed_update(
        &self,
        t: &Target,
        name: &str,
        q: &Query,
        mut mutate: impl FnMut(&KeyValue, &Value) -> Result<Value, ApiError>,
    ) -> Result<Response, ApiError> {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let (kv, old) = self.current(t, name).await?;
            let new = mutate(&kv, &old)?;
            match self.replace(t, name, &kv, &old, new, q).await? {
                Attempt::Done(r) => return Ok(r),
                Attempt::Raced => continue,
            }
        }
        Err(self.conflict(t, name))
    }

    /// Write `new` over `old` (both full objects) if the object is still at
    /// `kv`'s revision.
    async fn replace(
        &self,
        t: &Target,
        name: &str,
        kv: &KeyValue,
        old: &Value,
        mut new: Value,
        q: &Query,
    ) -> Result<Attempt, ApiError> {
        if !new.is_object() || !new.get("metadata").is_some_and(Value::is_object) {
            return Err(ApiError::BadRequest(format!(
                "the object must be a JSON object whose metadata is an object, describing a {}",
                t.rt.kind
            )));
        }
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
        if t.rt.namespaced
            && let Some(ns) = new
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            && Some(ns) != t.namespace.as_deref()
        {
            return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
        }
        let stored_uid = old.pointer("/metadata/uid").and_then(Value::as_str);
        if let Some(uid) = new
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            && Some(uid) != stored_uid
        {
            return Err(ApiError::Invalid {
                group: t.rt.group.into(),
                kind: t.rt.kind.into(),
                name: name.into(),
                causes: vec![crate::error::Cause::invalid(
                    "metadata.uid",
                    format!("Invalid value: {uid:?}: field is immutable"),
                )],
            });
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
        let dry_run = q.get("dryRun").is_some_and(|d| d == "All");
        let key = t.rt.key(t.namespace.as_deref(), name);
        // Being deleted and no finalizer left: the object goes now, with a
        // DELETED event (also heals one left behind by an older version).
        let finalized = new
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|d| !d.is_null())
            && new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if finalized && !dry_run {
            return match self
                .member
                .txn(vec![Op::delete(key).if_mod_revision(kv.mod_revision)])
                .await
            {
                Ok(_) => Ok(Attempt::Done(with_warnings(
                    json_response(StatusCode::OK, &new),
                    &warnings,
                ))),
                Err(StoreError::Precondition(_)) => Ok(Attempt::Raced),
                Err(e) => Err(e.into()),
            };
        }
        if new == *old || dry_run {
            // A no-op write keeps the resourceVersion.
            return Ok(Attempt::Done(with_warnings(
                json_response(StatusCode::OK, &new),
                &warnings,
            )));
        }
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        match self
            .member
            .txn(vec![
                Op::update(key, new.to_string().into_bytes()).if_mod_revision(kv.mod_revision),
            ])
            .await
        {
            Ok(rev) => {
                new["metadata"]["resourceVersion"] = json!(rev.to_string());
                Ok(Attempt::Done(with_warnings(
                    json_response(StatusCode::OK, &new),
                    &warnings,
                )))
            }
            // Written in between (or deleted: the next read says 404).
            Err(StoreError::Precondition(_)) => Ok(Attempt::Raced),
            // Timeout included: the write may have happened, so it is never repeated.
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
        let body = self.parse_body(t, headers, &body, false)?;
        let (group, plural) = (t.rt.group, t.rt.plural);
        self.guaranteed_update(t, name, q, |_, old| {
            // A uid in the body is a precondition, as in kube-apiserver: an
            // object deleted and created again under the same name is not
            // overwritten by a client that read the old one.
            let stored = old
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some(uid) = body
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty() && *u != stored)
            {
                return Err(ApiError::Conflict {
                    group: group.into(),
                    resource: plural.into(),
                    name: name.into(),
                    message: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {stored}"
                    ),
                });
            }
            Ok(body.clone())
        })
        .await
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
        let json_patch = match base.as_str() {
            "application/merge-patch+json" => false,
            // Without lists or directives a strategic merge patch means the
            // same as a merge patch; list merge keys are not supported yet.
            "application/strategic-merge-patch+json"
                if crate::patch::smp_is_plain_merge(&patch) =>
            {
                false
            }
            "application/json-patch+json" => true,
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (got {other})"
                )));
            }
        };
        // Reapplied to the current object on every attempt; a resourceVersion
        // the patch sets is a precondition, checked by `replace`.
        self.guaranteed_update(t, name, q, |_, old| {
            let mut new = old.clone();
            let refused = |m: String| ApiError::Invalid {
                group: t.rt.group.into(),
                kind: t.rt.kind.into(),
                name: name.into(),
                causes: vec![crate::error::Cause::invalid("patch", m)],
            };
            if json_patch {
                crate::patch::json_patch(&mut new, &patch).map_err(|e| match e {
                    crate::patch::PatchError::Malformed(m) => ApiError::BadRequest(m),
                    crate::patch::PatchError::Failed(m) => refused(m),
                })?;
            } else {
                crate::patch::merge(&mut new, &patch);
            }
            if !new.is_object() || !new.get("metadata").is_some_and(Value::is_object) {
                return Err(refused(
                    "the patched object must be a JSON object whose metadata is an object".into(),
                ));
            }
            Ok(new)
        })
        .await
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
        let main = Target {
            rt: t.rt,
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            subresource: None,
        };
        self.guaranteed_update(&main, name, q, |_, old| {
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
            set_field(&mut new, "spec", "nodeName", json!(node))?;
            Ok(new)
        })
        .await?;
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
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let json_patch = match ct.split(';').next().unwrap_or("").trim() {
            _ if method == Method::PUT => false,
            "application/json-patch+json" => true,
            "application/merge-patch+json" => false,
            "application/strategic-merge-patch+json" if crate::patch::smp_is_plain_merge(&body) => {
                false
            }
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "unsupported patch type {other}"
                )));
            }
        };
        let invalid = |cause| ApiError::Invalid {
            group: "autoscaling".into(),
            kind: "Scale".into(),
            name: name.into(),
            causes: vec![cause],
        };
        let main = Target {
            rt: t.rt,
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            subresource: None,
        };
        self.guaranteed_update(&main, name, q, |kv, old| {
            let wanted = if method == Method::PUT {
                body.clone()
            } else {
                let mut s = scale_of(old, kv.mod_revision);
                if json_patch {
                    crate::patch::json_patch(&mut s, &body).map_err(|e| match e {
                        crate::patch::PatchError::Malformed(m) => ApiError::BadRequest(m),
                        crate::patch::PatchError::Failed(m) => {
                            invalid(crate::error::Cause::invalid("patch", m))
                        }
                    })?;
                } else {
                    crate::patch::merge(&mut s, &body);
                }
                s
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
            set_field(&mut new, "spec", "replicas", json!(replicas))?;
            // A resourceVersion in the Scale is a precondition on the resource.
            if let Some(rv) = wanted.pointer("/metadata/resourceVersion") {
                new["metadata"]["resourceVersion"] = rv.clone();
            }
            Ok(new)
        })
        .await?;
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
        let mut req = RangeRequest::prefix(t.rt.prefix(t.namespace.as_deref()));
        let mut deleted = Vec::new();
        let mut revision = None;
        // The store answers in pages of bounded size; every page is read at
        // the first page's revision, so the collection is the one that existed
        // when the request started, however large.
        loop {
            let resp = self.member.range(req.clone()).await?;
            revision.get_or_insert(resp.revision);
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
            match resp.continue_token {
                Some(token) => {
                    req.continue_token = Some(token);
                    req.revision = None;
                }
                None => break,
            }
        }
        let revision = revision.unwrap_or_default();
        Ok(json_response(
            StatusCode::OK,
            &json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {"resourceVersion": revision.to_string()}, "items": deleted}),
        ))
    }
}

/// Attempts of one update before giving up with a 409: each lost race
/// means another write landed, so running out takes sustained contention.
const MAX_UPDATE_ATTEMPTS: usize = 16;

/// How one compare-and-swap attempt of a write ended.
enum Attempt {
    Done(Response),
    /// Another write changed the object between the read and the swap.
    Raced,
}

/// `obj[parent][key] = value`, as an error rather than a panic when a
/// stored `obj[parent]` is neither an object nor absent.
fn set_field(obj: &mut Value, parent: &str, key: &str, value: Value) -> Result<(), ApiError> {
    let Some(o) = obj.as_object_mut() else {
        return Err(ApiError::Internal(
            "the stored object is not an object".into(),
        ));
    };
    let p = o.entry(parent).or_insert(Value::Null);
    if p.is_null() {
        *p = json!({});
    }
    match p {
        Value::Object(m) => {
            m.insert(key.into(), value);
            Ok(())
        }
        _ => Err(ApiError::Internal(format!(
            "the stored object's {parent} is not an object"
        ))),
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
