//! Signature verification (pure): a `signed` object as received, its signatures, and the
//! keys and threshold of its role in; the set of keys that signed, or an error, out.
//!
//! Rules (specification 1.0, sections 5.3-5.6 and "threshold"): a `signatures` array that
//! repeats a key id is refused as a whole ("the keyid MUST be unique"); two key ids naming the
//! same key material count once; a signature by a key the role does not list is ignored; key
//! types and schemes other than those [`PublicKey::verifier`] knows are ignored rather than
//! fatal; a threshold of 0 is refused. Signatures are checked over the canonical JSON of the
//! `signed` object as received, and must be lowercase hex.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::keys::{KeyId, PublicKey};
use crate::metadata::{Metadata, Role, RoleKeys, RoleMetadata, Root, Signature};
use crate::{canonical, Error, Result};

/// Verifies `signatures` over `raw_signed` for `role`; returns the key ids counted.
pub fn verify_signatures(
    role: Role,
    raw_signed: &Value,
    signatures: &[Signature],
    role_keys: &RoleKeys,
    keys: &BTreeMap<KeyId, PublicKey>,
) -> Result<BTreeSet<KeyId>> {
    if role_keys.threshold == 0 {
        return Err(Error::ZeroThreshold { role });
    }
    check_unique_keyids(role, signatures)?;
    let message = canonical::to_vec(raw_signed, &format!("{role} metadata"))?;
    let authorised: BTreeSet<&KeyId> = role_keys.keyids.iter().collect();
    let mut counted: BTreeSet<KeyId> = BTreeSet::new();
    let mut counted_material: BTreeSet<Vec<u8>> = BTreeSet::new();
    for signature in signatures {
        if !authorised.contains(&signature.keyid) || counted.contains(&signature.keyid) {
            continue;
        }
        let Some(key) = keys.get(&signature.keyid).and_then(PublicKey::verifier) else {
            continue;
        };
        // Only the lowercase hex securesystemslib writes: one signature, one spelling.
        if signature.sig.bytes().any(|b| b.is_ascii_uppercase()) {
            continue;
        }
        let Ok(sig) = hex::decode(&signature.sig) else {
            continue;
        };
        if key.verify(&message, &sig) && counted_material.insert(key.material()) {
            counted.insert(signature.keyid.clone());
        }
    }
    if (counted.len() as u64) < role_keys.threshold {
        return Err(Error::ThresholdNotMet {
            role,
            threshold: role_keys.threshold,
            valid: counted.len(),
        });
    }
    Ok(counted)
}

/// Refuses a `signatures` array that names one key id twice.
pub fn check_unique_keyids(role: Role, signatures: &[Signature]) -> Result<()> {
    let mut seen = BTreeSet::new();
    match signatures.iter().find(|s| !seen.insert(&s.keyid)) {
        Some(repeat) => Err(Error::DuplicateSignature {
            role,
            keyid: repeat.keyid.clone(),
        }),
        None => Ok(()),
    }
}

/// Verifies a raw JSON envelope (`{"signatures": [...], "signed": {...}}`) as received.
pub fn verify_envelope(
    role: Role,
    envelope: &Value,
    role_keys: &RoleKeys,
    keys: &BTreeMap<KeyId, PublicKey>,
) -> Result<BTreeSet<KeyId>> {
    let parse = |source| Error::Parse {
        what: format!("{role} metadata"),
        source,
    };
    let signed = envelope
        .get("signed")
        .ok_or_else(|| parse(serde::de::Error::missing_field("signed")))?;
    let signatures = envelope
        .get("signatures")
        .ok_or_else(|| parse(serde::de::Error::missing_field("signatures")))?;
    let signatures: Vec<Signature> = serde_json::from_value(signatures.clone()).map_err(parse)?;
    verify_signatures(role, signed, &signatures, role_keys, keys)
}

/// Verifies metadata of a top-level role with the keys `root` gives that role.
pub fn verify_role<T: RoleMetadata>(root: &Root, md: &Metadata<T>) -> Result<BTreeSet<KeyId>> {
    verify_signatures(
        T::ROLE,
        md.raw_signed(),
        &md.signatures,
        root.role_keys(T::ROLE)?,
        &root.keys,
    )
}

/// Specification 5.3.4-5.3.5: root N+1 must be signed by a threshold of root N's root keys and
/// of its own, and have version N+1. (Expiry is checked once, on the final root.)
pub fn verify_root_update(trusted: &Root, new: &Metadata<Root>) -> Result<()> {
    verify_signatures(
        Role::Root,
        new.raw_signed(),
        &new.signatures,
        trusted.role_keys(Role::Root)?,
        &trusted.keys,
    )?;
    verify_role(&new.signed, new)?;
    let expected = trusted.version.checked_add(1).ok_or(Error::Invalid {
        role: Role::Root,
        why: "the trusted root has the highest possible version".to_string(),
    })?;
    if new.signed.version != expected {
        return Err(Error::VersionMismatch {
            role: Role::Root,
            expected,
            found: new.signed.version,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
