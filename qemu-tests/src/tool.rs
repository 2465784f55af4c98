//! Running the host tools the harness depends on (apt-get, dpkg, sgdisk, mkfs.ext4, cargo, ...):
//! a missing tool names the Debian package to install, a failing one shows its stderr.

use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// `cmd` as one line for messages.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `cmd` to completion and returns its output; fails unless it exits 0. `package` is the
/// Debian package that provides the program.
pub fn run(cmd: &mut Command, package: &str) -> Result<Output> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| missing(cmd, package, source))?;
    if !output.status.success() {
        return Err(Error::ToolFailed {
            command: describe(cmd),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

/// [`run`], returning stdout as text.
pub fn run_text(cmd: &mut Command, package: &str) -> Result<String> {
    let out = run(cmd, package)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The error for a program that could not be started.
pub fn missing(cmd: &Command, package: &str, source: std::io::Error) -> Error {
    Error::ToolMissing {
        tool: cmd.get_program().to_string_lossy().into_owned(),
        package: package.to_string(),
        source,
    }
}

/// `apt-get download PACKAGE` into the empty directory `work`, then `dpkg -x` of it into
/// `work/tree`, which is returned. `hint` says how to make apt find the package.
pub fn unpack_deb(package: &str, work: &std::path::Path, hint: &str) -> Result<std::path::PathBuf> {
    run(
        Command::new("apt-get")
            .args(["-q", "-o", "APT::Sandbox::User=root", "download", package])
            .current_dir(work),
        hint,
    )?;
    let deb = std::fs::read_dir(work)
        .map_err(Error::io("list", work))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| Error::Io {
            action: "find the downloaded .deb in",
            path: work.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
    let tree = work.join("tree");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree), "dpkg")?;
    Ok(tree)
}
