#!/usr/bin/env bash
# The aarch64 scenarios: qemu-system-aarch64 -machine virt under TCG, Debian's U-Boot as
# firmware, flipside-boot from the ESP, Debian's arm64 kernels. Not part of scripts/test.sh:
# aarch64 TCG is slow (see qemu-tests/README.md, "What runs where"). Extra arguments go to the
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
# One VM at a time: two cores, each aarch64 TCG guest keeps one busy.
cargo test -p flipside-qemu-tests --features aarch64 --test arm -- --test-threads=1 --nocapture "$@"
