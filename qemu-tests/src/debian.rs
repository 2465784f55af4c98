//! A real Debian appliance: a bookworm root made by `mmdebstrap` from Debian's registry, with
//! systemd as PID 1, the static `flipside` and its systemd units (`updater/systemd/`), imported
//! with `flipside-build store add` and composed with `flipside-build image`.
//!
//! The root is the one in `examples/debian-appliance/` (its `packages` list and `overlay/`),
//! plus what the harness adds: `/usr/bin/flipside`, the units, `/etc/flipside/config.toml` (a
//! directory mirror on the data partition, [`Repo`]) and `root.json`, and a test-only unit that
//! reports the boot on the console, runs the update unit once when the kernel command line
//! says `flipside.test-update`, and powers off ([`REPORT_UNIT`]).
//!
//! - **Two stages.** [`Base::get`] runs mmdebstrap (`--variant=essential` plus
//!   [`packages`]) once per cache key (the package list, the mirrors, the mmdebstrap options
//!   and [`BASE_FORMAT`]) and keeps the prepared tree under `<assets>/debian-<key>/`;
//!   [`build_image`] copies it, adds the flipside parts and runs the builder (seconds).
//! - **Versions.** No mirror snapshot here: the key cannot hold the versions, so the installed
//!   ones (`dpkg-query -W`) are written to `packages.txt` in the cache and into the image as
//!   `/usr/share/flipside/packages.txt` (the dpkg database is not in the image, see below).
//!   `SOURCE_DATE_EPOCH` is fixed; the builder normalises times and owners.
//! - **Read-only root.** The slot is a read-only squashfs. `/var` and `/tmp` are tmpfs
//!   (`/etc/fstab` of the overlay), so the tree's own `/var` (dpkg database, apt and log
//!   files) is dropped; systemd-tmpfiles creates what the running system needs there. `/etc`
//!   stays read-only: units that must write it (systemd-firstboot, machine-id-commit) carry
//!   `ConditionPathIsReadWrite=/etc` and are skipped. `/run` is the initramfs's tmpfs (which
//!   holds `/run/flipside/boot`), `/data` the data partition the initramfs mounts; the
//!   updater's state is on `/data`.
//! - **machine-id.** `/etc/machine-id` is an empty file: on a read-only `/etc` systemd then
//!   generates a machine ID at each boot and bind-mounts it from `/run/machine-id` over the
//!   file. One image serves every device, so no ID may be baked into it; nothing here needs an
//!   ID that survives a reboot (the journal is volatile too).
//! - **init.** `init = "/sbin/init"`: the builder's `/init -> /sbin/init`, Debian's link to
//!   systemd, which the initramfs `switch_root`s into like any other `/init`.
//! - **Root must run mmdebstrap** (`--mode=root`, chosen automatically for root).
//! - **Architectures.** The same tree for x86-64 and for aarch64 ([`Architecture`]): the
//!   arm64 tree is made with `--arch=arm64`, and mmdebstrap runs its maintainer scripts in
//!   the foreign chroot through qemu-user (`qemu-user-static`, registered with the kernel's
//!   binfmt_misc by `scripts/setup.sh`; `arch-test arm64` says whether it works). Each
//!   architecture's tree is cached under its own assets directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use flipside_contract::arch::Architecture;
use flipside_image_builder::secureboot::SigningKey;
use flipside_repository::{InitSettings, KeyDir, Repository};
use sha2::{Digest, Sha256};

use crate::appliance::{build_signed, HARDWARE_ID};
use crate::assets::Assets;
use crate::disk::DiskLayout;
use crate::error::{Error, Result};
use crate::once::get_or_build;
use crate::paths;
use crate::tool;

