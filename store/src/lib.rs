//! Store closures for flipside's image builder.
//!
//! An image holds a closure: a set of store paths named `<storedir>/<hash>-<name>` whose hash
//! covers their contents and everything they reference. Two sources, one model
//! ([`StorePath`], [`Closure`]):
//!
//! - [`builtin`]: a content-addressed store for teams without Nix; its paths appear inside
//!   images under `/flipside/store`.
//! - [`nix`]: closures of `/nix/store` paths, from `nix path-info` or a `closureInfo`.
//!
//! [`resolve_roots`] turns a mix of both into one closure, [`materialize`] lays each path into
//! an image tree (checking its content hash), and [`diff`] tells what an update changes.
//!
//! Pure rules ([`base32`], [`hash`], [`nar`], [`scan`], [`path`], [`closure`], [`diff`]) are
//! separate from the modules that touch files or run tools.

pub mod base32;
pub mod builtin;
pub mod closure;
pub mod diff;
mod error;
pub mod hash;
mod materialize;
pub mod nar;
pub mod nix;
pub mod path;
pub mod release;
pub mod resolve;
pub mod scan;
mod tree;

pub use builtin::BuiltinStore;
pub use closure::{Closure, StorePath};
pub use diff::{diff, ClosureDiff};
pub use error::{Error, Result};
pub use materialize::{materialize, verify};
pub use path::{BUILTIN_STORE_DIR, NIX_STORE_DIR};
pub use resolve::{resolve, resolve_roots, NixSource};
