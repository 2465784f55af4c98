//! `flipside-build`: the producer side of flipside. See `flipside-build --help` and the README.

use std::process::ExitCode;

use clap::Parser;
use flipside_image_builder::commands::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_level()))
        .format_timestamp(None)
        .init();
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", flipside_image_builder::commands::report(&err));
            ExitCode::from(err.class().exit_code())
        }
    }
}
