//! ResourceQuota admission, as kube-apiserver's `ResourceQuota` plugin:
//! a create in a namespace with quotas is refused (403) when it would take
//! a quota's usage past its hard limit (`exceeded quota: q, requested:
//! pods=1, used: pods=2, limited: pods=2`), when a quota limits a compute
//! resource the pod's containers do not state (`failed quota: q: must
//! specify limits.cpu for: c`), or when the quota's usage is not known yet
//! (`status unknown for quota: q, resource: pods`). The limits enforced
//! are those the quota's status acknowledges (`status.hard`), as in
//! Kubernetes: a new quota binds once the controller has written it. An
//! admitted create is
//! charged to each quota at once, by a compare-and-swap of the quota's
//! `status.used`, so creates racing each other cannot overshoot a limit;
//! the resourcequota controller recomputes the exact usage afterwards
//! (releasing what a create that failed later was charged).
//!
//! What a create charges: one of its kind (`pods`, `services`, `configmaps`,
//! `count/<resource>[.<group>]`, ...), a pod's requests and limits (its
//! containers' sum or its largest init container, plus overhead; a request
//! left out is its limit), a Service's node ports and load balancer, a
//! claim's `requests.storage`. Quota scopes Terminating, NotTerminating,
//! BestEffort and NotBestEffort choose which pods a quota sees.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Registry;
use super::storage::{Consistency, RangeRequest};
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::kinds::Subresource;
use crate::kinds::fields::parse_quantity;
use crate::request::{Query, RequestTarget};

/// Thousandths of a quantity, and whether it was written in binary units.
type Amount = (i128, bool);

fn amount(s: &str) -> Option<Amount> {
    let v = parse_quantity(s)?;
    Some(((v * 1000.0).ceil() as i128, s.trim_end().ends_with('i')))
}

/// `milli` as Kubernetes writes a quantity of `resource`.
fn show(resource: &str, (milli, binary): Amount) -> String {
    if resource.ends_with("cpu") || milli % 1000 != 0 {
        return if milli % 1000 == 0 {
            (milli / 1000).to_string()
        } else {
            format!("{milli}m")
        };
    }
    let n = milli / 1000;
    let (base, sufs): (i128, [&str; 6]) = if binary {
        (1024, ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
    } else {
        (1000, ["k", "M", "G", "T", "P", "E"])
    };
    if n != 0 {
        for (p, suf) in sufs.iter().enumerate().rev() {
            let unit = base.pow(p as u32 + 1);
            if n % unit == 0 {
                return format!("{}{suf}", n / unit);
            }
        }
    }
    n.to_string()
}

fn containers(pod: &Value, list: &str) -> Vec<Value> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A container's request (or limit) of `resource`; a missing request is
/// the limit.
fn container_amount(c: &Value, resource: &str, limits: bool) -> Option<Amount> {
    let get = |m: &str| {
        c.pointer(&format!("/resources/{m}/{resource}"))
            .and_then(Value::as_str)
            .and_then(amount)
    };
    if limits {
        get("limits")
    } else {
        get("requests").or_else(|| get("limits"))
    }
}

/// A pod's request (or limit) of `resource`.
fn pod_amount(pod: &Value, resource: &str, limits: bool) -> Amount {
    let (mut sum, mut binary) = (0i128, false);
    for c in containers(pod, "containers") {
        if let Some((m, b)) = container_amount(&c, resource, limits) {
            sum += m;
            binary |= b;
        }
    }
    for c in containers(pod, "initContainers") {
        if let Some((m, b)) = container_amount(&c, resource, limits) {
            sum = sum.max(m);
            binary |= b;
        }
    }
    if let Some((m, b)) = pod
        .pointer(&format!("/spec/overhead/{resource}"))
        .and_then(Value::as_str)
        .and_then(amount)
    {
        sum += m;
        binary |= b;
    }
    (sum, binary)
}

/// The compute resource a quota name limits for pods: (resource, limits?).
fn compute(name: &str) -> Option<(&str, bool)> {
    if let Some(r) = name.strip_prefix("limits.") {
        return Some((r, true));
    }
    if let Some(r) = name.strip_prefix("requests.") {
        return (r != "storage").then_some((r, false));
    }
    (matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-"))
        .then_some((name, false))
}

/// Whether a quota's scopes select `pod`.
fn in_scope(quota: &Value, pod: &Value) -> bool {
    let deadline = pod
        .pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|d| !d.is_null());
    let best_effort = containers(pod, "containers")
        .iter()
        .chain(containers(pod, "initContainers").iter())
        .all(|c| {
            ["requests", "limits"].iter().all(|m| {
                c.pointer(&format!("/resources/{m}"))
                    .and_then(Value::as_object)
                    .is_none_or(|m| m.is_empty())
            })
        });
    quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|s| match s.as_str() {
            Some("Terminating") => deadline,
            Some("NotTerminating") => !deadline,
            Some("BestEffort") => best_effort,
            Some("NotBestEffort") => !best_effort,
            _ => true,
        })
}

