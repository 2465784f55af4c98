//! A unit test per install step, over a repository in memory ([`MemorySource`]) and a GPT disk
//! in memory ([`MemoryDisk`]; the table made once by sgdisk): each step is run after the steps
//! it depends on, and what it leaves on the disk and in the state directory is checked.

use std::ops::ControlFlow;
use std::path::Path;
use std::process::Command;

use flipside_bootloader_hooks::{disk, BootAttrs, Disk, Slot};
use flipside_bundle::{write_bundle, BundleParams};
use flipside_contract::arch::Architecture;
use flipside_contract::index::{ChunkIndex, ChunkerParams};
use flipside_contract::release::{TargetCustom, TargetKind, CUSTOM_KEY, RELEASE_FORMAT};

use super::parts::Counts;
use super::steps::{refuse, Cleared, Run};
use super::InstallOutcome;
use crate::config::Config;
use crate::device::{Device, MemoryDisk, Readback, Region};
use crate::error::Error;
use crate::floor::Floor;
use crate::plan::ChunkSource;
use crate::record::{Event, StateDir};
use crate::select::{Candidate, Downgrade};
use crate::source::memory::MemorySource;
use crate::system::Installed;

const IMAGE_LEN: usize = 256 << 10;

/// A release built from an image: its bundle, its index and their targets' fields.
struct Release {
    image: Vec<u8>,
    index: ChunkIndex,
}

/// The world of one test: a configuration, a disk with slot a running release 1 (proven), a
/// repository with release 2.
struct World {
    tmp: tempfile::TempDir,
    config: Config,
    device: Device<MemoryDisk>,
    source: MemorySource,
    release: Release,
}

fn image(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..IMAGE_LEN)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

fn custom(kind: TargetKind, version: u64, image: &[u8], index: &ChunkIndex) -> TargetCustom {
    TargetCustom {
        format: RELEASE_FORMAT,
        kind,
        name: "kiosk".into(),
        version,
        display_version: format!("1.{version}"),
        hardware_id: "pc".into(),
        architecture: Architecture::HOST,
        filesystem: "squashfs".into(),
        image_length: image.len() as u64,
        image_sha256: hex::encode(index.image_sha256()),
        index_target: format!("kiosk-{version}.index"),
        bundle_target: format!("kiosk-{version}.bundle"),
        kernel: None,
        allow_rollback: false,
        channels: Vec::new(),
        rollout: None,
    }
}

/// Publishes release `version` of `image` into `source`, the bundle with segments when
/// `segments`.
fn publish_with(
    dir: &Path,
    source: &mut MemorySource,
    version: u64,
    image: Vec<u8>,
    segments: bool,
) -> Release {
    let path = dir.join(format!("image-{version}"));
    std::fs::write(&path, &image).unwrap();
    let bundle = dir.join(format!("kiosk-{version}.bundle"));
    let params = BundleParams {
        chunker: ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        },
        zstd_level: 1,
        threads: 1,
        dictionary_length: 0,
        // The chunk frames' path unless asked; `segments_*` tests publish segments.
        segments,
    };
    let index = write_bundle(&path, &bundle, &params).unwrap();
    for kind in [TargetKind::Bundle, TargetKind::Index] {
        let c = custom(kind, version, &image, &index);
        let (name, bytes) = match kind {
            TargetKind::Bundle => (c.bundle_target.clone(), std::fs::read(&bundle).unwrap()),
            _ => (c.index_target.clone(), index.encode()),
        };
        source.add(&name, bytes, serde_json::json!({ CUSTOM_KEY: c }));
    }
    Release { image, index }
}

