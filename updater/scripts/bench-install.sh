#!/usr/bin/env bash
# Benchmark of a full install (figures, not a test): a real squashfs image of >= 350 MB
# (unpacked Debian packages) served by nginx on 127.0.0.1, installed by flipside into a
# file-backed slot of a GPT disk image, against, in the same run on the same image:
#   curl URL | zstd -d | tee >(openssl dgst -sha256) | dd of=SLOT oflag=direct
#   zstd -d < BUNDLE | dd of=SLOT oflag=direct                       (our bundle's decode limit)
#   zstd -d < ONE-STREAM | dd of=SLOT oflag=direct                   (the raw limit: the image as
#                                                                     one zstd stream, same level)
# Medians of RUNS runs (warm page cache); peak RSS from /usr/bin/time -v; times as ratios to the
# one-stream limit. RAUC is not in this script.
#
# Needs: nginx, sgdisk, cgpt, mksquashfs, zstd, curl, openssl, /usr/bin/time (package time),
# apt-get (to download the packages once). Usage: updater/scripts/bench-install.sh
# Environment: WORK (default /tmp/flipside-bench), RUNS (default 5), CARGO_TARGET_DIR.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
WS=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/tmp/flipside-bench}
RUNS=${RUNS:-5}
PKGS=(libllvm14 libclang-cpp14 gcc-12 cpp-12 libgcc-12-dev vim-runtime libicu72 perl-modules-5.36 libpython3.11-stdlib)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$WS/target}

for tool in nginx sgdisk cgpt mksquashfs zstd curl openssl /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench-install: $tool is missing" >&2; exit 1; }
done

cargo build --release -p flipside-updater --bin flipside --example bench-repo --example sha-speed
BIN=$CARGO_TARGET_DIR/release/examples
FLIPSIDE=$CARGO_TARGET_DIR/release/flipside

