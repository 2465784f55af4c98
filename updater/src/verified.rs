//! What this boot has verified of the running slot. A delta copies chunks from the running
//! slot; checking each copied chunk re-reads and re-hashes most of that slot at every install.
//! Instead, the first install of a boot reads the running part whole, past the page cache, and
//! checks it against the image its index describes; the result is recorded under
//! `device.run_dir` (`/run/flipside`, a tmpfs: gone at the next boot) with the image's sha256,
//! the disk and the boot id. Later installs of the same boot trust a matching record and copy
//! without re-hashing, unless `update.running_check = "every-install"`.
//!
//! Trusting a copy never weakens the install's guarantee: the written slot is still read back
//! whole and checked before it is armed. A running slot changed under the record (something
//! wrote its block device) fails that read-back, and the record is then dropped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::device::Region;

/// Where the kernel says which boot this is.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// How often the running slot is re-hashed before chunks are copied from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunningCheck {
    /// Once per boot: the first install reads and checks the running part whole, later ones
    /// trust that check.
    #[default]
    OncePerBoot,
    /// At every install: each copied chunk is re-hashed before it is written.
    EveryInstall,
}

/// The record of one verification: this disk's running part held this image in this boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    pub disk: PathBuf,
    /// sha256 of the image, hex.
    pub image_sha256: String,
    pub boot_id: String,
}

/// Whether copies from the running part may skip their hash, pure: the policy allows it, and
/// the record says the same disk's part was found to hold the same image in this very boot.
pub fn trusted(policy: RunningCheck, recorded: Option<&Verified>, now: &Verified) -> bool {
    policy == RunningCheck::OncePerBoot && recorded == Some(now)
}

/// The records of this boot's verifications, one file per region.
#[derive(Clone, Debug)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    pub fn new(dir: &Path) -> RunDir {
        RunDir {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, region: Region) -> PathBuf {
        (self.dir).join(format!(
            "verified-{}-{}.json",
            region.slot.name(),
            region.part.name()
        ))
    }

    /// The record of `region`, if one was written this boot and is readable.
    pub fn get(&self, region: Region) -> Option<Verified> {
        let bytes = crate::file::read_capped(&self.path(region), 4096).ok()?;
        serde_json::from_slice(&bytes)
            .inspect_err(|e| log::warn!("ignoring {}: {e}", self.path(region).display()))
            .ok()
    }

    /// Records a verification. A run directory that cannot be written only costs the next
    /// install a re-hash, so a failure warns.
    pub fn set(&self, region: Region, verified: &Verified) {
        let path = self.path(region);
        let result = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let bytes = serde_json::to_vec(verified).map_err(std::io::Error::other)?;
            Ok(flipside_atomic_file::write(&path, &bytes)?)
        });
        if let Err(e) = result {
            log::warn!(
                "cannot record the running slot's check in {}: {e}; the next install checks it again",
                path.display()
            );
        }
    }

    /// Forgets the record of `region` (its copies turned out wrong).
    pub fn forget(&self, region: Region) {
        let path = self.path(region);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// This boot's id; empty when the kernel does not say (the run directory's tmpfs alone then
/// bounds a record to the boot).
pub fn boot_id() -> String {
    std::fs::read_to_string(BOOT_ID)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flipside_bootloader_hooks::Slot;

    fn v(disk: &str, sha: &str, boot: &str) -> Verified {
        Verified {
            disk: disk.into(),
            image_sha256: sha.into(),
            boot_id: boot.into(),
        }
    }

    #[test]
    fn trusted_only_for_the_same_disk_image_and_boot_when_the_policy_allows() {
        let now = v("/dev/vda", "aa", "boot-1");
        let once = RunningCheck::OncePerBoot;
        assert!(trusted(once, Some(&now), &now));
        assert!(!trusted(once, None, &now), "never verified this boot");
        for other in [
            v("/dev/vdb", "aa", "boot-1"),
            v("/dev/vda", "bb", "boot-1"),
            v("/dev/vda", "aa", "boot-2"),
        ] {
            assert!(!trusted(once, Some(&other), &now), "{other:?}");
        }
        assert!(!trusted(RunningCheck::EveryInstall, Some(&now), &now));
        assert_eq!(RunningCheck::default(), once);
    }

    #[test]
    fn records_round_trip_per_region_and_are_forgotten() {
        let t = tempfile::tempdir().unwrap();
        let run = RunDir::new(&t.path().join("run"));
        let root = Region::from(Slot::A);
        let kernel = Region::kernel(Slot::A);
        assert_eq!(run.get(root), None);
        let rec = v("/dev/vda", "aa", "boot-1");
        run.set(root, &rec);
        assert_eq!(run.get(root), Some(rec));
        assert_eq!(run.get(kernel), None);
        assert_eq!(run.get(Region::from(Slot::B)), None);
        run.forget(root);
        run.forget(root);
        assert_eq!(run.get(root), None);
        std::fs::write(t.path().join("run/verified-a-root.json"), b"{").unwrap();
        assert_eq!(run.get(root), None, "a damaged record is no record");
    }

    #[test]
    fn the_boot_id_is_read() {
        assert_eq!(boot_id().len(), 36, "a UUID: {}", boot_id());
    }
}
