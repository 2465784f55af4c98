//! `flipside-demo`: the Debian appliance through the whole boot chain (OVMF -> flipside-boot
//! -> the slot's UKI from its kernel partition -> initramfs -> systemd), an update of kernel
//! and root together, and a fallback from a kernel that cannot start, told as a timeline. Run
//! by `scripts/demo.sh`.
//!
//! One QEMU process per boot (a guest reboot or a kernel panic's reset ends it), so that the
//! boot bits of both slots can be read from the disk between boots and shown next to what
//! the firmware, the system and the updater did in that boot.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::chain::{Rig, Row, UpTo, TRIAL_BOOTS};
use flipside_qemu_tests::ota::OtaBoot;
use flipside_qemu_tests::server::Step;
use flipside_qemu_tests::{Ending, OnReboot, Result};

/// Upper bound of one boot, installs included (TCG on a busy machine).
const BOOT_LIMIT: Duration = Duration::from_secs(420);
/// More boots than the story needs: a guard against a loop.
const MAX_BOOTS: usize = 8;

fn bits_line(rig: &Rig) -> Result<String> {
    let show = |slot: Slot| -> Result<String> {
        let (p, t, s) = rig.disk.bits(slot)?;
        Ok(format!("{slot}: P={p} T={t} S={}", u8::from(s)))
    };
    Ok(format!("{}   {}", show(Slot::A)?, show(Slot::B)?))
}

fn describe_boot(n: usize, row: &Row, boot: &OtaBoot, secs: f64) -> Vec<String> {
    let mut out = Vec::new();
    let slot = row.slot.map_or("?".to_string(), |s| s.to_string());
    let (trial, left) = (row.trial, row.tries_left);
    let kernel = row.kernel.as_deref().unwrap_or("?");
    let version = row
        .version
        .map_or("no system (the kernel part failed)".to_string(), |v| {
            format!("v{v}")
        });
    let how = if trial {
        let tries = if left == 1 { "try" } else { "tries" };
        format!("TRIAL boot ({left} {tries} left after this one)")
    } else {
        "proven slot".to_string()
    };
    out.push(format!(
        "boot {n}: flipside-boot chose slot {slot} ({how}): kernel {kernel}, {version}   [{secs:.0} s]"
    ));
    match (boot.health, boot.rebooted_by_updater) {
        // The Debian appliance reports the health unit on every boot; a proven slot has
        // nothing to commit.
        (Some(0), _) if !trial => {}
        (Some(0), _) => out.push(format!(
            "  updater: health checks passed -> slot {slot} committed (S=1), it is the proven slot now"
        )),
        // On failure `flipside health` reboots before it could print its exit code.
        (_, true) => out.push(format!(
            "  updater: a health check failed -> slot {slot} marked bad (P=0 T=0 S=0), rebooting into the other slot"
        )),
        (Some(code), false) => out.push(format!("  updater: `flipside health` exit {code}")),
        (None, false) => {}
    }
    for r in &boot.results {
        if r.get("event") == Some("installed") {
            out.push(format!(
                "  updater: installed v{} with kernel {} into slot {} (kernel-{} and root-{}; downloaded {} bytes, {} bytes copied from the running slot) -> armed for {TRIAL_BOOTS} trial boots (P=2 T={TRIAL_BOOTS} S=0)",
                r.get("version").unwrap_or("?"),
                r.get("kernel").unwrap_or("?"),
                r.get("slot").unwrap_or("?"),
                r.get("slot").unwrap_or("?"),
                r.get("slot").unwrap_or("?"),
                r.get("fetched").unwrap_or("?"),
                r.get("copied").unwrap_or("?"),
            ));
        }
    }
    for code in boot.installs.iter().filter(|c| **c != 0) {
        out.push(format!("  updater: install refused, exit {code}"));
    }
    for st in &boot.statuses {
        for s in st["slots"].as_array().into_iter().flatten() {
            let release = &s["release"];
            if !release.is_null() {
                out.push(format!(
                    "  flipside status: slot {} holds v{} with kernel {}",
                    s["slot"].as_str().unwrap_or("?"),
                    release["version"],
                    release["kernel_release"].as_str().unwrap_or("?")
                ));
            }
        }
        if let Some(last) = st.get("last").filter(|l| !l.is_null()) {
            out.push(format!(
                "  flipside status: last step `{}` on slot {}: {}",
                last["event"].as_str().unwrap_or("?"),
                last["slot"].as_str().unwrap_or("?"),
                last["detail"].as_str().unwrap_or("")
            ));
        }
    }
    let end = match &boot.summary.ending {
        Ending::System { action } if boot.rebooted_by_updater => {
            format!("{action} (by the updater)")
        }
        Ending::System { action } => action.clone(),
        Ending::InitrdFailed { stage, action } => {
            format!("initramfs failed at {stage}, {action}")
        }
        Ending::Unknown if row.end == "init-exited" => {
            "the kernel part's init exited: kernel panic, reset".to_string()
        }
        Ending::Unknown => "no end marker (reset)".to_string(),
    };
    out.push(format!("  ends: {end}"));
    out
}

