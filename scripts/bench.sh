#!/usr/bin/env bash
# flipside against its anchors, in one run, on real Debian bookworm packages (figures, not a
# test: it asserts nothing about speed). Only the public command lines are used (`flipside-build`,
# `flipside`), so whatever changes behind them shows up when this is run again.
#
#   full install   flipside into slot b of a GPT disk on a loop device, from nginx on 127.0.0.1;
#                  RAUC 1.8 (Debian's, `custom` no-op bootloader backend, private D-Bus daemon,
#                  slots = the same disk's partitions, a `rauc bundle` signed with a throwaway
#                  openssl key); `curl URL-of-the-one-stream | zstd -d | tee >(sha256sum) | dd oflag=direct`; and
#                  the raw limit `zstd -d < one-stream.zst | dd oflag=direct` (the whole image as
#                  ONE zstd stream at the bundle's level). Time and peak RSS of each.
#   sizes          what a full install fetches, and the bundle file, against that one stream.
#   deltas         S1 (1% of the files changed), S2 (openssl upgraded), S3 (openssl, systemd and
#                  tzdata upgraded): the bytes a real `flipside install` fetches (repository with
#                  both releases, device running the old one, read from FLIPSIDE_RESULT), against
#                  `zstd --patch-from` (size, time, peak memory) and casync (chunks new to the
#                  second image in a store holding both).
#   builds         `flipside-build image` against `mksquashfs -comp zstd` of the same tree and
#                  `rauc bundle`: time and peak memory including children.
#   install RSS    flipside's peak RSS for a small (~100 MB) and a large (~2 GiB) image.
#
# Installs and builds are timed in ROUNDS interleaved rounds (min / median / max); sizes,
# deltas and the large image are deterministic or too slow to repeat and run once.
#
# Usage: scripts/bench.sh            (as root: loop devices, mounts for RAUC)
# Environment: WORK (cache of packages, trees, images; default /tmp/flipside-bench2),
#   ROUNDS (default 5), LARGE (1: also the ~2 GiB image; 0 skips it), LEVEL (zstd level of the
#   anchors, default 16 = flipside-build's default), BIN_DIR (flipside-build and flipside to
#   measure, e.g. copies of an older build; default: built here), BASE_BIN_DIR (an older
#   flipside-build, built in the same rounds for a before/after ratio), BUILD_ROUNDS (rounds of
#   the builds, default ROUNDS), LARGE_LEVEL (zstd level of the large image, default 3: its
#   filler does not compress, and memory does not depend on the level), SECTIONS (what to
#   measure, default all: "install delta rss build casync patch"), CARGO_TARGET_DIR.
# patch-from and casync figures are deterministic in size and not flipside's: they are made
# once and kept in WORK/cache (delete it to measure them again).
set -euo pipefail

WS=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/flipside-bench2}
ROUNDS=${ROUNDS:-5}
LARGE=${LARGE:-1}
LEVEL=${LEVEL:-16}
LARGE_LEVEL=${LARGE_LEVEL:-3}
BUILD_ROUNDS=${BUILD_ROUNDS:-$ROUNDS}
SECTIONS=${SECTIONS:-install delta rss build casync patch}
on() { [[ " $SECTIONS " == *" $1 "* ]]; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$WS/target}
export PATH="$PATH:/usr/sbin:/sbin"
log() { echo "bench: $*" >&2; }

