//! The guest kernel: Debian's stock amd64 kernel package, fetched with `apt-get download` and
//! unpacked with `dpkg -x`, cached under `<assets>/kernel/<release>/` with only what the VMs
//! need: the kernel (an ELF `vmlinux` for QEMU's fast PVH boot when the compressed payload can
//! be taken out of `vmlinuz`, else `vmlinuz` itself), its config, and the modules in load order.
//!
//! The package ships no `modules.dep`, so [`MODULES`] is the load order, checked against
//! `modinfo -F depends` when the kernel is unpacked.

use std::collections::BTreeMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::tool;

/// Modules the initramfs loads, in this order (each after the modules it depends on): virtio
/// PCI and block, squashfs for the slots, ext4 for the data partition, virtio-net for the
/// update scenarios, the i6300esb watchdog (loaded only when a VM asks for a watchdog), and
/// efivarfs (loaded only under UEFI firmware: systemd mounts it, the updater reads
/// flipside-boot's `FlipsideSlot` there, and the Debian roots carry no modules of their own).
pub const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_blk",
    "squashfs",
    "crc32c_generic",
    "libcrc32c",
    "crc16",
    "mbcache",
    "jbd2",
    "ext4",
    "failover",
    "net_failover",
    "virtio_net",
    "watchdog",
    "i6300esb",
    "efivarfs",
    // dm-verity (loaded only with flipside.verity= on the command line).
    "reed_solomon",
    "dm-mod",
    "dm-bufio",
    "dm-verity",
];

/// The metapackage whose dependency names the current kernel package.
const METAPACKAGE: &str = "linux-image-amd64";

/// How QEMU is to load the kernel file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// An uncompressed ELF `vmlinux` with a PVH entry note: QEMU jumps straight in.
    PvhElf,
    /// The compressed `vmlinuz` (bzImage): slower, the kernel decompresses itself.
    BzImage,
}

/// An unpacked kernel with its modules.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// `uname -r`, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The file QEMU's `-kernel` gets.
    pub image: PathBuf,
    pub format: KernelFormat,
    /// The `.ko` files of [`MODULES`], in load order.
    pub modules: Vec<PathBuf>,
}

impl Kernel {
    /// The compressed `vmlinuz` (bzImage), kept beside [`Kernel::image`] in the cache: what an
    /// EFI stub (a unified kernel image) boots.
    pub fn bzimage(&self) -> PathBuf {
        self.image.with_file_name("vmlinuz")
    }
}

/// The kernel package `apt-cache depends linux-image-amd64` names, e.g.
/// `linux-image-6.1.0-56-amd64`. Pure.
pub fn package_from_depends(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let dep = line.trim().strip_prefix("Depends:")?.trim();
        let dep = dep.trim_start_matches('<').trim_end_matches('>');
        let is_image = dep.starts_with("linux-image-")
            && dep != METAPACKAGE
            && !dep.contains(' ')
            && dep.len() > "linux-image-".len();
        is_image.then(|| dep.to_string())
    })
}

/// The compression of a bzImage payload, from its magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Zstd,
    Gzip,
    Other,
}

/// Where the compressed kernel lies inside a bzImage (boot protocol 2.08 or later:
/// `payload_offset` and `payload_length` in the setup header), and how it is compressed.
/// Pure; `None` when `bz` is no such bzImage.
pub fn bzimage_payload(bz: &[u8]) -> Option<(Range<usize>, Compression)> {
    if bz.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let protocol = u16::from_le_bytes(bz.get(0x206..0x208)?.try_into().ok()?);
    if protocol < 0x0208 {
        return None;
    }
    // setup_sects 0 means 4 (very old kernels); the real-mode boot sector comes before.
    let setup_sects = match *bz.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let offset = u32::from_le_bytes(bz.get(0x248..0x24c)?.try_into().ok()?);
    let length = u32::from_le_bytes(bz.get(0x24c..0x250)?.try_into().ok()?);
    let start = (setup_sects + 1)
        .checked_mul(512)?
        .checked_add(usize::try_from(offset).ok()?)?;
    let end = start.checked_add(usize::try_from(length).ok()?)?;
    let payload = bz.get(start..end)?;
    let compression = if payload.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else {
        Compression::Other
    };
    Some((start..end, compression))
}

/// The first module of `order` loaded before one of its dependencies (or whose dependency is
/// not in `order`), as (module, dependency). Pure.
pub fn order_problem(
    order: &[&str],
    depends: &BTreeMap<String, Vec<String>>,
) -> Option<(String, String)> {
    for (i, module) in order.iter().enumerate() {
        for dep in depends.get(*module).into_iter().flatten() {
            let dep_norm = dep.replace('-', "_");
            // Module names and file names mix `-` and `_` (dm-mod.ko is dm_mod).
            if !order[..i].iter().any(|m| m.replace('-', "_") == dep_norm) {
                return Some((module.to_string(), dep.clone()));
            }
        }
    }
    None
}

