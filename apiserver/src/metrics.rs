//! Request metrics of the API server in Prometheus text format: counts by
//! verb, resource and code, latency histograms by verb and resource, and
//! open watches. Labels come from the matched route, never the raw path, so
//! the series stay few whatever paths clients send. `/metrics` adds the store
//! member's Raft and store metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters shared by every request.
#[derive(Default)]
pub struct ApiMetrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    pub watches_open: AtomicI64,
    pub watches_total: AtomicU64,
}

/// Label of a request path that matches no served resource, and of a method
/// that is no Kubernetes verb.
pub const UNKNOWN: &str = "unknown";

/// The Kubernetes verb and resource of a request, resolved the way the API
/// routes it: the resource is a served kind's plural (with a known
/// subresource), `discovery`, or [`UNKNOWN`]. Labels therefore come from a
/// fixed set, however many distinct paths clients send.
pub fn classify(
    kinds: &crate::kinds::Kinds,
    method: &str,
    path: &str,
    watch: bool,
) -> (&'static str, String) {
    let types = kinds.all();
    let find = |g: &str, v: &str, plural: &str| kinds.find(g, v, plural);
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api"] | ["apis"] => return (verb(method, false, watch), "discovery".into()),
        ["apis", g] => {
            let known = types.iter().any(|t| t.group == *g);
            return (verb(method, false, watch), discovery_or_unknown(known));
        }
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return (verb(method, false, watch), UNKNOWN.into()),
    };
    if rest.is_empty() {
        let known = types
            .iter()
            .any(|t| t.group == group && t.version == version);
        return (verb(method, false, watch), discovery_or_unknown(known));
    }
    // namespaces/{ns}/{plural}/... is namespaced unless it names the namespace
    // itself (as the router decides).
    let rest: &[&str] = match rest {
        ["namespaces", _, plural, ..]
            if find(group, version, plural).is_some_and(|t| t.namespaced) =>
        {
            &rest[2..]
        }
        _ => rest,
    };
    let named = rest.len() >= 2;
    let resource = match (find(group, version, rest[0]), rest) {
        (Some(t), [_] | [_, _]) => t.plural.to_string(),
        (Some(t), [_, _, sub]) if matches!(*sub, "status" | "scale" | "binding") => {
            format!("{}/{sub}", t.plural)
        }
        _ => UNKNOWN.to_string(),
    };
    (verb(method, named, watch), resource)
}

fn discovery_or_unknown(known: bool) -> String {
    if known { "discovery" } else { UNKNOWN }.to_string()
}

/// The verb of a method on a collection (`named` false) or one object.
fn verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named, watch) {
        ("GET", _, true) => "WATCH",
        ("GET", true, _) => "GET",
        ("GET", false, _) => "LIST",
        ("POST", _, _) => "POST",
        ("PUT", _, _) => "PUT",
        ("PATCH", _, _) => "PATCH",
        ("DELETE", true, _) => "DELETE",
        ("DELETE", false, _) => "DELETECOLLECTION",
        _ => UNKNOWN,
    }
}

impl ApiMetrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((verb.to_string(), resource.to_string(), code))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut lat = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = lat
            .entry((verb.to_string(), resource.to_string()))
            .or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Requests by verb, resource and HTTP code.\n# TYPE apiserver_request_total counter\n");
        for ((verb, resource, code), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.push_str(&format!("apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {n}\n"));
        }
        out.push_str("# HELP apiserver_request_duration_seconds Request latency by verb and resource (watches: until the stream opens).\n# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, resource), h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let labels = format!("verb=\"{verb}\",resource=\"{resource}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "apiserver_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}\n",
                    h.counts[i]
                ));
            }
            out.push_str(&format!(
                "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n",
                h.count
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_sum{{{labels}}} {}\n",
                h.sum
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_count{{{labels}}} {}\n",
                h.count
            ));
        }
        out.push_str(&format!(
            "# HELP apiserver_watches_open Watches streaming now.\n# TYPE apiserver_watches_open gauge\napiserver_watches_open {}\n",
            self.watches_open.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP apiserver_watches_total Watches started.\n# TYPE apiserver_watches_total counter\napiserver_watches_total {}\n",
            self.watches_total.load(Ordering::Relaxed)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Classified against the built-in kinds.
    fn classify(method: &str, path: &str, watch: bool) -> (&'static str, String) {
        super::classify(&crate::kinds::Kinds::builtin(), method, path, watch)
    }

    #[test]
    fn classifies_paths() {
        assert_eq!(
            classify("GET", "/api/v1/namespaces/default/pods", false),
            ("LIST", "pods".into())
        );
        assert_eq!(
            classify("GET", "/api/v1/namespaces/default/pods/p1", false),
            ("GET", "pods".into())
        );
        assert_eq!(
            classify("GET", "/api/v1/namespaces", false),
            ("LIST", "namespaces".into())
        );
        assert_eq!(
            classify("GET", "/api/v1/namespaces/default", false),
            ("GET", "namespaces".into())
        );
        assert_eq!(
            classify(
                "PATCH",
                "/apis/apps/v1/namespaces/d/deployments/w/scale",
                false
            ),
            ("PATCH", "deployments/scale".into())
        );
        assert_eq!(
            classify("GET", "/api/v1/namespaces/d/configmaps", true),
            ("WATCH", "configmaps".into())
        );
        assert_eq!(
            classify("GET", "/apis", false),
            ("LIST", "discovery".into())
        );
    }

    #[test]
    fn paths_that_match_no_route_share_one_label() {
        for path in [
            "/api/v1/random-3f9a",
            "/apis/x7.example.com/v1/things",
            "/apis/apps/v9/deployments",
            "/api/v1/namespaces/d/configmaps/c/sub-81",
            "/api/v1/namespaces/d/configmaps/c/status/deeper",
            "/apis/nope-12",
            "/api/v77",
        ] {
            assert_eq!(classify("GET", path, false).1, UNKNOWN, "{path}");
        }
        assert_eq!(
            classify("FROB", "/api/v1/namespaces", false),
            (UNKNOWN, "namespaces".into())
        );
        assert_eq!(
            classify("GET", "/apis/apps/v1", false),
            ("LIST", "discovery".into())
        );
        assert_eq!(
            classify("PUT", "/api/v1/namespaces/n/status", false),
            ("PUT", "namespaces/status".into())
        );
        let m = ApiMetrics::default();
        for i in 0..1000 {
            let (verb, resource) = classify("GET", &format!("/api/v1/r{i}/x{i}"), false);
            m.observe(verb, &resource, 404, Duration::from_millis(1));
        }
        let text = m.render();
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("apiserver_request_total{"))
                .count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn renders_counts_and_histograms() {
        let m = ApiMetrics::default();
        m.observe("GET", "pods", 200, Duration::from_millis(3));
        m.observe("GET", "pods", 404, Duration::from_millis(30));
        let text = m.render();
        assert!(
            text.contains("apiserver_request_total{verb=\"GET\",resource=\"pods\",code=\"404\"} 1"),
            "{text}"
        );
        assert!(text.contains("apiserver_request_duration_seconds_bucket{verb=\"GET\",resource=\"pods\",le=\"0.005\"} 1"), "{text}");
        assert!(
            text.contains(
                "apiserver_request_duration_seconds_count{verb=\"GET\",resource=\"pods\"} 2"
            ),
            "{text}"
        );
    }
}