# --- tools -----------------------------------------------------------------------------------
source "$WS/scripts/setup.sh"
FLIPSIDE_APT_PACKAGES=(
  "rauc:rauc" "casync:casync" "dbus:dbus-daemon" "nginx-light:nginx" "squashfs-tools:mksquashfs"
  "zstd:zstd" "time:/usr/bin/time" "curl:curl" "gdisk:sgdisk" "cgpt:cgpt" "openssl:openssl"
  "util-linux:losetup"
)
flipside_install_packages
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (loop devices, RAUC's mounts)" >&2; exit 1; }
if [ -z "${BIN_DIR:-}" ]; then
  # The updater as devices get it (profile `device`, whole-program LTO); the builder as released.
  cargo build --release -q -p flipside-image-builder --bin flipside-build
  cargo build --profile device -q -p flipside-updater --bin flipside
  FB=$CARGO_TARGET_DIR/release/flipside-build
  FS=$CARGO_TARGET_DIR/device/flipside
else
  FB=$BIN_DIR/flipside-build
  FS=$BIN_DIR/flipside
fi

# --- packages: 23 of bookworm; release 1 has the older openssl, systemd and tzdata -----------
COMMON=(libllvm14 libclang-cpp14 gcc-12 cpp-12 libgcc-12-dev vim-runtime libicu72
  perl-modules-5.36 libpython3.11-stdlib libpython3.11-minimal python3.11-minimal libc6
  libstdc++6 coreutils bash perl-base busybox)
# name=old-version new-version (bookworm-updates / bookworm / bookworm-security, all in the
# Debian mirror's bookworm suites; the .debs are cached under WORK/debs).
OPENSSL=("openssl=3.0.17-1~deb12u2 3.0.22-1~deb12u2" "libssl3=3.0.17-1~deb12u2 3.0.22-1~deb12u2")
SYSTEMD=("systemd=252.38-1~deb12u1 252.39-1~deb12u2" "libsystemd-shared=252.38-1~deb12u1 252.39-1~deb12u2"
  "libsystemd0=252.38-1~deb12u1 252.39-1~deb12u2")
TZDATA=("tzdata=2025b-0+deb12u1 2026f-0+deb12u1")
SMALL=(vim-runtime libicu72 perl-modules-5.36 libpython3.11-stdlib libc6 coreutils bash perl-base busybox)

mkdir -p "$WORK/debs" "$WORK/pkgs"
# pkgdir NAME [VERSION]: the unpacked package (downloaded once), printed.
pkgdir() {
  local name=$1 version=${2:-} spec deb dir
  spec=$name; [ -n "$version" ] && spec="$name=$version"
  deb=$(ls "$WORK/debs/${name}_${version:+$(sed 's/:/%3a/' <<<"$version")}"*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    (cd "$WORK/debs" && apt-get download -qq "$spec" >&2)
    deb=$(ls "$WORK/debs/${name}_${version:+$(sed 's/:/%3a/' <<<"$version")}"*.deb | head -1)
  fi
  dir=$WORK/pkgs/$(basename "$deb" .deb)
  if [ ! -d "$dir" ]; then
    dpkg-deb -x "$deb" "$dir.tmp" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# A release is a list of "rootname dir" lines in WORK/trees/NAME.roots.
declare -A ROOTS=()
add_root() { ROOTS[$1]+="$(tr -c 'a-z0-9\n' - <<<"$2") $3"$'\n'; }
for p in "${COMMON[@]}"; do
  d=$(pkgdir "$p")
  for r in r1 s2 s3; do add_root "$r" "$p" "$d"; done
done
for entry in "${OPENSSL[@]}" "${SYSTEMD[@]}" "${TZDATA[@]}"; do
  name=${entry%%=*}; versions=${entry#*=}; old=${versions% *}; new=${versions#* }
  add_root r1 "$name" "$(pkgdir "$name" "$old")"
  add_root s2 "$name" "$(pkgdir "$name" "$(case " ${OPENSSL[*]} " in *" $name="*) echo "$new";; *) echo "$old";; esac)")"
  add_root s3 "$name" "$(pkgdir "$name" "$new")"
done
for p in "${SMALL[@]}"; do add_root small "$p" "$(pkgdir "$p")"; done

# S1: release 1 with every 100th regular file (in sorted order) given new bytes in its middle.
S1=$WORK/trees/s1
if [ ! -d "$S1" ]; then
  log "S1: changing 1% of the files"
  mkdir -p "$S1.tmp"
  while read -r root dir; do
    [ -n "$root" ] || continue
    cp -al "$dir" "$S1.tmp/$root"
  done <<<"${ROOTS[r1]}"
  (cd "$S1.tmp" && find . -type f | LC_ALL=C sort | awk 'NR % 100 == 0') | while read -r f; do
    p=$S1.tmp/$f; size=$(stat -c %s "$p")
    # A new file, not a write through the hard link into the cached package.
    cp "$p" "$p.new"; rm "$p"; mv "$p.new" "$p"
    printf 'flipside-bench S1 %s' "$f" | dd of="$p" bs=1 seek=$((size / 2)) conv=notrunc status=none
  done
  mv "$S1.tmp" "$S1"
fi
while read -r root dir; do
  [ -n "$root" ] && add_root s1 "$root" "$S1/$root"
done <<<"${ROOTS[r1]}"

# The large image: the release's packages plus 1.6 GB of pseudo-random filler (incompressible),
# in 64 MiB files, deterministic.
if [ "$LARGE" = 1 ]; then
  FILL=$WORK/trees/filler
  if [ ! -d "$FILL" ]; then
    log "large: writing the filler"
    mkdir -p "$FILL.tmp/data"
    head -c $((24 * 64 << 20)) /dev/zero \
      | openssl enc -aes-128-ctr -nosalt -K 00112233445566778899aabbccddeeff -iv 00000000000000000000000000000000 \
      | split -b $((64 << 20)) -d -a 2 - "$FILL.tmp/data/filler-"
    mv "$FILL.tmp" "$FILL"
  fi
  ROOTS[large]=${ROOTS[s3]}"filler $FILL"$'\n'
fi

# system.toml of release NAME, VERSION.
system_toml() {
  local name=$1 version=$2 root dir
  {
    echo 'name = "bench"'
    echo "version = $version"
    echo 'hardware_id = "bench-pc"'
    echo 'init = "@bash/bin/bash"'
    while read -r root dir; do
      [ -n "$root" ] && printf '[[root]]\nname = "%s"\ndir = "%s"\n' "$root" "$dir"
    done <<<"${ROOTS[$name]}"
  } >"$WORK/trees/$name.toml"
  echo "$WORK/trees/$name.toml"
}
# build NAME VERSION: WORK/out/NAME (image, bundle, index, release.json), once.
build() {
  local out=$WORK/out/$1
  if [ ! -f "$out/release.json" ]; then
    log "building release $1"
    rm -rf "$out" "$WORK/store-$1"
    /usr/bin/time -f '%e %M' -o "$WORK/out/$1.time" \
      "$FB" image "$(system_toml "$1" "$2")" -o "$out" --store "$WORK/store-$1" "${@:3}" >"$WORK/out/$1.log" 2>&1 \
      || { tail -5 "$WORK/out/$1.log" >&2; exit 1; }
    rm -rf "$WORK/store-$1"
  fi
}
mkdir -p "$WORK/trees" "$WORK/out"
build r1 1
# The delta releases carry delta frames against release 1 (the device runs it).
for s in s1 s2 s3; do build $s 2 --previous "$WORK/out/r1"; done
build small 2
[ "$LARGE" = 1 ] && build large 2 --zstd-level "$LARGE_LEVEL"
image_of() { ls "$WORK/out/$1"/*.squashfs; }
bundle_of() { ls "$WORK/out/$1"/*.bundle; }
IMAGE=$(image_of s3)
OLD=$(image_of r1)
IMAGE_LEN=$(stat -c %s "$IMAGE")
ONE=$WORK/out/s3.one-stream.zst
on install && [ ! -f "$ONE" ] && zstd -q -T0 "-$LEVEL" "$IMAGE" -o "$ONE"

# --- repositories, served by nginx -----------------------------------------------------------
# repo NAME RELEASE...: a fresh signed repository with those releases.
repo() {
  local r=$WORK/repos/$1; shift
  rm -rf "$r" "$r.keys"
  "$FB" repo init --repo "$r" --keys "$r.keys" >/dev/null
  for rel in "$@"; do "$FB" repo add --repo "$r" --keys "$r.keys" "$WORK/out/$rel" >/dev/null; done
}
mkdir -p "$WORK/repos"
repo full s3
repo small small
repo s1 r1 s1
repo s2 r1 s2
repo s3 r1 s3
[ "$LARGE" = 1 ] && repo large large

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
NG=$WORK/nginx
mkdir -p "$NG"
cat >"$NG/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; user root;
pid $NG/nginx.pid; error_log $NG/error.log warn;
events { worker_connections 64; }
http { access_log off; client_body_temp_path $NG/body; proxy_temp_path $NG/proxy;
  fastcgi_temp_path $NG/fcgi; uwsgi_temp_path $NG/uwsgi; scgi_temp_path $NG/scgi;
  sendfile on; default_type application/octet-stream;
  server { listen 127.0.0.1:$PORT; root $WORK/repos; } }
CONF
CLEANUP=()
cleanup() { local c; for c in "${CLEANUP[@]}"; do eval "$c" || true; done; }
trap cleanup EXIT
nginx -c "$NG/nginx.conf" -p "$NG" &
CLEANUP+=("kill $!")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done

# --- the device: a GPT disk on a loop device, slot a running, slot b written ----------------
# disk NAME IMAGE_LEN: WORK/dev/NAME.img on a loop device with partitions root-a and root-b,
# /dev/loopNp1 and p2 (made from sysfs where no udev makes them); the device goes in DISK.
disk() {
  local file=$WORK/dev/$1.img mib=$(($2 / 1048576 + 64)) k node
  mkdir -p "$WORK/dev"
  rm -f "$file"
  truncate -s $(((2 * mib + 4) << 20)) "$file"
  sgdisk -o -n "1:2048:+${mib}M" -c 1:root-a -n "2:0:+${mib}M" -c 2:root-b "$file" >/dev/null
  DISK=$(losetup -f --show -P "$file")
  CLEANUP+=("losetup -d $DISK; rm -f $file")
  for k in 1 2; do
    node=${DISK}p$k
    [ -b "$node" ] || partx -a "$DISK" 2>/dev/null || true
    if [ ! -b "$node" ]; then
      mknod "$node" b $(tr : ' ' <"/sys/class/block/$(basename "$node")/dev")
      CLEANUP+=("rm -f $node")
    fi
  done
}
disk main "$(stat -c %s "$(image_of r1)")"
LOOP=$DISK
# device REPO DISK SYSTEM_JSON: a state directory and config for installing from REPO.
device() {
  local d=$WORK/device-$1
  rm -rf "$d"; mkdir -p "$d"
  echo "flipside.slot=a" >"$d/cmdline"
  cp "$3" "$d/system.json"
  cat >"$d/config.toml" <<CONF
[repository]
mirrors = ["http://127.0.0.1:$PORT/$1/"]
trusted_root = "$WORK/repos/$1/metadata/1.root.json"
[device]
disk = "$2"
state_dir = "state"
cmdline = "cmdline"
system_info = "system.json"
[progress]
interval_secs = 3600
CONF
  echo "$d"
}
# The running system's own description, as the image holds it.
sysinfo() { unsquashfs -cat "$(image_of "$1")" .flipside/system.json >"$WORK/out/$1.system.json"; echo "$WORK/out/$1.system.json"; }
# Slot a proven and running, slot b empty and not bootable, no updater state.
reset_device() {
  cgpt add -i 1 -P 2 -T 0 -S 1 "$2"
  cgpt add -i 2 -P 0 -T 0 -S 0 "$2"
  rm -rf "$1/state"
}

# --- measuring -------------------------------------------------------------------------------
RES=$WORK/results-$(date -u +%Y%m%dT%H%M%S)
rm -rf "$RES"; mkdir -p "$RES"
# measure NAME COMMAND...: appends "seconds peak_rss_kib" to RES/NAME (children included).
measure() {
  local name=$1; shift
  if ! /usr/bin/time -f '%e %M' -o "$RES/time" "$@" >"$RES/$name.out" 2>"$RES/$name.err"; then
    log "$name failed:"; tail -5 "$RES/$name.err" >&2; exit 1
  fi
  cat "$RES/time" >>"$RES/$name"
}
# mmm NAME COLUMN [DIVISOR]: "min median max" of a column.
mmm() {
  cut -d' ' -f"$2" "$RES/$1" | sort -g | awk -v d="${3:-1}" '{a[NR]=$1/d}
    END {printf "%.2f / %.2f / %.2f", a[1], a[int((NR+1)/2)], a[NR]}'
}
med() { cut -d' ' -f"$2" "$RES/$1" | sort -g | awk -v d="${3:-1}" '{a[NR]=$1/d} END {printf "%.2f\n", a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
mb() { awk -v a="$1" 'BEGIN {printf "%.2f MB", a / 1e6}'; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- RAUC: private D-Bus, custom no-op bootloader, a signed bundle of the same image ----------
RA=$WORK/rauc
mkdir -p "$RA/mnt"
if [ ! -f "$RA/key.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$RA/key.pem" -out "$RA/cert.pem" \
    -subj /CN=flipside-bench -days 3650 2>/dev/null
fi
cat >"$RA/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=$RA/bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/>
<allow receive_sender="*"/></policy></busconfig>
CONF
cat >"$RA/backend.sh" <<'SH'
#!/bin/sh
# A no-op bootloader: always boots A, accepts every change.
case "$1" in get-primary|get-current) echo A ;; get-state) echo good ;; esac
SH
chmod +x "$RA/backend.sh"
cat >"$RA/system.conf" <<CONF
[system]
compatible=flipside-bench
bootloader=custom
mountprefix=$RA/mnt
statusfile=$RA/status
[handlers]
bootloader-custom-backend=$RA/backend.sh
[keyring]
path=$RA/cert.pem
[slot.rootfs.0]
device=${LOOP}p1
type=raw
bootname=A
[slot.rootfs.1]
device=${LOOP}p2
type=raw
bootname=B
CONF
# The image and a manifest, for `rauc bundle` (its squashfs compressed with zstd at LEVEL).
rm -rf "$RA/content"; mkdir -p "$RA/content"
ln "$IMAGE" "$RA/content/rootfs.img"
printf '[update]\ncompatible=flipside-bench\nversion=2\n[bundle]\nformat=plain\n[image.rootfs]\nfilename=rootfs.img\n' \
  >"$RA/content/manifest.raucm"
RAUC_BUNDLE=(rauc bundle --cert "$RA/cert.pem" --key "$RA/key.pem"
  "--mksquashfs-args=-comp zstd -Xcompression-level $LEVEL" "$RA/content")
if on install && [ ! -f "$RA/bundle.raucb" ]; then "${RAUC_BUNDLE[@]}" "$RA/bundle.raucb" >/dev/null; fi
dbus-daemon --config-file="$RA/bus.conf" --nofork --nopidfile &
CLEANUP+=("kill $!")
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$RA/bus
for _ in $(seq 100); do [ -S "$RA/bus" ] && break; sleep 0.1; done
# rauc_install: one install by a fresh service; appends the service's peak RSS (KiB) to RES.
rauc_install() {
  rauc service --conf="$RA/system.conf" --override-boot-slot=A >"$RES/rauc-service.log" 2>&1 &
  local svc=$!
  for _ in $(seq 100); do rauc status --conf="$RA/system.conf" >/dev/null 2>&1 && break; sleep 0.1; done
  measure rauc rauc install "$RA/bundle.raucb"
  awk '/VmHWM/ {print $2}' "/proc/$svc/status" >>"$RES/rauc-service"
  kill "$svc"; wait "$svc" || true
}

# casync_new OLD NEW: bytes of the chunks (zstd) that NEW adds to a store holding OLD.
casync_new() {
  rm -rf "$WORK/casync"; mkdir -p "$WORK/casync"
  casync make --compression=zstd --store="$WORK/casync/store" "$WORK/casync/old.caibx" "$1" >/dev/null
  find "$WORK/casync/store" -name '*.cacnk' | sort >"$WORK/casync/before"
  casync make --compression=zstd --store="$WORK/casync/store" "$WORK/casync/new.caibx" "$2" >/dev/null
  find "$WORK/casync/store" -name '*.cacnk' | sort | comm -13 "$WORK/casync/before" - \
    | xargs -r stat -c %s | awk '{s+=$1} END {print s+0}'
  rm -rf "$WORK/casync"
}

# --- full installs, interleaved ----------------------------------------------------------------
BUNDLE=$(bundle_of s3)
SLOT_B=${LOOP}p2
if on install; then
DEV=$(device full "$LOOP" "$(sysinfo r1)")
# The curl pipeline streams the image as one zstd stream (the strongest plain download).
ln -f "$ONE" "$WORK/repos/one-stream.zst"
URL=http://127.0.0.1:$PORT/one-stream.zst
DD="dd of=$SLOT_B bs=1M iflag=fullblock oflag=direct conv=notrunc status=none"
log "full installs: $ROUNDS rounds"
for i in $(seq "$ROUNDS"); do
  reset_device "$DEV" "$LOOP"
  measure flipside "$FS" --config "$DEV/config.toml" install
  grep -q 'FLIPSIDE_RESULT event=installed' "$RES/flipside.out" || { cat "$RES/flipside.err"; exit 1; }
  reset_device "$DEV" "$LOOP"
  rauc_install
  measure curl bash -c "curl -sf '$URL' | zstd -d | tee >(sha256sum >/dev/null) | $DD"
  measure raw bash -c "zstd -d < '$ONE' | $DD"
  log "round $i done"
done
grep FLIPSIDE_RESULT "$RES/flipside.out" >"$RES/flipside.result"
# The slot must hold the image after each method (the last run is the raw limit's).
cmp -n "$IMAGE_LEN" "$IMAGE" "$SLOT_B"
fi

# --- deltas --------------------------------------------------------------------------------------
if on delta; then
for s in s1 s2 s3; do
  log "delta $s"
  NEW=$(image_of $s)
  dev=$(device $s "$LOOP" "$(sysinfo r1)")
  dd if="$OLD" of="${LOOP}p1" bs=1M oflag=direct conv=notrunc status=none
  reset_device "$dev" "$LOOP"
  measure "delta_$s" "$FS" --config "$dev/config.toml" install
  grep FLIPSIDE_RESULT "$RES/delta_$s.out" >"$RES/delta_$s.result"
  cmp -n "$(stat -c %s "$NEW")" "$NEW" "$SLOT_B"
done
dd if="$OLD" of="${LOOP}p1" bs=1M oflag=direct conv=notrunc status=none
fi

# --- install peak RSS: small and large images -------------------------------------------------
if on rss; then
DEV=$(device small "$LOOP" "$(sysinfo r1)")
reset_device "$DEV" "$LOOP"
measure rss_small "$FS" --config "$DEV/config.toml" install
measure rss_zstd_small zstd -d -c "$(bundle_of small)" -o /dev/null
if [ "$LARGE" = 1 ]; then
  log "large image: install"
  disk large "$(stat -c %s "$(image_of large)")"
  BIG=$DISK
  DEV=$(device large "$BIG" "$(sysinfo r1)")
  reset_device "$DEV" "$BIG"
  measure rss_large "$FS" --config "$DEV/config.toml" install
  measure rss_zstd_large zstd -d -c "$(bundle_of large)" -o /dev/null
  rm -rf "$WORK/build" "$WORK/build-store"
  log "large image: build"
  measure build_large "$FB" image "$WORK/trees/large.toml" -o "$WORK/build" --store "$WORK/build-store" \
    --zstd-level "$LARGE_LEVEL"
  rm -rf "$WORK/build" "$WORK/build-store"
  if [ -n "${BASE_BIN_DIR:-}" ]; then
    measure build_large_base "$BASE_BIN_DIR/flipside-build" image "$WORK/trees/large.toml" -o "$WORK/build" \
      --store "$WORK/build-store" --zstd-level "$LARGE_LEVEL"
  fi
  measure build_large_mksquashfs mksquashfs $(awk '{print $2}' <<<"${ROOTS[large]}") "$WORK/build.sqfs" \
    -noappend -quiet -no-progress -comp zstd -Xcompression-level "$LARGE_LEVEL"
  rm -rf "$WORK/build" "$WORK/build-store" "$WORK/build.sqfs"
fi
fi

# --- builds, interleaved -----------------------------------------------------------------------
if on build; then
TREE_DIRS=()
while read -r root dir; do [ -n "$root" ] && TREE_DIRS+=("$dir"); done <<<"${ROOTS[s3]}"
log "builds: $BUILD_ROUNDS rounds"
for i in $(seq "$BUILD_ROUNDS"); do
  rm -rf "$WORK/build" "$WORK/build-store" "$WORK/build.sqfs" "$WORK/build.raucb"
  if [ -n "${BASE_BIN_DIR:-}" ]; then
    measure build_base "$BASE_BIN_DIR/flipside-build" image "$WORK/trees/s3.toml" -o "$WORK/build" --store "$WORK/build-store"
    rm -rf "$WORK/build" "$WORK/build-store"
  fi
  measure build_flipside "$FB" image "$WORK/trees/s3.toml" -o "$WORK/build" --store "$WORK/build-store"
  measure build_mksquashfs mksquashfs "${TREE_DIRS[@]}" "$WORK/build.sqfs" -noappend -quiet \
    -no-progress -comp zstd -Xcompression-level "$LEVEL"
  measure build_rauc "${RAUC_BUNDLE[@]}" "$WORK/build.raucb"
  log "round $i done"
done
cmp "$IMAGE" "$(ls "$WORK"/build/*.squashfs)"  # reproducible: the same image as the cached one
SQ_BYTES=$(stat -c %s "$WORK/build.sqfs")
rm -rf "$WORK/build" "$WORK/build-store" "$WORK/build.sqfs" "$WORK/build.raucb"

fi

# --- delta anchors: casync, then zstd --patch-from (slow; last) -------------------------------
mkdir -p "$WORK/cache"
if on casync; then
for s in s1 s2 s3; do
  [ -f "$WORK/cache/casync_$s.bytes" ] || casync_new "$OLD" "$(image_of $s)" >"$WORK/cache/casync_$s.bytes"
  cp "$WORK/cache/casync_$s.bytes" "$RES/"
done
fi
if on patch; then
for s in s1 s2 s3; do
  if [ ! -f "$WORK/cache/patch_$s.bytes" ]; then
    log "zstd --patch-from $s"
    measure "patch_$s" zstd -q -f -T0 -19 --patch-from="$OLD" "$(image_of $s)" -o "$WORK/out/$s.patch"
    cp "$RES/patch_$s" "$WORK/cache/patch_$s"
    stat -c %s "$WORK/out/$s.patch" >"$WORK/cache/patch_$s.bytes"
  fi
  cp "$WORK/cache/patch_$s" "$WORK/cache/patch_$s.bytes" "$RES/"
done
fi

# --- the table ---------------------------------------------------------------------------------
field() { grep -o "$2=[0-9]*" "$RES/$1" | cut -d= -f2; }
echo
echo "flipside benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB,"\
  "load $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; $ROUNDS rounds (min / median / max)"
echo "tree: $(wc -l <<<"${ROOTS[s3]}" | awk '{print $1-1}') bookworm packages; image $(mb "$IMAGE_LEN") (flipside-build, release S3)"
echo
echo "| what | flipside | anchor | ratio flipside / anchor |"
echo "|---|---|---|---|"
if on install; then
B_LEN=$(stat -c %s "$BUNDLE"); ONE_LEN=$(stat -c %s "$ONE")
F=$(med flipside 1); R=$(med rauc 1); C=$(med curl 1); X=$(med raw 1)
echo "| full install, s | $(mmm flipside 1) | RAUC $(mmm rauc 1) | $(ratio "$F" "$R") |"
echo "| full install, s | | curl \| zstd -d \| tee sha256sum \| dd $(mmm curl 1) | $(ratio "$F" "$C") |"
echo "| full install, s | | raw zstd -d < one-stream \| dd $(mmm raw 1) | $(ratio "$F" "$X") |"
echo "| full install, peak RSS MiB | $(mmm flipside 2 1024) | RAUC service $(mmm rauc-service 1 1024); curl pipeline $(mmm curl 2 1024); raw $(mmm raw 2 1024) | $(ratio "$(med flipside 2)" "$(med rauc-service 1)") vs RAUC |"
FETCHED=$(field flipside.result fetched)
echo "| full install, bytes fetched (bundle) | $(mb "$FETCHED") | one zstd -$LEVEL stream $(mb "$ONE_LEN"); RAUC bundle $(mb "$(stat -c %s "$RA/bundle.raucb")") | $(ratio "$FETCHED" "$ONE_LEN") |"
echo "| bundle on the server (chunk frames, delta frames, segments) | $(mb "$B_LEN") | one stream $(mb "$ONE_LEN") | $(ratio "$B_LEN" "$ONE_LEN") |"
fi
if on delta; then
for s in s1 s2 s3; do
  fetched=$(field "delta_$s.result" fetched); anchors=; ratios=
  if on patch; then
    patch=$(cat "$RES/patch_$s.bytes")
    anchors="zstd -19 --patch-from $(mb "$patch") ($(med "patch_$s" 1) s, $(med "patch_$s" 2 1048576) GiB to make); "
    ratios="$(ratio "$fetched" "$patch") vs patch-from, "
  fi
  if on casync; then
    cas=$(cat "$RES/casync_$s.bytes"); anchors+="casync $(mb "$cas")"; ratios+="$(ratio "$fetched" "$cas") vs casync"
  fi
  # The device also fetches the new release's index (casync's and patch-from's figures hold
  # no index): shown apart, and in the second row's ratios.
  index=$(stat -c %s "$WORK/out/$s"/*.index)
  echo "| delta $s, fetched | $(mb "$fetched") | $anchors | $ratios |"
  with=$((fetched + index)); ratios=
  on patch && ratios="$(ratio "$with" "$patch") vs patch-from, "
  on casync && ratios+="$(ratio "$with" "$cas") vs casync"
  echo "| delta $s, fetched + index ($(mb "$index")) | $(mb "$with") | | $ratios |"
done
# Built once (cached in WORK/out): the time of a release with delta frames against r1, next to
# r1's own build (no previous release).
for s in r1 s1 s2 s3; do
  [ -f "$WORK/out/$s.time" ] || continue
  read -r secs kib <"$WORK/out/$s.time"
  echo "| build $s$([ $s = r1 ] || echo ' with --previous r1'), s (MiB) | $secs ($((kib / 1024))) | | |"
done
fi
if on build; then
BF=$(med build_flipside 1)
echo "| build, s | flipside-build image $(mmm build_flipside 1) | mksquashfs -comp zstd -Xcompression-level $LEVEL $(mmm build_mksquashfs 1) ($(mb "$SQ_BYTES")); rauc bundle $(mmm build_rauc 1) | $(ratio "$BF" "$(med build_mksquashfs 1)") vs mksquashfs, $(ratio "$BF" "$(med build_rauc 1)") vs rauc |"
echo "| build, peak memory MiB | $(mmm build_flipside 2 1024) | mksquashfs $(mmm build_mksquashfs 2 1024); rauc bundle $(mmm build_rauc 2 1024) | |"
if [ -n "${BASE_BIN_DIR:-}" ]; then
  echo "| build, s (MiB), against the baseline flipside-build | $BF ($(med build_flipside 2 1024)) | baseline $(mmm build_base 1) ($(med build_base 2 1024)) | $(ratio "$BF" "$(med build_base 1)") |"
fi
fi
if on rss && [ "$LARGE" = 1 ]; then
  echo "| build of the large image ($(mb "$(stat -c %s "$(image_of large)")"), zstd level $LARGE_LEVEL) | $(med build_large 1) s, $(med build_large 2 1024) MiB | mksquashfs -comp zstd $(med build_large_mksquashfs 1) s, $(med build_large_mksquashfs 2 1024) MiB | $(ratio "$(med build_large 1)" "$(med build_large_mksquashfs 1)") |"
  [ -n "${BASE_BIN_DIR:-}" ] && echo "| build of the large image, baseline flipside-build | | $(med build_large_base 1) s, $(med build_large_base 2 1024) MiB | |"
  echo "| install peak RSS MiB, small ($(mb "$(stat -c %s "$(image_of small)")")) / large ($(mb "$(stat -c %s "$(image_of large)")")) | $(med rss_small 2 1024) / $(med rss_large 2 1024) | zstd -d $(med rss_zstd_small 2 1024) / $(med rss_zstd_large 2 1024) | |"
elif on rss; then
  echo "| install peak RSS MiB, small ($(mb "$(stat -c %s "$(image_of small)")")) | $(med rss_small 2 1024) | zstd -d $(med rss_zstd_small 2 1024) | |"
fi
echo
cat "$RES"/*.result 2>/dev/null || true
