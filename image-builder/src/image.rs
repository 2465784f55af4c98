//! `flipside-build image`: system description -> store closure -> staged tree -> squashfs ->
//! bundle + chunk index -> `release.json`; with a `[kernel]` section also `uki.efi` (the unified
//! kernel image, [`crate::uki`]) and `uki.json` (its length, sha256 and sections).
//!
//! Everything is built under a temporary directory inside the output directory and moved into
//! place only when complete, `release.json` last: a failure leaves no half-written release.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flipside_bundle::BundleParams;
use flipside_contract::release::{
    self, ClosureEntry, FileInfo, ImageInfo, Release, SystemInfo, RELEASE_FORMAT, SYSTEM_INFO_PATH,
};
use flipside_store::BuiltinStore;
use sha2::{Digest, Sha256};

use crate::rootfs::{self, Layout};
use crate::system::{self, FileRef, RootSource, System};
use crate::uki::{self, UkiInfo, UkiParts};
use crate::Class;

/// The unified kernel image in the output directory.
pub const UKI_FILE: &str = "uki.efi";
/// The record of [`UKI_FILE`] (name, length, sha256, sections) in the output directory.
pub const UKI_RECORD: &str = "uki.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the image is {size} bytes but the slot holds {slot} bytes; shrink the system or raise `slot_size`")]
    TooLarge { size: u64, slot: u64 },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("root {root:?}: cannot use host file {path}: {source}; check the `files` entry")]
    HostFile {
        root: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel.{field} {reference:?}: {why}; name a regular file of the root")]
    KernelFile {
        field: &'static str,
        reference: String,
        why: String,
    },
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::TooLarge { .. } => Class::TooLarge,
            Error::Io { .. } => Class::Io,
            Error::HostFile { .. } => Class::Store,
            Error::KernelFile { .. } => Class::Input,
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The exit class of a bundle failure.
pub(crate) fn bundle_class(e: &flipside_bundle::Error) -> Class {
    use flipside_bundle::Error as B;
    match e {
        B::InvalidParams { .. } | B::EmptyImage { .. } => Class::Input,
        B::ThreadPool { .. } | B::Compress { .. } | B::BuildIndex { .. } => Class::Internal,
        B::BundleLength { .. }
        | B::Chunk { .. }
        | B::ImageHash { .. }
        | B::IndexTooLarge { .. }
        | B::DecodeIndex { .. } => Class::Repository,
        B::OpenImage { .. }
        | B::ReadImage { .. }
        | B::ImageChanged { .. }
        | B::CreateOutput { .. }
        | B::WriteOutput { .. }
        | B::Persist { .. }
        | B::OpenBundle { .. }
        | B::ReadBundle { .. }
        | B::WriteSink { .. }
        | B::ReadIndex { .. } => Class::Io,
    }
}

/// How to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// The built-in store that `dir` and `files` roots are imported into.
    pub store: PathBuf,
    /// Where the image, bundle, index and `release.json` go.
    pub out_dir: PathBuf,
    /// Overrides the description's `slot_size`.
    pub slot_size: Option<u64>,
    pub bundle: BundleParams,
}

/// File names of a release's outputs inside the output directory.
pub fn image_file_name(name: &str, version: u64) -> String {
    format!("{name}-{version}.squashfs")
}

/// What [`build`] wrote.
#[derive(Debug, Clone)]
pub struct Built {
    /// As written to `release.json`.
    pub release: Release,
    /// [`UKI_FILE`], when the description has a `[kernel]` section.
    pub uki: Option<UkiInfo>,
}

/// `uki.json`: the UKI's file name, then [`UkiInfo`].
#[derive(serde::Serialize)]
struct UkiRecord<'a> {
    name: &'a str,
    #[serde(flatten)]
    info: &'a UkiInfo,
}

/// Builds the release described by `system_toml`; returns what was written.
pub fn build(system_toml: &Path, options: &Options) -> Result<Built, crate::Error> {
    let system = system::load(system_toml)?;
    fs::create_dir_all(&options.out_dir).map_err(io("create directory", &options.out_dir))?;
    let work = tempfile::Builder::new()
        .prefix(".flipside-build-")
        .tempdir_in(&options.out_dir)
        .map_err(io("create a temporary directory in", &options.out_dir))?;
    let result = build_in(&system, options, work.path());
    // Store trees are staged read-only (as in any store); make them removable again.
    make_writable(work.path());
    result
}

