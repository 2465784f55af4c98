//! Where the harness keeps things: downloaded and built assets under `<target>/qemu-assets/`,
//! each test's serial logs under `<target>/qemu-logs/<test>/`. `<target>` is `$CARGO_TARGET_DIR`
//! when set, else the target directory the running test binary was built into.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The cargo target directory the harness writes under.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        // A relative target dir is relative to where cargo ran: the workspace in practice.
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| target_of_test_binary(&exe))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `<target>/<profile>/deps/<binary>` -> `<target>`.
fn target_of_test_binary(exe: &Path) -> Option<PathBuf> {
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    Some(deps.parent()?.parent()?.to_path_buf())
}

/// Cached assets: kernel, modules, busybox, flipside binaries, initramfs.
pub fn assets_dir() -> PathBuf {
    std::env::var_os("FLIPSIDE_QEMU_ASSETS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("qemu-assets"))
}

/// The directory that keeps one test's serial logs.
pub fn logs_dir(test: &str) -> PathBuf {
    target_dir().join("qemu-logs").join(test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_three_levels_above_a_test_binary() {
        assert_eq!(
            target_of_test_binary(Path::new("/w/target/debug/deps/boot-0123")),
            Some(PathBuf::from("/w/target"))
        );
        assert_eq!(target_of_test_binary(Path::new("/usr/bin/cargo")), None);
    }
}
