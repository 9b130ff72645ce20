//! Jobs: a pod template that runs to completion, its pods selected by the
//! job's uid, fixed once created; printed as kubectl prints them. The
//! pod defaults and checks of a job template are shared with cron jobs.

use serde_json::{Value, json};

use crate::error::Cause;
use crate::kinds::columns;
use crate::kinds::fields::default_at;
use crate::kinds::pod::{pod_spec_defaults, validate_pod_spec};
use crate::kinds::{Column, Strategy};
use crate::meta;

pub(super) struct JobStrategy;
impl Strategy for JobStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        job_defaults(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_job(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        job_update(new, old)
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Status", "The job's state, from its conditions"),
            Column::new("Completions", "Succeeded/desired"),
            Column::new("Duration", "How long the job ran"),
            Column::new("Containers", "Containers of the pod template").wide(),
            Column::new("Images", "Images of the pod template").wide(),
            Column::new("Selector", "The job's pod selector").wide(),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let containers = obj
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let joined = |field: &str| {
            let parts: Vec<&str> = containers
                .iter()
                .filter_map(|c| c.get(field).and_then(Value::as_str))
                .collect();
            json!(parts.join(","))
        };
        vec![
            json!(job_status(obj)),
            json!(job_completions(obj)),
            json!(job_duration(obj, meta::now_secs())),
            joined("name"),
            joined("image"),
            json!(columns::label_selector(obj.pointer("/spec/selector"))),
        ]
    }
}

/// The STATUS column as kubectl 1.33's printer words it.
fn job_status(obj: &Value) -> &'static str {
    let has = |t: &str| {
        obj.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// `succeeded/completions`; without completions `succeeded/1`, with
/// ` of <parallelism>` when more than one pod runs at once.
fn job_completions(obj: &Value) -> String {
    let num = |p: &str| obj.pointer(p).and_then(Value::as_i64);
    let succeeded = num("/status/succeeded").unwrap_or(0);
    match num("/spec/completions") {
        Some(c) => format!("{succeeded}/{c}"),
        None => match num("/spec/parallelism").unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

/// From start to completion (or to `now`), as kubectl's `HumanDuration`
/// writes it; empty before the job started.
fn job_duration(obj: &Value, now: i64) -> String {
    let at = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .and_then(meta::parse_rfc3339)
    };
    let Some(start) = at("/status/startTime") else {
        return String::new();
    };
    let end = at("/status/completionTime").unwrap_or(now);
    human_duration((end - start).max(0))
}

/// Kubernetes' `duration.HumanDuration`: two units while the larger is small.
fn human_duration(s: i64) -> String {
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match s {
        0..120 => format!("{s}s"),
        120..600 if s % 60 == 0 => format!("{m}m"),
        120..600 => format!("{m}m{}s", s % 60),
        600..10_800 => format!("{m}m"),
        10_800..28_800 if m % 60 == 0 => format!("{h}h"),
        10_800..28_800 => format!("{h}h{}m", m % 60),
        28_800..172_800 => format!("{h}h"),
        172_800..691_200 if h % 24 == 0 => format!("{d}d"),
        172_800..691_200 => format!("{d}d{}h", h % 24),
        691_200..63_072_000 => format!("{d}d"),
        63_072_000..252_288_000 if d % 365 != 0 => format!("{}y{}d", d / 365, d % 365),
        _ => format!("{}y", d / 365),
    }
}

fn job_defaults(obj: &mut Value) {
    generate_job_selector(obj);
    default_at(obj, &["spec", "parallelism"], json!(1));
    default_at(obj, &["spec", "completions"], json!(1));
    default_at(obj, &["spec", "backoffLimit"], json!(6));
    default_at(obj, &["spec", "completionMode"], json!("NonIndexed"));
    default_at(obj, &["spec", "suspend"], json!(false));
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        job_pod_defaults(spec);
    }
}

/// Unless `spec.manualSelector` is true, Kubernetes' job strategy selects
/// the Job's pods by its uid: `spec.selector` matches
/// `batch.kubernetes.io/controller-uid`, and the template gets that label,
/// `batch.kubernetes.io/job-name` and their legacy forms (`controller-uid`,
/// `job-name`). Runs after the uid is assigned.
fn generate_job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    let (Some(uid), Some(name)) = (
        obj.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string),
    ) else {
        return;
    };
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if !spec.get("selector").is_some_and(|s| s.is_object()) {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if !template.is_object() {
        return;
    }
    let meta = template
        .as_object_mut()
        .map(|t| t.entry("metadata").or_insert_with(|| json!({})));
    let Some(labels) = meta
        .and_then(Value::as_object_mut)
        .map(|m| m.entry("labels").or_insert_with(|| json!({})))
    else {
        return;
    };
    if let Some(labels) = labels.as_object_mut() {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.entry(k).or_insert_with(|| json!(v));
        }
    }
}

