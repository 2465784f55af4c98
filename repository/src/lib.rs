//! A standard static TUF repository of flipside releases, kept as plain files that any web
//! server can serve (layout in [`layout`], keys in [`keys`]).
//!
//! Every operation takes the publisher lock, loads and fully verifies the current repository,
//! builds its new metadata without I/O ([`plan`]), verifies the new state with the same code a
//! client runs, and only then publishes, atomically and in a servable order ([`publish`]).
//! Operations take `now` so that tests control the clock.

pub mod detached;
pub mod error;
pub mod freshness;
pub mod keys;
pub mod layout;
mod lock;
pub mod plan;
pub mod publish;
pub mod release;
mod repository;
pub mod settings;
pub mod signer;
pub mod state;

pub use error::Error;
pub use keys::KeyDir;
pub use plan::Versions;
pub use publish::FaultHook;
pub use repository::{
    unneeded, AddOptions, Amend, FileEntry, NewKey, NewerRelease, Pruned, Published, Repository,
    RootChange, DEFAULT_GRACE,
};
pub use settings::{InitSettings, Policy, RoleSettings};
pub use signer::KeySpec;
pub use state::Trusted;
