#!/usr/bin/env bash
# Installs what flipside's build, tests and demo need on a Debian machine, skipping what is
# already there. Sourced by scripts/test.sh and scripts/demo.sh; safe to run on its own.
set -euo pipefail

FLIPSIDE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages: command or file that proves each is installed.
FLIPSIDE_APT_PACKAGES=(
  "squashfs-tools:mksquashfs"
  "gdisk:sgdisk"
  "cgpt:cgpt"
  "nix-bin:nix-store"
  "nginx-light:nginx"
  "busybox-static:/bin/busybox"
  "zstd:zstd"
  "openssl:openssl"
  "e2fsprogs:mkfs.ext4"
  "util-linux:losetup"
  "qemu-system-x86:qemu-system-x86_64"
  "cpio:cpio"
  "kmod:modinfo"
  "xz-utils:xz"
  "curl:curl"
  "time:/usr/bin/time"
  "systemd:systemd-analyze"
  "mmdebstrap:mmdebstrap"
  "systemd-boot-efi:/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
  "binutils:objcopy"
  "ovmf:/usr/share/OVMF/OVMF_CODE_4M.fd"
  "dosfstools:mkfs.fat"
  "mtools:mcopy"
  "sbsigntool:sbsign"
  "cryptsetup-bin:veritysetup"
  "softhsm2:/usr/lib/softhsm/libsofthsm2.so"
  # aarch64: the emulator, U-Boot as its firmware, the cross toolchain for the static
  # programs (zstd's C code included), qemu-user to run them on this machine.
  "qemu-system-arm:qemu-system-aarch64"
  "u-boot-qemu:/usr/lib/u-boot/qemu_arm64/u-boot.bin"
  "gcc-aarch64-linux-gnu:aarch64-linux-gnu-gcc"
  "libc6-dev-arm64-cross:/usr/aarch64-linux-gnu/lib/libc.a"
  "qemu-user-static:qemu-aarch64-static"
  # arch-test tells whether this machine runs arm64 programs (mmdebstrap --arch=arm64 runs the
  # Debian arm64 root's maintainer scripts through qemu-user).
  "arch-test:arch-test"
)

flipside_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

flipside_install_packages() {
  local missing=() entry pkg probe
  for entry in "${FLIPSIDE_APT_PACKAGES[@]}"; do
    pkg="${entry%%:*}"; probe="${entry#*:}"
    if [[ "$probe" == /* ]]; then [ -e "$probe" ] && continue
    else command -v "$probe" >/dev/null 2>&1 && continue; fi
    # Some tools live in /usr/sbin, outside a normal user's PATH.
    [ -x "/usr/sbin/$probe" ] && continue
    missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    flipside_as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive flipside_as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# python-tuf (the reference TUF client) in a virtualenv, for the interoperability tests.
flipside_install_python() {
  local venv="$FLIPSIDE_ROOT/.venv"
  if ! "$venv/bin/python" -c 'import tuf.ngclient, securesystemslib' >/dev/null 2>&1; then
    echo "setup: installing python-tuf into $venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive flipside_as_root apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check 'tuf>=5,<8' 'securesystemslib[crypto]'
  fi
  export FLIPSIDE_TEST_PYTHON="$venv/bin/python"
  # virt-fw-vars enrolls our own Secure Boot keys into OVMF's variable store (the QEMU
  # Secure Boot tests); Debian 12 does not package python3-virt-firmware.
  if [ ! -x "$venv/bin/virt-fw-vars" ]; then
    echo "setup: installing virt-firmware into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'virt-firmware>=24'
  fi
  export FLIPSIDE_VIRT_FW_VARS="$venv/bin/virt-fw-vars"
}

flipside_check_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: no Rust toolchain found: install one with rustup (https://rustup.rs), then run again" >&2
    exit 1
  fi
}

# Rust targets that are built besides the host's: flipside-boot is a UEFI application, for
# x86_64 and for aarch64 (U-Boot's UEFI on ARM boards); the static aarch64 programs
# (flipside, flipside-select, flipside-verity) for the aarch64 appliance.
FLIPSIDE_RUST_TARGETS=(x86_64-unknown-uefi aarch64-unknown-uefi aarch64-unknown-linux-gnu)

flipside_install_rust_targets() {
  local target installed
  command -v rustup >/dev/null 2>&1 || return 0
  installed="$(rustup target list --installed)"
  for target in "${FLIPSIDE_RUST_TARGETS[@]}"; do
    if ! grep -qx "$target" <<<"$installed"; then
      echo "setup: adding the Rust target $target"
      rustup target add "$target" >/dev/null
    fi
  done
}

# Garage, the S3-compatible object storage the publishing tests upload to: built once per
# machine by cargo into ~/.cargo/bin (about 18 minutes on 2 cores, then reused).
FLIPSIDE_GARAGE_VERSION=2.5.0
flipside_install_garage() {
  local bin="${CARGO_HOME:-$HOME/.cargo}/bin/garage"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "cargo:$FLIPSIDE_GARAGE_VERSION"; then
    return 0
  fi
  echo "setup: building Garage $FLIPSIDE_GARAGE_VERSION with cargo install (once per machine)" >&2
  cargo install --quiet --locked garage --version "$FLIPSIDE_GARAGE_VERSION"
}

# arm64 packages (kernel, busybox-static, systemd-boot-efi) are fetched by the aarch64 tests
# with `apt-get download PKG:arm64`: apt must know the architecture.
flipside_add_arm64_architecture() {
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "setup: adding the dpkg architecture arm64 (for apt-get download of arm64 packages)"
    flipside_as_root dpkg --add-architecture arm64
    flipside_as_root apt-get update -qq
  fi
}

# mmdebstrap --arch=arm64 runs arm64 maintainer scripts in its chroot: the kernel must hand
# arm64 programs to qemu-user. Registers Debian's qemu-aarch64 entry (flag F: the interpreter
# is opened now, so it works inside the chroot) with binfmt_misc, mounting it first if needed
# (containers often lack both); binfmt-support or systemd-binfmt do the same on a full system.
flipside_enable_arm64_binfmt() {
  arch-test arm64 >/dev/null 2>&1 && return 0
  local misc=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  echo "setup: registering qemu-aarch64 with binfmt_misc (for mmdebstrap --arch=arm64)"
  [ -e "$misc/register" ] || flipside_as_root mount -t binfmt_misc binfmt_misc "$misc"
  [ -e "$misc/qemu-aarch64" ] ||
    grep -v '^#' "$conf" | flipside_as_root tee "$misc/register" >/dev/null
  if ! arch-test arm64 >/dev/null 2>&1; then
    echo "setup: arm64 programs still do not run here (arch-test arm64); see $conf" >&2
    return 1
  fi
}

flipside_setup() {
  flipside_check_rust
  flipside_install_rust_targets
  flipside_add_arm64_architecture
  flipside_install_packages
  flipside_enable_arm64_binfmt
  flipside_install_python
  flipside_install_garage
  export PATH="$PATH:/usr/sbin:/sbin"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  flipside_setup
fi
