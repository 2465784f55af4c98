//! `flipside status [--json]`.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::status::{gather, render_text};

pub fn run(config: &Config, json: bool) -> Result<()> {
    let status = gather(config)?;
    if json {
        let text = serde_json::to_string_pretty(&status).map_err(|e| Error::Internal {
            what: format!("serialising the status: {e}"),
        })?;
        println!("{text}");
    } else {
        print!("{}", render_text(&status));
    }
    Ok(())
}
