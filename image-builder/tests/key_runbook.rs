//! The publisher-keys runbook of `repository/README.md`, step by step through the command
//! line: an offline root (two keys, threshold 2, each on its own machine), root renewal by
//! detached signatures, an online key moved into a PKCS#11 token (SoftHSM2), a compromised key
//! revoked, and a root key replaced. After each step the device's TUF client follows; the
//! revoked key then signs a timestamp that neither `repo merge` nor a device accepts.

mod common;
#[path = "../../repository/tests/common/softhsm.rs"]
mod softhsm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::BIN;
use flipside_tuf::client::{Client, FsTransport, Limits, MetadataStore};

struct Runbook {
    _tmp: tempfile::TempDir,
    d: PathBuf,
    device: Client,
}

/// `repo merge` of the runbook's repository: the prepared file, then the signatures.
fn merge<'a>(files: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["repo", "merge", "--repo", "repo", "--keys", "keys"];
    args.extend_from_slice(files);
    args
}

/// `repo sign-detached PREPARED --key KEY --out OUT`.
fn sign<'a>(prepared: &'a str, key: &'a str, out: &'a str) -> [&'a str; 7] {
    [
        "repo",
        "sign-detached",
        prepared,
        "--key",
        key,
        "--out",
        out,
    ]
}

impl Runbook {
    /// `flipside-build ARGS` in the runbook's directory, with the test token's configuration.
    fn run(&self, args: &[&str]) -> Output {
        let (name, conf) = softhsm::token().env();
        Command::new(BIN)
            .args(args)
            .env(name, conf)
            .current_dir(&self.d)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "flipside-build {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A refused command: its exit code and stderr.
    fn refused(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(!out.status.success(), "flipside-build {args:?} succeeded");
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.d.join(rel)
    }

    /// The one key file of a directory.
    fn only_file(&self, rel: &str) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.path(rel))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{rel}: {files:?}");
        files
            .remove(0)
            .strip_prefix(&self.d)
            .unwrap()
            .display()
            .to_string()
    }

    fn metadata(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(self.path("repo/metadata"))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        files.sort();
        files
    }

    /// The device refreshes; its trusted root version.
    fn device_refresh(&mut self) -> u64 {
        let refreshed = self.device.refresh(chrono::Utc::now()).unwrap();
        refreshed.versions.root
    }
}

