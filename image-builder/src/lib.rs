//! flipside's image builder: store closures in, reproducible root-filesystem images, chunked
//! bundles and a signed static TUF repository out.
//!
//! I/O lives at the edges (`store`, `rootfs`, `repo`); the rules (hashing, closure, chunk
//! index, metadata) are pure functions the tests exercise without a disk where they can.

pub mod bzimage;
pub mod commands;
pub mod error;
pub mod image;
pub mod progress;
pub mod rootfs;
pub mod secureboot;
pub mod system;
pub mod uki;

pub use error::{Class, Error};
