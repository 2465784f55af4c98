//! The initramfs the harness builds from the real assets: reproducible, and holding what its
//! /init needs (read back with the host's cpio).

use std::process::{Command, Stdio};

use flipside_qemu_tests::{initramfs, kernel, Assets};

fn listing(archive: &[u8]) -> String {
    let raw = zstd::decode_all(archive).unwrap();
    let mut cpio = Command::new("cpio")
        .args(["-t", "-v", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cpio is needed: apt-get install cpio");
    std::io::Write::write_all(&mut cpio.stdin.take().unwrap(), &raw).unwrap();
    let out = cpio.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn initramfs_is_reproducible_and_complete() {
    let assets = Assets::get().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("again.cpio.zst");
    initramfs::build(
        &initramfs::Inputs {
            busybox: assets.busybox.clone(),
            flipside_select: assets.flipside_select.clone(),
            flipside_verity: assets.flipside_verity.clone(),
            modules: assets.kernel.modules.clone(),
        },
        &again,
    )
    .unwrap();
    let first = std::fs::read(&assets.initramfs).unwrap();
    assert_eq!(first, std::fs::read(&again).unwrap(), "two builds differ");

    let list = listing(&first);
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for needed in [
        "init",
        "bin/busybox",
        "bin/flipside-select",
        "dev/console",
        "lib/modules/load-order",
        "newroot",
    ] {
        assert!(names.contains(&needed), "{needed} missing from\n{list}");
    }
    for module in kernel::MODULES {
        assert!(
            names.contains(&format!("lib/modules/{module}.ko").as_str()),
            "{module}.ko missing"
        );
    }
    // Fixed owner and times: every entry root-owned, dated 1970.
    for line in list.lines() {
        assert!(line.contains(" root ") && line.contains("1970"), "{line}");
    }
    let order = initramfs::entries(&initramfs::Inputs {
        busybox: assets.busybox.clone(),
        flipside_select: assets.flipside_select.clone(),
        flipside_verity: assets.flipside_verity.clone(),
        modules: assets.kernel.modules.clone(),
    })
    .unwrap();
    let Some(initramfs::Entry::File { contents, .. }) = order.get("lib/modules/load-order") else {
        panic!("load-order is not a file");
    };
    assert_eq!(
        String::from_utf8_lossy(contents),
        kernel::MODULES.join("\n") + "\n"
    );
}

#[test]
fn kernel_and_helpers_are_in_the_cache() {
    let assets = Assets::get().unwrap();
    assert!(assets.kernel.image.is_file());
    // Debian's kernel is xz-compressed with PVH support: the harness boots the ELF vmlinux.
    assert_eq!(assets.kernel.format, kernel::KernelFormat::PvhElf);
    for program in [&assets.busybox, &assets.flipside_select] {
        let bytes = std::fs::read(program).unwrap();
        assert_eq!(
            flipside_qemu_tests::elf::static_x86_64_problem(&bytes),
            None,
            "{}",
            program.display()
        );
    }
}