/// Release name of the Debian appliance.
pub const NAME: &str = "debian-appliance";
/// Debian release.
pub const SUITE: &str = "bookworm";
/// Where the packages come from: the release with its point updates, and security updates.
pub const MIRRORS: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];
/// `SOURCE_DATE_EPOCH` of the mmdebstrap run (2023-06-10, bookworm's release day).
pub const SOURCE_DATE_EPOCH: u64 = 1_686_355_200;
/// Version of how the base tree is prepared, part of its cache key.
pub const BASE_FORMAT: &str = "debian-base-1";
/// Slots big enough for the image (about 105 MB) with room for a bigger release.
pub const SLOT_SIZE_MIB: u64 = 160;
/// Top-level entries of the tree that become mountpoints of the image instead.
const MOUNTPOINTS: &[&str] = &["data", "dev", "proc", "run", "sys", "tmp", "var"];
/// The test-only unit that reports the boot and powers off.
pub const REPORT_UNIT: &str = "flipside-test-report.service";
/// The flipside units the image enables (the update unit is installed, not enabled).
pub const ENABLED_UNITS: &[&str] = &["flipside-health.service", REPORT_UNIT];

/// `examples/debian-appliance/`.
pub fn example_dir() -> PathBuf {
    paths::workspace_root().join("examples/debian-appliance")
}

/// The packages of `examples/debian-appliance/packages` (comments and blank lines skipped).
pub fn packages() -> Result<Vec<String>> {
    let path = example_dir().join("packages");
    let text = fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    Ok(parse_packages(&text))
}

/// One package a line, `#` comments. Pure.
pub fn parse_packages(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Debian's name of an architecture (`dpkg --print-architecture`). Pure.
pub fn dpkg_architecture(arch: Architecture) -> &'static str {
    match arch {
        Architecture::X86_64 => "amd64",
        Architecture::Aarch64 => "arm64",
    }
}

/// The hardware id of the test appliances of an architecture. Pure.
pub fn hardware_id(arch: Architecture) -> &'static str {
    match arch {
        Architecture::X86_64 => HARDWARE_ID,
        Architecture::Aarch64 => crate::arm::HARDWARE_ID,
    }
}

/// mmdebstrap's arguments for an `arch` tree of `packages` into `tree`; the build machine's
/// own architecture (x86-64) is mmdebstrap's default and not named. Pure.
pub fn mmdebstrap_args(arch: Architecture, packages: &[String], tree: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--variant=essential".into(),
        format!("--include={}", packages.join(",")),
    ];
    if arch != Architecture::X86_64 {
        args.push(format!("--arch={}", dpkg_architecture(arch)));
    }
    args.extend([
        // /bin, /lib, /sbin as links into /usr, with usr-is-merged instead of usrmerge (which
        // would pull in perl).
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr".into(),
        "--quiet".into(),
    ]);
    // Documentation and translations are of no use on an appliance; licences stay.
    for opt in [
        "path-exclude=/usr/share/man/*",
        "path-exclude=/usr/share/info/*",
        "path-exclude=/usr/share/locale/*",
        "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright",
    ] {
        args.push(format!("--dpkgopt={opt}"));
    }
    args.push(SUITE.into());
    args.push(tree.to_string_lossy().into_owned());
    args.extend(MIRRORS.iter().map(|m| m.to_string()));
    args
}

/// Where the test disk's data partition holds the repository (a directory mirror).
pub const MIRROR_DIR: &str = "/data/repo";

/// `/etc/flipside/config.toml` of the test image: the repository on the data partition as
/// the mirror, the state on `/data`, and the default reboot command (`systemctl reboot`).
/// Pure.
pub fn config_toml() -> String {
    format!(
        r#"# flipside on the Debian test appliance (generated by qemu-tests).
[repository]
mirrors = ["{MIRROR_DIR}"]
trusted_root = "root.json"

[device]
disk = "/dev/vda"
state_dir = "/data/flipside"

[update]
trial_boots = 2

[health]
dir = "/etc/flipside/health.d"
timeout_secs = 60
"#
    )
}

