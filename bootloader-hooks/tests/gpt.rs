//! The GPT codec on images made by sgdisk: byte-exact attribute rewrites, reading from and
//! repairing either copy, refusing tables with no valid copy, and power cuts at every byte of
//! the rewrite (at each write's edges and changed bytes, and on a stride between).

mod common;

use std::io::Cursor;
use std::path::Path;

use common::{attrs, make_image};
use flipside_bootloader_hooks::disk::{self, apply, boot_state};
use flipside_bootloader_hooks::{
    BlockDevice, BootState, CopyKind, CopyProblem, CutMode, Disk, Error, GptTable,
    PartitionSelector, PowerCut, Slot, SlotLayout,
};

const SECTOR: usize = 512;
/// The test images: 512 sectors, backup header at LBA 511, backup entries at 479..511.
const BACKUP_LBA: usize = 511;
const BACKUP_ENTRIES_LBA: usize = 479;

fn mem(bytes: &[u8]) -> Disk<Cursor<Vec<u8>>> {
    Disk::new("test image", Cursor::new(bytes.to_vec()))
}

fn read(bytes: &[u8]) -> Result<GptTable, Error> {
    GptTable::read(&mut mem(bytes))
}

fn fresh_image() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = make_image(dir.path(), "disk.img");
    let bytes = std::fs::read(&path).expect("read image");
    (dir, bytes)
}

fn state_of(bytes: &[u8]) -> BootState {
    let table = read(bytes).expect("a valid table");
    boot_state(&table, &SlotLayout::default()).expect("slots found")
}

/// Commits `state` into an in-memory copy of `bytes`, returns the new bytes.
fn committed(bytes: &[u8], state: &BootState) -> Vec<u8> {
    let mut d = mem(bytes);
    let mut table = GptTable::read(&mut d).expect("read");
    disk::commit(&mut d, &mut table, state).expect("commit");
    d.into_inner().into_inner()
}

/// Byte ranges a rewrite of slots 1 and 2 may change: their attribute fields in both entry
/// arrays, and the two CRC fields of both headers.
fn allowed_changes() -> Vec<std::ops::Range<usize>> {
    let mut r = Vec::new();
    for entries_lba in [2, BACKUP_ENTRIES_LBA] {
        for n in [1usize, 2] {
            let at = entries_lba * SECTOR + (n - 1) * 128 + 48;
            r.push(at..at + 8);
        }
    }
    for lba in [1, BACKUP_LBA] {
        r.push(lba * SECTOR + 16..lba * SECTOR + 20);
        r.push(lba * SECTOR + 88..lba * SECTOR + 92);
    }
    r
}

#[test]
fn finds_slots_by_label_and_partuuid() {
    let (_dir, bytes) = fresh_image();
    let table = read(&bytes).unwrap();
    assert_eq!(table.sector_size(), 512);
    assert_eq!(table.source(), CopyKind::Primary);
    assert!(!table.needs_repair());
    let labels: Vec<_> = table.partitions().into_iter().map(|p| p.label).collect();
    assert_eq!(labels, ["root-a", "root-b", "data"]);
    let b = table
        .find(&PartitionSelector::Label("root-b".into()))
        .unwrap();
    assert_eq!(b.number, 2);
    let by_uuid = table
        .find(&PartitionSelector::PartUuid(b.partuuid))
        .unwrap();
    assert_eq!(by_uuid, b);
    assert!(matches!(
        table.find(&PartitionSelector::Label("root-c".into())),
        Err(Error::PartitionNotFound { .. })
    ));
    let state = boot_state(&table, &SlotLayout::default()).unwrap();
    assert_eq!(state.slot(Slot::B).partition.partuuid, b.partuuid);
    assert_eq!(state.slot_by_partuuid(b.partuuid), Some(Slot::B));
}

#[test]
fn duplicate_labels_are_ambiguous() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_image(dir.path(), "dup.img");
    common::run("sgdisk", &["-c", "3:root-a", common::s(&path)]);
    let table = read(&std::fs::read(&path).unwrap()).unwrap();
    assert!(matches!(
        boot_state(&table, &SlotLayout::default()),
        Err(Error::AmbiguousPartition { indices, .. }) if indices == [1, 3]
    ));
}

