//! The release description written by `flipside-build image` (`release.json`) and the custom
//! fields of the TUF targets `flipside-build repo add` publishes.
//!
//! Compatibility: fields are only ever added, with `#[serde(default)]`; `format` changes only
//! when an older reader would misread a file, and readers refuse formats they do not know.

use serde::{Deserialize, Serialize};

use crate::arch::Architecture;
use crate::rollout::{Rollout, RolloutError};

/// Format number of [`Release`] and [`TargetCustom`] written by this version.
pub const RELEASE_FORMAT: u32 = 1;

/// Key under a TUF target's `custom` object that holds flipside's fields.
pub const CUSTOM_KEY: &str = "flipside";

/// Failure to accept a release description or target name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("release format {found} is not supported (this build reads format {RELEASE_FORMAT}); upgrade flipside")]
    UnsupportedFormat { found: u32 },
    #[error("invalid name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("invalid sha256 {value:?}: expected 64 lowercase hex digits")]
    InvalidSha256 { value: String },
    #[error("invalid kernel release {value:?}: expected 1 to 64 printable characters without spaces, as uname -r prints")]
    InvalidKernelRelease { value: String },
    #[error("two files of the release have the same name: give the bundle, index and kernel files distinct names")]
    DuplicateFile,
    #[error("invalid rollout: {0}")]
    Rollout(#[from] RolloutError),
}

/// One built image: written next to the image, bundle and index as `release.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub format: u32,
    /// System name, e.g. `kiosk`: a [`check_name`] name.
    pub name: String,
    /// Monotonic release number; devices never install a lower one (anti-rollback).
    pub version: u64,
    /// Free-form version shown to people, e.g. `2.3.1`.
    pub display_version: String,
    /// Devices accept only images whose hardware id equals theirs.
    pub hardware_id: String,
    /// The architecture the image is built for (absent in older releases: x86_64).
    #[serde(default)]
    pub architecture: Architecture,
    /// The root-filesystem image (uncompressed, as written to a slot).
    pub image: ImageInfo,
    /// The bundle file: the image as independently compressed chunks.
    pub bundle: FileInfo,
    /// The chunk index file of the bundle.
    pub index: FileInfo,
    /// Path of the init program inside the image.
    pub init: String,
    /// Every store path in the image, sorted by path.
    pub closure: Vec<ClosureEntry>,
    /// The kernel side, for devices that boot a kernel from each slot (flipside-boot). Absent in
    /// releases whose kernel lives outside the slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelPart>,
    /// The publisher's deliberate rollback: devices that committed a newer release may install
    /// this one, and committing it lowers their anti-rollback floor to its version. Set when
    /// publishing (`flipside-build repo add --allow-rollback`), signed with the targets.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_rollback: bool,
}

/// Filesystem name of a kernel part's image: a unified kernel image (PE/COFF), not a file system.
pub const UKI_FORMAT: &str = "uki";

/// The kernel side of a release: one unified kernel image (systemd's EFI stub with the kernel,
/// the initramfs, the command line and os-release), written raw to the slot's kernel partition,
/// shipped as its own bundle and index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelPart {
    /// The kernel's release as `uname -r` prints it (e.g. `6.1.0-57-amd64`).
    pub kernel_release: String,
    /// The UKI (`filesystem` is [`UKI_FORMAT`]).
    pub image: ImageInfo,
    pub bundle: FileInfo,
    pub index: FileInfo,
}

/// The uncompressed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Filesystem type as the kernel names it (`squashfs`).
    pub filesystem: String,
    pub length: u64,
    /// Lowercase hex sha256 of the whole image.
    pub sha256: String,
}

/// A file next to `release.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// File name (no directory), also the TUF target name.
    pub name: String,
    pub length: u64,
    pub sha256: String,
}