/// Step 1: create. Root has two keys, threshold 2; they leave the publishing machine.
fn create() -> Runbook {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_path_buf();
    let out = Command::new(BIN)
        .args(["repo", "init", "--repo", "repo", "--keys", "keys"])
        .args(["--keys-per-role", "root=2", "--threshold", "root=2"])
        .current_dir(&d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut roots: Vec<PathBuf> = std::fs::read_dir(d.join("keys/root"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    roots.sort();
    for (key, machine) in roots.iter().zip(["alice", "bob"]) {
        std::fs::create_dir(d.join(machine)).unwrap();
        std::fs::rename(key, d.join(machine).join(key.file_name().unwrap())).unwrap();
    }
    let root1 = std::fs::read(d.join("repo/metadata/1.root.json")).unwrap();
    let store = MetadataStore::init(d.join("device"), &root1).unwrap();
    let device = Client::new(store, FsTransport::new(d.join("repo")), Limits::default());
    Runbook {
        _tmp: tmp,
        d,
        device,
    }
}

/// Prepares root with `extra` options, has Alice and Bob (and `more` keys) sign it on their
/// machines, and merges.
fn root_change(r: &Runbook, extra: &[&str], more: &[&str]) -> String {
    let mut prepare = vec![
        "repo",
        "prepare",
        "--repo",
        "repo",
        "--role",
        "root",
        "--out",
        "root-next.json",
    ];
    prepare.extend_from_slice(extra);
    r.ok(&prepare);
    let alice = r.only_file("alice");
    let bob = r.only_file("bob");
    let mut sigs = Vec::new();
    for (i, key) in [alice.as_str(), bob.as_str()]
        .iter()
        .chain(more)
        .enumerate()
    {
        let sig = format!("root-next-{i}.sig");
        let shown = r.ok(&[
            "repo",
            "sign-detached",
            "root-next.json",
            "--role",
            "root",
            "--key",
            key,
            "--out",
            &sig,
        ]);
        assert!(
            shown.contains("role: root") && shown.contains("expires: "),
            "{shown}"
        );
        sigs.push(sig);
    }
    let mut merge = vec![
        "repo",
        "merge",
        "--repo",
        "repo",
        "--keys",
        "keys",
        "root-next.json",
    ];
    merge.extend(sigs.iter().map(String::as_str));
    r.ok(&merge)
}

#[test]
fn the_key_runbook_works_step_by_step_and_a_revoked_key_signs_nothing_a_device_accepts() {
    let mut r = create();
    assert_eq!(r.device_refresh(), 1);

    // Day to day: the online keys alone renew snapshot and timestamp.
    r.ok(&["repo", "resign", "--repo", "repo", "--keys", "keys"]);
    // Root needs its offline keys: without them, a clear refusal.
    let (code, stderr) = r.refused(&[
        "repo", "resign", "--repo", "repo", "--keys", "keys", "--role", "root",
    ]);
    assert_eq!(code, 6, "{stderr}");

    // Step 2: renew root by detached signatures. One is not enough, and changes nothing.
    r.ok(&[
        "repo",
        "prepare",
        "--repo",
        "repo",
        "--role",
        "root",
        "--out",
        "root-2.json",
    ]);
    let alice = r.only_file("alice");
    r.ok(&sign("root-2.json", &alice, "alice.sig"));
    let before = r.metadata();
    let (code, stderr) = r.refused(&merge(&["root-2.json", "alice.sig"]));
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("1 of the 2 signatures the current root requires"),
        "{stderr}"
    );
    assert_eq!(
        r.metadata(),
        before,
        "nothing published below the threshold"
    );
    let bob = r.only_file("bob");
    r.ok(&sign("root-2.json", &bob, "bob.sig"));
    let (code, stderr) = r.refused(&merge(&["root-2.json", "alice.sig", "alice.sig"]));
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("repeats a signature"), "{stderr}");
    let out = r.ok(&merge(&["root-2.json", "alice.sig", "bob.sig"]));
    assert!(out.contains("root 2"), "{out}");
    assert_eq!(r.device_refresh(), 2);

    // Step 3: move the timestamp key into a token (and revoke the file key it replaces).
    let token = softhsm::token();
    let uri = token.uri("timestamp-p256");
    r.ok(&[
        "repo",
        "public-key",
        "--key",
        &uri,
        "--out",
        "timestamp-hsm.pub",
    ]);
    let old_timestamp = r.only_file("keys/timestamp");
    std::fs::write(r.path("timestamp-hsm.pkcs11"), &uri).unwrap();
    r.ok(&[
        "repo",
        "prepare",
        "--repo",
        "repo",
        "--role",
        "root",
        "--out",
        "root-3.json",
        "--set-keys",
        "timestamp=timestamp-hsm.pub",
    ]);
    for (who, key) in [("alice", &alice), ("bob", &bob)] {
        r.ok(&sign("root-3.json", key, &format!("{who}-3.sig")));
    }
    std::fs::rename(
        r.path("timestamp-hsm.pkcs11"),
        r.path("keys/timestamp/hsm.pkcs11"),
    )
    .unwrap();
    let out = r.ok(&merge(&["root-3.json", "alice-3.sig", "bob-3.sig"]));
    assert!(out.contains("retired key file"), "{out}");
    assert_eq!(r.device_refresh(), 3);
    let trusted_timestamp = std::fs::read(r.path("device/timestamp.json")).unwrap();
    assert!(
        String::from_utf8_lossy(&trusted_timestamp).contains("\"sig\": \"30"),
        "an ECDSA (DER) timestamp signature"
    );
    let revoked = old_timestamp.replace("keys/timestamp", "keys/retired/timestamp");
    assert!(r.path(&revoked).is_file());

    // The revoked key signs a new timestamp: `merge` refuses it, and so does a device that
    // is served it (a mirror in an attacker's hands).
    r.ok(&[
        "repo",
        "prepare",
        "--repo",
        "repo",
        "--role",
        "timestamp",
        "--out",
        "ts.json",
    ]);
    r.ok(&sign("ts.json", &revoked, "evil.sig"));
    let (code, stderr) = r.refused(&merge(&["ts.json", "evil.sig"]));
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("which root does not list for the timestamp role"),
        "{stderr}"
    );
    let mut forged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.path("ts.json")).unwrap()).unwrap();
    let evil: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.path("evil.sig")).unwrap()).unwrap();
    forged["signatures"] = serde_json::json!([{"keyid": evil["keyid"], "sig": evil["sig"]}]);
    let published = std::fs::read(r.path("repo/metadata/timestamp.json")).unwrap();
    std::fs::write(
        r.path("repo/metadata/timestamp.json"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    let err = r.device.refresh(chrono::Utc::now()).unwrap_err();
    assert!(err.to_string().contains("timestamp"), "{err}");
    assert_eq!(
        std::fs::read(r.path("device/timestamp.json")).unwrap(),
        trusted_timestamp,
        "the device keeps its trusted timestamp"
    );
    std::fs::write(r.path("repo/metadata/timestamp.json"), published).unwrap();
    // The token key signs the same timestamp, and merge publishes it.
    r.ok(&sign("ts.json", &uri, "good.sig"));
    r.ok(&merge(&["ts.json", "good.sig"]));
    assert_eq!(r.device_refresh(), 3);

    // Step 4: Bob's root key is lost: replace it (signed by the old root's threshold, Alice
    // and Bob's last signature, and by the new root's, Alice and Carol).
    r.ok(&["repo", "keygen", "--out", "carol/root.json"]);
    let out = root_change(
        &r,
        &[
            "--set-keys",
            &format!("root={alice}"),
            "--set-keys",
            "root=carol/root.json",
            "--threshold",
            "root=2",
        ],
        &["carol/root.json"],
    );
    assert!(out.contains("root 4"), "{out}");
    assert_eq!(r.device_refresh(), 4);

    // python-tuf follows the same chain, ECDSA timestamp included.
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
            "py-cache",
        ])
        .current_dir(&r.d)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e}; run scripts/test.sh, which installs python-tuf")
        });
    assert!(
        out.status.success(),
        "python-tuf refused the repository:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
