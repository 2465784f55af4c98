//! Threshold signing across machines: prepared metadata, detached signatures, and the checks
//! that merge them (pure; the repository operations are in `Repository::prepare` and
//! `Repository::merge`).
//!
//! A *prepared* file is a standard TUF envelope, `{"signatures": [...], "signed": {...}}`,
//! usually with no signatures yet: any TUF tool can read what it would publish. A *detached
//! signature* names what it signs (role, version and the sha256 of the canonical `signed`
//! object) beside the signature itself, so one made for another prepared file is refused
//! with a clear error rather than counted as a bad signature:
//!
//! ```json
//! {"role": "root", "version": 3, "signed_sha256": "…", "keyid": "…", "sig": "…"}
//! ```
//!
//! Merging checks every signature against the keys the authorising root(s) list for the
//! role: the current root for targets, snapshot and timestamp; both the current and the new
//! root for root (specification 5.3.4: a new root must be signed by a threshold of the old
//! root's keys and of its own).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flipside_tuf::{
    canonical, KeyId, Metadata, Role, RoleMetadata, Root, Signature, Signer, Snapshot, Targets,
    Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Error;

/// Prepared metadata of one role, as read from its file.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub role: Role,
    pub version: u64,
    pub expires: DateTime<Utc>,
    /// Signatures already in the envelope.
    pub signatures: Vec<Signature>,
    raw_signed: Value,
    message: Vec<u8>,
}

/// A signature made away from the repository, with what it signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedSignature {
    pub role: Role,
    pub version: u64,
    pub signed_sha256: String,
    pub keyid: KeyId,
    pub sig: String,
}

/// A root whose keys may sign the role: the current root, or the new one of a rotation.
#[derive(Debug, Clone, Copy)]
pub struct Authority<'a> {
    /// "the current root", "the new root": for messages.
    pub name: &'static str,
    pub root: &'a Root,
}

