#!/usr/bin/env bash
# The cost of dm-verity on a real boot (QEMU, TCG): runs the Secure Boot verity scenario
# RUNS times (default 3); in each intact boot the initramfs reads the whole root once without
# dm-verity and once through it (`flipside.verity-bench`), and the VM's timeline gives the
# seconds from the slot's selection to the verity device and to the system. Prints min /
# median / max of each and the ratio of the medians (verity / raw). The root is the test
# appliance's (about 2 MB): the figures are the per-boot cost at that size.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
flipside_setup
RUNS="${RUNS:-3}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for i in $(seq "$RUNS"); do
  echo "bench-verity: run $i/$RUNS" >&2
  cargo test -q -p flipside-qemu-tests --test secure_boot verity -- --nocapture 2>&1 \
    | grep -a '^VERITY-COST intact' >> "$out"
done
python3 - "$out" <<'PY'
import re, statistics, sys
rows = []
for line in open(sys.argv[1]):
    m = re.search(r"bytes=(\d+) read raw_ms=(\d+) verity_ms=(\d+); select at Some\(([\d.]+)\) s, "
                  r"verity open at Some\(([\d.]+)\) s, system at Some\(([\d.]+)\) s", line)
    if m:
        rows.append([float(x) for x in m.groups()])
if not rows:
    sys.exit("bench-verity: no VERITY-COST line (did the scenario run?)")
def show(name, values, unit):
    print(f"{name:<34} min {min(values):8.1f}  median {statistics.median(values):8.1f}  max {max(values):8.1f} {unit}")
print(f"runs: {len(rows)}; root: {int(rows[0][0])} bytes")
raw = [r[1] for r in rows]; ver = [r[2] for r in rows]
show("read the root, raw", raw, "ms")
show("read the root through dm-verity", ver, "ms")
show("selection -> verity device open", [r[4] - r[3] for r in rows], "s")
show("selection -> system up", [r[5] - r[3] for r in rows], "s")
print(f"ratio of medians, verity / raw read: {statistics.median(ver) / max(statistics.median(raw), 1):.2f}")
PY
