//! `flipside check`: is a newer compatible release available? Reads only.

use crate::config::Config;
use crate::error::Result;
use crate::install::source_spec;
use crate::select::{choose, Decision, Downgrade};
use crate::source::SourceFactory;
use crate::system::installed;

pub fn run(config: &Config, factory: &SourceFactory) -> Result<()> {
    let installed = installed(config)?;
    let mut source = factory(&source_spec(config, None))?;
    let targets = source.refresh()?;
    match choose(&targets, &installed, Downgrade::Refuse)? {
        Decision::UpToDate { version } => {
            println!(
                "up to date: {} {version} ({})",
                installed.name, installed.display_version
            );
        }
        Decision::Update(c) => {
            println!(
                "update available: {} {} ({}), installed {} ({}); run flipside install",
                c.custom.name,
                c.custom.version,
                c.custom.display_version,
                installed.version,
                installed.display_version
            );
        }
    }
    Ok(())
}
