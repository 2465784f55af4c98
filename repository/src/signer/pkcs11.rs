//! Keys in a PKCS#11 token (a hardware security module, a smart card, SoftHSM2), named by a
//! [`Pkcs11Uri`]. The token signs; the private key never leaves it.
//!
//! | key in the token | TUF keytype / scheme | mechanism | signature written |
//! |---|---|---|---|
//! | EC on P-256 | `ecdsa` / `ecdsa-sha2-nistp256` | `CKM_ECDSA` over SHA-256 | DER (the token's raw r‖s converted) |
//! | EC on P-384 | `ecdsa` / `ecdsa-sha2-nistp384` | `CKM_ECDSA` over SHA-384 | DER |
//! | RSA | `rsa` / `rsassa-pss-sha256` | `CKM_SHA256_RSA_PKCS_PSS`, MGF1-SHA-256, salt 32 | raw |
//! | EC Edwards (Ed25519) | `ed25519` / `ed25519` | `CKM_EDDSA` | raw (64 bytes) |
//!
//! The public key object is read from the token's public key with the same label or id, and
//! written as securesystemslib writes it (PEM SubjectPublicKeyInfo, hex for ed25519), so the
//! key id is the one any TUF tool computes. Every signature is checked against that public key
//! before it is used: a token that signs with another key, or badly, is caught here.
//!
//! A module is loaded and initialised once per process and never finalised (PKCS#11 allows one
//! `C_Initialize` per process; several keys of one module share it). PKCS#11 logs an
//! application in to a token as a whole: a second key of a token already logged in to is used
//! without checking its PIN again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use flipside_tuf::keys::{ECDSA_P256, ECDSA_P384, ED25519, RSA_PSS_SHA256};
use flipside_tuf::{KeyId, PublicKey, Signature, Signer};
use sha2::Digest;

use super::uri::{PinSource, Pkcs11Uri};
use crate::Error;

/// DER of the OID of NIST P-256 (prime256v1), as `CKA_EC_PARAMS` holds it.
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the OID of NIST P-384 (secp384r1).
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// How a key of the token signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    EcdsaP256,
    EcdsaP384,
    RsaPssSha256,
    Ed25519,
}

/// A private key in a token, logged in and ready to sign.
pub struct Pkcs11Key {
    uri: Pkcs11Uri,
    session: Session,
    handle: ObjectHandle,
    algorithm: Algorithm,
    public: PublicKey,
    key_id: KeyId,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("uri", &self.uri.to_string())
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The context of `module`, loaded and initialised on first use.
pub fn module(module: &Path) -> Result<Pkcs11, cryptoki::error::Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(ctx) = modules.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(e),
    }
    modules.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

