//! Helpers of the store tests: file trees, real Nix tools, snapshots of a store directory.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Writes `content` to `root/rel` (creating directories) with `mode`.
pub fn file(root: &Path, rel: &str, content: &[u8], mode: u32) -> PathBuf {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

pub fn symlink(root: &Path, rel: &str, target: &str) -> PathBuf {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, &path).unwrap();
    path
}

/// A small tree with every kind of node the store keeps, and names whose byte order differs
/// from other orders (`B` < `a` < `a-b` < `a.b`).
pub fn sample_tree(root: &Path) {
    file(root, "bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    file(root, "B", b"upper", 0o644);
    file(root, "a", b"", 0o644);
    file(root, "a-b", b"dash", 0o600);
    file(root, "a.b", &vec![7u8; 200_000], 0o644);
    fs::create_dir_all(root.join("empty")).unwrap();
    symlink(root, "share/link", "../bin/tool");
}

/// Runs a tool and returns its stdout; a missing tool fails the test with a clear message.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install Nix (apt-get install nix-bin)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `sha256:<hex>` of the NAR of `path`, as the real `nix-hash` computes it.
pub fn nix_nar_hash(path: &Path) -> String {
    let hex = run("nix-hash", &["--type", "sha256", path.to_str().unwrap()]);
    format!("sha256:{}", hex.trim())
}

/// Builds the two-path Nix fixture (tests/data/nix/app.nix) and returns the app's path.
pub fn nix_fixture() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nix-fixture.sh");
    run(script.to_str().unwrap(), &[]).trim().to_string()
}

/// Every entry under `dir` except `.tmp`: (mode, size, mtime, sha256 of content or link
/// target).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path == dir.join(".tmp") {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_file() {
                fs::read(&path).unwrap()
            } else {
                stack.push(path.clone());
                Vec::new()
            };
            let digest = hex::encode(Sha256::digest(&content));
            out.insert(path, (meta.mode(), meta.size(), meta.mtime(), digest));
        }
    }
    out
}

pub fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}
