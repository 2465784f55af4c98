//! The four top-level roles' metadata as serde types, and the signed envelope around them.
//!
//! Unknown fields are kept (`extra`) so that metadata this version only passes along keeps its
//! content; `delegations` is kept as raw JSON. [`Metadata`] also keeps the `signed` object as
//! received, which is what signatures are checked over.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::keys::{KeyId, PublicKey};
use crate::{Error, Result};

/// The specification version written into new metadata (python-tuf 7 writes the same).
pub const SPEC_VERSION: &str = "1.0.31";

/// Unknown fields of an object, kept as received.
pub type Extra = BTreeMap<String, Value>;

/// A top-level role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl Role {
    /// All top-level roles, root first.
    pub const ALL: [Role; 4] = [Role::Root, Role::Targets, Role::Snapshot, Role::Timestamp];

    /// The role's name, as in `_type`, in root's `roles` and in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Targets => "targets",
            Role::Snapshot => "snapshot",
            Role::Timestamp => "timestamp",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::UnknownRole {
                name: s.to_string(),
            })
    }
}

/// One signature in the envelope: the key id and the hex signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: KeyId,
    pub sig: String,
}

/// What the four role types have in common.
pub trait RoleMetadata: Serialize + DeserializeOwned {
    /// The role this type describes.
    const ROLE: Role;
    /// The `_type` field as parsed.
    fn kind(&self) -> Role;
    fn spec_version(&self) -> &str;
    fn version(&self) -> u64;
    fn expires(&self) -> DateTime<Utc>;

    /// Rules of the specification beyond the JSON shape. Overridden roles call
    /// [`check_common`] first.
    fn validate(&self) -> Result<()> {
        check_common(self)
    }
}

/// Whether `spec_version` names specification 1: `1.x.y`, or `1.x` as real repositories
/// write it (sigstore's root), each part decimal digits (python-tuf's rule).
pub fn spec_version_supported(spec_version: &str) -> bool {
    let parts: Vec<&str> = spec_version.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts[0] == "1"
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The rules every role shares: `_type`, a 1.x `spec_version`, a version of at least 1.
pub fn check_common<T: RoleMetadata>(md: &T) -> Result<()> {
    let role = T::ROLE;
    if md.kind() != role {
        return Err(Error::WrongType {
            expected: role,
            found: md.kind().to_string(),
        });
    }
    if !spec_version_supported(md.spec_version()) {
        return Err(Error::Invalid {
            role,
            why: format!(
                "spec_version {:?} is not 1.x.y or 1.x; this implementation follows specification 1",
                md.spec_version()
            ),
        });
    }
    if md.version() == 0 {
        return Err(Error::Invalid {
            role,
            why: "version is 0; versions start at 1".to_string(),
        });
    }
    Ok(())
}

macro_rules! role_metadata {
    ($ty:ty, $role:expr) => {
        impl RoleMetadata for $ty {
            const ROLE: Role = $role;
            fn kind(&self) -> Role {
                self.kind
            }
            fn spec_version(&self) -> &str {
                &self.spec_version
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> DateTime<Utc> {
                self.expires
            }
            fn validate(&self) -> Result<()> {
                check_common(self)?;
                self.check_role()
            }
        }
    };
}

/// The keys and threshold of one role, as listed in root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<KeyId>,
    pub threshold: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Root metadata: the keys of every top-level role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    #[serde(rename = "_type")]
    pub kind: Role,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "crate::expiry::format")]
    pub expires: DateTime<Utc>,
    /// Absent means false, as python-tuf reads it; flipside always writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_snapshot: Option<bool>,
    pub keys: BTreeMap<KeyId, PublicKey>,
    pub roles: BTreeMap<String, RoleKeys>,
    #[serde(flatten)]
    pub extra: Extra,
}
role_metadata!(Root, Role::Root);

impl Root {
    /// A root with consistent snapshots on.
    pub fn new(
        version: u64,
        expires: DateTime<Utc>,
        keys: BTreeMap<KeyId, PublicKey>,
        roles: BTreeMap<Role, RoleKeys>,
    ) -> Self {
        Root {
            kind: Role::Root,
            spec_version: SPEC_VERSION.to_string(),
            version,
            expires,
            consistent_snapshot: Some(true),
            keys,
            roles: roles
                .into_iter()
                .map(|(r, k)| (r.as_str().to_string(), k))
                .collect(),
            extra: Extra::new(),
        }
    }

