//! The attacks of TUF's threat model (../shared/REFERENCE.md section 2), each mounted against
//! the real `flipside install` (the production binary with its TUF client) over nginx or the
//! project's fault server on 127.0.0.1, with metadata forged by the repository's own keys
//! where the attack assumes a compromised key.
//!
//! Every test fills the inactive slot b with a sentinel first, lets the device trust a
//! baseline where the attack needs one (a `flipside check` against the honest repository:
//! versions to roll back from, a last trusted time), mounts one attack, and then asserts the
//! invariants:
//!
//! - the exit code names the failure class (updater/README.md);
//! - refused before any write (metadata, index, hardware id, rollback, size): slot b still
//!   holds the sentinel byte for byte, the GPT is byte-identical, slot b is P=0,T=0,S=0;
//! - refused while streaming (a chunk, the bundle): chunks verified before the bad one may
//!   have been written, so the slot's bytes are not asserted (only the bad chunk's range,
//!   which is never written); the slot is not bootable (P=0,T=0,S=0), slot a boots next,
//!   and the GPT is byte-identical because slot b already was P=0,T=0,S=0 before (the one
//!   write the install makes to the table before streaming sets exactly that; see
//!   `attack_tampered_chunk_disarms_a_bootable_inactive_slot_and_changes_nothing_else`);
//! - the trusted metadata store: after a metadata refusal every file (each role and
//!   `last-trusted-time`) is byte-identical, except a timestamp or snapshot verified before
//!   the refused role, which may only have become newer; after a refusal of data signed by
//!   valid metadata the role files are identical to the baseline (same versions) and the
//!   last trusted time only moved forward (a successful refresh records the device clock).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::nginx::Nginx;
use common::{code, Run, Setup, World, HARDWARE, SENTINEL};
use flipside_bootloader_hooks::{disk, BootAttrs, Disk, Slot, SlotLayout};
use flipside_repository::{InitSettings, KeyDir, Repository, RoleSettings};
use flipside_test_support::server::{Fault, Server};
use flipside_test_support::sha256_hex;
use flipside_test_support::tools::{copy_tree, run_ok};
use flipside_tuf::{canonical, Role, SigningKey};
use serde_json::Value;

fn attrs(p: u8, t: u8, s: bool) -> BootAttrs {
    BootAttrs::new(p, t, s).unwrap()
}

/// A world whose repository is served from a copy (`served`) that attacks modify, so that the
/// honest repository stays intact for the publisher's next steps.
struct Scene {
    w: World,
    served: PathBuf,
}

impl Scene {
    /// Releases 1 and 2 published, slot a runs release 1 (zeros in the slot: no delta, so the
    /// whole bundle streams), slot b holds the sentinel.
    fn new() -> Scene {
        Scene::with(Setup {
            running_image: false,
            ..Setup::default()
        })
    }

    fn with(setup: Setup) -> Scene {
        let w = World::new(setup);
        let served = w.tmp.path().join("served");
        let scene = Scene { w, served };
        scene.sync();
        scene
    }

