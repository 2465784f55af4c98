//! Progress for long steps: a bar on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports progress of one step measured in bytes.
pub struct Progress {
    bar: Option<ProgressBar>,
    step: String,
    total: u64,
    done: u64,
    last_log: Instant,
}

impl Progress {
    /// Starts a step of `total` bytes. Draws a bar when stderr is a terminal.
    pub fn bytes(step: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("static template is valid")
                .progress_chars("=> "),
            );
            bar.set_message(step.to_string());
            bar
        });
        log::info!("{step}: {} bytes", total);
        Progress {
            bar,
            step: step.to_string(),
            total,
            done: 0,
            last_log: Instant::now(),
        }
    }

    /// Adds `n` bytes done.
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.last_log.elapsed() >= Duration::from_secs(5) => {
                self.last_log = Instant::now();
                log::info!("{}: {}/{} bytes", self.step, self.done, self.total);
            }
            None => {}
        }
    }

    /// Ends the step.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        log::info!("{}: done ({} bytes)", self.step, self.done);
    }
}