/// The current kernel, from the cache or fetched and unpacked into `<assets>/kernel/`.
pub fn prepare(assets: &Path) -> Result<Kernel> {
    let package = match std::env::var("FLIPSIDE_QEMU_KERNEL_PACKAGE") {
        Ok(p) if !p.is_empty() => p,
        _ => resolve_package()?,
    };
    prepare_package(assets, &package)
}

/// Kernel package `package` (`linux-image-6.1.0-NN-amd64`), from the cache or fetched and
/// unpacked into `<assets>/kernel/<release>/`. A cached directory that lacks a module of
/// [`MODULES`] (the list grew) is unpacked again.
pub fn prepare_package(assets: &Path, package: &str) -> Result<Kernel> {
    let release = package.trim_start_matches("linux-image-").to_string();
    let root = assets.join("kernel");
    let dir = root.join(&release);
    if dir.is_dir() {
        match load(&dir, &release) {
            Err(Error::ModuleMissing { .. }) => {
                eprintln!(
                    "qemu-tests: {} lacks a module of MODULES: unpacking again",
                    dir.display()
                );
                let stale = root.join(format!(".stale-{release}-{}", std::process::id()));
                fs::rename(&dir, &stale).map_err(Error::io("move aside", &dir))?;
                fs::remove_dir_all(&stale).map_err(Error::io("remove", &stale))?;
            }
            loaded => return loaded,
        }
    }
    if !dir.is_dir() {
        fs::create_dir_all(&root).map_err(Error::io("create directory", &root))?;
        let work = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&root)
            .map_err(Error::io("create a directory in", &root))?;
        let staging = work.path().join("kernel");
        unpack(package, &release, work.path(), &staging)?;
        // The rename publishes a complete directory; a concurrent run may have won the race.
        if let Err(e) = fs::rename(&staging, &dir) {
            if !dir.is_dir() {
                return Err(Error::io("rename into place", &dir)(e));
            }
        }
    }
    load(&dir, &release)
}

/// The second kernel of the tests that update the kernel: `FLIPSIDE_QEMU_KERNEL2_PACKAGE`, else
/// the newest `linux-image-6.1.0-NN-amd64` apt knows that is older than `current` (Debian's
/// registry serves several bookworm builds at once).
pub fn previous_package(current: &Kernel) -> Result<String> {
    older_package(&current.release, "FLIPSIDE_QEMU_KERNEL2_PACKAGE")
}

/// The package of the newest build of `release`'s flavour (`amd64`, `arm64`) older than it
/// that apt knows, or the package named by the environment variable `env` when set.
pub fn older_package(release: &str, env: &str) -> Result<String> {
    if let Ok(p) = std::env::var(env) {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    let flavour = abi(release).map(|(_, f)| f).ok_or(Error::KernelPackage {
        output: format!("{release} is no 6.1.0-NN-FLAVOUR release"),
    })?;
    let out = tool::run_text(
        Command::new("apt-cache").args([
            "search",
            "--names-only",
            &format!("^linux-image-6\\.1\\.0-[0-9]+-{flavour}$"),
        ]),
        "apt",
    )?;
    older_build(&out, release).ok_or(Error::KernelPackage { output: out })
}

/// The ABI number and the flavour of a release `6.1.0-NN-FLAVOUR`. Pure.
fn abi(release: &str) -> Option<(u32, &str)> {
    let rest = release.strip_prefix("6.1.0-")?;
    let (n, flavour) = rest.split_once('-')?;
    Some((n.parse().ok()?, flavour))
}

/// From `apt-cache search` lines (`linux-image-6.1.0-NN-amd64 - ...`), the package of the
/// newest build of the same flavour older than `current` (a release such as
/// `6.1.0-57-amd64`). Pure.
pub fn older_build(search: &str, current: &str) -> Option<String> {
    let (now, flavour) = abi(current)?;
    search
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| Some((abi(p.strip_prefix("linux-image-")?)?, p)))
        .filter(|((n, f), _)| *n < now && *f == flavour)
        .max_by_key(|((n, _), _)| *n)
        .map(|(_, p)| p.to_string())
}

fn resolve_package() -> Result<String> {
    let depends = || {
        tool::run_text(
            Command::new("apt-cache").args(["depends", METAPACKAGE]),
            "apt",
        )
    };
    if let Some(p) = depends().ok().as_deref().and_then(package_from_depends) {
        return Ok(p);
    }
    // A fresh machine may have no package lists yet: fetch them once and ask again.
    eprintln!("qemu-tests: apt does not know {METAPACKAGE}; running apt-get update");
    tool::run(Command::new("apt-get").args(["update", "-qq"]), "apt")?;
    let out = depends()?;
    package_from_depends(&out).ok_or(Error::KernelPackage { output: out })
}

