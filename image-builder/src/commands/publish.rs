//! `flipside-build repo publish`: mirror a repository directory to S3-compatible object storage.

use std::io::Write;
use std::path::PathBuf;

use flipside_repository_upload::{upload, Credentials, Destination, Options};

use crate::error::Class;
use crate::Error;

pub const PUBLISH_EXAMPLE: &str = "\
Examples:
  export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
  flipside-build repo publish --repo ./repo --to s3://fleet-updates/kiosk
  flipside-build repo publish --repo ./repo --to s3://fleet-updates/kiosk \\
      --endpoint http://127.0.0.1:3900 --region garage --credentials-file ./s3.env --delete

Verifies the local repository, then uploads what the destination lacks: targets first, then
delegated and targets metadata, snapshot, roots, and timestamp.json last. Until the timestamp
lands, devices see the previous repository whole; after a failure, run the same command again
to finish. Objects already there are compared, not sent again; an immutable name that holds
other bytes stops the upload before anything is sent. --delete removes, after the timestamp,
remote objects the local repository no longer has (run `repo prune` locally first). Point the
fleet's mirrors (or a CDN) at the bucket's HTTP endpoint under the prefix.";

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Repository directory (the source of truth).
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// Destination: s3://bucket or s3://bucket/prefix.
    #[arg(long, value_name = "S3_URL")]
    pub to: String,
    /// Endpoint of an S3-compatible server (Garage, MinIO, Ceph RGW); default AWS.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The server's region name.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// File of AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=... lines (mode 0600); default
    /// the environment variables of those names.
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
    /// After the timestamp, remove remote objects the local repository no longer has.
    #[arg(long)]
    pub delete: bool,
    /// Show what would be uploaded and removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `repo publish` and prints one line per object and a summary.
pub fn run(args: &PublishArgs, now: chrono::DateTime<chrono::Utc>) -> Result<(), Error> {
    let mut destination = Destination::parse(&args.to)?;
    destination.endpoint = args.endpoint.clone();
    destination.region = args.region.clone();
    let credentials = match &args.credentials_file {
        Some(path) => Credentials::from_file(path)?,
        None => Credentials::from_env()?,
    };
    let options = Options {
        delete: args.delete,
        dry_run: args.dry_run,
    };
    let report = upload(&args.repo, &destination, &credentials, options, now)?;
    let (put, remove) = if args.dry_run {
        ("would upload", "would remove")
    } else {
        ("uploaded", "removed")
    };
    let mut lines: Vec<String> = report
        .uploaded
        .iter()
        .map(|k| format!("{put} {k}"))
        .collect();
    lines.extend(report.removed.iter().map(|k| format!("{remove} {k}")));
    lines.extend(
        report.left_in_place.iter().map(|k| {
            format!("left in place {k} (not in the local repository; --delete removes it)")
        }),
    );
    lines.push(format!(
        "{put} {} objects ({} bytes), {} unchanged, to {}",
        report.uploaded.len(),
        report.uploaded_bytes,
        report.unchanged,
        args.to
    ));
    let mut out = std::io::stdout().lock();
    lines
        .iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .map_err(|source| {
            Error::from(flipside_repository::Error::Io {
                path: PathBuf::from("<stdout>"),
                source,
            })
        })
}

/// The exit class of an upload failure.
pub fn class(err: &flipside_repository_upload::Error) -> Class {
    use flipside_repository_upload::Error as E;
    match err {
        E::Repository(e) => super::repo::class(e),
        E::Destination { .. } => Class::Input,
        E::Store { .. } | E::Conflict { .. } => Class::Upload,
        E::Io { .. } => Class::Io,
    }
}