/// Defaults of a job's pod spec (of a Job, or of a CronJob's job template).
pub(super) fn job_pod_defaults(spec: &mut Value) {
    default_at(spec, &["restartPolicy"], json!("Never"));
    pod_spec_defaults(spec);
}

/// Jobs: valid containers and a restart policy of OnFailure or Never.
fn validate_job(obj: &Value) -> Vec<Cause> {
    job_template_causes(obj.pointer("/spec/template/spec"), "spec.template.spec")
}

/// The pod spec of a job at `path`: valid containers, and a restart policy
/// of OnFailure or Never.
pub(super) fn job_template_causes(spec: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut causes = validate_pod_spec(spec, path);
    match spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
    {
        Some("OnFailure") | Some("Never") | None => {}
        Some(other) => causes.push(Cause::not_supported(
            format!("{path}.restartPolicy"),
            other,
            &["OnFailure", "Never"],
        )),
    }
    causes
}

/// Jobs: selector and pod template are fixed once created.
fn job_update(new: &Value, old: &Value) -> Vec<Cause> {
    [
        Cause::immutable(new, old, "/spec/selector", "spec.selector"),
        Cause::immutable(new, old, "/spec/template", "spec.template"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_tables_show_status_completions_and_duration_as_kubectl_does() {
        let names: Vec<String> = JobStrategy.columns().into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Status",
                "Completions",
                "Duration",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let mut obj = json!({"metadata": {"name": "pi"},
            "spec": {"completions": 3, "parallelism": 2, "selector": {"matchLabels": {"a": "1"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": "2026-12-01T08:00:00Z"}});
        let now = meta::parse_rfc3339("2026-12-01T08:03:20Z").unwrap();
        assert_eq!(job_status(&obj), "Running");
        assert_eq!(job_completions(&obj), "1/3");
        assert_eq!(job_duration(&obj, now), "3m20s");
        obj["status"]["completionTime"] = json!("2026-12-01T08:00:42Z");
        obj["status"]["conditions"] = json!([{"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True"}]);
        assert_eq!(job_status(&obj), "Complete");
        assert_eq!(job_duration(&obj, now), "42s");
        assert_eq!(
            JobStrategy.cells(&obj)[3..],
            [json!("c"), json!("perl"), json!("a=1")]
        );
        obj["status"]["conditions"] = json!([{"type": "Suspended", "status": "True"}]);
        assert_eq!(job_status(&obj), "Suspended");
        obj["status"]["conditions"] = json!([{"type": "FailureTarget", "status": "True"}]);
        assert_eq!(job_status(&obj), "FailureTarget");
        obj["spec"] = json!({"parallelism": 4});
        assert_eq!(job_completions(&obj), "1/1 of 4");
        obj["spec"] = json!({"parallelism": 1});
        assert_eq!(job_completions(&obj), "1/1");
        obj["status"] = json!({});
        assert_eq!(job_duration(&obj, now), "");
        for (secs, text) in [
            (59, "59s"),
            (125, "2m5s"),
            (180, "3m"),
            (3599, "59m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (3 * 86_400, "3d"),
            (3 * 86_400 + 3600, "3d1h"),
            (20 * 86_400, "20d"),
            (800 * 86_400, "2y70d"),
            (730 * 86_400, "2y"),
            (9 * 365 * 86_400, "9y"),
        ] {
            assert_eq!(human_duration(secs), text, "{secs}");
        }
    }

    #[test]
    fn jobs_select_their_pods_by_uid_unless_the_selector_is_manual() {
        let mut obj = json!({"metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"metadata": {"labels": {"app": "pi"}},
                "spec": {"containers": [{"name": "c", "image": "perl"}]}}}});
        job_defaults(&mut obj);
        assert_eq!(
            obj["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            obj["spec"]["template"]["metadata"]["labels"],
            json!({"app": "pi", "batch.kubernetes.io/controller-uid": "u-1",
                "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "job-name": "pi"})
        );
        let mut manual = json!({"metadata": {"name": "m", "uid": "u-2"},
            "spec": {"manualSelector": true, "selector": {"matchLabels": {"app": "m"}},
                "template": {"metadata": {"labels": {"app": "m"}}, "spec": {}}}});
        job_defaults(&mut manual);
        assert_eq!(
            manual["spec"]["selector"],
            json!({"matchLabels": {"app": "m"}})
        );
        assert_eq!(
            manual["spec"]["template"]["metadata"]["labels"],
            json!({"app": "m"})
        );
    }
}
