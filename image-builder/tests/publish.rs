//! The producer's whole path through the command line: build the example image, create a
//! repository, publish the release, and let the reference TUF client (python-tuf) download
//! the bundle and index byte-identical over HTTP on 127.0.0.1.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flipside-build");

fn flipside_build(args: &[&str], cwd: &Path) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "flipside-build {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_tuf_downloads_a_published_image() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/appliance/system.toml");
    let d = dir.path();
    flipside_build(
        &[
            "image",
            example.to_str().unwrap(),
            "-o",
            "out",
            "--store",
            "store",
        ],
        d,
    );
    flipside_build(&["repo", "init", "--repo", "repo", "--keys", "keys"], d);
    flipside_build(
        &["repo", "add", "--repo", "repo", "--keys", "keys", "out"],
        d,
    );

    let python = std::env::var("FLIPSIDE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../repository/tests/python/client.py");
    let out = Command::new(&python)
        .arg(script)
        .args([
            "--repo",
            "repo",
            "--root",
            "repo/metadata/1.root.json",
            "--cache",
            "cache",
        ])
        .args(["--download", "appliance-1.bundle=out/appliance-1.bundle"])
        .args(["--download", "appliance-1.index=out/appliance-1.index"])
        .current_dir(d)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e}; run scripts/test.sh, which installs python-tuf")
        });
    assert!(
        out.status.success(),
        "python-tuf refused the repository (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
