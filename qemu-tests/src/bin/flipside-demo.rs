//! `flipside-demo`: the virtual appliance through an update and a rollback, told as a
//! timeline. Run by `scripts/demo.sh`.
//!
//! One QEMU process per boot (a guest reboot ends it), so that the boot bits of both slots
//! can be read from the disk between boots and shown next to what the system and the updater
//! did in that boot.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::ota::{OtaBoot, Rig, TRIAL_BOOTS};
use flipside_qemu_tests::{Ending, OnReboot, Result};

/// Upper bound of one boot, installs included (TCG on a busy machine).
const BOOT_LIMIT: Duration = Duration::from_secs(240);
/// More boots than the story needs: a guard against a loop.
const MAX_BOOTS: usize = 8;

fn bits_line(rig: &Rig) -> Result<String> {
    let show = |slot: Slot| -> Result<String> {
        let (p, t, s) = rig.bits(slot)?;
        Ok(format!("{slot}: P={p} T={t} S={}", u8::from(s)))
    };
    Ok(format!("{}   {}", show(Slot::A)?, show(Slot::B)?))
}

fn describe_boot(n: usize, boot: &OtaBoot, secs: f64) -> Vec<String> {
    let mut out = Vec::new();
    let (slot, trial, left) = match boot.summary.selection {
        Some(s) => (s.slot.to_string(), s.trial, s.tries_left),
        None => ("?".into(), false, 0),
    };
    let version = boot
        .summary
        .version
        .map_or("?".to_string(), |v| format!("v{v}"));
    let how = if trial {
        let tries = if left == 1 { "try" } else { "tries" };
        format!("TRIAL boot ({left} {tries} left after this one)")
    } else {
        "proven slot".to_string()
    };
    out.push(format!(
        "boot {n}: slot {slot} runs {version}, {how}   [{secs:.0} s]"
    ));
    match (boot.health, boot.rebooted_by_updater) {
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
                "  updater: installed v{} into slot {} (downloaded {} bytes, {} bytes copied from the running slot) -> armed for {TRIAL_BOOTS} trial boots (P=2 T={TRIAL_BOOTS} S=0)",
                r.get("version").unwrap_or("?"),
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
        Ending::Unknown => "no end marker (reset)".to_string(),
    };
    out.push(format!("  ends: {end}"));
    out
}

fn run() -> Result<()> {
    let started = Instant::now();
    println!("flipside demo: an A/B appliance updates itself and rolls back a bad update\n");
    println!(
        "Preparing the kernel, initramfs, releases and repository (cached after the first run)..."
    );
    let rig = Rig::new("demo")?;
    println!(
        "  accelerator: {:?}; releases v1 (good), v2 (good, built from the Nix store path {}), v3 (health check fails)\n",
        rig.bed.accel, rig.world.nix_tools
    );
    println!("The disk has two root slots, a and b, and a data partition. Each slot has three");
    println!("GPT attribute fields the boot selector obeys (ChromeOS/Bottlerocket layout):");
    println!("  P = priority (highest bootable wins, 0 = never boot), T = trial boots left,");
    println!(
        "  S = successful (the slot has proven itself). A slot with S=0 boots only while T>0;"
    );
    println!("  each trial boot spends one try before the system even starts.\n");
    rig.provision(Slot::A, 1, (2, 0, true))?;
    println!("Factory state: v1 in slot a, slot b empty.");
    println!("  disk: {}\n", bits_line(&rig)?);
    rig.server.push_steps(rig.world.update_then_rollback());
    println!("The update server (127.0.0.1, the guest's only reachable host) publishes v2.\n");
    let mut published3 = false;
    for n in 1..=MAX_BOOTS {
        if !published3 && rig.server.pending_steps() <= 4 {
            println!("The update server now publishes v3, whose health check fails.\n");
            published3 = true;
        }
        let mut cfg = rig.vm_config(&format!("boot-{n}"));
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
        let boot = OtaBoot::from_boot(boot);
        for line in describe_boot(n, &boot, boot_started.elapsed().as_secs_f64()) {
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
    println!("Summary: v1 installed v2 into the other slot; v2 proved itself on a trial boot and");
    println!(
        "was committed. v3 failed its health check on its trial boot, was marked bad, and the"
    );
    println!("appliance went back to v2 by itself. No step needed a human.\n");
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