/// A GPT disk image: root-a and root-b of 1 MiB; slot a proven and preferred.
fn disk_bytes(dir: &Path) -> Vec<u8> {
    let path = dir.join("disk.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let made = Command::new("sgdisk")
        .args([
            "-o",
            "-n",
            "1:2048:+1M",
            "-c",
            "1:root-a",
            "-n",
            "2:0:+1M",
            "-c",
            "2:root-b",
        ])
        .arg(&path)
        .output()
        .expect("sgdisk (package gdisk) runs");
    assert!(made.status.success(), "{made:?}");
    let mut medium = MemoryDisk::new(std::fs::read(&path).unwrap());
    let mut d = Disk::new("memory", &mut medium);
    let layout = Default::default();
    let (mut table, state) = disk::load(&mut d, &layout).unwrap();
    let proven = state.with_attrs(Slot::A, BootAttrs::new(2, 0, true).unwrap());
    disk::commit(&mut d, &mut table, &proven).unwrap();
    medium.bytes().to_vec()
}

impl World {
    fn new() -> World {
        World::published(false)
    }

    /// A world whose release has segments.
    fn with_segments() -> World {
        World::published(true)
    }

    fn published(segments: bool) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let text = format!(
            "[repository]\nmirrors = [\"{0}/repo\"]\ntrusted_root = \"{0}/root.json\"\n\
             [device]\ndisk = \"{0}/disk.img\"\nstate_dir = \"{0}/state\"\n\
             run_dir = \"{0}/run\"\n\
             machine_id = \"{0}/machine-id\"\n",
            tmp.path().display()
        );
        let config = Config::parse(&text, &tmp.path().join("config.toml")).unwrap();
        let medium = MemoryDisk::new(disk_bytes(tmp.path()));
        let device = Device::load(medium, &config.device, true).unwrap();
        let mut source = MemorySource::new();
        let release = publish_with(tmp.path(), &mut source, 2, image(2), segments);
        World {
            tmp,
            config,
            device,
            source,
            release,
        }
    }

    fn run(&mut self) -> Run<'_, MemoryDisk> {
        let installed = Installed {
            name: "kiosk".into(),
            version: 1,
            display_version: "1.1".into(),
            hardware_id: "pc".into(),
        };
        Run::new(
            &self.config,
            &mut self.device,
            &mut self.source,
            Slot::A,
            installed,
        )
    }

    fn state(&self) -> StateDir {
        StateDir::new(&self.config.device.state_dir)
    }

    /// The boot state on the medium, read again.
    fn on_disk(&self) -> flipside_bootloader_hooks::BootState {
        let medium = self.device.block().clone();
        Device::load(medium, &self.config.device, false)
            .unwrap()
            .state()
            .clone()
    }

    fn slot_bytes(&mut self, slot: Slot, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.device.read_slot(slot, 0, &mut buf).unwrap();
        buf
    }
}

/// Steps 2 and 3: the chosen release and its parts.
fn decided(run: &mut Run<'_, MemoryDisk>) -> (Candidate, super::parts::Parts) {
    let ControlFlow::Continue(chosen) = run.decide(Downgrade::Refuse).unwrap() else {
        panic!("release 2 is newer than 1");
    };
    let parts = run.fetch_index(&chosen).unwrap();
    (chosen, parts)
}

/// Steps 2 to 6.
fn placed(run: &mut Run<'_, MemoryDisk>) -> (Candidate, super::parts::Parts, Counts) {
    let (chosen, parts) = decided(run);
    let Cleared {
        resume,
        mut checkpoint,
    } = run.clear(&chosen).unwrap();
    let planned = run.plan(&parts.root, resume).unwrap();
    let counts = run.place(&parts.root, planned, &mut checkpoint).unwrap();
    (chosen, parts, counts)
}

#[test]
fn refuse_a_pending_trial_before_anything_is_fetched() {
    let mut w = World::new();
    refuse(&w.device, Slot::B).unwrap();
    let trial = w
        .device
        .state()
        .with_attrs(Slot::A, BootAttrs::new(2, 3, false).unwrap());
    w.device.commit(&trial).unwrap();
    let before = w.device.block().clone();
    let e = refuse(&w.device, Slot::B).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Boot {
                source: flipside_bootloader_hooks::Error::TrialPending { .. }
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        w.device.block().bytes(),
        before.bytes(),
        "a dry run writes nothing"
    );
}

#[test]
fn decide_chooses_the_newer_release_and_keeps_the_floor() {
    let mut w = World::new();
    let (chosen, _) = decided(&mut w.run());
    assert_eq!(chosen.custom.version, 2);
    assert_eq!(chosen.bundle.name.as_str(), "kiosk-2.bundle");
    // A floor above the release refuses it, whatever the device is told.
    w.state().set_floor(Floor { version: 3 }).unwrap();
    let e = w.run().decide(Downgrade::Allow).unwrap_err();
    assert!(matches!(e, Error::BelowFloor { .. }), "{e:?}");
    // Nothing newer: up to date.
    w.state().set_floor(Floor { version: 2 }).unwrap();
    let mut run = w.run();
    run.installed.version = 2;
    let flow = run.decide(Downgrade::Refuse).unwrap();
    assert!(matches!(flow, ControlFlow::Break(InstallOutcome::UpToDate)));
}

#[test]
fn fetch_index_checks_the_index_and_writes_nothing() {
    let mut w = World::new();
    let before = w.device.block().clone();
    let mut run = w.run();
    let (_, parts) = decided(&mut run);
    assert!(parts.kernel.is_none(), "this disk has no kernel partitions");
    assert_eq!(parts.root.index, w.release.index);
    assert_eq!(parts.root.region, Region::from(Slot::B));
    assert_eq!(w.device.block().bytes(), before.bytes());
    // An index that describes another image is refused.
    let mut run = w.run();
    let ControlFlow::Continue(mut chosen) = run.decide(Downgrade::Refuse).unwrap() else {
        panic!()
    };
    chosen.custom.image_sha256 = "00".repeat(32);
    let e = run.fetch_index(&chosen).err().unwrap();
    assert!(matches!(e, Error::IndexMismatch { .. }), "{e:?}");
    // An image larger than the slot is refused before its index is fetched.
    chosen.custom.image_length = 2 << 20;
    let fetched = w.source.fetched.borrow().len();
    let e = w.run().fetch_index(&chosen).err().unwrap();
    assert!(matches!(e, Error::SlotTooSmall { .. }), "{e:?}");
    assert_eq!(w.source.fetched.borrow().len(), fetched);
}

