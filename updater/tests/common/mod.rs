//! Shared helpers of the integration tests: real repositories (mksquashfs images, bundles by
//! `flipside-bundle`, published by `flipside-repository`), GPT disk images made by sgdisk, a
//! simulated running system (cmdline, system.json), the `flipside` binary run as a process
//! (with the TUF client), and servers (ours in `flipside_test_support::server`, nginx in
//! `nginx`).

#![allow(dead_code)]

pub mod collector;
pub mod garage;
pub mod nginx;

#[path = "../../../bootloader-hooks/tests/common/hostile_gpt.rs"]
pub mod hostile_gpt;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::Utc;
use flipside_bootloader_hooks::{disk, BootAttrs, BootState, Disk, Slot, SlotLayout};
use flipside_bundle::{write_bundle, BundleParams};
use flipside_contract::release::{Release, SystemInfo, RELEASE_FORMAT, UKI_FORMAT};
use flipside_repository::{AddOptions, InitSettings, KeyDir, Repository};
use flipside_test_support::release::{
    file_info, image_info, kernel_part, release as test_release, write_file, write_release_json,
};
use flipside_test_support::sha256_hex;
use tempfile::TempDir;

pub const SYSTEM: &str = "kiosk";
pub const HARDWARE: &str = "pc-x86_64";
/// Slot partitions in the default disk image.
pub const SLOT_MIB: u64 = 16;
/// What an untouched inactive slot is filled with.
pub const SENTINEL: u8 = 0xee;

pub use flipside_test_support::tools::{require_tool, run_ok};

/// A built release.
#[derive(Clone, Debug)]
pub struct Built {
    pub version: u64,
    pub hardware_id: String,
    pub image: PathBuf,
    pub dir: PathBuf,
    pub release: Release,
}

impl Built {
    pub fn image_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.image).unwrap()
    }

    /// The release's chunk index, decoded.
    pub fn index(&self) -> flipside_contract::index::ChunkIndex {
        let bytes = std::fs::read(self.dir.join(&self.release.index.name)).unwrap();
        flipside_contract::index::ChunkIndex::decode(&bytes, &Default::default()).unwrap()
    }
}

/// Real files for an image: regular files of /usr/bin in name order, up to `bytes` in total.
fn real_files(bytes: u64) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir("/usr/bin")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    all.sort();
    let mut out = Vec::new();
    let mut total = 0;
    for p in all {
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        if len == 0 || len > 2 << 20 {
            continue;
        }
        total += len;
        out.push(p);
        if total >= bytes {
            break;
        }
    }
    out
}

/// The system description every image carries.
pub fn system_info(version: u64, hardware_id: &str) -> SystemInfo {
    SystemInfo {
        format: RELEASE_FORMAT,
        name: SYSTEM.into(),
        version,
        display_version: format!("1.{version}"),
        hardware_id: hardware_id.into(),
        architecture: Default::default(),
        init: "/sbin/init".into(),
        closure: vec![],
    }
}

/// A squashfs image of real files plus `/.flipside/system.json` and a version file; `payload`
/// bytes of real files (the same for every version, so versions share most chunks).
pub fn make_image(work: &Path, version: u64, hardware_id: &str, payload: u64) -> PathBuf {
    require_tool("mksquashfs", "squashfs-tools");
    let root = work.join(format!("rootfs-{version}-{hardware_id}"));
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join(".flipside")).unwrap();
    for f in real_files(payload) {
        std::fs::copy(&f, root.join("usr/bin").join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        root.join(".flipside/system.json"),
        serde_json::to_vec_pretty(&system_info(version, hardware_id)).unwrap(),
    )
    .unwrap();
    std::fs::write(root.join("version"), format!("{version}\n").repeat(1000)).unwrap();
    let image = work.join(format!("image-{version}-{hardware_id}.squashfs"));
    run_ok(Command::new("mksquashfs").arg(&root).arg(&image).args([
        "-noappend",
        "-no-xattrs",
        "-all-root",
        "-mkfs-time",
        "0",
        "-all-time",
        "0",
        "-noI",
        "-noD",
        "-noF",
        "-noX",
        "-no-fragments",
        "-quiet",
        "-no-progress",
    ]));
    image
}

