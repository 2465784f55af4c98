//! Public keys as metadata lists them, their key ids, and ed25519 signing keys kept in JSON
//! key files.
//!
//! Key file format (written with mode 0600, never overwritten):
//! `{"keytype": "ed25519", "scheme": "ed25519", "keyid": HEX,
//!   "keyval": {"public": HEX(32 bytes), "private": HEX(32-byte seed)}}`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::{Signer as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metadata::{Extra, Signature};
use crate::{canonical, Error, Result};

/// The only key type and signature scheme flipside signs with.
pub const ED25519: &str = "ed25519";

/// A key id: lowercase hex sha256 of the canonical JSON of the public key object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A public key object as root lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `keyval` object of a public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    pub public: String,
    #[serde(flatten)]
    pub extra: Extra,
}

impl PublicKey {
    /// The public key object of an ed25519 key, as securesystemslib writes it.
    pub fn ed25519(key: &VerifyingKey) -> Self {
        PublicKey {
            keytype: ED25519.to_string(),
            scheme: ED25519.to_string(),
            keyval: KeyVal {
                public: hex::encode(key.as_bytes()),
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }
    }

    /// A public key object of any key type and scheme (see [`PublicKey::verifier`] for those
    /// that verify), e.g. `("ecdsa", ECDSA_P256, PEM)` for a key in a hardware token.
    pub fn new(keytype: &str, scheme: &str, public: String) -> Self {
        PublicKey {
            keytype: keytype.to_string(),
            scheme: scheme.to_string(),
            keyval: KeyVal {
                public,
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }
    }

    /// The key id the specification defines: sha256 of the canonical JSON of this object.
    pub fn key_id(&self) -> Result<KeyId> {
        let bytes = canonical::to_vec_of(self, "public key")?;
        Ok(KeyId(hex::encode(Sha256::digest(bytes))))
    }

    /// The ed25519 key, if this is an ed25519 key with a well-formed public value; other key
    /// types and schemes give `None` (verification skips them rather than failing).
    pub fn ed25519_key(&self) -> Option<VerifyingKey> {
        if self.keytype != ED25519 || self.scheme != ED25519 {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&self.keyval.public, &mut bytes).ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }

    /// The key ready to verify signatures, for the key types and schemes of the
    /// specification (as securesystemslib spells them):
    ///
    /// | keytype | scheme | public value |
    /// |---|---|---|
    /// | `ed25519` | `ed25519` | 64 hex digits |
    /// | `ecdsa` or `ecdsa-sha2-nistp256` | `ecdsa-sha2-nistp256` | PEM SubjectPublicKeyInfo |
    /// | `rsa` | `rsassa-pss-sha256` or `rsa-pkcs1v15-sha256` | PEM SubjectPublicKeyInfo |
    ///
    /// Anything else, or a public value that does not decode, gives `None`: such a key never
    /// counts toward a threshold, and metadata listing it is not refused for that alone.
    pub fn verifier(&self) -> Option<Verifier> {
        match (self.keytype.as_str(), self.scheme.as_str()) {
            (ED25519, ED25519) => self.ed25519_key().map(Verifier::Ed25519),
            ("ecdsa" | ECDSA_P256, ECDSA_P256) => {
                use p256::pkcs8::DecodePublicKey;
                let public = self.keyval.public.trim();
                p256::ecdsa::VerifyingKey::from_public_key_pem(public)
                    .ok()
                    .or_else(|| {
                        // The hex SEC1 point of securesystemslib before PEM (sigstore roots 1-4).
                        let point = hex::decode(public).ok()?;
                        p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()
                    })
                    .map(Verifier::EcdsaP256)
            }
            ("ecdsa" | ECDSA_P384, ECDSA_P384) => {
                use p384::pkcs8::DecodePublicKey;
                p384::ecdsa::VerifyingKey::from_public_key_pem(self.keyval.public.trim())
                    .ok()
                    .map(Verifier::EcdsaP384)
            }
            ("rsa", scheme) => {
                use rsa::pkcs8::DecodePublicKey;
                let scheme = match scheme {
                    RSA_PSS_SHA256 => Some(PssDigest::Sha256),
                    RSA_PSS_SHA384 => Some(PssDigest::Sha384),
                    RSA_PSS_SHA512 => Some(PssDigest::Sha512),
                    RSA_PKCS1V15_SHA256 => None,
                    _ => return None,
                };
                let key = rsa::RsaPublicKey::from_public_key_pem(self.keyval.public.trim()).ok()?;
                Some(match scheme {
                    Some(digest) => Verifier::RsaPss(key, digest),
                    None => Verifier::RsaPkcs1v15(key),
                })
            }
            _ => None,
        }
    }
}

/// The ECDSA scheme (and legacy key type) name for NIST P-256 with SHA-256.
pub const ECDSA_P256: &str = "ecdsa-sha2-nistp256";
/// The ECDSA scheme (and legacy key type) name for NIST P-384 with SHA-384.
pub const ECDSA_P384: &str = "ecdsa-sha2-nistp384";
/// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
pub const RSA_PSS_SHA256: &str = "rsassa-pss-sha256";
/// RSASSA-PSS with SHA-384 and MGF1-SHA-384.
pub const RSA_PSS_SHA384: &str = "rsassa-pss-sha384";
/// RSASSA-PSS with SHA-512 and MGF1-SHA-512.
pub const RSA_PSS_SHA512: &str = "rsassa-pss-sha512";
/// RSASSA-PKCS1-v1_5 with SHA-256.
pub const RSA_PKCS1V15_SHA256: &str = "rsa-pkcs1v15-sha256";

/// A public key that can check signatures (see [`PublicKey::verifier`]).
#[derive(Debug, Clone)]
pub enum Verifier {
    Ed25519(VerifyingKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
    EcdsaP384(p384::ecdsa::VerifyingKey),
    RsaPss(rsa::RsaPublicKey, PssDigest),
    RsaPkcs1v15(rsa::RsaPublicKey),
}

/// The hash of an RSASSA-PSS scheme (message digest and MGF1 alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PssDigest {
    Sha256,
    Sha384,
    Sha512,
}

/// RSASSA-PSS with digest `D`, the salt either the digest length or the maximum (the two
/// securesystemslib has used).
fn verify_pss<D>(key: &rsa::RsaPublicKey, message: &[u8], signature: &[u8]) -> bool
where
    D: 'static + Digest + sha2::digest::DynDigest + Send + Sync,
{
    use rsa::traits::PublicKeyParts;
    let digest = D::digest(message);
    let len = <D as Digest>::output_size();
    let max_salt = key.size().saturating_sub(len + 2);
    [len, max_salt].into_iter().any(|salt| {
        key.verify(rsa::Pss::new_with_salt::<D>(salt), &digest, signature)
            .is_ok()
    })
}

impl Verifier {
    /// Whether `signature` (raw bytes, decoded from the metadata's hex) is a valid signature
    /// of `message` by this key.
    ///
    /// ed25519 is checked strictly (no malleable or small-order forms). ECDSA signatures are
    /// DER as securesystemslib writes them (the 64-byte fixed form is accepted too). RSA-PSS
    /// accepts the two salt lengths securesystemslib has used: the digest length and the
    /// maximum.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Ed25519(key) => {
                let Ok(sig) = <[u8; 64]>::try_from(signature) else {
                    return false;
                };
                key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                    .is_ok()
            }
            Verifier::EcdsaP256(key) => {
                use p256::ecdsa::signature::Verifier as _;
                let sig = p256::ecdsa::Signature::from_der(signature)
                    .or_else(|_| p256::ecdsa::Signature::from_slice(signature));
                sig.is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            Verifier::EcdsaP384(key) => {
                use p384::ecdsa::signature::Verifier as _;
                let sig = p384::ecdsa::Signature::from_der(signature)
                    .or_else(|_| p384::ecdsa::Signature::from_slice(signature));
                sig.is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            Verifier::RsaPss(key, PssDigest::Sha256) => {
                verify_pss::<Sha256>(key, message, signature)
            }
            Verifier::RsaPss(key, PssDigest::Sha384) => {
                verify_pss::<sha2::Sha384>(key, message, signature)
            }
            Verifier::RsaPss(key, PssDigest::Sha512) => {
                verify_pss::<sha2::Sha512>(key, message, signature)
            }
            Verifier::RsaPkcs1v15(key) => key
                .verify(
                    rsa::Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(message),
                    signature,
                )
                .is_ok(),
        }
    }

    /// The key material, to count one key listed under two ids once.
    pub fn material(&self) -> Vec<u8> {
        match self {
            Verifier::Ed25519(key) => [b"ed25519:".as_slice(), key.as_bytes()].concat(),
            Verifier::EcdsaP256(key) => {
                [b"p256:".as_slice(), key.to_encoded_point(true).as_bytes()].concat()
            }
            Verifier::EcdsaP384(key) => {
                [b"p384:".as_slice(), key.to_encoded_point(true).as_bytes()].concat()
            }
            Verifier::RsaPss(key, _) | Verifier::RsaPkcs1v15(key) => {
                use rsa::traits::PublicKeyParts;
                [
                    b"rsa:".as_slice(),
                    &key.n().to_bytes_be(),
                    b":",
                    &key.e().to_bytes_be(),
                ]
                .concat()
            }
        }
    }
}

/// An ed25519 private key with its public key object and key id.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    public: PublicKey,
    key_id: KeyId,
}