/// The report script of the test unit: markers for the harness, then power off. Pure.
pub fn report_script() -> String {
    format!(
        "{}{}",
        report_head("sh"),
        r#"# flipside.test-update on the kernel command line: one run of the shipped update unit.
if grep -qw flipside.test-update /proc/cmdline; then
	systemctl start flipside-update.service
	echo "FLIPSIDE: updater install code=$(show flipside-update.service ExecMainStatus) result=$(show flipside-update.service Result)"
fi
echo "FLIPSIDE: system end action=poweroff"
systemctl --no-block poweroff
"#
    )
}

/// The first part of every report script (`#!/bin/SHELL`): the boot as FLIPSIDE markers (the
/// system, its kernel, the targets, the health unit's verdict, failed units, machine-id,
/// mounts, efivarfs), and the helpers `field` and `show`. Pure.
pub fn report_head(shell: &str) -> String {
    format!(
        "#!/bin/{shell}\n{}",
        r#"# qemu-tests: report this boot as FLIPSIDE markers on the console.
[ -r /run/flipside/boot ] && . /run/flipside/boot
field() {
	sed -n "s/^  \"$1\": \"\{0,1\}\([^\",]*\).*/\1/p" /.flipside/system.json | head -n 1
}
show() {
	systemctl show -P "$2" "$1"
}
echo "FLIPSIDE: system up name=$(field name) version=$(field version) slot=${FLIPSIDE_SLOT:-unknown} trial=${FLIPSIDE_TRIAL:-unknown} init=$(cat /proc/1/comm) kernel=$(uname -r)"
echo "FLIPSIDE: systemd target name=multi-user.target state=$(systemctl is-active multi-user.target) at_us=$(show multi-user.target ActiveEnterTimestampMonotonic)"
echo "FLIPSIDE: updater health code=$(show flipside-health.service ExecMainStatus) result=$(show flipside-health.service Result) state=$(systemctl is-active flipside-health.service) at_us=$(show flipside-health.service ExecMainExitTimestampMonotonic)"
echo "FLIPSIDE: systemd target name=boot-complete.target state=$(systemctl is-active boot-complete.target)"
failed=$(systemctl list-units --state=failed --no-legend --plain | cut -d' ' -f1 | tr '\n' ',')
echo "FLIPSIDE: systemd failed units=${failed:-none}"
transient=no
mountpoint -q /etc/machine-id && transient=yes
echo "FLIPSIDE: systemd machine-id id=$(cat /etc/machine-id) transient=$transient"
echo "FLIPSIDE: systemd mounts root=$(findmnt -n -o FSTYPE,OPTIONS / | tr ' ' ':') var=$(findmnt -n -o FSTYPE /var) tmp=$(findmnt -n -o FSTYPE /tmp) data=$(findmnt -n -o FSTYPE /data) efivars=$(findmnt -n -o FSTYPE /sys/firmware/efi/efivars || echo none)"
"#
    )
}

/// The test-only unit: after the boot's verdict, report and power off. Like the health unit
/// it is wanted by multi-user.target yet ordered after it (no default dependencies). Pure.
pub fn report_unit() -> String {
    r#"# qemu-tests only: report the boot on the console, then power off.
[Unit]
Description=qemu-tests: report the boot and power off
DefaultDependencies=no
After=multi-user.target boot-complete.target flipside-health.service
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/flipside-test-report
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console

[Install]
WantedBy=multi-user.target
"#
    .to_string()
}

/// Test image drop-in: the health unit's output on the console too (the serial log). Pure.
pub fn health_console_dropin() -> &'static str {
    "# qemu-tests: flipside's verdict in the serial log too.\n[Service]\nStandardOutput=journal+console\nStandardError=journal+console\n"
}

/// Test image drop-in for the update unit: the state directory on `/data` writable under
/// `ProtectSystem=strict` (the documented drop-in), its output in the serial log. Pure.
pub fn update_dropin() -> &'static str {
    "# qemu-tests: the state lives on /data; output in the serial log too.\n[Service]\nReadWritePaths=/data/flipside\nStandardOutput=journal+console\nStandardError=journal+console\n"
}

