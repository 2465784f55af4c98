//! The configuration file (`/etc/flipside/config.toml`, or `--config FILE`): repository
//! mirrors and pinned root, the disk and its two slots, the state directory, the trial boots,
//! network limits and the health checks. Every field but the repository, the disk and the
//! trusted root has a documented default. Relative paths are taken from the file's directory.
//! Times are bounded: `*_secs` by [`MAX_SECS`], `backoff_*_ms` by [`MAX_BACKOFF_MS`].
//!
//! ```toml
//! [repository]
//! mirrors = ["https://updates.example.com/kiosk", "https://mirror.example.net/kiosk"]
//! trusted_root = "root.json"          # the pinned root metadata
//!
//! [device]
//! disk = "/dev/vda"
//! slot_a = { label = "root-a" }       # or { partuuid = "..." }
//! slot_b = { label = "root-b" }
//! kernel_a = { label = "kernel-a" }   # each slot's kernel partition (flipside-boot), if the disk has them
//! kernel_b = { label = "kernel-b" }
//! # hardware_id = "qemu-x86_64"       # default: the running image's system.json
//! state_dir = "/var/lib/flipside"
//! run_dir = "/run/flipside"           # per-boot facts (a tmpfs): the running slot's check
//! efivars = "/sys/firmware/efi/efivars"  # where flipside-boot's FlipsideSlot variable is read
//! cmdline = "/proc/cmdline"
//! system_info = "/.flipside/system.json"
//! readback = "auto"                   # or "drop-cache": how the slot is read back
//! sync_every_bytes = 33554432         # while writing, sync the partition after this many bytes
//! sync_every_secs = 2                 # ... or this long: a power cut loses at most that much
//!
//! [update]
//! trial_boots = 3
//! running_check = "once-per-boot"     # or "every-install": re-hash the running slot's copied
//!                                     # chunks at every delta install, not once per boot
//!
//! [network]                           # see NetworkPolicy for every field
//! low_speed_limit = 1024              # bytes/s ...
//! low_speed_time_secs = 30            # ... averaged over this long, like curl's --speed-*
//!
//! [health]
//! dir = "/etc/flipside/health.d"
//! timeout_secs = 120
//! reboot_command = ["systemctl", "reboot"]
//! reboot_timeout_secs = 60
//! no_checks = "refuse"                # or "commit": may a trial with no checks be committed?
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use flipside_bootloader_hooks::{PartitionSelector, SlotLayout};
use serde::Deserialize;
use url::Url;
use uuid::Uuid;

use crate::durable::SyncPolicy;
use crate::error::{Error, Result};
use crate::events::EventsConfig;
use crate::redirect::{RedirectRules, Redirects};
use crate::verified::RunningCheck;
use crate::window::{self, MaintenanceWindow, RebootWhen};

/// Default configuration path.
pub const DEFAULT_PATH: &str = "/etc/flipside/config.toml";

/// Longest time any `*_secs` field may give: a day. A longer timeout or interval is a typo
/// that would leave a command waiting for ages.
pub const MAX_SECS: f64 = 86_400.0;

/// Longest pause between download attempts (`network.backoff_*_ms`): 5 minutes.
pub const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;

/// The whole configuration, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    pub repository: RepositoryConfig,
    pub device: DeviceConfig,
    pub update: UpdateConfig,
    pub network: NetworkPolicy,
    pub health: HealthConfig,
    pub progress: ProgressConfig,
    /// Where fleet events go; `None`: the journal only.
    pub events: Option<EventsConfig>,
}

/// Where releases come from.
#[derive(Clone, Debug)]
pub struct RepositoryConfig {
    /// Mirrors of one TUF repository, tried in order.
    pub mirrors: Vec<Mirror>,
    /// The pinned root metadata the TUF client starts from.
    pub trusted_root: PathBuf,
}

/// One place a repository is served from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mirror {
    /// `http://` or `https://` base URL (the directory holding `metadata/` and `targets/`).
    Http(Url),
    /// A local directory (e.g. a USB stick), given as a path or a `file://` URL.
    Dir(PathBuf),
}

