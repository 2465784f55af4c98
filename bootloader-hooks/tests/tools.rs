//! Cross-checks with the real tools: bits set by cgpt and sgdisk are read by flipside, bits set
//! by flipside are read by cgpt and sgdisk, `sgdisk -v` stays clean, a broken primary is
//! repaired, and the flipside-select binary walks a trial sequence the way the firmware rules
//! (computed from cgpt's view) say it should, on image files and on a 4K-sector loop device.

mod common;

use std::path::Path;

use common::{
    assert_sgdisk_clean, attrs, cgpt_pts, cgpt_set, eval_vars, make_image, make_image_4k,
    reference_choice, run, s, select, sgdisk_bits, Loop,
};
use flipside_bootloader_hooks::disk::{self, SlotLayout};
use flipside_bootloader_hooks::{BootState, CopyKind, Disk, Error, GptTable, Slot};

fn load(path: &Path) -> (GptTable, BootState) {
    let mut d = Disk::open(path, false).expect("open image");
    disk::load(&mut d, &SlotLayout::default()).expect("load boot state")
}

fn commit(path: &Path, state: &BootState) -> bool {
    let mut d = Disk::open(path, true).expect("open image");
    let (mut table, _) = disk::load(&mut d, &SlotLayout::default()).expect("load");
    disk::commit(&mut d, &mut table, state).expect("commit")
}

fn pts(state: &BootState, slot: Slot) -> (u8, u8, bool) {
    let a = state.attrs(slot);
    (a.priority(), a.tries(), a.successful())
}

#[test]
fn flipside_reads_what_cgpt_and_sgdisk_write() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "disk.img");
    cgpt_set(&img, 1, 2, 1, false);
    let (_, state) = load(&img);
    // What `cgpt add -P 2 -T 1 -S 0` writes, as a hex literal.
    assert_eq!(state.attrs(Slot::A).raw(), 0x0012_0000_0000_0000);
    assert_eq!(sgdisk_bits(&img, 1), 0x0012_0000_0000_0000);

    run(
        "sgdisk",
        &[
            "-A",
            "2:set:56",
            "-A",
            "2:set:48",
            "-A",
            "2:set:50",
            "-A",
            "2:set:60",
            s(&img),
        ],
    );
    let (_, state) = load(&img);
    assert_eq!(pts(&state, Slot::B), (5, 0, true));
    assert_eq!(state.attrs(Slot::B).raw(), 0x1105_0000_0000_0000);
    assert_eq!(cgpt_pts(&img, 2), (5, 0, true));

    for (p, t, ok) in [(15, 15, true), (0, 7, false), (9, 0, true)] {
        cgpt_set(&img, 1, p, t, ok);
        assert_eq!(pts(&load(&img).1, Slot::A), (p, t, ok));
    }
}

#[test]
fn cgpt_and_sgdisk_read_what_flipside_writes() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "disk.img");
    // An other bit (UEFI legacy bootable) that must survive flipside's writes.
    run("sgdisk", &["-A", "1:set:2", s(&img)]);
    let (_, state) = load(&img);
    for (a, b) in [
        ((2, 0, true), (1, 0, true)),
        ((1, 0, true), (2, 3, false)),
        ((15, 15, true), (0, 0, false)),
        ((0, 0, false), (7, 1, true)),
    ] {
        let with = |slot: Slot, (p, t, ok): (u8, u8, bool)| {
            let cur = state.attrs(slot);
            cur.with_priority(p)
                .and_then(|x| x.with_tries(t))
                .expect("in range")
                .with_successful(ok)
        };
        let next = state
            .with_attrs(Slot::A, with(Slot::A, a))
            .with_attrs(Slot::B, with(Slot::B, b));
        commit(&img, &next);
        assert_eq!(cgpt_pts(&img, 1), a);
        assert_eq!(cgpt_pts(&img, 2), b);
        assert_eq!(sgdisk_bits(&img, 1), next.attrs(Slot::A).raw());
        assert_eq!(sgdisk_bits(&img, 2), next.attrs(Slot::B).raw());
        assert_eq!(sgdisk_bits(&img, 1) & 0b100, 0b100);
        assert_sgdisk_clean(&img);
    }
}

