//! Interoperability with the reference implementation, the other way round from
//! `repository/tests/python_interop.rs`: python-tuf (`tuf.api.metadata` with securesystemslib
//! ed25519, ecdsa-sha2-nistp256, rsassa-pss-sha256 and rsa-pkcs1v15-sha256 keys,
//! `tests/python/make_repo.py`) makes repositories, python's
//! `http.server` serves them on 127.0.0.1, and the `flipside tuf` command (flipside's TUF
//! client, the code `install` uses) must accept the good ones, download the right target,
//! and refuse each broken one with exit code 1.
//!
//! The interpreter is `$FLIPSIDE_TEST_PYTHON`, else `.venv/bin/python` of the workspace, which
//! is created with `scripts/setup.sh` when it cannot import `tuf`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A python with `tuf`, installing it with the project's setup script if needed.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("FLIPSIDE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv/bin/python");
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", "import tuf.api.metadata, securesystemslib.signer"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works(&venv) {
        let out = Command::new("bash")
            .arg("-c")
            .arg("source scripts/setup.sh && flipside_install_python")
            .current_dir(workspace())
            .output()
            .expect("cannot run bash to install python-tuf");
        assert!(
            out.status.success() && works(&venv),
            "python-tuf is missing and scripts/setup.sh could not install it into .venv \
             (it needs python3, python3-venv and access to PyPI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    venv
}

/// A repository python-tuf made, served by python's http.server until dropped.
struct Scene {
    tmp: TempDir,
    server: Child,
    port: u16,
}

impl Scene {
    fn new(scene: &str, breakage: &str) -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let python = python();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/make_repo.py");
        let out = Command::new(&python)
            .arg(script)
            .args([scene, breakage])
            .arg(tmp.path().join("scene"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make_repo.py {scene} {breakage} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(tmp.path().join("server.log")).unwrap();
        let mut server = Command::new(&python)
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(tmp.path().join("scene/repo"))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("http.server did not say its port: {line:?}"));
        Scene { tmp, server, port }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn url(&self, dir: &str) -> String {
        format!("http://127.0.0.1:{}/{dir}", self.port)
    }

    fn flipside(&self, args: &[&str]) -> Output {
        let metadata = self.dir("client-metadata");
        Command::new(env!("CARGO_BIN_EXE_flipside"))
            .arg("tuf")
            .arg("--metadata-dir")
            .arg(&metadata)
            .args(args)
            .env("FLIPSIDE_LOG", "info")
            .output()
            .unwrap()
    }

    fn init(&self) {
        let root = self.dir("scene/root.json");
        let out = self.flipside(&["init", root.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "init: {}", text(&out));
    }

    fn refresh(&self) -> Output {
        self.flipside(&["--metadata-url", &self.url("metadata"), "refresh"])
    }

    fn download(&self, name: &str) -> Output {
        self.download_into("client-targets", &[name])
    }

    /// One `download` with `--target-name` repeated for each of `names`, saving in `dir`.
    fn download_into(&self, dir: &str, names: &[&str]) -> Output {
        let targets = self.dir(dir);
        let metadata_url = self.url("metadata");
        let mut args = vec!["--metadata-url", &metadata_url];
        for name in names {
            args.extend(["--target-name", name]);
        }
        let base = self.url("targets/");
        args.extend([
            "--target-base-url",
            &base,
            "--target-dir",
            targets.to_str().unwrap(),
            "download",
        ]);
        self.flipside(&args)
    }

    /// The paths the server was asked for, in order.
    fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir("server.log")).unwrap();
        log.lines()
            .filter_map(|l| l.split('"').nth(1))
            .filter_map(|r| {
                r.strip_prefix("GET ")
                    .map(|r| r.split(' ').next().unwrap_or(""))
            })
            .map(str::to_string)
            .collect()
    }

    fn trusted_version(&self, file: &str) -> u64 {
        let bytes = std::fs::read(self.dir("client-metadata").join(file)).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        value["signed"]["version"].as_u64().unwrap()
    }

