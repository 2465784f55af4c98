#!/usr/bin/env bash
# flipside's demo: installs what is missing, builds everything, and boots the Debian appliance
# (QEMU, OVMF -> flipside-boot -> the slot's UKI -> systemd) through an update of kernel and root
# together (v1 -> v2, committed after a healthy trial boot) and a fallback (v3's kernel part
# cannot start the system; flipside-boot goes back to v2 by itself), printing a timeline.
# The first run downloads two Debian kernels, builds the Debian root (mmdebstrap) and the
# static tools: several minutes; then the six boots take about 4 minutes under TCG.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
flipside_setup
exec cargo run --quiet --release -p flipside-qemu-tests --bin flipside-demo