#[test]
fn broken_primary_is_read_from_backup_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "disk.img");
    cgpt_set(&img, 1, 2, 0, true);
    cgpt_set(&img, 2, 1, 0, true);
    let good = std::fs::read(&img).unwrap();
    let mut broken = good.clone();
    broken[512 + 50] ^= 0xff; // last usable LBA in the primary header
    std::fs::write(&img, &broken).unwrap();
    let out = common::run_raw("sgdisk", &["-v", s(&img)]);
    let said = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        said.contains("corrupt gpt"),
        "sgdisk should see the damage: {said}"
    );

    let (table, state) = load(&img);
    assert_eq!(table.source(), CopyKind::Backup);
    assert!(table.needs_repair());
    assert_eq!(pts(&state, Slot::A), (2, 0, true));
    assert!(
        commit(&img, &state),
        "repair writes even without a state change"
    );
    assert_sgdisk_clean(&img);
    assert_eq!(std::fs::read(&img).unwrap(), good);
    assert_eq!(cgpt_pts(&img, 1), (2, 0, true));
}

/// One flipside-select run, checked against the firmware rules applied to cgpt's view.
fn select_step(img: &Path, expect_trial: bool) -> Slot {
    let before = (cgpt_pts(img, 1), cgpt_pts(img, 2));
    let want = reference_choice(
        (1, before.0 .0, before.0 .1, before.0 .2),
        (2, before.1 .0, before.1 .1, before.1 .2),
    )
    .expect("a bootable slot");
    let out = select(&["--disk", s(img)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vars = eval_vars(&out);
    let slot = match vars["FLIPSIDE_SLOT"].as_str() {
        "a" => Slot::A,
        "b" => Slot::B,
        other => panic!("FLIPSIDE_SLOT={other}"),
    };
    assert_eq!(slot, want);
    let n: u32 = if slot == Slot::A { 1 } else { 2 };
    assert_eq!(vars["FLIPSIDE_PARTNUM"], n.to_string());
    // An image file has no partition devices: just the number.
    assert_eq!(vars["FLIPSIDE_PARTITION"], n.to_string());
    assert_eq!(vars["FLIPSIDE_TRIAL"], if expect_trial { "1" } else { "0" });
    let partuuid = run("cgpt", &["show", "-i", &n.to_string(), "-u", s(img)]);
    assert_eq!(
        vars["FLIPSIDE_PARTUUID"].to_uppercase(),
        partuuid.trim().to_uppercase()
    );
    // The try was consumed on disk exactly as the rule says.
    let old = if slot == Slot::A { before.0 } else { before.1 };
    let now = cgpt_pts(img, n);
    let want_now = match old {
        (_, _, true) => old,
        (_, 1, false) => (0, 0, false),
        (p, t, false) => (p, t - 1, false),
    };
    assert_eq!(now, want_now);
    assert_eq!(
        vars["FLIPSIDE_TRIES_LEFT"],
        if old.2 { "0".into() } else { now.1.to_string() }
    );
    assert_sgdisk_clean(img);
    slot
}

#[test]
fn select_binary_walks_trial_sequences_like_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "disk.img");
    let kernels = run("cgpt", &["find", "-t", "kernel", s(&img)]);
    assert_eq!(
        kernels.lines().count(),
        2,
        "root-a and root-b are kernel partitions: {kernels}"
    );

    // Provisioned: A proven. Install into B and arm it with cgpt, as an updater would.
    cgpt_set(&img, 1, 1, 0, true);
    cgpt_set(&img, 2, 0, 0, false);
    assert_eq!(select_step(&img, false), Slot::A);
    cgpt_set(&img, 2, 0, 2, false);
    run("cgpt", &["prioritize", "-i", "2", s(&img)]);
    assert!(cgpt_pts(&img, 2).0 > cgpt_pts(&img, 1).0);
    // Trial boots until the tries run out, then back to A.
    assert_eq!(select_step(&img, true), Slot::B);
    assert_eq!(select_step(&img, true), Slot::B);
    assert_eq!(cgpt_pts(&img, 2), (0, 0, false));
    assert_eq!(select_step(&img, false), Slot::A);
    assert_eq!(select_step(&img, false), Slot::A);

    // Armed with flipside's own transitions, booted once, marked good: B from then on.
    let (_, state) = load(&img);
    let armed = state
        .clear_for_write(Slot::B)
        .and_then(|s| s.arm_for_trial(Slot::B, 3))
        .unwrap();
    commit(&img, &armed);
    assert_eq!(select_step(&img, true), Slot::B);
    let (_, state) = load(&img);
    commit(&img, &state.mark_good(Slot::B).unwrap());
    assert_eq!(cgpt_pts(&img, 2), (2, 0, true));
    assert_eq!(select_step(&img, false), Slot::B);

    // Next update into A fails its health check: marked bad, B boots again.
    let (_, state) = load(&img);
    let armed = state
        .clear_for_write(Slot::A)
        .and_then(|s| s.arm_for_trial(Slot::A, 2))
        .unwrap();
    commit(&img, &armed);
    assert_eq!(select_step(&img, true), Slot::A);
    let (_, state) = load(&img);
    commit(&img, &state.mark_bad(Slot::A).unwrap());
    assert_eq!(select_step(&img, false), Slot::B);
    assert_eq!(cgpt_pts(&img, 1), (0, 0, false));
}

