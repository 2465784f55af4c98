//! What is running: the image's system description (`/.flipside/system.json`, written into
//! every image by the builder) gives the installed release; the configured hardware id, if
//! any, must agree with it.

use std::path::Path;

use flipside_contract::release::{check_name, SystemInfo, RELEASE_FORMAT};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::file::read_capped;

/// Largest system description read (it lists the image's closure).
const MAX_SYSTEM_INFO: u64 = 16 << 20;

/// The release installed in the running slot, as the update decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    pub version: u64,
    pub display_version: String,
    pub hardware_id: String,
}

/// Reads and checks the system description at `path`.
pub fn read_system_info(path: &Path) -> Result<SystemInfo> {
    let invalid = |why: String| Error::SystemInfoInvalid {
        path: path.to_path_buf(),
        why,
    };
    let bytes = match read_capped(path, MAX_SYSTEM_INFO) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            return Err(invalid(e.to_string()))
        }
        Err(source) => {
            return Err(Error::SystemInfoRead {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let info: SystemInfo = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if info.format != RELEASE_FORMAT {
        return Err(invalid(format!(
            "format {} is not {RELEASE_FORMAT}",
            info.format
        )));
    }
    check_name(&info.name).map_err(|e| invalid(e.to_string()))?;
    check_name(&info.hardware_id).map_err(|e| invalid(e.to_string()))?;
    Ok(info)
}

/// The installed release: the running image's description, with the configured hardware id
/// checked against it.
pub fn installed(config: &Config) -> Result<Installed> {
    let info = read_system_info(&config.device.system_info)?;
    if let Some(hw) = &config.device.hardware_id {
        if *hw != info.hardware_id {
            return Err(Error::ConfigInvalid {
                path: config.path.clone(),
                field: "device.hardware_id",
                why: format!(
                    "{hw} differs from the running image's {} ({}): fix the configuration",
                    info.hardware_id,
                    config.device.system_info.display()
                ),
            });
        }
    }
    Ok(Installed {
        name: info.name,
        version: info.version,
        display_version: info.display_version,
        hardware_id: info.hardware_id,
    })
}
