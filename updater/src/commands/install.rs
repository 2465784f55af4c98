//! `flipside install [--from URL_OR_DIR] [--allow-downgrade]`.

use crate::config::{Config, Mirror};
use crate::error::{Error, Result};
use crate::install::{install, InstallOptions, InstallOutcome};
use crate::select::{describe_wait, Downgrade};
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
    report(config, install(config, &options, factory)?);
    Ok(())
}

/// Prints what an install came to: a sentence, and a `FLIPSIDE_RESULT` line for programs.
pub fn report(config: &Config, outcome: InstallOutcome) {
    match outcome {
        InstallOutcome::UpToDate => println!("up to date: nothing to install"),
        InstallOutcome::Waiting { version, admission } => {
            println!(
                "{}: nothing installed now",
                describe_wait(version, admission)
            );
            println!("FLIPSIDE_RESULT event=waiting version={version}");
        }
        InstallOutcome::Installed(r) => {
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
}