/// What a variant of the test image replaces or adds (the UEFI chain scenarios: a network
/// mirror, a step loop, a kernel part; see `crate::chain`).
#[derive(Clone, Debug, Default)]
pub struct Variant {
    /// `/etc/flipside/config.toml` instead of [`config_toml`].
    pub config_toml: Option<String>,
    /// The report unit's script instead of [`report_script`].
    pub report_script: Option<String>,
    /// More files: (path in the image without the leading `/`, contents, mode).
    pub files: Vec<(String, String, u32)>,
    /// More units to enable.
    pub enable: Vec<String>,
    /// The `[kernel]` section of `system.toml` (without the header line).
    pub kernel: Option<String>,
    /// The Secure Boot db key that signs the UKI of the `[kernel]` section.
    pub secure_boot: Option<SigningKey>,
    /// What the image says it is built for (the tree's own architecture unless a test
    /// publishes a mislabelled release); the hardware id stays the tree's devices'.
    pub architecture: Architecture,
}

/// The image's `system.toml`: one root (the whole tree as a store path), its top-level
/// entries linked at `/`, the rest mountpoints. Pure.
pub fn system_toml(version: u64, store_path: &str, tops: &[String]) -> String {
    system_toml_with(
        Architecture::X86_64,
        Architecture::X86_64,
        version,
        store_path,
        tops,
        None,
    )
}

/// [`system_toml`] for devices of `device` (their hardware id), labelled as built for `arch`,
/// with a `[kernel]` section. Pure.
pub fn system_toml_with(
    device: Architecture,
    arch: Architecture,
    version: u64,
    store_path: &str,
    tops: &[String],
    kernel: Option<&str>,
) -> String {
    let links: String = tops
        .iter()
        .map(|t| format!("\"/{t}\" = \"@debian/{t}\"\n"))
        .collect();
    let mountpoints = MOUNTPOINTS
        .iter()
        .map(|m| format!("\"/{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"# Debian appliance {version}, generated by qemu-tests.
name = "{NAME}"
version = {version}
display_version = "{version}.0"
hardware_id = "{hardware_id}"
architecture = "{arch}"
init = "/sbin/init"
slot_size = "{SLOT_SIZE_MIB}MiB"
mountpoints = [{mountpoints}]

[[root]]
name = "debian"
path = "{store_path}"

[symlinks]
{links}{kernel}"#,
        hardware_id = hardware_id(device),
        arch = arch.name(),
        kernel = kernel
            .map(|k| format!("\n[kernel]\n{k}"))
            .unwrap_or_default()
    )
}

/// The disk layout for this appliance: slots for its images, a data partition that holds the
/// state and a repository of two releases (bundles of about 62 MB each: the chunk frames and
/// the segments).
pub fn disk_layout() -> DiskLayout {
    DiskLayout {
        slot_size: SLOT_SIZE_MIB << 20,
        data_size: 256 << 20,
    }
}

/// The prepared bookworm tree, cached by key.
#[derive(Debug)]
pub struct Base {
    /// `<assets>/debian-<key>/`.
    pub dir: PathBuf,
    /// The tree's architecture: its releases are for devices of it (their hardware id).
    pub architecture: Architecture,
    /// How long mmdebstrap and the preparation took, when this process built it.
    pub built_in: Option<Duration>,
}

static BASE: OnceLock<Base> = OnceLock::new();
static BASE_AARCH64: OnceLock<Base> = OnceLock::new();
static BUILDING: Mutex<()> = Mutex::new(());

impl Base {
    /// The x86-64 tree, built on first use (or found in the cache).
    pub fn get(assets: &Assets) -> Result<&'static Base> {
        Self::for_architecture(Architecture::X86_64, &assets.dir)
    }

    /// The `arch` tree under the assets directory `dir`, built on first use (or found in the
    /// cache).
    pub fn for_architecture(arch: Architecture, dir: &Path) -> Result<&'static Base> {
        let cell = match arch {
            Architecture::X86_64 => &BASE,
            Architecture::Aarch64 => &BASE_AARCH64,
        };
        get_or_build(cell, &BUILDING, || build_or_load(arch, dir))
    }

    /// The prepared root tree.
    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// `dpkg-query -W` of the tree: `package<TAB>version` lines.
    pub fn package_versions(&self) -> Result<String> {
        let path = self.dir.join("packages.txt");
        fs::read_to_string(&path).map_err(Error::io("read", &path))
    }
}