#[test]
fn rewrite_changes_only_attribute_fields_and_crcs() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_image(dir.path(), "disk.img");
    // Other bits that must survive: UEFI required (0), legacy bootable (2), GrowFS (59), NoAuto (63).
    let p = common::s(&path);
    common::run(
        "sgdisk",
        &[
            "-A", "1:set:0", "-A", "1:set:59", "-A", "2:set:2", "-A", "2:set:63", p,
        ],
    );
    let before = std::fs::read(&path).unwrap();
    let cur = state_of(&before);
    let set = |slot: Slot, p: u8, t: u8, ok: bool| {
        let a = cur
            .attrs(slot)
            .with_priority(p)
            .and_then(|a| a.with_tries(t));
        a.expect("in range").with_successful(ok)
    };
    let state = cur
        .with_attrs(Slot::A, set(Slot::A, 2, 0, true))
        .with_attrs(Slot::B, set(Slot::B, 1, 0, true));
    let after = committed(&before, &state);

    assert_eq!(after.len(), before.len());
    let allowed = allowed_changes();
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert!(!changed.is_empty());
    for i in &changed {
        assert!(
            allowed.iter().any(|r| r.contains(i)),
            "byte {i} (LBA {}, offset {}) changed",
            i / SECTOR,
            i % SECTOR
        );
    }
    // Both entry arrays and both headers did change.
    for r in &allowed {
        if r.len() == 4 {
            assert_ne!(
                before[r.clone()],
                after[r.clone()],
                "CRC at {r:?} unchanged"
            );
        }
    }
    let reread = state_of(&after);
    assert_eq!(reread, state);
    assert_eq!(reread.attrs(Slot::A).raw() & 1, 1);
    assert_eq!(reread.attrs(Slot::B).raw() >> 63, 1);

    // Writing the same state again writes nothing.
    let mut d = mem(&after);
    let mut table = GptTable::read(&mut d).unwrap();
    assert!(!disk::commit(&mut d, &mut table, &state).unwrap());
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x40;
    b
}

#[test]
fn one_corrupt_copy_is_read_from_the_other_and_repaired() {
    let (_dir, original) = fresh_image();
    let cases = [
        ("primary header", SECTOR + 40, CopyKind::Backup),
        (
            "primary entries",
            2 * SECTOR + 5 * 128 + 3,
            CopyKind::Backup,
        ),
        ("backup header", BACKUP_LBA * SECTOR + 40, CopyKind::Primary),
        (
            "backup entries",
            BACKUP_ENTRIES_LBA * SECTOR + 128 + 60,
            CopyKind::Primary,
        ),
        ("primary signature", SECTOR, CopyKind::Backup),
    ];
    for (what, at, source) in cases {
        let broken = flip(&original, at);
        let table = read(&broken).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(table.source(), source, "{what}");
        assert!(table.needs_repair(), "{what}");
        let health = table.health();
        let problem = match source {
            CopyKind::Backup => health.primary,
            CopyKind::Primary => health.backup,
        };
        match (what, problem) {
            ("primary signature", Some(CopyProblem::BadSignature)) => {}
            (w, Some(CopyProblem::HeaderCrc { .. })) if w.ends_with("header") => {}
            (w, Some(CopyProblem::EntriesCrc { .. })) if w.ends_with("entries") => {}
            (w, p) => panic!("{w}: unexpected problem {p:?}"),
        }
        // Repair with no state change restores the image exactly.
        let state = state_of(&broken);
        assert_eq!(state, state_of(&original), "{what}");
        let repaired = committed(&broken, &state);
        assert!(repaired == original, "{what}: repair is not byte-identical");
    }
}

