"""Writes tests/data/key-vectors.json: one signature per key type and scheme that
securesystemslib signs and flipside verifies beyond ed25519 (run once; the output is committed).

Each entry has the key object as it appears in metadata (keytype, scheme, keyval.public), its
key id, a `signed` object, and securesystemslib's signature over that object's canonical JSON,
checked with securesystemslib before it is written.

Usage: python3 tests/data/make_key_vectors.py   (from the tuf/ directory; needs securesystemslib
with the cryptography extra)
"""

import json
import os

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, SSlibKey

HERE = os.path.dirname(os.path.abspath(__file__))

SCHEMES = [
    ("ecdsa", "ecdsa-sha2-nistp256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ("ecdsa", "ecdsa-sha2-nistp384", lambda: ec.generate_private_key(ec.SECP384R1())),
    ("rsa", "rsassa-pss-sha256", lambda: rsa.generate_private_key(65537, 3072)),
    ("rsa", "rsassa-pss-sha384", lambda: rsa.generate_private_key(65537, 3072)),
    ("rsa", "rsassa-pss-sha512", lambda: rsa.generate_private_key(65537, 3072)),
    ("rsa", "rsa-pkcs1v15-sha256", lambda: rsa.generate_private_key(65537, 3072)),
]


def main() -> None:
    vectors = []
    for keytype, scheme, generate in SCHEMES:
        private = generate()
        public = SSlibKey.from_crypto(private.public_key(), scheme=scheme)
        assert public.keytype == keytype, (public.keytype, keytype)
        signer = CryptoSigner(private, public)
        signed = {"_type": "targets", "scheme": scheme, "note": "caf\u00e9"}
        message = encode_canonical(signed).encode()
        signature = signer.sign(message)
        public.verify_signature(signature, message)
        vectors.append(
            {
                "keyid": public.keyid,
                "key": public.to_dict(),
                "signed": signed,
                "sig": signature.signature,
            }
        )
    with open(os.path.join(HERE, "key-vectors.json"), "w", encoding="utf-8") as f:
        json.dump(vectors, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
