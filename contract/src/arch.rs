//! The processor architecture an image is built for. A device installs only images of its own
//! architecture (the one its `flipside` binary was built for), as it installs only its own
//! hardware id: an aarch64 root on an x86_64 device would not even start its init.

use serde::{Deserialize, Serialize};

/// An architecture, named as `uname -m` and Rust name it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    /// Releases made before architectures were recorded are x86_64.
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Architecture {
    /// The architecture this program was built for.
    pub const HOST: Architecture = if cfg!(target_arch = "aarch64") {
        Architecture::Aarch64
    } else {
        Architecture::X86_64
    };

    pub const fn name(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Aarch64 => "aarch64",
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Architecture {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" => Ok(Architecture::X86_64),
            "aarch64" => Ok(Architecture::Aarch64),
            other => Err(format!(
                "{other:?} is not a supported architecture: x86_64 or aarch64"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_older_forms_mean_x86_64() {
        for a in [Architecture::X86_64, Architecture::Aarch64] {
            assert_eq!(a.name().parse::<Architecture>(), Ok(a));
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.name()));
        }
        assert!("arm64".parse::<Architecture>().is_err());
        assert_eq!(Architecture::default(), Architecture::X86_64);
    }
}