    /// The keys and threshold of a top-level role.
    pub fn role_keys(&self, role: Role) -> Result<&RoleKeys> {
        self.roles.get(role.as_str()).ok_or_else(|| Error::Invalid {
            role: Role::Root,
            why: format!("it lists no keys for the {role} role"),
        })
    }

    /// Whether clients fetch `{version}.{role}.json` and hash-prefixed targets. A root
    /// without the field has them off, as python-tuf reads it.
    pub fn consistent_snapshot(&self) -> bool {
        self.consistent_snapshot.unwrap_or(false)
    }

    fn check_role(&self) -> Result<()> {
        for role in Role::ALL {
            if self.role_keys(role)?.threshold == 0 {
                return Err(Error::ZeroThreshold { role });
            }
        }
        if let Some(name) = self.roles.keys().find(|n| n.parse::<Role>().is_err()) {
            return Err(Error::Invalid {
                role: Role::Root,
                why: format!("it lists keys for {name:?}, which is not a top-level role"),
            });
        }
        Ok(())
    }
}

/// Targets metadata: the files clients may download, with their lengths and hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub kind: Role,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "crate::expiry::format")]
    pub expires: DateTime<Utc>,
    pub targets: BTreeMap<String, TargetFile>,
    /// Roles this role delegates targets to (flipside publishes none; clients follow them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
    #[serde(flatten)]
    pub extra: Extra,
}
role_metadata!(Targets, Role::Targets);

impl Targets {
    /// An empty targets role.
    pub fn new(version: u64, expires: DateTime<Utc>) -> Self {
        Targets {
            kind: Role::Targets,
            spec_version: SPEC_VERSION.to_string(),
            version,
            expires,
            targets: BTreeMap::new(),
            delegations: None,
            extra: Extra::new(),
        }
    }

    fn check_role(&self) -> Result<()> {
        match &self.delegations {
            Some(d) => d.check(),
            None => Ok(()),
        }
    }
}

/// The `delegations` object of targets metadata: keys, and either the delegated roles in the
/// order the client searches them or hashed bins named by `succinct_roles` (TAP 15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DelegationsWire", into = "DelegationsWire")]
pub struct Delegations {
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// Empty when `succinct_roles` is used.
    pub roles: Vec<DelegatedRole>,
    pub succinct_roles: Option<SuccinctRoles>,
    pub extra: Extra,
}

/// `delegations` as written: exactly one of `roles` and `succinct_roles` (python-tuf's rule).
#[derive(Serialize, Deserialize)]
struct DelegationsWire {
    keys: BTreeMap<KeyId, PublicKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<DelegatedRole>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    succinct_roles: Option<SuccinctRoles>,
    #[serde(flatten)]
    extra: Extra,
}

impl TryFrom<DelegationsWire> for Delegations {
    type Error = String;

    fn try_from(wire: DelegationsWire) -> std::result::Result<Self, String> {
        let roles = match (wire.roles, &wire.succinct_roles) {
            (Some(roles), None) => roles,
            (None, Some(_)) => Vec::new(),
            _ => {
                return Err("delegations must have exactly one of roles and succinct_roles".into())
            }
        };
        Ok(Delegations {
            keys: wire.keys,
            roles,
            succinct_roles: wire.succinct_roles,
            extra: wire.extra,
        })
    }
}

impl From<Delegations> for DelegationsWire {
    fn from(d: Delegations) -> Self {
        let roles = (d.succinct_roles.is_none() || !d.roles.is_empty()).then_some(d.roles);
        DelegationsWire {
            keys: d.keys,
            roles,
            succinct_roles: d.succinct_roles,
            extra: d.extra,
        }
    }
}

/// Hashed bins delegated without listing each (TAP 15): `2^bit_length` roles named
/// `{name_prefix}-{bin in hex}`, all with the same keys and threshold; a target belongs to
/// the bin given by the leading `bit_length` bits of the sha256 of its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccinctRoles {
    pub keyids: Vec<KeyId>,
    pub threshold: u64,
    pub bit_length: u32,
    pub name_prefix: String,
    #[serde(flatten)]
    pub extra: Extra,
}

