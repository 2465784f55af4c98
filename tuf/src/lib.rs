//! The Update Framework (specification 1.0.x) for flipside: metadata types, canonical JSON,
//! keys (signing through the [`Signer`] trait, ed25519 key files; ed25519, ECDSA P-256 and RSA verification), delegations, and the
//! client workflow. What is implemented from section 5 and what is not: `README.md`.
//!
//! Verification is pure (bytes, keys and a clock value in; a verdict out) so that the image
//! builder's repository and the device's client share it. Signatures are always checked over
//! the canonical JSON of the `signed` object exactly as received, never over a re-serialisation
//! of the typed structs, so fields this version does not know cannot break a signature.

pub mod canonical;
pub mod client;
pub mod delegation;
pub mod error;
pub mod expiry;
pub mod keys;
pub mod metadata;
pub mod sign;
pub mod trusted;
pub mod verify;

pub use error::Error;
pub use keys::{KeyId, PublicKey, SigningKey};
pub use metadata::{
    DelegatedRole, Delegations, MetaFile, Metadata, Role, RoleKeys, RoleMetadata, Root, Signature,
    Snapshot, SuccinctRoles, TargetFile, Targets, Timestamp, SPEC_VERSION,
};
pub use sign::Signer;
pub use trusted::{Origin, TimestampUpdate, TrustedSet};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
