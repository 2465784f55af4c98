//! The system description (`system.toml`): what goes into an image. Parsing and validation
//! are pure; paths in the file are resolved against the file's directory by [`load`].
//!
//! ```toml
//! name = "kiosk"
//! version = 3                 # monotonic release number (anti-rollback)
//! display_version = "1.2.0"
//! hardware_id = "qemu-x86_64"
//! architecture = "x86_64"     # optional, x86_64 or aarch64 (default x86_64)
//! init = "@base/bin/init"     # "@ROOT/..." is the store path of the root named ROOT
//! slot_size = "64MiB"         # optional: refuse an image larger than the slot
//! mountpoints = ["/proc", "/sys", "/dev", "/run", "/tmp", "/data"]
//!
//! [symlinks]
//! "/bin" = "@busybox/bin"
//!
//! [[root]]                    # a directory imported into the built-in store
//! name = "base"
//! dir = "base"
//! refs = ["busybox"]          # roots it references (besides those found by scanning)
//!
//! [[root]]                    # a package assembled from files of the build host
//! name = "busybox"
//! files = { "bin/busybox" = "/bin/busybox" }
//! links = { "bin/sh" = "busybox" }
//!
//! [[root]]                    # an existing Nix or built-in store path
//! name = "app"
//! path = "/nix/store/0c0aq1rx8hwbzj1l1lvxv3f1pz3vmd4y-app"
//!
//! [kernel]                    # optional: also build the kernel part (a unified kernel image)
//! image = "@linux/boot/vmlinuz"      # the kernel: a file of a root ("@ROOT/path") ...
//! initrd = "initrd.img"              # ... or a file of the build host (relative: to this file)
//! cmdline = "console=ttyS0 ro"       # printable ASCII, at most 2047 bytes
//! stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"   # optional; this is the default
//! release = "6.1.0-57-amd64"         # optional for an x86 bzImage, required otherwise
//! verity = "restart"                 # optional: dm-verity root, "restart" or "panic"
//! ```
//!
//! With `[kernel]`, a release has a kernel part besides the root image, for devices that boot
//! a kernel from each slot (flipside-boot): `flipside-build image` writes `uki.efi` (see
//! [`crate::uki`]): the EFI stub with the kernel, the initrd, the command line and an
//! os-release text generated from `name`, `version` and `display_version`
//! ([`crate::uki::os_release`]: `NAME`, `ID`, `IMAGE_ID`, `VERSION`, `VERSION_ID`,
//! `IMAGE_VERSION` (the release number) and `PRETTY_NAME`); then cuts it into
//! `<name>-<version>.kernel.bundle` and `.kernel.index` with the same chunking and zstd level
//! as the root image, and describes them in `release.json`'s `kernel` object (the kernel
//! release, the UKI's length and sha256, the two files). A device writes the UKI raw to the
//! slot's kernel partition in the same install as the root image.
//!
//! With `verity`, the root image gets its dm-verity hash tree appended (`flipside_verity`), and
//! the UKI's command line gets `flipside.verity=...` with the root hash: the initramfs opens the
//! root through dm-verity, and the Secure Boot signature over the UKI covers every block of the
//! root. `restart` or `panic` is what the kernel does on a block that does not match at run time.
//!
//! `release` is the kernel's release as `uname -r` prints it. An x86 bzImage names its own in
//! its setup header ([`crate::bzimage`]); `release`, when given too, must agree with it. Other
//! kernel images (arm64 `Image`) carry none: give it. A file of a root must be a regular file
//! reached without symlinks, and it is in the root image too, like everything of the root's
//! closure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use flipside_contract::arch::Architecture;
use serde::Deserialize;

use crate::Class;

/// Top-level names the builder owns inside every image.
pub const RESERVED: &[&str] = &["/flipside", "/nix", "/.flipside", "/init"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read system description {path}: {source}; check the path")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("system description {path} is not valid TOML for flipside: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("system description: {field}: {why}")]
    Invalid { field: String, why: String },
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::Read { .. } => Class::Io,
            Error::Parse { .. } | Error::Invalid { .. } => Class::Input,
        }
    }
}

fn invalid(field: impl Into<String>, why: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        why: why.into(),
    }
}