fn cache_key(arch: Architecture, packages: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(BASE_FORMAT);
    h.update(SOURCE_DATE_EPOCH.to_le_bytes());
    for a in mmdebstrap_args(arch, packages, Path::new("TREE")) {
        h.update(a);
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

fn build_or_load(arch: Architecture, assets_dir: &Path) -> Result<Base> {
    let packages = packages()?;
    let dir = assets_dir.join(format!("debian-{}", cache_key(arch, &packages)));
    if dir.join("complete").exists() {
        return Ok(Base {
            dir,
            architecture: arch,
            built_in: None,
        });
    }
    let started = Instant::now();
    let tmp = assets_dir.join(format!(
        "{}.tmp-{}",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(Error::io("remove", &tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(Error::io("create directory", &tmp))?;
    let tree = tmp.join("tree");
    eprintln!(
        "qemu-tests: mmdebstrap {SUITE} {} ({}) into {}",
        dpkg_architecture(arch),
        packages.join(" "),
        tree.display()
    );
    tool::run(
        Command::new("mmdebstrap")
            .args(mmdebstrap_args(arch, &packages, &tree))
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string()),
        match arch {
            Architecture::X86_64 => "mmdebstrap",
            // The foreign chroot's maintainer scripts run through qemu-user and binfmt_misc.
            Architecture::Aarch64 => {
                "mmdebstrap, qemu-user-static and an arm64 binfmt_misc entry (scripts/setup.sh)"
            }
        },
    )?;
    prepare_tree(&tree, &tmp.join("packages.txt"))?;
    fs::write(tmp.join("complete"), "").map_err(Error::io("write", tmp.join("complete")))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir))?;
    }
    fs::rename(&tmp, &dir).map_err(Error::io("rename into place", &dir))?;
    Ok(Base {
        dir,
        architecture: arch,
        built_in: Some(started.elapsed()),
    })
}

/// Turns mmdebstrap's tree into the read-only base (see the module docs); the installed
/// versions go to `versions`.
fn prepare_tree(tree: &Path, versions: &Path) -> Result<()> {
    let list = tool::run_text(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                tree.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${Package}\\t${Version}\\n"]),
        "dpkg",
    )?;
    fs::write(versions, &list).map_err(Error::io("write", versions))?;
    let record = tree.join("usr/share/flipside/packages.txt");
    write_file(&record, &list, 0o644)?;
    for m in MOUNTPOINTS {
        let p = tree.join(m);
        if p.exists() {
            fs::remove_dir_all(&p).map_err(Error::io("remove", &p))?;
        }
    }
    // Files of the build host mmdebstrap copied in.
    for f in ["etc/resolv.conf", "etc/hostname"] {
        let p = tree.join(f);
        if p.symlink_metadata().is_ok() {
            fs::remove_file(&p).map_err(Error::io("remove", &p))?;
        }
    }
    // Empty: systemd mounts a generated ID over it at each boot.
    write_file(&tree.join("etc/machine-id"), "", 0o444)?;
    systemctl(tree, &["set-default", "multi-user.target"])?;
    Ok(())
}

/// `systemctl --root=TREE ARGS` (offline: links in the tree's /etc).
fn systemctl(tree: &Path, args: &[&str]) -> Result<()> {
    tool::run(
        Command::new("systemctl")
            .arg(format!("--root={}", tree.display()))
            .args(args),
        "systemd",
    )?;
    Ok(())
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    }
    if path.symlink_metadata().is_ok() {
        fs::remove_file(path).map_err(Error::io("remove", path))?;
    }
    fs::write(path, text).map_err(Error::io("write", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(Error::io("set permissions of", path))
}

fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    }
    fs::copy(from, to).map_err(Error::io("copy", from))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .map_err(Error::io("set permissions of", to))
}

/// What [`build_image`] made.
#[derive(Debug)]
pub struct Built {
    /// The squashfs slot image.
    pub image: PathBuf,
    /// The builder's output directory (image, bundle, index, release.json).
    pub out: PathBuf,
    /// The tree's store path, image form (`/flipside/store/<hash>-debian`).
    pub store_path: String,
    /// Copy, additions, `store add`.
    pub staged_in: Duration,
    /// `flipside-build image`.
    pub imaged_in: Duration,
}

/// Builds release `version` of the Debian appliance under `work`: the cached base tree, the
/// example's overlay, flipside and its units (trusting `root_json`), the test unit;
/// `flipside-build store add`, then `flipside-build image`.
pub fn build_image(
    assets: &Assets,
    base: &Base,
    version: u64,
    root_json: &str,
    work: &Path,
) -> Result<Built> {
    build_variant(assets, base, version, root_json, work, &Variant::default())
}

/// [`build_image`] with what `variant` replaces or adds.
pub fn build_variant(
    assets: &Assets,
    base: &Base,
    version: u64,
    root_json: &str,
    work: &Path,
    variant: &Variant,
) -> Result<Built> {
    // The binaries first, so that the timings below hold no cargo build.
    let programs = Programs {
        flipside: assets.flipside()?,
        builder: assets.flipside_build()?,
    };
    build_with(&programs, base, version, root_json, work, variant)
}

/// The programs an image is made with: the updater it carries (built for the tree's
/// architecture) and the host's `flipside-build`.
#[derive(Clone, Copy, Debug)]
pub struct Programs<'a> {
    pub flipside: &'a Path,
    pub builder: &'a Path,
}