    fn metadata_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir("client-metadata"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn downloaded(&self, local_name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir("client-targets").join(local_name)).ok()
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_ok(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(0), "{what}: {}", text(out));
}

/// Exit code 1, for the reason given (a piece of the error message).
fn assert_refused(out: &Output, what: &str, reason: &str) {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", text(out));
    assert!(
        text(out).contains(reason),
        "{what}: expected {reason:?} in {}",
        text(out)
    );
}

const BAD_SIGNATURE: &str = "valid signature(s) from distinct authorised keys";
const BAD_HASH: &str = "its signed sha256 is";

const FILE1: &[u8] = b"hello from python-tuf\n";

#[test]
fn plain_repository_is_refreshed_and_its_target_downloaded_once() {
    let s = Scene::new("plain", "none");
    s.init();
    assert_ok(&s.refresh(), "refresh");
    assert_eq!(
        s.metadata_files(),
        [
            "last-trusted-time",
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    assert_ok(&s.download("file1.txt"), "download");
    assert_eq!(s.downloaded("file1.txt").as_deref(), Some(FILE1));
    let fetched = |s: &Scene| {
        s.requests()
            .iter()
            .filter(|r| r.as_str() == "/targets/file1.txt")
            .count()
    };
    assert_eq!(fetched(&s), 1);
    // Without consistent snapshots, the non-versioned names are fetched.
    assert!(s
        .requests()
        .contains(&"/metadata/snapshot.json".to_string()));
    // Downloaded again: the local copy matches, so it is not fetched.
    let out = s.download("file1.txt");
    assert_ok(&out, "second download");
    assert_eq!(fetched(&s), 1, "{:?}", s.requests());
    // A damaged local copy is replaced by a verified one.
    std::fs::write(s.dir("client-targets/file1.txt"), b"changed").unwrap();
    assert_ok(&s.download("file1.txt"), "download over a damaged copy");
    assert_eq!(s.downloaded("file1.txt").as_deref(), Some(FILE1));
    assert_eq!(fetched(&s), 2);
    // A name no role lists.
    assert_refused(
        &s.download("missing.txt"),
        "unknown target",
        "no target named",
    );
}

#[test]
fn consistent_snapshot_repository_uses_versioned_and_hash_prefixed_names() {
    let s = Scene::new("consistent", "none");
    s.init();
    assert_ok(&s.download("file1.txt"), "download");
    assert_eq!(s.downloaded("file1.txt").as_deref(), Some(FILE1));
    let requests = s.requests();
    for expected in [
        "/metadata/2.root.json",
        "/metadata/timestamp.json",
        "/metadata/1.snapshot.json",
        "/metadata/1.targets.json",
    ] {
        assert!(
            requests.contains(&expected.to_string()),
            "{expected}: {requests:?}"
        );
    }
    let sha = flipside_sha256(FILE1);
    assert!(
        requests.contains(&format!("/targets/{sha}.file1.txt")),
        "{requests:?}"
    );
}

fn flipside_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn root_rotation_through_every_version_is_followed() {
    let s = Scene::new("rotation", "none");
    s.init();
    assert_eq!(s.trusted_version("root.json"), 1);
    assert_ok(&s.refresh(), "refresh");
    assert_eq!(s.trusted_version("root.json"), 3);
    let requests = s.requests();
    let roots: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains(".root.json"))
        .collect();
    assert_eq!(
        roots,
        [
            "/metadata/2.root.json",
            "/metadata/3.root.json",
            "/metadata/4.root.json"
        ]
    );
    assert_ok(&s.download("file1.txt"), "download");
    assert_eq!(s.downloaded("file1.txt").as_deref(), Some(FILE1));
}

#[test]
fn delegated_target_is_found_through_the_delegated_role() {
    let s = Scene::new("delegation", "none");
    s.init();
    assert_ok(&s.download("apps/app.tgz"), "download");
    assert_eq!(
        s.downloaded("apps%2Fapp.tgz").as_deref(),
        Some(&b"an app, delegated\n".repeat(50)[..])
    );
    assert!(s.metadata_files().contains(&"apps.json".to_string()));
    assert!(s.requests().contains(&"/metadata/1.apps.json".to_string()));
    // Downloaded again: the stored apps.json is the one the snapshot names, so it is reused.
    assert_ok(&s.download("apps/app.tgz"), "second download");
    let fetched = s
        .requests()
        .iter()
        .filter(|r| r.ends_with(".apps.json"))
        .count();
    assert_eq!(fetched, 1, "{:?}", s.requests());
    // A top-level target needs no delegated role.
    assert_ok(&s.download("file1.txt"), "download");
    assert_eq!(s.downloaded("file1.txt").as_deref(), Some(FILE1));
    // apps/* is delegated with `terminating`: a name under it that the role does not list is
    // not found anywhere else.
    assert_refused(
        &s.download("apps/other.tgz"),
        "unlisted delegated name",
        "no target named",
    );
}

#[test]
fn several_target_names_are_downloaded_in_order_until_the_first_failure() {
    let s = Scene::new("delegation", "none");
    s.init();
    let app = b"an app, delegated\n".repeat(50);
    assert_ok(
        &s.download_into("both", &["apps/app.tgz", "file1.txt"]),
        "two targets",
    );
    let saved = |dir: &str, file: &str| std::fs::read(s.dir(dir).join(file)).ok();
    assert_eq!(saved("both", "apps%2Fapp.tgz").as_deref(), Some(&app[..]));
    assert_eq!(saved("both", "file1.txt").as_deref(), Some(FILE1));
    // One client: one refresh for both (a single timestamp request).
    let timestamps = |s: &Scene| {
        s.requests()
            .iter()
            .filter(|r| r.ends_with("timestamp.json"))
            .count()
    };
    assert_eq!(timestamps(&s), 1, "{:?}", s.requests());

    // The first failure stops the command: what came before is saved, nothing after.
    let out = s.download_into("stopped", &["file1.txt", "apps/other.tgz", "apps/app.tgz"]);
    assert_refused(&out, "second of three unknown", "no target named");
    assert_eq!(saved("stopped", "file1.txt").as_deref(), Some(FILE1));
    assert_eq!(saved("stopped", "apps%2Fapp.tgz"), None);
}

#[test]
fn directory_mirror_with_a_fifo_or_a_link_is_refused_without_hanging() {
    let s = Scene::new("plain", "none");
    s.init();
    let metadata = s.dir("scene/repo/metadata");
    let dir_refresh =
        |s: &Scene| s.flipside(&["--metadata-url", metadata.to_str().unwrap(), "refresh"]);
    assert_ok(&dir_refresh(&s), "refresh from the directory");
    // A FIFO where the next root would be: no writer ever comes, a blocking open would hang.
    let fifo = metadata.join("2.root.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    assert_refused(&dir_refresh(&s), "fifo", "not a regular file");
    std::fs::remove_file(&fifo).unwrap();
    // A link as the timestamp: not followed.
    let timestamp = metadata.join("timestamp.json");
    std::fs::rename(&timestamp, metadata.join("real-timestamp.json")).unwrap();
    std::os::unix::fs::symlink("real-timestamp.json", &timestamp).unwrap();
    let out = dir_refresh(&s);
    assert_eq!(out.status.code(), Some(1), "link: {}", text(&out));
}

#[test]
fn a_missing_snapshot_keeps_the_verified_timestamp() {
    let s = Scene::new("plain", "none");
    s.init();
    let snapshot = s.dir("scene/repo/metadata/snapshot.json");
    let saved = std::fs::read(&snapshot).unwrap();
    std::fs::remove_file(&snapshot).unwrap();
    assert_refused(&s.refresh(), "refresh without a snapshot", "snapshot");
    // The timestamp verified before the snapshot failed: it is the trusted one now. The last
    // trusted time is recorded only by a refresh that succeeds.
    assert_eq!(
        s.metadata_files(),
        ["root.json", "timestamp.json"],
        "only the verified roles are kept"
    );
    assert_eq!(
        std::fs::read(s.dir("client-metadata/timestamp.json")).unwrap(),
        std::fs::read(s.dir("scene/repo/metadata/timestamp.json")).unwrap()
    );
    std::fs::write(&snapshot, saved).unwrap();
    assert_ok(&s.refresh(), "refresh once the snapshot is back");
}

#[test]
fn broken_timestamp_signature_is_refused() {
    let s = Scene::new("plain", "signature");
    s.init();
    assert_refused(&s.refresh(), "refresh", BAD_SIGNATURE);
    assert_eq!(s.metadata_files(), ["root.json"]);
    assert_refused(&s.download("file1.txt"), "download", BAD_SIGNATURE);
    assert_eq!(s.downloaded("file1.txt"), None);
}

#[test]
fn broken_rsa_pss_timestamp_signature_is_refused() {
    // The consistent scene's timestamp key is rsassa-pss-sha256: accepted intact (see
    // `consistent_snapshot_repository_...`), refused with one signature character changed.
    let s = Scene::new("consistent", "signature");
    s.init();
    assert_refused(&s.refresh(), "refresh", BAD_SIGNATURE);
    assert_eq!(s.metadata_files(), ["root.json"]);
}

#[test]
fn broken_signature_in_the_root_chain_is_refused() {
    let s = Scene::new("rotation", "signature");
    s.init();
    assert_refused(&s.refresh(), "refresh", BAD_SIGNATURE);
    assert_eq!(
        s.trusted_version("root.json"),
        1,
        "root v2 must not be trusted"
    );
    assert_refused(&s.download("file1.txt"), "download", "2.root.json");
}

#[test]
fn wrong_target_hash_is_refused_and_nothing_is_saved() {
    let s = Scene::new("consistent", "target-hash");
    s.init();
    // The metadata itself is valid.
    assert_ok(&s.refresh(), "refresh");
    assert_refused(&s.download("file1.txt"), "download", BAD_HASH);
    let left: Vec<_> = std::fs::read_dir(s.dir("client-targets"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn broken_delegated_role_is_refused() {
    for (breakage, reason) in [
        ("signature", BAD_SIGNATURE),
        ("wrong-key", BAD_SIGNATURE),
        ("target-hash", BAD_HASH),
    ] {
        let s = Scene::new("delegation", breakage);
        s.init();
        assert_ok(&s.refresh(), breakage);
        assert_refused(&s.download("apps/app.tgz"), breakage, reason);
        assert_eq!(s.downloaded("apps%2Fapp.tgz"), None, "{breakage}");
        if breakage != "target-hash" {
            assert!(
                !s.metadata_files().contains(&"apps.json".to_string()),
                "{breakage}: an unverified role was stored"
            );
        }
        // The top-level target does not depend on the broken role.
        assert_ok(&s.download("file1.txt"), breakage);
    }
}