impl SuccinctRoles {
    /// The bin role trusted for target `name`, as python-tuf names it: the hex bin number
    /// zero-padded to the width of the largest bin. A bin is terminating (5.6.7.2.2), as in
    /// python-tuf: no other role is searched after it.
    pub fn role_for_target(&self, name: &str) -> DelegatedRole {
        let digest = Sha256::digest(name.as_bytes());
        let leading = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let bin = u64::from(leading) >> (32 - self.bit_length);
        let width = format!("{:x}", (1u64 << self.bit_length) - 1).len();
        DelegatedRole {
            name: format!("{}-{bin:0width$x}", self.name_prefix),
            keyids: self.keyids.clone(),
            threshold: self.threshold,
            terminating: true,
            paths: None,
            path_hash_prefixes: None,
            extra: Extra::new(),
        }
    }
}

impl Delegations {
    /// Unique role names that are not top-level role names, thresholds of at least 1, and
    /// exactly one of `paths` and `path_hash_prefixes` per role (as python-tuf requires); for
    /// succinct roles a `bit_length` of 1 to 32 and a threshold of at least 1.
    fn check(&self) -> Result<()> {
        let bad = |why: String| {
            Err(Error::Invalid {
                role: Role::Targets,
                why,
            })
        };
        if let Some(succinct) = &self.succinct_roles {
            if !(1..=32).contains(&succinct.bit_length) {
                return bad(format!(
                    "succinct_roles has bit_length {}, not between 1 and 32",
                    succinct.bit_length
                ));
            }
            if succinct.threshold == 0 {
                return bad("succinct_roles has threshold 0".to_string());
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for role in &self.roles {
            if !names.insert(role.name.as_str()) {
                return bad(format!("delegated role {:?} is listed twice", role.name));
            }
            if role.name.is_empty() || role.name.parse::<Role>().is_ok() {
                return bad(format!(
                    "delegated role name {:?} is empty or a top-level role name",
                    role.name
                ));
            }
            if role.threshold == 0 {
                return bad(format!("delegated role {:?} has threshold 0", role.name));
            }
            if role.paths.is_some() == role.path_hash_prefixes.is_some() {
                return bad(format!(
                    "delegated role {:?} must have exactly one of paths and path_hash_prefixes",
                    role.name
                ));
            }
        }
        Ok(())
    }
}

/// One delegated role: its keys and threshold, the target paths it is trusted for, and
/// whether the search stops at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<KeyId>,
    pub threshold: u64,
    #[serde(default)]
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl DelegatedRole {
    /// The keys and threshold, in the shape signature verification takes.
    pub fn role_keys(&self) -> RoleKeys {
        RoleKeys {
            keyids: self.keyids.clone(),
            threshold: self.threshold,
            extra: Extra::new(),
        }
    }

    /// Whether this role is trusted for target `name` (see [`crate::delegation`]).
    pub fn is_delegated_path(&self, name: &str) -> bool {
        if let Some(patterns) = &self.paths {
            return patterns
                .iter()
                .any(|p| crate::delegation::path_matches(p, name));
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            return crate::delegation::hash_prefix_matches(prefixes, name);
        }
        false
    }
}

/// One target: its length, hashes and free-form custom fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl TargetFile {
    /// A target of `length` bytes with the given lowercase hex sha256.
    pub fn new(length: u64, sha256_hex: &str, custom: Option<Value>) -> Self {
        TargetFile {
            length,
            hashes: BTreeMap::from([("sha256".to_string(), sha256_hex.to_string())]),
            custom,
            extra: Extra::new(),
        }
    }

    /// The signed sha256, required: a target without one is refused (`what` names it).
    pub fn sha256(&self, what: &str) -> Result<[u8; 32]> {
        let hex_digest = self
            .hashes
            .get("sha256")
            .ok_or_else(|| Error::MissingHash {
                what: what.to_string(),
            })?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut out).map_err(|_| Error::Invalid {
            role: Role::Targets,
            why: format!("{what} has sha256 {hex_digest:?}, which is not 64 hex digits"),
        })?;
        Ok(out)
    }

    /// The digest that names the target's file with consistent snapshots (`HASH.NAME`): the
    /// sha256 when listed, else the sha512, in lowercase hex (as the repository writes it).
    /// Refused when the target lists neither (it could not be checked either), or when the
    /// digest is not hex of its algorithm's length (it becomes part of a path).
    pub fn path_digest(&self, what: &str) -> Result<String> {
        for (algorithm, bytes) in [("sha256", 32), ("sha512", 64)] {
            let Some(digest) = self.hashes.get(algorithm) else {
                continue;
            };
            let valid = digest.len() == 2 * bytes && digest.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Err(Error::Invalid {
                    role: Role::Targets,
                    why: format!(
                        "{what} has {algorithm} {digest:?}, which is not {} hex digits",
                        2 * bytes
                    ),
                });
            }
            return Ok(digest.to_ascii_lowercase());
        }
        Err(Error::MissingHash {
            what: what.to_string(),
        })
    }

    /// Checks complete content against the signed length and every known hash.
    pub fn check_bytes(&self, what: &str, bytes: &[u8]) -> Result<()> {
        check_length(what, self.length, bytes.len() as u64)?;
        check_hashes(what, &self.hashes, bytes)
    }
}

