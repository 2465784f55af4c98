//! Secure Boot signatures over EFI images (flipside-boot, each unified kernel image) with
//! `sbsign` from Debian's `sbsigntool`: an Authenticode signature by the `db` key, appended as
//! the PE certificate table. The firmware refuses an image whose signature does not verify
//! against a certificate in `db`, so the signature over a UKI covers its `.cmdline` and with it
//! the dm-verity root hash of its slot's root filesystem.
//!
//! The key is a PEM file beside its PEM certificate, kept like the repository keys (a
//! directory only the release engineer reads). An unsigned UKI is byte-for-byte reproducible;
//! the signature carries its signing time, so `sbattach --remove` on a signed UKI gives back
//! the reproducible bytes (tested).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Class;

/// Debian package of `sbsign` and `sbverify`.
pub const PACKAGE: &str = "sbsigntool";

/// Owner GUID written beside flipside's certificates in PK, KEK and db (the EFI_SIGNATURE_DATA
/// owner: it names who enrolled an entry, nothing checks it).
pub const OWNER_GUID: &str = "2f8a3c1e-6b5d-4e0a-9f71-5c3d2b1a0f9e";

/// Lifetime of generated certificates: UEFI firmware does not check certificate expiry, so the
/// date only matters to tools that do (sbverify does not either).
pub const CERT_DAYS: u32 = 3650;

/// The three Secure Boot keys of a device: the platform key (owns the variable store), the key
/// exchange key (may change db and dbx) and the db key (signs flipside-boot and every UKI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySet {
    pub pk: SigningKey,
    pub kek: SigningKey,
    pub db: SigningKey,
}

/// The `db` signing key and its certificate (both PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKey {
    pub key: PathBuf,
    pub cert: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{tool} not found ({source}); install {package} (apt-get install {package})")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
        source: std::io::Error,
    },
    #[error("Secure Boot {what} {path} does not exist; give the PEM file of the db key (see the README's secure-boot section)")]
    KeyMissing { what: &'static str, path: PathBuf },
    #[error("sbsign could not sign {path} with {key}: {stderr}; check that the key and certificate are a PEM pair and the input is an EFI image")]
    Sign {
        path: PathBuf,
        key: PathBuf,
        stderr: String,
    },
    #[error(
        "{path} exists; Secure Boot keys are never overwritten (move it away to make new keys)"
    )]
    KeyExists { path: PathBuf },
    #[error("openssl could not make the key {path}: {stderr}")]
    KeyGen { path: PathBuf, stderr: String },
    #[error("cannot create {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not signed by {cert}: {stderr}")]
    Verify {
        path: PathBuf,
        cert: PathBuf,
        stderr: String,
    },
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::ToolMissing { .. } => Class::Tool,
            Error::KeyMissing { .. } | Error::Sign { .. } => Class::Key,
            Error::Verify { .. } | Error::KeyExists { .. } => Class::Key,
            Error::KeyGen { .. } => Class::Tool,
            Error::Io { .. } => Class::Io,
        }
    }
}

/// The three roles, in the order the firmware's chain of trust runs.
pub const ROLES: [&str; 3] = ["PK", "KEK", "db"];

impl KeySet {
    /// The key files under `dir`: `PK.key`/`PK.crt`, `KEK.key`/`KEK.crt`, `db.key`/`db.crt`.
    pub fn in_dir(dir: &Path) -> Self {
        let key = |role: &str| SigningKey {
            key: dir.join(format!("{role}.key")),
            cert: dir.join(format!("{role}.crt")),
        };
        Self {
            pk: key("PK"),
            kek: key("KEK"),
            db: key("db"),
        }
    }
}

