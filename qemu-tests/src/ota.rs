//! Over-the-air updates on the virtual appliance: releases that carry the real updater, a real
//! flipside repository, and what the scenarios read back from the console.
//!
//! Every OTA release is an image built by `flipside-build` holding a static busybox, the static
//! `flipside` binary, `/etc/flipside/config.toml` (the mirror is the host's update server as
//! the guest sees it, the pinned root is the repository's `1.root.json`, the state lives on
//! `/data`), health checks in `/etc/flipside/health.d`, and an `/init` that:
//!
//! 1. reports `system up` and brings up the network;
//! 2. on a trial boot runs `flipside health` (all pass: commit; one fails: mark bad, and the
//!    reboot command reboots into the other slot);
//! 3. asks the update server for steps (see [`crate::server`]) until one ends the boot:
//!    `install` (`flipside install`), `status` (`flipside status --json` printed as one
//!    marker), `reboot`, `poweroff`.
//!
//! The releases of the catalogue ([`CATALOGUE`]) differ in what they do wrong; release 2's
//! tools come from a real Nix store path (`nix-store --add`), the others from host files.
//! [`World::get`] builds them and the repository snapshots once and caches them under the
//! assets directory, keyed by the content of their inputs and the day (the repository's
//! timestamp is valid for a few days).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use chrono::{Duration as Days, Utc};
use flipside_repository::{InitSettings, KeyDir, Repository};
use flipside_tuf::metadata::Role;
use sha2::{Digest, Sha256};

use flipside_bootloader_hooks::Slot;

use crate::appliance::{build_with, init_head, system_header};
use crate::assets::Assets;
use crate::disk::TestDisk;
use crate::error::{Error, Result};
use crate::markers::{Boot, Marker};
use crate::once::get_or_build;
use crate::server::{Step, UpdateServer};
use crate::testbed::TestBed;
use crate::tool;
use crate::vm::{GuestFwd, Vm, VmConfig, GUEST_SERVER_ADDR};

/// Release name of the OTA appliance.
pub const NAME: &str = "appliance";
/// Trial boots the updater arms a new slot with.
pub const TRIAL_BOOTS: u8 = 2;
/// The port the guest reaches the update server at (forwarded to the host's 127.0.0.1).
pub const GUEST_PORT: u16 = 80;

/// Busybox applets the OTA init and health checks call.
const APPLETS: &[&str] = &[
    "cat", "dd", "echo", "grep", "head", "ip", "ls", "mount", "poweroff", "printf", "reboot",
    "sed", "sh", "sleep", "sync", "timeout", "tr", "umount", "wget",
];

/// What a release does wrong, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Boots, passes its health check, follows the steps.
    Good,
    /// Boots, but its health check fails.
    HealthFails,
    /// Its init panics the kernel right after reporting itself: the system never starts.
    Panics,
}

/// One release of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    pub version: u64,
    pub kind: Kind,
    /// Tools (busybox, flipside) from a Nix store path instead of host files.
    pub nix: bool,
}

/// The releases every scenario draws from.
pub const CATALOGUE: &[Release] = &[
    Release {
        version: 1,
        kind: Kind::Good,
        nix: false,
    },
    Release {
        version: 2,
        kind: Kind::Good,
        nix: true,
    },
    Release {
        version: 3,
        kind: Kind::HealthFails,
        nix: false,
    },
    Release {
        version: 4,
        kind: Kind::Panics,
        nix: false,
    },
    Release {
        version: 5,
        kind: Kind::Good,
        nix: false,
    },
    Release {
        version: 6,
        kind: Kind::Good,
        nix: false,
    },
];

/// Repository snapshots: each is the repository right after the releases up to its number
/// were published (`r2` holds 1 and 2, `r3` adds 3, ...), plus two broken copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Snapshot {
    /// Releases 1..=N published.
    UpTo(u64),
    /// `UpTo(6)` with one byte in every [`TAMPER_STRIDE`] of release 6's bundle flipped after
    /// signing.
    Tampered,
    /// `UpTo(6)` with snapshot and timestamp re-signed as of 30 days ago: expired.
    Expired,
}

