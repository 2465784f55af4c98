//! The power-cut campaign: many power cuts at random points of installs on the OTA appliance
//! (see `flipside_qemu_tests::campaign`), each followed by boots that must come up on a good
//! slot and by an install that must complete. Too long for every run, so ignored:
//!
//! ```sh
//! FLIPSIDE_CAMPAIGN_SEED=N FLIPSIDE_CAMPAIGN_CUTS=100 \
//!   cargo test -p flipside-qemu-tests --test campaign -- --ignored --nocapture
//! ```
//!
//! It prints `CAMPAIGN seed=.. cuts=.. bricks=..` and the average bundle bytes re-fetched
//! after a cut; one line per cut as it goes (`CUT n kind=.. point=..`).

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::campaign::{refetched, served, Cut, Install, Rng, Tally, CHAIN};
use flipside_qemu_tests::ota::{install_pausing_at_gpt_write, Rig};
use flipside_qemu_tests::server::Step;
use flipside_qemu_tests::{Error, Marker, QemuExit, Result, Vm, BOOT_TIMEOUT};

/// Upper bound of a boot that also installs a release (under TCG, on a busy machine).
const INSTALL_BOOT: Duration = Duration::from_secs(180);
/// Bundle bytes per second while a streaming cut waits for its byte count: slow enough that
/// the cut lands within a tenth of a second's worth of bytes.
const THROTTLE: u64 = 1 << 20;

/// Why a run did not come out as every run must: a boot not on a good slot, or an install
/// after a cut that failed. Counted as a brick.
type Brick = String;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

struct Campaign {
    rig: Rig,
    template: PathBuf,
    rng: Rng,
    tally: Tally,
    /// Bundle bytes each install of the chain fetches when not cut (learned as it goes).
    download: [u64; CHAIN.len()],
    /// Where in the server's request log the last cut install's run started.
    cut_log_start: usize,
    runs: u32,
}

#[test]
#[ignore = "a campaign of QEMU runs, tens of minutes: run it with --ignored"]
fn power_cut_campaign_leaves_no_brick() -> Result<()> {
    let started = Instant::now();
    let seed = env_u64("FLIPSIDE_CAMPAIGN_SEED").unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
        now.map_or(1, |d| d.as_nanos() as u64)
    });
    let cuts = env_u64("FLIPSIDE_CAMPAIGN_CUTS").unwrap_or(100);
    eprintln!("CAMPAIGN seed={seed} cuts={cuts} (FLIPSIDE_CAMPAIGN_SEED={seed} repeats it)");
    let mut c = Campaign::new(seed)?;
    let mut follow = None;
    let mut at = 0;
    while c.tally.cuts < cuts {
        let cut = Cut::draw(&mut c.rng, &CHAIN[at], c.download[at]);
        c.tally.cuts += 1;
        *c.tally.by_kind.entry(cut.kind()).or_default() += 1;
        eprintln!("CUT {} install={at} {cut:?}", c.tally.cuts);
        let ok = c.run(follow, Some((at, cut)));
        (follow, at) = (Some(at), at + 1);
        if !ok || at == CHAIN.len() {
            if ok {
                c.run(follow, None);
            }
            c.reset()?;
            (follow, at) = (None, 0);
        }
    }
    if follow.is_some() {
        c.run(follow, None);
    }
    eprintln!("{}", c.tally.report(seed, started.elapsed().as_secs_f64()));
    assert_eq!(c.tally.bricks, 0, "some boots were not on a good slot");
    Ok(())
}

impl Campaign {
    fn new(seed: u64) -> Result<Self> {
        let rig = Rig::new("power_cut_campaign")?;
        rig.provision(CHAIN[0].from.0, CHAIN[0].from.1, (2, 0, true))?;
        let template = rig.bed.work().join("campaign-start.img");
        fs::copy(rig.disk.path(), &template).map_err(Error::io("copy", rig.disk.path()))?;
        let mut download = [0; CHAIN.len()];
        for (d, install) in download.iter_mut().zip(&CHAIN) {
            *d = rig.world.bundle_len(install.to.1)?;
        }
        Ok(Self {
            rig,
            template,
            rng: Rng::new(seed),
            tally: Tally::default(),
            download,
            cut_log_start: 0,
            runs: 0,
        })
    }

    /// The disk as it was at the start: v1 proven in a, b empty.
    fn reset(&mut self) -> Result<()> {
        fs::copy(&self.template, self.rig.disk.path())
            .map_err(Error::io("copy", &self.template))?;
        Ok(())
    }

    /// One QEMU run: boot; with `follow`, complete that install and boot its slot; with `cut`,
    /// start that install and cut the power in it, else power off. False on a brick.
    fn run(&mut self, follow: Option<usize>, cut: Option<(usize, Cut)>) -> bool {
        self.runs += 1;
        let server = &self.rig.server;
        server.set_throttle(None);
        let repo = |i: usize| self.rig.world.repo(CHAIN[i].repo);
        if let Some(f) = follow {
            server.push_steps([Step::with_repo("install", &repo(f)), Step::new("reboot")]);
        }
        server.push_steps([match cut {
            Some((t, Cut::GptWrite { write })) => {
                Step::with_repo(&install_pausing_at_gpt_write(write), &repo(t))
            }
            Some((t, _)) => Step::with_repo("install", &repo(t)),
            None => Step::new("poweroff"),
        }]);
        let log_start = server.requests().len();
        let outcome = match self.rig.start(&format!("run-{:03}", self.runs)) {
            Ok(mut vm) => {
                let outcome = self.drive(&mut vm, follow, cut, log_start);
                vm.kill();
                self.tally.boots += vm.boots().len() as u64;
                outcome.map_err(|b| format!("{b} (serial log {})", vm.serial_log().display()))
            }
            Err(e) => Err(e.to_string()),
        };
        self.rig.server.set_throttle(None);
        // Let the server log the responses the cut broke off before the next run starts.
        std::thread::sleep(Duration::from_millis(300));
        if cut.is_some() {
            self.cut_log_start = log_start;
        }
        match outcome {
            Ok(()) => true,
            Err(brick) => {
                eprintln!("BRICK run {}: {brick}", self.runs);
                self.tally.bricks += 1;
                false
            }
        }
    }

