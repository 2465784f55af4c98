//! The health-check runner: every executable in the configured directory, in name order, each
//! in its own process group with a timeout after which the whole group is killed. The first
//! failure stops the run. No directory means no checks (a healthy boot is one that got here).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
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
}

/// One check that ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub outcome: CheckOutcome,
}

/// The checks in `dir`: executable regular files not starting with `.`, sorted by name.
pub fn list_checks(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!(
                "no health-check directory {}: no checks to run",
                dir.display()
            );
            return Ok(Vec::new());
        }
        Err(source) => {
            return Err(Error::Spawn {
                what: format!("the health checks in {}", dir.display()),
                source,
            })
        }
    };
    let mut checks = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if hidden || !meta.is_file() {
            continue;
        }
        if meta.permissions().mode() & 0o111 == 0 {
            log::warn!("skipping {}: not executable", path.display());
            continue;
        }
        checks.push(path);
    }
    checks.sort();
    Ok(checks)
}

/// Runs the checks until one fails; returns every result so far.
pub fn run_checks(dir: &Path, timeout: Duration) -> Result<Vec<CheckResult>> {
    let mut results = Vec::new();
    for path in list_checks(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        log::info!("health check {name}");
        let outcome = run_one(&path, timeout)?;
        let failed = outcome != CheckOutcome::Passed;
        results.push(CheckResult { name, outcome });
        if failed {
            break;
        }
    }
    Ok(results)
}

fn run_one(path: &Path, timeout: Duration) -> Result<CheckOutcome> {
    let mut child = Command::new(path)
        .stdin(Stdio::null())
        // Its own process group, so that a timeout kills whatever it started too.
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            what: path.display().to_string(),
            source,
        })?;
    let started = Instant::now();
    let wait_err = |source| Error::Spawn {
        what: path.display().to_string(),
        source,
    };
    loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            return Ok(judge(status));
        }
        if started.elapsed() >= timeout {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Ok(CheckOutcome::TimedOut(timeout));
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

/// Runs the configured reboot command.
pub fn reboot(command: &[String]) -> Result<()> {
    let shown = command.join(" ");
    let (program, args) = command.split_first().ok_or_else(|| Error::Reboot {
        command: shown.clone(),
        why: "empty command".into(),
    })?;
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::Reboot {
            command: shown.clone(),
            why: e.to_string(),
        })?;
    if !status.success() {
        return Err(Error::Reboot {
            command: shown,
            why: status.to_string(),
        });
    }
    Ok(())
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
    fn sorted_executables_only_and_stop_at_first_failure() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("log");
        let d = t.path().join("health.d");
        std::fs::create_dir(&d).unwrap();
        let l = log.display();
        script(&d, "20-second", &format!("echo 20 >> {l}"), 0o755);
        script(&d, "10-first", &format!("echo 10 >> {l}"), 0o755);
        script(&d, "15-not-executable", &format!("echo 15 >> {l}"), 0o644);
        script(&d, ".hidden", &format!("echo hidden >> {l}"), 0o755);
        script(&d, "30-fails", &format!("echo 30 >> {l}; exit 3"), 0o755);
        script(&d, "40-never", &format!("echo 40 >> {l}"), 0o755);
        let results = run_checks(&d, Duration::from_secs(30)).unwrap();
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["10-first", "20-second", "30-fails"]);
        assert!(matches!(results[2].outcome, CheckOutcome::Failed(_)));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "10\n20\n30\n");
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
        let results = run_checks(d, Duration::from_millis(300)).unwrap();
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
            run_checks(&t.path().join("none"), Duration::from_secs(1)).unwrap(),
            vec![]
        );
    }

    #[test]
    fn reboot_command_status() {
        reboot(&["true".into()]).unwrap();
        assert!(matches!(
            reboot(&["false".into()]),
            Err(Error::Reboot { .. })
        ));
        assert!(matches!(
            reboot(&["/nonexistent/reboot".into()]),
            Err(Error::Reboot { .. })
        ));
    }
}
