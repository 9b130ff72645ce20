//! Discovery of every served resource (all groups, all versions, custom
//! resources included) from `/api` and `/apis`, keeping going past a group
//! version that fails so that callers can tell "partly discovered" from
//! "discovered" (the namespace controller reports the first as a condition
//! and refuses to finalize on it).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::core::ApiResource;

use crate::Error;

/// One resource of one group version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceInfo {
    /// Group, version, kind and plural, as `kube` addresses it.
    pub ar: ApiResource,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// The verbs discovery lists for it.
    pub verbs: Vec<String>,
}

impl ResourceInfo {
    /// Whether discovery lists `verb` for this resource.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// `plural.group` (`configmaps` for the core group), for logs and messages.
    pub fn group_resource(&self) -> String {
        if self.ar.group.is_empty() {
            self.ar.plural.clone()
        } else {
            format!("{}.{}", self.ar.plural, self.ar.group)
        }
    }
}

/// What discovery found.
#[derive(Debug, Default, Clone)]
pub struct Resources {
    /// Each resource once, at its group's preferred version (or the only
    /// version that serves it): what to list, watch and delete.
    pub preferred: Vec<Arc<ResourceInfo>>,
    /// Every (group, version, kind), for resolving an ownerReference's
    /// apiVersion and kind.
    by_gvk: HashMap<(String, String, String), Arc<ResourceInfo>>,
    /// Group versions that could not be read, with the error.
    pub failed: Vec<(String, String)>,
    /// Group versions whose name could not be parsed.
    pub unparsable: Vec<String>,
}

impl Resources {
    /// The resource serving `kind` at `api_version` (`v1`, `apps/v1`).
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let (group, version) = split_api_version(api_version);
        self.by_gvk
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .cloned()
    }

    /// Add the resources of one group version's list; `preferred` says
    /// whether this is the version to watch.
    fn add(&mut self, list: &APIResourceList, preferred: bool) {
        let (group, version) = split_api_version(&list.group_version);
        for r in &list.resources {
            // Subresources (`pods/status`) are not collections of objects.
            if r.name.contains('/') {
                continue;
            }
            let info = Arc::new(ResourceInfo {
                ar: ApiResource {
                    group: r.group.clone().unwrap_or_else(|| group.to_string()),
                    version: r.version.clone().unwrap_or_else(|| version.to_string()),
                    api_version: list.group_version.clone(),
                    kind: r.kind.clone(),
                    plural: r.name.clone(),
                },
                namespaced: r.namespaced,
                verbs: r.verbs.clone(),
            });
            let key = (group.to_string(), version.to_string(), r.kind.clone());
            self.by_gvk.entry(key).or_insert_with(|| info.clone());
            let seen = self
                .preferred
                .iter()
                .any(|p| p.ar.group == info.ar.group && p.ar.plural == info.ar.plural);
            if preferred && !seen {
                self.preferred.push(info);
            }
        }
    }

    /// Resources served only at a non-preferred version still need watching.
    fn add_unpreferred(&mut self, list: &APIResourceList) {
        let (group, _) = split_api_version(&list.group_version);
        let missing: Vec<_> = list
            .resources
            .iter()
            .filter(|r| {
                !r.name.contains('/')
                    && !self
                        .preferred
                        .iter()
                        .any(|p| p.ar.group == group && p.ar.plural == r.name)
            })
            .cloned()
            .collect();
        if !missing.is_empty() {
            let only = APIResourceList {
                group_version: list.group_version.clone(),
                resources: missing,
            };
            self.add(&only, true);
        }
    }

    /// A table for tests.
    #[cfg(test)]
    pub fn from_lists(lists: &[(APIResourceList, bool)]) -> Resources {
        let mut r = Resources::default();
        for (l, p) in lists {
            r.add(l, *p);
        }
        r
    }
}

/// (`apps`, `v1`) of `apps/v1`; (``, `v1`) of `v1`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Whether a group version string is well formed (`v1`, `group/version`).
fn parsable(gv: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    match gv.split_once('/') {
        Some((g, v)) => ok(g) && ok(v),
        None => ok(gv),
    }
}

/// Discover everything the server serves. Fails only when neither `/api`
/// nor `/apis` answers; a group version that fails is listed in
/// [`Resources::failed`].
pub async fn discover(client: &Client) -> Result<Resources, Error> {
    let mut out = Resources::default();
    // (group version, preferred?)
    let mut gvs: Vec<(String, bool)> = Vec::new();
    let core = client.list_core_api_versions().await?;
    for (i, v) in core.versions.iter().enumerate() {
        gvs.push((v.clone(), i == 0));
    }
    let groups = client.list_api_groups().await?;
    for g in &groups.groups {
        let preferred = g
            .preferred_version
            .as_ref()
            .map(|p| p.group_version.clone())
            .or_else(|| g.versions.first().map(|v| v.group_version.clone()));
        for v in &g.versions {
            gvs.push((
                v.group_version.clone(),
                Some(&v.group_version) == preferred.as_ref(),
            ));
        }
    }
    // Preferred versions first, so that they own each resource.
    gvs.sort_by_key(|(_, p)| !*p);
    let mut lists = Vec::new();
    for (gv, preferred) in gvs {
        if !parsable(&gv) {
            out.unparsable.push(gv);
            continue;
        }
        let got = if gv.contains('/') {
            client.list_api_group_resources(&gv).await
        } else {
            client.list_core_api_resources(&gv).await
        };
        match got {
            Ok(list) => lists.push((list, preferred)),
            Err(e) => out.failed.push((gv, e.to_string())),
        }
    }
    for (list, preferred) in &lists {
        out.add(list, *preferred);
    }
    for (list, preferred) in &lists {
        if !preferred {
            out.add_unpreferred(list);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn res(name: &str, kind: &str, namespaced: bool) -> APIResource {
        APIResource {
            name: name.into(),
            kind: kind.into(),
            namespaced,
            verbs: vec!["list".into(), "watch".into(), "delete".into()],
            singular_name: String::new(),
            ..Default::default()
        }
    }

    #[test]
    fn resolves_every_version_and_watches_the_preferred_once() {
        let v1 = APIResourceList {
            group_version: "example.com/v1".into(),
            resources: vec![
                res("widgets", "Widget", true),
                res("widgets/status", "Widget", true),
            ],
        };
        let beta = APIResourceList {
            group_version: "example.com/v1beta1".into(),
            resources: vec![
                res("widgets", "Widget", true),
                res("gadgets", "Gadget", false),
            ],
        };
        let mut r = Resources::from_lists(&[(v1, true), (beta.clone(), false)]);
        r.add_unpreferred(&beta);
        let names: Vec<_> = r
            .preferred
            .iter()
            .map(|p| p.ar.api_version.clone() + " " + &p.ar.plural)
            .collect();
        assert_eq!(
            names,
            ["example.com/v1 widgets", "example.com/v1beta1 gadgets"]
        );
        assert_eq!(
            r.resolve("example.com/v1beta1", "Widget")
                .unwrap()
                .ar
                .version,
            "v1beta1"
        );
        assert!(r.resolve("example.com/v2", "Widget").is_none());
        assert!(
            !r.resolve("example.com/v1beta1", "Gadget")
                .unwrap()
                .namespaced
        );
        assert!(parsable("v1") && parsable("apps/v1") && !parsable("a/b/c") && !parsable(""));
    }
}