/// What creating `obj` of `t` charges against the quota resource `name`,
/// if anything.
fn charge(t: &RequestTarget, obj: &Value, name: &str) -> Option<Amount> {
    let plural = t.rt.plural.as_str();
    let counted = if t.rt.group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{}", t.rt.group)
    };
    if name == counted || (t.rt.group.is_empty() && name == plural) {
        return Some((1000, false));
    }
    match (t.rt.group.as_str(), plural) {
        ("", "pods") => {
            let (r, limits) = compute(name)?;
            Some(pod_amount(obj, r, limits))
        }
        ("", "services") => {
            let kind = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            match name {
                "services.nodeports" if matches!(kind, "NodePort" | "LoadBalancer") => {
                    Some((ports as i128 * 1000, false))
                }
                "services.loadbalancers" if kind == "LoadBalancer" => Some((1000, false)),
                _ => None,
            }
        }
        ("", "persistentvolumeclaims") if name == "requests.storage" => obj
            .pointer("/spec/resources/requests/storage")
            .and_then(Value::as_str)
            .and_then(amount),
        _ => None,
    }
}

/// The containers of `pod` that do not state what `name` limits.
fn unstated(pod: &Value, name: &str) -> Vec<String> {
    let Some((r, limits)) = compute(name) else {
        return vec![];
    };
    containers(pod, "containers")
        .iter()
        .chain(containers(pod, "initContainers").iter())
        .filter(|c| container_amount(c, r, limits).is_none())
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// `quota` with `obj` charged to it, or why not (the 403's reason).
fn charged(t: &RequestTarget, quota: &Value, obj: &Value) -> Result<Option<Value>, String> {
    let qname = quota
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let is_pod = t.rt.group.is_empty() && t.rt.plural == "pods";
    if is_pod && !in_scope(quota, obj) {
        return Ok(None);
    }
    // As Kubernetes: what the controller has acknowledged (`status.hard`)
    // is enforced, so a new quota binds once its status is written.
    let hard = quota
        .pointer("/status/hard")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let used = quota
        .pointer("/status/used")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut missing = Vec::new();
    let mut deltas: BTreeMap<String, Amount> = BTreeMap::new();
    for name in hard.keys() {
        if is_pod {
            let names = unstated(obj, name);
            if !names.is_empty() {
                missing.push(format!("{name} for: {}", names.join(",")));
                continue;
            }
        }
        if let Some(d) = charge(t, obj, name).filter(|d| d.0 > 0) {
            deltas.insert(name.clone(), d);
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "failed quota: {qname}: must specify {}",
            missing.join("; ")
        ));
    }
    if deltas.is_empty() {
        return Ok(None);
    }
    let mut next_used = used.clone();
    let (mut req, mut was, mut lim) = (Vec::new(), Vec::new(), Vec::new());
    for (name, delta) in &deltas {
        let Some(now) = used.get(name).and_then(Value::as_str).and_then(amount) else {
            return Err(format!(
                "status unknown for quota: {qname}, resource: {name}"
            ));
        };
        let limit = hard
            .get(name)
            .and_then(Value::as_str)
            .and_then(amount)
            .unwrap_or((0, false));
        let total = (now.0 + delta.0, now.1 || delta.1);
        if total.0 > limit.0 {
            req.push(format!("{name}={}", show(name, *delta)));
            was.push(format!("{name}={}", show(name, now)));
            lim.push(format!("{name}={}", show(name, limit)));
        }
        next_used.insert(name.clone(), json!(show(name, total)));
    }
    if !req.is_empty() {
        return Err(format!(
            "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
            req.join(","),
            was.join(","),
            lim.join(",")
        ));
    }
    let mut next = quota.clone();
    next["status"]["used"] = Value::Object(next_used);
    Ok(Some(next))
}

