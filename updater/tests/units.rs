//! The systemd units shipped in `updater/systemd/`: `systemd-analyze verify` accepts them (in a
//! scratch root holding systemd's own units from the build host and the real `flipside`
//! binary at `/usr/bin/flipside`, so that verify finds the program it checks), `systemctl
//! --root enable` lays down the links their `[Install]` sections promise, and the ordering and
//! hardening directives the design relies on are present (see the comments in the units).
//!
//! Needs `systemd-analyze` and `systemctl` (Debian package `systemd`; PID 1 need not be
//! systemd: both work offline on a root directory).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FLIPSIDE: &str = env!("CARGO_BIN_EXE_flipside");
const UNITS: &[&str] = &[
    "flipside-health.service",
    "flipside-update.service",
    "flipside-update.timer",
];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

fn unit_text(name: &str) -> String {
    let path = units_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?} ({e}): install Debian's `systemd` package (scripts/setup.sh does)",
            cmd.get_program()
        )
    })
}

/// systemd's unit directory on the build host (`/lib` before the /usr merge).
fn host_unit_dir() -> PathBuf {
    ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("sysinit.target").exists())
        .expect("no systemd unit directory with sysinit.target: install Debian's `systemd` package")
}

fn copy_dir(src: &Path, dst: &Path) {
    let out = run(Command::new("cp").arg("-a").arg(src).arg(dst));
    assert!(out.status.success(), "cp -a {}: {out:?}", src.display());
}

