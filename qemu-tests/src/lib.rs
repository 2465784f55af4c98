//! QEMU boot tests of flipside: a virtual appliance (Debian's kernel, a small initramfs that
//! runs `flipside-select`, a GPT disk with two squashfs slots and an ext4 data partition) and
//! a harness that boots it, follows the serial markers and keeps every run's serial log.
//!
//! - [`assets`]: kernel, modules, busybox, static flipside-select, flipside-build, initramfs,
//!   installed and cached by the harness itself ([`kernel`], [`initramfs`], [`elf`]).
//! - [`disk`]: test disks and their boot state.
//! - [`appliance`]: test systems and the one function that builds their images.
//! - [`vm`], [`accel`]: QEMU processes, KVM probe with TCG fallback.
//! - [`markers`]: the serial protocol, pure.
//! - [`campaign`]: the power-cut campaign's seeded cut points and tally.
//! - [`ota`], [`server`]: releases carrying the real updater, a real repository, and the
//!   update server the guest reaches through `guestfwd`.
//! - [`testbed`]: what a test starts from; [`once`]: what the tests of one process share.
//! - [`uefi`]: OVMF, an ESP holding flipside-boot, unified kernel images in kernel partitions.
//! - [`secureboot`]: OVMF with Secure Boot on and our own keys enrolled; signing.
//! - [`chain`]: the whole chain (OVMF, flipside-boot, UKIs from kernel partitions, systemd)
//!   updated over the network: Debian appliance releases with kernel parts.
//! - [`arm`]: the aarch64 appliance: U-Boot's UEFI runs flipside-boot on `qemu-system-aarch64
//!   -machine virt`; cross-built static programs, Debian's arm64 kernels and busybox.
//! - [`arm_chain`]: the Debian arm64 appliance booted by U-Boot, updated over the network.

pub mod accel;
pub mod appliance;
pub mod arm;
pub mod arm_chain;
pub mod assets;
pub mod campaign;
pub mod chain;
pub mod debian;
pub mod disk;
pub mod elf;
pub mod error;
pub mod fleet;
pub mod initramfs;
pub mod kernel;
pub mod markers;
pub mod once;
pub mod ota;
pub mod paths;
pub mod secureboot;
pub mod server;
pub mod testbed;
pub mod tool;
pub mod uefi;
pub mod vm;

pub use accel::Accel;
pub use appliance::{Appliance, Behaviour, ImageTool};
pub use assets::Assets;
pub use disk::{DiskLayout, TestDisk};
pub use error::{Error, Result};
pub use markers::{Boot, BootSummary, Ending, Marker, Selection};
pub use testbed::{TestBed, BOOT_TIMEOUT};
pub use vm::{GuestFwd, OnReboot, QemuExit, Vm, VmConfig};
