//! Progress of a long phase (writing the slot, reading it back). On a terminal: an indicatif
//! bar with rate and ETA on stderr. Otherwise: a log line on stderr and a machine-readable line
//! on stdout every interval and at the end of each phase, for supervisors:
//!
//! ```text
//! FLIPSIDE_PROGRESS phase=write done=1048576 total=4194304 fetched=524288 rate=2097152 eta=1
//! ```
//!
//! `done`/`total` are image bytes placed (or verified), `fetched` bytes downloaded, `rate`
//! bytes/s since the phase began, `eta` seconds (`-` when unknown).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One machine-readable progress line.
pub fn line(phase: &str, done: u64, total: u64, fetched: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        (done as f64 / secs) as u64
    } else {
        0
    };
    let eta = match total.saturating_sub(done).checked_div(rate) {
        Some(secs) => secs.to_string(),
        None if done >= total => "0".to_string(),
        None => "-".to_string(),
    };
    format!("FLIPSIDE_PROGRESS phase={phase} done={done} total={total} fetched={fetched} rate={rate} eta={eta}")
}

enum Mode {
    Bar(ProgressBar),
    Lines { last: Instant },
}

/// Reports one phase at a time.
pub struct Progress {
    mode: Mode,
    interval: Duration,
    phase: &'static str,
    total: u64,
    done: u64,
    fetched: u64,
    started: Instant,
}

impl Progress {
    /// A bar when stderr is a terminal, lines otherwise.
    pub fn new(interval: Duration) -> Progress {
        let now = Instant::now();
        let mode = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg:>6} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            Mode::Bar(bar)
        } else {
            Mode::Lines { last: now }
        };
        Progress {
            mode,
            interval,
            phase: "",
            total: 0,
            done: 0,
            fetched: 0,
            started: now,
        }
    }

    /// Starts a phase of `total` bytes.
    pub fn phase(&mut self, phase: &'static str, total: u64) {
        self.phase = phase;
        self.total = total;
        self.done = 0;
        self.fetched = 0;
        self.started = Instant::now();
        match &mut self.mode {
            Mode::Bar(bar) => {
                bar.reset();
                bar.set_length(total);
                bar.set_position(0);
                bar.set_message(phase);
            }
            Mode::Lines { last } => *last = Instant::now(),
        }
    }

    /// `done` bytes of the phase are complete, `fetched` bytes were downloaded so far.
    pub fn update(&mut self, done: u64, fetched: u64) {
        self.done = done;
        self.fetched = fetched;
        match &mut self.mode {
            Mode::Bar(bar) => bar.set_position(done),
            Mode::Lines { last } => {
                if last.elapsed() >= self.interval {
                    *last = Instant::now();
                    self.emit();
                }
            }
        }
    }

    /// Ends the phase (a final line, or the bar finished).
    pub fn finish(&mut self) {
        match &self.mode {
            Mode::Bar(bar) => {
                bar.set_position(self.done);
                bar.finish();
            }
            Mode::Lines { .. } => self.emit(),
        }
    }

    fn emit(&self) {
        let text = line(
            self.phase,
            self.done,
            self.total,
            self.fetched,
            self.started.elapsed(),
        );
        log::info!(
            "{}: {} of {} bytes ({} downloaded)",
            self.phase,
            self.done,
            self.total,
            self.fetched
        );
        let mut out = std::io::stdout().lock();
        // A closed stdout must not fail the install.
        let _ = writeln!(out, "{text}").and_then(|()| out.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_fields() {
        assert_eq!(
            line("write", 500, 1000, 200, Duration::from_secs(5)),
            "FLIPSIDE_PROGRESS phase=write done=500 total=1000 fetched=200 rate=100 eta=5"
        );
        assert_eq!(
            line("verify", 0, 10, 0, Duration::ZERO),
            "FLIPSIDE_PROGRESS phase=verify done=0 total=10 fetched=0 rate=0 eta=-"
        );
        assert_eq!(
            line("write", 10, 10, 0, Duration::ZERO),
            "FLIPSIDE_PROGRESS phase=write done=10 total=10 fetched=0 rate=0 eta=0"
        );
    }
}