    /// The served copy becomes the honest repository again.
    fn sync(&self) {
        let _ = std::fs::remove_dir_all(&self.served);
        std::fs::create_dir_all(&self.served).unwrap();
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(self.w.repo.join("."))
                .arg(&self.served),
        );
    }

    /// Serves the copy with nginx and points the device at it.
    fn nginx(&self) -> Nginx {
        let nginx = Nginx::start(&self.served);
        self.w.write_config(&[nginx.url()], 2);
        nginx
    }

    /// Serves the copy with the fault server and points the device at it.
    fn fault_server(&self) -> Server {
        let server = Server::start(&self.served);
        self.w.write_config(&[server.url()], 2);
        server
    }

    /// The device trusts the served repository as it is now (`flipside check`).
    fn baseline(&self) {
        self.w.run(&["check"]).expect(code::OK);
        assert!(self.store().contains_key("timestamp.json"));
    }

    fn keys(&self) -> KeyDir {
        KeyDir::new(&self.w.keys)
    }

    fn role_keys(&self, role: Role) -> Vec<SigningKey> {
        self.keys()
            .read_role(role)
            .unwrap()
            .into_iter()
            .map(|f| f.key)
            .collect()
    }

    fn repository(&self) -> Repository {
        Repository::open(&self.w.repo).unwrap()
    }

    fn served_meta(&self, name: &str) -> PathBuf {
        self.served.join("metadata").join(name)
    }

    /// The trusted metadata store: file name -> bytes.
    fn store(&self) -> BTreeMap<String, Vec<u8>> {
        let dir = self.w.state.join("metadata");
        let mut out = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                out.insert(
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                );
            }
        }
        out
    }

    /// The `signed.version` of a role in the store.
    fn stored_version(&self, role: &str) -> u64 {
        let bytes = &self.store()[&format!("{role}.json")];
        let v: Value = serde_json::from_slice(bytes).unwrap();
        v["signed"]["version"].as_u64().unwrap()
    }

    /// Forges the served `timestamp.json`: `edit` changes its `signed` object (whose version is
    /// raised by one first), then it is signed by `keys`.
    fn forge_timestamp(&self, keys: &[&SigningKey], edit: impl FnOnce(&mut Value)) {
        let path = self.served_meta("timestamp.json");
        let mut md = read_json(&path);
        bump(&mut md["signed"]);
        edit(&mut md["signed"]);
        sign(&mut md, keys);
        write_json(&path, &md);
    }

    /// Invariants before any change, to compare with afterwards.
    fn snapshot(&self) -> Before {
        Before {
            slot: self.w.slot_bytes(Slot::B),
            gpt: self.w.gpt_bytes(),
            store: self.store(),
        }
    }

    /// Refused before anything was written; the trusted metadata is unchanged, file by file
    /// (the last trusted time included) when `metadata_refused`, else role by role.
    fn assert_refused_before_write(
        &self,
        run: &Run,
        code: i32,
        before: &Before,
        metadata_refused: bool,
    ) {
        self.assert_not_armed(run, code, before);
        assert!(
            self.w.slot_bytes(Slot::B) == before.slot,
            "slot b changed although the attack was refused before any write"
        );
        self.assert_store(before, metadata_refused);
    }

    /// Refused while streaming: the slot is not bootable, the table unchanged.
    fn assert_refused_while_streaming(&self, run: &Run, code: i32, before: &Before) {
        self.assert_not_armed(run, code, before);
        self.assert_store(before, false);
    }

    fn assert_not_armed(&self, run: &Run, code: i32, before: &Before) {
        run.expect(code);
        // The refusal's reason, shown with `--nocapture`.
        eprintln!(
            "REFUSED {code}: {}",
            run.stderr.trim_end().lines().last().unwrap_or("")
        );
        let state = self.w.boot_state();
        assert_eq!(
            state.attrs(Slot::B),
            attrs(0, 0, false),
            "slot b is bootable"
        );
        assert_eq!(state.attrs(Slot::A), attrs(2, 0, true));
        assert_eq!(state.boots_next().unwrap(), Slot::A);
        assert!(self.w.gpt_bytes() == before.gpt, "the GPT changed");
    }

    fn assert_store(&self, before: &Before, metadata_refused: bool) {
        let now = self.store();
        if metadata_refused {
            // The refused role, those after it and the last trusted time are untouched; a
            // timestamp or snapshot that verified before the refusal is kept (each role is
            // persisted as soon as it verifies), so it may only have become newer.
            let earlier = ["timestamp.json", "snapshot.json"];
            assert_eq!(
                now.keys()
                    .filter(|n| !earlier.contains(&n.as_str()))
                    .collect::<Vec<_>>(),
                before
                    .store
                    .keys()
                    .filter(|n| !earlier.contains(&n.as_str()))
                    .collect::<Vec<_>>()
            );
            for (name, bytes) in &before.store {
                if earlier.contains(&name.as_str()) && now.get(name) != Some(bytes) {
                    assert!(
                        version_of(&now[name]) > version_of(bytes),
                        "the stored {name} changed without becoming newer"
                    );
                } else {
                    assert!(&now[name] == bytes, "the stored {name} changed");
                }
            }
        } else {
            for (name, bytes) in &before.store {
                if name == TIME_FILE {
                    assert!(
                        last_trusted_time(&now[name]) >= last_trusted_time(bytes),
                        "the last trusted time went back"
                    );
                } else {
                    assert!(&now[name] == bytes, "the stored {name} changed");
                }
            }
        }
    }
}

/// The store's file of the last trusted time.
const TIME_FILE: &str = "last-trusted-time";

fn version_of(bytes: &[u8]) -> u64 {
    let v: Value = serde_json::from_slice(bytes).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

/// What the invariants compare against.
struct Before {
    slot: Vec<u8>,
    gpt: Vec<u8>,
    store: BTreeMap<String, Vec<u8>>,
}

fn last_trusted_time(bytes: &[u8]) -> DateTime<Utc> {
    let v: Value = serde_json::from_slice(bytes).unwrap();
    v["last_trusted_time"].as_str().unwrap().parse().unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn bump(signed: &mut Value) {
    let v = signed["version"].as_u64().unwrap();
    signed["version"] = (v + 1).into();
}

/// Signs the canonical JSON of `md.signed` with every key, in order (duplicates kept: an
/// attacker controls the signature list).
fn sign(md: &mut Value, keys: &[&SigningKey]) {
    let message = canonical::to_vec(&md["signed"], "forged metadata").unwrap();
    let sigs: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::to_value(k.sign(&message)).unwrap())
        .collect();
    md["signatures"] = Value::Array(sigs);
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Rebuilds the world's repository with `settings` (e.g. a threshold of 2) and republishes
/// its releases; the device's pinned root becomes the new repository's first root.
fn rekey(w: &World, settings: &InitSettings) {
    std::fs::remove_dir_all(&w.repo).unwrap();
    std::fs::remove_dir_all(&w.keys).unwrap();
    let mut r = Repository::create(&w.repo).unwrap();
    let keys = KeyDir::new(&w.keys);
    r.init(&keys, settings, Utc::now()).unwrap();
    for built in w.releases.values() {
        r.add(&keys, &built.dir, Utc::now()).unwrap();
    }
    std::fs::copy(
        w.repo.join("metadata/1.root.json"),
        w.tmp.path().join("root.json"),
    )
    .unwrap();
}

/// The served path of a release's target file (`targets/<sha256>.<name>`).
fn served_target(s: &Scene, info: &flipside_contract::release::FileInfo) -> PathBuf {
    s.served
        .join("targets")
        .join(format!("{}.{}", info.sha256, info.name))
}

// ---------------------------------------------------------------------------------------------
// Arbitrary software

#[test]
fn attack_arbitrary_software_signed_by_unknown_key_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    // The attacker's own repository (own keys) publishing release 2 with a newer version.
    let evil_keys = s.w.tmp.path().join("evil-keys");
    let _ = std::fs::remove_dir_all(&s.served);
    let mut evil = Repository::create(&s.served).unwrap();
    evil.init(
        &KeyDir::new(&evil_keys),
        &InitSettings::default(),
        Utc::now(),
    )
    .unwrap();
    for _ in 0..3 {
        // Versions above the device's, so that no rollback check is what refuses it.
        evil.resign(&KeyDir::new(&evil_keys), &[Role::Targets], Utc::now())
            .unwrap();
    }
    evil.add(&KeyDir::new(&evil_keys), &s.w.release(2).dir, Utc::now())
        .unwrap();
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::SIGNATURE, &before, true);
}