mkdir -p "$WORK/debs"
( cd "$WORK/debs"; for p in "${PKGS[@]}"; do ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p"; done )

IMAGE=$WORK/image.squashfs
if [ ! -f "$IMAGE" ]; then
    rm -rf "$WORK/rootfs"; mkdir -p "$WORK/rootfs/.flipside"
    for d in "$WORK"/debs/*.deb; do dpkg-deb -x "$d" "$WORK/rootfs"; done
    echo '{"format":1,"name":"kiosk","version":2,"display_version":"bench-2","hardware_id":"bench-pc","init":"/sbin/init","closure":[]}' \
        > "$WORK/rootfs/.flipside/system.json"
    # The image builder's flags: uncompressed, reproducible (the bundle compresses per chunk).
    mksquashfs "$WORK/rootfs" "$IMAGE" -noappend -no-xattrs -all-root -mkfs-time 0 -all-time 0 \
        -noI -noD -noF -noX -no-fragments -quiet -no-progress
fi
IMAGE_LEN=$(stat -c %s "$IMAGE")
if [ ! -d "$WORK/out/repo" ]; then
    "$BIN/bench-repo" "$IMAGE" "$WORK/out" 2 bench-pc
fi
BUNDLE=$(ls "$WORK"/out/release-2/kiosk-2.bundle)
BUNDLE_SHA=$(sha256sum "$BUNDLE" | cut -d' ' -f1)
BUNDLE_URL_PATH=targets/$BUNDLE_SHA.kiosk-2.bundle
# The honest raw limit: the whole image as one zstd stream at the bundle's level (16).
ONE_STREAM=$WORK/one-stream.zst
[ -f "$ONE_STREAM" ] || zstd -q -T0 -16 "$IMAGE" -o "$ONE_STREAM"

# A GPT disk with two slots large enough for the image.
SLOT_MIB=$(( IMAGE_LEN / 1048576 + 16 ))
DISK=$WORK/disk.img
rm -f "$DISK"; truncate -s $(( (2 * SLOT_MIB + 4) * 1048576 )) "$DISK"
sgdisk -o -n "1:2048:+${SLOT_MIB}M" -c 1:root-a -n "2:0:+${SLOT_MIB}M" -c 2:root-b "$DISK" >/dev/null
SLOT_OFFSET=$(( $(sgdisk -i 2 "$DISK" | awk '/First sector/ {print $3}') * 512 ))

# nginx on a free port.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
daemon off; master_process off; user root; worker_processes 1;
pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log warn;
events { worker_connections 64; }
http { access_log off; client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  sendfile on; default_type application/octet-stream;
  server { listen 127.0.0.1:$PORT; root $WORK/out/repo; } }
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
URL=http://127.0.0.1:$PORT/$BUNDLE_URL_PATH

# The device: running release 1 in slot a (no delta: slot a holds nothing of release 2).
echo "flipside.slot=a" > "$WORK/cmdline"
echo '{"format":1,"name":"kiosk","version":1,"display_version":"bench-1","hardware_id":"bench-pc","init":"/sbin/init","closure":[]}' > "$WORK/system.json"
cat > "$WORK/config.toml" <<CONF
[repository]
mirrors = ["http://127.0.0.1:$PORT/"]
trusted_root = "out/root.json"
[device]
disk = "disk.img"
state_dir = "state"
cmdline = "cmdline"
system_info = "system.json"
[progress]
interval_secs = 3600
CONF

reset_slots() {
    cgpt add -i 1 -P 2 -T 0 -S 1 "$DISK"
    cgpt add -i 2 -P 0 -T 0 -S 0 "$DISK"
    rm -rf "$WORK/state"
}

# run NAME COMMAND...: appends "seconds max_rss_kib" to $WORK/NAME.times
run() {
    local name=$1; shift
    /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time.txt" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
    echo "$wall $rss" >> "$WORK/$name.times"
}

rm -f "$WORK"/*.times
for i in $(seq "$RUNS"); do
    reset_slots
    run flipside "$FLIPSIDE" --config "$WORK/config.toml" install
    grep -q FLIPSIDE_RESULT "$WORK/flipside.out" || { cat "$WORK/flipside.err"; exit 1; }
    run curl_pipeline bash -c "curl -s '$URL' | zstd -d | tee >(openssl dgst -sha256 >/dev/null) | dd of='$DISK' bs=1M iflag=fullblock oflag=direct,seek_bytes seek=$SLOT_OFFSET conv=notrunc status=none"
    run bundle_decode bash -c "zstd -d < '$BUNDLE' | dd of='$DISK' bs=1M iflag=fullblock oflag=direct,seek_bytes seek=$SLOT_OFFSET conv=notrunc status=none"
    run one_stream bash -c "zstd -d < '$ONE_STREAM' | dd of='$DISK' bs=1M iflag=fullblock oflag=direct,seek_bytes seek=$SLOT_OFFSET conv=notrunc status=none"
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "image: $IMAGE_LEN bytes; bundle: $(stat -c %s "$BUNDLE") bytes; one stream: $(stat -c %s "$ONE_STREAM") bytes; runs: $RUNS (medians)"
printf '%-16s %10s %10s %14s %10s\n' what seconds MB/s "time / 1-stream" "peak RSS"
RAW=$(cut -d' ' -f1 "$WORK/one_stream.times" | median)
for name in flipside curl_pipeline bundle_decode one_stream; do
    secs=$(cut -d' ' -f1 "$WORK/$name.times" | median)
    rss=$(cut -d' ' -f2 "$WORK/$name.times" | median)
    printf '%-16s %10.2f %10.0f %13.2fx %7.1f MiB\n' "$name" "$secs" \
        "$(echo "$IMAGE_LEN / $secs / 1000000" | bc -l)" "$(echo "$secs / $RAW" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
done
echo
grep FLIPSIDE_RESULT "$WORK/flipside.out"
"$BIN/sha-speed"
head -c 1073741824 /dev/zero > "$WORK/zero.bin"
start=$(date +%s.%N); openssl dgst -sha256 "$WORK/zero.bin" >/dev/null; end=$(date +%s.%N)
echo "openssl dgst -sha256: $(echo "1073.741824 / ($end - $start)" | bc -l | cut -d. -f1) MB/s"
rm -f "$WORK/zero.bin"
