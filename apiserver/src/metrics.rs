//! Request metrics of the API server in Prometheus text format: counts by
//! verb, resource and code, latency histograms by verb and resource, and
//! open watches. `/metrics` adds the store member's Raft and store metrics.

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

/// The Kubernetes verb and resource of a request path.
pub fn classify(method: &str, path: &str, watch: bool) -> (String, String) {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let rest: &[&str] = match segs.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => &[],
    };
    // namespaces/{ns}/{resource}/... names a namespaced resource, except the
    // namespace's own subresources.
    let rest: &[&str] = match rest {
        ["namespaces", _, r, ..] if *r != "status" && *r != "finalize" => &rest[2..],
        _ => rest,
    };
    let resource = match rest {
        [] => "discovery".to_string(),
        [r] | [r, _] => r.to_string(),
        [r, _, sub, ..] => format!("{r}/{sub}"),
    };
    let named = rest.len() >= 2;
    let verb = match (method, named, watch) {
        (_, _, true) => "WATCH",
        ("GET", true, _) => "GET",
        ("GET", false, _) => "LIST",
        ("POST", _, _) => "POST",
        ("PUT", _, _) => "PUT",
        ("PATCH", _, _) => "PATCH",
        ("DELETE", true, _) => "DELETE",
        ("DELETE", false, _) => "DELETECOLLECTION",
        (m, _, _) => m,
    };
    (verb.to_string(), resource)
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

    #[test]
    fn classifies_paths() {
        assert_eq!(
            classify("GET", "/api/v1/namespaces/default/pods", false),
            ("LIST".into(), "pods".into())
        );
        assert_eq!(
            classify("GET", "/api/v1/namespaces/default/pods/p1", false),
            ("GET".into(), "pods".into())
        );
        assert_eq!(
            classify("GET", "/api/v1/namespaces", false),
            ("LIST".into(), "namespaces".into())
        );
        assert_eq!(
            classify("GET", "/api/v1/namespaces/default", false),
            ("GET".into(), "namespaces".into())
        );
        assert_eq!(
            classify(
                "PATCH",
                "/apis/apps/v1/namespaces/d/deployments/w/scale",
                false
            ),
            ("PATCH".into(), "deployments/scale".into())
        );
        assert_eq!(
            classify("GET", "/api/v1/namespaces/d/configmaps", true),
            ("WATCH".into(), "configmaps".into())
        );
        assert_eq!(
            classify("GET", "/apis", false),
            ("LIST".into(), "discovery".into())
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
