//! `flipside`: the updater's command line with the production update source.

use std::process::ExitCode;

fn main() -> ExitCode {
    flipside_updater::cli::main_with(&flipside_updater::source::tuf_source)
}