    fn drive(
        &mut self,
        vm: &mut Vm,
        follow: Option<usize>,
        cut: Option<(usize, Cut)>,
        log_start: usize,
    ) -> std::result::Result<(), Brick> {
        match follow {
            Some(f) => {
                good_boot(vm, &[CHAIN[f].from, CHAIN[f].to])?;
                self.complete(vm, &CHAIN[f], log_start)?;
            }
            None => {
                good_boot(vm, &[CHAIN[0].from])?;
            }
        }
        match cut {
            Some((t, c)) => self.cut(vm, t, c),
            None => match vm.wait_exit(BOOT_TIMEOUT) {
                Ok(QemuExit::PoweredOff) => Ok(()),
                other => Err(format!("the last run did not power off: {other:?}")),
            },
        }
    }

    /// The install after a cut: it must exit 0, and the next boot must be its slot.
    fn complete(
        &mut self,
        vm: &mut Vm,
        install: &Install,
        log_start: usize,
    ) -> std::result::Result<(), Brick> {
        let done = wait(vm, "the install after the cut", INSTALL_BOOT, |m| {
            m.is("updater", "install")
        })?;
        if done.get("code") != Some("0") {
            return Err(format!("the install after the cut failed: {done}"));
        }
        let log = self.rig.server.requests();
        let (before, after) = (&log[self.cut_log_start..log_start], &log[log_start..]);
        let again = refetched(before, after);
        let fetched: u64 = (served(after).values().flatten()).map(|(a, b)| b - a).sum();
        eprintln!("  resumed: fetched={fetched} re-fetched={again}");
        self.tally.refetched += again;
        self.tally.fetched_after += fetched;
        good_boot(vm, &[install.to])?;
        Ok(())
    }

    /// Starts cut `cut` of install `t` and returns once the power should go.
    fn cut(&mut self, vm: &mut Vm, t: usize, cut: Cut) -> std::result::Result<(), Brick> {
        let server = self.rig.server.clone();
        let base = server.bundle_bytes_sent();
        let ended = |m: &Marker| m.is("updater", "install");
        let verify = |m: &Marker| m.is("updater", "progress") && m.get("phase") == Some("verify");
        let late = match cut {
            Cut::Streaming { bytes } => {
                server.set_throttle(Some(THROTTLE));
                let deadline = Instant::now() + INSTALL_BOOT;
                loop {
                    match vm.wait_for("streaming", Duration::from_millis(20), |m| {
                        verify(m) || ended(m)
                    }) {
                        Ok(_) => break true,
                        Err(Error::Timeout { .. }) if Instant::now() < deadline => {
                            if server.bundle_bytes_sent() - base >= bytes {
                                break false;
                            }
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            Cut::ReadBack { after_ms } => {
                let m = wait(vm, "the read-back", INSTALL_BOOT, |m| verify(m) || ended(m))?;
                std::thread::sleep(Duration::from_millis(after_ms));
                ended(&m)
            }
            Cut::Arming { after_ms } => {
                let m = wait(vm, "the end of the read-back", INSTALL_BOOT, |m| {
                    (verify(m) && m.get("done") == m.get("total")) || ended(m)
                })?;
                std::thread::sleep(Duration::from_millis(after_ms));
                ended(&m)
            }
            Cut::GptWrite { .. } => {
                let m = wait(vm, "the GPT stop", INSTALL_BOOT, |m| {
                    m.is("gpt", "pause") || ended(m)
                })?;
                ended(&m)
            }
        };
        let sent = server.bundle_bytes_sent() - base;
        if late {
            self.tally.late += 1;
        }
        if sent > 0 && (late || !matches!(cut, Cut::Streaming { .. })) {
            self.download[t] = sent;
        }
        eprintln!(
            "  cut after {sent} bundle bytes{}",
            if late { " (late)" } else { "" }
        );
        Ok(())
    }
}

fn wait(
    vm: &mut Vm,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Marker) -> bool,
) -> std::result::Result<Marker, Brick> {
    vm.wait_for(what, timeout, pred).map_err(|e| e.to_string())
}

/// The next boot reaches its system on one of `allowed` (slot, version); on a trial boot the
/// health check must commit it.
fn good_boot(vm: &mut Vm, allowed: &[(Slot, u64)]) -> std::result::Result<(), Brick> {
    let up = wait(vm, "a system", BOOT_TIMEOUT, |m| m.is("system", "up"))?;
    let slot = match up.get("slot") {
        Some("a") => Slot::A,
        Some("b") => Slot::B,
        other => return Err(format!("system up on slot {other:?}")),
    };
    let version: u64 = up.get("version").and_then(|v| v.parse().ok()).unwrap_or(0);
    if !allowed.contains(&(slot, version)) {
        return Err(format!("booted {up}, expected one of {allowed:?}"));
    }
    if up.get("trial") == Some("1") {
        let health = wait(vm, "the health check", BOOT_TIMEOUT, |m| {
            m.is("updater", "health")
        })?;
        if health.get("code") != Some("0") {
            return Err(format!("the trial's health check failed: {health}"));
        }
    }
    Ok(())
}