#[test]
fn select_binary_exit_codes_and_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "disk.img");
    let code = |args: &[&str]| select(args).status.code();

    // No bootable slot.
    cgpt_set(&img, 1, 0, 0, true);
    cgpt_set(&img, 2, 3, 0, false);
    assert_eq!(code(&["--disk", s(&img)]), Some(3));

    // Dry run reports the choice and changes nothing.
    cgpt_set(&img, 2, 3, 2, false);
    let before = std::fs::read(&img).unwrap();
    let out = select(&["--disk", s(&img), "--dry-run"]);
    assert!(out.status.success());
    let vars = eval_vars(&out);
    assert_eq!(
        (
            vars["FLIPSIDE_SLOT"].as_str(),
            vars["FLIPSIDE_TRIES_LEFT"].as_str()
        ),
        ("b", "1")
    );
    assert_eq!(std::fs::read(&img).unwrap(), before);

    // Other labels.
    run("sgdisk", &["-c", "1:sys-1", "-c", "2:sys-2", s(&img)]);
    assert_eq!(code(&["--disk", s(&img)]), Some(4), "root-a is gone");
    let out = select(&[
        "--disk",
        s(&img),
        "--label-a",
        "sys-1",
        "--label-b",
        "sys-2",
    ]);
    assert!(out.status.success());
    assert_eq!(eval_vars(&out)["FLIPSIDE_SLOT"], "b");

    // Not a GPT, missing disk, usage.
    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![0u8; 64 * 1024]).unwrap();
    assert_eq!(code(&["--disk", s(&junk)]), Some(4));
    assert_eq!(code(&["--disk", "/nonexistent/disk"]), Some(4));
    assert_eq!(code(&[]), Some(2));
    assert_eq!(code(&["--disk"]), Some(2));
    assert_eq!(code(&["--disk", s(&img), "--bogus"]), Some(2));
    assert_eq!(code(&["--help"]), Some(0));
}

/// A repair that changes no boot bit is reported as a repair, not as a write of the same bits;
/// a consumed try is reported as the write it is.
#[test]
fn select_reports_a_repair_apart_from_a_write_of_the_bits() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "disk.img");
    cgpt_set(&img, 1, 1, 0, true);
    cgpt_set(&img, 2, 0, 0, false);
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[512 + 40] ^= 0xff;
    std::fs::write(&img, &bytes).unwrap();
    let out = select(&["--disk", s(&img)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("repaired the GPT (the primary copy was unusable: header CRC32")
            && !stderr.contains("wrote slot"),
        "{stderr}"
    );
    assert_sgdisk_clean(&img);
    // Now a trial: the consumed try is a write, and nothing needs repair.
    cgpt_set(&img, 2, 2, 2, false);
    let out = select(&["--disk", s(&img)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("wrote slot b") && !stderr.contains("repaired"),
        "{stderr}"
    );
}

#[test]
fn mark_bad_clears_a_proven_slot_so_the_other_boots_next() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "disk.img");
    let code = |args: &[&str]| select(args).status.code();
    // b proven and preferred, a proven fallback: as after a committed update.
    cgpt_set(&img, 1, 1, 0, true);
    cgpt_set(&img, 2, 2, 0, true);
    let out = select(&["--disk", s(&img), "--mark-bad", "b"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "FLIPSIDE_MARKED_BAD=b"
    );
    assert_eq!(cgpt_pts(&img, 2), (0, 0, false));
    assert_eq!(cgpt_pts(&img, 1), (1, 0, true));
    assert_sgdisk_clean(&img);
    assert_eq!(select_step(&img, false), Slot::A);
    // a is the only bootable slot left: marking it bad too is refused and writes nothing.
    let before = std::fs::read(&img).unwrap();
    assert_eq!(code(&["--disk", s(&img), "--mark-bad", "a"]), Some(3));
    assert_eq!(std::fs::read(&img).unwrap(), before);
}