// Never print the private key.
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    keytype: String,
    scheme: String,
    keyid: KeyId,
    keyval: BTreeMap<String, String>,
}

impl SigningKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The key of a 32-byte seed (RFC 8032 secret key); for fixtures and tests.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    fn from_dalek(key: ed25519_dalek::SigningKey) -> Self {
        let public = PublicKey::ed25519(&key.verifying_key());
        let key_id = ed25519_key_id(&public);
        SigningKey {
            key,
            public,
            key_id,
        }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Signs `message` (the canonical bytes of a `signed` object).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature {
            keyid: self.key_id.clone(),
            sig: hex::encode(self.key.sign(message).to_bytes()),
        }
    }

    /// Writes the key file with mode 0600; refuses to replace an existing file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let file = KeyFile {
            keytype: ED25519.to_string(),
            scheme: ED25519.to_string(),
            keyid: self.key_id.clone(),
            keyval: BTreeMap::from([
                ("public".to_string(), self.public.keyval.public.clone()),
                ("private".to_string(), hex::encode(self.key.to_bytes())),
            ]),
        };
        let mut text = serde_json::to_vec_pretty(&file).map_err(|e| Error::KeyFile {
            path: path.to_path_buf(),
            why: format!("cannot encode: {e}"),
        })?;
        text.push(b'\n');
        let io = |source| Error::KeyIo {
            path: path.to_path_buf(),
            source,
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let written = out.write_all(&text).and_then(|()| out.sync_all());
        if let Err(source) = written {
            // A partial key file would only confuse the next load.
            let _ = std::fs::remove_file(path);
            return Err(io(source));
        }
        Ok(())
    }

    /// Reads a key file and checks that its private, public and key id parts agree.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|source| Error::KeyIo {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |why: String| Error::KeyFile {
            path: path.to_path_buf(),
            why,
        };
        let file: KeyFile = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("not a flipside key file: {e}")))?;
        if file.keytype != ED25519 || file.scheme != ED25519 {
            return Err(bad(format!(
                "key type {:?} / scheme {:?} is not supported; flipside signs with ed25519",
                file.keytype, file.scheme
            )));
        }
        let field = |name: &str| {
            file.keyval
                .get(name)
                .ok_or_else(|| bad(format!("keyval has no {name:?} field")))
        };
        let mut seed = [0u8; 32];
        hex::decode_to_slice(field("private")?, &mut seed)
            .map_err(|_| bad("the private key is not 64 hex digits".to_string()))?;
        let key = Self::from_seed(&seed);
        if &key.public.keyval.public != field("public")? {
            return Err(bad(
                "the public key does not belong to the private key; the file was edited or mixed up"
                    .to_string(),
            ));
        }
        if key.key_id != file.keyid {
            return Err(bad(format!(
                "the key id {} does not match the key (its id is {})",
                file.keyid, key.key_id
            )));
        }
        Ok(key)
    }
}

