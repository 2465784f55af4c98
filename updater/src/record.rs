//! The state directory: what happened last, what each slot holds, the chunk index of each
//! slot's image (the seed of a delta), and the journal of an install in progress. Every file
//! is written atomically with `flipside-atomic-file`: a temporary file with an unpredictable
//! name in the same directory, fsync, rename, fsync of the directory.
//!
//! ```text
//! STATE_DIR/last.json          Outcome of the last update step (installed, committed, ...)
//! STATE_DIR/slot-a.json        SlotRecord: the release written into slot a
//! STATE_DIR/slot-a.index       its chunk index
//! STATE_DIR/slot-a.kernel.index  the chunk index of its kernel part (kernel partitions only)
//! STATE_DIR/install.json       Journal: an install into a slot has started and not finished
//! STATE_DIR/floor.json         Floor: the highest version ever committed (anti-rollback)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flipside_bootloader_hooks::Slot;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::floor::Floor;

/// The anti-rollback floor's file.
const FLOOR: &str = "floor.json";

/// Largest state file read.
const MAX_STATE_FILE: u64 = 256 << 20;

/// What an update step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// An image was written, verified and armed for a trial boot.
    Installed,
    /// An install failed; the slot was left unbootable.
    InstallFailed,
    /// The trial slot passed its health checks and was marked good.
    Committed,
    /// The trial slot was marked bad (health check failed or by hand).
    MarkedBad,
    /// The operator switched to the other slot.
    RolledBack,
    /// The armed slot used up its trial boots without being marked good; the bootloader fell
    /// back (seen afterwards from the old slot: [`crate::fallback`]).
    FellBack,
}

impl Event {
    /// The name `status` prints (as in the JSON).
    pub const fn name(self) -> &'static str {
        match self {
            Event::Installed => "installed",
            Event::InstallFailed => "install-failed",
            Event::Committed => "committed",
            Event::MarkedBad => "marked-bad",
            Event::RolledBack => "rolled-back",
            Event::FellBack => "fell-back",
        }
    }
}

/// The last update step, shown by `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub time: DateTime<Utc>,
    pub event: Event,
    /// The slot acted on (`a` or `b`).
    pub slot: String,
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub display_version: Option<String>,
    /// Why, in words (the error message of a failure).
    pub detail: String,
    /// Exit class of a failure.
    #[serde(default)]
    pub class: Option<String>,
}

/// The release written into a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    pub name: String,
    pub version: u64,
    pub display_version: String,
    pub hardware_id: String,
    pub image_length: u64,
    pub image_sha256: String,
    pub installed_at: DateTime<Utc>,
    /// The kernel part written into the slot's kernel partition, if the release had one and
    /// the device has kernel partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelRecord>,
    /// The publisher allowed this release as a rollback: committing it sets the floor to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_rollback: bool,
}

/// The kernel part written into a slot's kernel partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    /// `uname -r` of the kernel in the slot's UKI.
    pub kernel_release: String,
    pub image_length: u64,
    pub image_sha256: String,
}

