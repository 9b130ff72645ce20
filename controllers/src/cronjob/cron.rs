//! Cron schedules as Kubernetes reads them (the standard five-field parser
//! of `robfig/cron`, which the API server also validates against) and the
//! times they fire in a time zone. Pure: the cronjob controller asks
//! [`Schedule::next_after`] for the next time and [`most_recent`] for the
//! latest missed one.
//!
//! Each field is a bit set of the values it allows. A field written as `*`
//! or `?` (without a step above 1) also carries [`STAR`], because the day of
//! month and the day of week combine as cron always combined them: when
//! either is a star both must match, otherwise either may.

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Set in a field's bits when the field was `*` or `?`.
const STAR: u64 = 1 << 63;

/// A parsed schedule: the allowed values of each field as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

/// The minimum, maximum and value names of each field, in order.
const FIELDS: [(u64, u64, &[&str]); 5] = [
    (0, 59, &[]),
    (0, 23, &[]),
    (1, 31, &[]),
    (
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    ),
    (0, 6, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
];

/// How far ahead [`Schedule::next_after`] looks before deciding a schedule
/// never fires (`0 0 30 2 *` asks for February 30th).
const HORIZON_YEARS: i16 = 5;

impl Schedule {
    /// Parse a five-field expression or a descriptor (`@hourly`, `@daily`,
    /// `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`). Errors
    /// read as the parser's in Kubernetes.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let spec = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        let mut bits = [0u64; 5];
        for (i, (field, (min, max, names))) in fields.iter().zip(FIELDS).enumerate() {
            for expr in field.split(',').filter(|e| !e.is_empty()) {
                bits[i] |= range_bits(expr, min, max, names)?;
            }
        }
        Ok(Schedule {
            minute: bits[0],
            hour: bits[1],
            dom: bits[2],
            month: bits[3],
            dow: bits[4],
        })
    }

    /// Whether the schedule fires on `date`.
    fn day_matches(&self, date: Date) -> bool {
        let dom = self.dom & (1 << date.day()) != 0;
        let dow = self.dow & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first time after `after` (strictly) that the schedule fires, read
    /// on the wall clock of `tz`. A wall time that a daylight-saving jump
    /// skips fires at the same offset after the jump; one that repeats fires
    /// at its first occurrence. `None` when it never fires within five years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after);
        let limit = start.year().saturating_add(HORIZON_YEARS);
        let mut dt = next_minute(start.date().at(start.hour(), start.minute(), 0, 0))?;
        loop {
            if dt.year() > limit {
                return None;
            }
            if self.month & (1 << dt.month()) == 0 {
                dt = next_month(dt.date())?;
            } else if !self.day_matches(dt.date()) {
                dt = dt.date().tomorrow().ok()?.at(0, 0, 0, 0);
            } else if self.hour & (1 << dt.hour()) == 0 {
                dt = next_hour(dt)?;
            } else if self.minute & (1 << dt.minute()) == 0 {
                dt = next_minute(dt)?;
            } else {
                let ts = tz.to_timestamp(dt).ok()?;
                if ts > after {
                    return Some(ts);
                }
                // A wall time repeated by a fall-back jump that we already passed.
                dt = next_minute(dt)?;
            }
        }
    }
}

/// The most recent time in `(earliest, now]` the schedule fired, and how
/// many times it fired in that span (counted up to [`MISSED_CAP`] + 1; more
/// are not counted). `None` when it did not fire.
pub fn most_recent(
    schedule: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, u32) {
    let mut last = None;
    let mut count = 0u32;
    let mut t = earliest;
    while let Some(next) = schedule.next_after(t, tz) {
        if next > now {
            return (last, count);
        }
        count += 1;
        last = Some(next);
        t = next;
        if count > MISSED_CAP {
            break;
        }
    }
    if count <= MISSED_CAP {
        return (last, count);
    }
    // Too many to walk one by one: find the last one in a window before
    // `now` that is wide enough to hold one.
    for hours in [1i64, 24, 24 * 32, 24 * 367, 24 * 366 * 6] {
        let from = now
            .checked_sub(SignedDuration::from_hours(hours))
            .unwrap_or(earliest)
            .max(t);
        let mut t = from;
        let mut found = None;
        while let Some(next) = schedule.next_after(t, tz) {
            if next > now {
                break;
            }
            found = Some(next);
            t = next;
        }
        if found.is_some() {
            return (found, count);
        }
    }
    (last, count)
}

/// Beyond this many missed times Kubernetes warns (`TooManyMissedTimes`).
pub const MISSED_CAP: u32 = 100;

