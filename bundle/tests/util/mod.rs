//! Helpers shared by the integration tests: real files, real tools.
// Each test binary uses some of them.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use flipside_bundle::{BundleParams, ChunkerParams};

/// Fast parameters for tests: default chunker, zstd level 3.
pub fn params(threads: usize) -> BundleParams {
    BundleParams {
        chunker: ChunkerParams::default(),
        zstd_level: 3,
        threads,
        dictionary_length: 0,
        segments: true,
    }
}

pub use flipside_test_support::tools::require_tool;

/// `len` bytes of seeded random data.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes);
    bytes
}

pub fn write_file(path: &Path, bytes: &[u8]) -> PathBuf {
    fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// An uncompressed squashfs (as the image builder makes) of about `budget` bytes of real files:
/// regular files under /usr/share/doc and /usr/share/perl5, in name order.
pub fn squashfs_image(dir: &Path, budget: u64) -> PathBuf {
    require_tool("mksquashfs", "squashfs-tools");
    let tree = dir.join("tree");
    let mut files = Vec::new();
    for root in [
        "/usr/share/doc",
        "/usr/share/perl5",
        "/usr/lib/x86_64-linux-gnu",
    ] {
        collect_files(Path::new(root), &mut files);
    }
    files.sort();
    let mut total = 0;
    for file in files {
        if total >= budget {
            break;
        }
        let Ok(meta) = fs::metadata(&file) else {
            continue;
        };
        let dest = tree.join(file.strip_prefix("/").unwrap());
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if fs::copy(&file, &dest).is_ok() {
            total += meta.len();
        }
    }
    assert!(
        total >= budget / 2,
        "found only {total} bytes of real files to pack"
    );
    let image = dir.join("rootfs.sqfs");
    let status = Command::new("mksquashfs")
        .arg(&tree)
        .arg(&image)
        .args(["-noappend", "-no-progress", "-quiet", "-all-root"])
        .args(["-noI", "-noD", "-noF", "-noX", "-mkfs-time", "0"])
        .status()
        .expect("run mksquashfs");
    assert!(status.success(), "mksquashfs failed: {status}");
    image
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_files(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

/// Names in `dir` other than `keep`: leftovers of a failed write.
pub fn other_entries(dir: &Path, keep: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect();
    names.sort();
    names
}
