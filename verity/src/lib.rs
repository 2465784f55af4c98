//! dm-verity for flipside's root images.
//!
//! - [`tree`]: the hash tree over a root image, in the format of `veritysetup format
//!   --no-superblock` (version 1, sha256, 4096-byte blocks), appended to the image: one file,
//!   one TUF target, streamed and written to the slot like any image. Pure.
//! - [`param`]: the `flipside.verity=` word of the kernel command line that carries the root
//!   hash, the salt, the data size and what to do on corruption, and the device-mapper table
//!   made from it. It lives in the UKI's `.cmdline`, covered by the Secure Boot signature. Pure.
//! - [`dm`]: the device-mapper ioctls that create, load and remove a verity device (Linux).
//!
//! The binary `flipside-verity` opens a slot's root through dm-verity from the initramfs.

pub mod dm;
pub mod param;
pub mod tree;

pub use param::{OnCorruption, VerityParams};
pub use tree::{Tree, BLOCK_SIZE};