#[test]
fn attack_arbitrary_software_flipped_byte_in_body_or_signature_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    s.repository().resign(&s.keys(), &[], Utc::now()).unwrap();
    s.sync();
    let before = s.snapshot();
    let path = s.served_meta("timestamp.json");
    let honest = std::fs::read(&path).unwrap();

    // One byte of the signed body: the expiry's last digit of the seconds.
    let text = String::from_utf8(honest.clone()).unwrap();
    let at = text.find("\"expires\"").unwrap();
    let z = at + text[at..].find('Z').unwrap();
    let mut body = honest.clone();
    body[z - 1] = if body[z - 1] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, &body).unwrap();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::SIGNATURE, &before, true);

    // One hex digit of the signature.
    let at = text.find("\"sig\"").unwrap();
    let q = at + 7 + text[at + 6..].find('"').unwrap();
    let mut sig = honest.clone();
    sig[q + 3] = if sig[q + 3] == b'a' { b'b' } else { b'a' };
    std::fs::write(&path, &sig).unwrap();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::SIGNATURE, &before, true);

    // The honest file goes through: the refusals above were about the flipped byte.
    std::fs::write(&path, &honest).unwrap();
    s.w.run(&["install"]).expect(code::OK);
}

/// Threshold 2 of 2 for timestamp: the attacker holds one of the two keys.
fn threshold_two_scene() -> Scene {
    let s = Scene::new();
    let mut settings = InitSettings::default();
    settings.roles.insert(
        Role::Timestamp,
        RoleSettings {
            keys: 2,
            threshold: 2,
            expiry_days: 1,
        },
    );
    rekey(&s.w, &settings);
    s.sync();
    s
}

#[test]
fn attack_arbitrary_software_one_signature_repeated_to_meet_threshold_refused() {
    let s = threshold_two_scene();
    let _nginx = s.nginx();
    s.baseline();
    let before = s.snapshot();
    let keys = s.role_keys(Role::Timestamp);
    assert_eq!(keys.len(), 2);
    // The same signature twice (tough CVE-2020-15093): one key counted once.
    s.forge_timestamp(&[&keys[0], &keys[0]], |_| {});
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::SIGNATURE, &before, true);
    assert!(run.stderr.contains("threshold") || run.stderr.contains("signature"));
}

#[test]
fn attack_key_compromise_below_threshold_refused() {
    let s = threshold_two_scene();
    let _nginx = s.nginx();
    s.baseline();
    let before = s.snapshot();
    let keys = s.role_keys(Role::Timestamp);
    s.forge_timestamp(&[&keys[1]], |_| {});
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::SIGNATURE, &before, true);
    // Both keys: accepted (the forgery was refused for the threshold alone).
    s.forge_timestamp(&[&keys[0], &keys[1]], |_| {});
    s.w.run(&["install"]).expect(code::OK);
}

#[test]
fn attack_arbitrary_software_foreign_bundle_refused_while_streaming() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    let before = s.snapshot();
    // The attacker's image (another build) at the path of release 2's bundle.
    let evil = common::make_image(&s.w.tmp.path().join("work"), 9, HARDWARE, 1 << 20);
    let evil = common::make_release(&s.w.tmp.path().join("work"), &evil, 9, HARDWARE);
    let info = &s.w.release(2).release.bundle;
    std::fs::copy(
        evil.dir.join(&evil.release.bundle.name),
        served_target(&s, info),
    )
    .unwrap();
    let run = s.w.run(&["install"]);
    s.assert_refused_while_streaming(&run, code::CHUNK_HASH, &before);
}

#[test]
fn attack_tampered_bundle_chunk_refused_before_the_chunk_is_written() {
    let s = Scene::new();
    let server = s.fault_server();
    s.baseline();
    let built = s.w.release(2).clone();
    let index = built.index();
    let victim = index.entries()[index.len() * 2 / 3];
    server.set_fault(
        ".bundle",
        Fault::Corrupt {
            offset: victim.frame_offset + victim.frame_length / 2,
        },
    );
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    s.assert_refused_while_streaming(&run, code::CHUNK_HASH, &before);
    let slot = s.w.slot_bytes(Slot::B);
    let r = victim.image_range();
    assert!(slot[r.start as usize..r.end as usize]
        .iter()
        .all(|&b| b == SENTINEL));
}

#[test]
fn attack_tampered_segment_is_refused_and_its_chunks_come_as_their_own_frames() {
    // A byte flipped inside a segment's frame, on every request: the chunk it spoils is refused
    // before its write (or the frame does not decode), the segment path stops, and the chunks
    // it had not placed come as their own, intact, frames: the slot ends up exactly the image.
    let s = Scene::with(Setup {
        running_image: false,
        segments: true,
        ..Setup::default()
    });
    let server = s.fault_server();
    s.baseline();
    let built = s.w.release(2).clone();
    let index = built.index();
    let segment = *index.segments().last().unwrap();
    server.set_fault(
        ".bundle",
        Fault::Corrupt {
            offset: segment.frame_offset + segment.frame_length / 2,
        },
    );
    let run = s.w.run(&["install"]);
    run.expect(code::OK)
        .complains(&["come as their own frames"]);
    let image = built.image_bytes();
    assert!(s.w.slot_bytes(Slot::B)[..image.len()] == image[..]);
    // Fewer bytes than the chunk frames, more than the segments alone.
    let fetched = run.result_field("fetched");
    assert!(
        fetched
            > index.bundle_length()
                - index.segment_area_start()
                - 8 * index.segments().len() as u64
    );
    assert!(fetched < index.bundle_length());
}

