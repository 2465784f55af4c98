//! `flipside-build image`: system description -> store closure -> staged tree -> squashfs ->
//! bundle + chunk index -> `release.json`. With a `[kernel]` section the release also has a
//! kernel part: `uki.efi` (the unified kernel image, [`crate::uki`]) cut into its own bundle and
//! chunk index with the same parameters, named by
//! [`kernel_file_names`](flipside_contract::release::kernel_file_names) and described, with the
//! kernel release, in `release.json`'s `kernel` object.
//!
//! Everything is built under a temporary directory inside the output directory and moved into
//! place only when complete, `release.json` last: a failure leaves no half-written release.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flipside_bundle::BundleParams;
use flipside_contract::release::{
    self, ClosureEntry, FileInfo, ImageInfo, KernelPart, Release, SystemInfo, RELEASE_FORMAT,
    SYSTEM_INFO_PATH, UKI_FORMAT,
};
use flipside_store::BuiltinStore;
use sha2::{Digest, Sha256};

use crate::bzimage;
use crate::rootfs::{self, Layout};
use crate::system::{self, FileRef, Kernel, RootSource, System};
use crate::uki::{self, UkiInfo, UkiParts};
use crate::Class;

/// The unified kernel image in the output directory (its length and sha256 are in
/// `release.json`'s kernel part).
pub const UKI_FILE: &str = "uki.efi";

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
    #[error("kernel.image {reference}: {source}; give a bzImage as built, or a kernel image with `release =`")]
    KernelHeader {
        reference: String,
        source: bzimage::Error,
    },
    #[error("kernel.image {reference} names no kernel release (it is not an x86 bzImage with a version string); add `release = \"...\"` to [kernel]: the release as `uname -r` prints it on the device")]
    KernelReleaseUnknown { reference: String },
    #[error("previous release {dir}: {why}; give a directory `flipside-build image` wrote (release.json, the image and its index)")]
    Previous { dir: PathBuf, why: String },
    #[error("kernel.release {given:?} disagrees with kernel.image {reference}, whose setup header says {found:?}; correct `release =` or remove it")]
    KernelReleaseMismatch {
        reference: String,
        given: String,
        found: String,
    },
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::TooLarge { .. } => Class::TooLarge,
            Error::Io { .. } => Class::Io,
            Error::HostFile { .. } => Class::Store,
            Error::KernelFile { .. }
            | Error::KernelHeader { .. }
            | Error::KernelReleaseUnknown { .. }
            | Error::KernelReleaseMismatch { .. }
            | Error::Previous { .. } => Class::Input,
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
        B::InvalidParams { .. } | B::EmptyImage { .. } | B::PreviousMismatch { .. } => Class::Input,
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
    /// Sign `uki.efi` for Secure Boot with this db key (before it is cut into its bundle).
    pub secure_boot: Option<crate::secureboot::SigningKey>,
    /// Output directories of previous releases: the root bundle gets delta frames against
    /// their images (at most four are used).
    pub previous: Vec<PathBuf>,
}

/// A previous release's root image and index, from the directory `image` wrote it to.
pub fn load_previous(dir: &Path) -> Result<flipside_bundle::Previous, crate::Error> {
    let bad = |why: String| Error::Previous {
        dir: dir.to_path_buf(),
        why,
    };
    let path = dir.join("release.json");
    let text =
        fs::read_to_string(&path).map_err(|e| bad(format!("cannot read release.json: {e}")))?;
    let release: Release =
        serde_json::from_str(&text).map_err(|e| bad(format!("release.json: {e}")))?;
    release
        .validate()
        .map_err(|e| bad(format!("release.json: {e}")))?;
    let index = flipside_bundle::read_index(
        &dir.join(&release.index.name),
        &flipside_bundle::Limits::default(),
    )?;
    let image = dir.join(image_file_name(&release.name, release.version));
    if hex::encode(index.image_sha256()) != release.image.sha256 {
        return Err(bad("its index does not describe the image release.json names".into()).into());
    }
    Ok(flipside_bundle::Previous { image, index })
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
    /// The sections of [`UKI_FILE`], when the description has a `[kernel]` section.
    pub uki: Option<UkiInfo>,
}

