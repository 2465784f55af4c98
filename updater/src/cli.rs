//! The command line: parsing (clap), then one subcommand, then an exit code from the error's
//! class. `main` only chooses the update source.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands;
use crate::config::{Config, DEFAULT_PATH};
use crate::error::Result;
use crate::exit::{table, ExitClass};
use crate::lock::UpdateLock;
use crate::source::SourceFactory;

/// flipside: A/B image updates for this device.
#[derive(Debug, Parser)]
#[command(name = "flipside", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Say whether a newer compatible release exists.
    Check,
    /// Stream the newest release into the inactive slot and arm it for a trial boot.
    Install {
        /// Install from this repository (URL or directory) instead of the configured mirrors.
        #[arg(long, value_name = "URL_OR_DIR")]
        from: Option<String>,
        /// Install the repository's newest release even if it is older than the installed one
        /// (everything is still verified).
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// What the update timer runs: install what this device is offered, then reboot into it
    /// as update.reboot allows (now, in the maintenance window, or never).
    Update,
    /// Show both slots, their versions and boot state, and what happened last.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Commit the running trial slot.
    MarkGood,
    /// Reject the running trial slot, so that the other one boots next.
    MarkBad,
    /// Make the other slot boot next (it must be bootable).
    Rollback,
    /// Run the health checks; commit the trial slot, or mark it bad and reboot.
    Health,
    /// The TUF client in the conformance-test protocol (init, refresh, download); exits 0 on
    /// success and 1 on any failure. Needs no configuration file.
    Tuf(commands::tuf::TufArgs),
}

/// Parses the process arguments and runs; the exit code follows the error's class.
pub fn main_with(factory: &SourceFactory) -> ExitCode {
    init_logging();
    let command = Cli::command().after_help(table());
    let cli = match command
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitClass::Usage.exit_code()
            } else {
                ExitClass::Ok.exit_code()
            };
        }
    };
    if let Command::Tuf(args) = &cli.command {
        // The conformance protocol: 1 for every failure, whatever its class.
        return match commands::tuf::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("{e}");
                ExitCode::from(1)
            }
        };
    }
    match run(&cli, factory) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            e.class().exit_code()
        }
    }
}

/// Runs one parsed command line.
pub fn run(cli: &Cli, factory: &SourceFactory) -> Result<()> {
    // `flipside tuf` works on its own directories, without the device's configuration.
    let config = || Config::load(&cli.config);
    // Commands that change the device hold the state directory's lock for their whole run.
    let locked = || -> Result<(Config, UpdateLock)> {
        let config = config()?;
        let lock = UpdateLock::acquire(&config.device.state_dir)?;
        Ok((config, lock))
    };
    match &cli.command {
        Command::Check => commands::check::run(&config()?, factory),
        Command::Install {
            from,
            allow_downgrade,
        } => {
            let (config, _lock) = locked()?;
            commands::install::run(&config, from.as_deref(), *allow_downgrade, factory)
        }
        Command::Update => {
            let (config, _lock) = locked()?;
            commands::update::run(&config, factory)
        }
        Command::Status { json } => commands::status::run(&config()?, *json),
        Command::MarkGood => commands::mark::good(&locked()?.0, "marked good by hand"),
        Command::MarkBad => commands::mark::bad(&locked()?.0, "marked bad by hand"),
        Command::Rollback => commands::rollback::run(&locked()?.0),
        Command::Health => commands::health::run(&locked()?.0),
        Command::Tuf(args) => commands::tuf::run(args),
    }
}

fn init_logging() {
    use std::io::Write;
    let env = env_logger::Env::default().filter_or("FLIPSIDE_LOG", "info");
    let _ = env_logger::Builder::from_env(env)
        .format(|f, record| {
            writeln!(
                f,
                "flipside: {}: {}",
                record.level().as_str().to_lowercase(),
                record.args()
            )
        })
        .target(env_logger::Target::Stderr)
        .try_init();
}