/// A validated system description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    pub name: String,
    pub version: u64,
    pub display_version: String,
    pub hardware_id: String,
    /// What the image is built for; devices of another architecture refuse it.
    pub architecture: Architecture,
    /// `init` as written (may start with `@ROOT`).
    pub init: String,
    pub slot_size: Option<u64>,
    /// Normalised absolute paths, sorted.
    pub mountpoints: Vec<String>,
    /// Link path (normalised, absolute) -> target as written (may start with `@ROOT`).
    pub symlinks: BTreeMap<String, String>,
    /// In the order written; [`System::import_order`] gives a dependency order.
    pub roots: Vec<Root>,
    /// The `[kernel]` section: what goes into the unified kernel image, if one is built.
    pub kernel: Option<Kernel>,
}

/// What goes into the unified kernel image (`uki.efi`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The kernel image (an x86 bzImage, an arm64 `Image`, ...), as the stub boots it.
    pub image: FileRef,
    pub initrd: FileRef,
    /// Checked by [`crate::uki::check_cmdline`].
    pub cmdline: String,
    /// systemd's EFI stub on the build host (default [`crate::uki::DEFAULT_STUB`]).
    pub stub: PathBuf,
    /// The kernel's release (`uname -r`) as given by `release =`; checked against the image's
    /// own when it is a bzImage, required when it is not.
    pub release: Option<String>,
    /// Open the root through dm-verity, reacting to corruption this way.
    pub verity: Option<flipside_verity::OnCorruption>,
}

/// A file named in the description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRef {
    /// `@ROOT/path`: the file at `path` (relative, normalised) inside the root's store path.
    InRoot { root: String, path: String },
    /// A file of the build host, resolved against the description's directory.
    Host(PathBuf),
}

impl std::fmt::Display for FileRef {
    /// As written in the description (`@ROOT/path`), or the resolved host path.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileRef::InRoot { root, path } => write!(f, "@{root}/{path}"),
            FileRef::Host(path) => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub name: String,
    pub source: RootSource,
    /// Names of other roots this one references explicitly.
    pub refs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// A directory to import into the built-in store.
    Dir(PathBuf),
    /// Files of the build host (path in package -> host file) and symlinks (path -> target).
    Files {
        files: BTreeMap<String, PathBuf>,
        links: BTreeMap<String, String>,
    },
    /// An existing store path (Nix or built-in).
    StorePath(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    name: String,
    version: u64,
    display_version: Option<String>,
    hardware_id: String,
    architecture: Option<String>,
    init: String,
    slot_size: Option<toml::Value>,
    #[serde(default)]
    mountpoints: Vec<String>,
    #[serde(default)]
    symlinks: BTreeMap<String, String>,
    #[serde(default, rename = "root")]
    roots: Vec<RawRoot>,
    kernel: Option<RawKernel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    image: String,
    initrd: String,
    cmdline: String,
    stub: Option<PathBuf>,
    release: Option<String>,
    verity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    name: String,
    dir: Option<PathBuf>,
    path: Option<String>,
    files: Option<BTreeMap<String, PathBuf>>,
    #[serde(default)]
    links: BTreeMap<String, String>,
    #[serde(default)]
    refs: Vec<String>,
}

/// Reads and validates a system description; relative `dir` and `files` sources are resolved
/// against the directory of `path`.
pub fn load(path: &Path) -> Result<System, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|err| match err {
        Error::Parse { message, .. } => Error::Parse {
            path: path.to_path_buf(),
            message,
        },
        other => other,
    })
}

/// Parses and validates a system description; `base` resolves relative host paths.
pub fn parse(text: &str, base: &Path) -> Result<System, Error> {
    let raw: RawSystem = toml::from_str(text).map_err(|e| Error::Parse {
        path: PathBuf::new(),
        message: e.to_string(),
    })?;
    validate(raw, base)
}

