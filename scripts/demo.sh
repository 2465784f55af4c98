#!/usr/bin/env bash
# flipside's demo: installs what is missing, builds everything, and runs the virtual appliance
# (QEMU) through an update (v1 -> v2, committed after a healthy trial boot) and a rollback
# (v3 fails its health check and the appliance goes back to v2 by itself), printing a timeline.
# The first run downloads Debian's kernel and builds the static tools: a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
flipside_setup
exec cargo run --quiet --release -p flipside-qemu-tests --bin flipside-demo