/// [`build_variant`] with `programs` (any architecture: the tree's and the updater's must
/// match `variant.architecture`).
pub fn build_with(
    programs: &Programs,
    base: &Base,
    version: u64,
    root_json: &str,
    work: &Path,
    variant: &Variant,
) -> Result<Built> {
    let (flipside, builder) = (programs.flipside, programs.builder);
    let started = Instant::now();
    let stage = work.join(format!("{NAME}-{version}-tree"));
    if stage.exists() {
        fs::remove_dir_all(&stage).map_err(Error::io("remove", &stage))?;
    }
    // A full copy, not hard links: nothing written below may reach the cached tree.
    tool::run(
        Command::new("cp").arg("-a").arg(base.tree()).arg(&stage),
        "coreutils",
    )?;
    tool::run(
        Command::new("cp")
            .arg("-a")
            .arg(example_dir().join("overlay/."))
            .arg(&stage),
        "coreutils",
    )?;
    copy_file(flipside, &stage.join("usr/bin/flipside"), 0o755)?;
    let units = paths::workspace_root().join("updater/systemd");
    // Installed, not enabled: a variant enables the timer (the fleet scenario).
    for unit in [
        "flipside-health.service",
        "flipside-update.service",
        "flipside-update.timer",
    ] {
        copy_file(
            &units.join(unit),
            &stage.join("usr/lib/systemd/system").join(unit),
            0o644,
        )?;
    }
    let config = variant.config_toml.clone().unwrap_or_else(config_toml);
    write_file(&stage.join("etc/flipside/config.toml"), &config, 0o644)?;
    write_file(&stage.join("etc/flipside/root.json"), root_json, 0o644)?;
    write_file(
        &stage.join("etc/systemd/system/flipside-update.service.d/state-on-data.conf"),
        update_dropin(),
        0o644,
    )?;
    let report = variant.report_script.clone().unwrap_or_else(report_script);
    write_file(
        &stage.join("usr/local/sbin/flipside-test-report"),
        &report,
        0o755,
    )?;
    for (path, text, mode) in &variant.files {
        write_file(&stage.join(path), text, *mode)?;
    }
    write_file(
        &stage.join("etc/systemd/system").join(REPORT_UNIT),
        &report_unit(),
        0o644,
    )?;
    write_file(
        &stage.join("etc/systemd/system/flipside-health.service.d/console.conf"),
        health_console_dropin(),
        0o644,
    )?;
    let mut enable = vec!["enable"];
    enable.extend(ENABLED_UNITS);
    enable.extend(variant.enable.iter().map(String::as_str));
    systemctl(&stage, &enable)?;

    let store = work.join("store");
    let added = tool::run_text(
        Command::new(builder)
            .args(["store", "add"])
            .arg(&stage)
            .args(["--name", "debian", "--store"])
            .arg(&store),
        "flipside-image-builder (cargo build -p flipside-image-builder)",
    )?;
    let name = Path::new(added.trim())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::ToolOutput {
            command: "flipside-build store add".into(),
            output: added.clone(),
        })?;
    let store_path = format!("/flipside/store/{name}");
    let mut tops: Vec<String> = fs::read_dir(&stage)
        .map_err(Error::io("list", &stage))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    tops.sort();
    let staged_in = started.elapsed();

    let started = Instant::now();
    let toml = work.join(format!("{NAME}-{version}.toml"));
    let text = system_toml_with(
        base.architecture,
        variant.architecture,
        version,
        &store_path,
        &tops,
        variant.kernel.as_deref(),
    );
    write_file(&toml, &text, 0o644)?;
    let out = work.join(format!("{NAME}-{version}-out"));
    build_signed(builder, &toml, &out, &store, variant.secure_boot.as_ref())?;
    // The stage is no longer needed (the store holds the tree).
    fs::remove_dir_all(&stage).map_err(Error::io("remove", &stage))?;
    Ok(Built {
        image: out.join(format!("{NAME}-{version}.squashfs")),
        out,
        store_path,
        staged_in,
        imaged_in: started.elapsed(),
    })
}

