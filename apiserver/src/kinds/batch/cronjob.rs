//! Cron jobs: a job template run on a schedule, checked as Kubernetes'
//! `ValidateCronJob` checks it (the cron expression and time zone
//! parsed here) and printed as kubectl prints them.

use serde_json::{Value, json};

use super::job::{job_pod_defaults, job_template_causes};
use crate::error::Cause;
use crate::kinds::columns::{self, Cell, cell};
use crate::kinds::fields::default_at;
use crate::kinds::{Column, Strategy};
use crate::meta;

/// Cron jobs: a schedule, a concurrency policy, history limits and a job
/// template whose pods run to completion.
pub(super) struct CronJobStrategy;
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