/// An install that has started writing into a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub slot: String,
    pub bundle_target: String,
    pub version: u64,
    pub image_sha256: String,
    pub started: DateTime<Utc>,
    /// Image bytes of each part (`root`, `kernel`) synced to the partition so far: what a power
    /// cut cannot take away (a resume still re-hashes every chunk it keeps).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub synced: BTreeMap<String, u64>,
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: &Path) -> StateDir {
        StateDir {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn slot_file(slot: Slot, ext: &str) -> String {
        format!("slot-{}.{ext}", slot.name())
    }

    pub fn last(&self) -> Result<Option<Outcome>> {
        self.read_json("last.json")
    }

    pub fn set_last(&self, outcome: &Outcome) -> Result<()> {
        self.write_json("last.json", outcome)
    }

    pub fn slot_record(&self, slot: Slot) -> Result<Option<SlotRecord>> {
        self.read_json(&Self::slot_file(slot, "json"))
    }

    /// Records what `slot` holds, with its index and its kernel part's index (the record is
    /// written last: it is what says the slot is complete).
    pub fn set_slot(
        &self,
        slot: Slot,
        record: &SlotRecord,
        index: &[u8],
        kernel_index: Option<&[u8]>,
    ) -> Result<()> {
        self.write_atomic(&Self::slot_file(slot, "index"), index)?;
        if let Some(kernel_index) = kernel_index {
            self.write_atomic(&Self::slot_file(slot, "kernel.index"), kernel_index)?;
        }
        self.write_json(&Self::slot_file(slot, "json"), record)
    }

    /// Forgets what `slot` held (before it is overwritten).
    pub fn clear_slot(&self, slot: Slot) -> Result<()> {
        self.remove(&Self::slot_file(slot, "json"))?;
        self.remove(&Self::slot_file(slot, "kernel.index"))?;
        self.remove(&Self::slot_file(slot, "index"))
    }

    /// Where the chunk index of `slot`'s image is kept.
    pub fn slot_index_path(&self, slot: Slot) -> PathBuf {
        self.file(&Self::slot_file(slot, "index"))
    }

    /// The stored chunk index of `slot`'s image, if any (at most `cap` bytes are read).
    pub fn slot_index(&self, slot: Slot, cap: u64) -> Result<Option<Vec<u8>>> {
        self.read_bytes(&Self::slot_file(slot, "index"), cap)
    }

    /// The stored chunk index of `slot`'s kernel part, if any (at most `cap` bytes are read).
    pub fn kernel_index(&self, slot: Slot, cap: u64) -> Result<Option<Vec<u8>>> {
        self.read_bytes(&Self::slot_file(slot, "kernel.index"), cap)
    }

    /// The anti-rollback floor ([`crate::floor`]), if one was ever stored.
    pub fn floor(&self) -> Result<Option<Floor>> {
        self.read_json(FLOOR)
    }

    pub fn set_floor(&self, floor: Floor) -> Result<()> {
        self.write_json(FLOOR, &floor)
    }

    /// Where the floor is kept (for messages).
    pub fn floor_path(&self) -> PathBuf {
        self.file(FLOOR)
    }

    /// The journal of an unfinished install; one naming a slot other than `a` or `b` is corrupt.
    pub fn journal(&self) -> Result<Option<Journal>> {
        let journal: Option<Journal> = self.read_json("install.json")?;
        if let Some(j) = &journal {
            if Slot::ALL.iter().all(|s| s.name() != j.slot) {
                return Err(Error::StateParse {
                    path: self.file("install.json"),
                    source: serde::de::Error::custom(format!(
                        "it names slot {:?}, which is neither a nor b",
                        j.slot
                    )),
                });
            }
        }
        Ok(journal)
    }

    pub fn set_journal(&self, journal: &Journal) -> Result<()> {
        self.write_json("install.json", journal)
    }

    pub fn clear_journal(&self) -> Result<()> {
        self.remove("install.json")
    }

    fn io(&self, op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::StateIo { op, path, source }
    }

    fn read_bytes(&self, name: &str, cap: u64) -> Result<Option<Vec<u8>>> {
        let path = self.file(name);
        match crate::file::read_capped(&path, cap) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("read", &path)(e)),
        }
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let Some(bytes) = self.read_bytes(name, MAX_STATE_FILE)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::StateParse {
                path: self.file(name),
                source,
            })
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Internal {
            what: format!("serialising {name}: {e}"),
        })?;
        bytes.push(b'\n');
        self.write_atomic(name, &bytes)
    }

    /// Replaces `name` atomically and durably (`flipside-atomic-file`: an unpredictable
    /// temporary name, never opened through a link planted in the state directory).
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(self.io("create", &self.dir))?;
        let path = self.file(name);
        flipside_atomic_file::write(&path, bytes).map_err(|e| Error::StateIo {
            op: e.step.action(),
            path,
            source: e.source,
        })
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.file(name);
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("remove", &path)(e)),
        }
    }

    fn sync_dir(&self) -> Result<()> {
        flipside_atomic_file::sync_dir(&self.dir).map_err(|e| Error::StateIo {
            op: e.step.action(),
            path: e.path,
            source: e.source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_removal() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(&t.path().join("state"));
        assert_eq!(s.last().unwrap(), None);
        let o = Outcome {
            time: Utc::now(),
            event: Event::Installed,
            slot: "b".into(),
            version: Some(3),
            display_version: Some("3.0".into()),
            detail: "trial armed".into(),
            class: None,
        };
        s.set_last(&o).unwrap();
        assert_eq!(s.last().unwrap(), Some(o));
        let r = SlotRecord {
            name: "kiosk".into(),
            version: 3,
            display_version: "3.0".into(),
            hardware_id: "pc".into(),
            image_length: 10,
            image_sha256: "00".repeat(32),
            installed_at: Utc::now(),
            kernel: Some(KernelRecord {
                kernel_release: "6.1.0-57-amd64".into(),
                image_length: 20,
                image_sha256: "11".repeat(32),
            }),
            allow_rollback: false,
        };
        s.set_slot(Slot::B, &r, b"index", Some(b"kernel index"))
            .unwrap();
        assert_eq!(s.slot_record(Slot::B).unwrap(), Some(r));
        assert_eq!(s.slot_index(Slot::B, 100).unwrap(), Some(b"index".to_vec()));
        assert_eq!(
            s.kernel_index(Slot::B, 100).unwrap(),
            Some(b"kernel index".to_vec())
        );
        assert!(s.slot_index(Slot::B, 2).is_err());
        assert_eq!(s.slot_record(Slot::A).unwrap(), None);
        assert_eq!(s.kernel_index(Slot::A, 100).unwrap(), None);
        s.clear_slot(Slot::B).unwrap();
        assert_eq!(s.slot_record(Slot::B).unwrap(), None);
        assert_eq!(s.kernel_index(Slot::B, 100).unwrap(), None);
        s.clear_slot(Slot::B).unwrap();
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(s.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("last.json")]);
    }

    #[test]
    fn a_link_planted_at_the_old_temporary_name_is_not_written_through() {
        // The attack: a link at `.last.json.tmp` pointing at a file the updater may write
        // (it runs as root) had its target overwritten by the next record.
        let t = tempfile::tempdir().unwrap();
        let state = t.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, state.join(".last.json.tmp")).unwrap();
        let s = StateDir::new(&state);
        s.write_atomic("last.json", b"{}").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(state.join("last.json")).unwrap(), b"{}");
    }

    #[test]
    fn corrupt_file_is_a_state_error() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("install.json"), b"{").unwrap();
        let s = StateDir::new(t.path());
        assert!(matches!(s.journal(), Err(Error::StateParse { .. })));
    }
}
