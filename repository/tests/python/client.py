"""A python-tuf client run against a flipside repository (tests/python_interop.rs).

Serves REPO with http.server on 127.0.0.1 (port chosen by the OS) in a thread, bootstraps
tuf.ngclient.Updater with the given trusted root, refreshes, and downloads targets.

Usage: client.py --repo DIR --root FILE --cache DIR [--download NAME=FILE]... [--absent NAME]...
                 [--kind NAME=KIND]...
  --cache keeps the client's trusted metadata between runs (reuse it to test key rotations).
  --download checks that target NAME downloads and is byte-identical to FILE.
  --absent checks that the repository has no target NAME.
  --kind checks that target NAME's custom.flipside.kind is KIND and prints its kernel part.

Exit status: 0 all checks passed; 2 python-tuf refused the repository (printed); 1 any other
failure; 3 the tuf package is missing.
"""

import argparse
import functools
import http.server
import os
import sys
import threading

try:
    from tuf.api import exceptions
    from tuf.ngclient import Updater
except ImportError as e:
    print(f"cannot import tuf ({e}): run scripts/test.sh, which installs it", file=sys.stderr)
    sys.exit(3)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--download", action="append", default=[])
    parser.add_argument("--absent", action="append", default=[])
    parser.add_argument("--kind", action="append", default=[])
    args = parser.parse_args()

    handler = functools.partial(QuietHandler, directory=args.repo)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        return run(args, base)
    finally:
        server.shutdown()
        server.server_close()


def make_updater(metadata_dir: str, target_dir: str, base: str, bootstrap: bytes) -> Updater:
    kwargs = {
        "metadata_dir": metadata_dir,
        "metadata_base_url": f"{base}/metadata/",
        "target_dir": target_dir,
        "target_base_url": f"{base}/targets/",
    }
    try:
        return Updater(**kwargs, bootstrap=bootstrap)
    except TypeError:
        # python-tuf before 6 has no `bootstrap`: it trusts METADATA_DIR/root.json.
        root = os.path.join(metadata_dir, "root.json")
        if not os.path.exists(root):
            with open(root, "wb") as f:
                f.write(bootstrap)
        return Updater(**kwargs)


def run(args, base: str) -> int:
    metadata_dir = os.path.join(args.cache, "metadata")
    target_dir = os.path.join(args.cache, "targets")
    os.makedirs(metadata_dir, exist_ok=True)
    os.makedirs(target_dir, exist_ok=True)
    with open(args.root, "rb") as f:
        bootstrap = f.read()
    try:
        updater = make_updater(metadata_dir, target_dir, base, bootstrap)
        updater.refresh()
        trusted = updater._trusted_set  # noqa: SLF001 - versions for the test's report only
        print(
            "refreshed: root {} timestamp {} snapshot {} targets {}".format(
                trusted.root.version,
                trusted.timestamp.version,
                trusted.snapshot.version,
                trusted.targets.version,
            )
        )
        for spec in args.download:
            name, expected_path = spec.split("=", 1)
            info = updater.get_targetinfo(name)
            if info is None:
                print(f"target {name} is not in the repository", file=sys.stderr)
                return 1
            path = updater.download_target(info, os.path.join(target_dir, name))
            with open(path, "rb") as got, open(expected_path, "rb") as want:
                if got.read() != want.read():
                    print(f"target {name} differs from {expected_path}", file=sys.stderr)
                    return 1
            print(f"downloaded {name}: {info.length} bytes, identical")
        for spec in args.kind:
            name, kind = spec.split("=", 1)
            info = updater.get_targetinfo(name)
            if info is None:
                print(f"target {name} is not in the repository", file=sys.stderr)
                return 1
            flipside = info.custom.get("flipside", {})
            if flipside.get("kind") != kind:
                print(f"target {name} has kind {flipside.get('kind')!r}, not {kind!r}", file=sys.stderr)
                return 1
            kernel = flipside.get("kernel") or {}
            print(
                f"custom {name}: kind {kind}, kernel {kernel.get('kernel_release')} "
                f"{kernel.get('bundle_target')} {kernel.get('index_target')}"
            )
        for name in args.absent:
            if updater.get_targetinfo(name) is not None:
                print(f"target {name} is in the repository but should not be", file=sys.stderr)
                return 1
            print(f"absent {name}")
    except (exceptions.RepositoryError, exceptions.DownloadError) as e:
        print(f"refused: {type(e).__name__}: {e}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
