//! Durable progress while a part is written. Slot writes go through the page cache; a power cut
//! (unlike a killed process) loses whatever was not synced. So the writer syncs the partition on
//! a schedule, by bytes and by time, and after each sync records the high-water mark (image
//! bytes of the part now durable) in the install journal and on stdout:
//!
//! ```text
//! FLIPSIDE_SYNCED part=root bytes=8388608
//! ```
//!
//! A resumed install trusts nothing it did not verify: it re-hashes every chunk it keeps. The
//! mark says how much the cut could not take away.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::device::{Device, Part, ReadBack};
use crate::error::Result;
use crate::record::{Journal, StateDir};

/// How often the partition is synced while it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPolicy {
    /// Sync once this many bytes were written since the last sync.
    pub every_bytes: u64,
    /// Sync once this long has passed since the last sync with anything written.
    pub every: Duration,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            every_bytes: 32 << 20,
            every: Duration::from_secs(2),
        }
    }
}

/// When the next sync is due: a pure clock of bytes and time.
#[derive(Clone, Debug)]
pub struct SyncSchedule {
    policy: SyncPolicy,
    unsynced: u64,
    last: Instant,
}

impl SyncSchedule {
    pub fn new(policy: SyncPolicy, now: Instant) -> SyncSchedule {
        SyncSchedule {
            policy,
            unsynced: 0,
            last: now,
        }
    }

    /// `n` more bytes were written at `now`: whether a sync is due.
    pub fn wrote(&mut self, n: u64, now: Instant) -> bool {
        self.unsynced = self.unsynced.saturating_add(n);
        self.pending()
            && (self.unsynced >= self.policy.every_bytes
                || now.saturating_duration_since(self.last) >= self.policy.every)
    }

    /// Whether anything was written since the last sync.
    pub fn pending(&self) -> bool {
        self.unsynced > 0
    }

    /// The partition was synced at `now`.
    pub fn synced(&mut self, now: Instant) {
        self.unsynced = 0;
        self.last = now;
    }
}

/// The install journal and the sync schedule of the part being written.
pub struct Checkpoint {
    state: StateDir,
    journal: Journal,
    schedule: SyncSchedule,
}

impl Checkpoint {
    pub fn new(state: StateDir, journal: Journal, policy: SyncPolicy) -> Checkpoint {
        Checkpoint {
            state,
            journal,
            schedule: SyncSchedule::new(policy, Instant::now()),
        }
    }

    /// `n` bytes were written: whether to [`Checkpoint::sync`] now.
    pub fn wrote(&mut self, n: u64) -> bool {
        self.schedule.wrote(n, Instant::now())
    }

    /// Whether anything was written since the last sync.
    pub fn pending(&self) -> bool {
        self.schedule.pending()
    }

    /// Syncs the device (every write of `part` up to `durable` image bytes has been issued),
    /// then records the mark in the journal and on stdout.
    pub fn sync<B: ReadBack>(
        &mut self,
        device: &mut Device<B>,
        part: Part,
        durable: u64,
    ) -> Result<()> {
        device.sync()?;
        self.schedule.synced(Instant::now());
        self.journal.synced.insert(part.name().into(), durable);
        self.state.set_journal(&self.journal)?;
        let mut out = std::io::stdout().lock();
        // A closed stdout must not fail the install.
        let _ = writeln!(out, "FLIPSIDE_SYNCED part={} bytes={durable}", part.name())
            .and_then(|()| out.flush());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: SyncPolicy = SyncPolicy {
        every_bytes: 100,
        every: Duration::from_secs(2),
    };

    #[test]
    fn due_by_bytes() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(POLICY, t0);
        assert!(!s.wrote(60, t0));
        assert!(!s.wrote(39, t0));
        assert!(s.wrote(1, t0), "100 bytes unsynced");
        s.synced(t0);
        assert!(!s.pending());
        assert!(!s.wrote(99, t0));
        assert!(s.wrote(u64::MAX, t0), "saturates, never wraps");
    }

    #[test]
    fn due_by_time_only_with_something_written() {
        let t0 = Instant::now();
        let mut s = SyncSchedule::new(POLICY, t0);
        let later = t0 + Duration::from_secs(2);
        assert!(!s.wrote(0, later), "nothing written: nothing to sync");
        assert!(s.wrote(1, later));
        s.synced(later);
        assert!(!s.wrote(1, later + Duration::from_millis(1999)));
        assert!(s.wrote(1, later + Duration::from_secs(2)));
    }

    #[test]
    fn a_clock_going_backwards_is_not_due() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut s = SyncSchedule::new(POLICY, t0);
        assert!(!s.wrote(1, t0 - Duration::from_secs(5)));
    }
}