/// One store path of the image's closure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClosureEntry {
    /// Absolute store path as seen inside the image, e.g. `/nix/store/<hash>-openssl-3.0.1`.
    pub path: String,
    /// Content hash of the path (`sha256:<hex>`; the NAR hash for Nix paths).
    pub hash: String,
    /// Store paths it references, sorted.
    #[serde(default)]
    pub references: Vec<String>,
}

/// Where every image carries its [`SystemInfo`].
pub const SYSTEM_INFO_PATH: &str = "/.flipside/system.json";

/// Written into every image at [`SYSTEM_INFO_PATH`], so a running system knows what it is
/// (the updater reads its installed version and hardware id from here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub format: u32,
    pub name: String,
    pub version: u64,
    pub display_version: String,
    pub hardware_id: String,
    /// The architecture the image is built for (absent in older releases: x86_64).
    #[serde(default)]
    pub architecture: Architecture,
    pub init: String,
    pub closure: Vec<ClosureEntry>,
}

/// What a TUF target is, in its `custom.flipside` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// The bundle (chunks a device streams).
    Bundle,
    /// The bundle's chunk index.
    Index,
    /// The kernel part's bundle (unknown to devices older than kernel parts, which skip it).
    KernelBundle,
    /// The kernel part's chunk index.
    KernelIndex,
}

impl TargetKind {
    /// Whether this target belongs to the kernel part of a release.
    pub fn is_kernel(self) -> bool {
        matches!(self, TargetKind::KernelBundle | TargetKind::KernelIndex)
    }
}

/// What every target of a release says of its kernel part, so that the device checks the four
/// targets against each other before it writes anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelTargets {
    pub kernel_release: String,
    pub image_length: u64,
    pub image_sha256: String,
    pub bundle_target: String,
    pub index_target: String,
}

/// `custom.flipside` of a bundle or index target. A device picks its update from these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCustom {
    pub format: u32,
    pub kind: TargetKind,
    pub name: String,
    pub version: u64,
    pub display_version: String,
    pub hardware_id: String,
    /// The architecture the image is built for (absent in older releases: x86_64).
    #[serde(default)]
    pub architecture: Architecture,
    pub filesystem: String,
    pub image_length: u64,
    pub image_sha256: String,
    /// Target name of the bundle's chunk index (for both kinds).
    pub index_target: String,
    /// Target name of the bundle (for both kinds).
    pub bundle_target: String,
    /// The release's kernel part, on every target of a release that has one. On kernel targets
    /// the image, index and bundle fields above describe the kernel part itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelTargets>,
    /// [`Release::allow_rollback`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_rollback: bool,
    /// The channels the release is offered in; none: [`crate::rollout::DEFAULT_CHANNEL`] only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// The rollout schedule; none: every device at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

