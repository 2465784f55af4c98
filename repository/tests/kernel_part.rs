//! Releases with a kernel part: four targets (bundle, index, kernel bundle, kernel index) in one
//! targets version, each with the custom fields the contract gives its kind; all four staged
//! and checked before anything is published, so one bad file refuses the whole release and
//! leaves the repository byte-identical.

mod common;

use std::path::Path;

use common::{listing, now, sha256_hex, Fixture, PartFiles};
use flipside_contract::release::{Release, TargetCustom, TargetKind, CUSTOM_KEY};
use flipside_repository::release::read_release;
use flipside_repository::{Error, Repository};
use flipside_tuf::{Metadata, Targets};

const FILES: PartFiles<'static> = PartFiles {
    bundle: b"root bundle bytes",
    index: b"root index bytes",
    kernel_bundle: b"kernel bundle bytes",
    kernel_index: b"kernel index bytes",
};

fn targets(f: &Fixture, version: u64) -> Metadata<Targets> {
    let path = f.repo.join(format!("metadata/{version}.targets.json"));
    Metadata::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn custom_of(targets: &Metadata<Targets>, name: &str) -> TargetCustom {
    let info = &targets.signed.targets[name];
    serde_json::from_value(info.custom.as_ref().unwrap()[CUSTOM_KEY].clone()).unwrap()
}

/// Rewrites `dir/release.json` through `edit`.
fn edit_release(dir: &Path, edit: impl FnOnce(&mut Release)) {
    let path = dir.join("release.json");
    let mut release: Release = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut release);
    std::fs::write(&path, serde_json::to_vec_pretty(&release).unwrap()).unwrap();
}

#[test]
fn a_release_with_a_kernel_part_publishes_four_targets_with_their_custom_fields() {
    let f = Fixture::new();
    let dir = f.release_with_kernel(8, &FILES);
    let published = f.open().add(&f.keys, &dir, now()).unwrap();
    assert!(published.changed);
    assert_eq!(
        published.added,
        [
            "kiosk-8.bundle",
            "kiosk-8.index",
            "kiosk-8.kernel.bundle",
            "kiosk-8.kernel.index"
        ]
    );
    assert_eq!(
        published.versions.targets, 2,
        "one targets version for all four"
    );
    let release = read_release(&dir).unwrap();
    let kernel = release.kernel.as_ref().unwrap();
    let targets = targets(&f, 2);
    assert_eq!(targets.signed.targets.len(), 4);
    for (name, kind, bytes) in [
        ("kiosk-8.bundle", TargetKind::Bundle, FILES.bundle),
        ("kiosk-8.index", TargetKind::Index, FILES.index),
        (
            "kiosk-8.kernel.bundle",
            TargetKind::KernelBundle,
            FILES.kernel_bundle,
        ),
        (
            "kiosk-8.kernel.index",
            TargetKind::KernelIndex,
            FILES.kernel_index,
        ),
    ] {
        let info = &targets.signed.targets[name];
        info.check_bytes(name, bytes).unwrap();
        let served = f
            .repo
            .join("targets")
            .join(format!("{}.{name}", sha256_hex(bytes)));
        assert_eq!(std::fs::read(&served).unwrap(), bytes, "{name}");
        let custom = custom_of(&targets, name);
        custom.validate().unwrap();
        assert_eq!(custom, release.target_custom(kind), "{name}");
        assert_eq!(custom.kind, kind);
        // Every target names the kernel part, so a device can check the four together.
        let named = custom.kernel.as_ref().expect("no kernel part named");
        assert_eq!(named.kernel_release, "6.1.0-57-amd64");
        assert_eq!(named.bundle_target, "kiosk-8.kernel.bundle");
        assert_eq!(named.index_target, "kiosk-8.kernel.index");
        assert_eq!(named.image_sha256, kernel.image.sha256);
        if kind.is_kernel() {
            assert_eq!(custom.filesystem, "uki");
            assert_eq!(custom.image_length, kernel.image.length);
            assert_eq!(custom.bundle_target, "kiosk-8.kernel.bundle");
        } else {
            assert_eq!(custom.filesystem, "squashfs");
            assert_eq!(custom.bundle_target, "kiosk-8.bundle");
        }
    }
    // The four served files and nothing else (no temporary files left).
    assert_eq!(
        std::fs::read_dir(f.repo.join("targets")).unwrap().count(),
        4
    );
    f.open().verify(now()).unwrap();
}

#[test]
fn adding_a_release_with_a_kernel_part_again_changes_nothing() {
    let f = Fixture::new();
    let dir = f.release_with_kernel(8, &FILES);
    f.open().add(&f.keys, &dir, now()).unwrap();
    let before = listing(&f.repo);
    let again = f.open().add(&f.keys, &dir, now()).unwrap();
    assert!(!again.changed);
    assert!(again.added.is_empty());
    assert_eq!(again.versions.targets, 2);
    assert_eq!(listing(&f.repo), before);
}

