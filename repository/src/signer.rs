//! Where a signing key lives, and opening it as a [`Signer`]: an ed25519 key file of the keys
//! directory, or a key in a PKCS#11 token ([`pkcs11`], named by a [`uri`]).
//!
//! A key is named by a *key spec*:
//!
//! | spec | key |
//! |---|---|
//! | `pkcs11:token=...;object=...?module-path=...` | a key in a token |
//! | `PATH.pkcs11` | a file holding such a URI (how the keys directory lists token keys) |
//! | `PATH` (any other) | an ed25519 key file (`{"keytype": "ed25519", ...}`, mode 0600) |

pub mod pkcs11;
pub mod uri;

use std::path::{Path, PathBuf};

use flipside_tuf::{PublicKey, Signer, SigningKey};

pub use pkcs11::Pkcs11Key;
pub use uri::Pkcs11Uri;

use crate::Error;

/// The file extension of a keys-directory entry that names a token key.
pub const PKCS11_EXTENSION: &str = "pkcs11";

/// A signing key's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// An ed25519 key file.
    File(PathBuf),
    /// A key in a PKCS#11 token.
    Pkcs11(Pkcs11Uri),
}

impl KeySpec {
    /// Reads a spec as given on a command line (a `.pkcs11` file is read here).
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.starts_with("pkcs11:") {
            return Pkcs11Uri::parse(text)
                .map(KeySpec::Pkcs11)
                .map_err(|e| Error::KeySpec {
                    spec: text.to_string(),
                    why: e.to_string(),
                });
        }
        let path = PathBuf::from(text);
        if path.extension().is_some_and(|e| e == PKCS11_EXTENSION) {
            return Self::pkcs11_file(&path);
        }
        Ok(KeySpec::File(path))
    }

    /// The URI in a `.pkcs11` file.
    pub fn pkcs11_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        Pkcs11Uri::parse(&text)
            .map(KeySpec::Pkcs11)
            .map_err(|e| Error::KeySpec {
                spec: path.display().to_string(),
                why: e.to_string(),
            })
    }

    /// Opens the key: loads the file, or logs in to the token.
    pub fn open(&self) -> Result<Box<dyn Signer>, Error> {
        match self {
            KeySpec::File(path) => SigningKey::load(path)
                .map(|k| Box::new(k) as Box<dyn Signer>)
                .map_err(|source| Error::KeyFile { source }),
            KeySpec::Pkcs11(uri) => Pkcs11Key::open(uri).map(|k| Box::new(k) as Box<dyn Signer>),
        }
    }
}

/// The public key object of a key named by `text`: a key spec (token key, ed25519 key file),
/// or a public key file as `flipside-build repo public-key` writes it (`{"keytype", "scheme",
/// "keyval": {"public"}}`; other fields are dropped, so no private part ever reaches root).
pub fn public_key(text: &str) -> Result<PublicKey, Error> {
    let spec = KeySpec::parse(text)?;
    let path = match &spec {
        KeySpec::Pkcs11(_) => return Ok(spec.open()?.public_key().clone()),
        KeySpec::File(path) => path,
    };
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    let bad = |why: &str| Error::KeySpec {
        spec: text.to_string(),
        why: why.to_string(),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| bad("not a JSON key file"))?;
    if value.pointer("/keyval/private").is_some() {
        return Ok(spec.open()?.public_key().clone());
    }
    let field = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                bad(&format!(
                    "no {pointer} string; write public keys with `flipside-build repo public-key`"
                ))
            })
    };
    let key = PublicKey::new(
        field("/keytype")?,
        field("/scheme")?,
        field("/keyval/public")?.to_string(),
    );
    if key.verifier().is_none() {
        return Err(bad("the key type, scheme or public value is not one flipside verifies (ed25519, ecdsa P-256/P-384, rsa)"));
    }
    Ok(key)
}

impl std::fmt::Display for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySpec::File(path) => write!(f, "{}", path.display()),
            KeySpec::Pkcs11(uri) => write!(f, "{uri}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let uri = "pkcs11:token=t;object=k?module-path=/m";
        assert!(matches!(KeySpec::parse(uri).unwrap(), KeySpec::Pkcs11(_)));
        assert_eq!(
            KeySpec::parse("keys/root/ab.json").unwrap(),
            KeySpec::File(PathBuf::from("keys/root/ab.json"))
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("root-1.pkcs11");
        std::fs::write(&file, format!("{uri}\n")).unwrap();
        let KeySpec::Pkcs11(parsed) = KeySpec::parse(file.to_str().unwrap()).unwrap() else {
            panic!("not a token key");
        };
        assert_eq!(parsed.object.as_deref(), Some("k"));
        std::fs::write(&file, "pkcs11:token=t").unwrap();
        let err = KeySpec::parse(file.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, Error::KeySpec { .. }), "{err}");
        let err = KeySpec::parse("pkcs11:token=t;object=k?module-path=/m&pin-value=1").unwrap_err();
        assert!(err.to_string().contains("pin-value is refused"), "{err}");
    }

    #[test]
    fn public_keys_from_key_files_and_public_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let private = dir.path().join("k.json");
        key.save(&private).unwrap();
        let from_private = public_key(private.to_str().unwrap()).unwrap();
        assert_eq!(&from_private, key.public());
        // A public key file with extra fields gives the same key (and key id).
        let mut value = serde_json::to_value(key.public()).unwrap();
        value["keyid"] = key.key_id().to_string().into();
        let public = dir.path().join("k.pub");
        std::fs::write(&public, value.to_string()).unwrap();
        let from_public = public_key(public.to_str().unwrap()).unwrap();
        assert_eq!(from_public.key_id().unwrap(), *key.key_id());
        std::fs::write(
            &public,
            r#"{"keytype": "dsa", "scheme": "dsa", "keyval": {"public": "00"}}"#,
        )
        .unwrap();
        let err = public_key(public.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, Error::KeySpec { .. }), "{err}");
    }
}