#[test]
fn clear_makes_the_slot_unbootable_then_journals() {
    let mut w = World::new();
    let armed = w
        .device
        .state()
        .with_attrs(Slot::B, BootAttrs::new(1, 0, true).unwrap());
    w.device.commit(&armed).unwrap();
    let mut run = w.run();
    let (chosen, _) = decided(&mut run);
    let cleared = run.clear(&chosen).unwrap();
    assert!(!cleared.resume, "nothing of this image can be in the slot");
    assert!(w.on_disk().slot(Slot::B).attrs.is_cleared());
    let journal = w.state().journal().unwrap().unwrap();
    assert_eq!((journal.slot.as_str(), journal.version), ("b", 2));
    // A second attempt after an interruption resumes.
    let mut run = w.run();
    assert!(run.clear(&chosen).unwrap().resume);
}

#[test]
fn plan_downloads_copies_or_keeps() {
    let mut w = World::new();
    let len = w.release.image.len();
    let mut run = w.run();
    let (chosen, parts) = decided(&mut run);
    let fresh = run.plan(&parts.root, false).unwrap().sources;
    assert!(
        fresh.iter().all(|&s| s == ChunkSource::Fetch),
        "no seed, nothing kept"
    );
    // The running slot holds the same image and its index is stored: every chunk is a copy.
    let image = w.release.image.clone();
    w.device.write_slot(Slot::A, 0, &image).unwrap();
    let state = w.state();
    let index = w.release.index.encode();
    let record = crate::record::SlotRecord {
        name: "kiosk".into(),
        version: 1,
        display_version: "1.1".into(),
        hardware_id: "pc".into(),
        image_length: len as u64,
        image_sha256: chosen.custom.image_sha256.clone(),
        installed_at: chrono::Utc::now(),
        kernel: None,
        allow_rollback: false,
    };
    state.set_slot(Slot::A, &record, &index, None).unwrap();
    let copies = w.run().plan(&parts.root, false).unwrap().sources;
    assert!(copies.iter().all(|s| matches!(s, ChunkSource::Copy { .. })));
    // The slot already holds the image (an interrupted install): every chunk is kept.
    w.device.write_slot(Slot::B, 0, &image).unwrap();
    let kept = w.run().plan(&parts.root, true).unwrap().sources;
    assert!(kept.iter().all(|&s| s == ChunkSource::Present));
}

#[test]
fn place_streams_verified_chunks_and_records_the_durable_mark() {
    let mut w = World::new();
    let (_, _, counts) = placed(&mut w.run());
    let len = w.release.image.len();
    assert_eq!(w.slot_bytes(Slot::B, len), w.release.image);
    assert_eq!(
        counts.fetched,
        w.release.index.bundle_length(),
        "one coalesced request"
    );
    assert_eq!(w.source.opened.borrow().len(), 1);
    assert!(w.device.block().syncs() > 0);
    let journal = w.state().journal().unwrap().unwrap();
    assert_eq!(journal.synced.get("root"), Some(&(len as u64)));
}

#[test]
fn segments_carry_a_full_install_in_one_request_of_fewer_bytes() {
    let mut w = World::with_segments();
    let segments = w.release.index.segments().to_vec();
    assert_eq!(segments.len(), 1, "a small image is one segment");
    let (_, _, counts) = placed(&mut w.run());
    let len = w.release.image.len();
    assert_eq!(w.slot_bytes(Slot::B, len), w.release.image);
    let opened = w.source.opened.borrow().clone();
    assert_eq!(opened, [(0, segments[0].frame_range())]);
    assert_eq!(counts.fetched, segments[0].frame_length);
    assert!(counts.fetched < w.release.index.delta_area_start());
    let journal = w.state().journal().unwrap().unwrap();
    assert_eq!(journal.synced.get("root"), Some(&(len as u64)));
}

