#!/usr/bin/env bash
# flipside's whole test suite: installs what is missing, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
flipside_setup

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The firmware stage: the boot rules core without std, and flipside-boot, for the UEFI targets
# of x86_64 and aarch64.
for target in x86_64-unknown-uefi aarch64-unknown-uefi; do
  cargo clippy -p flipside-bootloader-hooks --no-default-features --target "$target" --quiet -- -D warnings
  cargo clippy -p flipside-boot --target "$target" --quiet -- -D warnings
done
cargo test --workspace