#[test]
fn attack_tampered_chunk_disarms_a_bootable_inactive_slot_and_changes_nothing_else() {
    // Slot b was a proven fallback (P=1, S=1): the install's first table write (P=0,T=0,S=0)
    // is legitimate; the GPT must be exactly the old one with that one change.
    let s = Scene::new();
    let server = s.fault_server();
    s.w.set_attrs(Slot::B, attrs(1, 0, true));
    s.baseline();
    let expected_gpt = {
        let copy = s.w.tmp.path().join("expected.img");
        std::fs::copy(&s.w.disk, &copy).unwrap();
        let mut d = Disk::open(&copy, true).unwrap();
        let (mut table, state) = disk::load(&mut d, &SlotLayout::default()).unwrap();
        disk::commit(
            &mut d,
            &mut table,
            &state.with_attrs(Slot::B, attrs(0, 0, false)),
        )
        .unwrap();
        drop(d);
        let all = std::fs::read(&copy).unwrap();
        [&all[..34 * 512], &all[all.len() - 33 * 512..]].concat()
    };
    let before_gpt = s.w.gpt_bytes();
    assert!(expected_gpt != before_gpt);
    let bundle = s.w.release(2).release.bundle.length;
    server.set_fault(".bundle", Fault::Corrupt { offset: bundle / 2 });
    let run = s.w.run(&["install"]);
    run.expect(code::CHUNK_HASH);
    let state = s.w.boot_state();
    assert_eq!(state.attrs(Slot::B), attrs(0, 0, false));
    assert_eq!(state.boots_next().unwrap(), Slot::A);
    assert!(
        s.w.gpt_bytes() == expected_gpt,
        "the GPT differs from P=0,T=0,S=0 on slot b alone"
    );

    // A metadata attack on the same disk is refused before the table is touched at all.
    s.w.set_attrs(Slot::B, attrs(1, 0, true));
    let gpt = s.w.gpt_bytes();
    let keys = s.role_keys(Role::Timestamp);
    s.forge_timestamp(&[&keys[0]], |t| {
        t["expires"] = "2001-01-01T00:00:00Z".into()
    });
    s.w.run(&["install"]).expect(code::EXPIRED);
    assert!(s.w.gpt_bytes() == gpt);
    assert_eq!(s.w.boot_state().attrs(Slot::B), attrs(1, 0, true));
}

#[test]
fn attack_tampered_index_refused_before_any_write() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    let before = s.snapshot();
    let info = s.w.release(2).release.index.clone();
    let path = served_target(&s, &info);
    let mut bytes = std::fs::read(&path).unwrap();
    // A chunk's hash inside the index.
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::CHUNK_HASH, &before, false);
}

#[test]
fn attack_wrong_target_index_of_another_release_refused_before_any_write() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    let before = s.snapshot();
    // Release 1's validly signed index served where release 2's is expected.
    let r1 = s.w.release(1).clone();
    std::fs::copy(
        r1.dir.join(&r1.release.index.name),
        served_target(&s, &s.w.release(2).release.index),
    )
    .unwrap();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::CHUNK_HASH, &before, false);
}

// ---------------------------------------------------------------------------------------------
// Rollback and freeze

#[test]
fn attack_freeze_stale_timestamp_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    // The attacker keeps the repository's state of today...
    let stale = s.w.tmp.path().join("stale");
    copy_tree(&s.served, &stale);
    // ...the publisher re-signs (a newer timestamp) and the device sees it.
    s.repository().resign(&s.keys(), &[], Utc::now()).unwrap();
    s.sync();
    s.baseline();
    let seen = s.stored_version("timestamp");
    let before = s.snapshot();
    // The mirror serves the stale, still unexpired and validly signed timestamp.
    std::fs::copy(
        stale.join("metadata/timestamp.json"),
        s.served_meta("timestamp.json"),
    )
    .unwrap();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::ROLLBACK, &before, true);
    assert_eq!(s.stored_version("timestamp"), seen);
}

#[test]
fn attack_rollback_snapshot_version_refused() {
    // A compromised (online) timestamp key points a new timestamp at an old snapshot.
    let s = Scene::new();
    let _nginx = s.nginx();
    let old_snapshot = read_json(&s.w.repo.join("metadata/timestamp.json"))["signed"]["meta"]
        ["snapshot.json"]
        .clone();
    s.repository().resign(&s.keys(), &[], Utc::now()).unwrap();
    s.sync();
    s.baseline();
    let before = s.snapshot();
    let keys = s.role_keys(Role::Timestamp);
    s.forge_timestamp(&[&keys[0]], |t| t["meta"]["snapshot.json"] = old_snapshot);
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::ROLLBACK, &before, true);
}

