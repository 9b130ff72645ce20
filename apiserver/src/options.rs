//! The query parameters that pick what a LIST or WATCH reads from
//! (`resourceVersion`, `resourceVersionMatch`, `continue`, `sendInitialEvents`),
//! checked before anything is read, as kube-apiserver checks its `ListOptions`.

use std::collections::BTreeMap;

use crate::error::{ApiError, Cause};

const EXACT: &str = "Exact";
const NOT_OLDER_THAN: &str = "NotOlderThan";

/// The rules of kube-apiserver's `ValidateListOptions`. Like kube-apiserver,
/// a refusal is a 422 `Invalid` naming `ListOptions.meta.k8s.io` with one
/// cause per broken rule (field `resourceVersionMatch` or `sendInitialEvents`).
pub fn validate(q: &BTreeMap<String, String>, watch: bool) -> Result<(), ApiError> {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let rv = get("resourceVersion");
    let continued = get("continue").is_some();
    let send_initial = match get("sendInitialEvents") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "invalid sendInitialEvents {other:?}: must be true or false"
            )));
        }
    };
    let field = "resourceVersionMatch";
    let mut causes = Vec::new();
    let matched = get(field);
    if watch {
        if send_initial.is_some() && matched != Some(NOT_OLDER_THAN) {
            causes.push(Cause::forbidden(
                field,
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if let Some(m) = matched {
            if send_initial.is_none() {
                causes.push(Cause::forbidden(
                    field,
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if m != NOT_OLDER_THAN {
                causes.push(Cause::not_supported(field, m, &[NOT_OLDER_THAN]));
            }
            if continued {
                causes.push(Cause::forbidden(
                    field,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
    } else {
        if let Some(m) = matched {
            if rv.is_none() {
                causes.push(Cause::forbidden(
                    field,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if continued {
                causes.push(Cause::forbidden(
                    field,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if m != EXACT && m != NOT_OLDER_THAN {
                causes.push(Cause::not_supported(field, m, &[EXACT, NOT_OLDER_THAN, ""]));
            }
            if m == EXACT && rv == Some("0") {
                causes.push(Cause::forbidden(
                    field,
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if send_initial.is_some() {
            causes.push(Cause::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid {
            group: "meta.k8s.io".into(),
            kind: "ListOptions".into(),
            name: String::new(),
            causes,
        })
    }
}

/// Whether a LIST reads at exactly its resourceVersion: asked for with
/// `resourceVersionMatch=Exact`, or, with no match given, implied by a
/// `limit` with a non-zero resourceVersion and no `continue` (the legacy
/// paging rule).
pub fn list_is_exact(q: &BTreeMap<String, String>, limit: usize, rv: Option<u64>) -> bool {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    match get("resourceVersionMatch") {
        Some(m) => m == EXACT,
        None => limit > 0 && get("continue").is_none() && rv.is_some(),
    }
}

/// A resourceVersion given as a minimum: `None` when unset or `"0"` (any),
/// a 400 when it is not a number.
pub fn min_resource_version(q: &BTreeMap<String, String>) -> Result<Option<u64>, ApiError> {
    match q
        .get("resourceVersion")
        .map(String::as_str)
        .filter(|r| !r.is_empty() && *r != "0")
    {
        None => Ok(None),
        Some(r) => r
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {r:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> BTreeMap<String, String> {
        s.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn refused(s: &str, watch: bool) -> Vec<String> {
        match validate(&q(s), watch) {
            Err(ApiError::Invalid { causes, kind, .. }) => {
                assert_eq!(kind, "ListOptions");
                causes.into_iter().map(|c| c.message).collect()
            }
            other => panic!("{s}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn list_options_follow_kubernetes() {
        for ok in [
            "",
            "resourceVersion=5",
            "resourceVersion=5&resourceVersionMatch=Exact",
            "resourceVersion=0&resourceVersionMatch=NotOlderThan",
            "resourceVersion=5&resourceVersionMatch=NotOlderThan&limit=2",
            "continue=abc&limit=2",
        ] {
            assert!(validate(&q(ok), false).is_ok(), "{ok}");
        }
        assert!(
            refused("resourceVersionMatch=NotOlderThan", false)[0]
                .contains("unless resourceVersion")
        );
        assert!(
            refused("resourceVersion=0&resourceVersionMatch=Exact", false)[0].contains("\"0\"")
        );
        assert!(
            refused(
                "resourceVersion=5&resourceVersionMatch=Exact&continue=x",
                false
            )[0]
            .contains("continue")
        );
        assert!(
            refused("resourceVersion=5&resourceVersionMatch=Newest", false)[0]
                .contains("Unsupported value")
        );
        assert!(refused("sendInitialEvents=true", false)[0].contains("forbidden for list"));
    }

    #[test]
    fn watch_options_follow_kubernetes() {
        for ok in [
            "",
            "resourceVersion=5",
            "sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
            "sendInitialEvents=false&resourceVersionMatch=NotOlderThan&resourceVersion=3",
        ] {
            assert!(validate(&q(ok), true).is_ok(), "{ok}");
        }
        assert!(refused("sendInitialEvents=true", true)[0].contains("requires setting"));
        assert!(
            refused("resourceVersionMatch=NotOlderThan", true)[0]
                .contains("unless sendInitialEvents")
        );
        assert!(matches!(
            validate(&q("sendInitialEvents=maybe"), true),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn exactness_of_a_list() {
        assert!(list_is_exact(&q("resourceVersionMatch=Exact"), 0, Some(5)));
        assert!(list_is_exact(&q(""), 10, Some(5)));
        assert!(!list_is_exact(
            &q("resourceVersionMatch=NotOlderThan"),
            10,
            Some(5)
        ));
        assert!(!list_is_exact(&q("continue=x"), 10, Some(5)));
        assert!(!list_is_exact(&q(""), 0, Some(5)));
    }
}
