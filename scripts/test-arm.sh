#!/usr/bin/env bash
# The aarch64 scenarios: qemu-system-aarch64 -machine virt under TCG, Debian's U-Boot as
# firmware, flipside-boot from the ESP, Debian's arm64 kernels, a Debian arm64 root with systemd
# updated over the network. Not part of scripts/test.sh: building the arm64 root and its
# releases and booting systemd under aarch64 TCG take far more than that command's budget (see
# qemu-tests/README.md, "What runs where"). Extra arguments go to the
# test binary, e.g. `scripts/test-arm.sh arm_health_failure_rolls_back`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
flipside_check_rust
flipside_install_rust_targets
flipside_add_arm64_architecture
flipside_install_packages
flipside_enable_arm64_binfmt

cargo clippy -p flipside-qemu-tests --features aarch64 --all-targets --quiet -- -D warnings
# Two VMs at a time: each aarch64 TCG guest keeps one of the two cores busy.
cargo test -p flipside-qemu-tests --features aarch64 --test arm -- --test-threads=2 --nocapture "$@"