impl Prepared {
    /// Parses a prepared file: a TUF envelope of any top-level role, validated as that role.
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self, Error> {
        let bad = |why: String| Error::Prepared {
            path: path.to_path_buf(),
            why,
        };
        let envelope: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
        let raw_signed = envelope
            .get("signed")
            .cloned()
            .ok_or_else(|| bad("no `signed` object".to_string()))?;
        let signatures: Vec<Signature> = match envelope.get("signatures") {
            Some(s) => serde_json::from_value(s.clone())
                .map_err(|e| bad(format!("malformed `signatures` ({e})")))?,
            None => Vec::new(),
        };
        let role: Role = raw_signed
            .get("_type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("`signed` has no `_type`".to_string()))?
            .parse()
            .map_err(|e: flipside_tuf::Error| bad(e.to_string()))?;
        let tuf = |e: flipside_tuf::Error| bad(e.to_string());
        let (version, expires) = match role {
            Role::Root => common(&parts::<Root>(&raw_signed, &signatures).map_err(tuf)?),
            Role::Targets => common(&parts::<Targets>(&raw_signed, &signatures).map_err(tuf)?),
            Role::Snapshot => common(&parts::<Snapshot>(&raw_signed, &signatures).map_err(tuf)?),
            Role::Timestamp => common(&parts::<Timestamp>(&raw_signed, &signatures).map_err(tuf)?),
        };
        let message = canonical::to_vec(&raw_signed, "prepared metadata").map_err(tuf)?;
        Ok(Prepared {
            role,
            version,
            expires,
            signatures,
            raw_signed,
            message,
        })
    }

    /// The canonical bytes every signature covers.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Lowercase hex sha256 of [`Prepared::message`]: what a detached signature names.
    pub fn signed_sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.message))
    }

    /// The typed metadata with `signatures`.
    pub fn metadata<T: RoleMetadata>(
        &self,
        signatures: Vec<Signature>,
    ) -> Result<Metadata<T>, flipside_tuf::Error> {
        parts(&self.raw_signed, &signatures)
    }

    /// What a signer should read before signing, one fact per line: role, version, expiry,
    /// and for root every role's keys and threshold.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![
            format!("role: {}", self.role),
            format!("version: {}", self.version),
            format!("expires: {}", self.expires.to_rfc3339()),
            format!("signed sha256: {}", self.signed_sha256()),
        ];
        let root = match self.role {
            Role::Root => self.metadata::<Root>(Vec::new()).ok(),
            _ => None,
        };
        if let Some(root) = root {
            for role in Role::ALL {
                if let Ok(keys) = root.signed.role_keys(role) {
                    let ids: Vec<&str> = keys.keyids.iter().map(KeyId::as_str).collect();
                    lines.push(format!(
                        "{role} keys (threshold {}): {}",
                        keys.threshold,
                        ids.join(", ")
                    ));
                }
            }
        }
        lines
    }

    /// Signs with `signer` on the signer's machine; refuses metadata already expired at
    /// `now` (it could never be published).
    pub fn sign(
        &self,
        signer: &dyn Signer,
        now: DateTime<Utc>,
    ) -> Result<DetachedSignature, Error> {
        if self.expires <= now {
            return Err(Error::PreparedExpired {
                role: self.role,
                expires: self.expires,
                now,
            });
        }
        let signature = signer.sign(&self.message).map_err(|source| Error::Sign {
            role: self.role,
            source,
        })?;
        Ok(DetachedSignature {
            role: self.role,
            version: self.version,
            signed_sha256: self.signed_sha256(),
            keyid: signature.keyid,
            sig: signature.sig,
        })
    }

    /// Checks the envelope's signatures and `detached` (each with the file it came from) for
    /// merging: every one names this metadata, comes from a key an authority lists for the
    /// role, is valid, and no key signs twice; then each authority's threshold must be met.
    /// Returns the signatures to publish, sorted by key id.
    pub fn check(
        &self,
        detached: &[(PathBuf, DetachedSignature)],
        authorities: &[Authority<'_>],
    ) -> Result<Vec<Signature>, Error> {
        let inline = self.signatures.iter().map(|s| (None, s.clone()));
        let mut all: Vec<(Option<&Path>, Signature)> = inline.collect();
        for (path, d) in detached {
            if d.role != self.role
                || d.version != self.version
                || d.signed_sha256 != self.signed_sha256()
            {
                return Err(Error::SignatureMismatch {
                    path: path.clone(),
                    why: format!(
                        "it signs {} version {} ({}), the prepared file is {} version {} ({})",
                        d.role,
                        d.version,
                        d.signed_sha256,
                        self.role,
                        self.version,
                        self.signed_sha256()
                    ),
                });
            }
            let signature = Signature {
                keyid: d.keyid.clone(),
                sig: d.sig.clone(),
            };
            all.push((Some(path.as_path()), signature));
        }
        let mut seen = BTreeSet::new();
        for (path, signature) in &all {
            let place =
                || path.map_or_else(|| PathBuf::from("(the prepared file)"), Path::to_path_buf);
            if !seen.insert(signature.keyid.clone()) {
                return Err(Error::DuplicateSignature {
                    path: place(),
                    key_id: signature.keyid.clone(),
                });
            }
            let key = authorities.iter().find_map(|a| {
                let listed = a
                    .root
                    .role_keys(self.role)
                    .is_ok_and(|k| k.keyids.contains(&signature.keyid));
                listed.then(|| a.root.keys.get(&signature.keyid)).flatten()
            });
            let Some(key) = key else {
                return Err(Error::UnknownSigningKey {
                    path: place(),
                    role: self.role,
                    key_id: signature.keyid.clone(),
                });
            };
            let valid = key.verifier().is_some_and(|v| {
                !signature.sig.bytes().any(|b| b.is_ascii_uppercase())
                    && hex::decode(&signature.sig).is_ok_and(|sig| v.verify(&self.message, &sig))
            });
            if !valid {
                return Err(Error::BadSignature {
                    path: place(),
                    role: self.role,
                    key_id: signature.keyid.clone(),
                });
            }
        }
        for authority in authorities {
            let keys = authority
                .root
                .role_keys(self.role)
                .map_err(|source| Error::Produce {
                    role: self.role,
                    source,
                })?;
            let valid = keys.keyids.iter().filter(|id| seen.contains(*id)).count();
            if (valid as u64) < keys.threshold {
                let missing: Vec<String> = keys
                    .keyids
                    .iter()
                    .filter(|id| !seen.contains(*id))
                    .map(ToString::to_string)
                    .collect();
                return Err(Error::ThresholdNotMet {
                    role: self.role,
                    authority: authority.name,
                    valid,
                    threshold: keys.threshold,
                    missing,
                });
            }
        }
        let mut signatures: Vec<Signature> = all.into_iter().map(|(_, s)| s).collect();
        signatures.sort_by(|a, b| a.keyid.cmp(&b.keyid));
        Ok(signatures)
    }
}

impl DetachedSignature {
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::SignatureMismatch {
            path: path.to_path_buf(),
            why: format!(
                "it is not a detached signature of `flipside-build repo sign-detached` ({e})"
            ),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("strings and numbers serialize");
        bytes.push(b'\n');
        bytes
    }
}

fn parts<T: RoleMetadata>(
    raw: &Value,
    signatures: &[Signature],
) -> Result<Metadata<T>, flipside_tuf::Error> {
    Metadata::from_parts(raw.clone(), signatures.to_vec())
}

fn common<T: RoleMetadata>(md: &Metadata<T>) -> (u64, DateTime<Utc>) {
    (md.signed.version(), md.signed.expires())
}
