"""Makes a TUF repository with python-tuf (tuf.api.metadata, securesystemslib keys) for
flipside's interoperability tests: `make_repo.py SCENE BREAK OUT`.

OUT/root.json is the trusted root a client starts from (version 1); OUT/repo/metadata and
OUT/repo/targets are what a server serves. Every scene publishes `file1.txt`; `delegation`
also publishes `apps/app.tgz` through a delegated role `apps` (paths `apps/*`, an ecdsa key).

Scenes: plain (no consistent snapshots), consistent (an rsassa-pss-sha256 timestamp key and
an ecdsa snapshot key), rotation (root v1 -> v2 -> v3, the root keys change at each step and
the timestamp key at v3; an rsa-pkcs1v15-sha256 targets key), delegation. Other keys are
ed25519.
BREAK: none; signature (one signature of the scene's key file is broken: timestamp, root v2
in `rotation`, the delegated role in `delegation`); target-hash (file1.txt, or apps/app.tgz,
is listed with a wrong sha256); wrong-key (the delegated role is signed by a key it was not
given).
"""

import os
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    MetaFile,
    Metadata,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

EXPIRES = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
TARGETS = {"file1.txt": b"hello from python-tuf\n", "apps/app.tgz": b"an app, delegated\n" * 50}


def main():
    scene, breakage, out = sys.argv[1], sys.argv[2], sys.argv[3]
    meta_dir = os.path.join(out, "repo", "metadata")
    targets_dir = os.path.join(out, "repo", "targets")
    os.makedirs(meta_dir)
    os.makedirs(targets_dir)
    consistent = scene != "plain"

    def write(md, name):
        md.to_file(os.path.join(meta_dir, name), serializer=JSONSerializer(compact=False))

    def versioned(md, role):
        # Consistent snapshots: VERSION.ROLE.json; otherwise ROLE.json (root always both).
        if role == "root" or consistent:
            write(md, f"{md.signed.version}.{role}.json")
        if role != "root" and not consistent:
            write(md, f"{role}.json")
        if role == "root":
            write(md, "root.json")

    def sign(md, *signers):
        md.signatures.clear()
        for s in signers:
            md.sign(s, append=True)

    def break_signature(md):
        sig = next(iter(md.signatures.values()))
        sig.signature = ("0" if sig.signature[0] != "0" else "1") + sig.signature[1:]

    keys = {r: CryptoSigner.generate_ed25519() for r in ["root", "timestamp", "snapshot", "targets"]}
    # The other key types of the specification, where a scene has room for them.
    if scene == "consistent":
        keys["timestamp"] = CryptoSigner.generate_rsa(scheme="rsassa-pss-sha256")
        keys["snapshot"] = CryptoSigner.generate_ecdsa()
    if scene == "rotation":
        keys["targets"] = CryptoSigner.generate_rsa(scheme="rsa-pkcs1v15-sha256")
    root = Root(expires=EXPIRES, consistent_snapshot=consistent)
    for role, signer in keys.items():
        root.add_key(signer.public_key, role)
    root_md = Metadata(root)
    sign(root_md, keys["root"])
    versioned(root_md, "root")
    root_md.to_file(os.path.join(out, "root.json"))

    if scene == "rotation":
        # v2: new root key, signed by the old and the new root keys.
        old_root = keys["root"]
        keys["root"] = CryptoSigner.generate_ed25519()
        root.revoke_key(old_root.public_key.keyid, "root")
        root.add_key(keys["root"].public_key, "root")
        root.version = 2
        sign(root_md, old_root, keys["root"])
        if breakage == "signature":
            break_signature(root_md)
        versioned(root_md, "root")
        # v3: another root key and a new timestamp key.
        old_root = keys["root"]
        keys["root"] = CryptoSigner.generate_ed25519()
        root.revoke_key(old_root.public_key.keyid, "root")
        root.add_key(keys["root"].public_key, "root")
        root.revoke_key(keys["timestamp"].public_key.keyid, "timestamp")
        keys["timestamp"] = CryptoSigner.generate_ed25519()
        root.add_key(keys["timestamp"].public_key, "timestamp")
        root.version = 3
        sign(root_md, old_root, keys["root"])
        versioned(root_md, "root")

    targets = Targets(expires=EXPIRES)
    published = ["file1.txt"]
    delegated = None
    if scene == "delegation":
        published.append("apps/app.tgz")
        apps_signer = CryptoSigner.generate_ecdsa()
        role = DelegatedRole(
            name="apps",
            keyids=[apps_signer.public_key.keyid],
            threshold=1,
            terminating=True,
            paths=["apps/*"],
        )
        targets.delegations = Delegations(
            keys={apps_signer.public_key.keyid: apps_signer.public_key}, roles={"apps": role}
        )
        delegated = Targets(expires=EXPIRES)
    for name in published:
        data = TARGETS[name]
        info = TargetFile.from_data(name, data, ["sha256"])
        if breakage == "target-hash" and name == published[-1]:
            info.hashes["sha256"] = "ab" * 32
        if name.startswith("apps/"):
            delegated.targets[name] = info
        else:
            targets.targets[name] = info
        directory, base = os.path.split(name)
        if consistent:
            # Under the listed hash, so that a wrong hash is caught by the content check and
            # not by a missing file.
            base = f"{info.hashes['sha256']}.{base}"
        os.makedirs(os.path.join(targets_dir, directory), exist_ok=True)
        with open(os.path.join(targets_dir, directory, base), "wb") as f:
            f.write(data)

    snapshot = Snapshot(expires=EXPIRES)
    targets_md = Metadata(targets)
    sign(targets_md, keys["targets"])
    versioned(targets_md, "targets")
    if delegated is not None:
        apps_md = Metadata(delegated)
        sign(apps_md, CryptoSigner.generate_ecdsa() if breakage == "wrong-key" else apps_signer)
        if breakage == "signature":
            break_signature(apps_md)
        versioned(apps_md, "apps")
        snapshot.meta["apps.json"] = MetaFile(version=1)
    snapshot_md = Metadata(snapshot)
    sign(snapshot_md, keys["snapshot"])
    versioned(snapshot_md, "snapshot")

    timestamp_md = Metadata(Timestamp(expires=EXPIRES, snapshot_meta=MetaFile(version=1)))
    sign(timestamp_md, keys["timestamp"])
    if breakage == "signature" and scene not in ("rotation", "delegation"):
        break_signature(timestamp_md)
    write(timestamp_md, "timestamp.json")


if __name__ == "__main__":
    main()