fn build_in(system: &System, options: &Options, work: &Path) -> Result<Built, crate::Error> {
    let store = BuiltinStore::open(&options.store)?;
    let roots = import_roots(system, &store, work)?;
    let specs: Vec<String> = roots.values().cloned().collect();
    let closure = flipside_store::resolve_roots(&specs, Some(&store))?;
    log::info!(
        "closure of {} roots: {} store paths",
        roots.len(),
        closure.paths().len()
    );

    let stage = work.join("stage");
    fs::create_dir(&stage).map_err(io("create directory", &stage))?;
    for path in closure.paths() {
        let dest = rootfs::create_parents(&stage, &path.path)?;
        flipside_store::materialize(path, &dest)?;
    }
    let entries: Vec<ClosureEntry> = closure.entries();
    let init = system::resolve(&system.init, &roots);
    let info = SystemInfo {
        format: RELEASE_FORMAT,
        name: system.name.clone(),
        version: system.version,
        display_version: system.display_version.clone(),
        hardware_id: system.hardware_id.clone(),
        init: init.clone(),
        closure: entries.clone(),
    };
    let layout = Layout {
        mountpoints: system.mountpoints.clone(),
        symlinks: system
            .symlinks
            .iter()
            .map(|(l, t)| (l.clone(), system::resolve(t, &roots)))
            .collect(),
        init: init.clone(),
        files: vec![(SYSTEM_INFO_PATH.to_string(), to_json(&info))],
    };
    rootfs::add_layout(&stage, &layout)?;

    // Before the squashfs, so that a missing stub or kernel fails fast; files of roots are
    // read from the stage, exactly as they are in the image.
    let uki = match &system.kernel {
        Some(kernel) => {
            let file = |field, r: &FileRef| stage_file(field, r, &roots, &stage);
            let (image, initrd) = (
                file("image", &kernel.image)?,
                file("initrd", &kernel.initrd)?,
            );
            let os_release = uki::os_release(&system.name, system.version, &system.display_version);
            let parts = UkiParts {
                stub: &kernel.stub,
                kernel: &image,
                initrd: &initrd,
                cmdline: &kernel.cmdline,
                os_release: &os_release,
            };
            let info = uki::assemble(&parts, &work.join(UKI_FILE))?;
            let record = UkiRecord {
                name: UKI_FILE,
                info: &info,
            };
            let record_path = work.join(UKI_RECORD);
            fs::write(&record_path, to_json(&record)).map_err(io("write", &record_path))?;
            log::info!("{UKI_FILE}: {} bytes sha256 {}", info.length, info.sha256);
            Some(info)
        }
        None => None,
    };

    let image = work.join("image");
    let size = rootfs::make_squashfs(&stage, &image)?;
    if let Some(slot) = options.slot_size.or(system.slot_size) {
        if size > slot {
            return Err(Error::TooLarge { size, slot }.into());
        }
    }
    make_writable(&stage);
    fs::remove_dir_all(&stage).map_err(io("remove", &stage))?;

    let (bundle_name, index_name) = release::file_names(&system.name, system.version);
    let bundle = work.join("bundle");
    let index = flipside_bundle::write_bundle(&image, &bundle, &options.bundle)?;
    let index_path = work.join("index");
    fs::write(&index_path, index.encode()).map_err(io("write", &index_path))?;
    // The bundle is written through a temporary file, created 0600; give it the mode the index
    // was created with (0666 less the umask), like the image and release.json.
    let created = fs::metadata(&index_path).map_err(io("read permissions of", &index_path))?;
    fs::set_permissions(&bundle, created.permissions())
        .map_err(io("set permissions of", &bundle))?;

    let release = Release {
        format: RELEASE_FORMAT,
        name: system.name.clone(),
        version: system.version,
        display_version: system.display_version.clone(),
        hardware_id: system.hardware_id.clone(),
        image: ImageInfo {
            filesystem: "squashfs".into(),
            length: size,
            sha256: hex::encode(index.image_sha256()),
        },
        bundle: file_info(&bundle, bundle_name)?,
        index: file_info(&index_path, index_name)?,
        init,
        closure: entries,
        kernel: None,
    };
    let release_path = work.join("release.json");
    fs::write(&release_path, to_json(&release)).map_err(io("write", &release_path))?;

    let out = &options.out_dir;
    if uki.is_some() {
        for name in [UKI_FILE, UKI_RECORD] {
            let to = out.join(name);
            fs::rename(work.join(name), &to).map_err(io("move into place", &to))?;
        }
    }
    for (from, to) in [
        (
            image,
            out.join(image_file_name(&system.name, system.version)),
        ),
        (bundle, out.join(&release.bundle.name)),
        (index_path, out.join(&release.index.name)),
        (release_path, out.join("release.json")),
    ] {
        fs::rename(&from, &to).map_err(io("move into place", &to))?;
    }
    sync_dir(out)?;
    Ok(Built { release, uki })
}

