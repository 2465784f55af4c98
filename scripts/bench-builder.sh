#!/usr/bin/env bash
# Builder benchmark: flipside-build against plain mksquashfs on the same tree of real files
# (unpacked Debian packages), and the bundle against a single-stream `zstd -19` of the image.
# Prints figures; asserts nothing. Usage: scripts/bench-builder.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
flipside_setup
RUNS="${1:-3}"
PACKAGES=(libllvm14 gcc-12 vim-runtime libicu72 perl-modules-5.36 libpython3.11-stdlib)
WORK="$PWD/target/bench-builder"
mkdir -p "$WORK/debs"

if [ ! -d "$WORK/tree" ]; then
  (cd "$WORK/debs" && apt-get download -qq "${PACKAGES[@]}")
  mkdir -p "$WORK/tree.tmp"
  for pkg in "${PACKAGES[@]}"; do
    deb=$(ls "$WORK/debs/${pkg}_"*.deb | head -1)
    dpkg -x "$deb" "$WORK/tree.tmp/$pkg"
  done
  mv "$WORK/tree.tmp" "$WORK/tree"
fi
cargo build --release -q -p flipside-image-builder
B="$PWD/target/release/flipside-build"

{
  echo 'name = "bench"'
  echo 'version = 1'
  echo 'hardware_id = "bench"'
  echo 'init = "@gcc-12/usr/bin/gcc-12"'
  for pkg in "${PACKAGES[@]}"; do
    printf '[[root]]\nname = "%s"\ndir = "%s"\n' "$pkg" "$WORK/tree/$pkg"
  done
} > "$WORK/system.toml"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { # prints "seconds max_rss_kib" of a command
  /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
  cat "$WORK/time"
}

tree_bytes=$(du -sb "$WORK/tree" | cut -f1)
echo "tree: ${PACKAGES[*]}: $tree_bytes bytes, $(find "$WORK/tree" -type f | wc -l) files; $(nproc) cores; $RUNS runs, medians"

: > "$WORK/fs.times"; : > "$WORK/sq.times"; : > "$WORK/sqz.times"
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/store" "$WORK/out" "$WORK/sq.img" "$WORK/sqz.img"
  timed "$B" image "$WORK/system.toml" -o "$WORK/out" --store "$WORK/store" >> "$WORK/fs.times"
  timed mksquashfs "$WORK/tree" "$WORK/sq.img" -noappend -quiet -no-progress >> "$WORK/sq.times"
  timed mksquashfs "$WORK/tree" "$WORK/sqz.img" -noappend -quiet -no-progress -comp zstd -Xcompression-level 19 >> "$WORK/sqz.times"
done
fs_t=$(cut -d' ' -f1 "$WORK/fs.times" | median); fs_m=$(cut -d' ' -f2 "$WORK/fs.times" | median)
sq_t=$(cut -d' ' -f1 "$WORK/sq.times" | median); sqz_t=$(cut -d' ' -f1 "$WORK/sqz.times" | median)
image=$(ls "$WORK"/out/*.squashfs); bundle=$(ls "$WORK"/out/*.bundle); index=$(ls "$WORK"/out/*.index)
img_b=$(stat -c %s "$image"); bun_b=$(stat -c %s "$bundle"); idx_b=$(stat -c %s "$index")
sq_b=$(stat -c %s "$WORK/sq.img"); sqz_b=$(stat -c %s "$WORK/sqz.img")

read -r z_t _ < <(timed zstd -19 -T0 -f -q "$image" -o "$WORK/image.zst")
z_b=$(stat -c %s "$WORK/image.zst")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '%-52s %10s %14s\n' "what" "seconds" "bytes"
printf '%-52s %10s %14s\n' "flipside-build image (import+squashfs+bundle)" "$fs_t" "bundle $bun_b"
printf '%-52s %10s %14s\n' "  its uncompressed image / its index" "" "$img_b / $idx_b"
printf '%-52s %10s %14s\n' "mksquashfs (default gzip)" "$sq_t" "$sq_b"
printf '%-52s %10s %14s\n' "mksquashfs -comp zstd -Xcompression-level 19" "$sqz_t" "$sqz_b"
printf '%-52s %10s %14s\n' "zstd -19 -T0 of flipside's image (one stream)" "$z_t" "$z_b"
echo
echo "time ratio flipside-build / mksquashfs gzip:   $(ratio "$fs_t" "$sq_t")"
echo "time ratio flipside-build / mksquashfs zstd19: $(ratio "$fs_t" "$sqz_t")"
echo "size ratio bundle / mksquashfs gzip image:     $(ratio "$bun_b" "$sq_b")"
echo "size ratio bundle / mksquashfs zstd19 image:   $(ratio "$bun_b" "$sqz_b")"
echo "bundle overhead over single-stream zstd -19:   $(ratio "$bun_b" "$z_b") (index adds $(ratio "$idx_b" "$z_b"))"
echo "flipside-build peak RSS: ${fs_m} KiB"
