//! Test disks without a VM: the partition layout sgdisk made, slot images at their partition,
//! the size check, and boot bits written by the library and read by cgpt (and the reverse).

use std::process::Command;

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::{DiskLayout, Error, TestDisk};

const MIB: u64 = 1 << 20;

fn small() -> DiskLayout {
    DiskLayout {
        slot_size: 2 * MIB,
        data_size: 2 * MIB,
    }
}

fn sgdisk_clean(disk: &TestDisk) {
    let out = Command::new("sgdisk")
        .arg("-v")
        .arg(disk.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No problems found"), "sgdisk -v: {text}");
}

#[test]
fn slots_and_data_are_where_the_gpt_says() {
    let dir = tempfile::tempdir().unwrap();
    let disk = TestDisk::create(&dir.path().join("d.img"), &small(), None).unwrap();
    sgdisk_clean(&disk);
    assert_eq!(disk.slot_partition(Slot::A).unwrap(), 1);
    assert_eq!(disk.slot_partition(Slot::B).unwrap(), 2);

    let image = dir.path().join("image");
    let bytes: Vec<u8> = (0..MIB as usize + 5).map(|i| (i % 251) as u8).collect();
    std::fs::write(&image, &bytes).unwrap();
    disk.write_slot(Slot::B, &image).unwrap();
    let raw = std::fs::read(disk.path()).unwrap();
    // Partition 2 starts right after partition 1 (1 MiB alignment, 2 MiB slots).
    let b_start = (MIB + 2 * MIB) as usize;
    assert_eq!(&raw[b_start..b_start + bytes.len()], &bytes[..]);
    assert!(
        raw[MIB as usize..b_start].iter().all(|&b| b == 0),
        "slot a must stay empty"
    );

    // The data partition holds an ext4 labelled `data`.
    let data_start = b_start + 2 * MIB as usize;
    assert_eq!(
        &raw[data_start + 1024 + 0x38..data_start + 1024 + 0x3a],
        &[0x53, 0xef]
    );
    assert_eq!(
        &raw[data_start + 1024 + 0x78..data_start + 1024 + 0x7c],
        b"data"
    );
    sgdisk_clean(&disk);
}

#[test]
fn an_image_larger_than_the_slot_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = TestDisk::create(&dir.path().join("d.img"), &small(), None).unwrap();
    let before = std::fs::read(disk.path()).unwrap();
    let image = dir.path().join("big");
    std::fs::write(&image, vec![7u8; 2 * MIB as usize + 1]).unwrap();
    let err = disk.write_slot(Slot::A, &image).unwrap_err();
    assert!(
        matches!(err, Error::ImageTooLarge { size, slot_size, partition: 1, .. } if size == 2 * MIB + 1 && slot_size == 2 * MIB),
        "{err}"
    );
    assert_eq!(std::fs::read(disk.path()).unwrap(), before);
}

#[test]
fn boot_bits_agree_between_the_library_and_cgpt() {
    let dir = tempfile::tempdir().unwrap();
    let disk = TestDisk::create(&dir.path().join("d.img"), &small(), None).unwrap();
    assert_eq!(disk.cgpt_slot(Slot::A).unwrap(), (0, 0, false));
    disk.set_slot(Slot::A, 1, 0, true).unwrap();
    disk.set_slot(Slot::B, 2, 3, false).unwrap();
    assert_eq!(disk.cgpt_slot(Slot::A).unwrap(), (1, 0, true));
    assert_eq!(disk.cgpt_slot(Slot::B).unwrap(), (2, 3, false));
    disk.cgpt_set_slot(Slot::B, 15, 15, true).unwrap();
    let b = disk.boot_state().unwrap().attrs(Slot::B);
    assert_eq!((b.priority(), b.tries(), b.successful()), (15, 15, true));
    sgdisk_clean(&disk);
}