/// The host file a `[kernel]` file reference names: a host path as it is, a file of a root
/// inside the stage, reached through directories only (a symlink could lead out of the
/// stage, onto the build host).
fn stage_file(
    field: &'static str,
    reference: &FileRef,
    roots: &BTreeMap<String, String>,
    stage: &Path,
) -> Result<PathBuf, Error> {
    let (root, path) = match reference {
        FileRef::Host(path) => return Ok(path.clone()),
        FileRef::InRoot { root, path } => (root, path),
    };
    let bad = |why: String| Error::KernelFile {
        field,
        reference: format!("@{root}/{path}"),
        why,
    };
    // validate() has checked that the root exists.
    let store_path = roots.get(root).map_or("", String::as_str);
    let mut current = stage.join(store_path.trim_start_matches('/'));
    let mut inside = PathBuf::from(store_path);
    for part in Path::new(path).components() {
        current.push(part);
        inside.push(part);
        let meta = current
            .symlink_metadata()
            .map_err(|_| bad(format!("{} does not exist", inside.display())))?;
        if meta.file_type().is_symlink() {
            return Err(bad(format!("{} is a symlink", inside.display())));
        }
    }
    if !current.is_file() {
        return Err(bad(format!("{} is not a regular file", inside.display())));
    }
    Ok(current)
}

/// Imports `dir` and `files` roots into the built-in store; returns root name -> store path.
fn import_roots(
    system: &System,
    store: &BuiltinStore,
    work: &Path,
) -> Result<BTreeMap<String, String>, crate::Error> {
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    for root in system.import_order()? {
        let refs: Vec<String> = root.refs.iter().map(|r| paths[r].clone()).collect();
        let path = match &root.source {
            RootSource::StorePath(path) => path.clone(),
            RootSource::Dir(dir) => store.add(dir, &root.name, &refs)?.path,
            RootSource::Files { files, links } => {
                let dir = assemble(work, &root.name, files, links)?;
                store.add(&dir, &root.name, &refs)?.path
            }
        };
        log::info!("root {}: {}", root.name, path);
        paths.insert(root.name.clone(), path);
    }
    Ok(paths)
}

/// Builds a package directory from host files and symlinks.
fn assemble(
    work: &Path,
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    links: &BTreeMap<String, String>,
) -> Result<PathBuf, Error> {
    let dir = work.join(format!("package-{name}"));
    fs::create_dir(&dir).map_err(io("create directory", &dir))?;
    for (rel, host) in files {
        let dest = rootfs::create_parents(&dir, rel).map_err(|e| match e {
            rootfs::Error::Io {
                action,
                path,
                source,
            } => Error::Io {
                action,
                path,
                source,
            },
            other => Error::Io {
                action: "create",
                path: dir.join(rel),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
        fs::copy(host, &dest).map_err(|source| Error::HostFile {
            root: name.into(),
            path: host.clone(),
            source,
        })?;
    }
    for (rel, target) in links {
        let dest = dir.join(rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io("create directory", parent))?;
        }
        std::os::unix::fs::symlink(target, &dest).map_err(io("create symlink", &dest))?;
    }
    Ok(dir)
}

fn file_info(path: &Path, name: String) -> Result<FileInfo, Error> {
    let mut file = fs::File::open(path).map_err(io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        length += n as u64;
    }
    Ok(FileInfo {
        name,
        length,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).expect("release types always serialise");
    text.push(b'\n');
    text
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

/// Best effort: gives the owner write permission on every directory below `dir`, so that a
/// non-root user can delete a staged read-only store tree.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = dir.symlink_metadata() else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(
            dir,
            fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
        );
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}
