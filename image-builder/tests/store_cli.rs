//! `flipside-build store add`, `closure` and `diff` as a user runs them: the built binary,
//! real files, the real Nix of the host; output and exit codes checked.
//!
//! Exit codes: 0 ok, 2 usage, 3 input, 4 store, 9 tool (nix), 10 I/O.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flipside_contract::release::{ClosureEntry, FileInfo, ImageInfo, Release, RELEASE_FORMAT};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_flipside-build");

/// A finished run of the binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        self
    }

    fn fails(self, code: i32, says: &str) -> Run {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(self.stderr.starts_with("error: "), "{}", self.stderr);
        assert!(
            self.stderr.contains(says),
            "{:?} not in {}",
            says,
            self.stderr
        );
        self
    }

    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs `flipside-build` in `cwd` without FLIPSIDE_STORE from the caller's environment.
fn cli(cwd: &Path, args: &[&str]) -> Run {
    cli_env(cwd, args, &[])
}

fn cli_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd).env_remove("FLIPSIDE_STORE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run flipside-build").into()
}

fn write(root: &Path, rel: &str, content: &str) -> PathBuf {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Builds the two-path Nix fixture of the store crate with the host's real Nix.
fn nix_fixture() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/tests/nix-fixture.sh");
    let out = Command::new(&script).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}): install Nix (apt-get install nix-bin)",
            script.display()
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn store_add_prints_the_host_path_and_is_idempotent() {
    let t = TempDir::new().unwrap();
    write(t.path(), "motd/etc/motd", "welcome\n");
    let first = cli(
        t.path(),
        &[
            "store", "add", "motd", "--name", "motd-1.0", "--store", "st",
        ],
    )
    .ok();
    let lines = first.lines();
    assert_eq!(lines.len(), 1);
    let printed = lines[0];
    assert!(
        printed.starts_with("st/") && printed.ends_with("-motd-1.0"),
        "{printed}"
    );
    assert_eq!(printed.len(), "st/".len() + 32 + "-motd-1.0".len());
    assert_eq!(
        fs::read_to_string(t.path().join(printed).join("etc/motd")).unwrap(),
        "welcome\n"
    );
    let second = cli(
        t.path(),
        &[
            "store", "add", "motd", "--name", "motd-1.0", "--store", "st",
        ],
    )
    .ok();
    assert_eq!(second.stdout, first.stdout);
}

#[test]
fn the_store_defaults_to_the_environment_then_the_working_directory() {
    let t = TempDir::new().unwrap();
    write(t.path(), "pkg/f", "x");
    let by_default = cli(t.path(), &["store", "add", "pkg", "--name", "pkg"]).ok();
    assert!(
        by_default.stdout.starts_with("flipside-store/"),
        "{}",
        by_default.stdout
    );
    assert!(t.path().join("flipside-store/.flipside-store").is_file());
    let env_store = t.path().join("from-env");
    let by_env = cli_env(
        t.path(),
        &["store", "add", "pkg", "--name", "pkg"],
        &[("FLIPSIDE_STORE", s(&env_store))],
    )
    .ok();
    assert!(
        by_env.stdout.starts_with(s(&env_store)),
        "{}",
        by_env.stdout
    );
    // Same content and name: the same hash in either store.
    let base = |out: &str| out.trim().rsplit('/').next().unwrap().to_string();
    assert_eq!(base(&by_default.stdout), base(&by_env.stdout));
}

