//! Kinds served in one version and stored in another, as Kubernetes keeps
//! one storage version per resource: `events.k8s.io/v1` Events are the
//! core `v1` Events, `autoscaling/v1` HorizontalPodAutoscalers the
//! `autoscaling/v2` ones. The registry converts at its edges (objects read
//! from the store become the served form before selectors, tables and
//! encoding; objects written become the stored form after defaults and
//! validation), so every verb, watch and selector serves the same objects
//! under both versions with the same resourceVersions. CRD versions can use
//! the same hook.

use serde_json::Value;

/// How a served version maps to its storage version.
#[derive(Clone, Copy)]
pub struct Conversion {
    /// The API group whose store prefix holds the objects (`""`: core).
    pub stored_group: &'static str,
    /// The served object (already defaulted and valid) in its stored form.
    pub to_stored: fn(Value) -> Value,
    /// A stored object in the served form.
    pub from_stored: fn(Value) -> Value,
}

/// Renames top-level fields: `pairs` are (served, stored) names; `forward`
/// goes from served to stored. Fields named in neither column are kept.
pub fn rename(mut obj: Value, pairs: &[(&str, &str)], forward: bool) -> Value {
    if let Some(m) = obj.as_object_mut() {
        let moves: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(s, st)| if forward { (*s, *st) } else { (*st, *s) })
            .collect();
        let taken: Vec<(&str, Option<Value>)> = moves
            .iter()
            .map(|(from, to)| (*to, m.remove(*from)))
            .collect();
        for (to, v) in taken {
            match v {
                Some(v) => {
                    m.insert(to.to_string(), v);
                }
                None => {
                    m.remove(to);
                }
            }
        }
    }
    obj
}

/// `apiVersion` set to `api_version` (the form's own).
pub fn with_api_version(mut obj: Value, api_version: &str) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(api_version.into()));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renames_go_both_ways_and_keep_other_fields() {
        let pairs = [("note", "message"), ("regarding", "involvedObject")];
        let served = json!({"note": "n", "regarding": {"name": "p"}, "reason": "R"});
        let stored = rename(served.clone(), &pairs, true);
        assert_eq!(
            stored,
            json!({"message": "n", "involvedObject": {"name": "p"}, "reason": "R"})
        );
        assert_eq!(rename(stored, &pairs, false), served);
        // A stored field with no served counterpart present is not left behind.
        let odd = rename(json!({"message": "m", "note": "stale"}), &pairs, false);
        assert_eq!(odd, json!({"note": "m"}));
    }
}