#[test]
fn segments_that_do_not_verify_fall_back_to_the_chunk_frames() {
    let segment = World::with_segments().release.index.segments()[0];
    // A byte of the segment's frame flipped in the middle (a bad decode or a bad chunk), at
    // its last byte (the last chunk), or in its magic (no decoder accepts it): every case ends
    // with the image in the slot, what the segment did not place fetched as chunk frames.
    let frame = segment.frame_range();
    for at in [
        frame.start + frame.end / 2 - frame.start / 2,
        frame.end - 1,
        frame.start,
    ] {
        let mut w = World::with_segments();
        w.source.damaged_on.insert(0, at);
        let (_, _, counts) = placed(&mut w.run());
        let len = w.release.image.len();
        assert_eq!(
            w.slot_bytes(Slot::B, len),
            w.release.image,
            "flipped at {at}"
        );
        let opened = w.source.opened.borrow().clone();
        assert_eq!(opened[0], (0, frame.clone()));
        assert!(opened.len() >= 2, "{opened:?}");
        assert!(opened[1..]
            .iter()
            .all(|(_, r)| r.end <= segment.frame_offset));
        assert!(counts.fetched > 0);
    }
}

#[test]
fn place_fails_over_to_the_next_mirror() {
    let mut w = World::new();
    w.source.mirrors = 2;
    w.source.missing_on.insert(0);
    placed(&mut w.run());
    let len = w.release.image.len();
    assert_eq!(w.slot_bytes(Slot::B, len), w.release.image);
    let mirrors: Vec<usize> = w.source.opened.borrow().iter().map(|(m, _)| *m).collect();
    assert_eq!(mirrors, [0, 1], "404 excludes mirror 0 at once");
}

#[test]
fn place_names_the_url_of_a_chunk_that_does_not_verify() {
    let mut w = World::new();
    w.source.damaged_on.insert(0, 100);
    let mut run = w.run();
    let (chosen, parts) = decided(&mut run);
    let mut cleared = run.clear(&chosen).unwrap();
    let planned = run.plan(&parts.root, false).unwrap();
    let e = run
        .place(&parts.root, planned, &mut cleared.checkpoint)
        .unwrap_err();
    match e {
        Error::Chunk { url, target, .. } => {
            assert_eq!(url, "memory-0/targets/kiosk-2.bundle");
            assert_eq!(target, "kiosk-2.bundle");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn read_back_checks_what_reached_the_disk() {
    let mut w = World::new();
    let mut run = w.run();
    let (_, parts, _) = placed(&mut run);
    assert_eq!(run.read_back(&parts.root).unwrap(), Readback::Direct);
    run.device.write_slot(Slot::B, 5, b"x").unwrap();
    let e = run.read_back(&parts.root).unwrap_err();
    assert!(matches!(e, Error::ImageHash { .. }), "{e:?}");
}

#[test]
fn arm_gives_the_slot_its_trial_boots() {
    let mut w = World::new();
    let mut run = w.run();
    let (chosen, _) = decided(&mut run);
    run.clear(&chosen).unwrap();
    run.arm().unwrap();
    let b = w.on_disk().slot(Slot::B).attrs;
    assert!(b.is_trial_armed(), "{b:?}");
    assert_eq!(b.tries(), w.config.update.trial_boots);
    assert!(w.on_disk().slot(Slot::A).attrs.priority() < b.priority());
}

#[test]
fn record_says_the_slot_is_complete_and_ends_the_journal() {
    let mut w = World::new();
    let mut run = w.run();
    let (chosen, parts, counts) = placed(&mut run);
    let report = run
        .record(&chosen, &parts, counts, Readback::Direct)
        .unwrap();
    assert_eq!((report.slot, report.version), (Slot::B, 2));
    assert_eq!(report.fetched, counts.fetched);
    let state = w.state();
    assert_eq!(state.journal().unwrap(), None);
    assert_eq!(state.slot_record(Slot::B).unwrap().unwrap().version, 2);
    assert_eq!(
        state.slot_index(Slot::B, 1 << 20).unwrap(),
        Some(parts.root.index_bytes.clone())
    );
    assert_eq!(state.last().unwrap().unwrap().event, Event::Installed);
}

#[test]
fn the_steps_in_order_install_and_a_rerun_reuses_the_slot() {
    let mut w = World::new();
    let InstallOutcome::Installed(first) = w.run().run(Downgrade::Refuse).unwrap() else {
        panic!()
    };
    assert_eq!(
        (first.fetched > 0, first.reused, first.copied),
        (true, 0, 0)
    );
    assert!(w.on_disk().slot(Slot::B).attrs.is_trial_armed());
    // The same image again after it was rejected: nothing is downloaded.
    let rejected = w
        .device
        .state()
        .with_attrs(Slot::B, BootAttrs::new(0, 0, false).unwrap());
    w.device.commit(&rejected).unwrap();
    let InstallOutcome::Installed(again) = w.run().run(Downgrade::Refuse).unwrap() else {
        panic!()
    };
    assert_eq!(
        (again.fetched, again.reused),
        (0, w.release.image.len() as u64)
    );
    drop(w.tmp);
}