impl Mirror {
    /// Parses a URL or a directory path; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> std::result::Result<Mirror, String> {
        if text.starts_with("http://") || text.starts_with("https://") {
            let mut url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
            // Joining relative names onto a base needs a trailing slash.
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            return Ok(Mirror::Http(url));
        }
        if text.starts_with("file://") {
            let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
            let path = url
                .to_file_path()
                .map_err(|()| format!("{text:?} is not a local file URL"))?;
            return Ok(Mirror::Dir(path));
        }
        if text.contains("://") {
            return Err(format!(
                "{text:?}: only http://, https://, file:// and directory paths are supported"
            ));
        }
        if text.is_empty() {
            return Err("empty mirror".to_string());
        }
        Ok(Mirror::Dir(base.join(text)))
    }

    /// The location of a file relative to the repository root, e.g. `targets/<sha>.<name>`:
    /// each `/`-separated component is one path segment below the base, taken literally.
    pub fn join(&self, relative: &str) -> Location {
        match self {
            Mirror::Http(url) => {
                let mut url = url.clone();
                if let Ok(mut segments) = url.path_segments_mut() {
                    segments.pop_if_empty();
                    for segment in relative.split('/') {
                        segments.push(&url_segment(segment));
                    }
                }
                Location::Url(url)
            }
            Mirror::Dir(dir) => Location::File(dir.join(relative)),
        }
    }
}

impl std::fmt::Display for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mirror::Http(u) => write!(f, "{u}"),
            Mirror::Dir(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One component of a repository path as the text of one URL path segment. Repository paths
/// hold escapes (delegated role names are percent-encoded as python-tuf does: `a%2Fb`), so
/// the component is decoded and the URL crate encodes it again, `/`, `?`, `#` and `%`
/// included: it stays one segment below the base. A component that decodes to `.` or `..`
/// (`%2e%2e`) is kept literally, `%` escaped, so it never resolves as a parent directory.
fn url_segment(component: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(component).decode_utf8();
    match decoded {
        Ok(text) if text != "." && text != ".." => text.into_owned(),
        // Not text, or a dot segment: the component itself, whose `%` the URL crate escapes
        // (dots written `%2E` first so that a bare `..` becomes `%252E%252E`).
        _ => component.replace('.', "%2E"),
    }
}

/// Where one file of a mirror is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Url(Url),
    File(PathBuf),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Url(u) => write!(f, "{u}"),
            Location::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The disk, its slots, and where the running system describes itself.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Whole-disk device or GPT disk image holding both slots.
    pub disk: PathBuf,
    pub layout: SlotLayout,
    /// Each slot's kernel partition, used when the disk has both (a device booted by
    /// flipside-boot); a disk without them keeps its kernel outside the slots.
    pub kernel_layout: SlotLayout,
    /// This device's hardware id; `None` takes the running image's.
    pub hardware_id: Option<String>,
    pub state_dir: PathBuf,
    /// Facts true until the next boot (`/run/flipside`, a tmpfs): that the running slot was
    /// checked whole ([`crate::verified`]).
    pub run_dir: PathBuf,
    /// efivarfs (`/sys/firmware/efi/efivars`): the slot flipside-boot chose is read here first.
    pub efivars: PathBuf,
    /// Kernel command line (`/proc/cmdline`).
    pub cmdline: PathBuf,
    /// The running image's system description (`/.flipside/system.json`).
    pub system_info: PathBuf,
    /// The seed of the device's place in rollouts (`/etc/machine-id`); only a number derived
    /// from it is used, and nothing of it is sent.
    pub machine_id: PathBuf,
    /// How a written slot is read back past the page cache. Default [`ReadbackMode::Auto`].
    pub readback: ReadbackMode,
    /// How often a partition being written is synced (durable progress across power cuts).
    /// Default every 32 MiB or 2 s.
    pub sync: SyncPolicy,
}

/// How the written image is read back for its final check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadbackMode {
    /// `O_DIRECT` where the file system supports it, else `drop-cache`.
    #[default]
    Auto,
    /// fsync, `posix_fadvise(DONTNEED)`, then a buffered read (for drivers that mishandle
    /// `O_DIRECT`).
    DropCache,
}