#[test]
fn both_copies_corrupt_is_a_typed_error() {
    let (_dir, original) = fresh_image();
    let broken = flip(&flip(&original, SECTOR + 40), BACKUP_LBA * SECTOR + 40);
    match read(&broken) {
        Err(Error::BothCopiesCorrupt {
            primary: CopyProblem::HeaderCrc { .. },
            backup: CopyProblem::HeaderCrc { .. },
            ..
        }) => {}
        other => panic!("expected BothCopiesCorrupt, got {other:?}"),
    }
    let broken = flip(
        &flip(&original, 2 * SECTOR + 9),
        BACKUP_ENTRIES_LBA * SECTOR + 9,
    );
    assert!(matches!(
        read(&broken),
        Err(Error::BothCopiesCorrupt {
            primary: CopyProblem::EntriesCrc { .. },
            backup: CopyProblem::EntriesCrc { .. },
            ..
        })
    ));
}

#[test]
fn non_gpt_inputs_are_refused() {
    let (_dir, original) = fresh_image();
    let mut no_mbr = original.clone();
    no_mbr[510] = 0;
    assert!(matches!(read(&no_mbr), Err(Error::NoProtectiveMbr { .. })));
    assert!(matches!(
        read(&[0u8; 1000]),
        Err(Error::DiskTooSmall { len: 1000, .. })
    ));
    let mut zeroed = original[..SECTOR].to_vec();
    zeroed.resize(original.len(), 0);
    assert!(matches!(
        read(&zeroed),
        Err(Error::BothCopiesCorrupt {
            primary: CopyProblem::BadSignature,
            backup: CopyProblem::BadSignature,
            ..
        })
    ));
}

#[test]
fn file_device_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_image(dir.path(), "disk.img");
    let mut d = Disk::open(&path, true).unwrap();
    let (mut table, state) = disk::load(&mut d, &SlotLayout::default()).unwrap();
    let next = state.with_attrs(Slot::B, attrs(3, 2, false));
    assert!(disk::commit(&mut d, &mut table, &next).unwrap());
    drop(d);
    let mut d = Disk::open(&path, false).unwrap();
    let (_, reread) = disk::load(&mut d, &SlotLayout::default()).unwrap();
    assert_eq!(reread, next);
    common::assert_sgdisk_clean(&path);
    assert!(matches!(
        Disk::open(Path::new("/nonexistent/disk.img"), false),
        Err(Error::Open { .. })
    ));
}

/// A device that logs where each write went, to find the interesting places to cut power.
struct WriteLog {
    inner: Cursor<Vec<u8>>,
    writes: Vec<(u64, usize)>,
    /// Number of writes logged at each flush.
    syncs: Vec<usize>,
}

impl BlockDevice for WriteLog {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.writes.push((offset, buf.len()));
        self.inner.write_at(offset, buf)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.syncs.push(self.writes.len());
        Ok(())
    }
    fn byte_len(&mut self) -> std::io::Result<u64> {
        self.inner.byte_len()
    }
}

fn logged_rewrite(image: &[u8], state: &BootState) -> WriteLog {
    let log = WriteLog {
        inner: Cursor::new(image.to_vec()),
        writes: Vec::new(),
        syncs: Vec::new(),
    };
    let mut d = Disk::new("log", log);
    let mut table = GptTable::read(&mut d).unwrap();
    apply(&mut table, state).unwrap();
    table.write(&mut d).unwrap();
    d.into_inner()
}

#[test]
fn healthy_table_is_written_backup_first_with_a_flush_after_each_copy() {
    let (_dir, original) = fresh_image();
    let image = provisioned(&original);
    let next = state_of(&image).clear_for_write(Slot::B).unwrap();
    let log = logged_rewrite(&image, &next);
    let s = SECTOR as u64;
    assert_eq!(
        log.writes,
        [
            (BACKUP_ENTRIES_LBA as u64 * s, 128 * 128),
            (BACKUP_LBA as u64 * s, 92),
            (2 * s, 128 * 128),
            (s, 92),
        ]
    );
    assert_eq!(log.syncs, [2, 4]);
}

#[test]
fn corrupt_primary_is_rebuilt_first() {
    let (_dir, original) = fresh_image();
    let broken = flip(&provisioned(&original), SECTOR + 40);
    let next = state_of(&broken).clear_for_write(Slot::B).unwrap();
    let log = logged_rewrite(&broken, &next);
    let s = SECTOR as u64;
    // The rebuilt primary header is written as a whole sector.
    assert_eq!(
        log.writes,
        [
            (2 * s, 128 * 128),
            (s, SECTOR),
            (BACKUP_ENTRIES_LBA as u64 * s, 128 * 128),
            (BACKUP_LBA as u64 * s, 92),
        ]
    );
    assert_eq!(log.syncs, [2, 4]);
}

