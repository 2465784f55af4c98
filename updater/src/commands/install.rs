//! `flipside install [--from URL_OR_DIR] [--allow-downgrade]`.

use crate::config::{Config, Mirror};
use crate::error::{Error, Result};
use crate::install::{install, InstallOptions};
use crate::select::Downgrade;
use crate::source::SourceFactory;

pub fn run(
    config: &Config,
    from: Option<&str>,
    allow_downgrade: bool,
    factory: &SourceFactory,
) -> Result<()> {
    let from = match from {
        Some(text) => {
            let cwd = std::env::current_dir().map_err(|e| Error::Usage {
                what: format!("--from: cannot resolve {text:?}: {e}"),
            })?;
            Some(Mirror::parse(text, &cwd).map_err(|why| Error::Usage {
                what: format!("--from: {why}"),
            })?)
        }
        None => None,
    };
    let options = InstallOptions {
        downgrade: if allow_downgrade {
            Downgrade::Allow
        } else {
            Downgrade::Refuse
        },
        from,
    };
    match install(config, &options, factory)? {
        None => println!("up to date: nothing to install"),
        Some(r) => {
            let kernel = r.kernel_release.as_deref();
            println!(
                "installed {} {} ({}){} into slot {}: reboot to try it ({} trial boots)",
                r.name,
                r.version,
                r.display_version,
                kernel.map_or(String::new(), |k| format!(" with kernel {k}")),
                r.slot,
                config.update.trial_boots
            );
            println!(
                "FLIPSIDE_RESULT event=installed slot={} version={} fetched={} reused={} copied={} readback={:?}{}",
                r.slot,
                r.version,
                r.fetched,
                r.reused,
                r.copied,
                r.readback,
                kernel.map_or(String::new(), |k| format!(" kernel={k}"))
            );
        }
    }
    Ok(())
}
