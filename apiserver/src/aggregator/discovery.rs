//! Discovery merged with the aggregated group versions: `/apis` lists them
//! beside the served groups, `/apis/{group}` answers for a group that only
//! an extension server serves, and aggregated discovery
//! (`apidiscovery.k8s.io/v2`) carries their resources, taken from the
//! resource list the availability check last read from the extension
//! server (`Stale` while it is not available). `/apis/{group}/{version}`
//! itself is the extension server's answer, proxied.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::registration::Registration;

/// The remote registrations by group: the versions, highest
/// `versionPriority` first (the first is the preferred one).
fn by_group(regs: &[Arc<Registration>]) -> Vec<(String, Vec<Arc<Registration>>)> {
    let mut groups: BTreeMap<String, Vec<Arc<Registration>>> = BTreeMap::new();
    for r in regs.iter().filter(|r| r.is_remote()) {
        groups.entry(r.group.clone()).or_default().push(r.clone());
    }
    let mut out: Vec<(String, Vec<Arc<Registration>>)> = groups.into_iter().collect();
    for (_, vs) in &mut out {
        vs.sort_by(|a, b| {
            b.version_priority
                .cmp(&a.version_priority)
                .then_with(|| a.version.cmp(&b.version))
        });
    }
    // Groups of higher priority first, as Kubernetes orders them.
    out.sort_by_key(|(_, vs)| std::cmp::Reverse(vs.iter().map(|r| r.group_priority).max()));
    out
}

fn version_json(r: &Registration) -> Value {
    json!({"groupVersion": format!("{}/{}", r.group, r.version), "version": r.version})
}

/// `/apis` (an APIGroupList) with the aggregated group versions added.
pub fn merge_group_list(list: &mut Value, regs: &[Arc<Registration>]) {
    let Some(groups) = list.get_mut("groups").and_then(Value::as_array_mut) else {
        return;
    };
    for (name, versions) in by_group(regs) {
        match groups.iter_mut().find(|g| g["name"] == name.as_str()) {
            Some(g) => {
                if let Some(vs) = g.get_mut("versions").and_then(Value::as_array_mut) {
                    for r in &versions {
                        let v = version_json(r);
                        if !vs.contains(&v) {
                            vs.push(v);
                        }
                    }
                }
            }
            None => {
                let vs: Vec<Value> = versions.iter().map(|r| version_json(r)).collect();
                groups.push(json!({"name": name, "versions": vs, "preferredVersion": vs[0]}));
            }
        }
    }
}

/// `/apis/{group}` for a group served by extension servers only; `None`
/// when no APIService sends it to one.
pub fn group(regs: &[Arc<Registration>], name: &str) -> Option<Value> {
    let (_, versions) = by_group(regs).into_iter().find(|(g, _)| g == name)?;
    let vs: Vec<Value> = versions.iter().map(|r| version_json(r)).collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs, "preferredVersion": vs[0]}),
    )
}

/// The aggregated discovery items of the remote groups: each version's
/// resources converted from its APIResourceList (`lists`, by APIService
/// name); a version without one, or not available, is `Stale`.
pub fn aggregated_items(regs: &[Arc<Registration>], lists: &BTreeMap<String, Value>) -> Vec<Value> {
    by_group(regs)
        .into_iter()
        .map(|(name, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|r| {
                    let list = lists.get(&r.name);
                    let fresh = list.is_some() && r.available == Some(true);
                    json!({
                        "version": r.version,
                        "freshness": if fresh { "Current" } else { "Stale" },
                        "resources": list.map(|l| resources(l, &r.group, &r.version)).unwrap_or_default(),
                    })
                })
                .collect();
            json!({"metadata": {"name": name}, "versions": vs})
        })
        .collect()
}

/// An APIGroupDiscoveryList with `items` added (a group it already has
/// gains the versions it lacks).
pub fn merge_aggregated(doc: &mut Value, items: Vec<Value>) {
    let Some(list) = doc.get_mut("items").and_then(Value::as_array_mut) else {
        return;
    };
    for item in items {
        let name = item["metadata"]["name"].clone();
        match list.iter_mut().find(|g| g["metadata"]["name"] == name) {
            Some(g) => {
                let Some(have) = g.get_mut("versions").and_then(Value::as_array_mut) else {
                    continue;
                };
                for v in item["versions"].as_array().cloned().unwrap_or_default() {
                    if !have.iter().any(|h| h["version"] == v["version"]) {
                        have.push(v);
                    }
                }
            }
            None => list.push(item),
        }
    }
}

