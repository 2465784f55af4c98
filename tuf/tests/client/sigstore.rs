//! A real-world repository: sigstore's root-signing metadata (ECDSA P-256 keys in PEM, and
//! as hex SEC1 points in roots 1-4, `spec_version` "1.0", empty signatures of keyholders who did not sign, tuf-on-ci custom
//! fields), kept in `tests/data/sigstore/` (see its PROVENANCE.md). The device starts from
//! the first published root, follows the chain to root 15, and refreshes and downloads as a
//! sigstore client does.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use flipside_tuf::client::{FsTransport, Limits};

use crate::helpers::{sha256_hex, Device};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigstore/repo")
}

/// A day after the snapshot of the fixture was taken: the timestamp is valid a week.
fn now() -> DateTime<Utc> {
    "2026-08-22T00:00:00Z".parse().unwrap()
}

#[test]
fn sigstore_root_chain_refresh_and_download() {
    let first_root = std::fs::read(repo().join("metadata/1.root.json")).unwrap();
    let device = Device::new(&first_root);
    let mut client = device.client_with(FsTransport::new(repo()), Limits::default());
    let refreshed = client.refresh(now()).unwrap();
    assert_eq!(refreshed.new_roots, 14);
    let v = refreshed.versions;
    assert_eq!(
        (v.root, v.timestamp, v.snapshot, v.targets),
        (15, 762, 165, 14)
    );
    let mut out = Vec::new();
    client
        .download_target("trusted_root.json", &mut out)
        .unwrap();
    assert_eq!(
        sha256_hex(&out),
        "6494e21ea73fa7ee769f85f57d5a3e6a08725eae1e38c755fc3517c9e6bc0b66"
    );
    // A target of the delegated role `registry.npmjs.org`: the role verifies with its key.
    let found = client.find_target("registry.npmjs.org/keys.json").unwrap();
    assert_eq!(found.map(|f| f.role).as_deref(), Some("registry.npmjs.org"));

    // A second refresh with nothing new, and expired metadata once the week has passed.
    let refreshed = client.refresh(now()).unwrap();
    assert!(!refreshed.changed);
    let late = "2026-08-29T00:00:00Z".parse().unwrap();
    let err = client.refresh(late).unwrap_err();
    assert!(
        matches!(err.tuf_error(), Some(flipside_tuf::Error::Expired { .. })),
        "{err}"
    );
}
