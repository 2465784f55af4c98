#!/usr/bin/env bash
# flipside's whole test suite: installs what is missing, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
flipside_setup

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The firmware stage: the boot rules core without std, and flipside-boot, for the UEFI target.
cargo clippy -p flipside-bootloader-hooks --no-default-features --target x86_64-unknown-uefi --quiet -- -D warnings
cargo clippy -p flipside-boot --target x86_64-unknown-uefi --quiet -- -D warnings
cargo test --workspace