impl Pkcs11Key {
    /// Loads the module, finds the token and the key, logs in with the PIN from its source.
    pub fn open(uri: &Pkcs11Uri) -> Result<Self, Error> {
        let spec = uri.to_string();
        let token_err = |what: &'static str| {
            let spec = spec.clone();
            move |source| Error::Pkcs11 { spec, what, source }
        };
        let ctx = module(&uri.module).map_err(token_err("loading the module"))?;
        let mut slot = None;
        for s in ctx
            .get_slots_with_token()
            .map_err(token_err("listing the slots"))?
        {
            let info = ctx
                .get_token_info(s)
                .map_err(token_err("reading the token information"))?;
            if info.label().trim_end() == uri.token {
                slot = Some(s);
                break;
            }
        }
        let key_err = |why: String| Error::Pkcs11Key {
            spec: spec.clone(),
            why,
        };
        let slot = slot.ok_or_else(|| {
            key_err(format!(
                "no token labelled {:?} in {}; list the tokens with `softhsm2-util --show-slots` or `pkcs11-tool --module {} --list-token-slots`",
                uri.token,
                uri.module.display(),
                uri.module.display()
            ))
        })?;
        let pin = read_pin(&uri.pin).map_err(|why| Error::Pkcs11Pin {
            spec: spec.clone(),
            why,
        })?;
        let session = ctx
            .open_ro_session(slot)
            .map_err(token_err("opening a session"))?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(token_err("logging in (check the PIN)")(e)),
        }

        let handle = find_one(&session, uri, ObjectClass::PRIVATE_KEY)
            .map_err(token_err("searching the key"))?
            .map_err(&key_err)?;
        let public_handle = find_one(&session, uri, ObjectClass::PUBLIC_KEY)
            .map_err(token_err("searching the public key"))?
            .map_err(&key_err)?;
        let attrs = session
            .get_attributes(
                public_handle,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                    AttributeType::EcPoint,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                ],
            )
            .map_err(token_err("reading the public key"))?;
        let (algorithm, public) = public_key(&attrs).map_err(&key_err)?;
        let key_id = public.key_id().map_err(|e| key_err(e.to_string()))?;
        Ok(Pkcs11Key {
            uri: uri.clone(),
            session,
            handle,
            algorithm,
            public,
            key_id,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The token's signature of `message` in the encoding TUF metadata holds.
    fn token_sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let sign = |mechanism: &Mechanism, data: &[u8]| {
            self.session
                .sign(mechanism, self.handle, data)
                .map_err(|e| format!("the token refused to sign ({e})"))
        };
        match self.algorithm {
            Algorithm::EcdsaP256 => {
                let raw = sign(&Mechanism::Ecdsa, &sha2::Sha256::digest(message))?;
                ecdsa_p256_der(&raw)
            }
            Algorithm::EcdsaP384 => {
                let raw = sign(&Mechanism::Ecdsa, &sha2::Sha384::digest(message))?;
                ecdsa_p384_der(&raw)
            }
            Algorithm::RsaPssSha256 => {
                let params = PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32.into(),
                };
                sign(&Mechanism::Sha256RsaPkcsPss(params), message)
            }
            Algorithm::Ed25519 => {
                let params = EddsaParams::new(EddsaSignatureScheme::Pure);
                sign(&Mechanism::Eddsa(params), message)
            }
        }
    }
}

impl Signer for Pkcs11Key {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    fn sign(&self, message: &[u8]) -> flipside_tuf::Result<Signature> {
        let fail = |why: String| flipside_tuf::Error::Signer {
            key_id: self.key_id.clone(),
            source: format!("PKCS#11 key {}: {why}", self.uri).into(),
        };
        let sig = self.token_sign(message).map_err(fail)?;
        let verifies = self
            .public
            .verifier()
            .is_some_and(|v| v.verify(message, &sig));
        if !verifies {
            return Err(fail(
                "its signature does not verify with its public key; the token's public and private objects of this label do not belong together".to_string(),
            ));
        }
        Ok(Signature {
            keyid: self.key_id.clone(),
            sig: hex::encode(sig),
        })
    }
}

/// The one object of `class` the URI names; the inner error says why there is none or more.
fn find_one(
    session: &Session,
    uri: &Pkcs11Uri,
    class: ObjectClass,
) -> Result<Result<ObjectHandle, String>, cryptoki::error::Error> {
    let mut template = vec![Attribute::Class(class)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    let found = session.find_objects(&template)?;
    let what = if class == ObjectClass::PRIVATE_KEY {
        "private key"
    } else {
        "public key"
    };
    Ok(match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "the token holds no {what} with this label/id (log in works, so the PIN is right); list its objects with `pkcs11-tool --module {} --list-objects --login`",
            uri.module.display()
        )),
        more => Err(format!(
            "{} {what}s match this label/id; name the key by id=... as well",
            more.len()
        )),
    })
}

/// The PIN from its source (file content up to the first line end, or the variable).
fn read_pin(source: &PinSource) -> Result<AuthPin, String> {
    let text = match source {
        PinSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the PIN file {}: {e}", path.display()))?,
        PinSource::Env(name) => std::env::var(name).map_err(|_| {
            format!("the PIN variable {name} is not set; export it, or name a PIN file with pin-source=PATH")
        })?,
    };
    let pin = text.lines().next().unwrap_or("").to_string();
    if pin.is_empty() {
        return Err("the PIN is empty".to_string());
    }
    Ok(AuthPin::from(pin))
}