fn validate(raw: RawSystem, base: &Path) -> Result<System, Error> {
    flipside_contract::release::check_name(&raw.name)
        .map_err(|e| invalid("name", e.to_string()))?;
    flipside_contract::release::check_name(&raw.hardware_id)
        .map_err(|e| invalid("hardware_id", e.to_string()))?;
    if raw.version == 0 {
        return Err(invalid(
            "version",
            "must be 1 or more: devices refuse releases not above the installed one",
        ));
    }
    let display_version = raw
        .display_version
        .unwrap_or_else(|| raw.version.to_string());
    if display_version.is_empty() || display_version.chars().any(char::is_control) {
        return Err(invalid(
            "display_version",
            "must be non-empty printable text",
        ));
    }
    let slot_size = raw.slot_size.as_ref().map(parse_size).transpose()?;

    let mut roots = Vec::new();
    let mut names = BTreeSet::new();
    for r in raw.roots {
        let field = format!("root {:?}", r.name);
        flipside_contract::release::check_name(&r.name)
            .map_err(|e| invalid(&field, e.to_string()))?;
        if !names.insert(r.name.clone()) {
            return Err(invalid(
                field,
                "two roots have this name; names must be unique",
            ));
        }
        let source = match (r.dir, r.path, r.files) {
            (Some(dir), None, None) if r.links.is_empty() => RootSource::Dir(base.join(dir)),
            (None, Some(path), None) if r.links.is_empty() => RootSource::StorePath(path),
            (None, None, Some(files)) => {
                for p in files.keys().chain(r.links.keys()) {
                    relative_path(p).map_err(|why| invalid(format!("{field} file {p:?}"), why))?;
                }
                let files = files.into_iter().map(|(k, v)| (k, base.join(v))).collect();
                RootSource::Files {
                    files,
                    links: r.links,
                }
            }
            _ => {
                return Err(invalid(
                    field,
                    "give exactly one of `dir`, `path` or `files` (`links` goes with `files`)",
                ))
            }
        };
        roots.push(Root {
            name: r.name,
            source,
            refs: r.refs,
        });
    }
    if roots.is_empty() {
        return Err(invalid("root", "at least one [[root]] is needed"));
    }
    for root in &roots {
        for r in &root.refs {
            if !names.contains(r) {
                return Err(invalid(
                    format!("root {:?} refs", root.name),
                    format!("no root is named {r:?}"),
                ));
            }
        }
    }

    let mut taken = BTreeSet::new();
    let mut mountpoints = Vec::new();
    for m in raw.mountpoints {
        let norm = image_path(&m).map_err(|why| invalid(format!("mountpoint {m:?}"), why))?;
        if !taken.insert(norm.clone()) {
            return Err(invalid(format!("mountpoint {m:?}"), "listed twice"));
        }
        mountpoints.push(norm);
    }
    mountpoints.sort();
    let mut symlinks = BTreeMap::new();
    for (link, target) in raw.symlinks {
        let norm = image_path(&link).map_err(|why| invalid(format!("symlink {link:?}"), why))?;
        if !taken.insert(norm.clone()) {
            return Err(invalid(
                format!("symlink {link:?}"),
                "is also a mountpoint or listed twice",
            ));
        }
        check_reference(&target, &names)
            .map_err(|why| invalid(format!("symlink {link:?}"), why))?;
        symlinks.insert(norm, target);
    }
    // A path below another one would be created inside a symlink or clash with a mountpoint's
    // own contents: refuse rather than guess.
    for a in &taken {
        for b in &taken {
            if b.starts_with(&format!("{a}/")) {
                return Err(invalid(
                    format!("{b:?}"),
                    format!("lies inside {a:?}; list only one of them"),
                ));
            }
        }
    }
    check_reference(&raw.init, &names).map_err(|why| invalid("init", why))?;
    if !raw.init.starts_with('@') && !raw.init.starts_with('/') {
        return Err(invalid(
            "init",
            "must be an absolute path in the image or start with @ROOT",
        ));
    }

    let kernel = raw
        .kernel
        .map(|k| validate_kernel(k, base, &names))
        .transpose()?;

    let architecture = raw
        .architecture
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|why| invalid("architecture", why))?
        .unwrap_or_default();
    Ok(System {
        name: raw.name,
        version: raw.version,
        display_version,
        hardware_id: raw.hardware_id,
        architecture,
        init: raw.init,
        slot_size,
        mountpoints,
        symlinks,
        roots,
        kernel,
    })
}

