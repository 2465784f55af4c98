//! KVM or TCG. `/dev/kvm` may open and still run no guest (nested virtualisation), so KVM is
//! used only when a probe guest prints its first marker within [`PROBE_TIMEOUT`]; otherwise
//! the VMs run under TCG (emulation). The verdict is cached per host boot in
//! `<assets>/accel-<boot id>`; `FLIPSIDE_QEMU_ACCEL=kvm|tcg` skips the probe.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::assets::Assets;
use crate::vm::{OnReboot, Vm, VmConfig};

/// How long a KVM guest may take to reach the initramfs' first marker.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(6);

/// QEMU's accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }

    /// The accelerator for this host, probed once per process (and cached per host boot).
    pub fn detect(assets: &Assets) -> Accel {
        static CHOSEN: OnceLock<Accel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let accel = choose(assets);
            eprintln!("qemu-tests: accelerator {}", accel.qemu_name());
            accel
        })
    }
}

fn choose(assets: &Assets) -> Accel {
    if let Some(a) = std::env::var("FLIPSIDE_QEMU_ACCEL")
        .ok()
        .as_deref()
        .and_then(Accel::parse)
    {
        return a;
    }
    if OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Accel::Tcg;
    }
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let cache = assets.dir.join(format!("accel-{}", boot_id.trim()));
    if let Some(a) = fs::read_to_string(&cache)
        .ok()
        .as_deref()
        .and_then(Accel::parse)
    {
        return a;
    }
    let accel = if probe_kvm(assets, &assets.dir.join("probe")) {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    // Only a cache: without it the next process probes again.
    let _ = fs::write(&cache, accel.qemu_name());
    accel
}

/// Boots the initramfs alone under KVM with `flipside.probe`; true when its first marker
/// arrives in time.
fn probe_kvm(assets: &Assets, log_dir: &Path) -> bool {
    let mut cfg = VmConfig::new(assets, log_dir, "kvm-probe", Path::new(""));
    cfg.disk = None;
    cfg.on_reboot = OnReboot::Exit;
    cfg.extra_cmdline.push("flipside.probe".into());
    let Ok(mut vm) = Vm::start(&cfg, Accel::Kvm) else {
        return false;
    };
    vm.wait_for("the probe's start marker", PROBE_TIMEOUT, |m| {
        m.is("initrd", "start")
    })
    .is_ok()
}