/// An APIResourceList's entries as aggregated discovery resources: plain
/// names are resources, `name/sub` entries their subresources.
fn resources(list: &Value, group: &str, version: &str) -> Vec<Value> {
    let entries = list
        .get("resources")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let kind = |e: &Value| {
        json!({
            "group": e.get("group").and_then(Value::as_str).unwrap_or(group),
            "version": e.get("version").and_then(Value::as_str).unwrap_or(version),
            "kind": e["kind"],
        })
    };
    let mut out: Vec<Value> = Vec::new();
    for e in entries {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        if name.contains('/') {
            continue;
        }
        let mut r = json!({
            "resource": name,
            "responseKind": kind(e),
            "scope": if e["namespaced"] == true { "Namespaced" } else { "Cluster" },
            "singularResource": e["singularName"].as_str().unwrap_or_default(),
            "verbs": e["verbs"].as_array().cloned().unwrap_or_default(),
        });
        for f in ["shortNames", "categories"] {
            if e[f].as_array().is_some_and(|a| !a.is_empty()) {
                r[f] = e[f].clone();
            }
        }
        let subs: Vec<Value> = entries
            .iter()
            .filter_map(|s| {
                let (parent, sub) = s["name"].as_str()?.split_once('/')?;
                (parent == name).then(|| {
                    json!({"subresource": sub, "responseKind": kind(s),
                        "verbs": s["verbs"].as_array().cloned().unwrap_or_default()})
                })
            })
            .collect();
        if !subs.is_empty() {
            r["subresources"] = json!(subs);
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(group: &str, version: &str, prio: i64, available: bool) -> Arc<Registration> {
        let obj = json!({
            "metadata": {"name": format!("{version}.{group}")},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": 100,
                "versionPriority": prio, "service": {"namespace": "w", "name": "api"}},
            "status": {"conditions": [{"type": "Available", "status": if available { "True" } else { "False" }}]},
        });
        Arc::new(Registration::from_object(&obj).unwrap())
    }

    #[test]
    fn apis_lists_the_aggregated_versions_preferred_by_priority() {
        let regs = [
            reg("wardle.example.com", "v1alpha1", 10, true),
            reg("wardle.example.com", "v1beta1", 20, false),
        ];
        let mut list = json!({"kind": "APIGroupList", "groups": [{"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}]}]});
        merge_group_list(&mut list, &regs);
        let w = &list["groups"][1];
        assert_eq!(w["name"], "wardle.example.com");
        assert_eq!(w["preferredVersion"]["version"], "v1beta1");
        assert_eq!(w["versions"].as_array().unwrap().len(), 2);
        let g = group(&regs, "wardle.example.com").unwrap();
        assert_eq!(
            (g["kind"].as_str(), g["versions"][1]["version"].as_str()),
            (Some("APIGroup"), Some("v1alpha1"))
        );
        assert!(group(&regs, "apps").is_none());
    }

    #[test]
    fn aggregated_discovery_carries_the_backend_resources() {
        let regs = [
            reg("wardle.example.com", "v1alpha1", 10, true),
            reg("wardle.example.com", "v1beta1", 20, false),
        ];
        let list = json!({"kind": "APIResourceList", "groupVersion": "wardle.example.com/v1alpha1", "resources": [
            {"name": "flunders", "singularName": "flunder", "namespaced": true, "kind": "Flunder",
             "verbs": ["create", "get", "list", "watch"], "shortNames": ["fl"]},
            {"name": "flunders/status", "singularName": "", "namespaced": true, "kind": "Flunder", "verbs": ["get"]},
        ]});
        let lists: BTreeMap<String, Value> =
            [("v1alpha1.wardle.example.com".to_string(), list)].into();
        let items = aggregated_items(&regs, &lists);
        let mut doc = json!({"kind": "APIGroupDiscoveryList", "items": [{"metadata": {"name": "apps"}, "versions": []}]});
        merge_aggregated(&mut doc, items);
        let w = &doc["items"][1];
        assert_eq!(w["metadata"]["name"], "wardle.example.com");
        let (beta, alpha) = (&w["versions"][0], &w["versions"][1]);
        assert_eq!(
            (beta["version"].as_str(), beta["freshness"].as_str()),
            (Some("v1beta1"), Some("Stale"))
        );
        assert_eq!(alpha["freshness"], "Current");
        let r = &alpha["resources"][0];
        assert_eq!(r["resource"], "flunders");
        assert_eq!(r["scope"], "Namespaced");
        assert_eq!(
            r["responseKind"],
            json!({"group": "wardle.example.com", "version": "v1alpha1", "kind": "Flunder"})
        );
        assert_eq!(r["shortNames"], json!(["fl"]));
        assert_eq!(r["subresources"][0]["subresource"], "status");
        assert_eq!(alpha["resources"].as_array().unwrap().len(), 1);
    }
}