impl Release {
    /// Checks what a reader relies on: the format, the names and the hashes.
    pub fn validate(&self) -> Result<(), Error> {
        if self.format != RELEASE_FORMAT {
            return Err(Error::UnsupportedFormat { found: self.format });
        }
        check_name(&self.name)?;
        check_name(&self.hardware_id)?;
        check_name(&self.bundle.name)?;
        check_name(&self.index.name)?;
        for sha in [&self.image.sha256, &self.bundle.sha256, &self.index.sha256] {
            check_sha256(sha)?;
        }
        if let Some(k) = &self.kernel {
            check_kernel_release(&k.kernel_release)?;
            check_name(&k.bundle.name)?;
            check_name(&k.index.name)?;
            for sha in [&k.image.sha256, &k.bundle.sha256, &k.index.sha256] {
                check_sha256(sha)?;
            }
            let names = [
                &self.bundle.name,
                &self.index.name,
                &k.bundle.name,
                &k.index.name,
            ];
            if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
                return Err(Error::DuplicateFile);
            }
        }
        Ok(())
    }

    /// Every file the release publishes, with the kind of target it becomes: bundle and index,
    /// then the kernel part's bundle and index when there is one.
    pub fn files(&self) -> Vec<(TargetKind, &FileInfo)> {
        let mut files = vec![
            (TargetKind::Bundle, &self.bundle),
            (TargetKind::Index, &self.index),
        ];
        if let Some(k) = &self.kernel {
            files.push((TargetKind::KernelBundle, &k.bundle));
            files.push((TargetKind::KernelIndex, &k.index));
        }
        files
    }

    /// The custom fields for the target of the given kind. A kernel kind describes the kernel
    /// part (a release without one gives the root's fields, which no device acts on).
    pub fn target_custom(&self, kind: TargetKind) -> TargetCustom {
        let kernel = self.kernel.as_ref().map(|k| KernelTargets {
            kernel_release: k.kernel_release.clone(),
            image_length: k.image.length,
            image_sha256: k.image.sha256.clone(),
            bundle_target: k.bundle.name.clone(),
            index_target: k.index.name.clone(),
        });
        let (image, index, bundle) = match (&self.kernel, kind.is_kernel()) {
            (Some(k), true) => (&k.image, &k.index, &k.bundle),
            _ => (&self.image, &self.index, &self.bundle),
        };
        TargetCustom {
            format: RELEASE_FORMAT,
            kind,
            name: self.name.clone(),
            version: self.version,
            display_version: self.display_version.clone(),
            hardware_id: self.hardware_id.clone(),
            architecture: self.architecture,
            filesystem: image.filesystem.clone(),
            image_length: image.length,
            image_sha256: image.sha256.clone(),
            index_target: index.name.clone(),
            bundle_target: bundle.name.clone(),
            kernel,
            allow_rollback: self.allow_rollback,
            // Publishing decisions, set by the repository.
            channels: Vec::new(),
            rollout: None,
        }
    }
}

/// A kernel release string (`uname -r`): 1 to 64 printable ASCII characters without spaces.
pub fn check_kernel_release(value: &str) -> Result<(), Error> {
    if !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::InvalidKernelRelease {
            value: value.to_string(),
        })
    }
}

impl TargetCustom {
    /// Checks the format and names a device relies on before acting on a target.
    pub fn validate(&self) -> Result<(), Error> {
        if self.format != RELEASE_FORMAT {
            return Err(Error::UnsupportedFormat { found: self.format });
        }
        check_name(&self.name)?;
        check_name(&self.hardware_id)?;
        check_name(&self.index_target)?;
        check_name(&self.bundle_target)?;
        check_sha256(&self.image_sha256)?;
        if let Some(k) = &self.kernel {
            check_kernel_release(&k.kernel_release)?;
            check_name(&k.index_target)?;
            check_name(&k.bundle_target)?;
            check_sha256(&k.image_sha256)?;
        }
        for channel in &self.channels {
            check_name(channel)?;
        }
        if let Some(rollout) = &self.rollout {
            rollout.validate()?;
        }
        Ok(())
    }
}

