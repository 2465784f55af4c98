//! The `flipside-build` command line: one module per subcommand, each an `Args` struct and a
//! `run` function. Parsing stays here; the work is done by the library modules.

use clap::{Parser, Subcommand};

use crate::Error;

pub mod closure;
pub mod diff;
pub mod image;
pub mod publish;
pub mod repo;
pub mod repo_keys;
pub mod rollout;
pub mod sign;
pub mod store;
pub mod uki;

/// Build reproducible, signed A/B root-filesystem images from store closures.
///
/// Exit codes: 0 success, 1 internal error, 2 usage, 3 invalid input, 4 store error,
/// 5 image too large for the slot, 6 key error, 7 metadata expired, 8 repository error,
/// 9 external tool missing or failed, 10 I/O error, 11 upload to object storage failed.
#[derive(Debug, Parser)]
#[command(name = "flipside-build", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn log_level(&self) -> &'static str {
        match self.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the built-in content-addressed store.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Print the closure (every store path reachable by references) of store paths.
    Closure(closure::ClosureArgs),
    /// List the store paths added, removed and changed between two images.
    Diff(diff::DiffArgs),
    /// Build the root-filesystem image, its bundle and chunk index from a system description.
    Image(image::ImageArgs),
    /// Create and maintain a signed static TUF repository of images.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Assemble a unified kernel image: systemd's EFI stub with kernel, initrd, command line.
    Uki(uki::UkiArgs),
    /// Sign an EFI image (flipside-boot, a UKI) for Secure Boot with the db key.
    Sign(sign::SignArgs),
    /// Generate the Secure Boot keys of a device fleet: PK, KEK and db.
    SecureBootKeys(sign::KeysArgs),
}

impl Command {
    pub fn run(self) -> Result<(), Error> {
        match self {
            Command::Store(cmd) => store::run(cmd),
            Command::Closure(args) => closure::run(args),
            Command::Diff(args) => diff::run(args),
            Command::Image(args) => image::run(args),
            Command::Sign(args) => sign::run(args),
            Command::SecureBootKeys(args) => sign::run_keys(args),
            Command::Repo(cmd) => repo::run(cmd),
            Command::Uki(args) => uki::run(args),
        }
    }
}

/// The error and its chain of causes, one line, for the terminal.
pub fn report(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // `#[error(transparent)]` and `{0}`-style messages repeat their source; skip repeats.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