fn validate_kernel(raw: RawKernel, base: &Path, roots: &BTreeSet<String>) -> Result<Kernel, Error> {
    crate::uki::check_cmdline(&raw.cmdline).map_err(|e| match e {
        crate::uki::Error::Cmdline { why, .. } => invalid("kernel.cmdline", why),
        other => invalid("kernel.cmdline", other.to_string()),
    })?;
    if let Some(release) = &raw.release {
        flipside_contract::release::check_kernel_release(release)
            .map_err(|e| invalid("kernel.release", e.to_string()))?;
    }
    let verity = match raw.verity.as_deref() {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| {
            invalid(
                "kernel.verity",
                format!("{v:?} is neither \"restart\" nor \"panic\""),
            )
        })?),
    };
    if raw.cmdline.contains(flipside_verity::param::KEY) {
        return Err(invalid(
            "kernel.cmdline",
            "names flipside.verity= itself; set `verity =` and the build adds the root hash",
        ));
    }
    Ok(Kernel {
        image: file_ref("kernel.image", &raw.image, base, roots)?,
        initrd: file_ref("kernel.initrd", &raw.initrd, base, roots)?,
        cmdline: raw.cmdline,
        stub: raw
            .stub
            .map_or_else(|| PathBuf::from(crate::uki::DEFAULT_STUB), |s| base.join(s)),
        release: raw.release,
        verity,
    })
}

/// `@ROOT/path` (a file inside a root) or a host path.
fn file_ref(
    field: &str,
    value: &str,
    base: &Path,
    roots: &BTreeSet<String>,
) -> Result<FileRef, Error> {
    match value.strip_prefix('@') {
        Some(rest) => {
            let (root, path) = rest.split_once('/').ok_or_else(|| {
                invalid(
                    field,
                    "must name a file inside the root: \"@ROOT/path/to/file\"",
                )
            })?;
            if !roots.contains(root) {
                return Err(invalid(field, format!("@{root} names no root")));
            }
            relative_path(path).map_err(|why| invalid(field, why))?;
            Ok(FileRef::InRoot {
                root: root.to_string(),
                path: path.to_string(),
            })
        }
        None if value.is_empty() => Err(invalid(field, "must not be empty")),
        None => Ok(FileRef::Host(base.join(value))),
    }
}

/// An absolute, normalised path inside the image that the builder may create.
fn image_path(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err("must be an absolute path".into());
    }
    let parts = normal_components(&p[1..])?;
    if parts.is_empty() {
        return Err("must not be the root directory".into());
    }
    let norm = format!("/{}", parts.join("/"));
    for reserved in RESERVED {
        if norm == *reserved || norm.starts_with(&format!("{reserved}/")) {
            return Err(format!("{reserved} is reserved for flipside"));
        }
    }
    Ok(norm)
}

/// A relative path inside a package: plain components only.
fn relative_path(p: &str) -> Result<(), String> {
    if p.starts_with('/') {
        return Err("must be relative to the package".into());
    }
    match normal_components(p)?.is_empty() {
        true => Err("must not be empty".into()),
        false => Ok(()),
    }
}

fn normal_components(p: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or("must be UTF-8")?),
            _ => return Err("must not contain '.', '..' or a root".into()),
        }
    }
    // Path::components() silently drops "." and repeated slashes; refuse them outright.
    if p.split('/').filter(|s| !s.is_empty()).count() != parts.len() || p.contains("//") {
        return Err("must not contain '.' or empty components".into());
    }
    Ok(parts)
}

/// `@ROOT` and `@ROOT/rest` must name a root.
fn check_reference(target: &str, roots: &BTreeSet<String>) -> Result<(), String> {
    if let Some(rest) = target.strip_prefix('@') {
        let name = rest.split('/').next().unwrap_or_default();
        if !roots.contains(name) {
            return Err(format!("@{name} names no root"));
        }
    }
    if target.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(())
}

/// Replaces a leading `@ROOT` by that root's store path (as seen inside the image).
pub fn resolve(target: &str, store_paths: &BTreeMap<String, String>) -> String {
    match target.strip_prefix('@') {
        Some(rest) => {
            let (name, tail) = rest.split_once('/').map_or((rest, ""), |(n, t)| (n, t));
            match (store_paths.get(name), tail.is_empty()) {
                (Some(path), true) => path.clone(),
                (Some(path), false) => format!("{path}/{tail}"),
                // validate() has checked every reference.
                (None, _) => target.to_string(),
            }
        }
        None => target.to_string(),
    }
}