/// Names that become file names and target names: 1 to 128 of `[A-Za-z0-9._+-]`, not starting
/// with `.` or `-`. This keeps every name usable as one path component, never a path.
pub fn check_name(name: &str) -> Result<(), Error> {
    let bad = |why| {
        Err(Error::InvalidName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() || name.len() > 128 {
        return bad("must be 1 to 128 characters long");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("must not start with '.' or '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
    {
        return bad("may contain only letters, digits and . _ + -");
    }
    Ok(())
}

fn check_sha256(value: &str) -> Result<(), Error> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(Error::InvalidSha256 {
            value: value.to_string(),
        })
    }
}

/// `<name>-<version>.bundle` and `<name>-<version>.index`: the file and target names of a release.
pub fn file_names(name: &str, version: u64) -> (String, String) {
    (
        format!("{name}-{version}.bundle"),
        format!("{name}-{version}.index"),
    )
}

/// `<name>-<version>.kernel.bundle` and `<name>-<version>.kernel.index`: the kernel part's files.
pub fn kernel_file_names(name: &str, version: u64) -> (String, String) {
    (
        format!("{name}-{version}.kernel.bundle"),
        format!("{name}-{version}.kernel.index"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_path_components() {
        for good in ["kiosk", "qemu-x86_64.v1", "a+b", "A9"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-x",
            ".hidden",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn format_one_parses_and_validates() {
        let text = include_str!("../tests/data/release-format-1.json");
        let release: Release = serde_json::from_str(text).unwrap();
        release.validate().unwrap();
        assert_eq!(release.version, 7);
        let custom = release.target_custom(TargetKind::Bundle);
        custom.validate().unwrap();
        assert_eq!(custom.bundle_target, "kiosk-7.bundle");
        // Written before architectures were recorded: x86_64, and the targets say so.
        assert_eq!(release.architecture, crate::arch::Architecture::X86_64);
        assert_eq!(custom.architecture, crate::arch::Architecture::X86_64);
    }

    #[test]
    fn kernel_part_parses_and_every_target_names_it() {
        let text = include_str!("../tests/data/release-with-kernel.json");
        let release: Release = serde_json::from_str(text).unwrap();
        release.validate().unwrap();
        let kernel = release.kernel.as_ref().unwrap();
        assert_eq!(kernel.kernel_release, "6.1.0-57-amd64");
        let kinds: Vec<_> = release
            .files()
            .into_iter()
            .map(|(k, f)| (k, f.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (TargetKind::Bundle, "kiosk-8.bundle"),
                (TargetKind::Index, "kiosk-8.index"),
                (TargetKind::KernelBundle, "kiosk-8.kernel.bundle"),
                (TargetKind::KernelIndex, "kiosk-8.kernel.index"),
            ]
        );
        let root = release.target_custom(TargetKind::Bundle);
        let kbundle = release.target_custom(TargetKind::KernelBundle);
        root.validate().unwrap();
        kbundle.validate().unwrap();
        assert_eq!(root.kernel, kbundle.kernel);
        assert_eq!(root.filesystem, "squashfs");
        assert_eq!(kbundle.filesystem, UKI_FORMAT);
        assert_eq!(kbundle.bundle_target, "kiosk-8.kernel.bundle");
        assert_eq!(kbundle.image_length, kernel.image.length);
        let json = serde_json::to_value(&kbundle).unwrap();
        assert_eq!(json["kind"], "kernel-bundle");
        // A target written before kernel parts existed still parses, without one.
        let old = include_str!("../tests/data/release-format-1.json");
        let old: Release = serde_json::from_str(old).unwrap();
        assert_eq!(old.kernel, None);
        assert_eq!(old.files().len(), 2);
        assert!(serde_json::to_value(old.target_custom(TargetKind::Bundle))
            .unwrap()
            .get("kernel")
            .is_none());
    }

    #[test]
    fn kernel_part_is_checked() {
        let text = include_str!("../tests/data/release-with-kernel.json");
        let good: Release = serde_json::from_str(text).unwrap();
        let mut bad = good.clone();
        bad.kernel.as_mut().unwrap().kernel_release = "6.1 amd64".into();
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidKernelRelease { .. })
        ));
        let mut bad = good.clone();
        bad.kernel.as_mut().unwrap().bundle.name = "kiosk-8.index".into();
        assert_eq!(bad.validate(), Err(Error::DuplicateFile));
        let mut bad = good.clone();
        bad.kernel.as_mut().unwrap().index.name = "../x".into();
        assert!(matches!(bad.validate(), Err(Error::InvalidName { .. })));
        let mut bad = good;
        bad.kernel.as_mut().unwrap().image.sha256 = "00".into();
        assert!(matches!(bad.validate(), Err(Error::InvalidSha256 { .. })));
    }

    #[test]
    fn unknown_format_is_refused() {
        let text = include_str!("../tests/data/release-format-1.json")
            .replace("\"format\": 1", "\"format\": 2");
        let release: Release = serde_json::from_str(&text).unwrap();
        assert_eq!(
            release.validate(),
            Err(Error::UnsupportedFormat { found: 2 })
        );
    }
}