/// The algorithm and TUF public key object of a token's public key attributes. Pure.
pub fn public_key(attrs: &[Attribute]) -> Result<(Algorithm, PublicKey), String> {
    let (mut key_type, mut params, mut point, mut modulus, mut exponent) =
        (None, None, None, None, None);
    for attr in attrs {
        match attr {
            Attribute::KeyType(t) => key_type = Some(*t),
            Attribute::EcParams(p) => params = Some(p.as_slice()),
            Attribute::EcPoint(p) => point = Some(p.as_slice()),
            Attribute::Modulus(m) => modulus = Some(m.as_slice()),
            Attribute::PublicExponent(e) => exponent = Some(e.as_slice()),
            _ => {}
        }
    }
    let missing = |what: &str| format!("the public key has no {what} attribute");
    match key_type {
        Some(KeyType::EC) => {
            let params = params.ok_or_else(|| missing("CKA_EC_PARAMS"))?;
            let point = unwrap_octet_string(point.ok_or_else(|| missing("CKA_EC_POINT"))?);
            let pem = if params == OID_P256 {
                use p256::pkcs8::EncodePublicKey;
                p256::PublicKey::from_sec1_bytes(point)
                    .map_err(|e| format!("bad P-256 point: {e}"))?
                    .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                    .map(|pem| (Algorithm::EcdsaP256, ECDSA_P256, pem))
            } else if params == OID_P384 {
                use p384::pkcs8::EncodePublicKey;
                p384::PublicKey::from_sec1_bytes(point)
                    .map_err(|e| format!("bad P-384 point: {e}"))?
                    .to_public_key_pem(p384::pkcs8::LineEnding::LF)
                    .map(|pem| (Algorithm::EcdsaP384, ECDSA_P384, pem))
            } else {
                return Err(format!(
                    "EC key on curve {} is not supported; use P-256 or P-384",
                    hex::encode(params)
                ));
            };
            let (algorithm, scheme, pem) = pem.map_err(|e| format!("cannot encode: {e}"))?;
            Ok((algorithm, PublicKey::new("ecdsa", scheme, pem)))
        }
        Some(KeyType::RSA) => {
            use rsa::pkcs8::EncodePublicKey;
            let n = modulus.ok_or_else(|| missing("CKA_MODULUS"))?;
            let e = exponent.ok_or_else(|| missing("CKA_PUBLIC_EXPONENT"))?;
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(n),
                rsa::BigUint::from_bytes_be(e),
            )
            .map_err(|e| format!("bad RSA public key: {e}"))?;
            let pem = key
                .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|e| format!("cannot encode: {e}"))?;
            Ok((
                Algorithm::RsaPssSha256,
                PublicKey::new("rsa", RSA_PSS_SHA256, pem),
            ))
        }
        Some(KeyType::EC_EDWARDS) => {
            let point = unwrap_octet_string(point.ok_or_else(|| missing("CKA_EC_POINT"))?);
            if point.len() != 32 {
                return Err(format!(
                    "an Edwards key of {} bytes is not Ed25519 (Ed448 is not a TUF key type)",
                    point.len()
                ));
            }
            Ok((
                Algorithm::Ed25519,
                PublicKey::new(ED25519, ED25519, hex::encode(point)),
            ))
        }
        Some(other) => Err(format!(
            "key type {other} cannot sign TUF metadata; use an EC (P-256, P-384), RSA or Ed25519 key"
        )),
        None => Err(missing("CKA_KEY_TYPE")),
    }
}

/// The content of a DER OCTET STRING (how PKCS#11 2.40 wraps `CKA_EC_POINT`), or the bytes
/// themselves when they are not one (tokens that return the bare point). Pure.
pub fn unwrap_octet_string(bytes: &[u8]) -> &[u8] {
    let (len, header) = match bytes {
        [0x04, n, ..] if *n < 0x80 => (usize::from(*n), 2),
        [0x04, 0x81, n, ..] => (usize::from(*n), 3),
        [0x04, 0x82, hi, lo, ..] => (usize::from(*hi) << 8 | usize::from(*lo), 4),
        _ => return bytes,
    };
    if bytes.len() == header + len {
        &bytes[header..]
    } else {
        bytes
    }
}

/// A P-256 signature as PKCS#11 returns it (r‖s, 64 bytes) in DER. Pure.
pub fn ecdsa_p256_der(raw: &[u8]) -> Result<Vec<u8>, String> {
    p256::ecdsa::Signature::from_slice(raw)
        .map(|s| s.to_der().as_bytes().to_vec())
        .map_err(|e| format!("the token's ECDSA signature is not 64 bytes of r||s ({e})"))
}