/// Key id of an ed25519 public key object built by [`PublicKey::ed25519`]: canonical JSON of
/// ASCII strings cannot fail.
fn ed25519_key_id(public: &PublicKey) -> KeyId {
    let text = format!(
        r#"{{"keytype":"{ED25519}","keyval":{{"public":"{}"}},"scheme":"{ED25519}"}}"#,
        public.keyval.public
    );
    KeyId(hex::encode(Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::Value;

    use super::*;

    /// RFC 8032 section 7.1, test 1.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn rfc_key() -> SigningKey {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(RFC8032_SEED, &mut seed).unwrap();
        SigningKey::from_seed(&seed)
    }

    #[test]
    fn key_id_matches_securesystemslib_vector() {
        let vector: Value =
            serde_json::from_str(include_str!("../tests/data/keyid-vector.json")).unwrap();
        let key = rfc_key();
        assert_eq!(key.public().keyval.public, RFC8032_PUBLIC);
        assert_eq!(vector["public"], RFC8032_PUBLIC);
        assert_eq!(key.key_id().as_str(), vector["keyid"].as_str().unwrap());
        // The shortcut and the general computation agree.
        assert_eq!(&key.public().key_id().unwrap(), key.key_id());
    }

    #[test]
    fn key_ids_of_python_tuf_root_match() {
        let root: Value =
            serde_json::from_str(include_str!("../tests/data/python-tuf/1.root.json")).unwrap();
        let keys = root["signed"]["keys"].as_object().unwrap();
        assert_eq!(keys.len(), 5);
        for (id, key) in keys {
            let key: PublicKey = serde_json::from_value(key.clone()).unwrap();
            assert_eq!(key.key_id().unwrap().as_str(), id);
            assert!(key.ed25519_key().is_some());
        }
    }

    #[test]
    fn rfc8032_signature() {
        // Test 1 signs the empty message.
        let sig = rfc_key().sign(b"");
        assert_eq!(
            sig.sig,
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn unsupported_or_malformed_public_keys_have_no_ed25519_key() {
        let mut key = rfc_key().public().clone();
        key.scheme = "rsassa-pss-sha256".to_string();
        assert!(key.ed25519_key().is_none());
        let mut key = rfc_key().public().clone();
        key.keyval.public = "zz".to_string();
        assert!(key.ed25519_key().is_none());
    }

    #[test]
    fn key_file_round_trip_mode_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let key = SigningKey::generate();
        key.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = SigningKey::load(&path).unwrap();
        assert_eq!(loaded.key_id(), key.key_id());
        assert_eq!(loaded.sign(b"m"), key.sign(b"m"));
        assert!(matches!(key.save(&path), Err(Error::KeyIo { .. })));
        assert!(!format!("{key:?}").contains(&hex::encode(key.key.to_bytes())));
    }

    #[test]
    fn mixed_up_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        rfc_key().save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let other = SigningKey::generate();
        for edited in [
            text.replace(RFC8032_PUBLIC, &other.public().keyval.public),
            text.replace(rfc_key().key_id().as_str(), other.key_id().as_str()),
            text.replace(RFC8032_SEED, "00"),
            text.replace("\"ed25519\"", "\"rsa\""),
            "{}".to_string(),
        ] {
            std::fs::write(&path, edited).unwrap();
            let err = SigningKey::load(&path).unwrap_err();
            assert!(matches!(err, Error::KeyFile { .. }), "{err}");
        }
        let err = SigningKey::load(&dir.path().join("missing.json")).unwrap_err();
        assert!(matches!(err, Error::KeyIo { .. }), "{err}");
    }
}
