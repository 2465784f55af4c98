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

/// Builds the example appliance (`examples/appliance/system.toml`) into `d/out` and publishes
/// it in a new repository `d/repo` with keys in `d/keys`.
fn publish_example(d: &Path, extra: &[&str]) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/appliance/system.toml");
    let mut args = vec![
        "image",
        example.to_str().unwrap(),
        "-o",
        "out",
        "--store",
        "store",
    ];
    args.extend_from_slice(extra);
    flipside_build(&args, d);
    flipside_build(&["repo", "init", "--repo", "repo", "--keys", "keys"], d);
    flipside_build(
        &["repo", "add", "--repo", "repo", "--keys", "keys", "out"],
        d,
    );
}

#[test]
fn python_tuf_downloads_a_published_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    publish_example(d, &[]);

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

/// `repo add` of a release below the newest published one for the same system and hardware id
/// publishes it, with a warning on stderr that no device will install it.
#[test]
fn publishing_a_lower_version_than_the_newest_warns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/appliance");
    let text = std::fs::read_to_string(example.join("system.toml")).unwrap();
    for version in [2, 1] {
        let path = d.join(format!("system-{version}.toml"));
        let edited = text
            .replace("version = 1 ", &format!("version = {version} "))
            .replace(
                "dir = \"base\"",
                &format!("dir = {:?}", example.join("base")),
            );
        std::fs::write(&path, edited).unwrap();
        let out = format!("out-{version}");
        flipside_build(
            &[
                "image",
                path.to_str().unwrap(),
                "-o",
                &out,
                "--store",
                "store",
                "--zstd-level",
                "3",
            ],
            d,
        );
    }
    flipside_build(&["repo", "init", "--repo", "repo", "--keys", "keys"], d);
    let add = |out: &str| {
        let run = Command::new(BIN)
            .args(["repo", "add", "--repo", "repo", "--keys", "keys", out])
            .current_dir(d)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(run.status.success(), "{stderr}");
        stderr
    };
    let first = add("out-2");
    assert!(!first.contains("warning"), "{first}");
    let lower = add("out-1");
    assert!(
        lower.contains(
            "warning: version 2 (1.0.0) of this system and hardware id is already published"
        ) && lower.contains("none will install this one"),
        "{lower}"
    );
}

/// A publisher whose clock is behind the last publish (here: a publish recorded a day ahead of
/// this machine's clock) is refused with exit 7, naming the clock, and publishes nothing.
#[test]
fn a_resign_with_the_clock_behind_the_last_publish_exits_7_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    flipside_build(&["repo", "init", "--repo", "repo", "--keys", "keys"], d);
    let ahead = chrono::Utc::now() + chrono::TimeDelta::days(1);
    std::fs::write(
        d.join("repo/flipside-published.json"),
        format!("{{\"published_at\": \"{}\"}}", ahead.to_rfc3339()),
    )
    .unwrap();
    let timestamp = std::fs::read(d.join("repo/metadata/timestamp.json")).unwrap();
    let run = Command::new(BIN)
        .args(["repo", "resign", "--repo", "repo", "--keys", "keys"])
        .current_dir(d)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("behind the last publish") && stderr.contains("set the clock right"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(d.join("repo/metadata/timestamp.json")).unwrap(),
        timestamp
    );
}

/// `repo prune` through the command line: a dry run lists the withdrawn release's files and
/// removes nothing; the real run removes them once the grace period is zero.
#[test]
fn repo_prune_removes_a_withdrawn_release_after_a_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    publish_example(d, &["--zstd-level", "3"]);
    let release: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/release.json")).unwrap()).unwrap();
    let (name, version) = (
        release["name"].as_str().unwrap().to_string(),
        release["version"].as_u64().unwrap().to_string(),
    );
    flipside_build(
        &[
            "repo", "withdraw", "--repo", "repo", "--keys", "keys", &name, &version,
        ],
        d,
    );
    let count = || std::fs::read_dir(d.join("repo/targets")).unwrap().count();
    assert_eq!(count(), 2);
    let prune = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["repo", "prune", "--repo", "repo", "--grace-days", "0"])
            .args(extra)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dry = prune(&["--dry-run"]);
    assert!(
        dry.contains("would remove 2 files") || dry.contains("would remove"),
        "{dry}"
    );
    assert_eq!(count(), 2);
    let real = prune(&[]);
    assert!(
        real.contains(".bundle") && real.contains(".index"),
        "{real}"
    );
    assert_eq!(count(), 0);
}

/// `repo publish` through the command line, its refusals and their exit codes: a destination
/// that is not `s3://` and missing or exposed credentials are input errors (3); an endpoint
/// that does not answer is an upload failure (11) that says devices still see the previous
/// repository. (Uploads to a real server: `updater/tests/object_storage.rs`, Garage.)
#[test]
fn repo_publish_refuses_bad_destinations_and_credentials_with_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    flipside_build(&["repo", "init", "--repo", "repo", "--keys", "keys"], d);
    let creds = d.join("s3.env");
    std::fs::write(
        &creds,
        "AWS_ACCESS_KEY_ID=GK1\nAWS_SECRET_ACCESS_KEY=hush-hush\n",
    )
    .unwrap();
    let mode = |m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(m)).unwrap();
    };
    // Nothing listens on port 9 (discard) of 127.0.0.1.
    let publish = |to: &str, creds: Option<&Path>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["repo", "publish", "--repo", "repo", "--to", to])
            .args(["--endpoint", "http://127.0.0.1:9", "--region", "garage"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .current_dir(d);
        if let Some(creds) = creds {
            cmd.arg("--credentials-file").arg(creds);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stderr.contains("hush-hush"),
            "the secret was printed: {stderr}"
        );
        (out.status.code(), stderr)
    };
    let (code, stderr) = publish("https://fleet/kiosk", None);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("s3://bucket"), "{stderr}");
    let (code, stderr) = publish("s3://fleet/kiosk", None);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
    mode(0o644);
    let (code, stderr) = publish("s3://fleet/kiosk", Some(&creds));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    mode(0o600);
    let (code, stderr) = publish("s3://fleet/kiosk", Some(&creds));
    assert_eq!(code, Some(11), "{stderr}");
    assert!(
        stderr.contains("devices still see the previous repository"),
        "{stderr}"
    );
}
