//! Signing: the canonical JSON of the `signed` object, one signature per distinct key.

use crate::keys::SigningKey;
use crate::metadata::{Metadata, RoleMetadata};
use crate::{canonical, Error, Result};

impl<T: RoleMetadata> Metadata<T> {
    /// Validates `signed` and signs its canonical JSON with every key (each key once;
    /// signatures sorted by key id so that output is deterministic).
    pub fn sign(signed: T, keys: &[&SigningKey]) -> Result<Self> {
        signed.validate()?;
        let raw = serde_json::to_value(&signed).map_err(|source| Error::Canonical {
            what: format!("{} metadata", T::ROLE),
            source,
        })?;
        let message = canonical::to_vec(&raw, &format!("{} metadata", T::ROLE))?;
        let mut signatures: Vec<_> = keys.iter().map(|k| k.sign(&message)).collect();
        signatures.sort_by(|a, b| a.keyid.cmp(&b.keyid));
        signatures.dedup_by(|a, b| a.keyid == b.keyid);
        Ok(Metadata::assemble(signed, raw, signatures))
    }
}