impl Registry {
    /// Admit the create of `obj` (of `t`, named `name`) against the quotas
    /// of its namespace and charge it to them (see the module notes); a
    /// dry run is checked, not charged.
    pub(super) async fn charge_quotas(
        &self,
        t: &RequestTarget,
        name: &str,
        obj: &Value,
        dry_run: bool,
        user: &UserInfo,
    ) -> Result<(), ApiError> {
        let Some(ns) = t.namespace.as_deref() else {
            return Ok(());
        };
        let Some(rt) = self.kinds.find("", "v1", "resourcequotas") else {
            return Ok(());
        };
        if t.rt.group.is_empty() && t.rt.plural == "resourcequotas" {
            return Ok(());
        }
        // This member's copy (the watch cache, no round trip), as Kubernetes'
        // quota admission reads an informer: every create pays for this
        // read, and the charge below is a linearizable compare-and-swap.
        let mut req = RangeRequest::prefix(rt.prefix(Some(ns)));
        req.consistency = Consistency::Local;
        let list = self.storage.list(req).await?;
        let forbidden = |reason: String| ApiError::Forbidden {
            group: t.rt.group.clone(),
            resource: t.rt.plural.clone(),
            name: name.to_string(),
            reason,
        };
        for kv in &list.kvs {
            let quota = self.decode(kv)?;
            // Checked on the list's copy first: most creates charge nothing.
            if charged(t, &quota, obj).map_err(forbidden)?.is_none() || dry_run {
                continue;
            }
            let qname = quota
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let target = RequestTarget {
                rt: rt.clone(),
                namespace: Some(ns.to_string()),
                name: Some(qname.clone()),
                subresource: Some(Subresource::Status),
            };
            self.guaranteed_update(
                &target,
                &qname,
                &Query::new(),
                user,
                |_, current| match charged(t, current, obj).map_err(forbidden)? {
                    Some(next) => Ok(next),
                    None => Ok(current.clone()),
                },
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kinds;

    fn target(plural: &str) -> RequestTarget {
        let kinds = Kinds::builtin();
        RequestTarget {
            rt: kinds.find("", "v1", plural).unwrap(),
            namespace: Some("default".into()),
            name: None,
            subresource: None,
        }
    }

    fn pod(cpu: Option<&str>) -> Value {
        let resources = match cpu {
            Some(c) => {
                json!({"requests": {"cpu": c, "memory": "64Mi"}, "limits": {"cpu": c, "memory": "64Mi"}})
            }
            None => json!({}),
        };
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    fn quota(hard: Value, used: Option<Value>) -> Value {
        let mut q = json!({"metadata": {"name": "q"}, "spec": {"hard": hard}});
        if let Some(u) = used {
            q["status"] = json!({"hard": hard, "used": u});
        }
        q
    }

    #[test]
    fn creates_are_charged_or_refused_as_kubernetes_words_it() {
        let pods = target("pods");
        let q = quota(
            json!({"pods": "2", "requests.cpu": "1"}),
            Some(json!({"pods": "1", "requests.cpu": "500m"})),
        );
        let next = charged(&pods, &q, &pod(Some("250m"))).unwrap().unwrap();
        assert_eq!(
            next["status"]["used"],
            json!({"pods": "2", "requests.cpu": "750m"})
        );
        assert_eq!(
            charged(&pods, &next, &pod(Some("250m"))).unwrap_err(),
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        assert_eq!(
            charged(&pods, &q, &pod(Some("1"))).unwrap_err(),
            "exceeded quota: q, requested: requests.cpu=1, used: requests.cpu=500m, limited: requests.cpu=1"
        );
        assert_eq!(
            charged(&pods, &q, &pod(None)).unwrap_err(),
            "failed quota: q: must specify requests.cpu for: c"
        );
        let mut fresh = quota(json!({"pods": "2"}), None);
        assert!(
            charged(&pods, &fresh, &pod(None)).unwrap().is_none(),
            "not acknowledged yet"
        );
        fresh["status"] = json!({"hard": {"pods": "2"}});
        assert_eq!(
            charged(&pods, &fresh, &pod(None)).unwrap_err(),
            "status unknown for quota: q, resource: pods"
        );
        // Another kind is not charged by a pods-only quota.
        assert!(
            charged(&target("configmaps"), &q, &json!({}))
                .unwrap()
                .is_none()
        );
        let cms = quota(
            json!({"count/configmaps": "1"}),
            Some(json!({"count/configmaps": "0"})),
        );
        assert!(
            charged(&target("configmaps"), &cms, &json!({}))
                .unwrap()
                .is_some()
        );
        // Memory sums keep binary units.
        let mem = quota(
            json!({"limits.memory": "1Gi"}),
            Some(json!({"limits.memory": "960Mi"})),
        );
        assert_eq!(
            charged(&pods, &mem, &pod(Some("1"))).unwrap().unwrap()["status"]["used"]["limits.memory"],
            "1Gi"
        );
        // Scopes: a BestEffort quota does not see a pod with resources.
        let mut be = quota(json!({"pods": "0"}), Some(json!({"pods": "0"})));
        be["spec"]["scopes"] = json!(["BestEffort"]);
        assert!(charged(&pods, &be, &pod(Some("1"))).unwrap().is_none());
        assert!(charged(&pods, &be, &pod(None)).is_err());
    }
}
