//! Secure Boot under QEMU: OVMF built for Secure Boot (`OVMF_CODE_4M.secboot.fd`, SMM) with a
//! per-VM copy of an empty variable store into which our own PK, KEK and db certificates are
//! enrolled by `virt-fw-vars` (python `virt-firmware`), Secure Boot on. Keys come from
//! `flipside_image_builder::secureboot::generate_keys`, signatures from its `sign`: the same
//! code as `flipside-build secure-boot-keys` and `flipside-build sign`.
//!
//! `virt-fw-vars` is found in `$FLIPSIDE_VIRT_FW_VARS`, on `PATH`, or in the workspace's
//! `.venv/bin` (scripts/setup.sh installs it there).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use flipside_image_builder::secureboot::{self, KeySet, SigningKey, OWNER_GUID};

use crate::error::{Error, Result};
use crate::testbed::TestBed;
use crate::tool;
use crate::uefi;
use crate::vm::Firmware;

/// OVMF's code with Secure Boot support and SMM (Debian package `ovmf`).
pub const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";

/// Where `virt-fw-vars` is.
pub fn virt_fw_vars() -> PathBuf {
    if let Some(p) = std::env::var_os("FLIPSIDE_VIRT_FW_VARS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/virt-fw-vars");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("virt-fw-vars")
}

/// A test's Secure Boot keys: ours (enrolled) and someone else's (never enrolled).
pub struct Keys {
    pub ours: KeySet,
    pub theirs: KeySet,
}

impl Keys {
    /// Fresh keys in the test bed's scratch directory.
    pub fn generate(bed: &TestBed) -> Result<Self> {
        let make = |dir: &str, name: &str| {
            let dir = bed.work().join(dir);
            secureboot::generate_keys(&dir, name).map_err(|e| Error::Io {
                action: "generate Secure Boot keys (flipside_image_builder::secureboot) in",
                path: dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })
        };
        Ok(Self {
            ours: make("keys", "flipside test")?,
            theirs: make("other-keys", "someone else")?,
        })
    }
}

/// The keys that sign the chain world's UKIs ([`crate::chain`]): made once per assets
/// directory (`secure-boot-keys/`) and kept, as a publisher keeps its Secure Boot keys.
pub fn chain_keys(assets_dir: &Path) -> Result<KeySet> {
    let dir = assets_dir.join("secure-boot-keys");
    if dir.join("complete").exists() {
        return Ok(KeySet::in_dir(&dir));
    }
    let tmp = assets_dir.join(format!("secure-boot-keys.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    secureboot::generate_keys(&tmp, "flipside chain").map_err(|e| Error::Io {
        action: "generate Secure Boot keys (flipside_image_builder::secureboot) in",
        path: tmp.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    fs::write(tmp.join("complete"), "").map_err(Error::io("write", tmp.join("complete")))?;
    // Another test may have made them meanwhile: theirs stay.
    if fs::rename(&tmp, &dir).is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    Ok(KeySet::in_dir(&dir))
}

/// Writes `out`: `image` signed with `key` (`flipside_image_builder::secureboot::sign`).
pub fn sign(key: &SigningKey, image: &Path, out: &Path) -> Result<PathBuf> {
    secureboot::sign(key, image, out).map_err(|e| Error::Io {
        action: "sign (flipside_image_builder::secureboot)",
        path: image.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(out.to_path_buf())
}

/// Secure Boot OVMF for one VM: the secboot code and a fresh variable store with `keys`'s PK,
/// KEK and db enrolled and Secure Boot on.
pub fn firmware(bed: &TestBed, vm: &str, keys: &KeySet) -> Result<Firmware> {
    let code = PathBuf::from(OVMF_CODE_SECBOOT);
    if !code.is_file() {
        return Err(Error::ToolMissing {
            tool: OVMF_CODE_SECBOOT.into(),
            package: "ovmf".into(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let vars = bed.work().join(format!("{vm}.OVMF_VARS.fd"));
    let _ = fs::remove_file(&vars);
    tool::run(
        Command::new(virt_fw_vars())
            .arg("--input")
            .arg(uefi::OVMF_VARS)
            .arg("--output")
            .arg(&vars)
            .arg("--set-pk")
            .arg(OWNER_GUID)
            .arg(&keys.pk.cert)
            .arg("--add-kek")
            .arg(OWNER_GUID)
            .arg(&keys.kek.cert)
            .arg("--add-db")
            .arg(OWNER_GUID)
            .arg(&keys.db.cert)
            .arg("--secure-boot"),
        "python3-virt-firmware (or pip install virt-firmware; scripts/setup.sh does)",
    )?;
    Ok(Firmware {
        code,
        vars,
        secure_boot: true,
    })
}

/// `image` with one byte of its `.cmdline` changed after signing: the first occurrence of
/// `find` in the file replaced by `replace` (same length), as an attacker who wants another
/// root hash would. Pure.
pub fn alter_cmdline(image: &[u8], find: &str, replace: &str) -> Option<Vec<u8>> {
    assert_eq!(find.len(), replace.len(), "the section keeps its size");
    let at = image
        .windows(find.len())
        .position(|w| w == find.as_bytes())?;
    let mut out = image.to_vec();
    out[at..at + find.len()].copy_from_slice(replace.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_cmdline_replaces_in_place() {
        let image = b"MZ....console=ttyS0 quiet....";
        let out = alter_cmdline(image, "quiet", "QUIET").unwrap();
        assert_eq!(out.len(), image.len());
        assert_eq!(&out, b"MZ....console=ttyS0 QUIET....");
        assert_eq!(alter_cmdline(image, "nothere", "NOTHERE"), None);
    }
}