/// Reads a cached kernel directory.
fn load(dir: &Path, release: &str) -> Result<Kernel> {
    let vmlinux = dir.join("vmlinux");
    let (image, format) = if vmlinux.is_file() {
        (vmlinux, KernelFormat::PvhElf)
    } else {
        (dir.join("vmlinuz"), KernelFormat::BzImage)
    };
    let modules = MODULES
        .iter()
        .map(|m| {
            let path = dir.join("modules").join(format!("{m}.ko"));
            match path.is_file() {
                true => Ok(path),
                false => Err(Error::ModuleMissing {
                    module: m.to_string(),
                    dir: dir.join("modules"),
                }),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Kernel {
        release: release.to_string(),
        image,
        format,
        modules,
    })
}

/// Downloads and unpacks `package` in `work`, and fills `staging` with what the VMs need.
fn unpack(package: &str, release: &str, work: &Path, staging: &Path) -> Result<()> {
    eprintln!("qemu-tests: fetching kernel package {package}");
    let tree = tool::unpack_deb(package, work, "apt")?;

    let modules_out = staging.join("modules");
    fs::create_dir_all(&modules_out).map_err(Error::io("create directory", &modules_out))?;
    let vmlinuz = tree.join("boot").join(format!("vmlinuz-{release}"));
    let config = tree.join("boot").join(format!("config-{release}"));
    copy(&vmlinuz, &staging.join("vmlinuz"))?;
    copy(&config, &staging.join("config"))?;

    let kernel_tree = tree.join("lib/modules").join(release).join("kernel");
    let mut depends = BTreeMap::new();
    for m in MODULES {
        let file = format!("{m}.ko");
        let found = find_recursive(&kernel_tree, &file)?.ok_or_else(|| Error::ModuleMissing {
            module: m.to_string(),
            dir: kernel_tree.clone(),
        })?;
        let deps = tool::run_text(
            Command::new("modinfo").args(["-F", "depends"]).arg(&found),
            "kmod",
        )?;
        let deps = deps
            .trim()
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect();
        depends.insert(m.to_string(), deps);
        copy(&found, &modules_out.join(&file))?;
    }
    if let Some((module, dependency)) = order_problem(MODULES, &depends) {
        return Err(Error::ModuleOrder { module, dependency });
    }

    let config_text = fs::read_to_string(&config).map_err(Error::io("read", &config))?;
    let pvh = config_text.lines().any(|l| l.trim() == "CONFIG_PVH=y");
    if pvh {
        if let Some(elf) = decompress_kernel(&vmlinuz, work)? {
            let out = staging.join("vmlinux");
            fs::write(&out, elf).map_err(Error::io("write", &out))?;
        }
    }
    Ok(())
}

/// The ELF kernel inside a bzImage, when its compression is one the harness can undo.
fn decompress_kernel(vmlinuz: &Path, work: &Path) -> Result<Option<Vec<u8>>> {
    let bz = fs::read(vmlinuz).map_err(Error::io("read", vmlinuz))?;
    let Some((range, compression)) = bzimage_payload(&bz) else {
        return Ok(None);
    };
    let payload = &bz[range];
    let elf = match compression {
        Compression::Xz => {
            let file = work.join("payload.xz");
            fs::write(&file, payload).map_err(Error::io("write", &file))?;
            // The kernel appends its uncompressed size after the stream: read one stream only.
            let out = tool::run(
                Command::new("xz")
                    .args(["-dc", "--single-stream"])
                    .arg(&file),
                "xz-utils",
            )?;
            out.stdout
        }
        Compression::Zstd => {
            use std::io::Read;
            let mut out = Vec::new();
            let decoder = zstd::stream::read::Decoder::new(payload)
                .map(|d| d.single_frame())
                .and_then(|mut d| d.read_to_end(&mut out));
            match decoder {
                Ok(_) => out,
                Err(_) => return Ok(None),
            }
        }
        Compression::Gzip | Compression::Other => return Ok(None),
    };
    Ok(crate::elf::is_elf(&elf).then_some(elf))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(Error::io("copy", from))
}

/// The file called `name` below `dir`.
pub fn find_recursive(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(Error::io("list", &d))? {
            let entry = entry.map_err(Error::io("list", &d))?;
            let ty = entry.file_type().map_err(Error::io("stat", entry.path()))?;
            if ty.is_dir() {
                stack.push(entry.path());
            } else if entry.file_name() == name {
                return Ok(Some(entry.path()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_older_build_is_the_newest_below_the_current() {
        let search = "linux-image-6.1.0-55-amd64 - Linux 6.1 for 64-bit PCs (signed)\n\
                      linux-image-6.1.0-57-amd64 - Linux 6.1 for 64-bit PCs (signed)\n\
                      linux-image-6.1.0-56-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)\n\
                      linux-image-6.1.0-9-amd64 - Linux 6.1 for 64-bit PCs (signed)\n\
                      linux-image-6.1.0-56-amd64 - Linux 6.1 for 64-bit PCs (signed)\n";
        assert_eq!(
            older_build(search, "6.1.0-57-amd64").as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(
            older_build(search, "6.1.0-56-amd64").as_deref(),
            Some("linux-image-6.1.0-55-amd64")
        );
        assert_eq!(older_build(search, "6.1.0-9-amd64"), None);
        let arm = "linux-image-6.1.0-47-arm64 - Linux 6.1 for 64-bit ARMv8 machines (signed)\n\
                   linux-image-6.1.0-50-arm64 - Linux 6.1 for 64-bit ARMv8 machines (signed)\n";
        assert_eq!(
            older_build(&format!("{search}{arm}"), "6.1.0-57-arm64").as_deref(),
            Some("linux-image-6.1.0-50-arm64")
        );
        assert_eq!(older_build(search, "weird"), None);
    }

    #[test]
    fn kernel_package_from_apt_cache() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            package_from_depends(out).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        let virtual_dep = "linux-image-amd64\n  Depends: <linux-image-6.1.0-9-amd64>\n";
        assert_eq!(
            package_from_depends(virtual_dep).as_deref(),
            Some("linux-image-6.1.0-9-amd64")
        );
        assert_eq!(package_from_depends("linux-image-amd64\n"), None);
        assert_eq!(package_from_depends("  Depends: libc6\n"), None);
        assert_eq!(package_from_depends(""), None);
    }

    /// A bzImage header with a payload of `magic` at the place the header says.
    fn bzimage(setup_sects: u8, protocol: u16, magic: &[u8]) -> Vec<u8> {
        let mut bz = vec![0u8; 4096];
        bz[0x1f1] = setup_sects;
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&protocol.to_le_bytes());
        bz[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        bz[0x24c..0x250].copy_from_slice(&100u32.to_le_bytes());
        let start = (usize::from(setup_sects) + 1) * 512 + 16;
        bz[start..start + magic.len()].copy_from_slice(magic);
        bz
    }

    #[test]
    fn payload_is_found_from_the_setup_header() {
        let bz = bzimage(3, 0x020f, &[0xfd, b'7', b'z', b'X', b'Z', 0]);
        assert_eq!(bzimage_payload(&bz), Some((2064..2164, Compression::Xz)));
        let bz = bzimage(3, 0x020f, &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(bzimage_payload(&bz).map(|p| p.1), Some(Compression::Zstd));
        let bz = bzimage(3, 0x020f, &[0x1f, 0x8b]);
        assert_eq!(bzimage_payload(&bz).map(|p| p.1), Some(Compression::Gzip));
        let bz = bzimage(3, 0x020f, b"??");
        assert_eq!(bzimage_payload(&bz).map(|p| p.1), Some(Compression::Other));
    }

    #[test]
    fn old_or_broken_bzimages_are_refused() {
        assert_eq!(bzimage_payload(&bzimage(3, 0x0207, b"")), None);
        let mut bz = bzimage(3, 0x020f, b"");
        bz[0x202] = b'X';
        assert_eq!(bzimage_payload(&bz), None);
        let mut bz = bzimage(3, 0x020f, b"");
        bz[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(bzimage_payload(&bz), None);
        assert_eq!(bzimage_payload(&[0u8; 16]), None);
    }

    #[test]
    fn module_order_follows_dependencies() {
        let deps = |pairs: &[(&str, &[&str])]| {
            pairs
                .iter()
                .map(|(m, d)| (m.to_string(), d.iter().map(|s| s.to_string()).collect()))
                .collect::<BTreeMap<_, _>>()
        };
        let d = deps(&[
            ("ext4", &["jbd2", "mbcache", "crc16"]),
            ("i6300esb", &["watchdog"]),
            ("dm-verity", &["dm-bufio", "dm-mod", "reed_solomon"]),
            ("dm-bufio", &["dm-mod"]),
        ]);
        assert_eq!(order_problem(MODULES, &d), None);
        let d = deps(&[("virtio", &["virtio_blk"])]);
        assert_eq!(
            order_problem(MODULES, &d),
            Some(("virtio".into(), "virtio_blk".into()))
        );
        let d = deps(&[("ext4", &["fscrypto"])]);
        assert_eq!(
            order_problem(MODULES, &d),
            Some(("ext4".into(), "fscrypto".into()))
        );
        // modinfo may spell a dependency with dashes.
        let d = deps(&[("virtio_pci", &["virtio-pci-modern-dev"])]);
        assert_eq!(order_problem(MODULES, &d), None);
    }
}
