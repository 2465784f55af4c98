//! The crate's one error type: a variant per failure class, with the path, URL, slot or value
//! it concerns and a message that says what to do. [`Error::class`] maps each to an exit code.

use std::io;
use std::path::PathBuf;

use flipside_bootloader_hooks::{Error as BootError, Slot};
use flipside_contract::index::Error as IndexError;

use crate::exit::ExitClass;

/// Everything that can make a command fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: see flipside --help")]
    Usage { what: String },

    #[error("cannot read the configuration {}: {source}; pass --config FILE or create it", path.display())]
    ConfigRead { path: PathBuf, source: io::Error },

    #[error("invalid configuration {}: {source}", path.display())]
    ConfigParse {
        path: PathBuf,
        source: toml::de::Error,
    },

    #[error("invalid configuration {}: {field}: {why}", path.display())]
    ConfigInvalid {
        path: PathBuf,
        field: &'static str,
        why: String,
    },

    #[error("cannot read the pinned root metadata {} (repository.trusted_root): {source}; put the repository's signed root.json there or correct the path", path.display())]
    TrustedRootRead { path: PathBuf, source: io::Error },

    #[error("cannot use the certificate authorities in {} (network.ca_file or a mirror's ca): {why}; put the PEM certificate of the CA that issued the mirrors' certificates there", path.display())]
    CaFile { path: PathBuf, why: String },

    #[error("cannot use {} (the {field} of a mirror in repository.mirrors): {why}", path.display())]
    Credentials {
        path: PathBuf,
        field: &'static str,
        why: String,
    },

    #[error("the pinned root metadata {} (repository.trusted_root) is not usable: {why}; put the repository's signed root.json there", path.display())]
    TrustedRootInvalid { path: PathBuf, why: String },

    #[error("cannot read the running system's description {}: {source}; set device.system_info to the image's /.flipside/system.json", path.display())]
    SystemInfoRead { path: PathBuf, source: io::Error },

    #[error("invalid system description {}: {why}; the running image was not built by flipside-build?", path.display())]
    SystemInfoInvalid { path: PathBuf, why: String },

    #[error("cannot tell which slot is running: {why}; boot with flipside.slot=a|b or root=PARTUUID=... on the kernel command line")]
    RunningSlotUnknown { why: String },

    #[error("{source}")]
    Boot { source: BootError },

    #[error("the image of {target} is {image_length} bytes but slot {slot} holds only {slot_length}: nothing was written; build a smaller image or repartition")]
    SlotTooSmall {
        target: String,
        slot: Slot,
        image_length: u64,
        slot_length: u64,
    },

    #[error(
        "cannot reach {url}: {}; check the network and the mirror URLs, then try again",
        network_cause(source)
    )]
    Network { url: String, source: reqwest::Error },

    #[error("{url}: TLS: {failure}")]
    Tls {
        url: String,
        failure: crate::tls::TlsFailure,
    },

    #[error("{url} answered HTTP {status}: {hint}")]
    HttpStatus {
        url: String,
        status: u16,
        hint: &'static str,
    },

    #[error(
        "{url} broke off after {got} of {expected} bytes: {why}; try again (the install resumes)"
    )]
    BodyEnded {
        url: String,
        expected: u64,
        got: u64,
        why: String,
    },

    #[error("{url} is too slow: {rate} bytes/s over {secs} s, below the limit of {limit} bytes/s; try again later or raise network.low_speed_limit")]
    LowSpeed {
        url: String,
        rate: u64,
        limit: u64,
        secs: u64,
    },

    #[error("{url} sent a malformed response: {why}; try another mirror")]
    BadResponse { url: String, why: String },

    #[error("cannot read {}: {source}", path.display())]
    LocalRead { path: PathBuf, source: io::Error },

    #[error("repository metadata failed verification: {what}: {why}; nothing was installed, alert the operator")]
    Signature { what: String, why: String },

    #[error("repository metadata {role} expired at {expires}: the publisher must re-sign it; check the device clock")]
    Expired { role: String, expires: String },

    #[error("{what} {offered} is older than the installed {installed}: refused as a rollback; pass --allow-downgrade to install it deliberately")]
    Rollback {
        what: &'static str,
        offered: u64,
        installed: u64,
    },

    #[error("the repository's newest release {offered} is below this device's anti-rollback floor {floor} (the highest version it ever committed, {path}): refused; only the publisher lowers the floor, by publishing the release with flipside-build repo add --allow-rollback")]
    BelowFloor {
        offered: u64,
        floor: u64,
        path: PathBuf,
    },

    #[error("release {target} carries no kernel part, but this device boots a kernel from each slot (partitions {kernel_a} and {kernel_b}): nothing was written; publish the release with a [kernel] section")]
    NoKernelPart {
        target: String,
        kernel_a: String,
        kernel_b: String,
    },

    #[error("no release of {system} for hardware id {hardware_id} and architecture {architecture} in channel {channel}{} in the repository ({found}); check device.hardware_id, update.channel, update.pin_version and the repository", pin.map(|v| format!(" at the pinned version {v}")).unwrap_or_default())]
    Incompatible {
        system: String,
        hardware_id: String,
        architecture: flipside_contract::arch::Architecture,
        channel: String,
        pin: Option<u64>,
        found: String,
    },

    #[error("target {target} has invalid flipside fields: {why}")]
    BadTarget { target: String, why: String },

    #[error("the index {target} does not match its release: {why}; the repository is inconsistent, alert the operator")]
    IndexMismatch { target: String, why: String },

    #[error("the chunk index {target} is not acceptable: {source}")]
    Index { target: String, source: IndexError },

    #[error("{what} is {length} bytes, over the cap of {limit}: refused")]
    TooLarge {
        what: String,
        length: u64,
        limit: u64,
    },

    #[error("{what} does not match its signed {expected_what}: expected {expected}, got {found}; try again or use another mirror")]
    DataMismatch {
        what: String,
        expected_what: &'static str,
        expected: String,
        found: String,
    },

    #[error("bundle {target} from {url}: {source}")]
    Chunk {
        target: String,
        url: String,
        source: IndexError,
    },

    #[error("{region} read back has sha256 {found}, the release says {expected}: the slot stays unbootable; check the disk, then install again")]
    ImageHash {
        region: crate::device::Region,
        expected: String,
        found: String,
    },

    #[error("{region} read back differs at the chunk at offset {offset}: sha256 {found}, the index says {expected}: the slot stays unbootable; check the disk, then install again")]
    ReadBackChunk {
        region: crate::device::Region,
        offset: u64,
        expected: String,
        found: String,
    },

    #[error("cannot open the disk {} (device.disk): {source}; {}", disk.display(), if source.kind() == io::ErrorKind::NotFound { "correct device.disk in the configuration" } else { "check the device and its permissions" })]
    DiskOpen { disk: PathBuf, source: io::Error },

    #[error("cannot {op} {len} bytes at offset {offset} of {disk}: {source}; check the device")]
    DiskIo {
        op: &'static str,
        disk: PathBuf,
        offset: u64,
        len: u64,
        source: io::Error,
    },

    #[error("refusing to {op} {len} bytes at offset {offset} of {region}, which is {slot_length} bytes (this is a bug)")]
    OutOfSlot {
        op: &'static str,
        region: crate::device::Region,
        offset: u64,
        len: u64,
        slot_length: u64,
    },

    #[error("another flipside command{} is changing this device (lock {}): nothing was done; wait for it to finish, then run this again", holder.map(|p| format!(" (pid {p})")).unwrap_or_default(), lock.display())]
    Busy { lock: PathBuf, holder: Option<u32> },

    #[error("the boot state on {} changed under this command: it read {expected}, the disk now says {found}; nothing was written; run the command again", disk.display())]
    BootStateChanged {
        disk: PathBuf,
        expected: String,
        found: String,
    },

    #[error("state directory {}: cannot {op}: {source}; check that it exists and is writable", path.display())]
    StateIo {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("state file {} is corrupt: {source}; remove it (it only holds history)", path.display())]
    StateParse {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("slot {running} is running but is not on trial: there is nothing to {action}")]
    NotOnTrial { running: Slot, action: &'static str },

    #[error("health check {check} failed: {why}")]
    HealthFailed { check: String, why: String },

    #[error("no health checks in {}: slot {running} {}; add checks there, or set health.no_checks = \"commit\" if booting alone proves a slot", dir.display(), if *on_trial { "stays on trial, not committed" } else { "is proven, but its boot is not judged" })]
    NoHealthChecks {
        dir: PathBuf,
        running: Slot,
        on_trial: bool,
    },

    #[error("the reboot command {command} failed: {why}; reboot by hand")]
    Reboot { command: String, why: String },

    #[error("{source}")]
    Tuf { source: flipside_tuf::client::Error },

    #[error("{source}; note: this device verifies with its stored root {} (version {}), kept since its first run, not with the pinned {} (version {}), which differs: if the stored root was pinned wrongly, remove {} so that the next run starts from the pinned root", root.stored.display(), root.stored_version, root.pinned.display(), root.pinned_version, store.display())]
    StoredRootDiffers {
        root: Box<crate::tuf_client::StoredRoot>,
        store: PathBuf,
        source: flipside_tuf::client::Error,
    },

    #[error("cannot {op} {}: {source}; check the target directory's space and permissions", path.display())]
    TargetFile {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("internal error: {what}; please report it")]
    Internal { what: String },
}

