use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::*;
use crate::keys::SigningKey;
use crate::metadata::{MetaFile, Snapshot, Targets, Timestamp};

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

fn expires() -> DateTime<Utc> {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

fn role_keys(keys: &[&SigningKey], threshold: u64) -> RoleKeys {
    RoleKeys {
        keyids: keys.iter().map(|k| k.key_id().clone()).collect(),
        threshold,
        extra: Default::default(),
    }
}

fn keymap(keys: &[&SigningKey]) -> BTreeMap<KeyId, PublicKey> {
    keys.iter()
        .map(|k| (k.key_id().clone(), k.public().clone()))
        .collect()
}

/// A root whose four roles all use `keys` with `threshold`.
fn root(version: u64, keys: &[&SigningKey], threshold: u64) -> Root {
    let roles = Role::ALL
        .into_iter()
        .map(|r| (r, role_keys(keys, threshold)))
        .collect();
    Root::new(version, expires(), keymap(keys), roles)
}

fn raw_signatures(raw: &Value, keys: &[&SigningKey]) -> Vec<Signature> {
    let message = canonical::to_vec(raw, "t").unwrap();
    keys.iter().map(|k| k.sign(&message)).collect()
}

fn body() -> Value {
    json!({"_type": "targets", "version": 3, "note": "caf\u{e9}"})
}

#[test]
fn every_subset_of_signers_against_every_threshold() {
    let keys: Vec<SigningKey> = (1..=4).map(key).collect();
    // Keys 0..3 are authorised; key 3 is known to root but belongs to no role here.
    let authorised: Vec<&SigningKey> = keys[..3].iter().collect();
    let all: Vec<&SigningKey> = keys.iter().collect();
    let raw = body();
    for threshold in 1..=4 {
        let rk = role_keys(&authorised, threshold);
        for mask in 0u32..16 {
            let signers: Vec<&SigningKey> = (0..4)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| &keys[i])
                .collect();
            let sigs = raw_signatures(&raw, &signers);
            let valid = (mask & 0b0111).count_ones() as u64;
            let got = verify_signatures(Role::Targets, &raw, &sigs, &rk, &keymap(&all));
            if valid >= threshold {
                assert_eq!(
                    got.unwrap().len() as u64,
                    valid,
                    "mask {mask:04b} t {threshold}"
                );
            } else {
                match got {
                    Err(Error::ThresholdNotMet {
                        threshold: t,
                        valid: v,
                        ..
                    }) => assert_eq!((t, v as u64), (threshold, valid)),
                    other => panic!("mask {mask:04b} t {threshold}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn a_key_id_repeated_in_signatures_is_refused_whatever_the_threshold() {
    let (a, b) = (key(1), key(2));
    let raw = body();
    let sig = raw_signatures(&raw, &[&a]).remove(0);
    let both = raw_signatures(&raw, &[&a, &b]);
    for threshold in [1, 2] {
        let rk = role_keys(&[&a, &b], threshold);
        let keys = keymap(&[&a, &b]);
        // One valid signature repeated, or repeated after a threshold already met.
        for sigs in [
            vec![sig.clone(), sig.clone()],
            vec![both[0].clone(), both[1].clone(), sig.clone()],
        ] {
            let err = verify_signatures(Role::Targets, &raw, &sigs, &rk, &keys).unwrap_err();
            assert!(
                matches!(&err, Error::DuplicateSignature { role: Role::Targets, keyid } if *keyid == sig.keyid),
                "{err}"
            );
        }
    }
    // Refused when parsed, before any key is looked at.
    let md = Metadata::sign(Targets::new(1, expires()), &[&a]).unwrap();
    let mut envelope: Value = serde_json::from_slice(&md.to_bytes().unwrap()).unwrap();
    let first = envelope["signatures"][0].clone();
    envelope["signatures"].as_array_mut().unwrap().push(first);
    let bytes = serde_json::to_vec(&envelope).unwrap();
    let err = Metadata::<Targets>::from_slice(&bytes).unwrap_err();
    assert!(matches!(err, Error::DuplicateSignature { .. }), "{err}");
}

#[test]
fn one_key_listed_under_two_key_ids_counts_once() {
    let a = key(1);
    let raw = body();
    let alias = KeyId("00".repeat(32));
    let mut keys = keymap(&[&a]);
    keys.insert(alias.clone(), a.public().clone());
    let rk = RoleKeys {
        keyids: vec![a.key_id().clone(), alias.clone()],
        threshold: 2,
        extra: Default::default(),
    };
    let sig = raw_signatures(&raw, &[&a]).remove(0);
    let aliased = Signature {
        keyid: alias,
        sig: sig.sig.clone(),
    };
    let err = verify_signatures(Role::Targets, &raw, &[sig, aliased], &rk, &keys).unwrap_err();
    assert!(
        matches!(err, Error::ThresholdNotMet { valid: 1, .. }),
        "{err}"
    );
}

#[test]
fn signature_by_a_key_outside_the_role_is_ignored_not_fatal() {
    let (a, stranger) = (key(1), key(9));
    let raw = body();
    let rk = role_keys(&[&a], 1);
    // Known to root (in the key map) but not listed for this role, then entirely unknown.
    for keys in [keymap(&[&a, &stranger]), keymap(&[&a])] {
        let sigs = raw_signatures(&raw, &[&stranger, &a]);
        let got = verify_signatures(Role::Targets, &raw, &sigs, &rk, &keys).unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![a.key_id().clone()]
        );
        let sigs = raw_signatures(&raw, &[&stranger]);
        let err = verify_signatures(Role::Targets, &raw, &sigs, &rk, &keys).unwrap_err();
        assert!(
            matches!(err, Error::ThresholdNotMet { valid: 0, .. }),
            "{err}"
        );
    }
}

#[test]
fn listed_key_id_missing_from_the_key_map_is_ignored() {
    let (a, b) = (key(1), key(2));
    let raw = body();
    let rk = role_keys(&[&a, &b], 1);
    let sigs = raw_signatures(&raw, &[&b]);
    let err = verify_signatures(Role::Targets, &raw, &sigs, &rk, &keymap(&[&a])).unwrap_err();
    assert!(matches!(err, Error::ThresholdNotMet { .. }), "{err}");
}

#[test]
fn signature_made_by_another_key_under_a_listed_key_id_fails() {
    let (a, b) = (key(1), key(2));
    let raw = body();
    let rk = role_keys(&[&a], 1);
    let mut sig = raw_signatures(&raw, &[&b]).remove(0);
    sig.keyid = a.key_id().clone();
    let err = verify_signatures(Role::Targets, &raw, &[sig], &rk, &keymap(&[&a, &b])).unwrap_err();
    assert!(matches!(err, Error::ThresholdNotMet { .. }), "{err}");
}

#[test]
fn unknown_key_types_and_malformed_signatures_are_skipped() {
    let (a, b, c) = (key(1), key(2), key(3));
    let raw = body();
    let mut keys = keymap(&[&a, &b, &c]);
    let rsa = KeyId("ab".repeat(32));
    let mut rsa_key = a.public().clone();
    rsa_key.keytype = "rsa".to_string();
    rsa_key.scheme = "rsassa-pss-sha256".to_string();
    keys.insert(rsa.clone(), rsa_key);
    let mut rk = role_keys(&[&a, &b, &c], 2);
    rk.keyids.push(rsa.clone());
    let mut sigs = vec![
        Signature {
            keyid: rsa,
            sig: raw_signatures(&raw, &[&a])[0].sig.clone(),
        },
        Signature {
            keyid: c.key_id().clone(),
            sig: "not hex".to_string(),
        },
    ];
    sigs.extend(raw_signatures(&raw, &[&a, &b]));
    let got = verify_signatures(Role::Targets, &raw, &sigs, &rk, &keys).unwrap();
    assert_eq!(got.len(), 2);
}

#[test]
fn threshold_zero_is_refused_even_with_no_signatures() {
    let a = key(1);
    let err = verify_signatures(
        Role::Snapshot,
        &body(),
        &[],
        &role_keys(&[&a], 0),
        &keymap(&[&a]),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ZeroThreshold {
                role: Role::Snapshot
            }
        ),
        "{err}"
    );
}

#[test]
fn flipped_bit_in_any_signature_character_fails() {
    let a = key(1);
    let raw = body();
    let rk = role_keys(&[&a], 1);
    let good = raw_signatures(&raw, &[&a]).remove(0);
    for i in 0..good.sig.len() {
        let mut bytes = good.sig.clone().into_bytes();
        bytes[i] ^= 0x01;
        let sig = Signature {
            keyid: good.keyid.clone(),
            sig: String::from_utf8(bytes).unwrap(),
        };
        assert!(
            verify_signatures(Role::Targets, &raw, &[sig], &rk, &keymap(&[&a])).is_err(),
            "flip at {i}"
        );
    }
}

#[test]
fn changed_body_fails_including_unknown_fields() {
    let a = key(1);
    let raw = body();
    let rk = role_keys(&[&a], 1);
    let sigs = raw_signatures(&raw, &[&a]);
    verify_signatures(Role::Targets, &raw, &sigs, &rk, &keymap(&[&a])).unwrap();
    for edit in [
        json!({"_type": "targets", "version": 4, "note": "caf\u{e9}"}),
        json!({"_type": "targets", "version": 3, "note": "cafe"}),
        json!({"_type": "targets", "version": 3, "note": "caf\u{e9}", "x": 1}),
        json!({"_type": "targets", "version": 3}),
    ] {
        assert!(verify_signatures(Role::Targets, &edit, &sigs, &rk, &keymap(&[&a])).is_err());
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/python-tuf/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Parses `bytes` as `role` metadata and verifies it with the python-tuf fixture's root.
fn verify_fixture_bytes(role: Role, bytes: &[u8]) -> Result<()> {
    let root = Metadata::<Root>::from_slice(&fixture("1.root.json"))?;
    match role {
        Role::Root => {
            let md = Metadata::<Root>::from_slice(bytes)?;
            verify_role(&md.signed, &md)?;
            verify_role(&root.signed, &md).map(|_| ())
        }
        Role::Targets => {
            verify_role(&root.signed, &Metadata::<Targets>::from_slice(bytes)?).map(|_| ())
        }
        Role::Snapshot => {
            verify_role(&root.signed, &Metadata::<Snapshot>::from_slice(bytes)?).map(|_| ())
        }
        Role::Timestamp => {
            verify_role(&root.signed, &Metadata::<Timestamp>::from_slice(bytes)?).map(|_| ())
        }
    }
}

const FIXTURES: [(Role, &str); 4] = [
    (Role::Root, "1.root.json"),
    (Role::Targets, "1.targets.json"),
    (Role::Snapshot, "1.snapshot.json"),
    (Role::Timestamp, "timestamp.json"),
];

#[test]
fn python_tuf_metadata_verifies() {
    for (role, name) in FIXTURES {
        verify_fixture_bytes(role, &fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Root threshold 2 is met by both root keys.
    let root = Metadata::<Root>::from_slice(&fixture("1.root.json")).unwrap();
    assert_eq!(verify_role(&root.signed, &root).unwrap().len(), 2);
    // The raw-envelope entry point agrees.
    let targets: Value = serde_json::from_slice(&fixture("1.targets.json")).unwrap();
    let rk = root.signed.role_keys(Role::Targets).unwrap();
    verify_envelope(Role::Targets, &targets, rk, &root.signed.keys).unwrap();
}

/// Every single-bit flip (two bit positions per byte) either fails or leaves the JSON value
/// unchanged (`\u00e9` and `\u00E9` are the same string): nothing a flip changes is trusted.
#[test]
fn one_flipped_bit_anywhere_in_python_tuf_files_fails() {
    let mut neutral = 0;
    for (role, name) in FIXTURES {
        let good = fixture(name);
        let good_value: Value = serde_json::from_slice(&good).unwrap();
        for i in 0..good.len() {
            for mask in [0x01u8, 0x20] {
                let mut bytes = good.clone();
                bytes[i] ^= mask;
                if verify_fixture_bytes(role, &bytes).is_ok() {
                    let value: Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(
                        value, good_value,
                        "{name}: flip {mask:#x} at byte {i} verifies"
                    );
                    neutral += 1;
                }
            }
        }
    }
    // Only the case of the escape in "caf\u00e9" can flip harmlessly.
    assert!(neutral <= 2, "{neutral} neutral flips");
}

#[test]
fn root_with_one_of_two_signatures_fails() {
    let mut envelope: Value = serde_json::from_slice(&fixture("1.root.json")).unwrap();
    envelope["signatures"].as_array_mut().unwrap().pop();
    let md = Metadata::<Root>::from_slice(&serde_json::to_vec(&envelope).unwrap()).unwrap();
    let err = verify_role(&md.signed, &md).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn sign_then_verify_and_unknown_fields_survive() {
    let a = key(1);
    let r = root(1, &[&a], 1);
    let mut targets = Targets::new(1, expires());
    targets
        .extra
        .insert("x-future".to_string(), json!({"b": 1, "a": [true]}));
    let md = Metadata::sign(targets, &[&a, &a]).unwrap();
    assert_eq!(md.signatures.len(), 1, "a key signs once");
    let parsed = Metadata::<Targets>::from_slice(&md.to_bytes().unwrap()).unwrap();
    verify_role(&r, &parsed).unwrap();
    assert_eq!(
        parsed.signed.extra["x-future"],
        json!({"b": 1, "a": [true]})
    );
    // Signing refuses invalid content.
    let mut bad = Timestamp::new(1, expires(), MetaFile::of_bytes(1, b"x"));
    bad.version = 0;
    assert!(matches!(
        Metadata::sign(bad, &[&a]),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn root_rotation_needs_old_and_new_thresholds_and_the_next_version() {
    let (old, new, other) = (key(1), key(2), key(3));
    let trusted = root(1, &[&old], 1);
    let next = root(2, &[&new], 1);
    let ok = Metadata::sign(next.clone(), &[&old, &new]).unwrap();
    verify_root_update(&trusted, &ok).unwrap();
    // Chain 1 -> 2 -> 3.
    let third = Metadata::sign(root(3, &[&other], 1), &[&new, &other]).unwrap();
    verify_root_update(&ok.signed, &third).unwrap();

    let only_new = Metadata::sign(next.clone(), &[&new]).unwrap();
    assert!(matches!(
        verify_root_update(&trusted, &only_new),
        Err(Error::ThresholdNotMet {
            role: Role::Root,
            ..
        })
    ));
    let only_old = Metadata::sign(next, &[&old]).unwrap();
    assert!(matches!(
        verify_root_update(&trusted, &only_old),
        Err(Error::ThresholdNotMet {
            role: Role::Root,
            ..
        })
    ));
    let skipped = Metadata::sign(root(3, &[&new], 1), &[&old, &new]).unwrap();
    assert!(matches!(
        verify_root_update(&trusted, &skipped),
        Err(Error::VersionMismatch {
            expected: 2,
            found: 3,
            ..
        })
    ));
    let replayed = Metadata::sign(root(1, &[&old], 1), &[&old]).unwrap();
    assert!(matches!(
        verify_root_update(&trusted, &replayed),
        Err(Error::VersionMismatch {
            expected: 2,
            found: 1,
            ..
        })
    ));
}

#[test]
fn snapshot_and_timestamp_chain_checks() {
    let a = key(1);
    let r = root(1, &[&a], 1);
    let targets = Metadata::sign(Targets::new(5, expires()), &[&a]).unwrap();
    let targets_bytes = targets.to_bytes().unwrap();
    let snapshot = Metadata::sign(
        Snapshot::new(7, expires(), MetaFile::of_bytes(5, &targets_bytes)),
        &[&a],
    )
    .unwrap();
    verify_role(&r, &snapshot).unwrap();
    let meta = snapshot.signed.targets_meta().unwrap();
    meta.check_bytes("targets", &targets_bytes).unwrap();
    let mut other = targets_bytes.clone();
    other.push(b' ');
    assert!(meta.check_bytes("targets", &other).is_err());
}

/// A public key object of another key type, with the key id securesystemslib would give it.
fn foreign_key(keytype: &str, scheme: &str, public: String) -> (KeyId, PublicKey) {
    let key = PublicKey {
        keytype: keytype.to_string(),
        scheme: scheme.to_string(),
        keyval: crate::keys::KeyVal {
            public,
            extra: Default::default(),
        },
        extra: Default::default(),
    };
    (key.key_id().unwrap(), key)
}

fn p256_key(n: u8) -> (p256::ecdsa::SigningKey, String) {
    use p256::pkcs8::EncodePublicKey;
    let key = p256::ecdsa::SigningKey::from_slice(&[n; 32]).unwrap();
    let pem = key
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    (key, pem)
}

/// Checks that `sign` signatures by key `(id, key)` verify, count once, and fail when the
/// message or the signature changes; `fixed` must be a second valid encoding if any.
fn check_foreign(id: KeyId, key: PublicKey, sign: &dyn Fn(&[u8]) -> Vec<u8>) {
    let raw = body();
    let message = canonical::to_vec(&raw, "t").unwrap();
    let sig = |bytes: &[u8]| Signature {
        keyid: id.clone(),
        sig: hex::encode(bytes),
    };
    let rk = RoleKeys {
        keyids: vec![id.clone()],
        threshold: 1,
        extra: Default::default(),
    };
    let keys = BTreeMap::from([(id.clone(), key.clone())]);
    let good = sign(&message);
    let got = verify_signatures(Role::Targets, &raw, &[sig(&good)], &rk, &keys);
    assert_eq!(got.unwrap().len(), 1, "{}", key.scheme);
    // Another message.
    let other = sign(b"another message");
    let err = verify_signatures(Role::Targets, &raw, &[sig(&other)], &rk, &keys).unwrap_err();
    assert!(matches!(err, Error::ThresholdNotMet { valid: 0, .. }));
    // A flipped bit in the signature.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = verify_signatures(Role::Targets, &raw, &[sig(&bad)], &rk, &keys).unwrap_err();
    assert!(matches!(err, Error::ThresholdNotMet { valid: 0, .. }));
    // Two ids for the same key material count once.
    let mut twin = key.clone();
    twin.extra
        .insert("x-twin".to_string(), Value::String("1".to_string()));
    let twin_id = twin.key_id().unwrap();
    let keys2 = BTreeMap::from([(id.clone(), key.clone()), (twin_id.clone(), twin)]);
    let rk2 = RoleKeys {
        keyids: vec![id.clone(), twin_id.clone()],
        threshold: 2,
        extra: Default::default(),
    };
    let twin_sig = Signature {
        keyid: twin_id,
        sig: hex::encode(&good),
    };
    let err =
        verify_signatures(Role::Targets, &raw, &[sig(&good), twin_sig], &rk2, &keys2).unwrap_err();
    assert!(
        matches!(err, Error::ThresholdNotMet { valid: 1, .. }),
        "{err}"
    );
}

#[test]
fn ecdsa_p256_keys_verify_with_either_keytype_spelling() {
    use p256::ecdsa::signature::Signer;
    let (signer, pem) = p256_key(7);
    for keytype in ["ecdsa", "ecdsa-sha2-nistp256"] {
        let (id, key) = foreign_key(keytype, "ecdsa-sha2-nistp256", pem.clone());
        assert!(key.verifier().is_some());
        let der = |m: &[u8]| {
            let s: p256::ecdsa::Signature = signer.sign(m);
            s.to_der().as_bytes().to_vec()
        };
        check_foreign(id.clone(), key.clone(), &der);
        // The fixed 64-byte form is accepted too.
        let fixed = |m: &[u8]| {
            let s: p256::ecdsa::Signature = signer.sign(m);
            s.to_bytes().to_vec()
        };
        check_foreign(id, key, &fixed);
    }
    // The public key as the hex of its uncompressed SEC1 point (older securesystemslib).
    let point = signer.verifying_key().to_encoded_point(false);
    let (id, key) = foreign_key(
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp256",
        hex::encode(point),
    );
    assert!(key.verifier().is_some());
    let der = |m: &[u8]| {
        let s: p256::ecdsa::Signature = signer.sign(m);
        s.to_der().as_bytes().to_vec()
    };
    check_foreign(id, key, &der);
    let (_, garbage) = foreign_key("ecdsa", "ecdsa-sha2-nistp256", "04abcd".to_string());
    assert!(garbage.verifier().is_none());
}

#[test]
fn rsa_keys_verify_pss_and_pkcs1v15() {
    use rsa::pkcs8::EncodePublicKey;
    use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
    use sha2::Sha256;
    let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let pem = private
        .to_public_key()
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    let (id, key) = foreign_key("rsa", "rsassa-pss-sha256", pem.clone());
    // Salt of the digest length (securesystemslib today) and of the maximum length (older).
    let pss = rsa::pss::BlindedSigningKey::<Sha256>::new(private.clone());
    check_foreign(id.clone(), key.clone(), &|m| {
        pss.sign_with_rng(&mut rand_core::OsRng, m).to_vec()
    });
    let max_salt = 256 - 32 - 2;
    let pss_max =
        rsa::pss::BlindedSigningKey::<Sha256>::new_with_salt_len(private.clone(), max_salt);
    check_foreign(id, key, &|m| {
        pss_max.sign_with_rng(&mut rand_core::OsRng, m).to_vec()
    });
    let (id, key) = foreign_key("rsa", "rsa-pkcs1v15-sha256", pem.clone());
    let pkcs1 = rsa::pkcs1v15::SigningKey::<Sha256>::new(private.clone());
    check_foreign(id, key.clone(), &|m| pkcs1.sign(m).to_vec());
    // A PKCS#1 v1.5 signature does not pass as PSS, nor the other way round.
    let (pss_id, pss_key) = foreign_key("rsa", "rsassa-pss-sha256", pem);
    let message = canonical::to_vec(&body(), "t").unwrap();
    let pkcs1_sig = pkcs1.sign(&message).to_vec();
    assert!(!pss_key.verifier().unwrap().verify(&message, &pkcs1_sig));
    let pss_sig = pss.sign_with_rng(&mut rand_core::OsRng, &message).to_vec();
    assert!(!key.verifier().unwrap().verify(&message, &pss_sig));
    assert!(pss_key.verifier().unwrap().verify(&message, &pss_sig));
    let _ = pss_id;
}

#[test]
fn unusable_keys_never_count_and_are_not_fatal() {
    let (_, pem) = p256_key(3);
    let unusable = [
        ("ecdsa", "ecdsa-sha2-nistp384", pem.clone()),
        ("rsa", "ecdsa-sha2-nistp256", pem.clone()),
        ("ecdsa", "ecdsa-sha2-nistp256", "not a pem".to_string()),
        ("rsa", "rsassa-pss-sha256", pem.clone()),
        ("ed25519", "ed25519", pem),
        ("sphincs", "sphincs-shake-128s", "00".to_string()),
    ];
    let a = key(1);
    let raw = body();
    for (keytype, scheme, public) in unusable {
        let (id, k) = foreign_key(keytype, scheme, public);
        assert!(k.verifier().is_none(), "{keytype}/{scheme}");
        let mut keys = keymap(&[&a]);
        keys.insert(id.clone(), k);
        let mut rk = role_keys(&[&a], 1);
        rk.keyids.push(id.clone());
        let mut sigs = vec![Signature {
            keyid: id,
            sig: "00".repeat(64),
        }];
        sigs.extend(raw_signatures(&raw, &[&a]));
        assert_eq!(
            verify_signatures(Role::Targets, &raw, &sigs, &rk, &keys)
                .unwrap()
                .len(),
            1
        );
        rk.threshold = 2;
        assert!(verify_signatures(Role::Targets, &raw, &sigs, &rk, &keys).is_err());
    }
}

/// securesystemslib's signatures for every non-ed25519 scheme (`tests/data/key-vectors.json`,
/// made by `tests/data/make_key_vectors.py`): each verifies, its key id is the one
/// securesystemslib computed, and a changed bit or body fails.
#[test]
fn securesystemslib_signatures_of_every_scheme_verify() {
    let path = format!("{}/tests/data/key-vectors.json", env!("CARGO_MANIFEST_DIR"));
    let vectors: Vec<Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut schemes = Vec::new();
    for v in &vectors {
        let key: PublicKey = serde_json::from_value(v["key"].clone()).unwrap();
        let id = KeyId(v["keyid"].as_str().unwrap().to_string());
        assert_eq!(key.key_id().unwrap(), id, "{}", key.scheme);
        assert!(key.verifier().is_some(), "{} is not understood", key.scheme);
        let rk = RoleKeys {
            keyids: vec![id.clone()],
            threshold: 1,
            extra: Default::default(),
        };
        let keys = BTreeMap::from([(id.clone(), key.clone())]);
        let sig = v["sig"].as_str().unwrap().to_string();
        let signed = &v["signed"];
        let check = |body: &Value, sig: &str| {
            let sigs = [Signature {
                keyid: id.clone(),
                sig: sig.to_string(),
            }];
            verify_signatures(Role::Targets, body, &sigs, &rk, &keys)
        };
        assert_eq!(check(signed, &sig).unwrap().len(), 1, "{}", key.scheme);
        let mut flipped = hex::decode(&sig).unwrap();
        flipped[10] ^= 1;
        assert!(
            check(signed, &hex::encode(flipped)).is_err(),
            "{}",
            key.scheme
        );
        let mut other = signed.clone();
        other["note"] = "cafe".into();
        assert!(check(&other, &sig).is_err(), "{}", key.scheme);
        schemes.push(key.scheme.clone());
    }
    assert_eq!(
        schemes,
        [
            "ecdsa-sha2-nistp256",
            "ecdsa-sha2-nistp384",
            "rsassa-pss-sha256",
            "rsassa-pss-sha384",
            "rsassa-pss-sha512",
            "rsa-pkcs1v15-sha256"
        ]
    );
}