/// A P-384 signature as PKCS#11 returns it (r‖s, 96 bytes) in DER. Pure.
pub fn ecdsa_p384_der(raw: &[u8]) -> Result<Vec<u8>, String> {
    p384::ecdsa::Signature::from_slice(raw)
        .map(|s| s.to_der().as_bytes().to_vec())
        .map_err(|e| format!("the token's ECDSA signature is not 96 bytes of r||s ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_strings_are_unwrapped_and_bare_points_kept() {
        let point = [0x04u8; 65];
        let mut der = vec![0x04, 65];
        der.extend_from_slice(&point);
        assert_eq!(unwrap_octet_string(&der), &point);
        // A bare uncompressed point also starts with 0x04 but its "length" does not match.
        assert_eq!(unwrap_octet_string(&point), &point);
        let mut long = vec![0x04, 0x81, 0x85];
        long.extend_from_slice(&[7u8; 0x85]);
        assert_eq!(unwrap_octet_string(&long).len(), 0x85);
        let ed = [[0x04, 32].as_slice(), &[9u8; 32]].concat();
        assert_eq!(unwrap_octet_string(&ed), &[9u8; 32]);
    }

    #[test]
    fn raw_ecdsa_signatures_become_der_that_verifies() {
        use p256::ecdsa::signature::Signer as _;
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let sig: p256::ecdsa::Signature = key.sign(b"message");
        let der = ecdsa_p256_der(&sig.to_bytes()).unwrap();
        assert_eq!(der[0], 0x30, "DER SEQUENCE");
        let attrs = [
            Attribute::KeyType(KeyType::EC),
            Attribute::EcParams(OID_P256.to_vec()),
            Attribute::EcPoint(
                [
                    [0x04, 65].as_slice(),
                    key.verifying_key().to_encoded_point(false).as_bytes(),
                ]
                .concat(),
            ),
        ];
        let (algorithm, public) = public_key(&attrs).unwrap();
        assert_eq!(algorithm, Algorithm::EcdsaP256);
        assert_eq!(
            (public.keytype.as_str(), public.scheme.as_str()),
            ("ecdsa", ECDSA_P256)
        );
        assert!(public.verifier().unwrap().verify(b"message", &der));
        assert!(!public.verifier().unwrap().verify(b"other", &der));
        assert!(ecdsa_p256_der(&[1u8; 63]).is_err());
    }

    #[test]
    fn ed25519_and_rsa_public_keys() {
        let key = flipside_tuf::SigningKey::from_seed(&[3u8; 32]);
        let point = hex::decode(&key.public().keyval.public).unwrap();
        let attrs = [
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::EcPoint([[0x04, 32].as_slice(), &point].concat()),
        ];
        let (algorithm, public) = public_key(&attrs).unwrap();
        assert_eq!(algorithm, Algorithm::Ed25519);
        // The same key id as the key file of the same key.
        assert_eq!(&public.key_id().unwrap(), key.key_id());

        let n = {
            let mut n = vec![0xc5u8; 256];
            n[255] = 0x01;
            n
        };
        let attrs = [
            Attribute::KeyType(KeyType::RSA),
            Attribute::Modulus(n),
            Attribute::PublicExponent(vec![1, 0, 1]),
        ];
        let (algorithm, public) = public_key(&attrs).unwrap();
        assert_eq!(algorithm, Algorithm::RsaPssSha256);
        assert_eq!(public.scheme, RSA_PSS_SHA256);
        assert!(public
            .keyval
            .public
            .starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    #[test]
    fn unsupported_keys_say_what_would_work() {
        let attrs = [
            Attribute::KeyType(KeyType::EC),
            Attribute::EcParams(vec![0x06, 0x03, 1, 2, 3]),
            Attribute::EcPoint(vec![0x04, 1, 0]),
        ];
        assert!(public_key(&attrs)
            .unwrap_err()
            .contains("use P-256 or P-384"));
        let attrs = [Attribute::KeyType(KeyType::DSA)];
        assert!(public_key(&attrs)
            .unwrap_err()
            .contains("cannot sign TUF metadata"));
        let attrs = [
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::EcPoint([[0x04, 57].as_slice(), &[1u8; 57]].concat()),
        ];
        assert!(public_key(&attrs).unwrap_err().contains("Ed448"));
    }
}
