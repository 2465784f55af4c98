//! Signing: the canonical JSON of the `signed` object, one signature per distinct key.
//!
//! A [`Signer`] is whatever holds a private key: an ed25519 key file ([`SigningKey`]), a key
//! in a hardware token (the publisher's PKCS#11 keys). The signatures it makes must verify
//! with [`crate::keys::Verifier`] for the public key object it reports, in the encoding
//! securesystemslib writes (ECDSA as DER, RSA-PSS and ed25519 raw).

use serde_json::Value;

use crate::keys::{KeyId, PublicKey, SigningKey};
use crate::metadata::{Metadata, RoleMetadata, Signature};
use crate::{canonical, Error, Result};

/// A private key that signs metadata.
pub trait Signer {
    /// The public key object root lists for this key.
    fn public_key(&self) -> &PublicKey;
    /// The key id of [`Signer::public_key`].
    fn key_id(&self) -> &KeyId;
    /// Signs `message` (the canonical JSON of a `signed` object). A hardware key can fail
    /// ([`Error::Signer`]).
    fn sign(&self, message: &[u8]) -> Result<Signature>;
}

impl Signer for SigningKey {
    fn public_key(&self) -> &PublicKey {
        self.public()
    }

    fn key_id(&self) -> &KeyId {
        SigningKey::key_id(self)
    }

    fn sign(&self, message: &[u8]) -> Result<Signature> {
        Ok(SigningKey::sign(self, message))
    }
}

/// The `signed` object of `signed` as JSON and its canonical bytes: what signatures cover.
pub fn signing_bytes<T: RoleMetadata>(signed: &T) -> Result<(Value, Vec<u8>)> {
    let raw = serde_json::to_value(signed).map_err(|source| Error::Canonical {
        what: format!("{} metadata", T::ROLE),
        source,
    })?;
    let message = canonical::to_vec(&raw, &format!("{} metadata", T::ROLE))?;
    Ok((raw, message))
}

impl<T: RoleMetadata> Metadata<T> {
    /// Validates `signed` and signs its canonical JSON with every key (each key once;
    /// signatures sorted by key id so that output is deterministic).
    pub fn sign(signed: T, keys: &[&SigningKey]) -> Result<Self> {
        let signers: Vec<&dyn Signer> = keys.iter().map(|k| *k as &dyn Signer).collect();
        Self::sign_with(signed, &signers)
    }

    /// [`Metadata::sign`] with any [`Signer`]s; the first signer that fails fails it.
    pub fn sign_with(signed: T, keys: &[&dyn Signer]) -> Result<Self> {
        signed.validate()?;
        let (raw, message) = signing_bytes(&signed)?;
        let mut signatures = keys
            .iter()
            .map(|k| k.sign(&message))
            .collect::<Result<Vec<_>>>()?;
        signatures.sort_by(|a, b| a.keyid.cmp(&b.keyid));
        signatures.dedup_by(|a, b| a.keyid == b.keyid);
        Ok(Metadata::assemble(signed, raw, signatures))
    }
}