#[test]
fn store_add_refusals_exit_with_their_class() {
    let t = TempDir::new().unwrap();
    write(t.path(), "ok/f", "x");
    cli(
        t.path(),
        &["store", "add", "missing", "--name", "x", "--store", "st"],
    )
    .fails(3, "does not exist");
    cli(
        t.path(),
        &["store", "add", "ok", "--name", "bad/name", "--store", "st"],
    )
    .fails(3, "not a valid store path name");

    let fifo = t.path().join("fifo");
    fs::create_dir(&fifo).unwrap();
    let made = Command::new("mkfifo")
        .arg(fifo.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    cli(
        t.path(),
        &["store", "add", "fifo", "--name", "x", "--store", "st"],
    )
    .fails(4, "named pipe");

    let escape = t.path().join("escape");
    fs::create_dir(&escape).unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", escape.join("passwd")).unwrap();
    cli(
        t.path(),
        &["store", "add", "escape", "--name", "x", "--store", "st"],
    )
    .fails(4, "climbs above the store directory");
    let other_store = t.path().join("other-store");
    fs::create_dir(&other_store).unwrap();
    std::os::unix::fs::symlink("/nix/store/x", other_store.join("x")).unwrap();
    cli(
        t.path(),
        &[
            "store",
            "add",
            "other-store",
            "--name",
            "x",
            "--store",
            "st",
        ],
    )
    .fails(4, "/nix/store/x");

    let dangling = format!("/flipside/store/{}-gone", "0".repeat(32));
    cli(
        t.path(),
        &[
            "store", "add", "ok", "--name", "x", "--store", "st", "--ref", &dangling,
        ],
    )
    .fails(4, "not in the store");

    // A directory that is not a store is left alone.
    write(t.path(), "notastore/precious", "x");
    cli(
        t.path(),
        &["store", "add", "ok", "--name", "x", "--store", "notastore"],
    )
    .fails(3, "is not a flipside store");

    // A store that cannot be read is a store error (exit 4, as for any unreadable input).
    write(t.path(), "a-file", "x");
    cli(
        t.path(),
        &["store", "add", "ok", "--name", "x", "--store", "a-file"],
    )
    .fails(4, "cannot read");
    // No failed add left anything in the store.
    assert_eq!(fs::read_dir(t.path().join("st/.meta")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(t.path().join("st/.tmp")).unwrap().count(), 0);
}

#[test]
fn store_add_keeps_absolute_links_of_a_root_tree() {
    let t = TempDir::new().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/systemd", root.join("bin/systemd")).unwrap();
    std::os::unix::fs::symlink("/dev/null", root.join("etc/rc.service")).unwrap();
    // Exists on the build host: must be kept as a link, not read.
    std::os::unix::fs::symlink("/etc/passwd", root.join("etc/passwd")).unwrap();
    let added = cli(
        t.path(),
        &["store", "add", "root", "--name", "root", "--store", "st"],
    )
    .ok();
    let path = t.path().join(added.stdout.trim());
    for (rel, target) in [
        ("bin/systemd", "/lib/systemd/systemd"),
        ("etc/rc.service", "/dev/null"),
        ("etc/passwd", "/etc/passwd"),
    ] {
        assert!(fs::symlink_metadata(path.join(rel)).unwrap().is_symlink());
        assert_eq!(fs::read_link(path.join(rel)).unwrap(), Path::new(target));
    }
}

#[test]
fn closure_of_built_in_paths_in_text_and_json() {
    let t = TempDir::new().unwrap();
    write(t.path(), "lib/lib/libgreet.so", "greet");
    let lib = cli(
        t.path(),
        &[
            "store",
            "add",
            "lib",
            "--name",
            "greet-1.0",
            "--store",
            "st",
        ],
    )
    .ok();
    let lib_host = lib.stdout.trim().to_string();
    let lib_path = format!("/flipside/store/{}", lib_host.trim_start_matches("st/"));
    // The app names the library in a file: a scanned reference.
    write(
        t.path(),
        "app/etc/app.conf",
        &format!("plugin={lib_path}/lib/libgreet.so\n"),
    );
    let app = cli(
        t.path(),
        &["store", "add", "app", "--name", "app-2.0", "--store", "st"],
    )
    .ok();
    let app_host = app.stdout.trim().to_string();
    let app_path = format!("/flipside/store/{}", app_host.trim_start_matches("st/"));

    let mut want = vec![format!("{app_path}: {lib_path}"), format!("{lib_path}:")];
    want.sort();
    for spec in [&app_host, &app_path, &format!("{app_host}/etc/app.conf")] {
        let out = cli(t.path(), &["closure", spec, "--store", "st"]).ok();
        assert_eq!(out.lines(), want, "{spec}");
    }
    let json = cli(t.path(), &["closure", &app_path, "--store", "st", "--json"]).ok();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let entries = value.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let app_entry = entries
        .iter()
        .find(|e| e["path"] == app_path.as_str())
        .unwrap();
    assert_eq!(app_entry["references"], serde_json::json!([lib_path]));
    assert!(app_entry["hash"].as_str().unwrap().starts_with("sha256:"));
    assert!(app_entry["source"].as_str().unwrap().ends_with(&app_host));
}

#[test]
fn closure_refusals_exit_with_their_class() {
    let t = TempDir::new().unwrap();
    write(t.path(), "pkg/f", "x");
    cli(
        t.path(),
        &["store", "add", "pkg", "--name", "pkg", "--store", "st"],
    )
    .ok();
    cli(t.path(), &["closure", "/usr/bin", "--store", "st"]).fails(3, "is not a store path");
    let missing = format!("/flipside/store/{}-missing", "0".repeat(32));
    cli(t.path(), &["closure", &missing, "--store", "st"]).fails(4, "is not in the store");
    // No store: a built-in path cannot be looked up, and none is created.
    cli(t.path(), &["closure", &missing, "--store", "nostore"]).fails(3, "no built-in store");
    assert!(!t.path().join("nostore").exists());
    // A dangling reference inside the store names both paths.
    write(t.path(), "dep/f", "dep");
    let dep = cli(
        t.path(),
        &["store", "add", "dep", "--name", "dep", "--store", "st"],
    )
    .ok();
    let dep_base = dep.stdout.trim().trim_start_matches("st/").to_string();
    let top = cli(
        t.path(),
        &[
            "store",
            "add",
            "pkg",
            "--name",
            "top",
            "--store",
            "st",
            "--ref",
            dep.stdout.trim(),
        ],
    )
    .ok();
    fs::remove_file(t.path().join("st/.meta").join(format!("{dep_base}.json"))).unwrap();
    cli(t.path(), &["closure", top.stdout.trim(), "--store", "st"])
        .fails(4, &format!("references /flipside/store/{dep_base}"));
    // Usage errors are clap's.
    assert_eq!(cli(t.path(), &["closure"]).code, 2);
}

#[test]
fn closure_of_a_nix_build_by_running_nix_or_from_saved_files() {
    let app = nix_fixture();
    let t = TempDir::new().unwrap();
    let run = cli(t.path(), &["closure", &app]).ok();
    let lines = run.lines();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    let leaf_line = lines
        .iter()
        .find(|l| l.contains("-flipside-test-leaf:"))
        .unwrap();
    let leaf = leaf_line.trim_end_matches(':');
    assert!(
        lines.contains(&format!("{app}: {leaf}").as_str()),
        "{lines:?}"
    );
    assert!(
        !t.path().join("flipside-store").exists(),
        "a Nix closure creates no store"
    );

    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/tests/data/nix");
    let from_file = cli(
        t.path(),
        &[
            "closure",
            "--nix-path-info",
            s(&data.join("path-info-2.8.json")),
        ],
    )
    .ok();
    assert_eq!(from_file.stdout, run.stdout);
    let from_info = cli(
        t.path(),
        &[
            "closure",
            &app,
            "--closure-info",
            s(&data.join("closure-info")),
        ],
    )
    .ok();
    assert_eq!(from_info.stdout, run.stdout);

    // A nix-build `result` link is followed.
    std::os::unix::fs::symlink(&app, t.path().join("result")).unwrap();
    assert_eq!(
        cli(t.path(), &["closure", "result"]).ok().stdout,
        run.stdout
    );
}

#[test]
fn closure_without_nix_is_a_tool_error() {
    let app = nix_fixture();
    let t = TempDir::new().unwrap();
    let empty_path = t.path().join("empty-bin");
    fs::create_dir(&empty_path).unwrap();
    cli_env(t.path(), &["closure", &app], &[("PATH", s(&empty_path))])
        .fails(9, "`nix` could not be run");
}

fn release(version: u64, closure: Vec<ClosureEntry>) -> Release {
    let sha = "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7".to_string();
    Release {
        format: RELEASE_FORMAT,
        name: "kiosk".into(),
        version,
        display_version: format!("1.0.{version}"),
        hardware_id: "qemu-x86_64".into(),
        architecture: Default::default(),
        image: ImageInfo {
            filesystem: "squashfs".into(),
            length: 4096,
            sha256: sha.clone(),
        },
        bundle: FileInfo {
            name: format!("kiosk-{version}.bundle"),
            length: 1,
            sha256: sha.clone(),
        },
        index: FileInfo {
            name: format!("kiosk-{version}.index"),
            length: 1,
            sha256: sha,
        },
        init: "/sbin/init".into(),
        closure,
        kernel: None,
        allow_rollback: false,
    }
}

fn entry(path: &str, h: char) -> ClosureEntry {
    ClosureEntry {
        path: path.into(),
        hash: format!("sha256:{}", h.to_string().repeat(64)),
        references: vec![],
    }
}

#[test]
fn diff_of_two_releases() {
    let t = TempDir::new().unwrap();
    let ssl1 = "/nix/store/0c0aq1rx8hwbzj1l1lvxv3f1pz3vmd4y-openssl-3.0.1";
    let ssl2 = "/nix/store/143xibwh31h9bvxzalr0sjvbbvpa6ffs-openssl-3.0.2";
    let curl = "/nix/store/2h9i448h1w70s30b184hh1q60l2060h1-curl-8.0";
    let zlib = "/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-zlib-1.3";
    let glibc = "/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-glibc-2.37";
    let old = release(
        6,
        vec![entry(ssl1, 'a'), entry(curl, 'b'), entry(glibc, 'c')],
    );
    let new = release(
        7,
        vec![entry(ssl2, 'd'), entry(zlib, 'e'), entry(glibc, 'c')],
    );
    fs::create_dir(t.path().join("out6")).unwrap();
    fs::write(
        t.path().join("out6/release.json"),
        serde_json::to_string_pretty(&old).unwrap(),
    )
    .unwrap();
    fs::write(
        t.path().join("new.json"),
        serde_json::to_string(&new).unwrap(),
    )
    .unwrap();

    let text = cli(t.path(), &["diff", "out6", "new.json"]).ok();
    assert_eq!(
        text.lines(),
        [
            format!("~ openssl 3.0.1 -> 3.0.2: {ssl1} -> {ssl2}"),
            format!("+ {zlib}"),
            format!("- {curl}"),
            "1 added, 1 removed, 1 changed".to_string(),
        ]
    );
    let json = cli(
        t.path(),
        &["diff", "out6/release.json", "new.json", "--json"],
    )
    .ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["added"][0]["path"], zlib);
    assert_eq!(v["removed"][0]["path"], curl);
    assert_eq!(v["changed"][0]["name"], "openssl");
    assert_eq!(v["changed"][0]["old"]["path"], ssl1);
    assert_eq!(v["changed"][0]["new"]["path"], ssl2);
    let same = cli(t.path(), &["diff", "new.json", "new.json"]).ok();
    assert_eq!(same.lines(), ["0 added, 0 removed, 0 changed"]);
}

#[test]
fn diff_refusals_are_input_errors() {
    let t = TempDir::new().unwrap();
    fs::write(
        t.path().join("good.json"),
        serde_json::to_string(&release(1, vec![])).unwrap(),
    )
    .unwrap();
    fs::write(t.path().join("junk.json"), "{ not json").unwrap();
    let mut future = serde_json::to_value(release(1, vec![])).unwrap();
    future["format"] = 99.into();
    fs::write(t.path().join("future.json"), future.to_string()).unwrap();
    cli(t.path(), &["diff", "nothing-here", "good.json"]).fails(3, "no release.json at");
    fs::create_dir(t.path().join("emptydir")).unwrap();
    cli(t.path(), &["diff", "good.json", "emptydir"]).fails(3, "emptydir/release.json");
    cli(t.path(), &["diff", "good.json", "junk.json"]).fails(3, "is not a release description");
    cli(t.path(), &["diff", "future.json", "good.json"]).fails(3, "format 99 is not supported");
}

#[test]
fn every_command_shows_an_example_in_its_help() {
    let t = TempDir::new().unwrap();
    for args in [
        &["store", "add", "--help"][..],
        &["closure", "--help"],
        &["diff", "--help"],
    ] {
        let help = cli(t.path(), args).ok();
        assert!(help.stdout.contains("Example"), "{args:?}: {}", help.stdout);
        assert!(help.stdout.contains("flipside-build "), "{args:?}");
    }
}