/// A flipside repository (keys and metadata under `dir`) whose releases the appliance trusts.
pub struct Repo {
    pub repo: Repository,
    pub keys: KeyDir,
    /// The repository's directory: copy it to [`MIRROR_DIR`] on the data partition.
    pub dir: PathBuf,
    /// `metadata/1.root.json`, the image's `/etc/flipside/root.json`.
    pub root_json: String,
}

fn repo_err(e: flipside_repository::Error) -> Error {
    Error::ToolOutput {
        command: "flipside-repository".into(),
        output: e.to_string(),
    }
}

impl Repo {
    /// A new repository in `dir` with fresh keys (default settings).
    pub fn create(dir: &Path) -> Result<Self> {
        let repo_dir = dir.join("repo");
        let keys = KeyDir::new(dir.join("keys"));
        let mut repo = Repository::create(&repo_dir).map_err(repo_err)?;
        repo.init(&keys, &InitSettings::default(), Utc::now())
            .map_err(repo_err)?;
        let root = repo_dir.join("metadata/1.root.json");
        let root_json = fs::read_to_string(&root).map_err(Error::io("read", &root))?;
        Ok(Self {
            repo,
            keys,
            dir: repo_dir,
            root_json,
        })
    }

    /// Publishes what `flipside-build image` wrote to `out`.
    pub fn add(&mut self, out: &Path) -> Result<()> {
        self.repo
            .add(&self.keys, out, Utc::now())
            .map(|_| ())
            .map_err(repo_err)
    }

    /// [`Repo::add`] with the publisher's options (channels, rollout).
    pub fn add_with(&mut self, out: &Path, options: flipside_repository::AddOptions) -> Result<()> {
        self.repo
            .add_with(&self.keys, out, options, Utc::now())
            .map(|_| ())
            .map_err(repo_err)
    }

    /// Re-signs release `version` of the appliance with `change` (pause, resume, waves).
    pub fn amend(&mut self, version: u64, change: &flipside_repository::Amend) -> Result<()> {
        self.repo
            .amend(&self.keys, NAME, version, change, Utc::now())
            .map(|_| ())
            .map_err(repo_err)
    }

