//! The one error type of the QEMU test harness: a variant per failure class, each naming the
//! file, tool or marker involved and saying what to do about it.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Result with the harness error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{tool} is not installed ({source}); install it with `apt-get install {package}`")]
    ToolMissing {
        tool: String,
        package: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error(
        "`{command}` printed {output:?}, which the harness cannot read; check the tool's version"
    )]
    ToolOutput { command: String, output: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot tell which kernel package linux-image-amd64 depends on from `apt-cache depends`: \
         {output:?}; run `apt-get update` so that apt knows the package"
    )]
    KernelPackage { output: String },
    #[error(
        "kernel module {module}.ko is not in {dir}; the kernel package changed its layout: \
         update MODULES in qemu-tests/src/kernel.rs"
    )]
    ModuleMissing { module: String, dir: PathBuf },
    #[error(
        "kernel module {module} needs {dependency}, which MODULES loads after it or not at all; \
         reorder MODULES in qemu-tests/src/kernel.rs"
    )]
    ModuleOrder { module: String, dependency: String },
    #[error("{path} is not a statically linked x86-64 ELF program ({why}); {hint}")]
    NotStatic {
        path: PathBuf,
        why: String,
        hint: &'static str,
    },
    #[error(
        "image {image} is {size} bytes, larger than slot partition {partition} ({slot_size} \
         bytes); make the image smaller or the slots larger (DiskLayout::slot_size)"
    )]
    ImageTooLarge {
        image: PathBuf,
        size: u64,
        partition: u32,
        slot_size: u64,
    },
    #[error("boot state on test disk {disk}: {source}")]
    Gpt {
        disk: PathBuf,
        source: flipside_bootloader_hooks::Error,
    },
    #[error("cannot start {program}: {source}; install qemu-system-x86")]
    QemuStart {
        program: String,
        source: std::io::Error,
    },
    #[error(
        "VM {vm}: no {waiting_for} within {waited:?} (serial log: {log}); the guest hangs or \
         boots slower than the harness allows"
    )]
    Timeout {
        vm: String,
        waiting_for: String,
        waited: Duration,
        log: PathBuf,
    },
    #[error(
        "VM {vm}: QEMU ended ({status}) before {waiting_for} (serial log: {log}, QEMU's \
         messages: {stderr_log})"
    )]
    QemuEnded {
        vm: String,
        waiting_for: String,
        status: String,
        log: PathBuf,
        stderr_log: PathBuf,
    },
}

impl Error {
    /// An [`Error::Io`] maker for `map_err`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
