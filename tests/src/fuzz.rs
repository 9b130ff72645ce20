//! Fuzz entry points, shared by the bounded fuzz test (`tests/tests/fuzz.rs`,
//! part of `make test`) and the libFuzzer targets in `fuzz/` (long runs).
//! Each takes arbitrary bytes, feeds them to the decoders and parsers that
//! see input from outside, and must return: a panic or an abort is a bug.

use keel_apiserver::http::InProcess;
use keel_apiserver::http::{HeaderMap, HeaderValue, Method, Uri, header};
use keel_apiserver::kinds::{Kinds, typed};
use keel_apiserver::selector::{FieldSelector, LabelSelector};
use keel_apiserver::{Bytes, meta, patch};
use keel_proto::member as pb;
use keel_proto::prost::Message;
use keel_store::db::Db;
use keel_store::grpc::unpayload;
use keel_store::read::{self, Consistency, RangeRequest};
use keel_store::snapshot;
use keel_store::{Command, CommandOutcome, KeyValue, StoreError, codec};
use keel_store::{Entry, LogId, StoredMembership, Vote};
use keel_store::{PeerRequest, PeerResponse};
use serde_json::{Value, json};

/// CRC-32 (IEEE) as the member protocol frames payloads, so a fuzzed payload
/// gets past the checksum to the decoder.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= *b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Every bincode-decoded type a member reads from a peer or from its disk.
pub fn bincode_payloads(data: &[u8]) {
    let _ = codec::decode::<PeerRequest>(data);
    let _ = codec::decode::<PeerResponse>(data);
    let _ = codec::decode::<Command>(data);
    let _ = codec::decode::<CommandOutcome>(data);
    let _ = codec::decode::<Entry>(data);
    let _ = codec::decode::<KeyValue>(data);
    let _ = codec::decode_event(data);
    let _ = codec::decode::<Vote>(data);
    let _ = codec::decode::<Option<LogId>>(data);
    let _ = codec::decode::<StoredMembership>(data);
    let _ = codec::decode::<u64>(data);
    let _ = codec::decode_prefix::<String>(data);
    let _ = snapshot::verify(data, true);
    let _ = snapshot::meta_from_bytes(data);
    let framed = pb::RaftPayload {
        data: data.to_vec(),
        crc32: crc32(data),
    };
    let _ = unpayload::<PeerRequest>(&framed);
    let _ = unpayload::<PeerResponse>(&framed);
}

/// Every protobuf message of the member protocol (`proto/keel/member.proto`).
pub fn proto_messages(data: &[u8]) {
    let _ = pb::RaftPayload::decode(data);
    let _ = pb::AddMemberRequest::decode(data);
    let _ = pb::RemoveMemberRequest::decode(data);
    let _ = pb::Member::decode(data);
    let _ = pb::StatusRequest::decode(data);
    let _ = pb::StatusReply::decode(data);
    let _ = pb::MembershipReply::decode(data);
    let _ = pb::KeyValue::decode(data);
    let _ = pb::Operation::decode(data);
    let _ = pb::TxnRequest::decode(data);
    let _ = pb::TxnReply::decode(data);
    let _ = pb::RangeRequest::decode(data);
    let _ = pb::RangeReply::decode(data);
    let _ = pb::WatchRequest::decode(data);
    let _ = pb::Event::decode(data);
    let _ = pb::WatchReply::decode(data);
    // A decoded payload frame goes on to the bincode decoder.
    if let Ok(p) = pb::RaftPayload::decode(data) {
        let _ = unpayload::<PeerRequest>(&p);
    }
}

/// A continue token, as the store and the API receive it, against a store
/// holding a few keys under `/f/`. A foreign token is `InvalidContinue`; a
/// well-formed one may also be out of the retention window.
pub fn continue_token(db: &Db, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for token in [text.to_string(), format!("kc1.{text}")] {
        for limit in [0, 1] {
            let mut req = RangeRequest::prefix("/f/");
            req.limit = limit;
            req.consistency = Consistency::Local;
            req.continue_token = Some(token.clone());
            match read::range(db, &req) {
                Ok(_)
                | Err(StoreError::InvalidContinue(_))
                | Err(StoreError::Compacted { .. })
                | Err(StoreError::FutureRevision { .. }) => {}
                Err(e) => panic!("token {token:?}: unexpected error {e}"),
            }
        }
    }
}

/// Label and field selectors, then matching the parsed selector.
pub fn selectors(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(sel) = LabelSelector::parse(&text) {
        let labels = meta::labels(&json!({"metadata": {"labels": {"app": "web", "tier": ""}}}));
        let _ = sel.matches(&labels);
    }
    let _ = FieldSelector::parse(&text);
}

/// Merge, JSON and strategic merge patches (with Pod's schema): the input is
/// a JSON document, used both as a patch on sample objects and, when it is a
/// pair, as `[document, patch]`.
pub fn patches(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let sample = json!({"metadata": {"name": "x", "labels": {"a": "b"}}, "data": {"k": "v"}, "list": [1, 2]});
    let pod = keel_apiserver::schema::builtin().kind("", "v1", "Pod");
    for base in [sample, Value::Null, json!([]), json!("s")] {
        let _ = patch::strategic::apply(&base, &v, pod);
        let mut doc = base.clone();
        patch::merge(&mut doc, &v);
        let mut doc = base;
        let _ = patch::json_patch(&mut doc, &v);
    }
    if let Value::Array(pair) = &v
        && let [doc, p] = pair.as_slice()
    {
        let _ = patch::strategic::apply(doc, p, pod);
        let mut d = doc.clone();
        patch::merge(&mut d, p);
        let mut d = doc.clone();
        let _ = patch::json_patch(&mut d, p);
    }
}

/// A request body as JSON and as YAML, checked against every served kind's
/// Kubernetes type.
pub fn bodies(data: &[u8]) {
    let mut values = Vec::new();
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        values.push(v);
    }
    if let Ok(v) = typed::from_yaml(data) {
        values.push(v);
    }
    for v in &values {
        for rt in Kinds::builtin().all() {
            if let Some(t) = rt.typed {
                let _ = (t.check)(v);
            }
        }
    }
}

/// One API request built from the input: the first bytes choose the method
/// and the kind, the rest split on NUL into name, query string, content type
/// and body. Returns the status code, or `None` when the bytes make no valid
/// URI (no client can send one). Watches are answered with a stream that the
/// caller drops.
pub async fn api_request(api: &InProcess, data: &[u8]) -> Option<u16> {
    let (&m, rest) = data.split_first()?;
    let (&k, rest) = rest.split_first()?;
    let mut parts = rest.splitn(4, |b| *b == 0);
    let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let ctype = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default().to_vec();
    let method = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ][m as usize % 5]
        .clone();
    let all = api.registry().kinds.all();
    let rt = &all[k as usize % all.len()];
    let base = if rt.group.is_empty() {
        format!("/api/{}", rt.version)
    } else {
        format!("/apis/{}/{}", rt.group, rt.version)
    };
    let ns = if rt.namespaced && m & 0x80 == 0 {
        "/namespaces/default"
    } else {
        ""
    };
    let mut uri = format!("{base}{ns}/{}", rt.plural);
    if !name.is_empty() {
        uri.push('/');
        uri.push_str(&name);
    }
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(&query);
    }
    let uri: Uri = uri.parse().ok()?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&ctype) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    let resp = api.handle(method, uri, headers, Bytes::from(body)).await;
    Some(resp.status().as_u16())
}