/// What went wrong on the wire, in words that tell a refused connection from a timeout (the
/// top-level message of a request error is only "error sending request"), with the innermost
/// cause.
fn network_cause(e: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = e;
    let mut refused = false;
    while let Some(next) = innermost.source() {
        refused |= next
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::ConnectionRefused);
        innermost = next;
    }
    let what = if e.is_redirect() {
        "redirect refused"
    } else if e.is_timeout() {
        "timed out (network.connect_timeout_secs, network.read_timeout_secs)"
    } else if refused {
        "connection refused (nothing listens there)"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    format!("{what}: {innermost}")
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<BootError> for Error {
    fn from(source: BootError) -> Self {
        Error::Boot { source }
    }
}

impl Error {
    /// The failure class, hence the exit code.
    pub fn class(&self) -> ExitClass {
        use ExitClass as C;
        match self {
            Error::Usage { .. } => C::Usage,
            Error::ConfigRead { .. }
            | Error::ConfigParse { .. }
            | Error::ConfigInvalid { .. }
            | Error::SystemInfoRead { .. }
            | Error::SystemInfoInvalid { .. }
            | Error::NoHealthChecks { .. }
            | Error::TrustedRootRead { .. }
            | Error::CaFile { .. }
            | Error::Credentials { .. }
            | Error::TrustedRootInvalid { .. }
            | Error::Reboot { .. } => C::Config,
            Error::RunningSlotUnknown { .. }
            | Error::StateIo { .. }
            | Error::Busy { .. }
            | Error::BootStateChanged { .. }
            | Error::StateParse { .. }
            | Error::NotOnTrial { .. } => C::State,
            Error::Boot { source } => boot_class(source),
            Error::SlotTooSmall { .. } | Error::TooLarge { .. } => C::TooLarge,
            Error::Tls { .. }
            | Error::HttpStatus {
                status: 401 | 403, ..
            } => C::Access,
            Error::Network { .. }
            | Error::HttpStatus { .. }
            | Error::BodyEnded { .. }
            | Error::LowSpeed { .. }
            | Error::BadResponse { .. }
            | Error::LocalRead { .. } => C::Network,
            Error::Signature { .. } | Error::IndexMismatch { .. } => C::Signature,
            Error::Expired { .. } => C::Expired,
            Error::Rollback { .. } | Error::BelowFloor { .. } => C::Rollback,
            Error::Incompatible { .. } | Error::BadTarget { .. } | Error::NoKernelPart { .. } => {
                C::Incompatible
            }
            Error::Index { source, .. } => match source {
                IndexError::ImageOverLimit { .. }
                | IndexError::ChunkerOverLimit { .. }
                | IndexError::TooManyChunks { .. } => C::TooLarge,
                IndexError::UnsupportedVersion { .. }
                | IndexError::UnsupportedChunker { .. }
                | IndexError::UnsupportedCompression { .. } => C::Incompatible,
                _ => C::Signature,
            },
            Error::DataMismatch { .. }
            | Error::Chunk { .. }
            | Error::ImageHash { .. }
            | Error::ReadBackChunk { .. } => C::ChunkHash,
            // A disk that is not there is a wrong path; one that fails to open, a device fault.
            Error::DiskOpen { source, .. } if source.kind() == io::ErrorKind::NotFound => C::Config,
            Error::TargetFile { .. } | Error::DiskIo { .. } | Error::DiskOpen { .. } => C::Io,
            Error::OutOfSlot { .. } | Error::Internal { .. } => C::Internal,
            Error::Tuf { source } | Error::StoredRootDiffers { source, .. } => tuf_class(source),
            Error::HealthFailed { .. } => C::Health,
        }
    }
}

/// The failure class of a TUF client error.
/// The class of a metadata fetch that failed: the updater's own error inside it, when it is
/// one (a TLS failure or refused credentials are not network trouble).
fn fetch_class(e: &flipside_tuf::client::TransportError) -> ExitClass {
    use std::error::Error as _;
    match e.source().and_then(|s| s.downcast_ref::<Error>()) {
        Some(inner) => inner.class(),
        None => ExitClass::Network,
    }
}

pub(crate) fn tuf_class(e: &flipside_tuf::client::Error) -> ExitClass {
    use flipside_tuf::client::Error as E;
    use flipside_tuf::Error as V;
    match e {
        E::NotInitialised { .. }
        | E::AlreadyInitialised { .. }
        | E::StoreIo { .. }
        | E::TimeFile { .. } => ExitClass::State,
        E::Fetch { source, .. } => fetch_class(source),
        E::Missing { .. } => ExitClass::Network,
        E::TooLarge { .. } => ExitClass::TooLarge,
        E::Target { .. } => ExitClass::ChunkHash,
        E::Write { .. } => ExitClass::Io,
        E::TrustedRoot { .. } | E::Metadata { .. } => match e.tuf_error() {
            Some(V::Expired { .. }) => ExitClass::Expired,
            Some(V::Rollback { .. }) => ExitClass::Rollback,
            _ => ExitClass::Signature,
        },
        _ => ExitClass::Signature,
    }
}

fn boot_class(e: &BootError) -> ExitClass {
    match e {
        BootError::TrialPending { .. }
        | BootError::NoFallback { .. }
        | BootError::SlotNotCleared { .. }
        | BootError::NotOnTrial { .. }
        | BootError::RollbackTargetNotBootable { .. }
        | BootError::NoBootableSlot { .. } => ExitClass::State,
        BootError::PartitionNotFound { .. }
        | BootError::AmbiguousPartition { .. }
        | BootError::SamePartition { .. }
        | BootError::NoProtectiveMbr { .. }
        | BootError::DiskTooSmall { .. }
        | BootError::BadLayout { .. } => ExitClass::Config,
        BootError::FieldOutOfRange { .. } => ExitClass::Config,
        _ => ExitClass::Io,
    }
}