impl Snapshot {
    fn dir_name(self) -> String {
        match self {
            Snapshot::UpTo(n) => format!("r{n}"),
            Snapshot::Tampered => "tampered".into(),
            Snapshot::Expired => "expired".into(),
        }
    }
}

/// Distance between the bytes flipped in the tampered bundle (smaller than any chunk).
pub const TAMPER_STRIDE: usize = 1024;

/// Version of how the world is built, part of the cache key.
const WORLD_FORMAT: &str = "ota-world-2";

/// The step words the init understands (and `install-gpt-pause-N`, see
/// [`install_pausing_at_gpt_write`]).
pub const STEPS: &[&str] = &["install", "status", "reboot", "poweroff"];

/// The prefix of the step word of an install that stops in a GPT write.
const INSTALL_GPT_PAUSE: &str = "install-gpt-pause-";

/// The health check of a release. Pure.
pub fn health_check(kind: Kind) -> String {
    match kind {
        Kind::HealthFails => "#!/bin/sh\n# The service of this release does not come up.\n\
             echo 'appliance service did not start: /run/appliance.sock missing' >&2\nexit 1\n"
            .to_string(),
        Kind::Good | Kind::Panics => "#!/bin/sh\n# The data partition holds the updater's state: \
             it must be mounted.\ngrep -q ' /data ' /proc/mounts\n"
            .to_string(),
    }
}

/// `/etc/flipside/config.toml` of every release. Pure.
pub fn config_toml() -> String {
    format!(
        r#"# flipside on the virtual appliance (generated by qemu-tests).
[repository]
mirrors = ["http://{GUEST_SERVER_ADDR}:{GUEST_PORT}/repo/"]
trusted_root = "root.json"

[device]
disk = "/dev/vda"
state_dir = "/data/flipside"

[update]
trial_boots = {TRIAL_BOOTS}

[network]
connect_timeout_secs = 10
read_timeout_secs = 20
retries = 3
backoff_initial_ms = 200
backoff_max_ms = 2000

[health]
dir = "/etc/flipside/health.d"
timeout_secs = 30
# The marker first, so that the harness sees why the boot ends.
reboot_command = ["/bin/sh", "-c", "echo 'FLIPSIDE: system end action=reboot by=flipside'; exec reboot -f"]

[progress]
interval_secs = 1
"#
    )
}

/// The release's `/init`. Pure.
pub fn init_script(release: &Release) -> String {
    let head = init_head(&format!(
        "/init of the flipside OTA appliance, release {} (generated by qemu-tests).",
        release.version
    ));
    if release.kind == Kind::Panics {
        return format!(
            "{head}# This release is broken: it panics before anything starts.\n\
             echo \"FLIPSIDE: system end action=panic\"\necho c >/proc/sysrq-trigger\n"
        );
    }
    format!(
        r#"{head}ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
if [ "$FLIPSIDE_TRIAL" = 1 ]; then
	# On failure flipside marks this slot bad and runs its reboot command.
	flipside health
	echo "FLIPSIDE: updater health code=$?"
fi
while :; do
	# busybox 1.35's `wget -T` crashes: bound the request with timeout instead.
	step=$(timeout 30 wget -q -O - "http://{GUEST_SERVER_ADDR}:{GUEST_PORT}/control/next") || step=poweroff
	echo "FLIPSIDE: system step name=$step"
	case "$step" in
	install)
		# Through a pipe, stderr is no terminal: flipside prints FLIPSIDE_PROGRESS lines
		# instead of a progress bar.
		{{ flipside install; echo "FLIPSIDE: updater install code=$?"; }} 2>&1 | cat
		;;
	{pause}*)
		# The QEMU tests' flipside stops between the two copies of its Nth GPT write and
		# waits there for the harness to cut the power.
		{{ FLIPSIDE_TEST_GPT_PAUSE=${{step#{pause}}} flipside install; echo "FLIPSIDE: updater install code=$?"; }} 2>&1 | cat
		;;
	status)
		doc=$(flipside status --json | tr -d '\n')
		echo "FLIPSIDE: updater status code=$? json=$doc"
		;;
	reboot)
		echo "FLIPSIDE: system end action=reboot"
		reboot -f
		sleep 60
		;;
	*)
		echo "FLIPSIDE: system end action=poweroff"
		poweroff -f
		sleep 60
		;;
	esac
done
"#,
        pause = INSTALL_GPT_PAUSE,
    )
}

