//! The health-check runner: every entry of the configured directory not starting with `.`, in
//! name order, each in its own process group with a timeout after which the whole group is
//! killed. The first failure stops the run. An entry that cannot be run (no executable bit, a
//! dangling link, a missing interpreter) and a directory that cannot be listed are failed
//! checks, never skipped: a check that did not run proves nothing. Subdirectories are skipped.
//! A missing directory means no checks; whether that may commit a trial is the caller's
//! decision (`health.no_checks`).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How one check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    Passed,
    /// Exited non-zero or was killed by a signal.
    Failed(String),
    /// Ran past the timeout and was killed.
    TimedOut(Duration),
    /// Could not be started, or the directory could not be read: why.
    CannotRun(String),
}

/// One check that ran (or should have).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub outcome: CheckOutcome,
}

/// One entry of the check directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An executable regular file.
    Check(PathBuf),
    /// Something that was meant to be a check but cannot be run: its name and why.
    Unrunnable(String, String),
}

impl Entry {
    fn name(&self) -> String {
        match self {
            Entry::Check(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Entry::Unrunnable(name, _) => name.clone(),
        }
    }
}

/// The entries of `dir` in name order (`.` names and subdirectories left out); no directory
/// gives none. A directory that cannot be listed is one unrunnable entry named after it.
pub fn list_checks(dir: &Path) -> Vec<Entry> {
    let cannot_list = |e: std::io::Error| {
        vec![Entry::Unrunnable(
            dir.display().to_string(),
            format!("cannot list the health-check directory: {e}"),
        )]
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!("no health-check directory {}", dir.display());
            return Vec::new();
        }
        Err(e) => return cannot_list(e),
    };
    let mut checks = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return cannot_list(e),
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let unrunnable = |why: String| Entry::Unrunnable(name.clone(), why);
        checks.push(match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                unrunnable("a link to nothing".into())
            }
            Err(e) => unrunnable(format!("cannot stat it: {e}")),
            Ok(meta) if meta.is_dir() => continue,
            Ok(meta) if !meta.is_file() => unrunnable("not a regular file".into()),
            Ok(meta) if meta.permissions().mode() & 0o111 == 0 => {
                unrunnable("not executable: chmod +x it, or remove it".into())
            }
            Ok(_) => Entry::Check(path),
        });
    }
    checks.sort_by_key(Entry::name);
    checks
}

/// Runs the checks until one fails; returns every result so far (none: no checks).
pub fn run_checks(dir: &Path, timeout: Duration) -> Vec<CheckResult> {
    let mut results = Vec::new();
    for entry in list_checks(dir) {
        let name = entry.name();
        log::info!("health check {name}");
        let outcome = match entry {
            Entry::Check(path) => run_one(&path, timeout),
            Entry::Unrunnable(_, why) => CheckOutcome::CannotRun(why),
        };
        let failed = outcome != CheckOutcome::Passed;
        results.push(CheckResult { name, outcome });
        if failed {
            break;
        }
    }
    results
}

fn run_one(path: &Path, timeout: Duration) -> CheckOutcome {
    let child = Command::new(path)
        .stdin(Stdio::null())
        // Its own process group, so that a timeout kills whatever it started too.
        .process_group(0)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return CheckOutcome::CannotRun(e.to_string()),
    };
    match wait_bounded(child, timeout) {
        Ok(Some(status)) => judge(status),
        Ok(None) => CheckOutcome::TimedOut(timeout),
        Err(e) => CheckOutcome::CannotRun(format!("cannot wait for it: {e}")),
    }
}