#[test]
fn attack_rollback_targets_version_refused() {
    // Compromised snapshot and timestamp keys offer an old targets version (release 1 only).
    let s = Scene::with(Setup {
        publish: vec![(1, HARDWARE)],
        running_image: false,
        ..Setup::default()
    });
    let _nginx = s.nginx();
    let old_targets_meta = {
        let ts = read_json(&s.w.repo.join("metadata/timestamp.json"));
        let v = ts["signed"]["meta"]["snapshot.json"]["version"]
            .as_u64()
            .unwrap();
        read_json(&s.w.repo.join(format!("metadata/{v}.snapshot.json")))["signed"]["meta"]
            ["targets.json"]
            .clone()
    };
    let built = common::make_release(
        &s.w.tmp.path().join("work"),
        &common::make_image(&s.w.tmp.path().join("work"), 2, HARDWARE, 3 << 20),
        2,
        HARDWARE,
    );
    s.repository()
        .add(&s.keys(), &built.dir, Utc::now())
        .unwrap();
    s.sync();
    s.baseline();
    let before = s.snapshot();
    // snapshot V+1 naming the old targets, timestamp V+1 naming that snapshot.
    let ts_path = s.served_meta("timestamp.json");
    let snap_version = read_json(&ts_path)["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let mut snap = read_json(&s.served_meta(&format!("{snap_version}.snapshot.json")));
    bump(&mut snap["signed"]);
    snap["signed"]["meta"]["targets.json"] = old_targets_meta;
    let snap_keys = s.role_keys(Role::Snapshot);
    sign(&mut snap, &[&snap_keys[0]]);
    let snap_bytes = serde_json::to_vec_pretty(&snap).unwrap();
    std::fs::write(
        s.served_meta(&format!("{}.snapshot.json", snap_version + 1)),
        &snap_bytes,
    )
    .unwrap();
    let ts_keys = s.role_keys(Role::Timestamp);
    s.forge_timestamp(&[&ts_keys[0]], |t| {
        t["meta"]["snapshot.json"] = serde_json::json!({
            "version": snap_version + 1,
            "length": snap_bytes.len(),
            "hashes": {"sha256": sha256_hex(&snap_bytes)},
        })
    });
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::ROLLBACK, &before, true);
}

#[test]
fn attack_rollback_metadata_version_field_missing_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    let before = s.snapshot();
    let keys = s.role_keys(Role::Timestamp);
    s.forge_timestamp(&[&keys[0]], |t| {
        t.as_object_mut().unwrap().remove("version");
    });
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::SIGNATURE, &before, true);
}

#[test]
fn attack_replayed_old_release_refused() {
    // The device runs release 2; the repository (validly signed, current) is made to offer
    // release 1 as the newest for this hardware: a downgrade.
    let s = Scene::with(Setup {
        publish: vec![(1, HARDWARE)],
        running: 2,
        running_image: false,
        ..Setup::default()
    });
    let _nginx = s.nginx();
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    // Nothing stored before: the refresh succeeds (the metadata is valid), the release is old.
    s.assert_refused_before_write(&run, code::ROLLBACK, &before, false);
}

#[test]
fn attack_indefinite_freeze_expired_metadata_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    let before = s.snapshot();
    let keys = s.role_keys(Role::Timestamp);
    let past = rfc3339(Utc::now() - chrono::TimeDelta::days(2));
    s.forge_timestamp(&[&keys[0]], |t| t["expires"] = past.into());
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::EXPIRED, &before, true);
}

#[test]
fn attack_indefinite_freeze_clock_set_back_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    // The device once trusted a time three days ahead; its clock was then reset (RTC battery,
    // spoofed NTP). The served metadata (timestamp valid one day) is valid by the clock alone.
    let later = Utc::now() + chrono::TimeDelta::days(3);
    std::fs::write(
        s.w.state.join("metadata").join(TIME_FILE),
        format!("{{\"last_trusted_time\": \"{}\"}}\n", rfc3339(later)),
    )
    .unwrap();
    let before = s.snapshot();
    s.repository().resign(&s.keys(), &[], Utc::now()).unwrap();
    s.sync();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::EXPIRED, &before, true);
}

// ---------------------------------------------------------------------------------------------
// Endless data and slow retrieval

#[test]
fn attack_endless_data_huge_timestamp_refused() {
    let s = Scene::new();
    let server = s.fault_server();
    s.baseline();
    let before = s.snapshot();
    server.set_fault("timestamp.json", Fault::Longer { extra: 64 << 20 });
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::TOO_LARGE, &before, true);
    // The client stopped at its cap rather than reading the 64 MiB.
    assert!(server.bytes_sent() < 32 << 20, "{}", server.bytes_sent());
}

#[test]
fn attack_endless_data_snapshot_longer_than_signed_refused() {
    let s = Scene::new();
    let server = s.fault_server();
    s.baseline();
    s.repository().resign(&s.keys(), &[], Utc::now()).unwrap();
    s.sync();
    let before = s.snapshot();
    server.set_fault(".snapshot.json", Fault::Longer { extra: 64 << 20 });
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::TOO_LARGE, &before, true);
    assert!(server.bytes_sent() < 32 << 20, "{}", server.bytes_sent());
}

#[test]
fn attack_endless_data_bundle_longer_than_signed_refused() {
    let s = Scene::new();
    let server = s.fault_server();
    s.baseline();
    server.set_fault(".bundle", Fault::Longer { extra: 64 << 20 });
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    s.assert_refused_while_streaming(&run, code::CHUNK_HASH, &before);
    // The whole signed bundle verifies, so every chunk was written; only the extra bytes
    // were refused, and the slot stayed unarmed.
    let bundle = s.w.release(2).release.bundle.length;
    assert!(server.bytes_sent() < bundle + (32 << 20));
}

/// A zstd frame of exactly `len` bytes that decompresses to `len / 4 * 128 KiB` (RLE blocks of
/// 128 KiB): a decompression bomb in the place of a chunk's frame.
fn zstd_bomb(len: usize) -> Vec<u8> {
    const BLOCK: u32 = 128 << 10;
    // Magic, frame header descriptor (no content size, no checksum, not single segment),
    // window descriptor 2^17.
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
    let rest = len - f.len();
    // `raw`: bytes of a final raw block (3-byte header + data) taking up what RLE blocks of 4
    // bytes cannot.
    let (rle, raw) = match rest % 4 {
        0 => (rest / 4, 0),
        r => (rest / 4 - 1, 4 + r),
    };
    for i in 0..rle {
        let last = u32::from(raw == 0 && i + 1 == rle);
        let header = (BLOCK << 3) | (1 << 1) | last;
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.push(0x41);
    }
    if raw > 0 {
        let size = (raw - 3) as u32;
        let header = (size << 3) | 1;
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend(std::iter::repeat_n(0x41, size as usize));
    }
    assert_eq!(f.len(), len);
    f
}