/// The step `install-gpt-pause-N`: an install whose Nth GPT write stops between the two table
/// copies (the backup written and flushed, the primary not yet) until the power is cut. Only
/// the QEMU tests' build of flipside (feature `gpt-pause`) stops; others ignore it. Pure.
pub fn install_pausing_at_gpt_write(write: u32) -> String {
    format!("{INSTALL_GPT_PAUSE}{write}")
}

/// Where a release's tools (busybox and flipside) come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tools {
    /// Host files: `(busybox, flipside)`.
    Files(PathBuf, PathBuf),
    /// An existing store path holding `bin/busybox`, `bin/flipside` and the applet links.
    StorePath(String),
}

/// The release's `system.toml`. Pure.
pub fn system_toml(release: &Release, tools: &Tools) -> String {
    let links = APPLETS
        .iter()
        .map(|a| format!("\"bin/{a}\" = \"busybox\""))
        .collect::<Vec<_>>()
        .join(", ");
    let tools_root = match tools {
        Tools::Files(busybox, flipside) => format!(
            "files = {{ \"bin/busybox\" = \"{}\", \"bin/flipside\" = \"{}\" }}\nlinks = {{ {links} }}",
            busybox.display(),
            flipside.display()
        ),
        Tools::StorePath(path) => format!("path = \"{path}\""),
    };
    format!(
        r#"# OTA appliance release {version}, generated by qemu-tests.
{header}"/etc" = "@base/etc"

[[root]]
name = "tools"
{tools_root}

# No `refs` to tools: a built-in store path cannot reference a Nix one, and both are roots
# of the image anyway.
[[root]]
name = "base"
dir = "base"
"#,
        version = release.version,
        header = system_header(NAME, release.version, "tools"),
    )
}

/// The built releases and repository snapshots.
#[derive(Debug)]
pub struct World {
    /// The cache directory they live in.
    pub dir: PathBuf,
    /// The Nix store path release 2's tools come from.
    pub nix_tools: String,
}

static WORLD: OnceLock<World> = OnceLock::new();
static BUILDING: Mutex<()> = Mutex::new(());

