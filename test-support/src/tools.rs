//! The programs the test suites run (mksquashfs, sgdisk, nginx, ...): found, or the test fails
//! saying which package to install; run with their exit status checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Directories searched after `PATH`: the sbin ones are often missing from a user's `PATH`.
const EXTRA_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Where `name` is, from `PATH` then the system directories. Pure but for the file checks.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `name`'s path; fails the test, naming the Debian `package` to install, when it is missing.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!("this test needs `{name}`: install it (apt-get install {package})")
    })
}

/// A command for `name` (see [`require_tool`]).
pub fn tool(name: &str, package: &str) -> Command {
    Command::new(require_tool(name, package))
}

/// Runs `cmd` and fails the test unless it exits 0; its output otherwise.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `cp -a FROM TO`: a directory tree copied with modes and times.
pub fn copy_tree(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_not_a_made_up_name() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("no-such-tool-flipside").is_none());
    }

    #[test]
    #[should_panic(expected = "apt-get install some-package")]
    fn a_missing_tool_names_its_package() {
        require_tool("no-such-tool-flipside", "some-package");
    }

    #[test]
    fn run_ok_returns_the_output_and_fails_on_a_bad_exit() {
        let out = run_ok(Command::new("sh").args(["-c", "echo hi"]));
        assert_eq!(out.stdout, b"hi\n");
        let failed = std::panic::catch_unwind(|| run_ok(Command::new("sh").args(["-c", "exit 3"])));
        assert!(failed.is_err());
    }

    #[test]
    fn copy_tree_copies_a_directory() {
        let dir = std::env::temp_dir().join(format!("flipside-ts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f"), b"x").unwrap();
        copy_tree(&dir.join("a"), &dir.join("c"));
        assert_eq!(std::fs::read(dir.join("c/b/f")).unwrap(), b"x");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