#[test]
fn attack_endless_data_decompression_bomb_in_a_frame_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    let built = s.w.release(2).clone();
    let index = built.index();
    let victim = *index
        .entries()
        .iter()
        .max_by_key(|e| e.frame_length)
        .unwrap();
    let bomb = zstd_bomb(victim.frame_length as usize);
    // Check the bomb with the zstd tool: it really inflates far beyond the chunk.
    let bomb_file = s.w.tmp.path().join("bomb.zst");
    std::fs::write(&bomb_file, &bomb).unwrap();
    let out = Command::new("zstd")
        .args(["-d", "-c"])
        .arg(&bomb_file)
        .output()
        .unwrap();
    assert!(
        out.stdout.len() as u64 > 100 * victim.length,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = served_target(&s, &built.release.bundle);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&bomb, victim.frame_offset).unwrap();
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    s.assert_refused_while_streaming(&run, code::CHUNK_HASH, &before);
    let slot = s.w.slot_bytes(Slot::B);
    let r = victim.image_range();
    assert!(slot[r.start as usize..r.end as usize]
        .iter()
        .all(|&b| b == SENTINEL));
}

#[test]
fn attack_endless_data_image_larger_than_slot_refused_before_any_write() {
    let mut s = Scene::with(Setup {
        publish: vec![(1, HARDWARE)],
        slot_mib: 8,
        running_image: false,
        ..Setup::default()
    });
    s.w.publish(2, HARDWARE, 12 << 20);
    s.sync();
    let _nginx = s.nginx();
    s.baseline();
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::TOO_LARGE, &before, false);
}

/// A partition table whose entries contradict each other: slot b starting 1 MiB inside the
/// running, proven slot a, or ending 2 sectors before it starts (a length that would wrap and
/// land the image elsewhere). Refused before the disk is written at all: every byte of it,
/// slot a, slot b, the data partition and both GPT copies, is identical afterwards.
#[test]
fn attack_hostile_gpt_entries_refused_before_any_write() {
    for (case, inside_a) in [("b inside a", true), ("b wraps", false)] {
        let s = Scene::new();
        let _nginx = s.nginx();
        let (a, b) = (s.w.slot_range(Slot::A), s.w.slot_range(Slot::B));
        let (a_first, b_first, b_last) = (a.start / 512, b.start / 512, b.end / 512 - 1);
        if inside_a {
            common::hostile_gpt::set_entry_lbas(&s.w.disk, 2, a_first + 2048, b_last);
        } else {
            common::hostile_gpt::set_entry_lbas(&s.w.disk, 2, b_first, b_first - 2);
        }
        let before = std::fs::read(&s.w.disk).unwrap();
        let run = s.w.run(&["install"]);
        run.expect(code::CONFIG);
        assert!(
            run.stderr.contains("cannot be trusted"),
            "{case}: {}",
            run.stderr
        );
        assert!(
            std::fs::read(&s.w.disk).unwrap() == before,
            "{case}: the disk changed"
        );
        // Every command that reads the boot state refuses the table the same way.
        for cmd in [&["status"][..], &["health"], &["rollback"]] {
            let run = s.w.run(cmd);
            run.expect(code::CONFIG);
            assert!(run.stderr.contains("cannot be trusted"), "{case} {cmd:?}");
        }
        assert!(
            std::fs::read(&s.w.disk).unwrap() == before,
            "{case}: the disk changed"
        );
    }
}

#[test]
fn attack_slow_retrieval_of_metadata_ends_with_network_error() {
    let s = Scene::new();
    let server = s.fault_server();
    s.baseline();
    s.w.write_config(&[server.url()], 1);
    let before = s.snapshot();
    server.set_fault("timestamp.json", Fault::Trickle);
    let started = Instant::now();
    let run = s.w.run(&["install"]);
    let took = started.elapsed();
    s.assert_refused_before_write(&run, code::NETWORK, &before, true);
    // low_speed_time_secs = 2, read timeout 5 s, 2 attempts: bounded well below a minute.
    assert!(took < Duration::from_secs(40), "{took:?}");
}

// ---------------------------------------------------------------------------------------------
// Mix-and-match

/// The version of `ROLE.json` that the metadata `doc` lists.
fn listed_version(doc: &Value, role: &str) -> u64 {
    doc["signed"]["meta"][format!("{role}.json")]["version"]
        .as_u64()
        .unwrap()
}

/// Serves version `version - 1` of `ROLE.json` (validly signed, but older) under version
/// `version`'s consistent-snapshot name.
fn serve_previous_as(s: &Scene, role: &str, version: u64) {
    std::fs::copy(
        s.served_meta(&format!("{}.{role}.json", version - 1)),
        s.served_meta(&format!("{version}.{role}.json")),
    )
    .unwrap();
}

#[test]
fn attack_mix_and_match_snapshot_of_another_version_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    s.repository().resign(&s.keys(), &[], Utc::now()).unwrap();
    s.sync();
    let before = s.snapshot();
    // The new timestamp, with the previous snapshot's (validly signed) content under the new
    // snapshot's name.
    let ts = read_json(&s.served_meta("timestamp.json"));
    serve_previous_as(&s, "snapshot", listed_version(&ts, "snapshot"));
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::SIGNATURE, &before, true);
}

#[test]
fn attack_mix_and_match_targets_of_another_version_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    s.repository()
        .resign(&s.keys(), &[Role::Targets], Utc::now())
        .unwrap();
    s.sync();
    let before = s.snapshot();
    let ts = read_json(&s.served_meta("timestamp.json"));
    let sv = listed_version(&ts, "snapshot");
    let snap = read_json(&s.served_meta(&format!("{sv}.snapshot.json")));
    serve_previous_as(&s, "targets", listed_version(&snap, "targets"));
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::SIGNATURE, &before, true);
}

