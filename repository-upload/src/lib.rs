//! Publishing a repository to S3-compatible object storage (AWS S3, Garage, MinIO, Ceph RGW):
//! the local repository directory stays the source of truth (every `flipside-build repo`
//! command writes there, locked and atomic); `upload` mirrors it to a bucket for devices and
//! CDNs to fetch over plain HTTP(S).
//!
//! The local repository is locked and verified first. What goes up and in which order is a pure
//! [`plan`]: targets, delegated and targets metadata, snapshot, roots, and the timestamp last,
//! so a failed upload changes nothing a device can see and a re-run finishes it (objects already
//! there are compared, not sent again). Objects carry `Cache-Control`: a year and `immutable`
//! for versioned and content-addressed names, a minute for `timestamp.json` and `root.json`.

pub mod destination;
mod error;
pub mod plan;
mod store;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flipside_repository::layout::{METADATA_DIR, TARGETS_DIR};
use flipside_repository::Repository;

pub use destination::{Credentials, Destination};
pub use error::Error;
use plan::{Check, LocalFile, Phase, Plan};
use store::Remote;

/// What `upload` may do besides putting the new state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// After the timestamp, remove remote objects the local repository no longer has (what
    /// `repo prune` removed locally). Off by default: a prefix may be shared with other files.
    pub delete: bool,
    /// Plan and compare only; change nothing at the destination.
    pub dry_run: bool,
}

/// What an upload did (or, with `dry_run`, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Keys put, in order.
    pub uploaded: Vec<String>,
    pub uploaded_bytes: u64,
    /// Objects already at the destination with the same content.
    pub unchanged: usize,
    /// Keys removed after the timestamp (with `delete`), or left in place (without).
    pub removed: Vec<String>,
    pub left_in_place: Vec<String>,
}

/// Verifies the repository in `repo` at `now` and mirrors it to `destination`.
pub fn upload(
    repo: &Path,
    destination: &Destination,
    credentials: &Credentials,
    options: Options,
    now: DateTime<Utc>,
) -> Result<Report, Error> {
    // Held until the upload ends: no `repo` command changes the files under us.
    let repository = Repository::open(repo)?;
    repository.verify(now)?;
    let local = local_files(repo)?;
    let remote = Remote::connect(destination, credentials)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io(repo))?;
    runtime.block_on(async {
        let plan = plan::plan(&local, &remote.list().await?);
        if let Some(conflict) = plan.conflicts.first() {
            return Err(Error::Conflict {
                key: conflict.key.clone(),
                why: format!(
                    "{} bytes there, {} here",
                    conflict.remote_size, conflict.local_size
                ),
            });
        }
        run(repo, &remote, &plan, options).await
    })
}

async fn run(repo: &Path, remote: &Remote, plan: &Plan, options: Options) -> Result<Report, Error> {
    let mut report = Report {
        unchanged: plan.kept.len(),
        ..Default::default()
    };
    // Compare first: a conflict found here still leaves the destination untouched.
    let mut to_put = Vec::new();
    for put in &plan.puts {
        let path = repo.join(&put.key);
        if put.check != Check::Upload {
            let local = std::fs::read(&path).map_err(Error::io(&path))?;
            let there = remote.get(&put.key, false).await?;
            if there == local {
                report.unchanged += 1;
                continue;
            }
            if put.check == Check::CompareBytes {
                return Err(Error::Conflict {
                    key: put.key.clone(),
                    why: "same size, other bytes".into(),
                });
            }
        }
        to_put.push((put, path));
    }
    for (put, path) in to_put {
        if !options.dry_run {
            remote
                .put(&path, put, put.phase == Phase::Timestamp)
                .await?;
            log::info!("uploaded {} ({} bytes)", put.key, put.size);
        }
        report.uploaded.push(put.key.clone());
        report.uploaded_bytes += put.size;
    }
    for key in &plan.extra {
        if options.delete && !options.dry_run {
            remote.delete(key).await?;
        }
        if options.delete {
            report.removed.push(key.clone());
        } else {
            report.left_in_place.push(key.clone());
        }
    }
    Ok(report)
}

/// The served files of the repository: everything in `metadata/` and `targets/`.
fn local_files(repo: &Path) -> Result<Vec<LocalFile>, Error> {
    let mut files = Vec::new();
    for dir in [METADATA_DIR, TARGETS_DIR] {
        let path: PathBuf = repo.join(dir);
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io(&path))?;
            let meta = entry.metadata().map_err(Error::io(&entry.path()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if meta.is_file() {
                files.push(LocalFile {
                    key: format!("{dir}/{name}"),
                    size: meta.len(),
                });
            }
        }
    }
    files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(files)
}