/// Install policy.
#[derive(Clone, Debug)]
pub struct UpdateConfig {
    /// Trial boots (T) given to a freshly installed slot, 1..=15. Default 3.
    pub trial_boots: u8,
    /// Largest chunk index accepted, in bytes, whatever the metadata says. Default 64 MiB
    /// (about a 64 GiB image with the default chunker).
    pub max_index_bytes: u64,
    /// The channel whose releases the device takes. Default `stable`.
    pub channel: String,
    /// Only this version, whatever its rollout (a device held at or moved to a release).
    pub pin_version: Option<u64>,
    /// When `flipside update` reboots into an installed release. Default never.
    pub reboot: RebootWhen,
    /// The maintenance window of `reboot = "window"`.
    pub window: Option<MaintenanceWindow>,
    /// Whether a delta re-hashes the running slot's chunks it copies at every install, or
    /// trusts the running slot once it was checked whole in this boot
    /// ([`crate::verified`]). Default once per boot.
    pub running_check: RunningCheck,
}

/// Timeouts, retries and the low-speed limit of every download; the redirects each mirror may
/// answer with and the certificate authorities HTTPS trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Connecting to a mirror. Default 15 s.
    pub connect_timeout: Duration,
    /// Waiting for the response headers or for any single read. Default 30 s.
    pub read_timeout: Duration,
    /// A transfer averaging fewer bytes/s than this ... Default 1024.
    pub low_speed_limit: u64,
    /// ... over this long fails (curl's --speed-limit/--speed-time). Default 30 s.
    pub low_speed_time: Duration,
    /// Attempts after a failure that made no progress, per request. Default 5.
    pub retries: u32,
    /// First pause between attempts, doubled each time. Default 500 ms, at most
    /// [`MAX_BACKOFF_MS`].
    pub backoff_initial: Duration,
    /// Longest pause between attempts. Default 30 s, at most [`MAX_BACKOFF_MS`].
    pub backoff_max: Duration,
    /// Unwanted bundle bytes fetched rather than opening a new Range request. Default 64 KiB.
    pub range_gap: u64,
    /// The `redirects` setting of each mirror (default same-origin only).
    pub redirects: RedirectRules,
    /// PEM certificate authorities HTTPS trusts instead of the system's store
    /// (`network.ca_file`, as curl's `--cacert`): a private repository trusts only its own CA.
    pub ca_file: Option<PathBuf>,
    /// Mirrors with credentials or TLS settings of their own.
    pub access: Vec<MirrorAccess>,
}

/// How one HTTP mirror is reached: a bearer token or basic credentials read from a file, a
/// client certificate (mutual TLS), the CA it alone is trusted with. Files are read when the
/// client is built; their contents never appear in messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorAccess {
    pub base: Url,
    /// A file holding a bearer token (`Authorization: Bearer ...`).
    pub token_file: Option<PathBuf>,
    /// A file holding `user:password` (HTTP basic authentication).
    pub credentials_file: Option<PathBuf>,
    /// PEM client certificate chain and its key.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// PEM CA(s) this mirror's certificate must chain to, instead of any other trust.
    pub ca: Option<PathBuf>,
}

impl MirrorAccess {
    /// No settings of its own.
    pub fn plain(base: Url) -> Self {
        MirrorAccess {
            base,
            token_file: None,
            credentials_file: None,
            client_cert: None,
            client_key: None,
            ca: None,
        }
    }

    /// Refuses settings that cannot work together or would leak credentials.
    fn check(&self, text: &str) -> std::result::Result<(), String> {
        if self.token_file.is_some() && self.credentials_file.is_some() {
            return Err(format!(
                "{text:?}: give token_file or credentials_file, not both"
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(format!("{text:?}: client_cert and client_key go together"));
        }
        if self.base.scheme() != "https" {
            return Err(format!(
                "{text:?}: credentials and TLS settings need an https:// mirror (over http they would travel in the clear)"
            ));
        }
        Ok(())
    }
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        NetworkPolicy {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            low_speed_limit: 1024,
            low_speed_time: Duration::from_secs(30),
            retries: 5,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            range_gap: 64 * 1024,
            redirects: RedirectRules::default(),
            ca_file: None,
            access: Vec::new(),
        }
    }
}

impl NetworkPolicy {
    /// The pause before retry number `attempt` (1-based): doubling from the initial pause.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff_initial
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// Health checks run after a trial boot.
#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// Directory of executables, run in name order. Default `/etc/flipside/health.d`.
    pub dir: PathBuf,
    /// Time each check may take before it is killed. Default 120 s.
    pub timeout: Duration,
    /// Run after a failed trial was marked bad. Default `["systemctl", "reboot"]`.
    pub reboot_command: Vec<String>,
    /// Time the reboot command may take before its process group is killed. Default 60 s
    /// (`systemctl reboot` returns once the reboot is queued).
    pub reboot_timeout: Duration,
    /// What a trial with no checks to run comes to. Default [`NoChecks::Refuse`].
    pub no_checks: NoChecks,
}

/// What `flipside health` does when the check directory holds no checks (or does not exist).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoChecks {
    /// Commit nothing and exit 3: a trial that merely booted is not proven healthy.
    #[default]
    Refuse,
    /// Commit the trial: this device deliberately judges a boot by booting alone.
    Commit,
}