#[test]
fn one_file_differing_from_release_json_refuses_the_whole_release() {
    let f = Fixture::new();
    f.open()
        .add(&f.keys, &f.release(1, b"b1", b"i1"), now())
        .unwrap();
    let before = listing(&f.repo);
    // A wrong sha256 in release.json for each of the four files in turn: each file is staged
    // and checked, and one mismatch leaves metadata and targets/ byte-identical.
    type Edit = fn(&mut Release);
    let tampered: [(&str, Edit); 4] = [
        ("kiosk-8.bundle", |r| r.bundle.sha256 = sha256_hex(b"x")),
        ("kiosk-8.index", |r| r.index.sha256 = sha256_hex(b"x")),
        ("kiosk-8.kernel.bundle", |r| {
            r.kernel.as_mut().unwrap().bundle.sha256 = sha256_hex(b"x")
        }),
        ("kiosk-8.kernel.index", |r| {
            r.kernel.as_mut().unwrap().index.sha256 = sha256_hex(b"x")
        }),
    ];
    for (name, edit) in tampered {
        let dir = f.release_with_kernel(8, &FILES);
        edit_release(&dir, edit);
        let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
        assert!(
            matches!(&err, Error::ReleaseMismatch { path, why }
                if path.ends_with(name) && why.contains("sha256")),
            "{name}: {err}"
        );
        assert_eq!(listing(&f.repo), before, "{name}: the repository changed");
    }
    // A kernel bundle longer than release.json says, and a missing kernel index.
    let dir = f.release_with_kernel(8, &FILES);
    std::fs::write(dir.join("kiosk-8.kernel.bundle"), b"kernel bundle bytes!").unwrap();
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(matches!(err, Error::ReleaseMismatch { .. }), "{err}");
    assert_eq!(listing(&f.repo), before);
    let dir = f.release_with_kernel(8, &FILES);
    std::fs::remove_file(dir.join("kiosk-8.kernel.index")).unwrap();
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(listing(&f.repo), before);
    // Names the contract refuses never reach the disk.
    let dir = f.release_with_kernel(8, &FILES);
    edit_release(&dir, |r| {
        r.kernel.as_mut().unwrap().index.name = "kiosk-8.bundle".into()
    });
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(matches!(err, Error::Release { .. }), "{err}");
    assert_eq!(listing(&f.repo), before);

    // Intact, the same release publishes.
    let dir = f.release_with_kernel(8, &FILES);
    let published = f.open().add(&f.keys, &dir, now()).unwrap();
    assert_eq!(published.added.len(), 4);
}

#[test]
fn a_published_release_never_gains_or_loses_its_kernel_part() {
    // A reproducible build of the same version with a [kernel] section added has the same
    // root bundle and index: publishing only the kernel files would leave the root targets
    // without the kernel part the kernel targets name.
    let f = Fixture::new();
    let plain = f.tmp.path().join("plain");
    common::write_release(&plain, 8, FILES.bundle, FILES.index);
    f.open().add(&f.keys, &plain, now()).unwrap();
    let before = listing(&f.repo);
    let dir = f.release_with_kernel(8, &FILES);
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(
        matches!(&err, Error::CustomConflict { name, why }
            if name == "kiosk-8.bundle" && why.contains("without the kernel part")),
        "{err}"
    );
    assert!(
        err.to_string().contains("build it with a new version"),
        "{err}"
    );
    assert_eq!(listing(&f.repo), before);

    // And the other way round.
    let g = Fixture::new();
    g.open()
        .add(&g.keys, &g.release_with_kernel(8, &FILES), now())
        .unwrap();
    let before = listing(&g.repo);
    let plain = g.tmp.path().join("plain");
    common::write_release(&plain, 8, FILES.bundle, FILES.index);
    let err = g.open().add(&g.keys, &plain, now()).unwrap_err();
    assert!(
        matches!(&err, Error::CustomConflict { why, .. } if why.contains("with a kernel part")),
        "{err}"
    );
    assert_eq!(listing(&g.repo), before);
}

#[test]
fn a_failure_at_any_step_of_adding_a_kernel_release_leaves_the_previous_repository() {
    let f = Fixture::new();
    f.open()
        .add(&f.keys, &f.release(1, b"b1", b"i1"), now())
        .unwrap();
    let dir = f.release_with_kernel(2, &FILES);
    let before = listing(&f.repo);
    // Steps: 4 target files, targets, snapshot, timestamp, the publish record.
    for fail_at in 0..8 {
        let mut repo = f.open();
        let mut calls = 0;
        repo.set_fault_hook(Box::new(move |_| {
            calls += 1;
            match calls > fail_at {
                true => Err(std::io::Error::other("injected failure")),
                false => Ok(()),
            }
        }));
        let err = repo.add(&f.keys, &dir, now()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "step {fail_at}: {err}");
        drop(repo);
        assert_eq!(listing(&f.repo), before, "step {fail_at}");
    }
    let published = Repository::open(&f.repo)
        .unwrap()
        .add(&f.keys, &dir, now())
        .unwrap();
    assert_eq!(published.added.len(), 4);
    f.open().verify(now()).unwrap();
}
