//! The power-cut campaign's pure parts: a seeded random source, where each cut goes, the chain
//! of installs the cuts land in, and the tally it prints. The runner is `tests/campaign.rs`
//! (an ignored test: it takes tens of minutes).
//!
//! The device walks a chain of installs on the OTA appliance ([`CHAIN`]: v1 in a installs v2
//! into b, v2 installs v5 into a, v5 installs v6 into b; then the disk starts over). Each
//! install of the chain is cut once, at a [`Cut`] drawn from the seed; the next QEMU run must
//! boot a good slot, complete that install, boot the new slot on trial (its health check
//! commits it) and then starts the next install of the chain, which is cut in turn.

use std::collections::BTreeMap;

use flipside_bootloader_hooks::Slot;

use crate::ota::Snapshot;
use crate::server::Request;

/// SplitMix64: small, seedable, reproducible across platforms; good enough to place cuts.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }
}

/// One install of the chain: from the release running in `from` to `to` in the other slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Install {
    /// The repository served for it (its newest release is `to`).
    pub repo: Snapshot,
    pub from: (Slot, u64),
    pub to: (Slot, u64),
    /// Table writes the install makes: arming, plus clearing when the target slot was bootable.
    pub gpt_writes: u32,
}

/// The installs a disk goes through before it starts over (good releases of the catalogue).
pub const CHAIN: [Install; 3] = [
    Install {
        repo: Snapshot::UpTo(2),
        from: (Slot::A, 1),
        to: (Slot::B, 2),
        gpt_writes: 1,
    },
    Install {
        repo: Snapshot::UpTo(5),
        from: (Slot::B, 2),
        to: (Slot::A, 5),
        gpt_writes: 2,
    },
    Install {
        repo: Snapshot::UpTo(6),
        from: (Slot::A, 5),
        to: (Slot::B, 6),
        gpt_writes: 2,
    },
];

/// Where the power goes during an install.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Once the server has sent this many bundle bytes (downloads throttled).
    Streaming { bytes: u64 },
    /// This long after the read-back of the written slot starts.
    ReadBack { after_ms: u64 },
    /// This long after the read-back ends: arming (the table write) and recording.
    Arming { after_ms: u64 },
    /// Between the two table copies of the install's Nth GPT write (the test-only stop).
    GptWrite { write: u32 },
}

impl Cut {
    /// Draws a cut for `install`: the kind first, evenly, then the point within it;
    /// `download` is the bundle bytes that install is expected to fetch.
    pub fn draw(rng: &mut Rng, install: &Install, download: u64) -> Self {
        match rng.range(0, 4) {
            0 => Cut::Streaming {
                bytes: rng.range(1, download.max(2)),
            },
            1 => Cut::ReadBack {
                after_ms: rng.range(0, 1500),
            },
            2 => Cut::Arming {
                after_ms: rng.range(0, 300),
            },
            _ => Cut::GptWrite {
                write: rng.range(1, u64::from(install.gpt_writes) + 1) as u32,
            },
        }
    }

    /// The name the tally groups cuts by.
    pub fn kind(&self) -> &'static str {
        match self {
            Cut::Streaming { .. } => "streaming",
            Cut::ReadBack { .. } => "read-back",
            Cut::Arming { .. } => "arming",
            Cut::GptWrite { .. } => "gpt-write",
        }
    }
}

/// `[start, end)` of the bundle bytes each request sent, per path. Pure.
pub fn served(requests: &[Request]) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut out: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for r in requests.iter().filter(|r| is_bundle(&r.path) && r.sent > 0) {
        let start = r.range.as_deref().map_or(0, range_start);
        out.entry(r.path.clone())
            .or_default()
            .push((start, start + r.sent));
    }
    out
}

fn is_bundle(path: &str) -> bool {
    path.starts_with("/repo/targets/") && path.ends_with(".bundle")
}

