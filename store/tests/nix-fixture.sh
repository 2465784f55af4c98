#!/bin/sh
# Builds tests/data/nix/app.nix with the real Nix of this host, offline and without a sandbox,
# and prints the output store path. Used by the store crate's and the CLI's Nix tests.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v nix-build >/dev/null 2>&1; then
    echo "nix-build is missing: install Nix (Debian: apt-get install nix-bin)" >&2
    exit 127
fi
exec nix-build --no-out-link --quiet \
    --option sandbox false --option substituters '' \
    "$here/data/nix/app.nix"
