//! Completion indexes of Indexed Jobs and their text form in
//! `status.completedIndexes` (`"0-2,5,7-9"`: sorted ranges, as Kubernetes
//! writes them). Parsing is lenient: out-of-range or malformed parts are
//! dropped, as the Job controller ignores them.

use std::collections::BTreeSet;

/// The indexes in `text` below `completions`.
pub fn parse(text: Option<&str>, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.unwrap_or_default().split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else { continue };
        if lo < 0 || lo > hi {
            continue;
        }
        // Bound the work by the job's size, whatever the text claims.
        for i in lo..=hi.min(completions.saturating_sub(1)) {
            out.insert(i);
        }
    }
    out
}

/// The text form of `indexes`: ascending, consecutive runs as `a-b`.
pub fn format(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((a, b)) if i == b + 1 => Some((a, i)),
            Some(r) => {
                parts.push(range(r));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some(r) = run {
        parts.push(range(r));
    }
    parts.join(",")
}

fn range((a, b): (i32, i32)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip_in_kubernetes_form() {
        for (text, completions, want, back) in [
            ("", 5, vec![], ""),
            ("0", 5, vec![0], "0"),
            ("0-2,4", 5, vec![0, 1, 2, 4], "0-2,4"),
            ("4,0-1,2", 5, vec![0, 1, 2, 4], "0-2,4"),
            ("1,3-9", 5, vec![1, 3, 4], "1,3-4"),
            ("x,2-1,-3,7", 10, vec![7], "7"),
            ("0-2147483647", 3, vec![0, 1, 2], "0-2"),
        ] {
            let got = parse(Some(text), completions);
            assert_eq!(got.iter().copied().collect::<Vec<_>>(), want, "{text}");
            assert_eq!(format(&got), back, "{text}");
        }
    }
}