/// Builds the release described by `system_toml`; returns what was written.
pub fn build(system_toml: &Path, options: &Options) -> Result<Built, crate::Error> {
    let system = system::load(system_toml)?;
    // Before anything is built: a bad level or thread count would otherwise fail only after
    // the image.
    options.bundle.validate()?;
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
        architecture: system.architecture,
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

    let image = work.join("image");
    rootfs::make_squashfs(&stage, &image)?;
    // dm-verity: the tree goes onto the image before anything hashes it, and its root hash onto
    // the UKI's command line, so the kernel part is built after the image.
    let verity = match system.kernel.as_ref().and_then(|k| k.verity) {
        Some(mode) => {
            let mut f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&image)
                .map_err(io("open", &image))?;
            let params = flipside_verity::tree::append_to(&mut f, mode)
                .map_err(io("append the dm-verity hash tree to", &image))?;
            log::info!(
                "dm-verity root hash {} over {} blocks",
                hex::encode(params.root),
                params.data_blocks
            );
            Some(params.to_string())
        }
        None => None,
    };
    let size = fs::metadata(&image).map_err(io("stat", &image))?.len();
    if let Some(slot) = options.slot_size.or(system.slot_size) {
        if size > slot {
            return Err(Error::TooLarge { size, slot }.into());
        }
    }
    // Files of roots are read from the stage, exactly as they are in the image.
    let (kernel, uki) = match &system.kernel {
        Some(kernel) => {
            let (part, info) = build_kernel_part(
                system,
                kernel,
                verity.as_deref(),
                &roots,
                &stage,
                work,
                options,
            )?;
            (Some(part), Some(info))
        }
        None => (None, None),
    };
    make_writable(&stage);
    fs::remove_dir_all(&stage).map_err(io("remove", &stage))?;

    let previous = (options.previous.iter())
        .map(|dir| load_previous(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let root = write_part(
        &image,
        "squashfs",
        release::file_names(&system.name, system.version),
        work,
        &options.bundle,
        &previous,
    )?;
    debug_assert_eq!(root.image.length, size);

    let release = Release {
        format: RELEASE_FORMAT,
        name: system.name.clone(),
        version: system.version,
        display_version: system.display_version.clone(),
        hardware_id: system.hardware_id.clone(),
        architecture: system.architecture,
        image: root.image,
        bundle: root.bundle,
        index: root.index,
        init,
        closure: entries,
        kernel,
        // A publishing decision, not part of the build (`repo add --allow-rollback`).
        allow_rollback: false,
    };
    let release_path = work.join("release.json");
    fs::write(&release_path, to_json(&release)).map_err(io("write", &release_path))?;

    // Everything else first: release.json appears only when all it names is in place.
    let out = &options.out_dir;
    let mut names: Vec<&str> = Vec::new();
    if let Some(k) = &release.kernel {
        names.extend([UKI_FILE, k.bundle.name.as_str(), k.index.name.as_str()]);
    }
    names.extend([release.bundle.name.as_str(), release.index.name.as_str()]);
    for name in names {
        let to = out.join(name);
        fs::rename(work.join(name), &to).map_err(io("move into place", &to))?;
    }
    for (from, to) in [
        (
            image,
            out.join(image_file_name(&system.name, system.version)),
        ),
        (release_path, out.join("release.json")),
    ] {
        fs::rename(&from, &to).map_err(io("move into place", &to))?;
    }
    sync_dir(out)?;
    Ok(Built { release, uki })
}

/// The kernel part in `work`: [`UKI_FILE`] assembled from `kernel`, its bundle and index.
fn build_kernel_part(
    system: &System,
    kernel: &Kernel,
    verity: Option<&str>,
    roots: &BTreeMap<String, String>,
    stage: &Path,
    work: &Path,
    options: &Options,
) -> Result<(KernelPart, UkiInfo), crate::Error> {
    let file = |field, r: &FileRef| stage_file(field, r, roots, stage);
    let (image, initrd) = (
        file("image", &kernel.image)?,
        file("initrd", &kernel.initrd)?,
    );
    let os_release = uki::os_release(&system.name, system.version, &system.display_version);
    let cmdline = match verity {
        Some(word) => format!("{} {word}", kernel.cmdline),
        None => kernel.cmdline.clone(),
    };
    let parts = UkiParts {
        stub: &kernel.stub,
        kernel: &image,
        initrd: &initrd,
        cmdline: &cmdline,
        os_release: &os_release,
    };
    let uki_path = work.join(UKI_FILE);
    let info = uki::assemble(&parts, &uki_path)?;
    if let Some(key) = &options.secure_boot {
        // The signature is appended (the certificate table); the sections stay as assembled.
        let signed = work.join("uki.signed.efi");
        crate::secureboot::sign(key, &uki_path, &signed)?;
        crate::secureboot::verify(&key.cert, &signed)?;
        fs::rename(&signed, &uki_path).map_err(io("move into place", &uki_path))?;
    }
    // After assembly, which has refused a missing or empty kernel with its own message.
    let header = read_prefix(&image, bzimage::HEADER_WINDOW)?;
    let kernel_release = choose_release(
        &kernel.image.to_string(),
        kernel.release.as_deref(),
        bzimage::kernel_release(&header),
    )?;
    let part = write_part(
        &uki_path,
        UKI_FORMAT,
        release::kernel_file_names(&system.name, system.version),
        work,
        &options.bundle,
        // A new kernel rarely resembles the old one chunk by chunk: no deltas.
        &[],
    )?;
    log::info!(
        "{UKI_FILE}: kernel {kernel_release}, {} bytes sha256 {}, kernel bundle {} bytes",
        part.image.length,
        part.image.sha256,
        part.bundle.length
    );
    let part = KernelPart {
        kernel_release,
        image: part.image,
        bundle: part.bundle,
        index: part.index,
    };
    Ok((part, info))
}

/// The kernel release of a kernel part: the one the kernel image's setup header names
/// (`found`), the one `release =` gives, or both when they agree. Pure.
pub fn choose_release(
    reference: &str,
    given: Option<&str>,
    found: Result<Option<String>, bzimage::Error>,
) -> Result<String, Error> {
    let found = found.map_err(|source| Error::KernelHeader {
        reference: reference.to_string(),
        source,
    })?;
    match (given, found) {
        (Some(given), Some(found)) if given != found => Err(Error::KernelReleaseMismatch {
            reference: reference.to_string(),
            given: given.to_string(),
            found,
        }),
        (_, Some(found)) => Ok(found),
        (Some(given), None) => Ok(given.to_string()),
        (None, None) => Err(Error::KernelReleaseUnknown {
            reference: reference.to_string(),
        }),
    }
}

/// The first `max` bytes of `path` (all of it if shorter).
fn read_prefix(path: &Path, max: usize) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::with_capacity(max);
    fs::File::open(path)
        .and_then(|f| f.take(max as u64).read_to_end(&mut bytes))
        .map_err(io("read", path))?;
    Ok(bytes)
}