// ---------------------------------------------------------------------------------------------
// Fast-forward, key compromise, mirrors, wrong software, TOCTOU

#[test]
fn attack_fast_forward_recovered_after_timestamp_key_rotation() {
    let s = Scene::new();
    let _nginx = s.nginx();
    s.baseline();
    // The compromised timestamp key inflates the version; the device cannot tell.
    let keys = s.role_keys(Role::Timestamp);
    s.forge_timestamp(&[&keys[0]], |t| t["version"] = 1_000_000.into());
    s.w.run(&["check"]).expect(code::OK);
    assert_eq!(s.stored_version("timestamp"), 1_000_000);
    // The honest repository's next timestamp now looks like a rollback.
    s.repository().resign(&s.keys(), &[], Utc::now()).unwrap();
    s.sync();
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::ROLLBACK, &before, true);
    // Recovery: the publisher rotates the timestamp key; the device drops the inflated
    // timestamp with the old key and installs.
    s.repository()
        .rotate_key(&s.keys(), Role::Timestamp, Utc::now())
        .unwrap();
    s.sync();
    s.w.run(&["install"]).expect(code::OK);
    assert!(s.stored_version("timestamp") < 1_000_000);
    let image = s.w.release(2).image_bytes();
    assert!(s.w.read_slot(Slot::B, image.len() as u64) == image);
}

#[test]
fn attack_key_compromise_revoked_key_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    let old = s.role_keys(Role::Timestamp).remove(0);
    s.repository()
        .rotate_key(&s.keys(), Role::Timestamp, Utc::now())
        .unwrap();
    s.sync();
    s.baseline();
    assert_eq!(s.stored_version("root"), 2);
    let before = s.snapshot();
    // The revoked key signs a newer timestamp.
    s.forge_timestamp(&[&old], |_| {});
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::SIGNATURE, &before, true);
}

#[test]
fn attack_key_compromise_root_chain_accepted_new_root_signed_only_by_new_keys_refused() {
    let s = Scene::new();
    let _nginx = s.nginx();
    // Root 1 -> 2 -> 3 by two root key rotations: the device (pinned root 1) walks the chain.
    for _ in 0..2 {
        s.repository()
            .rotate_key(&s.keys(), Role::Root, Utc::now())
            .unwrap();
    }
    s.sync();
    s.baseline();
    assert_eq!(s.stored_version("root"), 3);
    let before = s.snapshot();
    // Root 4 with the attacker's root key, signed by that key alone.
    let evil = SigningKey::generate();
    let mut root = read_json(&s.served_meta("3.root.json"));
    bump(&mut root["signed"]);
    let id = evil.key_id().as_str().to_string();
    root["signed"]["keys"][&id] = serde_json::to_value(evil.public()).unwrap();
    root["signed"]["roles"]["root"]["keyids"] = serde_json::json!([id]);
    sign(&mut root, &[&evil]);
    write_json(&s.served_meta("4.root.json"), &root);
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::SIGNATURE, &before, true);
}

#[test]
fn attack_malicious_mirror_garbage_falls_back_to_the_next_mirror() {
    let s = Scene::new();
    let good = Nginx::start(&s.w.repo);
    let bad = Server::start(&s.served);
    s.w.write_config(&[bad.url(), good.url()], 2);
    s.baseline();
    // The first mirror serves a tampered chunk; the second is honest.
    bad.set_fault(
        ".bundle",
        Fault::Corrupt {
            offset: s.w.release(2).release.bundle.length / 2,
        },
    );
    let run = s.w.run(&["install"]);
    run.expect(code::OK);
    let image = s.w.release(2).image_bytes();
    assert!(s.w.read_slot(Slot::B, image.len() as u64) == image);
}

#[test]
fn attack_malicious_mirror_garbage_metadata_falls_back_to_the_next_mirror() {
    let s = Scene::new();
    let good = Nginx::start(&s.w.repo);
    let bad = Server::start(&s.served);
    s.w.write_config(&[bad.url(), good.url()], 2);
    s.baseline();
    s.repository().resign(&s.keys(), &[], Utc::now()).unwrap();
    s.sync();
    // The first mirror flips a bit in the timestamp; the second is honest.
    bad.set_fault("timestamp.json", Fault::Corrupt { offset: 100 });
    let run = s.w.run(&["install"]);
    run.expect(code::OK);
    let image = s.w.release(2).image_bytes();
    assert!(s.w.read_slot(Slot::B, image.len() as u64) == image);
}

#[test]
fn attack_malicious_mirror_stale_metadata_falls_back_to_the_next_mirror() {
    // The first mirror froze at an old repository state; the second is current.
    let s = Scene::new();
    let stale = Nginx::start(&s.served);
    let good = Nginx::start(&s.w.repo);
    s.repository()
        .resign(&s.keys(), &[Role::Targets], Utc::now())
        .unwrap();
    s.w.write_config(&[good.url()], 2);
    s.baseline();
    s.w.write_config(&[stale.url(), good.url()], 2);
    let run = s.w.run(&["install"]);
    run.expect(code::OK);
    assert!(run.stderr.contains("rollback"), "{}", run.stderr);
    let image = s.w.release(2).image_bytes();
    assert!(s.w.read_slot(Slot::B, image.len() as u64) == image);
}