#[test]
fn select_output_evaluates_in_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "disk.img");
    cgpt_set(&img, 1, 1, 0, true);
    let script = format!(
        "eval \"$('{}' --disk '{}')\" && echo \"$FLIPSIDE_SLOT $FLIPSIDE_PARTNUM $FLIPSIDE_TRIAL\"",
        env!("CARGO_BIN_EXE_flipside-select"),
        s(&img)
    );
    assert_eq!(run("sh", &["-c", &script]).trim(), "a 1 0");
}

#[test]
fn loop_device_with_4k_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image_4k(dir.path(), "disk4k.img");
    {
        let lo = Loop::attach(&img, 4096);
        cgpt_set(&lo.dev, 1, 1, 0, true);
        cgpt_set(&lo.dev, 2, 2, 2, false);
        let out = select(&["--disk", s(&lo.dev)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vars = eval_vars(&out);
        assert_eq!(vars["FLIPSIDE_SLOT"], "b");
        assert_eq!(
            vars["FLIPSIDE_PARTITION"],
            format!("{}p2", lo.dev.display())
        );
        assert_eq!(vars["FLIPSIDE_TRIAL"], "1");
        assert_eq!(cgpt_pts(&lo.dev, 2), (2, 1, false));
        assert_sgdisk_clean(&lo.dev);
        let (table, state) = load(&lo.dev);
        assert_eq!(table.sector_size(), 4096);
        assert_eq!(pts(&state, Slot::B), (2, 1, false));
    }
    // The image file holds the same 4K table: flipside finds it without the loop device.
    let (table, state) = load(&img);
    assert_eq!(table.sector_size(), 4096);
    assert_eq!(pts(&state, Slot::A), (1, 0, true));

    // A broken 4K primary is read from the backup and repaired, checked on a fresh loop device.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[4096 + 40] ^= 0xff;
    std::fs::write(&img, &bytes).unwrap();
    let (table, state) = load(&img);
    assert_eq!(table.source(), CopyKind::Backup);
    assert!(commit(&img, &state.with_attrs(Slot::B, attrs(3, 1, false))));
    let lo = Loop::attach(&img, 4096);
    assert_sgdisk_clean(&lo.dev);
    assert_eq!(cgpt_pts(&lo.dev, 2), (3, 1, false));
}

#[test]
fn power_cut_on_a_4k_table() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image_4k(dir.path(), "disk4k.img");
    let mut d = Disk::open(&img, true).unwrap();
    let (mut table, state) = disk::load(&mut d, &SlotLayout::default()).unwrap();
    let provisioned = state
        .with_attrs(Slot::A, attrs(2, 0, true))
        .with_attrs(Slot::B, attrs(0, 0, false));
    disk::commit(&mut d, &mut table, &provisioned).unwrap();
    drop(d);
    let bytes = std::fs::read(&img).unwrap();
    let old = provisioned;
    let new = old
        .clear_for_write(Slot::B)
        .and_then(|s| s.arm_for_trial(Slot::B, 3))
        .unwrap();
    for mode in [
        flipside_bootloader_hooks::CutMode::KeepWritten,
        flipside_bootloader_hooks::CutMode::LoseUnsynced,
    ] {
        // 2 x (16 KiB entries + 92-byte header) are written; the 512-byte tests cut at every
        // byte, here a stride keeps the run short.
        let mut budget = 0u64;
        while budget <= 2 * (16384 + 92) {
            let dev = flipside_bootloader_hooks::PowerCut::new(bytes.clone(), budget, mode);
            let mut d = Disk::new("cut", dev);
            let mut t = GptTable::read(&mut d).unwrap();
            disk::apply(&mut t, &new).unwrap();
            let _ = t.write(&mut d);
            let medium = d.into_inner().into_medium();
            let mut m = Disk::new("after", std::io::Cursor::new(medium));
            let (_, got) = disk::load(&mut m, &SlotLayout::default())
                .unwrap_or_else(|e| panic!("{mode:?} budget {budget}: {e}"));
            assert!(got == old || got == new, "{mode:?} budget {budget}: {got}");
            budget += 97;
        }
    }
}

