"""Writes the python-tuf fixtures under tests/data/ (run once; the output is committed).

Usage: python3 tests/data/make_fixtures.py   (from the tuf/ directory; needs the `tuf` package)
"""

import json
import os
import sys
from datetime import datetime, timezone

from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import (
    Key,
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "python-tuf")
EXPIRES = datetime(2030, 1, 1, tzinfo=timezone.utc)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    # root has two keys and threshold 2; the other roles one key each.
    signers = {
        "root": [CryptoSigner.generate_ed25519(), CryptoSigner.generate_ed25519()],
        "targets": [CryptoSigner.generate_ed25519()],
        "snapshot": [CryptoSigner.generate_ed25519()],
        "timestamp": [CryptoSigner.generate_ed25519()],
    }
    root = Root(expires=EXPIRES, consistent_snapshot=True)
    for role, role_signers in signers.items():
        for signer in role_signers:
            root.add_key(signer.public_key, role)
    root.roles["root"].threshold = 2

    payload = b"flipside fixture target\n"
    targets = Targets(expires=EXPIRES)
    target = TargetFile.from_data("kiosk-1.bundle", payload, ["sha256"])
    target.unrecognized_fields["custom"] = {"flipside": {"kind": "bundle", "note": "caf\u00e9"}}
    targets.targets[target.path] = target
    # An unknown field: verification must cover it as received.
    targets.unrecognized_fields["x-flipside-extra"] = {"z": [1, 2, 3], "a": "quote\" backslash\\"}

    snapshot = Snapshot(expires=EXPIRES)
    timestamp = Timestamp(expires=EXPIRES)

    serializer = JSONSerializer(compact=False)
    files = {}
    for name, signed in [("root", root), ("targets", targets)]:
        md = Metadata(signed)
        for signer in signers[name]:
            md.sign(signer, append=True)
        files[name] = md.to_bytes(serializer)
    snapshot.meta["targets.json"] = MetaFile(
        version=1, length=len(files["targets"]), hashes=None
    )
    md = Metadata(snapshot)
    md.sign(signers["snapshot"][0])
    files["snapshot"] = md.to_bytes(serializer)
    timestamp.snapshot_meta = MetaFile(version=1)
    md = Metadata(timestamp)
    md.sign(signers["timestamp"][0])
    files["timestamp"] = md.to_bytes(serializer)

    for name, data in files.items():
        file_name = "timestamp.json" if name == "timestamp" else f"1.{name}.json"
        with open(os.path.join(OUT, file_name), "wb") as f:
            f.write(data)
    with open(os.path.join(OUT, "kiosk-1.bundle"), "wb") as f:
        f.write(payload)

    # Canonical JSON vectors: the input and securesystemslib's canonical bytes.
    vectors = [
        {"b": 1, "a": "x"},
        {"nested": {"z": [3, 2, 1], "y": None, "x": True, "w": False}, "empty": {}, "list": []},
        {"escapes": "quote\" backslash\\ newline\n tab\t ctrl\u0001", "unicode": "caf\u00e9 \u2603 \U0001f600"},
        {"ints": [0, -1, 9007199254740993, 18446744073709551615], "\u00e9": 1, "e": 2, "Z": 3},
        # Keys that sort differently by code point than by their quoted bytes.
        {"a": 1, "a b": 2, "a!": 3, "a\"": 4, "a\\": 5, "ab": 6, "": 7},
        # Strings are kept as they are: no Unicode normalisation.
        {"e\u0301": "e\u0301 stays as it is (not NFC)", "\u00e9": "precomposed", "\U0001f600": 1, "\uffff": 2},
    ]
    with open(os.path.join(HERE, "canonical-vectors.json"), "w", encoding="utf-8") as f:
        json.dump(
            [{"input": v, "canonical": encode_canonical(v)} for v in vectors],
            f,
            ensure_ascii=False,
            indent=1,
        )

    # Key id vector: the RFC 8032 test 1 public key as securesystemslib names it.
    public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    key = SSlibKey.from_dict(
        "unused", {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public}}
    )
    from securesystemslib.signer._utils import compute_default_keyid

    keyid = compute_default_keyid(key.keytype, key.scheme, key.keyval)
    with open(os.path.join(HERE, "keyid-vector.json"), "w") as f:
        json.dump({"public": public, "keyid": keyid}, f, indent=1)
    print("wrote fixtures to", HERE, file=sys.stderr)


if __name__ == "__main__":
    main()
