//! `flipside tuf`: flipside's TUF client (`flipside_tuf::client`, the code `check` and
//! `install` use) behind the command line of the TUF conformance protocol, so that any TUF
//! test suite can drive it:
//!
//! ```text
//! flipside tuf --metadata-dir DIR init TRUSTED_ROOT
//! flipside tuf --metadata-dir DIR --metadata-url URL refresh
//! flipside tuf --metadata-dir DIR --metadata-url URL --target-name NAME [--target-name NAME...] \
//!     --target-base-url URL --target-dir DIR download
//! ```
//!
//! `download` refreshes once, then processes the targets in the order given with that one
//! client, and stops at the first that fails.
//!
//! Exit 0 on success, 1 on any failure (the caller maps every error to 1). The trusted
//! metadata is kept in DIR under non-versioned names (`root.json`, `timestamp.json`,
//! `snapshot.json`, `targets.json`, `ROLE.json` for delegated roles) with the last trusted
//! time in `last-trusted-time` (not `*.json`: every `*.json` file there is metadata). A target is saved as `TARGET_DIR/QUOTED_NAME` (the whole name
//! percent-encoded as python-tuf does, so `apps/a.tgz` is `apps%2Fa.tgz`: one file name,
//! never a path); a file already there with the signed length and hashes is kept, not
//! downloaded again. URLs are `http(s)://` or directories.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::{Args, Subcommand};
use flipside_tuf::client::{
    local_copy_matches, Client, Limits, MetadataStore, TargetName, Transport, TransportError,
};

use crate::config::{Mirror, NetworkPolicy};
use crate::error::{Error, Result};
use crate::http::Http;
use crate::mirrors::MirrorSet;
use crate::tuf_client::MirrorTransport;

/// Options of `flipside tuf` (before the action, as the conformance protocol writes them).
#[derive(Debug, Args)]
pub struct TufArgs {
    /// Directory of the trusted metadata.
    #[arg(long, value_name = "DIR")]
    pub metadata_dir: PathBuf,
    /// Base URL (or directory) of the repository's metadata files.
    #[arg(long, value_name = "URL")]
    pub metadata_url: Option<String>,
    /// Target to download; repeat for several, downloaded in order by one client.
    #[arg(long, value_name = "NAME")]
    pub target_name: Vec<String>,
    /// Base URL (or directory) of the repository's target files.
    #[arg(long, value_name = "URL")]
    pub target_base_url: Option<String>,
    /// Directory to save the target in.
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub action: TufAction,
}

#[derive(Debug, Subcommand)]
pub enum TufAction {
    /// Start the metadata directory from a trusted root (signed by a threshold of its keys).
    Init {
        #[arg(value_name = "TRUSTED_ROOT")]
        trusted_root: PathBuf,
    },
    /// Update the trusted metadata from the repository (TUF 1.0 sections 5.1-5.6).
    Refresh,
    /// Refresh, then download each target in order (5.6.7 search and 5.7 checks), stopping at
    /// the first failure.
    Download,
}

/// Runs one `flipside tuf` action.
pub fn run(args: &TufArgs) -> Result<()> {
    match &args.action {
        TufAction::Init { trusted_root } => {
            let root = crate::tuf_client::read_pinned_root(trusted_root)?;
            MetadataStore::init(&args.metadata_dir, &root).map_err(tuf)?;
            println!(
                "initialised {} with {}",
                args.metadata_dir.display(),
                trusted_root.display()
            );
            Ok(())
        }
        TufAction::Refresh => {
            let mut client = client(args, None)?;
            let refreshed = client.refresh(Utc::now()).map_err(tuf)?;
            let v = refreshed.versions;
            println!(
                "refreshed: root {} timestamp {} snapshot {} targets {}",
                v.root, v.timestamp, v.snapshot, v.targets
            );
            Ok(())
        }
        TufAction::Download => download(args),
    }
}

fn download(args: &TufArgs) -> Result<()> {
    if args.target_name.is_empty() {
        return Err(Error::Usage {
            what: "`flipside tuf download` needs --target-name".to_string(),
        });
    }
    let base = required(&args.target_base_url, "--target-base-url")?;
    let dir = required(&args.target_dir, "--target-dir")?;
    let mut client = client(args, Some(base))?;
    client.refresh(Utc::now()).map_err(tuf)?;
    for name in &args.target_name {
        download_one(&client, name, dir)?;
    }
    Ok(())
}

