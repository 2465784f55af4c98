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

use flipside_tuf::{Signer, SigningKey};

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
}
