//! `flipside-build store`: the built-in content-addressed store, for teams without Nix.

use std::io::Write;
use std::path::{Path, PathBuf};

use flipside_store::{BuiltinStore, Error as StoreError};

use crate::{Class, Error};

/// Store directory when neither `--store` nor [`STORE_ENV`] is given.
pub(crate) const DEFAULT_STORE: &str = "flipside-store";
/// Environment variable naming the store directory.
pub(crate) const STORE_ENV: &str = "FLIPSIDE_STORE";

const ADD_EXAMPLE: &str = "\
Example:
  flipside-build store add ./motd --name motd-1.0 --store ./flipside-store
  # prints ./flipside-store/<hash>-motd-1.0; inside images it is /flipside/store/<hash>-motd-1.0

Files are stored read-only; only contents, names, symlink targets and the executable bit
count. References to other store paths are found by scanning the files for their hashes;
--ref adds one that the files do not name.";

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Add a directory to the built-in store and print its store path (host form).
    #[command(after_help = ADD_EXAMPLE)]
    Add(AddArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Directory whose files the store path will hold.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Name of the store path: letters, digits and . _ + -, e.g. `motd-1.0`.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub store: StoreArg,
    /// A store path this one needs although its files do not name it (repeatable).
    #[arg(long = "ref", value_name = "PATH")]
    pub refs: Vec<String>,
}

/// `--store`, shared by the commands that use the built-in store.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArg {
    /// Built-in store directory [default: $FLIPSIDE_STORE, else ./flipside-store].
    #[arg(long, value_name = "STORE")]
    pub store: Option<PathBuf>,
}

impl StoreArg {
    /// The store directory: `--store`, else `$FLIPSIDE_STORE`, else `./flipside-store`.
    pub fn dir(&self) -> PathBuf {
        self.store
            .clone()
            .or_else(|| {
                std::env::var_os(STORE_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE))
    }

    /// Opens (creating if needed) the store.
    pub fn open(&self) -> Result<BuiltinStore, Error> {
        Ok(BuiltinStore::open(self.dir())?)
    }

    /// Opens the store only if its directory exists: commands that only read do not create
    /// one.
    pub fn open_existing(&self) -> Result<Option<BuiltinStore>, Error> {
        let dir = self.dir();
        if dir.is_dir() {
            Ok(Some(BuiltinStore::open(dir)?))
        } else {
            Ok(None)
        }
    }
}

pub fn run(cmd: StoreCommand) -> Result<(), Error> {
    match cmd {
        StoreCommand::Add(args) => {
            let store = args.store.open()?;
            let path = store.add(&args.dir, &args.name, &args.refs)?;
            print_line(&path.source.display().to_string())
        }
    }
}

/// Writes one line to stdout (no panic when stdout is gone).
pub(crate) fn print_line(line: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    stdout_result(writeln!(out, "{line}").and_then(|()| out.flush()))
}

/// A failed write to stdout as an I/O error, except a closed pipe (`... | head`): the reader
/// has all it wanted.
pub(crate) fn stdout_result(result: std::io::Result<()>) -> Result<(), Error> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(StoreError::Write {
            path: Path::new("<stdout>").to_path_buf(),
            source: e,
        }
        .into()),
        _ => Ok(()),
    }
}

/// The exit class of a store failure: what the user gave is unusable (Input), the store's
/// content or an input file breaks its rules, is missing or cannot be read (Store), `nix` is
/// missing or failed (Tool), a file could not be written (Io).
pub(crate) fn class(e: &StoreError) -> Class {
    use StoreError as E;
    match e {
        E::SourceMissing { .. }
        | E::SourceNotDirectory { .. }
        | E::InvalidName { .. }
        | E::NotAStorePath { .. }
        | E::NoBuiltinStore { .. }
        | E::NotAStore { .. }
        | E::NixInfo { .. }
        | E::Registration { .. }
        | E::ReleaseNotFound { .. }
        | E::ParseRelease { .. }
        | E::InvalidRelease { .. } => Class::Input,
        E::NotInStore { .. }
        | E::RefNotInStore { .. }
        | E::DanglingReference { .. }
        | E::SymlinkEscapes { .. }
        | E::SymlinkTargetMissing { .. }
        | E::UnsupportedFileType { .. }
        | E::Corrupt { .. }
        | E::BadMetadata { .. }
        // An input that cannot be read is the store error the README documents (exit 4).
        | E::ReadSource { .. } => Class::Store,
        E::ToolMissing { .. } | E::ToolFailed { .. } => Class::Tool,
        E::Write { .. } => Class::Io,
    }
}
