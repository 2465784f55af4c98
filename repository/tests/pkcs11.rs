//! Keys in a PKCS#11 token (SoftHSM2): ECDSA P-256, RSA-PSS and Ed25519 keys sign metadata
//! that flipside's verifier accepts; a repository whose every role is kept in the token is
//! made, renewed and read by the device's TUF client; token failures are typed errors.

mod common;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::collections::BTreeMap;

use chrono::{TimeDelta, Utc};
use common::Fixture;
use flipside_repository::signer::pkcs11::Algorithm;
use flipside_repository::signer::{KeySpec, Pkcs11Key, Pkcs11Uri};
use flipside_repository::{Error, InitSettings, Repository};
use flipside_tuf::client::{Client, FsTransport, Limits, MetadataStore};
use flipside_tuf::{Metadata, Role, RoleKeys, Root, Signer, Timestamp};
use softhsm::{exclusive, token, Kind, KEYS, MODULE, TOKEN};

fn open(label: &str) -> Pkcs11Key {
    Pkcs11Key::open(&Pkcs11Uri::parse(&token().uri(label)).unwrap()).unwrap()
}

#[test]
fn token_keys_sign_metadata_the_verifier_accepts() {
    let _token = exclusive();
    for (label, kind) in KEYS {
        let key = open(label);
        let (algorithm, keytype, scheme) = match kind {
            Kind::P256 => (Algorithm::EcdsaP256, "ecdsa", "ecdsa-sha2-nistp256"),
            Kind::Rsa => (Algorithm::RsaPssSha256, "rsa", "rsassa-pss-sha256"),
            Kind::Ed25519 => (Algorithm::Ed25519, "ed25519", "ed25519"),
        };
        assert_eq!(key.algorithm(), algorithm, "{label}");
        let public = key.public_key();
        assert_eq!(
            (public.keytype.as_str(), public.scheme.as_str()),
            (keytype, scheme)
        );
        assert_eq!(&public.key_id().unwrap(), key.key_id());

        // A root that lists the key for every role, and metadata the key signed.
        let roles = Role::ALL
            .into_iter()
            .map(|r| {
                let keys = RoleKeys {
                    keyids: vec![key.key_id().clone()],
                    threshold: 1,
                    extra: Default::default(),
                };
                (r, keys)
            })
            .collect();
        let expires = Utc::now() + TimeDelta::days(1);
        let keys = BTreeMap::from([(key.key_id().clone(), public.clone())]);
        let root = Root::new(1, expires, keys, roles);
        let snapshot = flipside_tuf::MetaFile::of_bytes(1, b"{}");
        let md = Metadata::sign_with(Timestamp::new(1, expires, snapshot), &[&key]).unwrap();
        flipside_tuf::verify::verify_role(&root, &md).unwrap();
        if kind == Kind::P256 {
            // DER, as securesystemslib writes ECDSA signatures.
            assert!(
                md.signatures[0].sig.starts_with("30"),
                "{}",
                md.signatures[0].sig
            );
        }
        // Tampered metadata does not verify.
        let mut raw = md.raw_signed().clone();
        raw["version"] = 2.into();
        let forged = Metadata::<Timestamp>::from_parts(raw, md.signatures.clone()).unwrap();
        assert!(flipside_tuf::verify::verify_role(&root, &forged).is_err());
    }
}

#[test]
fn a_repository_kept_in_the_token_is_published_renewed_and_read_by_the_client() {
    let _token = exclusive();
    let t = token();
    let f = Fixture::empty();
    for (role, label) in [
        (Role::Root, "root-ed25519"),
        (Role::Targets, "targets-rsa"),
        (Role::Snapshot, "snapshot-p256"),
        (Role::Timestamp, "timestamp-p256"),
    ] {
        let dir = f.keys.role_dir(role);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{label}.pkcs11")), t.uri(label)).unwrap();
    }
    let now = Utc::now();
    let published = Repository::create(&f.repo)
        .unwrap()
        .init(&f.keys, &InitSettings::default(), now)
        .unwrap();
    assert!(
        published.new_keys.is_empty(),
        "the token keys are used, none made"
    );
    let trusted = f.open().verify(now).unwrap();
    let root = &trusted.root().signed;
    assert_eq!(root.keys.len(), 4);
    assert!(root.keys.values().any(|k| k.keytype == "rsa"));

    let release = f.release(1, b"bundle", b"index");
    f.open().add(&f.keys, &release, now).unwrap();
    f.open()
        .resign(&f.keys, &[Role::Root, Role::Targets], now)
        .unwrap();

    // The device's client, from root 1, follows to root 2 and finds the release.
    let store_dir = f.tmp.path().join("device");
    let root1 = std::fs::read(f.repo.join("metadata/1.root.json")).unwrap();
    let store = MetadataStore::init(&store_dir, &root1).unwrap();
    let mut client = Client::new(store, FsTransport::new(&f.repo), Limits::default());
    let refreshed = client.refresh(now).unwrap();
    assert_eq!(refreshed.versions.root, 2);
    assert!(client.target("kiosk-1.bundle").unwrap().is_some());
    assert_eq!(
        client.fetch_target_bytes("kiosk-1.bundle").unwrap(),
        b"bundle"
    );
}

#[test]
fn token_failures_are_typed_and_say_what_to_check() {
    let _token = exclusive();
    let t = token();
    let uri = |label: &str, query: &str| {
        Pkcs11Uri::parse(&format!(
            "pkcs11:token={TOKEN};object={label}?module-path={MODULE}&{query}"
        ))
        .unwrap()
    };
    let pin = format!("pin-source={}", t.pin_file.display());
    let err = Pkcs11Key::open(&uri("no-such-key", &pin)).unwrap_err();
    assert!(matches!(err, Error::Pkcs11Key { .. }), "{err}");
    assert!(err.to_string().contains("no private key"), "{err}");

    let wrong = f_pin("0000");
    let err = Pkcs11Key::open(&uri(
        "spare-p256",
        &format!("pin-source={}", wrong.1.display()),
    ))
    .unwrap_err();
    assert!(
        matches!(err, Error::Pkcs11 { what, .. } if what.contains("PIN")),
        "{err}"
    );

    let err = Pkcs11Key::open(&uri("spare-p256", "pin-env=FLIPSIDE_TEST_UNSET_PIN")).unwrap_err();
    assert!(matches!(err, Error::Pkcs11Pin { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("FLIPSIDE_TEST_UNSET_PIN is not set"),
        "{err}"
    );

    let err = Pkcs11Key::open(
        &Pkcs11Uri::parse(&format!(
            "pkcs11:token=other;object=k?module-path={MODULE}&{pin}"
        ))
        .unwrap(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no token labelled \"other\""),
        "{err}"
    );

    let err = Pkcs11Key::open(
        &Pkcs11Uri::parse("pkcs11:token=t;object=k?module-path=/nonexistent/module.so").unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Pkcs11 {
                what: "loading the module",
                ..
            }
        ),
        "{err}"
    );
    // The spec in a message never holds the PIN.
    assert!(!err.to_string().contains(softhsm::USER_PIN));

    // A key spec opens the same key as the URI.
    let spec = KeySpec::parse(&t.uri("spare-rsa")).unwrap();
    assert_eq!(spec.open().unwrap().key_id(), open("spare-rsa").key_id());
}

/// A PIN file holding `pin`.
fn f_pin(pin: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pin");
    std::fs::write(&path, pin).unwrap();
    (dir, path)
}
