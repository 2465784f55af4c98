//! Release directories as `flipside-build` leaves them: the files of each part, and
//! `release.json` describing them with their lengths and sha256.

use std::path::Path;

use flipside_contract::release::{FileInfo, ImageInfo, KernelPart, Release, RELEASE_FORMAT};

use crate::sha256_hex;

/// The description of a file: its name, length and sha256.
pub fn file_info(name: &str, bytes: &[u8]) -> FileInfo {
    FileInfo {
        name: name.to_string(),
        length: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    }
}

/// Writes `bytes` as `dir/name` (creating `dir`) and returns its description.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> FileInfo {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    file_info(name, bytes)
}

/// The description of an image of `filesystem` (`squashfs`, or `uki` for a kernel part).
pub fn image_info(filesystem: &str, length: u64, sha256: String) -> ImageInfo {
    ImageInfo {
        filesystem: filesystem.to_string(),
        length,
        sha256,
    }
}

/// Release `version` of system `name` for `hardware_id`, built for this host: its root
/// image, bundle and index; display version `1.<version>`, init `/sbin/init`, no closure, no
/// kernel part, no rollback allowed. Tests change the fields they are about.
pub fn release(
    name: &str,
    version: u64,
    hardware_id: &str,
    image: ImageInfo,
    bundle: FileInfo,
    index: FileInfo,
) -> Release {
    Release {
        format: RELEASE_FORMAT,
        name: name.to_string(),
        version,
        display_version: format!("1.{version}"),
        hardware_id: hardware_id.to_string(),
        architecture: Default::default(),
        image,
        bundle,
        index,
        init: "/sbin/init".to_string(),
        closure: Vec::new(),
        kernel: None,
        allow_rollback: false,
    }
}

/// A kernel part: the UKI's description, its bundle and index.
pub fn kernel_part(
    kernel_release: &str,
    uki: ImageInfo,
    bundle: FileInfo,
    index: FileInfo,
) -> KernelPart {
    KernelPart {
        kernel_release: kernel_release.to_string(),
        image: uki,
        bundle,
        index,
    }
}

/// Writes `dir/release.json`.
pub fn write_release_json(dir: &Path, release: &Release) {
    std::fs::create_dir_all(dir).unwrap();
    let json = serde_json::to_vec_pretty(release).unwrap();
    std::fs::write(dir.join("release.json"), json).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_release_parses_back() {
        let dir =
            std::env::temp_dir().join(format!("flipside-test-support-{}", std::process::id()));
        let bundle = write_file(&dir, "kiosk-2.bundle", b"bundle");
        let index = write_file(&dir, "kiosk-2.index", b"index");
        let image = image_info("squashfs", 4096, sha256_hex(b"image"));
        let r = release("kiosk", 2, "pc", image, bundle, index);
        write_release_json(&dir, &r);
        let back: Release =
            serde_json::from_slice(&std::fs::read(dir.join("release.json")).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.bundle.length, 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