/// A scratch root: systemd's units, ours under /usr/lib/systemd/system (where a package puts
/// them), and `/usr/bin/flipside` as an executable copy of the binary under test.
fn scratch_root(units: &[(&str, String)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let unit_dir = root.path().join("usr/lib/systemd/system");
    fs::create_dir_all(unit_dir.parent().unwrap()).unwrap();
    copy_dir(&host_unit_dir(), &unit_dir);
    for (name, text) in units {
        fs::write(unit_dir.join(name), text).unwrap();
    }
    let bin = root.path().join("usr/bin/flipside");
    fs::create_dir_all(bin.parent().unwrap()).unwrap();
    fs::copy(FLIPSIDE, &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(root.path().join("etc/systemd/system")).unwrap();
    root
}

fn shipped() -> Vec<(&'static str, String)> {
    UNITS.iter().map(|u| (*u, unit_text(u))).collect()
}

/// `systemd-analyze verify --root=ROOT UNITS`. `Documentation=man:` links are checked when
/// `man` is installed (verify runs it), else skipped with a note.
fn verify(root: &Path, units: &[&str]) -> Output {
    let have_man = Command::new("man").arg("-w").arg("man").output().is_ok();
    if !have_man {
        eprintln!("units: `man` is not installed: Documentation= links are not checked");
    }
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--man={}", if have_man { "yes" } else { "no" }))
        .args(units))
}

#[test]
fn systemd_analyze_verify_accepts_the_shipped_units() {
    let root = scratch_root(&shipped());
    for unit in UNITS {
        let out = verify(root.path(), &[unit]);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify {unit}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn systemd_analyze_verify_refuses_a_unit_whose_program_is_missing() {
    // The check above is only worth something if verify looks at the scratch root's program.
    let broken = unit_text("flipside-health.service").replace(
        "ExecStart=/usr/bin/flipside",
        "ExecStart=/usr/bin/flipside-missing",
    );
    let root = scratch_root(&[("flipside-health.service", broken)]);
    let out = verify(root.path(), &["flipside-health.service"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "verify passed a missing program");
    assert!(stderr.contains("/usr/bin/flipside-missing"), "{stderr}");
}

#[test]
fn enabling_the_health_unit_links_it_into_multi_user_and_boot_complete() {
    let root = scratch_root(&shipped());
    let out = run(Command::new("systemctl")
        .arg(format!("--root={}", root.path().display()))
        .args(["enable", "flipside-health.service"]));
    assert!(out.status.success(), "systemctl enable: {out:?}");
    let etc = root.path().join("etc/systemd/system");
    for dir in ["multi-user.target.wants", "boot-complete.target.requires"] {
        let link = etc.join(dir).join("flipside-health.service");
        let target = fs::read_link(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
        assert_eq!(
            target,
            Path::new("/usr/lib/systemd/system/flipside-health.service")
        );
    }
    // The update service has no [Install] section: its timer starts it.
    let out = run(Command::new("systemctl")
        .arg(format!("--root={}", root.path().display()))
        .args(["is-enabled", "flipside-update.service"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "static");
}

#[test]
fn enabling_the_update_timer_links_it_into_timers_target() {
    let root = scratch_root(&shipped());
    let out = run(Command::new("systemctl")
        .arg(format!("--root={}", root.path().display()))
        .args(["enable", "flipside-update.timer"]));
    assert!(out.status.success(), "systemctl enable: {out:?}");
    let link = root
        .path()
        .join("etc/systemd/system/timers.target.wants/flipside-update.timer");
    let target = fs::read_link(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    assert_eq!(
        target,
        Path::new("/usr/lib/systemd/system/flipside-update.timer")
    );
    let u = parse_unit(&unit_text("flipside-update.timer"));
    for (key, value) in [
        ("OnBootSec", "15min"),
        ("OnUnitInactiveSec", "1h"),
        ("RandomizedDelaySec", "30min"),
        ("Unit", "flipside-update.service"),
    ] {
        assert!(
            has(&u, "Timer", key, value),
            "[Timer] {key}={value} missing"
        );
    }
}

/// A unit file as section -> directive -> values (list directives split on whitespace, every
/// occurrence appended, as systemd accumulates them). Values of `Exec*` stay whole.
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            unit.entry(section.clone()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a directive: {line:?}"));
        let values = unit
            .entry(section.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default();
        if key.starts_with("Exec") {
            values.push(value.trim().to_string());
        } else {
            values.extend(value.split_whitespace().map(str::to_string));
        }
    }
    unit
}

fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section)
        .and_then(|s| s.get(key))
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

fn has(unit: &Unit, section: &str, key: &str, value: &str) -> bool {
    values(unit, section, key).contains(&value)
}

#[test]
fn health_unit_orders_itself_by_boot_assessment() {
    let u = parse_unit(&unit_text("flipside-health.service"));
    let must = [
        // The verdict gates boot-complete.target ...
        ("Unit", "Before", "boot-complete.target"),
        ("Install", "RequiredBy", "boot-complete.target"),
        // ... which nothing else pulls in without systemd-boot's counting.
        ("Unit", "Wants", "boot-complete.target"),
        // The checks judge the started system.
        ("Unit", "After", "multi-user.target"),
        ("Unit", "After", "default.target"),
        // Wanted by the target it is ordered after: only without default dependencies ...
        ("Install", "WantedBy", "multi-user.target"),
        ("Unit", "DefaultDependencies", "no"),
        // ... so the ones it needs are written out.
        ("Unit", "Requires", "sysinit.target"),
        ("Unit", "After", "sysinit.target"),
        ("Unit", "After", "basic.target"),
        ("Unit", "Conflicts", "shutdown.target"),
        ("Unit", "Before", "shutdown.target"),
        ("Service", "Type", "oneshot"),
        ("Service", "RemainAfterExit", "yes"),
        ("Service", "ExecStart", "/usr/bin/flipside health"),
    ];
    for (section, key, value) in must {
        assert!(
            has(&u, section, key, value),
            "[{section}] {key}={value} missing"
        );
    }
    // No condition: the command decides trial or proven from the GPT bits.
    assert!(u["Unit"].keys().all(|k| !k.starts_with("Condition")));
}

#[test]
fn update_unit_waits_for_the_verdict_and_yields_to_the_appliance() {
    let u = parse_unit(&unit_text("flipside-update.service"));
    let must = [
        ("Unit", "After", "flipside-health.service"),
        ("Unit", "After", "network-online.target"),
        ("Unit", "Wants", "network-online.target"),
        ("Service", "Type", "oneshot"),
        ("Service", "ExecStart", "/usr/bin/flipside update"),
        ("Service", "Nice", "19"),
        ("Service", "IOSchedulingClass", "idle"),
        ("Service", "ProtectSystem", "strict"),
        ("Service", "StateDirectory", "flipside"),
        ("Service", "NoNewPrivileges", "yes"),
    ];
    for (section, key, value) in must {
        assert!(
            has(&u, section, key, value),
            "[{section}] {key}={value} missing"
        );
    }
    // What would hide or deny the disk it writes (ProtectClock= implies a DeviceAllow= list).
    for key in [
        "PrivateDevices",
        "DeviceAllow",
        "DevicePolicy",
        "ProtectClock",
    ] {
        assert!(
            values(&u, "Service", key).is_empty(),
            "{key}= would block the disk"
        );
    }
    // Started by its timer, not enabled by itself.
    assert!(!u.contains_key("Install"));
}

#[test]
fn the_unit_parser_reads_lists_and_exec_lines() {
    let u = parse_unit("[Unit]\nAfter=a b\n# c\nAfter=d\n[Service]\nExecStart=/x y z\n");
    assert_eq!(values(&u, "Unit", "After"), ["a", "b", "d"]);
    assert_eq!(values(&u, "Service", "ExecStart"), ["/x y z"]);
}