/// Budgets (bytes written before the cut) worth trying for a rewrite of `image` into `state`:
/// every write's start and end, the first and last byte each write changes, each +-1, and a
/// stride through everything else.
fn cut_points(image: &[u8], state: &BootState) -> (Vec<u64>, u64) {
    let log = logged_rewrite(image, state);
    let after = log.inner.get_ref();
    let mut points = Vec::new();
    let mut done = 0u64;
    for &(off, len) in &log.writes {
        let range = off as usize..off as usize + len;
        let changed: Vec<usize> = range.clone().filter(|&i| image[i] != after[i]).collect();
        let mut marks = vec![done, done + len as u64];
        for i in [changed.first(), changed.last()].into_iter().flatten() {
            marks.push(done + (i - range.start) as u64);
        }
        for m in marks {
            points.extend([m.saturating_sub(1), m, m + 1]);
        }
        done += len as u64;
    }
    points.extend((0..done).step_by(61));
    points.retain(|&p| p <= done);
    points.sort_unstable();
    points.dedup();
    (points, done)
}

/// Power cuts during a rewrite (see [`cut_points`]): the table afterwards reads back (from
/// either copy) as the old or the new state, and running the rewrite again completes it.
fn power_cut_everywhere(image: &[u8]) {
    let old = state_of(image);
    let new = old
        .clear_for_write(Slot::B)
        .and_then(|s| s.arm_for_trial(Slot::B, 3))
        .expect("arm B");
    let (points, written) = cut_points(image, &new);
    assert!(points.len() > 500, "{} cut points", points.len());
    for mode in [CutMode::KeepWritten, CutMode::LoseUnsynced] {
        let mut saw = (false, false);
        for &budget in &points {
            let mut d = Disk::new("cut", PowerCut::new(image.to_vec(), budget, mode));
            let mut table = GptTable::read(&mut d).unwrap();
            apply(&mut table, &new).unwrap();
            let res = table.write(&mut d);
            let dev = d.into_inner();
            assert_eq!(res.is_err(), dev.was_cut(), "budget {budget}");
            assert_eq!(dev.was_cut(), budget < written, "budget {budget}");
            let after = dev.into_medium();
            let got = state_of(&after);
            if got == old {
                saw.0 = true;
            } else if got == new {
                saw.1 = true;
            } else {
                panic!("{mode:?} budget {budget}: neither old nor new: {got}");
            }
            // A retry completes and leaves a healthy table.
            let retried = committed(&after, &new);
            let t = read(&retried).unwrap();
            assert!(
                !t.needs_repair(),
                "{mode:?} budget {budget}: {:?}",
                t.health()
            );
            assert_eq!(state_of(&retried), new);
        }
        assert!(saw.0 && saw.1, "{mode:?}: cuts should give both outcomes");
    }
}

fn provisioned(bytes: &[u8]) -> Vec<u8> {
    let s = state_of(bytes)
        .with_attrs(Slot::A, attrs(2, 0, true))
        .with_attrs(Slot::B, attrs(0, 0, false));
    committed(bytes, &s)
}

#[test]
fn power_cut_during_rewrite_of_a_healthy_table() {
    let (_dir, original) = fresh_image();
    power_cut_everywhere(&provisioned(&original));
}

#[test]
fn power_cut_during_repair_of_a_corrupt_primary() {
    let (_dir, original) = fresh_image();
    let broken = flip(&provisioned(&original), SECTOR + 40);
    assert_eq!(read(&broken).unwrap().source(), CopyKind::Backup);
    power_cut_everywhere(&broken);
}

#[test]
fn power_cut_during_repair_of_a_corrupt_backup() {
    let (_dir, original) = fresh_image();
    let broken = flip(&provisioned(&original), BACKUP_ENTRIES_LBA * SECTOR + 7);
    assert_eq!(read(&broken).unwrap().source(), CopyKind::Primary);
    power_cut_everywhere(&broken);
}