/// Generates a fresh PK, KEK and db under `dir` (created with mode 0700; existing keys are
/// never overwritten): RSA 2048 keys (what every UEFI implementation accepts) and self-signed
/// certificates with the common name `<name> PK` and so on.
pub fn generate_keys(dir: &Path, name: &str) -> Result<KeySet, Error> {
    use std::os::unix::fs::DirBuilderExt;
    let set = KeySet::in_dir(dir);
    for k in [&set.pk, &set.kek, &set.db] {
        if k.key.exists() {
            return Err(Error::KeyExists {
                path: k.key.clone(),
            });
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    for (role, k) in ROLES.into_iter().zip([&set.pk, &set.kek, &set.db]) {
        let out = Command::new("openssl")
            .args([
                "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
            ])
            .arg("-keyout")
            .arg(&k.key)
            .arg("-out")
            .arg(&k.cert)
            .args(["-days", &CERT_DAYS.to_string(), "-subj"])
            .arg(format!("/CN={name} {role}/"))
            .output()
            .map_err(|source| Error::ToolMissing {
                tool: "openssl",
                package: "openssl",
                source,
            })?;
        if !out.status.success() {
            return Err(Error::KeyGen {
                path: k.key.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(set)
}

/// Writes `output`: `input` signed with `key`. `input` and `output` may not be the same file.
pub fn sign(key: &SigningKey, input: &Path, output: &Path) -> Result<(), Error> {
    for (what, path) in [("key", &key.key), ("certificate", &key.cert)] {
        if !path.is_file() {
            return Err(Error::KeyMissing {
                what,
                path: path.clone(),
            });
        }
    }
    let out = Command::new("sbsign")
        .arg("--key")
        .arg(&key.key)
        .arg("--cert")
        .arg(&key.cert)
        .arg("--output")
        .arg(output)
        .arg(input)
        .output()
        .map_err(|source| Error::ToolMissing {
            tool: "sbsign",
            package: PACKAGE,
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Sign {
            path: input.to_path_buf(),
            key: key.key.clone(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Checks that `image` carries a valid signature by `cert` (`sbverify`).
pub fn verify(cert: &Path, image: &Path) -> Result<(), Error> {
    let out = Command::new("sbverify")
        .arg("--cert")
        .arg(cert)
        .arg(image)
        .output()
        .map_err(|source| Error::ToolMissing {
            tool: "sbverify",
            package: PACKAGE,
            source,
        })?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(Error::Verify {
            path: image.to_path_buf(),
            cert: cert.to_path_buf(),
            stderr,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh self-signed RSA key and certificate (openssl), as `db` would hold.
    pub fn test_key(dir: &Path, name: &str) -> SigningKey {
        let key = SigningKey {
            key: dir.join(format!("{name}.key")),
            cert: dir.join(format!("{name}.crt")),
        };
        let st = Command::new("openssl")
            .args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .arg("-keyout")
            .arg(&key.key)
            .arg("-out")
            .arg(&key.cert)
            .args(["-days", "3650", "-subj"])
            .arg(format!("/CN={name}/"))
            .output()
            .expect("openssl");
        assert!(st.status.success(), "{st:?}");
        key
    }

    fn uki(dir: &Path) -> PathBuf {
        let stub = Path::new(crate::uki::DEFAULT_STUB);
        let kernel = dir.join("vmlinuz");
        let initrd = dir.join("initrd");
        std::fs::write(&kernel, vec![0x4du8; 8192]).unwrap();
        std::fs::write(&initrd, b"initrd").unwrap();
        let os_release = crate::uki::os_release("t", 1, "1");
        let out = dir.join("uki.efi");
        crate::uki::assemble(
            &crate::uki::UkiParts {
                stub,
                kernel: &kernel,
                initrd: &initrd,
                cmdline: "console=ttyS0",
                os_release: &os_release,
            },
            &out,
        )
        .unwrap();
        out
    }

    #[test]
    fn a_signed_uki_verifies_only_against_its_key_and_strips_back_to_the_reproducible_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let ours = test_key(dir.path(), "db");
        let theirs = test_key(dir.path(), "other");
        let unsigned = uki(dir.path());
        let signed = dir.path().join("signed.efi");
        sign(&ours, &unsigned, &signed).unwrap();
        verify(&ours.cert, &signed).unwrap();
        assert!(matches!(
            verify(&theirs.cert, &signed),
            Err(Error::Verify { .. })
        ));
        assert!(matches!(
            verify(&ours.cert, &unsigned),
            Err(Error::Verify { .. })
        ));
        let stripped = dir.path().join("stripped.efi");
        let st = Command::new("sbattach")
            .arg("--remove")
            .arg(&signed)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::rename(&signed, &stripped).unwrap();
        assert_eq!(
            std::fs::read(&stripped).unwrap(),
            std::fs::read(&unsigned).unwrap()
        );
    }

    #[test]
    fn generated_keys_sign_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let set = generate_keys(&keys, "test").unwrap();
        for k in [&set.pk, &set.kek, &set.db] {
            assert!(k.key.is_file() && k.cert.is_file(), "{k:?}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let subject = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&set.kek.cert)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&subject.stdout).contains("test KEK"));
        let unsigned = uki(dir.path());
        let signed = dir.path().join("signed.efi");
        sign(&set.db, &unsigned, &signed).unwrap();
        verify(&set.db.cert, &signed).unwrap();
        let before = std::fs::read(&set.db.key).unwrap();
        let e = generate_keys(&keys, "again").unwrap_err();
        assert!(matches!(e, Error::KeyExists { .. }), "{e}");
        assert_eq!(e.class(), Class::Key);
        assert_eq!(std::fs::read(&set.db.key).unwrap(), before);
    }

    #[test]
    fn a_missing_key_is_a_key_error() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey {
            key: dir.path().join("nope.key"),
            cert: dir.path().join("nope.crt"),
        };
        let e = sign(&key, Path::new("/x"), &dir.path().join("o")).unwrap_err();
        assert!(matches!(e, Error::KeyMissing { what: "key", .. }), "{e}");
        assert_eq!(e.class(), Class::Key);
    }
}
