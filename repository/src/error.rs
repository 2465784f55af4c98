//! The one error type of flipside-repository: a variant per failure class, each saying what
//! happened and what to do.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use flipside_tuf::{KeyId, Role};

/// Every way a repository operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory holds no repository.
    #[error("{} is not a flipside TUF repository (no metadata/1.root.json); create one with `flipside-build repo init`", path.display())]
    NotARepository { path: PathBuf },
    /// `init` found an existing repository.
    #[error("{} already holds a repository; `repo init` only creates new ones (use `repo resign` or `repo rotate-key` to change it)", path.display())]
    AlreadyExists { path: PathBuf },
    /// Another publisher holds the repository lock.
    #[error("another flipside-build repo command is publishing to this repository (lock {} is held); wait for it to finish", path.display())]
    Locked { path: PathBuf },
    /// A metadata file is unreadable, malformed or fails verification.
    #[error("repository metadata {} fails verification: {source}; restore the repository from a backup or re-publish it", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: flipside_tuf::Error,
    },
    /// Files of the repository disagree with each other or are missing.
    #[error("the repository is inconsistent: {why} ({}); restore it from a backup", path.display())]
    Inconsistent { path: PathBuf, why: String },
    /// Root or targets metadata has expired; the command that renews it is named.
    #[error("the {role} metadata expired at {expires} (now {now}); renew it with `flipside-build repo resign --role {role}`{}", if *role == Role::Root || *role == Role::Targets { " (needs the offline keys)" } else { "" })]
    Expired {
        role: Role,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// A role of the state about to be published expires within the safety margin; nothing
    /// was published.
    #[error("refusing to publish: the {role} metadata expires at {expires}, less than {} after now ({now}); devices would refuse it soon after; renew it with `flipside-build repo resign --role {role}`{}", humantime_hours(crate::freshness::SAFETY_MARGIN), if *role == Role::Root || *role == Role::Targets { " (needs the offline keys)" } else { "" })]
    ExpiresTooSoon {
        role: Role,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// The clock of this machine is behind the last publish of this repository: every role
    /// renewed now would expire early for devices; nothing was published.
    #[error("refusing to publish: the clock of this machine (now {now}) is behind the last publish of this repository ({published_at}); metadata signed now would expire early and devices would refuse it: set the clock right (timedatectl, chrony) and run the command again")]
    ClockBehind {
        published_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// A key file sits in a role's directory but root does not list it for any role.
    #[error("key file {} holds key {key_id}, which root does not list for the {role} role; it may be a retired key: move it out of the keys directory", path.display())]
    KeyNotInRoot {
        path: PathBuf,
        role: Role,
        key_id: KeyId,
    },
    /// A key file sits in the directory of one role but root lists it for another.
    #[error("key file {} is in the {dir_role} keys directory but holds a key of the {key_role} role; move it to {key_role}/", path.display())]
    WrongRoleKey {
        path: PathBuf,
        dir_role: Role,
        key_role: Role,
        key_id: KeyId,
    },
    /// Fewer keys of a role are at hand than its threshold.
    #[error("signing {role} metadata needs {threshold} of its keys, {found} found in {}; put the {role} key files there (root and targets keys are kept offline)", dir.display())]
    NotEnoughKeys {
        role: Role,
        threshold: u64,
        found: usize,
        dir: PathBuf,
    },
    /// A key file cannot be read, written or parsed.
    #[error("{source}; check the keys directory")]
    KeyFile {
        #[source]
        source: flipside_tuf::Error,
    },
    /// A key spec (a PKCS#11 URI or a `.pkcs11` file) does not name a key.
    #[error("key {spec}: {why}")]
    KeySpec { spec: String, why: String },
    /// The PKCS#11 module or token failed an operation.
    #[error("PKCS#11 key {spec}: {what} failed: {source}; check the module path, the token label and the PIN")]
    Pkcs11 {
        spec: String,
        what: &'static str,
        #[source]
        source: cryptoki::error::Error,
    },
    /// The token has no usable key of the URI's label or id.
    #[error("PKCS#11 key {spec}: {why}")]
    Pkcs11Key { spec: String, why: String },
    /// The PIN of a token key cannot be read from its source.
    #[error("PKCS#11 key {spec}: {why}")]
    Pkcs11Pin { spec: String, why: String },
    /// A key (a token, typically) failed to sign; nothing was published.
    #[error("cannot sign {role} metadata: {source}; check the token and run the command again")]
    Sign {
        role: Role,
        #[source]
        source: flipside_tuf::Error,
    },
    /// Prepared metadata no longer fits the repository (it changed since `repo prepare`);
    /// nothing was published.
    #[error("the prepared {role} metadata no longer fits the repository: {why}; nothing was published: run `flipside-build repo prepare` again and collect new signatures")]
    PreparedStale { role: Role, why: String },
    /// A prepared file is not TUF metadata of a top-level role.
    #[error("prepared metadata {}: {why}; make it with `flipside-build repo prepare`", path.display())]
    Prepared { path: PathBuf, why: String },
    /// Prepared metadata that expired before it was signed: it can never be published.
    #[error("the prepared {role} metadata expired at {expires} (now {now}) and can never be published; nothing was signed: prepare it again with `flipside-build repo prepare`")]
    PreparedExpired {
        role: Role,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// A detached signature is malformed or signs other metadata than the prepared file.
    #[error("signature file {}: {why}; sign the prepared file being merged with `flipside-build repo sign-detached`", path.display())]
    SignatureMismatch { path: PathBuf, why: String },
    /// Two signatures of one key; nothing was published.
    #[error("signature file {} repeats a signature of key {key_id}; each key signs once: leave out one of the two files", path.display())]
    DuplicateSignature { path: PathBuf, key_id: KeyId },
    /// A signature of a key that may not sign the role; nothing was published.
    #[error("signature file {} is by key {key_id}, which root does not list for the {role} role (a revoked key, or a key of another role); nothing was published: leave it out and collect a signature from a {role} key", path.display())]
    UnknownSigningKey {
        path: PathBuf,
        role: Role,
        key_id: KeyId,
    },
    /// A signature that does not verify; nothing was published.
    #[error("signature file {} by key {key_id} does not verify over the prepared {role} metadata (signed over other bytes, or corrupted); nothing was published: sign the prepared file again", path.display())]
    BadSignature {
        path: PathBuf,
        role: Role,
        key_id: KeyId,
    },
    /// Fewer valid signatures than a threshold; nothing was published.
    #[error("the prepared {role} metadata has {valid} of the {threshold} signatures {authority} requires for {role}; nothing was published: collect signatures of {} with `flipside-build repo sign-detached` and merge again", missing.join(", "))]
    ThresholdNotMet {
        role: Role,
        authority: &'static str,
        valid: usize,
        threshold: u64,
        missing: Vec<String>,
    },
    /// `release.json` is missing or not valid JSON of a release.
    #[error("cannot read the release description {}: {source}; point at the output directory of `flipside-build image`", path.display())]
    ReleaseJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `release.json` breaks a rule of the contract.
    #[error("invalid release description {}: {source}", path.display())]
    Release {
        path: PathBuf,
        #[source]
        source: flipside_contract::release::Error,
    },
    /// The bundle or index differs from what `release.json` says.
    #[error("{} does not match release.json: {why}; rebuild the release with `flipside-build image`", path.display())]
    ReleaseMismatch { path: PathBuf, why: String },
    /// A target of this name exists with other content.
    #[error("target {name} is already published with sha256 {existing}, the release has {new}; a published name never changes content: build the release with a new version")]
    TargetConflict {
        name: String,
        existing: String,
        new: String,
    },
    /// A target of this name exists with the same content but other flipside fields (say the
    /// release was published before without its kernel part): publishing the rest would leave
    /// targets of one release that disagree.
    #[error("target {name} is already published with other flipside fields ({why}); a published release never changes: build it with a new version")]
    CustomConflict { name: String, why: String },
    /// `withdraw` or `amend` of a release the targets metadata does not list.
    #[error("release {version} of {name} is not published (or was withdrawn already): nothing changed; check the name and version against the targets metadata")]
    NoSuchRelease { name: String, version: u64 },
    /// A rollout schedule or a change of it that cannot be followed; nothing was published.
    #[error("invalid rollout: {why}")]
    Rollout { why: String },
    /// Keys, thresholds or expiry settings are out of range.
    #[error("invalid settings: {why}")]
    Settings { why: String },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Making new metadata failed (cannot happen with valid input; a bug).
    #[error("cannot produce {role} metadata: {source}")]
    Produce {
        role: Role,
        #[source]
        source: flipside_tuf::Error,
    },
    /// The new repository state failed its own verification before publishing; nothing was
    /// published.
    #[error("the new repository state failed verification, nothing was published: {source}")]
    SelfCheck {
        #[source]
        source: Box<Error>,
    },
    /// Publishing failed and undoing the partial publication failed too.
    #[error("publishing failed ({original}) and undoing it failed at {}: {source}; the repository may be inconsistent: restore it from a backup", path.display())]
    RollbackFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        original: Box<Error>,
    },
}

/// "1 hour", "2 hours": the margin as the messages print it.
fn humantime_hours(d: chrono::TimeDelta) -> String {
    match d.num_hours() {
        1 => "1 hour".to_string(),
        n => format!("{n} hours"),
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
