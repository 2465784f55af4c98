//! Helpers shared by the builder's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The `flipside-build` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flipside-build");

/// Runs `flipside-build ARGS` under `umask` in `cwd` (through `sh`, which sets the umask).
pub fn build_with_umask(args: &[&str], umask: &str, cwd: &Path) -> Output {
    let mut script = format!("umask {umask}; exec \"$0\"");
    for i in 1..=args.len() {
        // "${10}", not "$10" (which sh reads as "$1" then "0").
        script.push_str(&format!(" \"${{{i}}}\""));
    }
    Command::new("sh")
        .current_dir(cwd)
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .args(args)
        .output()
        .expect("run flipside-build")
}

/// What `unsquashfs LIST_FLAG` (`-l`, or `-lls` with owners, modes and link targets) lists of
/// `image`; the test fails if unsquashfs refuses the image.
pub fn unsquashfs_listing(image: &Path, list_flag: &str) -> String {
    let out = Command::new("unsquashfs")
        .arg(list_flag)
        .arg("-d")
        .arg("")
        .arg(image)
        .output()
        .expect("run unsquashfs (Debian package squashfs-tools)");
    assert!(
        out.status.success(),
        "unsquashfs refused {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