/// Progress output when stderr is not a terminal.
#[derive(Clone, Copy, Debug)]
pub struct ProgressConfig {
    /// Seconds between progress lines. Default 5.
    pub interval: Duration,
}

// ---- The file as written (all optional where a default exists) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    repository: FileRepository,
    device: FileDevice,
    #[serde(default)]
    update: FileUpdate,
    #[serde(default)]
    network: FileNetwork,
    #[serde(default)]
    health: FileHealth,
    #[serde(default)]
    progress: FileProgress,
    events: Option<FileEvents>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEvents {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepository {
    mirrors: Vec<FileMirror>,
    trusted_root: PathBuf,
}

/// A mirror: its URL or path, or a table with its settings.
#[derive(Deserialize)]
#[serde(untagged)]
enum FileMirror {
    Plain(String),
    Table(FileMirrorTable),
}

/// A mirror with settings of its own.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct FileMirrorTable {
    url: String,
    redirects: Option<Redirects>,
    token_file: Option<PathBuf>,
    credentials_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    ca: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDevice {
    disk: PathBuf,
    #[serde(default = "default_slot_a")]
    slot_a: FileSlot,
    #[serde(default = "default_slot_b")]
    slot_b: FileSlot,
    #[serde(default = "default_kernel_a")]
    kernel_a: FileSlot,
    #[serde(default = "default_kernel_b")]
    kernel_b: FileSlot,
    hardware_id: Option<String>,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default = "default_run_dir")]
    run_dir: PathBuf,
    #[serde(default = "default_efivars")]
    efivars: PathBuf,
    #[serde(default = "default_cmdline")]
    cmdline: PathBuf,
    #[serde(default = "default_system_info")]
    system_info: PathBuf,
    #[serde(default = "default_machine_id")]
    machine_id: PathBuf,
    #[serde(default)]
    readback: ReadbackMode,
    sync_every_bytes: Option<u64>,
    sync_every_secs: Option<f64>,
}

/// `{ label = "root-a" }` or `{ partuuid = "..." }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum FileSlot {
    Label(String),
    Partuuid(String),
}

fn default_slot_a() -> FileSlot {
    FileSlot::Label("root-a".into())
}
fn default_slot_b() -> FileSlot {
    FileSlot::Label("root-b".into())
}
fn default_kernel_a() -> FileSlot {
    FileSlot::Label("kernel-a".into())
}
fn default_kernel_b() -> FileSlot {
    FileSlot::Label("kernel-b".into())
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/flipside")
}
fn default_run_dir() -> PathBuf {
    PathBuf::from("/run/flipside")
}
fn default_efivars() -> PathBuf {
    PathBuf::from("/sys/firmware/efi/efivars")
}
fn default_cmdline() -> PathBuf {
    PathBuf::from("/proc/cmdline")
}
fn default_system_info() -> PathBuf {
    PathBuf::from(flipside_contract::release::SYSTEM_INFO_PATH)
}
fn default_machine_id() -> PathBuf {
    PathBuf::from("/etc/machine-id")
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileUpdate {
    trial_boots: Option<u8>,
    max_index_bytes: Option<u64>,
    channel: Option<String>,
    pin_version: Option<u64>,
    #[serde(default)]
    reboot: RebootWhen,
    window: Option<FileWindow>,
    #[serde(default)]
    running_check: RunningCheck,
}

/// `[update.window]`: local days and hours.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWindow {
    #[serde(default = "every_day")]
    days: Vec<String>,
    start: String,
    end: String,
}