#[test]
fn attack_malicious_mirrors_all_bad_refused_without_arming() {
    let s = Scene::new();
    let a = Server::start(&s.served);
    let b = Server::start(&s.served);
    s.w.write_config(&[a.url(), b.url()], 2);
    s.baseline();
    let index = s.w.release(2).release.index.length;
    a.set_fault(".index", Fault::Corrupt { offset: index / 2 });
    b.set_fault(".index", Fault::Corrupt { offset: index / 3 });
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::CHUNK_HASH, &before, false);
}

#[test]
fn attack_malicious_mirror_stale_metadata_refused_without_write() {
    // A single mirror replays an old repository state to a device that has seen a newer one.
    let s = Scene::new();
    let _nginx = s.nginx();
    let stale = s.w.tmp.path().join("stale");
    copy_tree(&s.served, &stale);
    s.repository()
        .resign(&s.keys(), &[Role::Targets], Utc::now())
        .unwrap();
    s.sync();
    s.baseline();
    let before = s.snapshot();
    std::fs::remove_dir_all(&s.served).unwrap();
    std::fs::rename(&stale, &s.served).unwrap();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::ROLLBACK, &before, true);
}

#[test]
fn attack_wrong_hardware_id_refused_before_any_write() {
    // The only release is a valid image for another board.
    let s = Scene::with(Setup {
        publish: vec![(2, "other-board")],
        running_image: false,
        ..Setup::default()
    });
    let _nginx = s.nginx();
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    s.assert_refused_before_write(&run, code::INCOMPATIBLE, &before, false);
}

#[test]
fn attack_wrong_hardware_id_newer_release_for_another_board_never_installed() {
    // A newer release for another board next to this board's current one: up to date.
    let s = Scene::with(Setup {
        publish: vec![(1, HARDWARE), (2, "other-board")],
        running_image: false,
        ..Setup::default()
    });
    let _nginx = s.nginx();
    s.baseline();
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    run.expect(code::OK);
    assert!(run.stdout.contains("up to date"), "{}", run.stdout);
    assert!(s.w.slot_bytes(Slot::B) == before.slot);
    assert!(s.w.gpt_bytes() == before.gpt);
    assert_eq!(s.w.boot_state().attrs(Slot::B), attrs(0, 0, false));
}

#[test]
fn attack_toctou_bundle_changed_between_requests_refused() {
    // The first response is honest but breaks off; the resumed Range request gets other
    // bytes. Each chunk is checked as received, and the slot is read back before arming.
    let s = Scene::new();
    let server = s.fault_server();
    s.baseline();
    let bundle = s.w.release(2).release.bundle.length;
    server.set_fault(
        ".bundle",
        Fault::CutOnceThenCorrupt {
            after: bundle / 3,
            offset: bundle * 2 / 3,
        },
    );
    let before = s.snapshot();
    let run = s.w.run(&["install"]);
    s.assert_refused_while_streaming(&run, code::CHUNK_HASH, &before);
    assert!(server.requests().len() >= 2);
}

// ---------------------------------------------------------------------------------------------
// 64-bit offsets: a slot beyond 4 GiB in a sparse disk image

#[test]
fn attack_tampered_tail_chunk_in_slot_beyond_4gib_refused_and_not_armed() {
    let s = Scene::new();
    // A sparse disk: root-a, 4,100 MiB of padding, root-b (so every write to slot b is at an
    // offset above 2^32), then the backup GPT near 4.2 GB.
    let w = &s.w;
    std::fs::remove_file(&w.disk).unwrap();
    let f = std::fs::File::create(&w.disk).unwrap();
    f.set_len((16 + 4100 + 16 + 4) << 20).unwrap();
    drop(f);
    run_ok(
        Command::new("sgdisk")
            .arg("-o")
            .args([
                "-n",
                "1:2048:+16M",
                "-c",
                "1:root-a",
                "-n",
                "2:0:+4100M",
                "-c",
                "2:pad",
                "-n",
                "3:0:+16M",
                "-c",
                "3:root-b",
            ])
            .arg(&w.disk),
    );
    let range = w.slot_range(Slot::B);
    assert!(range.start > 1 << 32, "{range:?}");
    w.fill_slot(Slot::B, SENTINEL);
    w.set_attrs(Slot::A, attrs(2, 0, true));
    w.set_attrs(Slot::B, attrs(0, 0, false));
    let server = s.fault_server();
    s.baseline();
    let gpt = sparse_gpt(&w.disk);

    // The last chunk of the bundle is tampered.
    let built = w.release(2).clone();
    let index = built.index();
    let tail = *index.entries().last().unwrap();
    server.set_fault(
        ".bundle",
        Fault::Corrupt {
            offset: tail.frame_offset + tail.frame_length - 1,
        },
    );
    let run = w.run(&["install"]);
    run.expect(code::CHUNK_HASH);
    let state = w.boot_state();
    assert_eq!(state.attrs(Slot::B), attrs(0, 0, false));
    assert_eq!(state.boots_next().unwrap(), Slot::A);
    assert!(sparse_gpt(&w.disk) == gpt, "the GPT changed");
    let slot = w.read_slot(Slot::B, tail.image_range().end);
    assert!(slot[tail.image_range().start as usize..]
        .iter()
        .all(|&b| b == SENTINEL));

    // The honest bundle installs at that offset (the offsets really are 64-bit).
    server.set_fault(".bundle", Fault::None);
    w.run(&["install"]).expect(code::OK);
    let image = built.image_bytes();
    assert!(w.read_slot(Slot::B, image.len() as u64) == image);
}

/// Primary and backup GPT areas of a large sparse disk, without reading the whole file.
fn sparse_gpt(path: &Path) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut head = vec![0u8; 34 * 512];
    f.read_exact_at(&mut head, 0).unwrap();
    let mut tail = vec![0u8; 33 * 512];
    f.read_exact_at(&mut tail, len - 33 * 512).unwrap();
    [head, tail].concat()
}