/// Snapshot metadata: the version (and optionally length and hashes) of targets metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    pub kind: Role,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "crate::expiry::format")]
    pub expires: DateTime<Utc>,
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub extra: Extra,
}
role_metadata!(Snapshot, Role::Snapshot);

impl Snapshot {
    /// A snapshot naming one `targets.json`.
    pub fn new(version: u64, expires: DateTime<Utc>, targets: MetaFile) -> Self {
        Snapshot {
            kind: Role::Snapshot,
            spec_version: SPEC_VERSION.to_string(),
            version,
            expires,
            meta: BTreeMap::from([("targets.json".to_string(), targets)]),
            extra: Extra::new(),
        }
    }

    /// The entry of the top-level targets metadata.
    pub fn targets_meta(&self) -> Result<&MetaFile> {
        self.meta.get("targets.json").ok_or_else(|| Error::Invalid {
            role: Role::Snapshot,
            why: "it has no entry for targets.json".to_string(),
        })
    }

    fn check_role(&self) -> Result<()> {
        self.targets_meta().map(|_| ())
    }
}

/// Timestamp metadata: the version (and optionally length and hashes) of snapshot metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(rename = "_type")]
    pub kind: Role,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "crate::expiry::format")]
    pub expires: DateTime<Utc>,
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub extra: Extra,
}
role_metadata!(Timestamp, Role::Timestamp);

impl Timestamp {
    /// A timestamp naming one `snapshot.json`.
    pub fn new(version: u64, expires: DateTime<Utc>, snapshot: MetaFile) -> Self {
        Timestamp {
            kind: Role::Timestamp,
            spec_version: SPEC_VERSION.to_string(),
            version,
            expires,
            meta: BTreeMap::from([("snapshot.json".to_string(), snapshot)]),
            extra: Extra::new(),
        }
    }

    /// The entry of the snapshot metadata.
    pub fn snapshot_meta(&self) -> Result<&MetaFile> {
        self.meta
            .get("snapshot.json")
            .ok_or_else(|| Error::Invalid {
                role: Role::Timestamp,
                why: "it has no entry for snapshot.json".to_string(),
            })
    }

    fn check_role(&self) -> Result<()> {
        if self.meta.len() != 1 {
            return Err(Error::Invalid {
                role: Role::Timestamp,
                why: "its meta must list exactly snapshot.json".to_string(),
            });
        }
        self.snapshot_meta().map(|_| ())
    }
}

/// A metadata file named in snapshot or timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl MetaFile {
    /// An entry with the version, length and sha256 of the exact bytes of the file.
    pub fn of_bytes(version: u64, bytes: &[u8]) -> Self {
        MetaFile {
            version,
            length: Some(bytes.len() as u64),
            hashes: Some(BTreeMap::from([(
                "sha256".to_string(),
                hex::encode(Sha256::digest(bytes)),
            )])),
            extra: Extra::new(),
        }
    }

    /// Checks the file's bytes against the length and hashes, where they are given.
    pub fn check_bytes(&self, what: &str, bytes: &[u8]) -> Result<()> {
        if let Some(length) = self.length {
            check_length(what, length, bytes.len() as u64)?;
        }
        match &self.hashes {
            Some(hashes) => check_hashes(what, hashes, bytes),
            None => Ok(()),
        }
    }
}

fn check_length(what: &str, expected: u64, found: u64) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what: what.to_string(),
            expected,
            found,
        })
    }
}