/// Waits for `child` (the leader of its own process group) at most `timeout`; past it, kills
/// the whole group and returns `None`.
fn wait_bounded(mut child: Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if started.elapsed() >= timeout {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn judge(status: ExitStatus) -> CheckOutcome {
    if status.success() {
        CheckOutcome::Passed
    } else {
        CheckOutcome::Failed(status.to_string())
    }
}

/// Runs the configured reboot command, killing its process group after `timeout`.
pub fn reboot(command: &[String], timeout: Duration) -> Result<()> {
    let shown = command.join(" ");
    let failed = |why: String| Error::Reboot {
        command: shown.clone(),
        why,
    };
    let (program, args) = command
        .split_first()
        .ok_or_else(|| failed("empty command".into()))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    match wait_bounded(child, timeout).map_err(|e| failed(e.to_string()))? {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(failed(status.to_string())),
        None => Err(failed(format!(
            "still running after {timeout:?} (health.reboot_timeout_secs), killed"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str, mode: u32) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn sorted_and_stop_at_first_failure() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("log");
        let d = t.path().join("health.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::create_dir(d.join("05-subdir")).unwrap();
        let l = log.display();
        script(&d, "20-second", &format!("echo 20 >> {l}"), 0o755);
        script(&d, "10-first", &format!("echo 10 >> {l}"), 0o755);
        script(&d, ".hidden", &format!("echo hidden >> {l}"), 0o755);
        script(&d, "30-fails", &format!("echo 30 >> {l}; exit 3"), 0o755);
        script(&d, "40-never", &format!("echo 40 >> {l}"), 0o755);
        let results = run_checks(&d, Duration::from_secs(30));
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["10-first", "20-second", "30-fails"]);
        assert!(matches!(results[2].outcome, CheckOutcome::Failed(_)));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "10\n20\n30\n");
    }

    #[test]
    fn a_check_that_cannot_run_fails_in_its_place() {
        /// Makes the unrunnable entry `15-x` in a directory.
        type Make = fn(&Path);
        let cases: [(&str, Make); 4] = [
            ("not executable", |d| script(d, "15-x", "exit 0", 0o644)),
            ("a link to nothing", |d| {
                std::os::unix::fs::symlink("/nonexistent/check", d.join("15-x")).unwrap()
            }),
            ("No such file", |d| {
                std::fs::write(d.join("15-x"), "#!/nonexistent/sh\nexit 0\n").unwrap();
                std::fs::set_permissions(d.join("15-x"), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }),
            ("not a regular file", |d| {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    d.join("15-x"),
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o755),
                    0,
                )
                .unwrap()
            }),
        ];
        for (why, make) in cases {
            let t = tempfile::tempdir().unwrap();
            let d = t.path();
            script(d, "10-ok", "exit 0", 0o755);
            make(d);
            script(d, "20-never", "exit 0", 0o755);
            let results = run_checks(d, Duration::from_secs(30));
            assert_eq!(results.len(), 2, "{why}: {results:?}");
            assert_eq!(results[1].name, "15-x");
            match &results[1].outcome {
                CheckOutcome::CannotRun(w) => assert!(w.contains(why), "{why}: {w}"),
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_directory_that_cannot_be_listed_is_a_failed_check() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("health.d");
        std::fs::write(&file, "not a directory").unwrap();
        let results = run_checks(&file, Duration::from_secs(1));
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].name, file.display().to_string());
        assert!(
            matches!(&results[0].outcome, CheckOutcome::CannotRun(w) if w.contains("cannot list"))
        );
    }

    #[test]
    fn a_hanging_check_is_killed_with_its_children() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let marker = d.join("child-alive");
        // The check starts a child that would write the marker after the check is killed.
        script(
            d,
            "hang",
            &format!("(sleep 2; touch {}) & sleep 60", marker.display()),
            0o755,
        );
        let results = run_checks(d, Duration::from_millis(300));
        assert_eq!(
            results[0].outcome,
            CheckOutcome::TimedOut(Duration::from_millis(300))
        );
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the check's child survived the timeout");
    }

    #[test]
    fn missing_directory_means_no_checks() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            run_checks(&t.path().join("none"), Duration::from_secs(1)),
            vec![]
        );
    }

    #[test]
    fn reboot_command_status() {
        let t = Duration::from_secs(30);
        reboot(&["true".into()], t).unwrap();
        assert!(matches!(
            reboot(&["false".into()], t),
            Err(Error::Reboot { .. })
        ));
        assert!(matches!(
            reboot(&["/nonexistent/reboot".into()], t),
            Err(Error::Reboot { .. })
        ));
    }

    #[test]
    fn a_hanging_reboot_command_is_killed_after_its_timeout() {
        let cmd = ["sh".into(), "-c".into(), "sleep 600".into()];
        match reboot(&cmd, Duration::from_millis(200)) {
            Err(Error::Reboot { why, .. }) => assert!(why.contains("killed"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
