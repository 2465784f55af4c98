//! `flipside check`: is a newer compatible release available? Reads only.

use crate::config::Config;
use crate::error::Result;
use crate::install::source_spec;
use crate::offer::offer;
use crate::record::StateDir;
use crate::select::{above_floor, choose, describe_wait, Decision, Downgrade};
use crate::source::SourceFactory;
use crate::system::installed;

pub fn run(config: &Config, factory: &SourceFactory) -> Result<()> {
    let installed = installed(config)?;
    let mut source = factory(&source_spec(config, None))?;
    let targets = source.refresh()?;
    let state = StateDir::new(&config.device.state_dir);
    let offer = offer(config, &installed.name, chrono::Utc::now());
    let decision = choose(&targets, &installed, Downgrade::Refuse, &offer)?;
    match above_floor(decision, state.floor()?, &state.floor_path())? {
        Decision::UpToDate { version } => {
            println!(
                "up to date: {} {version} ({})",
                installed.name, installed.display_version
            );
        }
        Decision::Waiting { version, admission } => {
            println!(
                "{}; installed {} ({})",
                describe_wait(version, admission),
                installed.version,
                installed.display_version
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
