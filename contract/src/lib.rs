//! The contract between flipside's image builder and the device: data types and their
//! validation only, no I/O.
//!
//! - [`release`]: what a built image is (name, monotonic version, hardware id, files) and the
//!   custom fields its TUF targets carry.
//! - [`rollout`]: channels and rollout waves, who may take a release and when.
//! - [`arch`]: the architecture an image is built for.
//! - [`index`]: the bundle's chunk index, the format a device verifies every chunk against.

pub mod arch;
pub mod index;
pub mod release;
pub mod rollout;