fn run() -> Result<()> {
    let started = Instant::now();
    println!(
        "flipside demo: an A/B appliance (Debian, systemd) booted by flipside-boot updates its"
    );
    println!("kernel and root together, then survives a kernel that cannot start\n");
    println!(
        "Preparing the kernels, initramfs, releases and repository (cached after the first run)..."
    );
    let rig = Rig::new("demo")?;
    let w = rig.world;
    println!(
        "  accelerator: {:?}; releases v1 (kernel {}), v2 (kernel {}), v3 (kernel {} whose initramfs cannot start the system)\n",
        rig.bed.accel,
        w.kernel_release(1),
        w.kernel_release(2),
        w.kernel_release(3)
    );
    println!(
        "Boot chain: OVMF firmware -> flipside-boot (ESP) -> the chosen slot's unified kernel"
    );
    println!("image from kernel-a|kernel-b -> initramfs -> root-a|root-b with systemd.");
    println!("Each slot's root partition has three GPT attribute fields flipside-boot obeys:");
    println!("  P = priority (highest bootable wins, 0 = never boot), T = trial boots left,");
    println!(
        "  S = successful (the slot has proven itself). A slot with S=0 boots only while T>0;"
    );
    println!("  flipside-boot records each trial boot's try before it starts the kernel.\n");
    rig.provision(Slot::A, 1, (2, 0, true))?;
    println!("Factory state: v1 in slot a (kernel-a, root-a), slot b empty.");
    println!("  disk: {}\n", bits_line(&rig)?);
    rig.server.push_steps([
        Step::with_repo("install", &w.repo(UpTo(2))),
        Step::new("reboot"),
        Step::new("status"),
        Step::new("reboot"),
        Step::with_repo("install", &w.repo(UpTo(3))),
        Step::new("reboot"),
        Step::new("status"),
        Step::new("poweroff"),
    ]);
    println!("The update server (127.0.0.1, the guest's only reachable host) publishes v2.\n");
    let mut published3 = false;
    for n in 1..=MAX_BOOTS {
        if !published3 && rig.server.pending_steps() <= 4 {
            println!(
                "The update server now publishes v3, whose kernel part cannot start the system.\n"
            );
            published3 = true;
        }
        let mut cfg = rig.vm_config(&format!("boot-{n}"))?;
        cfg.on_reboot = OnReboot::Exit;
        let boot_started = Instant::now();
        let mut vm = rig.bed.start(&cfg)?;
        vm.wait_exit(BOOT_LIMIT)?;
        let boots = vm.boots();
        let Some(boot) = boots.last() else {
            println!(
                "boot {n}: no boot seen; serial log {}",
                vm.serial_log().display()
            );
            break;
        };
        let row = Row::from_boot(boot);
        let boot = OtaBoot::from_boot(boot);
        for line in describe_boot(n, &row, &boot, boot_started.elapsed().as_secs_f64()) {
            println!("{line}");
        }
        println!("  disk: {}\n", bits_line(&rig)?);
        if boot.summary.ending
            == (Ending::System {
                action: "poweroff".into(),
            })
        {
            break;
        }
    }
    println!("Summary: v1 installed v2's kernel and root into the other slot as one update; v2");
    println!("booted its own kernel on a trial boot, proved itself and was committed. v3's kernel");
    println!("part could not start the system: flipside-boot spent its tries and went back to v2");
    println!("by itself. No step needed a human.\n");
    println!(
        "Logs (console of each boot, with timings and QEMU command lines): {}",
        rig.bed.logs.display()
    );
    println!("Total: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flipside-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
