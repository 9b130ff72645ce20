//! The `batch/v1` kinds: jobs (a pod template that runs to completion, fixed
//! once created) and cron jobs (a job template run on a cron schedule).

use k8s_openapi::api::batch::v1 as batch;
use serde_json::{Value, json};

use super::columns::{self, Cell, cell};
use super::fields::default_at;
use super::pod::{pod_spec_defaults, validate_pod_spec};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;
use crate::meta;

/// The `batch` kinds, in discovery order.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<batch::Job>()
            .categories(&["all"])
            .subresources(&[Subresource::Status])
            .strategy(JobStrategy),
        ResourceType::of::<batch::CronJob>()
            .short_names(&["cj"])
            .categories(&["all"])
            .subresources(&[Subresource::Status])
            .strategy(CronJobStrategy),
    ]
}

struct JobStrategy;
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
fn job_pod_defaults(spec: &mut Value) {
    default_at(spec, &["restartPolicy"], json!("Never"));
    pod_spec_defaults(spec);
}

/// Jobs: valid containers and a restart policy of OnFailure or Never.
fn validate_job(obj: &Value) -> Vec<Cause> {
    job_template_causes(obj.pointer("/spec/template/spec"), "spec.template.spec")
}

/// The pod spec of a job at `path`: valid containers, and a restart policy
/// of OnFailure or Never.
fn job_template_causes(spec: Option<&Value>, path: &str) -> Vec<Cause> {
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

/// Cron jobs: a schedule, a concurrency policy, history limits and a job
/// template whose pods run to completion.
struct CronJobStrategy;
impl Strategy for CronJobStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        cronjob_defaults(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_cronjob(obj)
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Schedule", "The schedule"),
            Column::new("Timezone", "The time zone of the schedule"),
            Column::new("Suspend", "Whether new jobs are suspended"),
            Column::new("Active", "Running jobs"),
            Column::new("Last Schedule", "Time since the last schedule"),
            Column::new("Containers", "Containers of the job template").wide(),
            Column::new("Images", "Images of the job template").wide(),
            Column::new("Selector", "Selector of the job template").wide(),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let containers = obj
            .pointer("/spec/jobTemplate/spec/template/spec/containers")
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
        // kubectl's own printer capitalizes booleans.
        let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let last_schedule = match obj.pointer("/status/lastScheduleTime") {
            Some(Value::String(t)) => meta::age(Some(t)),
            _ => "<none>".into(),
        };
        vec![
            cell(obj, Cell::At("/spec/schedule")),
            cell(obj, Cell::At("/spec/timeZone")),
            json!(suspend),
            cell(obj, Cell::Count("/status/active")),
            json!(last_schedule),
            joined("name"),
            joined("image"),
            json!(columns::label_selector(
                obj.pointer("/spec/jobTemplate/spec/selector")
            )),
        ]
    }
}

fn cronjob_defaults(obj: &mut Value) {
    // Kubernetes defaults an empty policy as well as a missing one.
    if obj.pointer("/spec/concurrencyPolicy") == Some(&json!("")) {
        obj["spec"]["concurrencyPolicy"] = json!("Allow");
    }
    default_at(obj, &["spec", "concurrencyPolicy"], json!("Allow"));
    default_at(obj, &["spec", "suspend"], json!(false));
    default_at(obj, &["spec", "successfulJobsHistoryLimit"], json!(3));
    default_at(obj, &["spec", "failedJobsHistoryLimit"], json!(1));
    if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec/template/spec") {
        job_pod_defaults(spec);
    }
}

/// CronJob names leave room for the job names derived from them.
const MAX_CRONJOB_NAME: usize = 52;