/// Size of each kernel partition of a world with kernel partitions.
pub const KERNEL_PART_MIB: u64 = 4;

/// The kernel part's bytes of `version`: a stand-in for a UKI (the updater never parses it),
/// 1.5 MiB of which most is the same in every version, so a new kernel is mostly a delta.
pub fn kernel_bytes(version: u64) -> Vec<u8> {
    // xorshift64: bytes that do not compress, like a compressed kernel and initramfs.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes: Vec<u8> = (0..(3u32 << 19))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let tail = bytes.len() - (64 << 10);
    for (i, b) in bytes[tail..].iter_mut().enumerate() {
        *b = (i as u64).wrapping_mul(version.wrapping_add(7)) as u8;
    }
    bytes
}

/// `uname -r` of the kernel part of `version`.
pub fn kernel_release(version: u64) -> String {
    format!("6.1.0-{version}-amd64")
}

/// Bundle, index and release.json of `image` in a release directory.
pub fn make_release(work: &Path, image: &Path, version: u64, hardware_id: &str) -> Built {
    make_release_with(work, image, version, hardware_id, None, false)
}

/// As [`make_release`], with a kernel part made of `kernel` when given.
pub fn make_release_with(
    work: &Path,
    image: &Path,
    version: u64,
    hardware_id: &str,
    kernel: Option<&[u8]>,
    segments: bool,
) -> Built {
    let dir = work.join(format!("release-{version}-{hardware_id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (bundle_name, index_name) = flipside_contract::release::file_names(SYSTEM, version);
    let bundle = dir.join(&bundle_name);
    let params = BundleParams {
        zstd_level: 3,
        segments,
        ..BundleParams::default()
    };
    let index = write_bundle(image, &bundle, &params).unwrap();
    let index_bytes = index.encode();
    let index_info = write_file(&dir, &index_name, &index_bytes);
    let kernel = kernel.map(|bytes| {
        let (bundle_name, index_name) =
            flipside_contract::release::kernel_file_names(SYSTEM, version);
        let uki = dir.join("uki.efi");
        std::fs::write(&uki, bytes).unwrap();
        let bundle = dir.join(&bundle_name);
        let index = write_bundle(&uki, &bundle, &params).unwrap();
        let uki_info = image_info(UKI_FORMAT, bytes.len() as u64, sha256_hex(bytes));
        let bundle_info = file_info(&bundle_name, &std::fs::read(&bundle).unwrap());
        let index_info = write_file(&dir, &index_name, &index.encode());
        kernel_part(&kernel_release(version), uki_info, bundle_info, index_info)
    });
    let root = image_info(
        "squashfs",
        index.image_length(),
        hex::encode(index.image_sha256()),
    );
    let bundle_info = file_info(&bundle_name, &std::fs::read(&bundle).unwrap());
    let release = Release {
        kernel,
        ..test_release(SYSTEM, version, hardware_id, root, bundle_info, index_info)
    };
    write_release_json(&dir, &release);
    Built {
        version,
        hardware_id: hardware_id.into(),
        image: image.to_path_buf(),
        dir,
        release,
    }
}

/// A test world: repository, disk image, fake running system, configuration.
pub struct World {
    pub tmp: TempDir,
    pub repo: PathBuf,
    pub keys: PathBuf,
    pub disk: PathBuf,
    pub config: PathBuf,
    pub state: PathBuf,
    pub cmdline: PathBuf,
    pub system_json: PathBuf,
    pub health: PathBuf,
    pub rebooted: PathBuf,
    pub releases: BTreeMap<(u64, String), Built>,
    /// Releases are published with a kernel part.
    pub kernels: bool,
    /// Bundles carry segments.
    pub segments: bool,
}

/// How to build a world.
pub struct Setup {
    /// Releases (version, hardware id) published in the repository.
    pub publish: Vec<(u64, &'static str)>,
    /// Version running in slot a (its image is written there when it is published).
    pub running: u64,
    pub slot_mib: u64,
    /// Real-file bytes per image.
    pub payload: u64,
    /// Write the running release's image into slot a (else zeros: no delta possible).
    pub running_image: bool,
    /// Give the disk kernel partitions (`kernel-a`, `kernel-b`) and every release a kernel part
    /// ([`kernel_bytes`]); the running release's kernel is written into `kernel-a`.
    pub kernels: bool,
    /// Bundles with segments (large frames a full install fetches instead of the chunk
    /// frames). Off by default: these tests exercise the chunk frames' transport, retries and
    /// refusals; the segment path has tests of its own.
    pub segments: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            publish: vec![(1, HARDWARE), (2, HARDWARE)],
            running: 1,
            slot_mib: SLOT_MIB,
            payload: 3 << 20,
            running_image: true,
            kernels: false,
            segments: false,
        }
    }
}

impl Setup {
    /// A repository with no release and the running slot's image absent.
    pub fn nothing_published() -> Setup {
        Setup {
            publish: vec![],
            ..Setup::default()
        }
    }
}

impl World {
    pub fn new(setup: Setup) -> World {
        require_tool("sgdisk", "gdisk");
        let tmp = tempfile::Builder::new()
            .prefix("flipside-updater-")
            .tempdir()
            .unwrap();
        let t = tmp.path().to_path_buf();
        let work = t.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let repo = t.join("repo");
        let keys = t.join("keys");
        let mut world = World {
            repo: repo.clone(),
            keys: keys.clone(),
            disk: t.join("disk.img"),
            config: t.join("config.toml"),
            state: t.join("state"),
            cmdline: t.join("cmdline"),
            system_json: t.join("system.json"),
            health: t.join("health.d"),
            rebooted: t.join("rebooted"),
            releases: BTreeMap::new(),
            kernels: setup.kernels,
            segments: setup.segments,
            tmp,
        };
        let mut r = Repository::create(&repo).unwrap();
        r.init(&KeyDir::new(&keys), &InitSettings::default(), Utc::now())
            .unwrap();
        drop(r);
        std::fs::copy(repo.join("metadata/1.root.json"), t.join("root.json")).unwrap();
        for (version, hw) in &setup.publish {
            world.publish(*version, hw, setup.payload);
        }
        world.make_disk(setup.slot_mib, setup.kernels);
        // Slot a runs `running` (its image when published), proven; slot b holds a sentinel.
        let running_image = world
            .releases
            .get(&(setup.running, HARDWARE.to_string()))
            .map(|b| b.image_bytes());
        if let Some(image) = running_image.filter(|_| setup.running_image) {
            world.write_slot(Slot::A, &image);
            if setup.kernels {
                world.write_kernel(Slot::A, &kernel_bytes(setup.running));
            }
        }
        world.fill_slot(Slot::B, SENTINEL);
        world.set_attrs(Slot::A, BootAttrs::new(2, 0, true).unwrap());
        world.set_attrs(Slot::B, BootAttrs::new(0, 0, false).unwrap());
        world.set_running(Slot::A, setup.running, HARDWARE);
        std::fs::create_dir_all(&world.health).unwrap();
        std::fs::write(t.join("machine-id"), format!("{MACHINE_ID}\n")).unwrap();
        world.write_config(&["http://127.0.0.1:9/".to_string()], 3);
        world
    }

    /// Builds and publishes a release.
    pub fn publish(&mut self, version: u64, hardware_id: &str, payload: u64) -> Built {
        self.publish_as(version, hardware_id, payload, AddOptions::default())
    }

    /// Builds and publishes a release of this world's hardware with the publisher's `options`.
    pub fn publish_with(&mut self, version: u64, payload: u64, options: AddOptions) -> Built {
        self.publish_as(version, HARDWARE, payload, options)
    }

    fn publish_as(
        &mut self,
        version: u64,
        hardware_id: &str,
        payload: u64,
        options: AddOptions,
    ) -> Built {
        let work = self.tmp.path().join("work");
        let image = make_image(&work, version, hardware_id, payload);
        let kernel = self.kernels.then(|| kernel_bytes(version));
        let built = make_release_with(
            &work,
            &image,
            version,
            hardware_id,
            kernel.as_deref(),
            self.segments,
        );
        let mut r = Repository::open(&self.repo).unwrap();
        r.add_with(&KeyDir::new(&self.keys), &built.dir, options, Utc::now())
            .unwrap();
        self.releases
            .insert((version, hardware_id.to_string()), built.clone());
        built
    }

    /// Applies a change of channels or rollout to a published release of this world's system.
    pub fn amend(&self, version: u64, change: &flipside_repository::Amend) {
        let mut r = Repository::open(&self.repo).unwrap();
        r.amend(
            &KeyDir::new(&self.keys),
            SYSTEM,
            version,
            change,
            Utc::now(),
        )
        .unwrap();
    }

    /// Withdraws a published release of this world's system.
    pub fn withdraw(&self, version: u64) {
        let mut r = Repository::open(&self.repo).unwrap();
        r.withdraw(&KeyDir::new(&self.keys), SYSTEM, version, Utc::now())
            .unwrap();
    }

    pub fn release(&self, version: u64) -> &Built {
        &self.releases[&(version, HARDWARE.to_string())]
    }

    fn make_disk(&self, slot_mib: u64, kernels: bool) {
        let kernel_mib = if kernels { 2 * KERNEL_PART_MIB } else { 0 };
        let total = 2 * slot_mib + kernel_mib + 4 + 2;
        let f = std::fs::File::create(&self.disk).unwrap();
        f.set_len(total << 20).unwrap();
        let mut sgdisk = Command::new("sgdisk");
        sgdisk.arg("-o").args([
            "-n",
            &format!("1:2048:+{slot_mib}M"),
            "-c",
            "1:root-a",
            "-n",
            &format!("2:0:+{slot_mib}M"),
            "-c",
            "2:root-b",
            "-n",
            "3:0:+2M",
            "-c",
            "3:data",
        ]);
        if kernels {
            let size = format!("+{KERNEL_PART_MIB}M");
            sgdisk.args(["-n", &format!("4:0:{size}"), "-c", "4:kernel-a"]);
            sgdisk.args(["-n", &format!("5:0:{size}"), "-c", "5:kernel-b"]);
        }
        run_ok(sgdisk.arg(&self.disk));
    }

    /// Byte range of a slot's kernel partition on the disk.
    pub fn kernel_range(&self, slot: Slot) -> std::ops::Range<u64> {
        let mut d = Disk::open(&self.disk, false).unwrap();
        let (table, _) = disk::load(&mut d, &SlotLayout::default()).unwrap();
        let label = format!("kernel-{slot}");
        let e = table
            .find(&flipside_bootloader_hooks::PartitionSelector::Label(label))
            .unwrap();
        e.byte_range(table.sector_size()).unwrap()
    }

    pub fn write_kernel(&self, slot: Slot, bytes: &[u8]) {
        let r = self.kernel_range(slot);
        assert!(bytes.len() as u64 <= r.end - r.start);
        let f = OpenOptions::new().write(true).open(&self.disk).unwrap();
        f.write_all_at(bytes, r.start).unwrap();
        f.sync_all().unwrap();
    }

    pub fn kernel_partition_bytes(&self, slot: Slot) -> Vec<u8> {
        let r = self.kernel_range(slot);
        let f = std::fs::File::open(&self.disk).unwrap();
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        f.read_exact_at(&mut buf, r.start).unwrap();
        buf
    }

    /// The boot state on the disk.
    pub fn boot_state(&self) -> BootState {
        let mut d = Disk::open(&self.disk, false).unwrap();
        disk::load(&mut d, &SlotLayout::default()).unwrap().1
    }

    pub fn set_attrs(&self, slot: Slot, attrs: BootAttrs) {
        let mut d = Disk::open(&self.disk, true).unwrap();
        let (mut table, state) = disk::load(&mut d, &SlotLayout::default()).unwrap();
        disk::commit(&mut d, &mut table, &state.with_attrs(slot, attrs)).unwrap();
    }

    /// Byte range of a slot on the disk.
    pub fn slot_range(&self, slot: Slot) -> std::ops::Range<u64> {
        let mut d = Disk::open(&self.disk, false).unwrap();
        let (table, state) = disk::load(&mut d, &SlotLayout::default()).unwrap();
        let e = table.partition(state.slot(slot).partition.number).unwrap();
        let ss = table.sector_size();
        e.first_lba * ss..(e.last_lba + 1) * ss
    }

    pub fn write_slot(&self, slot: Slot, bytes: &[u8]) {
        let r = self.slot_range(slot);
        assert!(bytes.len() as u64 <= r.end - r.start);
        let f = OpenOptions::new().write(true).open(&self.disk).unwrap();
        f.write_all_at(bytes, r.start).unwrap();
        f.sync_all().unwrap();
    }

    /// Overwrites `len` bytes of `slot` at `offset` with a byte no image holds there.
    pub fn damage_slot(&self, slot: Slot, offset: u64, len: usize) {
        use std::os::unix::fs::FileExt;
        let r = self.slot_range(slot);
        assert!(offset + len as u64 <= r.end - r.start);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.disk)
            .unwrap();
        f.write_all_at(&vec![0xee; len], r.start + offset).unwrap();
    }

    pub fn fill_slot(&self, slot: Slot, byte: u8) {
        let r = self.slot_range(slot);
        self.write_slot(slot, &vec![byte; (r.end - r.start) as usize]);
    }

    pub fn read_slot(&self, slot: Slot, len: u64) -> Vec<u8> {
        let r = self.slot_range(slot);
        let f = std::fs::File::open(&self.disk).unwrap();
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, r.start).unwrap();
        buf
    }

    pub fn slot_bytes(&self, slot: Slot) -> Vec<u8> {
        let r = self.slot_range(slot);
        self.read_slot(slot, r.end - r.start)
    }

    /// The GPT area of the disk (primary at the start, backup at the end) to compare byte by byte.
    pub fn gpt_bytes(&self) -> Vec<u8> {
        let all = std::fs::read(&self.disk).unwrap();
        let head = &all[..34 * 512];
        let tail = &all[all.len() - 33 * 512..];
        [head, tail].concat()
    }

    /// Pretends `slot` runs `version` for `hardware_id`.
    pub fn set_running(&self, slot: Slot, version: u64, hardware_id: &str) {
        std::fs::write(&self.cmdline, format!("quiet flipside.slot={slot} rw\n")).unwrap();
        std::fs::write(
            &self.system_json,
            serde_json::to_vec_pretty(&system_info(version, hardware_id)).unwrap(),
        )
        .unwrap();
    }

    /// Firmware's choice at power-up (consumes a try), then the running system of that slot.
    pub fn reboot(&self, version_in: impl Fn(Slot) -> u64) -> Slot {
        let mut d = Disk::open(&self.disk, true).unwrap();
        let (mut table, state) = disk::load(&mut d, &SlotLayout::default()).unwrap();
        let (choice, next) = state.select().unwrap();
        disk::commit(&mut d, &mut table, &next).unwrap();
        self.set_running(choice.slot, version_in(choice.slot), HARDWARE);
        choice.slot
    }

    /// Replaces `from` (which must be there) by `to` in the configuration file.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "{from} not in {text}");
        std::fs::write(&self.config, text.replace(from, to)).unwrap();
    }

    /// Slot b as the world made it: not bootable (P=0,T=0,S=0) and still the sentinel bytes,
    /// so nothing of a refused or postponed install landed.
    pub fn assert_b_untouched(&self) {
        assert_eq!(
            self.boot_state().attrs(Slot::B),
            BootAttrs::new(0, 0, false).unwrap()
        );
        assert!(self.read_slot(Slot::B, 4096).iter().all(|b| *b == SENTINEL));
    }

    /// Writes the configuration with `mirrors` and `retries` download retries.
    pub fn write_config(&self, mirrors: &[String], retries: u32) {
        let entries: Vec<String> = mirrors.iter().map(|m| format!("{m:?}")).collect();
        self.write_config_with(&entries, retries, "");
    }

    /// Writes the configuration with mirror `entries` as TOML (a quoted URL or an inline
    /// table) and `network` lines added to the `[network]` section.
    pub fn write_config_with(&self, entries: &[String], retries: u32, network: &str) {
        let list = entries.join(", ");
        let text = format!(
            r#"[repository]
mirrors = [{list}]
trusted_root = "root.json"

[device]
disk = "disk.img"
state_dir = "state"
efivars = "efivars"
cmdline = "cmdline"
system_info = "system.json"
machine_id = "machine-id"
run_dir = "run"

[update]
trial_boots = 3

[network]
connect_timeout_secs = 5
read_timeout_secs = 5
low_speed_limit = 100
low_speed_time_secs = 2
retries = {retries}
backoff_initial_ms = 20
backoff_max_ms = 100
{network}

[health]
dir = "health.d"
timeout_secs = 10
reboot_command = ["touch", {:?}]

[progress]
interval_secs = 0.05
"#,
            self.rebooted.display().to_string()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// A health check script.
    pub fn add_check(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.health.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `flipside --config CONFIG ARGS...` as a process.
    /// `flipside status --json`, which must succeed.
    pub fn status_json(&self) -> serde_json::Value {
        let run = self.run(&["status", "--json"]);
        run.expect(code::OK);
        serde_json::from_str(&run.stdout).unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(flipside_exe());
        c.arg("--config").arg(&self.config).args(args);
        c.env("FLIPSIDE_LOG", "info");
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().unwrap();
        Run::from(out)
    }
}

/// The `flipside` executable the tests run: the production binary, with the TUF client.
pub fn flipside_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flipside"))
}

/// A finished run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts that stderr holds every one of `needles`.
    pub fn complains(&self, needles: &[&str]) -> &Self {
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "{needle:?} not in:\n{}",
                self.stderr
            );
        }
        self
    }

    /// Asserts that stdout holds `needle`.
    pub fn says(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "{needle:?} not in:\n{}",
            self.stdout
        );
        self
    }

    /// A `KEY=value` field of the `FLIPSIDE_RESULT` line.
    pub fn result_field(&self, key: &str) -> u64 {
        self.result_str(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number in {}", self.stdout))
    }

    /// A `KEY=value` field of the `FLIPSIDE_RESULT` line, as text.
    pub fn result_str(&self, key: &str) -> String {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("FLIPSIDE_RESULT"))
            .unwrap_or_else(|| panic!("no FLIPSIDE_RESULT line in:\n{}", self.stdout));
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    }
}

/// Exit codes (see the README).
/// The machine id of every world's device (`device.machine_id`).
pub const MACHINE_ID: &str = "5f0c3a4e2b8d4d7f9c1e6a2b3c4d5e6f";

pub mod code {
    pub const OK: i32 = 0;
    pub const CONFIG: i32 = 3;
    pub const NETWORK: i32 = 4;
    pub const SIGNATURE: i32 = 5;
    pub const EXPIRED: i32 = 6;
    pub const ROLLBACK: i32 = 7;
    pub const INCOMPATIBLE: i32 = 8;
    pub const CHUNK_HASH: i32 = 9;
    pub const TOO_LARGE: i32 = 10;
    pub const STATE: i32 = 12;
    pub const HEALTH: i32 = 13;
    pub const ACCESS: i32 = 14;
}