fn every_day() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .map(String::from)
        .to_vec()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileNetwork {
    connect_timeout_secs: Option<f64>,
    read_timeout_secs: Option<f64>,
    low_speed_limit: Option<u64>,
    low_speed_time_secs: Option<f64>,
    retries: Option<u32>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    range_gap: Option<u64>,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileHealth {
    dir: Option<PathBuf>,
    timeout_secs: Option<f64>,
    reboot_command: Option<Vec<String>>,
    reboot_timeout_secs: Option<f64>,
    #[serde(default)]
    no_checks: NoChecks,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileProgress {
    interval_secs: Option<f64>,
}

impl Config {
    /// Reads and validates the configuration at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` names it and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let file: File = toml::from_str(text).map_err(|source| Error::ConfigParse {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let invalid = |field: &'static str, why: String| Error::ConfigInvalid {
            path: path.to_path_buf(),
            field,
            why,
        };
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        if file.repository.mirrors.is_empty() {
            return Err(invalid(
                "repository.mirrors",
                "name at least one mirror".into(),
            ));
        }
        let (mirrors, redirects, access) = mirrors(&file.repository.mirrors, &base)
            .map_err(|why| invalid("repository.mirrors", why))?;

        let selector = |field: &'static str, slot: FileSlot| match slot {
            FileSlot::Label(l) if !l.is_empty() => Ok(PartitionSelector::Label(l)),
            FileSlot::Label(_) => Err(invalid(field, "empty label".into())),
            FileSlot::Partuuid(u) => Uuid::parse_str(&u)
                .map(PartitionSelector::PartUuid)
                .map_err(|e| invalid(field, format!("{u:?} is not a PARTUUID: {e}"))),
        };
        let layout = SlotLayout {
            a: selector("device.slot_a", file.device.slot_a)?,
            b: selector("device.slot_b", file.device.slot_b)?,
        };
        let kernel_layout = SlotLayout {
            a: selector("device.kernel_a", file.device.kernel_a)?,
            b: selector("device.kernel_b", file.device.kernel_b)?,
        };
        let all = [&layout.a, &layout.b, &kernel_layout.a, &kernel_layout.b];
        let fields = [
            "device.slot_a",
            "device.slot_b",
            "device.kernel_a",
            "device.kernel_b",
        ];
        for i in 1..all.len() {
            if let Some(j) = (0..i).find(|&j| all[j] == all[i]) {
                return Err(invalid(
                    fields[i],
                    format!("it names the same partition as {}", fields[j]),
                ));
            }
        }
        if let Some(hw) = &file.device.hardware_id {
            flipside_contract::release::check_name(hw)
                .map_err(|e| invalid("device.hardware_id", e.to_string()))?;
        }

        let trial_boots = file.update.trial_boots.unwrap_or(3);
        if !(1..=15).contains(&trial_boots) {
            return Err(invalid(
                "update.trial_boots",
                format!("{trial_boots} is not in 1..=15"),
            ));
        }
        let max_index_bytes = file.update.max_index_bytes.unwrap_or(64 << 20);
        let channel = file
            .update
            .channel
            .clone()
            .unwrap_or_else(|| flipside_contract::rollout::DEFAULT_CHANNEL.to_string());
        flipside_contract::release::check_name(&channel)
            .map_err(|e| invalid("update.channel", e.to_string()))?;
        let window = file
            .update
            .window
            .as_ref()
            .map(maintenance_window)
            .transpose()
            .map_err(|why| invalid("update.window", why))?;
        if file.update.reboot == RebootWhen::Window && window.is_none() {
            return Err(invalid(
                "update.window",
                "reboot = \"window\" needs an [update.window] with start and end".into(),
            ));
        }

        let secs = |field: &'static str, v: Option<f64>, default: Duration| match v {
            None => Ok(default),
            Some(s) if s.is_finite() && s > 0.0 && s <= MAX_SECS => Ok(Duration::from_secs_f64(s)),
            Some(s) => Err(invalid(
                field,
                format!("{s} is not a number of seconds in (0, {MAX_SECS}]"),
            )),
        };
        let millis = |field: &'static str, v: Option<u64>, default: Duration| match v {
            None => Ok(default),
            Some(ms) if ms <= MAX_BACKOFF_MS => Ok(Duration::from_millis(ms)),
            Some(ms) => Err(invalid(
                field,
                format!("{ms} ms is over the cap of {MAX_BACKOFF_MS} ms (5 minutes)"),
            )),
        };
        let sync = SyncPolicy {
            every_bytes: match file.device.sync_every_bytes {
                None => SyncPolicy::default().every_bytes,
                Some(b) if b >= 1 << 20 => b,
                Some(b) => {
                    return Err(invalid(
                        "device.sync_every_bytes",
                        format!(
                            "{b} is below 1 MiB (1048576): syncs that often slow the install down"
                        ),
                    ))
                }
            },
            every: secs(
                "device.sync_every_secs",
                file.device.sync_every_secs,
                SyncPolicy::default().every,
            )?,
        };
        let d = NetworkPolicy::default();
        let n = &file.network;
        let network = NetworkPolicy {
            connect_timeout: secs(
                "network.connect_timeout_secs",
                n.connect_timeout_secs,
                d.connect_timeout,
            )?,
            read_timeout: secs(
                "network.read_timeout_secs",
                n.read_timeout_secs,
                d.read_timeout,
            )?,
            low_speed_limit: n.low_speed_limit.unwrap_or(d.low_speed_limit),
            low_speed_time: secs(
                "network.low_speed_time_secs",
                n.low_speed_time_secs,
                d.low_speed_time,
            )?,
            retries: n.retries.unwrap_or(d.retries),
            backoff_initial: millis(
                "network.backoff_initial_ms",
                n.backoff_initial_ms,
                d.backoff_initial,
            )?,
            backoff_max: millis("network.backoff_max_ms", n.backoff_max_ms, d.backoff_max)?,
            range_gap: n.range_gap.unwrap_or(d.range_gap),
            redirects,
            ca_file: n.ca_file.clone().map(abs),
            access,
        };
        if network.retries > 100 {
            return Err(invalid(
                "network.retries",
                format!("{} is over 100", network.retries),
            ));
        }

        let reboot_command = file
            .health
            .reboot_command
            .unwrap_or_else(|| vec!["systemctl".into(), "reboot".into()]);
        if reboot_command.first().is_none_or(|c| c.is_empty()) {
            return Err(invalid("health.reboot_command", "name a program".into()));
        }
        let health = HealthConfig {
            dir: abs(file
                .health
                .dir
                .unwrap_or_else(|| PathBuf::from("/etc/flipside/health.d"))),
            timeout: secs(
                "health.timeout_secs",
                file.health.timeout_secs,
                Duration::from_secs(120),
            )?,
            reboot_command,
            reboot_timeout: secs(
                "health.reboot_timeout_secs",
                file.health.reboot_timeout_secs,
                Duration::from_secs(60),
            )?,
            no_checks: file.health.no_checks,
        };
        let events = file
            .events
            .as_ref()
            .map(|e| events_config(&e.url))
            .transpose()
            .map_err(|why| invalid("events.url", why))?;
        let progress = ProgressConfig {
            interval: secs(
                "progress.interval_secs",
                file.progress.interval_secs,
                Duration::from_secs(5),
            )?,
        };

        Ok(Config {
            path: path.to_path_buf(),
            repository: RepositoryConfig {
                mirrors,
                trusted_root: abs(file.repository.trusted_root),
            },
            device: DeviceConfig {
                disk: abs(file.device.disk),
                layout,
                kernel_layout,
                hardware_id: file.device.hardware_id,
                state_dir: abs(file.device.state_dir),
                run_dir: abs(file.device.run_dir),
                efivars: abs(file.device.efivars),
                cmdline: abs(file.device.cmdline),
                system_info: abs(file.device.system_info),
                machine_id: abs(file.device.machine_id),
                readback: file.device.readback,
                sync,
            },
            update: UpdateConfig {
                trial_boots,
                max_index_bytes,
                channel,
                pin_version: file.update.pin_version,
                reboot: file.update.reboot,
                window,
                running_check: file.update.running_check,
            },
            network,
            health,
            progress,
            events,
        })
    }
}