    /// A copy of the repository as it is now, at `to` (a state the update server can serve
    /// while the publisher goes on).
    pub fn snapshot(&self, to: &Path) -> Result<PathBuf> {
        tool::run(
            Command::new("cp").arg("-a").arg(&self.dir).arg(to),
            "coreutils",
        )?;
        Ok(to.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_skip_comments() {
        assert_eq!(
            parse_packages("# x\nsystemd-sysv\n\n udev # devices\n"),
            ["systemd-sysv", "udev"]
        );
        let listed = packages().unwrap();
        assert!(listed.contains(&"systemd-sysv".to_string()), "{listed:?}");
    }

    #[test]
    fn mmdebstrap_gets_suite_tree_and_mirrors_last() {
        let packages = ["systemd-sysv".to_string(), "udev".into()];
        let args = mmdebstrap_args(Architecture::X86_64, &packages, Path::new("/t"));
        assert_eq!(args[0], "--variant=essential");
        assert_eq!(args[1], "--include=systemd-sysv,udev");
        assert!(!args.iter().any(|a| a.starts_with("--arch")));
        let arm = mmdebstrap_args(Architecture::Aarch64, &packages, Path::new("/t"));
        assert_eq!(arm[2], "--arch=arm64");
        assert_eq!(arm.len(), args.len() + 1);
        let n = args.len();
        assert_eq!(&args[n - 4..n - 2], ["bookworm", "/t"]);
        assert!(args[n - 1].contains("bookworm-security"));
        assert!(args.contains(&"--dpkgopt=path-include=/usr/share/doc/*/copyright".to_string()));
    }

    #[test]
    fn system_toml_links_the_tops_and_parses() {
        let t = system_toml(
            3,
            "/flipside/store/abc-debian",
            &["etc".into(), "usr".into()],
        );
        let v: toml::Value = toml::from_str(&t).unwrap();
        assert_eq!(v["init"].as_str(), Some("/sbin/init"));
        assert_eq!(v["architecture"].as_str(), Some("x86_64"));
        assert_eq!(v["hardware_id"].as_str(), Some(HARDWARE_ID));
        // A release mislabelled as x86_64 for the aarch64 devices keeps their hardware id.
        let foreign = system_toml_with(
            Architecture::Aarch64,
            Architecture::X86_64,
            5,
            "/flipside/store/abc-debian",
            &["etc".into()],
            None,
        );
        let f: toml::Value = toml::from_str(&foreign).unwrap();
        assert_eq!(f["hardware_id"].as_str(), Some(crate::arm::HARDWARE_ID));
        assert_eq!(f["architecture"].as_str(), Some("x86_64"));
        assert_eq!(v["version"].as_integer(), Some(3));
        assert_eq!(v["symlinks"]["/usr"].as_str(), Some("@debian/usr"));
        assert_eq!(
            v["root"][0]["path"].as_str(),
            Some("/flipside/store/abc-debian")
        );
        let mounts: Vec<&str> = v["mountpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert!(mounts.contains(&"/var") && mounts.contains(&"/data"));
    }

    #[test]
    fn config_uses_data_and_the_default_reboot_command() {
        let v: toml::Value = toml::from_str(&config_toml()).unwrap();
        assert_eq!(v["device"]["state_dir"].as_str(), Some("/data/flipside"));
        assert!(v["health"].get("reboot_command").is_none());
        assert_eq!(v["repository"]["mirrors"][0].as_str(), Some(MIRROR_DIR));
    }

    #[test]
    fn report_script_is_valid_sh_and_ends_with_poweroff() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r");
        fs::write(&p, report_script()).unwrap();
        let st = Command::new("sh").arg("-n").arg(&p).status().unwrap();
        assert!(st.success());
        assert!(report_script().ends_with("systemctl --no-block poweroff\n"));
    }
}
