//! A/B boot state in GPT attribute bits, in the layout ChromeOS and Bottlerocket use (priority
//! bits 48-51, tries 52-55, successful 56), and a GPT codec that rewrites it safely.
//!
//! Pure core, I/O at the edge:
//! - [`BootAttrs`], [`Slot`] and [`BootState`] hold state and its transitions (firmware's
//!   [`BootState::select`], the updater's `clear_for_write` / `arm_for_trial` / `mark_good` /
//!   `mark_bad` / `rollback`); none of them touches a disk.
//! - [`gpt`] reads and checks both table copies and writes them back in a power-cut-safe order;
//!   [`disk`] maps slots to partitions and is the one place that commits a state.
//! - The `flipside-select` binary runs [`BootState::select`] from an initramfs.

pub mod attrs;
pub mod device;
pub mod devpath;
pub mod disk;
pub mod error;
pub mod gpt;
pub mod slot;
pub mod state;

pub use attrs::BootAttrs;
pub use device::{BlockDevice, CutMode, Disk, PowerCut};
pub use disk::{commit, load, SlotLayout};
pub use error::{Error, Result};
pub use gpt::{CopyKind, CopyProblem, GptTable, PartitionEntry, PartitionSelector, TableHealth};
pub use slot::Slot;
pub use state::{BootState, Selection, SlotPartition, SlotState, PRIORITY_FALLBACK, PRIORITY_TOP};