/// Checks every sha256 and sha512 in `hashes`; unknown algorithms are skipped, but at least
/// one known algorithm must be present.
pub fn check_hashes(what: &str, hashes: &BTreeMap<String, String>, bytes: &[u8]) -> Result<()> {
    let mut checked = 0;
    for (algorithm, expected) in hashes {
        let found = match algorithm.as_str() {
            "sha256" => hex::encode(Sha256::digest(bytes)),
            "sha512" => hex::encode(Sha512::digest(bytes)),
            _ => continue,
        };
        if !found.eq_ignore_ascii_case(expected) {
            return Err(Error::HashMismatch {
                what: what.to_string(),
                algorithm: algorithm.clone(),
                expected: expected.clone(),
                found,
            });
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(Error::MissingHash {
            what: what.to_string(),
        });
    }
    Ok(())
}

/// Signed metadata of one role: the typed content, its signatures, and the `signed` object
/// exactly as received (or as produced when signing), which is what signatures cover.
///
/// Parsing does not verify; see [`crate::verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata<T> {
    pub signed: T,
    pub signatures: Vec<Signature>,
    raw_signed: Value,
}

#[derive(Deserialize)]
struct Envelope {
    signatures: Vec<Signature>,
    signed: Value,
}

impl<T: RoleMetadata> Metadata<T> {
    /// Parses and validates the envelope and the role's content (no signature check).
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let what = || format!("{} metadata", T::ROLE);
        let envelope: Envelope = serde_json::from_slice(bytes).map_err(|source| Error::Parse {
            what: what(),
            source,
        })?;
        Self::from_parts(envelope.signed, envelope.signatures)
    }

    /// Builds metadata from a raw `signed` object and its signatures (no signature check).
    pub fn from_parts(raw_signed: Value, signatures: Vec<Signature>) -> Result<Self> {
        // Check `_type` first so that a substituted role gets the clearer error.
        match raw_signed.get("_type").and_then(Value::as_str) {
            Some(t) if t == T::ROLE.as_str() => {}
            found => {
                return Err(Error::WrongType {
                    expected: T::ROLE,
                    found: found.unwrap_or("(missing)").to_string(),
                })
            }
        }
        let signed: T =
            serde_json::from_value(raw_signed.clone()).map_err(|source| Error::Parse {
                what: format!("{} metadata", T::ROLE),
                source,
            })?;
        signed.validate()?;
        crate::verify::check_unique_keyids(T::ROLE, &signatures)?;
        Ok(Metadata {
            signed,
            signatures,
            raw_signed,
        })
    }

    /// The `signed` object as received: what the signatures cover.
    pub fn raw_signed(&self) -> &Value {
        &self.raw_signed
    }

    /// The file content: `{"signatures": [...], "signed": {...}}`, indented for people.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let envelope = serde_json::json!({
            "signatures": self.signatures,
            "signed": self.raw_signed,
        });
        let mut bytes =
            serde_json::to_vec_pretty(&envelope).map_err(|source| Error::Canonical {
                what: format!("{} metadata", T::ROLE),
                source,
            })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    pub(crate) fn assemble(signed: T, raw_signed: Value, signatures: Vec<Signature>) -> Self {
        Metadata {
            signed,
            signatures,
            raw_signed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY: &str = "tests/data/python-tuf";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/{PY}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn python_tuf_metadata_parses() {
        let root = Metadata::<Root>::from_slice(&fixture("1.root.json")).unwrap();
        assert_eq!(root.signed.version, 1);
        assert_eq!(root.signed.role_keys(Role::Root).unwrap().threshold, 2);
        assert!(root.signed.consistent_snapshot());
        let mut without = root.signed.clone();
        without.consistent_snapshot = None;
        assert!(!without.consistent_snapshot(), "absent means false");
        let targets = Metadata::<Targets>::from_slice(&fixture("1.targets.json")).unwrap();
        let target = &targets.signed.targets["kiosk-1.bundle"];
        target
            .check_bytes("kiosk-1.bundle", &fixture("kiosk-1.bundle"))
            .unwrap();
        assert!(targets.signed.extra.contains_key("x-flipside-extra"));
        let snapshot = Metadata::<Snapshot>::from_slice(&fixture("1.snapshot.json")).unwrap();
        snapshot
            .signed
            .targets_meta()
            .unwrap()
            .check_bytes("targets", &fixture("1.targets.json"))
            .unwrap();
        let timestamp = Metadata::<Timestamp>::from_slice(&fixture("timestamp.json")).unwrap();
        assert_eq!(timestamp.signed.snapshot_meta().unwrap().version, 1);
    }

    #[test]
    fn typed_round_trip_keeps_unknown_fields() {
        let targets = Metadata::<Targets>::from_slice(&fixture("1.targets.json")).unwrap();
        let again = serde_json::to_value(&targets.signed).unwrap();
        assert_eq!(&again, targets.raw_signed());
    }

    #[test]
    fn substituted_role_is_refused_by_type() {
        let err = Metadata::<Root>::from_slice(&fixture("timestamp.json")).unwrap_err();
        assert!(
            matches!(err, Error::WrongType { expected: Role::Root, ref found } if found == "timestamp"),
            "{err}"
        );
    }

    #[test]
    fn spec_versions_of_specification_1_with_two_or_three_parts() {
        for good in ["1.0.0", "1.0", "1.0.31", "1.2"] {
            assert!(spec_version_supported(good), "{good}");
        }
        for bad in [
            "1", "2.0", "2.0.0", "1.0.0.0", "1.x", "1..0", "1.0-rc", " 1.0", "", "1.+1",
        ] {
            assert!(!spec_version_supported(bad), "{bad}");
        }
    }

    #[test]
    fn rule_breaking_content_is_refused() {
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut v: Value = serde_json::from_slice(&fixture("1.root.json")).unwrap();
            f(&mut v["signed"]);
            Metadata::<Root>::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap_err()
        };
        let err = edit(&|s| s["version"] = 0.into());
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        let err = edit(&|s| s["spec_version"] = "2.0.0".into());
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        let err = edit(&|s| s["roles"]["snapshot"]["threshold"] = 0.into());
        assert!(
            matches!(
                err,
                Error::ZeroThreshold {
                    role: Role::Snapshot
                }
            ),
            "{err}"
        );
        let err = edit(&|s| {
            s["roles"].as_object_mut().unwrap().remove("timestamp");
        });
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        let err = edit(&|s| {
            s.as_object_mut().unwrap().remove("version");
        });
        assert!(matches!(err, Error::Parse { .. }), "{err}");
        let err = edit(&|s| s["version"] = (-1).into());
        assert!(matches!(err, Error::Parse { .. }), "{err}");
    }

    #[test]
    fn hashes_and_lengths() {
        let target = TargetFile::new(3, &hex::encode(Sha256::digest(b"abc")), None);
        target.check_bytes("t", b"abc").unwrap();
        assert!(matches!(
            target.check_bytes("t", b"abd"),
            Err(Error::HashMismatch { .. })
        ));
        assert!(matches!(
            target.check_bytes("t", b"abcd"),
            Err(Error::LengthMismatch { .. })
        ));
        let unknown_only = TargetFile {
            hashes: BTreeMap::from([("md5".to_string(), "00".to_string())]),
            ..target.clone()
        };
        assert!(matches!(
            unknown_only.check_bytes("t", b"abc"),
            Err(Error::MissingHash { .. })
        ));
        assert!(matches!(
            unknown_only.sha256("t"),
            Err(Error::MissingHash { .. })
        ));
        assert!(matches!(
            unknown_only.path_digest("t"),
            Err(Error::MissingHash { .. })
        ));
        let sha512 = hex::encode(Sha512::digest(b"abc"));
        let only512 = TargetFile {
            hashes: BTreeMap::from([("sha512".to_string(), sha512.clone())]),
            ..target.clone()
        };
        assert_eq!(only512.path_digest("t").unwrap(), sha512);
        only512.check_bytes("t", b"abc").unwrap();
        let mut both = only512.clone();
        both.hashes
            .insert("sha256".to_string(), hex::encode(Sha256::digest(b"abc")));
        assert_eq!(both.path_digest("t").unwrap(), both.hashes["sha256"]);
        let upper = TargetFile {
            hashes: BTreeMap::from([("sha512".to_string(), sha512.to_uppercase())]),
            ..target.clone()
        };
        assert_eq!(upper.path_digest("t").unwrap(), sha512);
        let short = TargetFile {
            hashes: BTreeMap::from([("sha512".to_string(), "abc/".to_string())]),
            ..target.clone()
        };
        assert!(matches!(short.path_digest("t"), Err(Error::Invalid { .. })));
        let meta = MetaFile::of_bytes(4, b"xyz");
        meta.check_bytes("m", b"xyz").unwrap();
        assert!(meta.check_bytes("m", b"xyZ").is_err());
        let version_only = MetaFile {
            version: 4,
            length: None,
            hashes: None,
            extra: Extra::new(),
        };
        version_only.check_bytes("m", b"anything").unwrap();
    }

    #[test]
    fn role_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!(matches!(
            "delegated".parse::<Role>(),
            Err(Error::UnknownRole { .. })
        ));
    }
}
