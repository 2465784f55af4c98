//! `flipside check`: is a newer compatible release available? Reads only.

use crate::config::Config;
use crate::error::Result;
use crate::install::source_spec;
use crate::record::StateDir;
use crate::select::{above_floor, choose, Decision, Downgrade};
use crate::source::SourceFactory;
use crate::system::installed;

pub fn run(config: &Config, factory: &SourceFactory) -> Result<()> {
    let installed = installed(config)?;
    let mut source = factory(&source_spec(config, None))?;
    let targets = source.refresh()?;
    let state = StateDir::new(&config.device.state_dir);
    let decision = choose(&targets, &installed, Downgrade::Refuse)?;
    match above_floor(decision, state.floor()?, &state.floor_path())? {
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
