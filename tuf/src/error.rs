//! The one error type of flipside-tuf: a variant per failure class, each with its context.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::metadata::Role;

/// Every way reading, checking or signing TUF metadata can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not JSON of the expected shape.
    #[error(
        "{what} is not valid TUF metadata: {source}; the file is corrupt or not what its name says"
    )]
    Parse {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The value cannot be written as canonical JSON (a float, for instance).
    #[error("{what} cannot be written as canonical JSON: {source}; TUF metadata may hold only integers, strings, booleans, null, arrays and objects")]
    Canonical {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// `_type` names another role than the one expected.
    #[error("expected {expected} metadata but `_type` is {found:?}; the file is misnamed or was substituted")]
    WrongType { expected: Role, found: String },
    /// Well-formed JSON that breaks a rule of the specification.
    #[error("invalid {role} metadata: {why}")]
    Invalid { role: Role, why: String },
    /// A role's threshold is 0, which would trust unsigned metadata.
    #[error("the {role} role has threshold 0; a threshold must be at least 1")]
    ZeroThreshold { role: Role },
    /// The `signatures` array names one key id twice, which the specification forbids: the
    /// whole file is refused, not just the repeat ignored.
    #[error("{role} metadata has two signatures with key id {keyid}; key ids in `signatures` must be unique, the file is malformed or was tampered with")]
    DuplicateSignature { role: Role, keyid: crate::KeyId },
    /// Fewer distinct authorised keys signed than the threshold requires.
    #[error("{role} metadata has {valid} valid signature(s) from distinct authorised keys, {threshold} required; it was not signed by enough of the role's keys or was modified after signing")]
    ThresholdNotMet {
        role: Role,
        threshold: u64,
        valid: usize,
    },
    /// The metadata expired at or before the reference time.
    #[error("{role} metadata expired at {expires} (now {now}); the repository must re-sign it")]
    Expired {
        role: Role,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// A version differs from the one required (rollback, mix-and-match, a skipped root).
    #[error("{role} metadata has version {found}, expected {expected}")]
    VersionMismatch {
        role: Role,
        expected: u64,
        found: u64,
    },
    /// A version went back from the one trusted (rollback attack).
    #[error(
        "{role} metadata version {new} is below the trusted version {trusted}; refusing a rollback"
    )]
    Rollback { role: Role, trusted: u64, new: u64 },
    /// Metadata was offered before the metadata it depends on (a client bug).
    #[error("cannot update {role} metadata now: {why}")]
    OutOfOrder { role: Role, why: &'static str },
    /// A file's length differs from its signed length.
    #[error("{what} is {found} bytes long, its signed length is {expected}")]
    LengthMismatch {
        what: String,
        expected: u64,
        found: u64,
    },
    /// A file's digest differs from its signed digest.
    #[error("{what} has {algorithm} {found}, its signed {algorithm} is {expected}")]
    HashMismatch {
        what: String,
        algorithm: String,
        expected: String,
        found: String,
    },
    /// No hash this implementation can check was given where one is required.
    #[error("{what} has no sha256 or sha512 hash to check; refusing it rather than trusting it unchecked")]
    MissingHash { what: String },
    /// A private key file cannot be read or written.
    #[error("key file {}: {source}", path.display())]
    KeyIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A private key file is malformed or its parts disagree.
    #[error("key file {}: {why}", path.display())]
    KeyFile { path: PathBuf, why: String },
    /// A signer (a hardware token, say) could not make a signature.
    #[error("key {key_id} could not sign: {source}")]
    Signer {
        key_id: crate::KeyId,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A role name this implementation does not know.
    #[error("unknown role {name:?}; expected root, targets, snapshot or timestamp")]
    UnknownRole { name: String },
}