/// Cron jobs, as Kubernetes' `ValidateCronJob`.
fn validate_cronjob(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str)
        && name.len() > MAX_CRONJOB_NAME
    {
        causes.push(Cause::invalid(
            "metadata.name",
            format!("Invalid value: {name:?}: must be no more than {MAX_CRONJOB_NAME} characters"),
        ));
    }
    let time_zone = obj.pointer("/spec/timeZone").and_then(Value::as_str);
    match obj.pointer("/spec/schedule").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("spec.schedule")),
        Some(schedule) => {
            if let Err(e) = parse_schedule(schedule) {
                causes.push(Cause::invalid(
                    "spec.schedule",
                    format!("Invalid value: {schedule:?}: {e}"),
                ));
            }
            // Only objects created before `timeZone` existed may keep one.
            if schedule.contains("TZ") {
                causes.push(Cause::invalid(
                    "spec.schedule",
                    format!("Invalid value: {schedule:?}: cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
                ));
            }
        }
    }
    non_negative(obj, "startingDeadlineSeconds", &mut causes);
    match obj
        .pointer("/spec/concurrencyPolicy")
        .and_then(Value::as_str)
    {
        Some("Allow" | "Forbid" | "Replace") => {}
        None | Some("") => causes.push(Cause::required("spec.concurrencyPolicy")),
        Some(other) => causes.push(Cause::not_supported(
            "spec.concurrencyPolicy",
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    causes.extend(job_template_causes(
        obj.pointer("/spec/jobTemplate/spec/template/spec"),
        "spec.jobTemplate.spec.template.spec",
    ));
    non_negative(obj, "successfulJobsHistoryLimit", &mut causes);
    non_negative(obj, "failedJobsHistoryLimit", &mut causes);
    if let Some(tz) = time_zone
        && let Err(e) = time_zone_name(tz)
    {
        causes.push(Cause::invalid(
            "spec.timeZone",
            format!("Invalid value: {tz:?}: {e}"),
        ));
    }
    causes
}

/// `spec.<field>`, when set, is not negative.
fn non_negative(obj: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(n) = obj
        .pointer(&format!("/spec/{field}"))
        .and_then(Value::as_i64)
        && n < 0
    {
        causes.push(Cause::invalid(
            format!("spec.{field}"),
            format!("Invalid value: {n}: must be greater than or equal to 0"),
        ));
    }
}

/// A time zone name as Kubernetes accepts it before looking it up in the
/// IANA database (which this server does not carry): `/`-separated parts of
/// letters, digits and `.-_+`, no `.`/`..` part, no part starting with `-`,
/// and never `Local`.
fn time_zone_name(tz: &str) -> Result<(), String> {
    if tz.is_empty() {
        return Err("timeZone must be nil or non-empty string".into());
    }
    let part_ok = |p: &str| {
        (1..=14).contains(&p.len())
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c))
    };
    if !tz.split('/').all(part_ok) {
        return Err(format!("unknown time zone {tz}"));
    }
    if tz.eq_ignore_ascii_case("Local") {
        return Err(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .into(),
        );
    }
    Ok(())
}

/// The fields of a standard cron expression: name, minimum, maximum, names.
const CRON_FIELDS: [(&str, u64, u64, &[&str]); 5] = [
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day of month", 1, 31, &[]),
    (
        "month",
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    ),
    (
        "day of week",
        0,
        6,
        &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    ),
];