/// Points the primary header's backup location into the data partition (CRC fixed up), so the
/// table reads from the primary but cannot be repaired without clobbering data.
fn misplace_backup(img: &Path) {
    let mut b = std::fs::read(img).unwrap();
    b[512 + 32..512 + 40].copy_from_slice(&400u64.to_le_bytes());
    b[512 + 16..512 + 20].fill(0);
    let crc = crc32fast::hash(&b[512..512 + 92]);
    b[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(img, b).unwrap();
}

#[test]
fn select_boots_a_proven_slot_when_repair_is_impossible_but_never_an_unrecorded_trial() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "disk.img");
    cgpt_set(&img, 1, 1, 0, true);
    cgpt_set(&img, 2, 0, 0, false);
    misplace_backup(&img);
    let before = std::fs::read(&img).unwrap();
    let out = select(&["--disk", s(&img)]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(eval_vars(&out)["FLIPSIDE_SLOT"], "a");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot repair"));
    assert_eq!(std::fs::read(&img).unwrap(), before);

    // The same table with B armed: the try cannot be recorded, so nothing is chosen.
    let img = make_image(dir.path(), "trial.img");
    cgpt_set(&img, 1, 1, 0, true);
    cgpt_set(&img, 2, 2, 2, false);
    misplace_backup(&img);
    let before = std::fs::read(&img).unwrap();
    let out = select(&["--disk", s(&img)]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read(&img).unwrap(), before);
}

#[test]
fn select_on_a_read_only_loop_device() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "disk.img");
    cgpt_set(&img, 1, 1, 0, true);
    cgpt_set(&img, 2, 2, 1, false);
    let lo = Loop::attach_read_only(&img);
    // B is on trial and its try cannot be recorded on a read-only device.
    assert_eq!(select(&["--disk", s(&lo.dev)]).status.code(), Some(5));
    let out = select(&["--disk", s(&lo.dev), "--dry-run"]);
    assert_eq!(eval_vars(&out)["FLIPSIDE_SLOT"], "b");
    drop(lo);
    // With B unbootable, the proven A boots from the read-only device.
    cgpt_set(&img, 2, 0, 0, false);
    let lo = Loop::attach_read_only(&img);
    let out = select(&["--disk", s(&lo.dev)]);
    assert_eq!(out.status.code(), Some(0));
    let vars = eval_vars(&out);
    assert_eq!(vars["FLIPSIDE_SLOT"], "a");
    assert_eq!(
        vars["FLIPSIDE_PARTITION"],
        format!("{}p1", lo.dev.display())
    );
}

/// Entries that contradict each other or the header are refused before any slot is chosen or
/// written: an "inactive" slot overlapping the running one, an inverted range whose length
/// would wrap, a partition past the usable area. sgdisk -v agrees the tables are bad.
#[test]
fn hostile_partition_entries_are_refused_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    // root-a is LBA 40..=167, root-b 168..=295, data 296..=last usable.
    for (name, number, first, last, why) in [
        ("b-inside-a", 2, 100, 227, "overlap"),
        ("b-wraps", 2, 168, 166, "ends (LBA 166) before it starts"),
        ("b-past-usable", 2, 168, 100_000, "outside the usable area"),
    ] {
        let img = make_image(t.path(), name);
        cgpt_set(&img, 1, 1, 0, true);
        cgpt_set(&img, 2, 2, 1, false);
        common::hostile_gpt::set_entry_lbas(&img, number, first, last);
        let before = std::fs::read(&img).unwrap();
        let out = select(&["--disk", s(&img)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{name}: {stderr}");
        assert!(stderr.contains("cannot be trusted"), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}: no slot may be printed");
        assert_eq!(
            std::fs::read(&img).unwrap(),
            before,
            "{name}: the disk changed"
        );
        let mut disk = Disk::open(&img, false).unwrap();
        assert!(matches!(
            flipside_bootloader_hooks::load(&mut disk, &SlotLayout::default()),
            Err(Error::BadLayout { .. })
        ));
    }
}