impl World {
    /// The world, built on first use (or found in the cache).
    pub fn get(assets: &Assets) -> Result<&'static World> {
        get_or_build(&WORLD, &BUILDING, || build_or_load(assets))
    }

    /// The squashfs image of a release of the catalogue.
    pub fn image(&self, version: u64) -> PathBuf {
        self.release_dir(version)
            .join(format!("{NAME}-{version}.squashfs"))
    }

    /// The directory `flipside-build image` wrote (image, bundle, index, release.json).
    pub fn release_dir(&self, version: u64) -> PathBuf {
        self.dir.join("releases").join(version.to_string())
    }

    /// A repository snapshot's directory (serve it as the mirror's root).
    pub fn repo(&self, snapshot: Snapshot) -> PathBuf {
        self.dir.join("repos").join(snapshot.dir_name())
    }

    /// The steps of an update and a rollback, from v1 running: install v2, reboot into its
    /// trial (committed by its health check), status, reboot; install v3, reboot into its
    /// trial (its health check fails, the slot is marked bad, the device reboots into v2),
    /// status, power off. The demo and scenarios 1 and 2 run them.
    pub fn update_then_rollback(&self) -> Vec<Step> {
        vec![
            Step::with_repo("install", &self.repo(Snapshot::UpTo(2))),
            Step::new("reboot"),
            Step::new("status"),
            Step::new("reboot"),
            Step::with_repo("install", &self.repo(Snapshot::UpTo(3))),
            Step::new("reboot"),
            Step::new("status"),
            Step::new("poweroff"),
        ]
    }

    /// Size of a release's bundle.
    pub fn bundle_len(&self, version: u64) -> Result<u64> {
        let (bundle, _) = flipside_contract::release::file_names(NAME, version);
        let path = self.release_dir(version).join(bundle);
        Ok(fs::metadata(&path).map_err(Error::io("read", &path))?.len())
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    }
    fs::write(path, text).map_err(Error::io("write", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(Error::io("set permissions of", path))
}

fn file_digest(h: &mut Sha256, path: &Path) -> Result<()> {
    h.update(fs::read(path).map_err(Error::io("read", path))?);
    Ok(())
}

fn build_or_load(assets: &Assets) -> Result<World> {
    let flipside = assets.flipside()?.to_path_buf();
    let builder = assets.flipside_build()?.to_path_buf();
    // The cache key: every input of the images and the day (the timestamp's validity).
    let mut h = Sha256::new();
    h.update(WORLD_FORMAT);
    for p in [&flipside, &builder, &assets.busybox] {
        file_digest(&mut h, p)?;
    }
    h.update(config_toml());
    for r in CATALOGUE {
        h.update(init_script(r));
        h.update(health_check(r.kind));
        h.update(system_toml(r, &Tools::StorePath(String::new())));
        h.update([r.nix as u8]);
    }
    h.update(Utc::now().date_naive().to_string());
    let key = hex::encode(&h.finalize()[..8]);
    let dir = assets.dir.join(format!("ota-{key}"));
    let done = dir.join("complete");
    if let Ok(nix_tools) = fs::read_to_string(&done) {
        if Path::new(nix_tools.trim()).exists() {
            return Ok(World {
                dir,
                nix_tools: nix_tools.trim().to_string(),
            });
        }
    }
    eprintln!(
        "qemu-tests: building the OTA releases and repository in {}",
        dir.display()
    );
    let tmp = assets
        .dir
        .join(format!("ota-{key}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(Error::io("remove", &tmp))?;
    }
    let nix_tools = build(assets, &flipside, &builder, &tmp)?;
    fs::write(tmp.join("complete"), format!("{nix_tools}\n"))
        .map_err(Error::io("write", tmp.join("complete")))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir))?;
    }
    fs::rename(&tmp, &dir).map_err(Error::io("rename into place", &dir))?;
    Ok(World { dir, nix_tools })
}

/// The tools directory (busybox, flipside, applet links) added to the real Nix store with
/// `nix-store --add`; returns the store path.
fn nix_tools(busybox: &Path, flipside: &Path, work: &Path) -> Result<String> {
    let dir = work.join("flipside-tools");
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).map_err(Error::io("create directory", &bin))?;
    fs::copy(busybox, bin.join("busybox")).map_err(Error::io("copy", busybox))?;
    fs::copy(flipside, bin.join("flipside")).map_err(Error::io("copy", flipside))?;
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(a))
            .map_err(Error::io("create symlink", bin.join(a)))?;
    }
    let out = tool::run_text(Command::new("nix-store").arg("--add").arg(&dir), "nix-bin")?;
    Ok(out.trim().to_string())
}