/// The first byte of `bytes=A-B` / `bytes=A-` (0 for anything else). Pure.
fn range_start(range: &str) -> u64 {
    range
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split('-').next())
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes served `after` that had already been served `before` (same path, overlapping
/// ranges): what a cut made the device fetch twice. Pure.
pub fn refetched(before: &[Request], after: &[Request]) -> u64 {
    let before = served(before);
    let mut total = 0;
    for (path, ranges) in served(after) {
        let Some(old) = before.get(&path) else {
            continue;
        };
        let old = merge(old.clone());
        for (a, b) in merge(ranges) {
            total += old
                .iter()
                .map(|&(c, d)| b.min(d).saturating_sub(a.max(c)))
                .sum::<u64>();
        }
    }
    total
}

/// Sorted, non-overlapping ranges covering the same bytes. Pure.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// What the campaign saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub cuts: u64,
    /// Cuts per kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Boots that did not come up on a good slot, and installs after a cut that failed.
    pub bricks: u64,
    pub boots: u64,
    /// Bundle bytes fetched twice because of a cut, summed over the cuts.
    pub refetched: u64,
    /// Bundle bytes the installs after the cuts fetched, summed.
    pub fetched_after: u64,
    /// Cuts that came later than drawn (the install had moved past the point).
    pub late: u64,
}

impl Tally {
    /// The lines the campaign prints at the end. Pure.
    pub fn report(&self, seed: u64, wall_secs: f64) -> String {
        let avg = |n: u64| n.checked_div(self.cuts).unwrap_or(0);
        let kinds = (self.by_kind.iter())
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "CAMPAIGN seed={seed} cuts={} bricks={} boots={} late={} wall={wall_secs:.0}s\n\
             CAMPAIGN kinds {kinds}\n\
             CAMPAIGN average bytes re-fetched after a cut={} (fetched by the install after a \
             cut: {} on average)",
            self.cuts,
            self.bricks,
            self.boots,
            self.late,
            avg(self.refetched),
            avg(self.fetched_after),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, range: Option<&str>, sent: u64) -> Request {
        Request {
            path: path.into(),
            range: range.map(str::to_string),
            status: 206,
            sent,
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_cuts() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..20)
                .map(|i| Cut::draw(&mut rng, &CHAIN[i % 3], 1 << 20))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let cuts = draw(7);
        for kind in ["streaming", "read-back", "arming", "gpt-write"] {
            assert!(cuts.iter().any(|c| c.kind() == kind), "{kind}: {cuts:?}");
        }
        for (i, c) in cuts.iter().enumerate() {
            match *c {
                Cut::Streaming { bytes } => assert!((1..1 << 20).contains(&bytes)),
                Cut::GptWrite { write } => assert!(write >= 1 && write <= CHAIN[i % 3].gpt_writes),
                _ => {}
            }
        }
    }

    #[test]
    fn range_is_within_bounds_and_empty_ranges_give_the_low_end() {
        let mut rng = Rng::new(1);
        assert!((0..1000).all(|_| (5..9).contains(&rng.range(5, 9))));
        assert_eq!(rng.range(4, 4), 4);
    }

    #[test]
    fn refetched_counts_only_bytes_sent_twice() {
        let b = "/repo/targets/abc.appliance-2.bundle";
        let before = [
            req(b, Some("bytes=0-999"), 1000),
            req(b, Some("bytes=5000-"), 300),
            req("/repo/metadata/timestamp.json", None, 500),
        ];
        let after = [
            req(b, Some("bytes=900-1999"), 1100),
            req(b, Some("bytes=5100-5199"), 100),
            req("/repo/metadata/timestamp.json", None, 500),
            req("/repo/targets/x.other.bundle", None, 10),
        ];
        assert_eq!(refetched(&before, &after), 100 + 100);
        assert_eq!(refetched(&[], &after), 0);
        assert_eq!(range_start("bytes=12-"), 12);
        assert_eq!(range_start("junk"), 0);
    }

    #[test]
    fn report_prints_cuts_bricks_and_the_average() {
        let mut t = Tally {
            cuts: 4,
            refetched: 400,
            fetched_after: 4000,
            ..Tally::default()
        };
        t.by_kind.insert("streaming", 4);
        let r = t.report(42, 61.0);
        assert!(r.contains("seed=42 cuts=4 bricks=0"), "{r}");
        assert!(r.contains("re-fetched after a cut=100 "), "{r}");
        assert!(r.contains("kinds streaming=4"), "{r}");
    }
}
