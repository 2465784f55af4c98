//! The one error type of flipside-repository-upload.

use std::path::PathBuf;

/// Every way an upload can fail. Until the timestamp is written, none of them changes what a
/// device sees; the messages say so and name the command that finishes the job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The local repository cannot be opened or does not verify; nothing was uploaded.
    #[error("{0}; nothing was uploaded")]
    Repository(#[from] flipside_repository::Error),
    /// The destination is not an `s3://bucket[/prefix]` URL or its options are invalid.
    #[error("destination {url}: {why}")]
    Destination { url: String, why: String },
    /// An object-store request failed.
    #[error("{operation} {key} failed: {source}; {}", if *.visible { "the new timestamp may not be published: run `flipside-build repo publish` again" } else { "devices still see the previous repository: check the endpoint, credentials and quota, then run `flipside-build repo publish` again to finish" })]
    Store {
        operation: &'static str,
        key: String,
        /// Whether the failure came after the timestamp started going up.
        visible: bool,
        #[source]
        source: Box<object_store::Error>,
    },
    /// Immutable names at the destination hold other bytes: another repository was uploaded
    /// there. Nothing was uploaded.
    #[error("the destination already holds {key} with other content ({why}); it belongs to another repository or was altered: upload to an empty prefix, or remove that prefix first; nothing was uploaded")]
    Conflict { key: String, why: String },
    /// A local file cannot be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