fn build(assets: &Assets, flipside: &Path, builder: &Path, dir: &Path) -> Result<String> {
    let repo_dir = dir.join("repo");
    let keys = KeyDir::new(dir.join("keys"));
    let mut settings = InitSettings::default();
    if let Some(ts) = settings.roles.get_mut(&Role::Timestamp) {
        // The cache lives for a day; the timestamp must outlive it.
        ts.expiry_days = 3;
    }
    let repo_err = |e: flipside_repository::Error| Error::ToolOutput {
        command: "flipside-repository".into(),
        output: e.to_string(),
    };
    let mut repo = Repository::create(&repo_dir).map_err(repo_err)?;
    repo.init(&keys, &settings, Utc::now()).map_err(repo_err)?;
    let root_json = fs::read_to_string(repo_dir.join("metadata/1.root.json"))
        .map_err(Error::io("read", repo_dir.join("metadata/1.root.json")))?;
    let work = dir.join("work");
    let nix = nix_tools(&assets.busybox, flipside, &work)?;
    let snapshots = dir.join("repos");
    fs::create_dir_all(&snapshots).map_err(Error::io("create directory", &snapshots))?;
    for r in CATALOGUE {
        let src = work.join(format!("src-{}", r.version));
        let base = src.join("base");
        write_file(&base.join("bin/init"), &init_script(r), 0o755)?;
        write_file(
            &base.join("etc/flipside/config.toml"),
            &config_toml(),
            0o644,
        )?;
        write_file(&base.join("etc/flipside/root.json"), &root_json, 0o644)?;
        write_file(
            &base.join("etc/flipside/health.d/10-service"),
            &health_check(r.kind),
            0o755,
        )?;
        let tools = if r.nix {
            Tools::StorePath(nix.clone())
        } else {
            Tools::Files(assets.busybox.clone(), flipside.to_path_buf())
        };
        let toml = src.join("system.toml");
        write_file(&toml, &system_toml(r, &tools), 0o644)?;
        let out = dir.join("releases").join(r.version.to_string());
        build_with(builder, &toml, &out, &work.join("store"))?;
        repo.add(&keys, &out, Utc::now()).map_err(repo_err)?;
        if r.version >= 2 {
            copy_tree(
                &repo_dir,
                &snapshots.join(Snapshot::UpTo(r.version).dir_name()),
            )?;
        }
    }
    let last = CATALOGUE.iter().map(|r| r.version).max().unwrap_or(0);
    // Tampered: the newest bundle altered after signing.
    let tampered = snapshots.join(Snapshot::Tampered.dir_name());
    copy_tree(&repo_dir, &tampered)?;
    let (bundle_name, _) = flipside_contract::release::file_names(NAME, last);
    let targets = tampered.join("targets");
    let bundle = fs::read_dir(&targets)
        .map_err(Error::io("list", &targets))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&bundle_name))
        })
        .ok_or_else(|| Error::ToolOutput {
            command: "find the newest bundle".into(),
            output: format!("no *{bundle_name} in {}", targets.display()),
        })?;
    let mut bytes = fs::read(&bundle).map_err(Error::io("read", &bundle))?;
    // Every chunk is altered: the updater copies chunks the running image also has from the
    // running slot (delta), so one flipped byte in a shared chunk would never be fetched.
    for i in (0..bytes.len()).step_by(TAMPER_STRIDE) {
        bytes[i] ^= 0xff;
    }
    // A new file, so the copy does not share the original's inode.
    fs::remove_file(&bundle).map_err(Error::io("remove", &bundle))?;
    fs::write(&bundle, bytes).map_err(Error::io("write", &bundle))?;
    // Expired: snapshot and timestamp signed as if 30 days ago.
    let expired = snapshots.join(Snapshot::Expired.dir_name());
    copy_tree(&repo_dir, &expired)?;
    // Without the record of the last publish (a publisher whose clock was behind from the
    // start), which would otherwise refuse to sign with a clock set back.
    let record = expired.join(flipside_repository::layout::PUBLISHED_FILE);
    fs::remove_file(&record).map_err(Error::io("remove", &record))?;
    let mut old = Repository::open(&expired).map_err(repo_err)?;
    old.resign(&keys, &[], Utc::now() - Days::days(30))
        .map_err(repo_err)?;
    Ok(nix)
}

/// `cp -a SRC DST`.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    tool::run(Command::new("cp").arg("-a").arg(src).arg(dst), "coreutils")?;
    Ok(())
}

/// One OTA scenario's rig: the test bed, the built world, the update server and a disk.
pub struct Rig {
    pub bed: TestBed,
    pub world: &'static World,
    pub server: UpdateServer,
    pub disk: TestDisk,
}

impl Rig {
    /// A fresh rig for `test` (logs in `<target>/qemu-logs/<test>/`).
    pub fn new(test: &str) -> Result<Self> {
        let bed = TestBed::new(test)?;
        let world = World::get(bed.assets)?;
        let server = UpdateServer::start()?;
        let disk = bed.disk("disk")?;
        Ok(Self {
            bed,
            world,
            server,
            disk,
        })
    }

    /// Writes release `version` into `slot` with boot bits `(priority, tries, successful)`.
    pub fn provision(&self, slot: Slot, version: u64, bits: (u8, u8, bool)) -> Result<()> {
        self.disk.write_slot(slot, &self.world.image(version))?;
        self.disk.set_slot(slot, bits.0, bits.1, bits.2)
    }