/// Finds target `name` with the refreshed `client` and saves it in `dir` (kept when a file
/// with its signed length and hashes is already there).
fn download_one(client: &Client, name: &str, dir: &Path) -> Result<()> {
    let info = client.target(name).map_err(tuf)?.ok_or_else(|| {
        tuf(flipside_tuf::client::Error::UnknownTarget {
            name: name.to_string(),
        })
    })?;
    let dest = dir.join(local_file_name(name)?);
    if let Ok(mut existing) = File::open(&dest) {
        if local_copy_matches(&info, name, &mut existing).map_err(tuf)? {
            println!("{name}: {} is up to date", dest.display());
            return Ok(());
        }
    }
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::TargetFile { op, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    // Verified bytes only ever reach `dest`: the download goes to a temporary file first
    // (an unpredictable name, never opened through a link), renamed once verified.
    let atomic = |e: flipside_atomic_file::Error| Error::TargetFile {
        op: e.step.action(),
        path: e.path,
        source: e.source,
    };
    let mut file = flipside_atomic_file::AtomicFile::create(&dest).map_err(atomic)?;
    let length = client.download_target(name, file.file()).map_err(tuf)?;
    file.commit().map_err(atomic)?;
    println!(
        "{name}: {length} bytes verified, saved as {}",
        dest.display()
    );
    Ok(())
}

/// The local file of target `name`: a safe target name (see [`TargetName`]) percent-encoded
/// whole, as python-tuf's `urllib.parse.quote(name, "")`; never `/`, `.` or `..`.
pub fn local_file_name(name: &str) -> Result<String> {
    TargetName::new(name).map_err(tuf)?;
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

fn required<'a, T>(value: &'a Option<T>, flag: &str) -> Result<&'a T> {
    value.as_ref().ok_or_else(|| Error::Usage {
        what: format!("`flipside tuf download` needs {flag}"),
    })
}

fn client(args: &TufArgs, targets: Option<&String>) -> Result<Client> {
    let metadata = required(&args.metadata_url, "--metadata-url")?;
    let store = MetadataStore::open(&args.metadata_dir).map_err(tuf)?;
    let http = Http::new(NetworkPolicy::default())?;
    let mirror = |text: &str| {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Mirror::parse(text, &cwd).map_err(|why| Error::Usage { what: why })
    };
    let transport = SplitTransport {
        metadata: MirrorTransport::new(MirrorSet::new(vec![mirror(metadata)?]), http.clone()),
        targets: targets
            .map(|t| {
                Ok::<_, Error>(MirrorTransport::new(
                    MirrorSet::new(vec![mirror(t)?]),
                    http.clone(),
                ))
            })
            .transpose()?,
    };
    Ok(Client::new(store, transport, Limits::default()))
}

/// The client asks for `metadata/...` and `targets/...` of one repository; the conformance
/// protocol gives a base URL for each.
struct SplitTransport {
    metadata: MirrorTransport,
    targets: Option<MirrorTransport>,
}

impl Transport for SplitTransport {
    fn fetch(
        &self,
        path: &str,
        max_len: u64,
    ) -> std::result::Result<Box<dyn Read + '_>, TransportError> {
        if let Some(rest) = path.strip_prefix("metadata/") {
            return self.metadata.fetch(rest, max_len);
        }
        match (path.strip_prefix("targets/"), &self.targets) {
            (Some(rest), Some(targets)) => targets.fetch(rest, max_len),
            _ => Err(TransportError::Failed {
                path: path.to_string(),
                source: "no --target-base-url was given for targets".into(),
            }),
        }
    }
}

fn tuf(source: flipside_tuf::client::Error) -> Error {
    Error::Tuf { source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_are_single_safe_components() {
        assert_eq!(local_file_name("file1.txt").unwrap(), "file1.txt");
        assert_eq!(local_file_name("apps/a.tgz").unwrap(), "apps%2Fa.tgz");
        assert_eq!(local_file_name("a b~").unwrap(), "a%20b~");
        assert_eq!(local_file_name("é").unwrap(), "%C3%A9");
        for bad in ["", "..", "../x", "/etc/passwd", "a//b", "a/./b", "a\\b"] {
            assert!(local_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn conformance_command_lines_parse() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "flipside",
            "tuf",
            "--metadata-dir",
            "/m",
            "--metadata-url",
            "http://127.0.0.1:1/metadata",
            "--target-name",
            "a/b",
            "--target-name",
            "c",
            "--target-base-url",
            "http://127.0.0.1:1/targets",
            "--target-dir",
            "/t",
            "download",
        ])
        .unwrap();
        let crate::cli::Command::Tuf(args) = cli.command else {
            panic!("not the tuf command");
        };
        assert!(matches!(args.action, TufAction::Download));
        assert_eq!(args.target_name, ["a/b", "c"], "in the order given");
        let cli = crate::cli::Cli::try_parse_from([
            "flipside",
            "tuf",
            "--metadata-dir",
            "/m",
            "init",
            "r.json",
        ])
        .unwrap();
        let crate::cli::Command::Tuf(args) = cli.command else {
            panic!("not the tuf command");
        };
        assert!(matches!(args.action, TufAction::Init { .. }));
    }
}
