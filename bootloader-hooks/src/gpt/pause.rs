//! A stop between the two copies of a table write, for power-cut tests only: compiled in with
//! the `gpt-pause` feature, which only the QEMU tests' build of the updater turns on.
//!
//! `FLIPSIDE_TEST_GPT_PAUSE=N` stops the Nth table write of the process once its first copy is
//! written and flushed: it prints `FLIPSIDE: gpt pause write=N written=.. pending=.. disk=..`
//! on stderr and waits there for the power to go. Without the variable nothing changes.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::table::CopyKind;

/// The environment variable naming the table write to stop at (1 = the first).
pub const ENV: &str = "FLIPSIDE_TEST_GPT_PAUSE";

/// Table writes of this process so far.
static WRITES: AtomicU32 = AtomicU32::new(0);

/// Whether write number `n` (1-based) is the one `setting` asks to stop at. Pure.
pub fn wanted(setting: Option<&str>, n: u32) -> bool {
    setting.and_then(|s| s.trim().parse::<u32>().ok()) == Some(n)
}

/// Called after the first copy of a write is flushed; stops for good when asked to.
pub(super) fn between_copies(disk: &str, written: CopyKind, pending: CopyKind) {
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    if !wanted(std::env::var(ENV).ok().as_deref(), n) {
        return;
    }
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "FLIPSIDE: gpt pause write={n} written={} pending={} disk={disk}",
        written.name(),
        pending.name()
    );
    let _ = err.flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn only_the_named_write_stops() {
        assert!(wanted(Some("2"), 2));
        assert!(wanted(Some(" 1\n"), 1));
        assert!(!wanted(Some("2"), 1));
        assert!(!wanted(None, 1));
        assert!(!wanted(Some("x"), 1));
        assert!(!wanted(Some(""), 1));
    }
}