    /// A VM of this rig's disk on the network that reaches only the update server; guest
    /// reboots reset the VM (one QEMU for many boots).
    pub fn vm_config(&self, name: &str) -> VmConfig {
        let mut cfg = self.bed.vm_config(name, &self.disk);
        cfg.network = Some(GuestFwd {
            guest_port: GUEST_PORT,
            host_port: self.server.port(),
            busybox: self.bed.assets.busybox.clone(),
        });
        cfg
    }

    /// Starts a VM of [`Rig::vm_config`].
    pub fn start(&self, name: &str) -> Result<Vm> {
        self.bed.start(&self.vm_config(name))
    }
}

/// What a boot of an OTA appliance showed, for assertions and the demo's timeline. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtaBoot {
    pub summary: crate::markers::BootSummary,
    /// Exit code of `flipside health` on a trial boot.
    pub health: Option<i32>,
    /// Exit codes of `flipside install`, in order.
    pub installs: Vec<i32>,
    /// `FLIPSIDE_RESULT event=..` lines.
    pub results: Vec<Marker>,
    /// `flipside status --json` documents.
    pub statuses: Vec<serde_json::Value>,
    /// The steps the system took.
    pub steps: Vec<String>,
    /// The system's `end` marker said it was the updater's reboot command.
    pub rebooted_by_updater: bool,
}

impl OtaBoot {
    /// The `keys` fields of this boot's `FLIPSIDE_RESULT event=installed` line, in order
    /// (`"?"` for a missing one); `None` when nothing was installed.
    pub fn installed(&self, keys: &[&str]) -> Option<Vec<&str>> {
        let m = self
            .results
            .iter()
            .find(|m| m.get("event") == Some("installed"))?;
        Some(keys.iter().map(|k| m.get(k).unwrap_or("?")).collect())
    }

    pub fn from_boot(boot: &Boot) -> Self {
        let code = |m: &Marker| m.get("code").and_then(|c| c.parse().ok());
        Self {
            summary: boot.summary(),
            health: boot.find("updater", "health").and_then(code),
            installs: boot
                .markers
                .iter()
                .filter(|m| m.is("updater", "install"))
                .filter_map(code)
                .collect(),
            results: boot
                .markers
                .iter()
                .filter(|m| m.is("updater", "result"))
                .cloned()
                .collect(),
            statuses: boot
                .markers
                .iter()
                .filter(|m| m.is("updater", "status"))
                .filter_map(|m| serde_json::from_str(m.get("json")?).ok())
                .collect(),
            steps: boot
                .markers
                .iter()
                .filter(|m| m.is("system", "step"))
                .filter_map(|m| m.get("name").map(str::to_string))
                .collect(),
            rebooted_by_updater: boot
                .find("system", "end")
                .is_some_and(|m| m.get("by") == Some("flipside")),
        }
    }
}

/// Asserts what `status --json` says once the trial of `failed` (release `version`) did not
/// succeed and the device came back on the other slot: the other slot runs and boots next, and
/// the last event is the fallback, naming the failed slot and release.
pub fn assert_fell_back(status: &serde_json::Value, failed: &str, version: u64) {
    let other = if failed == "a" { "b" } else { "a" };
    assert_eq!(status["running"], other, "status: {status}");
    assert_eq!(status["boots_next"], other, "status: {status}");
    assert_eq!(status["last"]["event"], "fell-back", "status: {status}");
    assert_eq!(status["last"]["slot"], failed, "status: {status}");
    assert_eq!(status["last"]["version"], version, "status: {status}");
}

