//! The checks of a CRD's versions that serving depends on (the CRD
//! strategy in [`crate::kinds`] calls them): printer columns, scale and
//! selectable field paths, the conversion strategy, and (on create, and on
//! an update of a CRD whose schemas were structural) structural schemas.

use serde_json::Value;

use super::jsonpath::JsonPath;
use super::printer;
use crate::error::Cause;

/// At most this many selectable fields per version, as in Kubernetes.
const MAX_SELECTABLE: usize = 8;

fn versions(crd: &Value) -> &[Value] {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Field errors of the versions' serving settings and the conversion.
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, v) in versions(crd).iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        causes.extend(printer::validate(v, &at));
        if let Some(scale) = v.pointer("/subresources/scale").filter(|s| s.is_object()) {
            for (key, under) in [
                ("specReplicasPath", Some(".spec.")),
                ("statusReplicasPath", Some(".status.")),
                ("labelSelectorPath", None),
            ] {
                let field = format!("{at}.subresources.scale.{key}");
                match scale.get(key).and_then(Value::as_str) {
                    None if key == "labelSelectorPath" => {}
                    None => causes.push(Cause::required(field)),
                    Some(p) => {
                        let simple = JsonPath::parse(p).ok().and_then(|j| j.pointer());
                        let placed = under.is_none_or(|u| p.starts_with(u))
                            && (p.starts_with(".spec.") || p.starts_with(".status."));
                        if simple.is_none() || !placed {
                            let where_ = under.unwrap_or(".spec. or .status.");
                            causes.push(Cause::invalid(
                                field,
                                format!("Invalid value: {p:?}: should be a simple JSON path under {where_}"),
                            ));
                        }
                    }
                }
            }
        }
        let selectable = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if selectable.len() > MAX_SELECTABLE {
            causes.push(Cause {
                field: format!("{at}.selectableFields"),
                reason: "FieldValueTooMany",
                message: format!(
                    "Too many: {}: must have at most {MAX_SELECTABLE} items",
                    selectable.len()
                ),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for (j, f) in selectable.iter().enumerate() {
            let field = format!("{at}.selectableFields[{j}].jsonPath");
            match f.get("jsonPath").and_then(Value::as_str) {
                None | Some("") => causes.push(Cause::required(field)),
                Some(p) => match JsonPath::parse(p).ok().and_then(|j| j.field_label()) {
                    None => causes.push(Cause::invalid(
                        field,
                        format!("Invalid value: {p:?}: must be a simple JSON path"),
                    )),
                    Some(label) if label.starts_with("metadata.") => causes.push(Cause::forbidden(
                        field,
                        "metadata fields are selectable already",
                    )),
                    Some(label) if !seen.insert(label.clone()) => {
                        causes.push(Cause::duplicate(field, p))
                    }
                    Some(_) => {}
                },
            }
        }
    }
    let conversion = crd
        .pointer("/spec/conversion/strategy")
        .and_then(Value::as_str);
    match conversion {
        None | Some("None") => {}
        // Accepted and stored; the controller says it is not served.
        Some("Webhook") => {
            if !crd
                .pointer("/spec/conversion/webhook")
                .is_some_and(Value::is_object)
            {
                causes.push(Cause::required_because(
                    "spec.conversion.webhook",
                    "required when strategy is set to Webhook",
                ));
            }
        }
        Some(s) => causes.push(Cause::not_supported(
            "spec.conversion.strategy",
            s,
            &["None", "Webhook"],
        )),
    }
    causes
}

/// Field errors of schemas that are not structural.
pub fn structural(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, v) in versions(crd).iter().enumerate() {
        if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
            let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
            if let Err(c) = crate::structural::Structural::new(schema, &path) {
                causes.extend(c);
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn serving_settings_are_checked() {
        let crd = json!({"spec": {"versions": [{"name": "v1",
            "subresources": {"scale": {"specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".spec.observed", "labelSelectorPath": ".status.sel[0]"}},
            "selectableFields": [{"jsonPath": ".spec.color"}, {"jsonPath": ".spec.color"},
                {"jsonPath": ".metadata.name"}, {"jsonPath": ".spec.list[0]"}]}],
            "conversion": {"strategy": "Webhook"}}});
        assert_eq!(
            fields(&validate(&crd)),
            [
                "spec.versions[0].subresources.scale.statusReplicasPath",
                "spec.versions[0].subresources.scale.labelSelectorPath",
                "spec.versions[0].selectableFields[1].jsonPath",
                "spec.versions[0].selectableFields[2].jsonPath",
                "spec.versions[0].selectableFields[3].jsonPath",
                "spec.conversion.webhook",
            ]
        );
        let good = json!({"spec": {"versions": [{"name": "v1",
            "subresources": {"scale": {"specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
            "selectableFields": [{"jsonPath": ".spec.color"}]}],
            "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"]}}}});
        assert!(validate(&good).is_empty(), "{:?}", validate(&good));
        let bad = json!({"spec": {"conversion": {"strategy": "Magic"}}});
        assert_eq!(fields(&validate(&bad)), ["spec.conversion.strategy"]);
    }
}