/// A bundle and its index in the work directory, with what `release.json` says of them.
struct Part {
    image: ImageInfo,
    bundle: FileInfo,
    index: FileInfo,
}

/// Cuts `image` into `work/<bundle name>` and `work/<index name>` (`names`) with `params`,
/// with delta frames against the `previous` releases' images.
fn write_part(
    image: &Path,
    filesystem: &str,
    names: (String, String),
    work: &Path,
    params: &BundleParams,
    previous: &[flipside_bundle::Previous],
) -> Result<Part, crate::Error> {
    let (bundle_name, index_name) = names;
    let bundle = work.join(&bundle_name);
    let index = flipside_bundle::write_bundle_with(image, &bundle, params, previous, &mut |_| {})?;
    let index_path = work.join(&index_name);
    fs::write(&index_path, index.encode()).map_err(io("write", &index_path))?;
    // The bundle is written through a temporary file, created 0600; give it the mode the index
    // was created with (0666 less the umask), like the image and release.json.
    let created = fs::metadata(&index_path).map_err(io("read permissions of", &index_path))?;
    fs::set_permissions(&bundle, created.permissions())
        .map_err(io("set permissions of", &bundle))?;
    Ok(Part {
        image: ImageInfo {
            filesystem: filesystem.to_string(),
            length: index.image_length(),
            sha256: hex::encode(index.image_sha256()),
        },
        bundle: file_info(&bundle, bundle_name)?,
        index: file_info(&index_path, index_name)?,
    })
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
    flipside_atomic_file::sync_dir(dir).map_err(|e| io("sync", dir)(e.source))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_comes_from_the_header_or_from_release_and_both_must_agree() {
        let found = || Ok(Some("6.1.0-57-amd64".to_string()));
        let r = "@linux/boot/vmlinuz";
        assert_eq!(choose_release(r, None, found()).unwrap(), "6.1.0-57-amd64");
        assert_eq!(
            choose_release(r, Some("6.1.0-57-amd64"), found()).unwrap(),
            "6.1.0-57-amd64"
        );
        assert_eq!(
            choose_release(r, Some("6.12.0-arm64"), Ok(None)).unwrap(),
            "6.12.0-arm64"
        );
        let err = choose_release(r, Some("6.1.0-58-amd64"), found()).unwrap_err();
        assert!(
            matches!(&err, Error::KernelReleaseMismatch { given, found, .. }
                if given == "6.1.0-58-amd64" && found == "6.1.0-57-amd64"),
            "{err}"
        );
        let err = choose_release(r, None, Ok(None)).unwrap_err();
        assert!(matches!(err, Error::KernelReleaseUnknown { .. }), "{err}");
        assert!(err.to_string().contains("add `release = \"...\"`"), "{err}");
        // A broken header is refused even when `release =` is given: the file is suspect.
        let broken = Err(bzimage::Error::Unterminated { offset: 0x300 });
        let err = choose_release(r, Some("6.1.0-57-amd64"), broken).unwrap_err();
        assert!(matches!(err, Error::KernelHeader { .. }), "{err}");
        for err in [
            Error::KernelReleaseUnknown {
                reference: r.into(),
            },
            Error::KernelHeader {
                reference: r.into(),
                source: bzimage::Error::Unterminated { offset: 0 },
            },
            Error::KernelReleaseMismatch {
                reference: r.into(),
                given: "a".into(),
                found: "b".into(),
            },
        ] {
            assert_eq!(crate::Error::from(err).class().exit_code(), 3);
        }
    }
}
