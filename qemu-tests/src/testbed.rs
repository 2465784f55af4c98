//! What every boot test starts from: the assets, the accelerator, a scratch directory for
//! images and disks, and the test's log directory (emptied first, so it holds the latest run).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::accel::Accel;
use crate::appliance::{self, Appliance};
use crate::assets::Assets;
use crate::disk::{DiskLayout, TestDisk};
use crate::error::{Error, Result};
use crate::paths;
use crate::vm::{Vm, VmConfig};

/// Upper bound of one boot (kernel, initramfs, system) before a test gives up. Under TCG a
/// boot takes a few seconds; the margin is for a busy machine. A guard, not a measurement.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// One test's environment.
pub struct TestBed {
    pub assets: &'static Assets,
    pub accel: Accel,
    /// Where the test's serial logs go: `<target>/qemu-logs/<test>/`.
    pub logs: PathBuf,
    work: tempfile::TempDir,
}

impl TestBed {
    /// Prepares the assets (once per process), picks the accelerator and empties the test's
    /// log directory.
    pub fn new(test: &str) -> Result<Self> {
        let assets = Assets::get()?;
        let accel = Accel::detect(assets);
        let logs = paths::logs_dir(test);
        if logs.exists() {
            fs::remove_dir_all(&logs).map_err(Error::io("empty", &logs))?;
        }
        fs::create_dir_all(&logs).map_err(Error::io("create directory", &logs))?;
        // FLIPSIDE_QEMU_KEEP=1 keeps the scratch directory (images, disks) for a post-mortem.
        let keep = std::env::var_os("FLIPSIDE_QEMU_KEEP").is_some();
        let work = tempfile::Builder::new()
            .prefix(&format!("flipside-qemu-{test}-"))
            .disable_cleanup(keep)
            .tempdir()
            .map_err(Error::io(
                "create a scratch directory in",
                std::env::temp_dir(),
            ))?;
        if keep {
            eprintln!("qemu-tests: {test}: keeping {}", work.path().display());
        }
        Ok(Self {
            assets,
            accel,
            logs,
            work,
        })
    }

    /// The scratch directory (removed when the test bed is dropped, unless
    /// `FLIPSIDE_QEMU_KEEP` is set).
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// Builds an appliance image (see [`appliance::build_image`]).
    pub fn image(&self, app: &Appliance) -> Result<PathBuf> {
        appliance::build_image(self.assets, app, self.work())
    }

    /// A fresh test disk `<name>.img` with the default layout and an empty data partition.
    pub fn disk(&self, name: &str) -> Result<TestDisk> {
        TestDisk::create(
            &self.work().join(format!("{name}.img")),
            &DiskLayout::default(),
            None,
        )
    }

    /// A VM configuration for `disk`, logging as `name`.
    pub fn vm_config(&self, name: &str, disk: &TestDisk) -> VmConfig {
        VmConfig::new(self.assets, &self.logs, name, disk.path())
    }

    /// Starts a VM under the chosen accelerator.
    pub fn start(&self, cfg: &VmConfig) -> Result<Vm> {
        Vm::start(cfg, self.accel)
    }
}