/// The collector of fleet events: an http(s) URL without credentials in it (they would be
/// logged with every error).
fn events_config(text: &str) -> std::result::Result<EventsConfig, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{text:?}: only http:// and https:// collectors are supported"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL holds credentials, which would be logged with every error: remove them".into(),
        );
    }
    Ok(EventsConfig { url })
}

/// The maintenance window of the configuration.
fn maintenance_window(w: &FileWindow) -> std::result::Result<MaintenanceWindow, String> {
    let days = w
        .days
        .iter()
        .map(|d| window::parse_day(d))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    MaintenanceWindow::new(
        &days,
        window::parse_time(&w.start)?,
        window::parse_time(&w.end)?,
    )
}

/// The mirrors of the configuration, the redirect setting of each HTTP one and the access
/// settings (credentials, client certificate, CA) of those that have them.
fn mirrors(
    entries: &[FileMirror],
    base: &Path,
) -> std::result::Result<(Vec<Mirror>, RedirectRules, Vec<MirrorAccess>), String> {
    let mut mirrors = Vec::new();
    let mut rules = RedirectRules::default();
    let mut access = Vec::new();
    for entry in entries {
        let settings = match entry {
            FileMirror::Plain(text) => FileMirrorTable {
                url: text.clone(),
                ..FileMirrorTable::default()
            },
            FileMirror::Table(table) => table.clone(),
        };
        let (text, redirects) = (&settings.url, settings.redirects);
        let mirror = Mirror::parse(text, base)?;
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let wanted = MirrorAccess {
            base: match &mirror {
                Mirror::Http(url) => url.clone(),
                Mirror::Dir(_) => Url::parse("file:///").expect("a URL"),
            },
            token_file: settings.token_file.map(abs),
            credentials_file: settings.credentials_file.map(abs),
            client_cert: settings.client_cert.map(abs),
            client_key: settings.client_key.map(abs),
            ca: settings.ca.map(abs),
        };
        let has_access = wanted != MirrorAccess::plain(wanted.base.clone());
        match (&mirror, redirects.is_some() || has_access) {
            (Mirror::Dir(_), true) => {
                return Err(format!(
                    "{text:?} is a directory: redirects, credentials and TLS settings apply to http(s) mirrors only"
                ))
            }
            (Mirror::Http(url), _) => {
                if let Some(r) = redirects {
                    rules.set(url.clone(), r);
                }
                if has_access {
                    wanted.check(text)?;
                    access.push(wanted);
                }
            }
            _ => {}
        }
        mirrors.push(mirror);
    }
    Ok((mirrors, rules, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[repository]
mirrors = ["https://updates.example.com/kiosk"]
trusted_root = "root.json"
[device]
disk = "/dev/vda"
"#;

    #[test]
    fn repository_paths_become_segments_below_the_base() {
        let mirror = Mirror::parse("http://127.0.0.1:8080/repo/kiosk", Path::new("/")).unwrap();
        let url = |relative: &str| match mirror.join(relative) {
            Location::Url(u) => u.to_string(),
            Location::File(p) => panic!("not a URL: {}", p.display()),
        };
        let base = "http://127.0.0.1:8080/repo/kiosk/";
        assert_eq!(
            url("metadata/1.root.json"),
            format!("{base}metadata/1.root.json")
        );
        // A role name percent-encoded as python-tuf does keeps its one encoding.
        assert_eq!(
            url("metadata/1.a%2Fb.json"),
            format!("{base}metadata/1.a%2Fb.json")
        );
        // Characters with a meaning in URLs stay in the segment.
        assert_eq!(
            url("targets/a b/c?d#e"),
            format!("{base}targets/a%20b/c%3Fd%23e")
        );
        // Dot segments, encoded or not, never climb out of the base.
        for path in [
            "targets/%2e%2e/%2e%2e/etc/passwd",
            "targets/%2E%2E/x",
            "targets/.%2e/x",
            "targets/../x",
            "targets/./x",
        ] {
            let got = url(path);
            assert!(got.starts_with(&format!("{base}targets/")), "{path}: {got}");
            let parsed = Url::parse(&got).unwrap();
            assert!(
                parsed.path().starts_with("/repo/kiosk/targets/"),
                "{path}: {got}"
            );
            assert!(parsed.path().ends_with("/x") || parsed.path().ends_with("/passwd"));
        }
        assert_eq!(
            url("targets/%2e%2e/x"),
            format!("{base}targets/%252e%252e/x")
        );
    }

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let c = Config::parse(MINIMAL, Path::new("/etc/flipside/config.toml")).unwrap();
        assert_eq!(
            c.repository.mirrors,
            vec![Mirror::Http(
                Url::parse("https://updates.example.com/kiosk/").unwrap()
            )]
        );
        assert_eq!(
            c.repository.trusted_root,
            PathBuf::from("/etc/flipside/root.json")
        );
        assert_eq!(c.device.layout, SlotLayout::default());
        assert_eq!(c.device.state_dir, PathBuf::from("/var/lib/flipside"));
        assert_eq!(c.device.run_dir, PathBuf::from("/run/flipside"));
        assert_eq!(c.update.running_check, RunningCheck::OncePerBoot);
        assert_eq!(c.device.cmdline, PathBuf::from("/proc/cmdline"));
        assert_eq!(c.device.efivars, PathBuf::from("/sys/firmware/efi/efivars"));
        assert_eq!(
            c.device.system_info,
            PathBuf::from("/.flipside/system.json")
        );
        assert_eq!(c.device.readback, ReadbackMode::Auto);
        assert_eq!(c.update.trial_boots, 3);
        assert_eq!(c.network, NetworkPolicy::default());
        assert_eq!(c.health.reboot_command, vec!["systemctl", "reboot"]);
        assert_eq!(c.health.timeout, Duration::from_secs(120));
        assert_eq!(c.health.reboot_timeout, Duration::from_secs(60));
        assert_eq!(c.health.no_checks, NoChecks::Refuse);
    }

    #[test]
    fn slots_by_partuuid_and_local_mirrors() {
        let text = r#"
[repository]
mirrors = ["/media/usb/repo", "file:///srv/repo", "relative/repo"]
trusted_root = "/etc/flipside/root.json"
[device]
disk = "disk.img"
slot_a = { partuuid = "60f54bb1-71a2-4964-b21e-2d9317ae4091" }
slot_b = { label = "other" }
[update]
trial_boots = 15
"#;
        let c = Config::parse(text, Path::new("/cfg/config.toml")).unwrap();
        assert_eq!(
            c.repository.mirrors,
            vec![
                Mirror::Dir("/media/usb/repo".into()),
                Mirror::Dir("/srv/repo".into()),
                Mirror::Dir("/cfg/relative/repo".into()),
            ]
        );
        assert_eq!(c.device.disk, PathBuf::from("/cfg/disk.img"));
        assert!(matches!(c.device.layout.a, PartitionSelector::PartUuid(_)));
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            (
                MINIMAL.replace(
                    "mirrors = [\"https://updates.example.com/kiosk\"]",
                    "mirrors = []",
                ),
                "repository.mirrors",
            ),
            (MINIMAL.replace("https://", "ftp://"), "repository.mirrors"),
            (
                format!("{MINIMAL}slot_a = {{ partuuid = \"nope\" }}\n"),
                "device.slot_a",
            ),
            (
                format!("{MINIMAL}slot_b = {{ label = \"root-a\" }}\n"),
                "device.slot_b",
            ),
            (
                format!("{MINIMAL}hardware_id = \"a/b\"\n"),
                "device.hardware_id",
            ),
            (
                format!("{MINIMAL}[update]\ntrial_boots = 0\n"),
                "update.trial_boots",
            ),
            (
                format!("{MINIMAL}[update]\ntrial_boots = 16\n"),
                "update.trial_boots",
            ),
            (
                format!("{MINIMAL}[network]\nlow_speed_time_secs = -1\n"),
                "network.low_speed_time_secs",
            ),
            (
                format!("{MINIMAL}[health]\nreboot_command = []\n"),
                "health.reboot_command",
            ),
            (
                format!("{MINIMAL}[network]\nbackoff_max_ms = 9223372036854775807\n"),
                "network.backoff_max_ms",
            ),
            (
                format!("{MINIMAL}[network]\nbackoff_initial_ms = 300001\n"),
                "network.backoff_initial_ms",
            ),
            (
                format!("{MINIMAL}[health]\nreboot_timeout_secs = 86401\n"),
                "health.reboot_timeout_secs",
            ),
        ];
        for (text, field) in cases {
            match Config::parse(&text, Path::new("/c.toml")) {
                Err(Error::ConfigInvalid { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        let unknown = format!("{MINIMAL}[health]\nno_checks = \"maybe\"\n");
        assert!(matches!(
            Config::parse(&unknown, Path::new("/c.toml")),
            Err(Error::ConfigParse { .. })
        ));
        let typo = format!("{MINIMAL}[update]\ntrial_bots = 2\n");
        assert!(matches!(
            Config::parse(&typo, Path::new("/c.toml")),
            Err(Error::ConfigParse { .. })
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = NetworkPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..NetworkPolicy::default()
        };
        let got: Vec<u128> = (1..=6).map(|a| p.backoff(a).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff(200), Duration::from_millis(1000));
    }
}