/// Check a schedule as Kubernetes parses it (the standard parser of
/// `robfig/cron`): five fields of comma-separated `*`, `?`, `N` or `N-M`
/// (numbers or month and weekday names), each with an optional `/step`, or
/// a descriptor such as `@daily`. A leading `TZ=`/`CRON_TZ=` zone is skipped
/// here (the caller refuses it). Errors read as the parser's.
fn parse_schedule(schedule: &str) -> Result<(), String> {
    let mut spec = schedule;
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let end = spec.find(char::is_whitespace).unwrap_or(spec.len());
        spec = spec[end..].trim();
    }
    if spec.starts_with('@') {
        return match spec {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
            | "@hourly" => Ok(()),
            _ => Err(format!("unrecognized descriptor: {spec}")),
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != CRON_FIELDS.len() {
        return Err(format!(
            "expected exactly {} fields, found {}: [{}]",
            CRON_FIELDS.len(),
            fields.len(),
            fields.join(" ")
        ));
    }
    for (field, (_, min, max, names)) in fields.iter().zip(CRON_FIELDS) {
        for expr in field.split(',').filter(|e| !e.is_empty()) {
            cron_range(expr, min, max, names)?;
        }
    }
    Ok(())
}

/// One `range[/step]` of a cron field.
fn cron_range(expr: &str, min: u64, max: u64, names: &[&str]) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let (start, mut end) = if matches!(low_and_high[0], "*" | "?") {
        (min, max)
    } else {
        let start = cron_number(low_and_high[0], names)?;
        match low_and_high.len() {
            1 => (start, start),
            2 => (start, cron_number(low_and_high[1], names)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            // `N/step` means `N-max/step`.
            if low_and_high.len() == 1 {
                end = max;
            }
            cron_number(range_and_step[1], &[])?
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

/// A number or (case-insensitive) name of a cron field.
fn cron_number(text: &str, names: &[&str]) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        // Month names count from 1, weekday names from 0 (Sunday).
        let first = if names.len() == 12 { 1 } else { 0 };
        return Ok(i as u64 + first);
    }
    let n: i64 = text.parse().map_err(|_| {
        format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: invalid syntax")
    })?;
    u64::try_from(n).map_err(|_| format!("negative number ({n}) not allowed: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

    fn cronjob(spec: Value) -> Value {
        let mut obj = json!({"metadata": {"name": "backup"}, "spec": spec});
        cronjob_defaults(&mut obj);
        obj
    }

    fn template() -> Value {
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
    }

    #[test]
    fn cron_schedules_parse_as_kubernetes_parses_them() {
        for ok in [
            "*/5 * * * *",
            "0 0 * * *",
            "0,15,30,45 9-17 * * mon-fri",
            "30 2 1 JAN,jul ?",
            "0 12 * * 0",
            "5/10 * 1-31/2 * SUN",
            "0 0 1 1 *",
            "59 23 31 12 6",
            "1,,2 * * * *",
            "  0   0 * * *  ",
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ] {
            assert_eq!(parse_schedule(ok), Ok(()), "{ok}");
        }
        for (bad, error) in [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            (
                "0 0 * * * *",
                "expected exactly 5 fields, found 6: [0 0 * * * *]",
            ),
            (
                "not a cron",
                "expected exactly 5 fields, found 3: [not a cron]",
            ),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* 24 * * *", "end of range (24) above maximum (23): 24"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * 13 *", "end of range (13) above maximum (12): 13"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            (
                "-1 * * * *",
                "failed to parse int from : strconv.Atoi: parsing \"\": invalid syntax",
            ),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            (
                "* * * foo *",
                "failed to parse int from foo: strconv.Atoi: parsing \"foo\": invalid syntax",
            ),
            ("@every", "unrecognized descriptor: @every"),
            ("@reboot", "unrecognized descriptor: @reboot"),
        ] {
            assert_eq!(parse_schedule(bad), Err(error.to_string()), "{bad:?}");
        }
    }

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

    #[test]
    fn cronjobs_default_as_kubernetes_1_33() {
        let obj = cronjob(json!({"schedule": "@hourly", "jobTemplate": template()}));
        assert_eq!(obj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(obj["spec"]["suspend"], false);
        assert_eq!(obj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(obj["spec"]["failedJobsHistoryLimit"], 1);
        let pod = &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(
            validate_cronjob(&obj).is_empty(),
            "{:?}",
            validate_cronjob(&obj)
        );
        let empty = cronjob(
            json!({"schedule": "@daily", "concurrencyPolicy": "", "jobTemplate": template()}),
        );
        assert_eq!(empty["spec"]["concurrencyPolicy"], "Allow");
        let kept = cronjob(
            json!({"schedule": "@daily", "concurrencyPolicy": "Forbid", "suspend": true,
            "successfulJobsHistoryLimit": 0, "jobTemplate": template()}),
        );
        assert_eq!(kept["spec"]["concurrencyPolicy"], "Forbid");
        assert_eq!(kept["spec"]["suspend"], true);
        assert_eq!(kept["spec"]["successfulJobsHistoryLimit"], 0);
    }

    #[test]
    fn cronjobs_are_validated_as_kubernetes_validates_them() {
        let valid = cronjob(
            json!({"schedule": "*/5 * * * *", "timeZone": "Europe/Berlin", "jobTemplate": template()}),
        );
        assert!(
            validate_cronjob(&valid).is_empty(),
            "{:?}",
            validate_cronjob(&valid)
        );
        let mut bad = cronjob(json!({"schedule": "61 * * * *", "timeZone": "Local",
            "concurrencyPolicy": "Sometimes", "startingDeadlineSeconds": -1,
            "successfulJobsHistoryLimit": -1, "failedJobsHistoryLimit": -2,
            "jobTemplate": template()}));
        bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        bad["metadata"]["name"] = json!("n".repeat(53));
        let causes = validate_cronjob(&bad);
        assert_eq!(
            fields(&causes),
            [
                "metadata.name",
                "spec.schedule",
                "spec.startingDeadlineSeconds",
                "spec.concurrencyPolicy",
                "spec.jobTemplate.spec.template.spec.restartPolicy",
                "spec.successfulJobsHistoryLimit",
                "spec.failedJobsHistoryLimit",
                "spec.timeZone",
            ]
        );
        assert_eq!(
            causes[1].message,
            "Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"
        );
        assert!(
            causes[0].message.contains("no more than 52 characters"),
            "{causes:?}"
        );
        assert!(
            causes[7].message.contains("explicit time zone"),
            "{causes:?}"
        );
        let mut name_52 = valid.clone();
        name_52["metadata"]["name"] = json!("n".repeat(52));
        assert!(validate_cronjob(&name_52).is_empty());

        let missing = cronjob(json!({"jobTemplate": {"spec": {"template": {"spec": {}}}}}));
        assert_eq!(
            fields(&validate_cronjob(&missing)),
            [
                "spec.schedule",
                "spec.jobTemplate.spec.template.spec.containers"
            ]
        );
        for tz in ["TZ=UTC 0 * * * *", "CRON_TZ=Europe/Berlin @daily"] {
            let obj = cronjob(json!({"schedule": tz, "jobTemplate": template()}));
            let causes = validate_cronjob(&obj);
            assert_eq!(fields(&causes), ["spec.schedule"], "{tz}");
            assert!(
                causes[0].message.contains("use timeZone field instead"),
                "{causes:?}"
            );
        }
        for tz in [
            "",
            "../etc/passwd",
            "Europe/-Berlin",
            "Far/Away/TooLongPartName15",
            "UTC zone",
        ] {
            assert!(time_zone_name(tz).is_err(), "{tz:?}");
        }
        for tz in [
            "UTC",
            "Etc/GMT+5",
            "America/Argentina/Buenos_Aires",
            "America/Port-au-Prince",
        ] {
            assert_eq!(time_zone_name(tz), Ok(()), "{tz:?}");
        }
    }

    #[test]
    fn cronjob_tables_show_schedule_and_template() {
        let mut obj = cronjob(json!({"schedule": "0 3 * * *", "jobTemplate": {"spec": {
            "selector": {"matchLabels": {"b": "2", "a": "1"}},
            "template": {"spec": {"containers": [
                {"name": "c1", "image": "busybox:1.36"}, {"name": "c2", "image": "alpine"}]}}}}}));
        obj["status"] = json!({"active": [{"name": "j1"}]});
        let s = CronJobStrategy;
        let names: Vec<String> = s.columns().into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            s.cells(&obj),
            [
                json!("0 3 * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("<none>"),
                json!("c1,c2"),
                json!("busybox:1.36,alpine"),
                json!("a=1,b=2"),
            ]
        );
    }
}