/// The bits of one `range[/step]` expression of a field.
fn range_bits(expr: &str, min: u64, max: u64, names: &[&str]) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let mut star = 0;
    let (start, mut end) = if matches!(low_and_high[0], "*" | "?") {
        star = STAR;
        (min, max)
    } else {
        let start = number(low_and_high[0], names)?;
        match low_and_high.len() {
            1 => (start, start),
            2 => (start, number(low_and_high[1], names)?),
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
            let step = number(range_and_step[1], &[])?;
            if step > 1 {
                star = 0;
            }
            step
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
    let mut bits = star;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok(bits)
}

/// A number or (case-insensitive) name of a field's value.
fn number(text: &str, names: &[&str]) -> Result<u64, String> {
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

fn next_minute(dt: DateTime) -> Option<DateTime> {
    if dt.minute() < 59 {
        Some(dt.date().at(dt.hour(), dt.minute() + 1, 0, 0))
    } else {
        next_hour(dt)
    }
}

fn next_hour(dt: DateTime) -> Option<DateTime> {
    if dt.hour() < 23 {
        Some(dt.date().at(dt.hour() + 1, 0, 0, 0))
    } else {
        Some(dt.date().tomorrow().ok()?.at(0, 0, 0, 0))
    }
}

fn next_month(d: Date) -> Option<DateTime> {
    let (y, m) = if d.month() < 12 {
        (d.year(), d.month() + 1)
    } else {
        (d.year().checked_add(1)?, 1)
    };
    Some(Date::new(y, m, 1).ok()?.at(0, 0, 0, 0))
}

/// The time zone called `name` from the system's IANA database
/// (`/usr/share/zoneinfo`), as Kubernetes loads it from Go's. Names that
/// could leave the database directory are refused.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    let Some(name) = name else {
        // kube-controller-manager schedules in its own zone; Keel's runs in UTC.
        return Ok(TimeZone::UTC);
    };
    if name == "UTC" || name == "Etc/UTC" {
        return Ok(TimeZone::UTC);
    }
    let safe = !name.is_empty()
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.starts_with('-'))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    if !safe || name.eq_ignore_ascii_case("local") {
        return Err(format!("unknown time zone {name}"));
    }
    for dir in ["/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/etc/zoneinfo"] {
        let path = std::path::Path::new(dir).join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        // A TZif file is a few kilobytes; bound the read.
        if !meta.is_file() || meta.len() > 1 << 20 {
            continue;
        }
        if let Ok(data) = std::fs::read(&path) {
            return TimeZone::tzif(name, &data).map_err(|_| format!("unknown time zone {name}"));
        }
    }
    Err(format!("unknown time zone {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(spec: &str, after: &str) -> Option<String> {
        Schedule::parse(spec)
            .expect("parses")
            .next_after(ts(after), &TimeZone::UTC)
            .map(|t| t.to_string())
    }

    #[test]
    fn schedules_fire_at_the_next_matching_minute() {
        for (spec, after, want) in [
            ("* * * * *", "2026-12-01T08:37:50Z", "2026-12-01T08:38:00Z"),
            ("* * * * *", "2026-12-01T08:38:00Z", "2026-12-01T08:39:00Z"),
            (
                "*/5 * * * *",
                "2026-12-01T08:37:50Z",
                "2026-12-01T08:40:00Z",
            ),
            (
                "*/5 * * * *",
                "2026-12-01T08:55:00Z",
                "2026-12-01T09:00:00Z",
            ),
            (
                "5/15 * * * *",
                "2026-12-01T08:51:00Z",
                "2026-12-01T09:05:00Z",
            ),
            ("0 0 * * *", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"),
            ("@hourly", "2026-12-01T08:00:00Z", "2026-12-01T09:00:00Z"),
            ("@daily", "2026-12-01T08:00:00Z", "2026-12-02T00:00:00Z"),
            ("@midnight", "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"),
            ("@weekly", "2026-12-01T08:00:00Z", "2026-12-06T00:00:00Z"),
            ("@monthly", "2026-12-01T08:00:00Z", "2027-01-01T00:00:00Z"),
            ("@yearly", "2026-12-01T08:00:00Z", "2027-01-01T00:00:00Z"),
            // 2026-12-01 is a Tuesday.
            (
                "30 9 * * mon-fri",
                "2026-12-04T10:00:00Z",
                "2026-12-07T09:30:00Z",
            ),
            (
                "0 12 * JAN,jul ?",
                "2026-12-01T00:00:00Z",
                "2027-01-01T12:00:00Z",
            ),
            // Day of month and day of week both restricted: either matches.
            ("0 0 13 * 5", "2026-12-01T00:00:00Z", "2026-12-04T00:00:00Z"),
            ("0 0 1 * 5", "2026-12-05T00:00:00Z", "2026-12-11T00:00:00Z"),
            // One of them a star: both must match (the 13th, any weekday).
            ("0 0 13 * *", "2026-12-01T00:00:00Z", "2026-12-13T00:00:00Z"),
            (
                "0 0 */1 * 5",
                "2026-12-01T00:00:00Z",
                "2026-12-04T00:00:00Z",
            ),
            // A step above 1 is no star: either matches.
            (
                "0 0 */2 * 2",
                "2026-12-01T01:00:00Z",
                "2026-12-03T00:00:00Z",
            ),
            ("0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),
            // December 31st or any Saturday in December.
            (
                "59 23 31 12 6",
                "2026-01-01T00:00:00Z",
                "2026-12-05T23:59:00Z",
            ),
            (
                "59 23 31 12 6",
                "2026-12-26T23:59:00Z",
                "2026-12-31T23:59:00Z",
            ),
        ] {
            assert_eq!(
                next(spec, after).as_deref(),
                Some(want),
                "{spec} after {after}"
            );
        }
        assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00Z"), None);
    }

    #[test]
    fn bad_schedules_are_refused_as_kubernetes_words_it() {
        for (bad, error) in [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
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
            ("@every 5m", "unrecognized descriptor: @every 5m"),
            (
                "TZ=UTC 0 * * * *",
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            (
                "99999999999999999999 * * * *",
                "failed to parse int from 99999999999999999999: strconv.Atoi: parsing \"99999999999999999999\": invalid syntax",
            ),
            (
                "4000000000 * * * *",
                "end of range (4000000000) above maximum (59): 4000000000",
            ),
        ] {
            assert_eq!(Schedule::parse(bad), Err(error.to_string()), "{bad:?}");
        }
    }

    #[test]
    fn schedules_follow_the_wall_clock_of_their_time_zone() {
        let berlin = time_zone(Some("Europe/Berlin")).expect("tzdata installed");
        let s = Schedule::parse("0 9 * * *").expect("parses");
        // Winter: UTC+1.
        assert_eq!(
            s.next_after(ts("2026-12-01T07:00:00Z"), &berlin),
            Some(ts("2026-12-01T08:00:00Z"))
        );
        // Summer: UTC+2.
        assert_eq!(
            s.next_after(ts("2026-07-01T06:00:00Z"), &berlin),
            Some(ts("2026-07-01T07:00:00Z"))
        );
        // 02:30 does not exist on 2026-03-29 in Berlin: it fires at 03:30 CEST.
        let gap = Schedule::parse("30 2 * * *").expect("parses");
        assert_eq!(
            gap.next_after(ts("2026-03-28T12:00:00Z"), &berlin),
            Some(ts("2026-03-29T01:30:00Z"))
        );
        // 02:30 happens twice on 2026-10-25: it fires once, at the first.
        assert_eq!(
            gap.next_after(ts("2026-10-24T12:00:00Z"), &berlin),
            Some(ts("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            gap.next_after(ts("2026-10-25T00:30:00Z"), &berlin),
            Some(ts("2026-10-26T01:30:00Z"))
        );
        for bad in [
            "Local",
            "../etc/passwd",
            "Nowhere/Special",
            "",
            "Europe//Berlin",
        ] {
            assert!(time_zone(Some(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(time_zone(None), Ok(TimeZone::UTC));
    }

    #[test]
    fn the_most_recent_missed_time_is_found_and_missed_times_counted() {
        let every_minute = Schedule::parse("* * * * *").expect("parses");
        let utc = TimeZone::UTC;
        let (last, n) = most_recent(
            &every_minute,
            &utc,
            ts("2026-12-01T08:00:00Z"),
            ts("2026-12-01T08:03:30Z"),
        );
        assert_eq!((last, n), (Some(ts("2026-12-01T08:03:00Z")), 3));
        let (last, n) = most_recent(
            &every_minute,
            &utc,
            ts("2026-12-01T08:03:00Z"),
            ts("2026-12-01T08:03:30Z"),
        );
        assert_eq!((last, n), (None, 0));
        // A month of minutes: more than the cap, the last one still found.
        let (last, n) = most_recent(
            &every_minute,
            &utc,
            ts("2026-11-01T00:00:00Z"),
            ts("2026-12-01T08:03:30Z"),
        );
        assert_eq!(last, Some(ts("2026-12-01T08:03:00Z")));
        assert!(n > MISSED_CAP);
        let yearly = Schedule::parse("@yearly").expect("parses");
        let (last, n) = most_recent(
            &yearly,
            &utc,
            ts("2020-06-01T00:00:00Z"),
            ts("2026-12-01T08:03:30Z"),
        );
        assert_eq!((last, n), (Some(ts("2026-01-01T00:00:00Z")), 6));
    }
}