/// `(priority, tries, successful)` of each slot in a status document, `a` then `b`. Pure.
pub fn status_bits(status: &serde_json::Value) -> BTreeMap<String, (u64, u64, bool)> {
    status["slots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some((
                s["slot"].as_str()?.to_string(),
                (
                    s["priority"].as_u64()?,
                    s["tries"].as_u64()?,
                    s["successful"].as_bool()?,
                ),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markers::{boots, parse};

    #[test]
    fn init_runs_health_on_trial_then_steps() {
        let s = init_script(&CATALOGUE[0]);
        assert!(s.contains("if [ \"$FLIPSIDE_TRIAL\" = 1 ]; then\n\t# On failure"));
        assert!(s.contains("flipside health\n\techo \"FLIPSIDE: updater health code=$?\""));
        assert!(s.contains("wget -q -O - \"http://10.0.2.100:80/control/next\""));
        for step in STEPS {
            assert!(
                s.contains(&format!("\t{step})")) || *step == "poweroff",
                "{step}"
            );
        }
        let panics = init_script(&Release {
            version: 4,
            kind: Kind::Panics,
            nix: false,
        });
        assert!(s.contains(
            "\tinstall-gpt-pause-*)\n\t\t# The QEMU tests' flipside stops between the two copies"
        ));
        assert!(
            s.contains("{ FLIPSIDE_TEST_GPT_PAUSE=${step#install-gpt-pause-} flipside install;")
        );
        assert_eq!(install_pausing_at_gpt_write(2), "install-gpt-pause-2");
        assert!(panics.ends_with("echo c >/proc/sysrq-trigger\n"));
        assert!(!panics.contains("flipside health") && !panics.contains("wget"));
    }

    #[test]
    fn config_points_at_the_forwarded_server_and_data() {
        let c = config_toml();
        let v: toml::Value = toml::from_str(&c).unwrap();
        assert_eq!(
            v["repository"]["mirrors"][0].as_str(),
            Some("http://10.0.2.100:80/repo/")
        );
        assert_eq!(v["device"]["state_dir"].as_str(), Some("/data/flipside"));
        assert_eq!(v["update"]["trial_boots"].as_integer(), Some(2));
        assert_eq!(v["health"]["reboot_command"][0].as_str(), Some("/bin/sh"));
    }

    #[test]
    fn system_toml_takes_tools_from_files_or_a_store_path() {
        let r = CATALOGUE[1];
        let t = system_toml(
            &r,
            &Tools::StorePath("/nix/store/abc-flipside-tools".into()),
        );
        assert!(t.contains("name = \"tools\"\npath = \"/nix/store/abc-flipside-tools\"\n"));
        assert!(t.contains("version = 2\n"));
        let t = system_toml(
            &r,
            &Tools::Files(PathBuf::from("/bb"), PathBuf::from("/fs")),
        );
        assert!(t.contains("\"bin/flipside\" = \"/fs\""));
        assert!(t.contains("\"bin/tr\" = \"busybox\""));
    }

    #[test]
    fn health_checks_pass_or_fail_with_the_host_shell() {
        let dir = tempfile::tempdir().unwrap();
        let run = |kind| {
            let p = dir.path().join("check");
            fs::write(&p, health_check(kind)).unwrap();
            Command::new("sh").arg(&p).status().unwrap().success()
        };
        assert!(!run(Kind::HealthFails));
    }

    #[test]
    fn ota_boot_reads_codes_results_and_status() {
        let lines = [
            "FLIPSIDE: initrd start kernel=x",
            "FLIPSIDE: initrd select slot=b trial=1 tries_left=1 partnum=2",
            "FLIPSIDE: system up name=appliance version=2 slot=b trial=1",
            "FLIPSIDE: updater health code=0",
            "FLIPSIDE: system step name=install",
            "FLIPSIDE_RESULT event=installed slot=a version=3",
            "FLIPSIDE: updater install code=0",
            "FLIPSIDE: system step name=status",
            r#"FLIPSIDE: updater status code=0 json={ "slots": [ { "slot": "a", "priority": 2, "tries": 2, "successful": false } ]}"#,
            "FLIPSIDE: system end action=reboot by=flipside",
        ];
        let all: Vec<_> = lines.iter().filter_map(|l| parse(l)).collect();
        let b = OtaBoot::from_boot(&boots(&all)[0]);
        assert_eq!(b.health, Some(0));
        assert_eq!(b.installs, [0]);
        assert_eq!(b.results[0].get("version"), Some("3"));
        assert_eq!(b.steps, ["install", "status"]);
        assert!(b.rebooted_by_updater);
        assert_eq!(status_bits(&b.statuses[0]).get("a"), Some(&(2, 2, false)));
    }
}