/// `"64MiB"`, `"1GiB"`, `"500MB"` or a number of bytes.
fn parse_size(value: &toml::Value) -> Result<u64, Error> {
    let bad = || {
        invalid(
            "slot_size",
            "must be a number of bytes or a size like \"64MiB\", \"2GiB\", \"500MB\"",
        )
    };
    match value {
        toml::Value::Integer(n) if *n > 0 => Ok(*n as u64),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (digits, unit) = s.split_at(split);
            let n: u64 = digits.parse().map_err(|_| bad())?;
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                "TiB" => 1 << 40,
                "kB" | "KB" => 1_000,
                "MB" => 1_000_000,
                "GB" => 1_000_000_000,
                _ => return Err(bad()),
            };
            n.checked_mul(mult).filter(|n| *n > 0).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

impl System {
    /// Roots in an order where every root comes after the roots it references.
    pub fn import_order(&self) -> Result<Vec<&Root>, Error> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::new();
        while order.len() < self.roots.len() {
            let before = order.len();
            for root in &self.roots {
                if !done.contains(root.name.as_str())
                    && root.refs.iter().all(|r| done.contains(r.as_str()))
                {
                    done.insert(&root.name);
                    order.push(root);
                }
            }
            if order.len() == before {
                return Err(invalid(
                    "root refs",
                    "the roots reference each other in a cycle",
                ));
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        name = "kiosk"
        version = 3
        hardware_id = "qemu-x86_64"
        init = "@base/bin/init"
        slot_size = "64MiB"
        mountpoints = ["/proc", "/data"]
        [symlinks]
        "/bin" = "@busybox/bin"
        [[root]]
        name = "base"
        dir = "base"
        refs = ["busybox"]
        [[root]]
        name = "busybox"
        files = { "bin/busybox" = "/bin/busybox" }
        links = { "bin/sh" = "busybox" }
    "#;

    fn parse_err(text: &str) -> String {
        parse(text, Path::new("/x")).unwrap_err().to_string()
    }

    #[test]
    fn minimal_description_parses() {
        let s = parse(MINIMAL, Path::new("/x")).unwrap();
        assert_eq!(s.display_version, "3");
        assert_eq!(s.slot_size, Some(64 << 20));
        assert_eq!(s.mountpoints, ["/data", "/proc"]);
        assert_eq!(s.roots[0].source, RootSource::Dir("/x/base".into()));
        let order: Vec<_> = s
            .import_order()
            .unwrap()
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(order, ["busybox", "base"]);
    }

    #[test]
    fn resolve_replaces_root_names() {
        let paths = BTreeMap::from([("base".to_string(), "/flipside/store/abc-base".to_string())]);
        assert_eq!(
            resolve("@base/bin/init", &paths),
            "/flipside/store/abc-base/bin/init"
        );
        assert_eq!(resolve("@base", &paths), "/flipside/store/abc-base");
        assert_eq!(resolve("/bin/sh", &paths), "/bin/sh");
    }

    #[test]
    fn bad_descriptions_name_the_problem() {
        let cases = [
            (MINIMAL.replace("version = 3", "version = 0"), "version"),
            (MINIMAL.replace("\"kiosk\"", "\"../kiosk\""), "name"),
            (
                MINIMAL.replace("@base/bin/init", "@nope/init"),
                "@nope names no root",
            ),
            (
                MINIMAL.replace("\"/data\"", "\"/data/../etc\""),
                "mountpoint",
            ),
            (MINIMAL.replace("\"/data\"", "\"/nix\""), "reserved"),
            (MINIMAL.replace("\"/data\"", "\"/bin/x\""), "lies inside"),
            (
                MINIMAL.replace("\"/data\"", "\"/bin\""),
                "also a mountpoint",
            ),
            (MINIMAL.replace("64MiB", "64 parsecs"), "slot_size"),
            (
                MINIMAL.replace("refs = [\"busybox\"]", "refs = [\"ghost\"]"),
                "no root is named",
            ),
            (
                MINIMAL.replace("dir = \"base\"", "dir = \"base\"\npath = \"/nix/store/x\""),
                "exactly one",
            ),
            (MINIMAL.replace("bin/sh", "../sh"), "must not contain"),
            (MINIMAL.replace("hardware_id", "hardware"), "hardware"),
            (
                MINIMAL.replace("version = 3", "version = 3\narchitecture = \"arm64\""),
                "not a supported architecture",
            ),
            (
                format!("{MINIMAL}\n[[root]]\nname = \"base\"\ndir = \"x\""),
                "unique",
            ),
        ];
        for (text, expected) in cases {
            let err = parse_err(&text);
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn the_kernel_section_names_files_of_roots_or_the_host() {
        let text = format!(
            "{MINIMAL}\n[kernel]\nimage = \"@base/boot/vmlinuz\"\ninitrd = \"initrd.img\"\n\
             cmdline = \"console=ttyS0 ro\"\n"
        );
        let kernel = parse(&text, Path::new("/x")).unwrap().kernel.unwrap();
        assert_eq!(
            kernel.image,
            FileRef::InRoot {
                root: "base".into(),
                path: "boot/vmlinuz".into()
            }
        );
        assert_eq!(kernel.initrd, FileRef::Host("/x/initrd.img".into()));
        assert_eq!(kernel.stub, Path::new(crate::uki::DEFAULT_STUB));
        let with_stub = text.replace("ro\"", "ro\"\nstub = \"stub.efi\"");
        let kernel = parse(&with_stub, Path::new("/x")).unwrap().kernel.unwrap();
        assert_eq!(kernel.stub, Path::new("/x/stub.efi"));
        assert_eq!(kernel.release, None);
        let with_release = text.replace("ro\"", "ro\"\nrelease = \"6.1.0-57-amd64\"");
        let kernel = parse(&with_release, Path::new("/x"))
            .unwrap()
            .kernel
            .unwrap();
        assert_eq!(kernel.release.as_deref(), Some("6.1.0-57-amd64"));
        assert_eq!(parse(MINIMAL, Path::new("/x")).unwrap().kernel, None);

        for (edit, expected) in [
            (
                text.replace("@base/boot/vmlinuz", "@nope/vmlinuz"),
                "@nope names no root",
            ),
            (
                text.replace("@base/boot/vmlinuz", "@base"),
                "inside the root",
            ),
            (
                text.replace("@base/boot/vmlinuz", "@base/../x"),
                "must not contain",
            ),
            (text.replace("\"initrd.img\"", "\"\""), "kernel.initrd"),
            (text.replace("console=ttyS0 ro", ""), "kernel.cmdline"),
            (text.replace("cmdline", "cmd_line"), "cmd_line"),
            (
                text.replace("ro\"", "ro\"\nrelease = \"6.1 amd64\""),
                "kernel.release: invalid kernel release",
            ),
            (
                text.replace("ro\"", "ro\"\nrelease = \"\""),
                "kernel.release",
            ),
        ] {
            let err = parse_err(&edit);
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn reference_cycles_are_refused() {
        let text = MINIMAL
            .replace(
                "files = { \"bin/busybox\" = \"/bin/busybox\" }",
                "dir = \"bb\"\nrefs = [\"base\"]",
            )
            .replace("links = { \"bin/sh\" = \"busybox\" }", "");
        let s = parse(&text, Path::new("/x")).unwrap();
        assert!(s.import_order().unwrap_err().to_string().contains("cycle"));
    }

    #[test]
    fn sizes() {
        let v = |s: &str| parse_size(&toml::Value::String(s.into()));
        assert_eq!(v("1GiB").unwrap(), 1 << 30);
        assert_eq!(v("500MB").unwrap(), 500_000_000);
        assert_eq!(v("4096").unwrap(), 4096);
        assert!(v("0").is_err());
        assert!(v("-1MiB").is_err());
        assert!(v("99999999999999999999TiB").is_err());
    }

    #[test]
    fn the_architecture_defaults_to_x86_64_and_is_read() {
        let base = Path::new("/src");
        assert_eq!(
            parse(MINIMAL, base).unwrap().architecture,
            Architecture::X86_64
        );
        let arm = MINIMAL.replace("version = 3", "version = 3\narchitecture = \"aarch64\"");
        assert_eq!(
            parse(&arm, base).unwrap().architecture,
            Architecture::Aarch64
        );
    }
}
