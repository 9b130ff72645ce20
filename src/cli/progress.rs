//! Progress of long commands on stderr: on a terminal an indicatif bar (or
//! spinner, when the total is unknown) with the amount, the rate and the
//! ETA; otherwise a plain line every few seconds, so logs of scripted runs
//! stay readable.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy)]
pub enum Unit {
    Bytes,
    Objects,
}

fn amount(unit: Unit, n: f64) -> String {
    match unit {
        Unit::Bytes => format!("{:.1} MiB", n / (1 << 20) as f64),
        Unit::Objects => format!("{n:.0} objects"),
    }
}

/// Reports the progress of one operation counted in `unit`s.
pub struct Progress {
    what: &'static str,
    unit: Unit,
    total: Option<u64>,
    started: Instant,
    last: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(what: &'static str, unit: Unit, total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let (count, rate) = match unit {
                Unit::Bytes => ("{bytes}", "{binary_bytes_per_sec}"),
                Unit::Objects => ("{human_pos} objects", "{per_sec}"),
            };
            let (bar, template) = match total {
                Some(t) => (
                    ProgressBar::new(t),
                    format!("{{msg}} [{{wide_bar}}] {count} ({rate}, ETA {{eta}})"),
                ),
                None => (
                    ProgressBar::new_spinner(),
                    format!("{{spinner}} {{msg}} {count} ({rate})"),
                ),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar.set_message(what);
            bar
        });
        let now = Instant::now();
        Progress {
            what,
            unit,
            total,
            started: now,
            last: now,
            bar,
        }
    }

    fn line(&self, done: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let mut s = format!(
            "{}: {} ({}/s",
            self.what,
            amount(self.unit, done as f64),
            amount(self.unit, rate)
        );
        if let Some(total) = self.total.filter(|t| *t > 0) {
            let left = total.saturating_sub(done) as f64 / rate.max(1e-9);
            s.push_str(&format!(
                ", {:.0} % of {}, ETA {:.0} s",
                100.0 * done as f64 / total as f64,
                amount(self.unit, total as f64),
                left
            ));
        }
        s.push(')');
        s
    }

    /// `done` so far: the bar moves; a plain line is printed every 5 s.
    pub fn update(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        if self.last.elapsed() < Duration::from_secs(5) {
            return;
        }
        self.last = Instant::now();
        let _ = writeln!(std::io::stderr(), "{}", self.line(done));
    }

    /// The final amount, always reported.
    pub fn finish(&mut self, done: u64) {
        let line = format!(
            "{} in {:.1} s",
            self.line(done),
            self.started.elapsed().as_secs_f64()
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.finish_and_clear();
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }
}
