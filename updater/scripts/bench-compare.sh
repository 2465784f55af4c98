#!/usr/bin/env bash
# Before/after figures of the install on a busy machine: two `flipside` binaries installing the
# same release alternately, on the world `bench-install.sh` left in WORK (image, repository,
# disk, config), so that load from other work falls on both alike. Prints the median and mean
# wall time and the median peak RSS of each.
#
# Usage: updater/scripts/bench-compare.sh BEFORE_BINARY AFTER_BINARY
# Environment: WORK (default /tmp/flipside-bench, as bench-install.sh), RUNS (default 15).
set -euo pipefail

BEFORE=$1
AFTER=$2
WORK=${WORK:-/tmp/flipside-bench}
RUNS=${RUNS:-15}
DISK=$WORK/disk.img
OUT=$(mktemp -d)
[ -f "$WORK/config.toml" ] || { echo "bench-compare: run bench-install.sh first (WORK=$WORK)" >&2; exit 1; }

# nginx on the port the configuration names.
PORT=$(grep -o '127.0.0.1:[0-9]*' "$WORK/config.toml" | head -1 | cut -d: -f2)
sed -i "s/listen 127.0.0.1:[0-9]*;/listen 127.0.0.1:$PORT;/" "$WORK/nginx/nginx.conf"
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null || true; rm -rf "$OUT"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done

for _ in $(seq "$RUNS"); do
    for which in before after; do
        bin=$BEFORE; [ "$which" = after ] && bin=$AFTER
        cgpt add -i 1 -P 2 -T 0 -S 1 "$DISK"
        cgpt add -i 2 -P 0 -T 0 -S 0 "$DISK"
        rm -rf "$WORK/state"
        /usr/bin/time -v -o "$OUT/time.txt" "$bin" --config "$WORK/config.toml" install \
            >"$OUT/$which.out" 2>"$OUT/$which.err"
        grep -q FLIPSIDE_RESULT "$OUT/$which.out" || { cat "$OUT/$which.err"; exit 1; }
        wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$OUT/time.txt" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/time.txt")
        echo "$wall $rss" >> "$OUT/$which.times"
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
LEN=$(stat -c %s "$WORK/image.squashfs")
printf '%-7s %8s %8s %8s %10s\n' binary median mean MB/s "peak RSS"
for which in before after; do
    secs=$(cut -d' ' -f1 "$OUT/$which.times" | median)
    mean=$(awk '{s+=$1} END {print s/NR}' "$OUT/$which.times")
    rss=$(cut -d' ' -f2 "$OUT/$which.times" | median)
    printf '%-7s %7.2fs %7.3fs %8.0f %6.1f MiB\n' "$which" "$secs" "$mean" \
        "$(echo "$LEN / $secs / 1000000" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
done
