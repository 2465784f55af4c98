//! Exit codes: one per failure class, documented in `--help` and in the README. A supervisor
//! acts on the class (retry later, alert, give up) without parsing messages.

use std::process::ExitCode;

/// What kind of failure ended a command. Every [`crate::Error`] maps to exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitClass {
    /// Success (also "already up to date").
    Ok,
    /// A bug: please report it.
    Internal,
    /// The command line is wrong.
    Usage,
    /// The configuration file, the running system's description or the disk layout is wrong.
    Config,
    /// The repository could not be reached or broke off (after bounded retries).
    Network,
    /// Repository metadata failed verification (signature, threshold, format, hash chain).
    Signature,
    /// Repository metadata has expired.
    Expired,
    /// The offered release (or metadata) is older than what is installed.
    Rollback,
    /// No release for this device: other hardware id or system, or an unknown format.
    Incompatible,
    /// Downloaded or written data does not match its signed hash.
    ChunkHash,
    /// The image or a download is larger than the slot or a configured cap.
    TooLarge,
    /// Reading or writing the disk failed.
    Io,
    /// The boot state or the state directory forbids the command, or the running slot is unknown.
    State,
    /// A health check failed.
    Health,
}

impl ExitClass {
    /// Every class, in code order.
    pub const ALL: [ExitClass; 14] = [
        ExitClass::Ok,
        ExitClass::Internal,
        ExitClass::Usage,
        ExitClass::Config,
        ExitClass::Network,
        ExitClass::Signature,
        ExitClass::Expired,
        ExitClass::Rollback,
        ExitClass::Incompatible,
        ExitClass::ChunkHash,
        ExitClass::TooLarge,
        ExitClass::Io,
        ExitClass::State,
        ExitClass::Health,
    ];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            ExitClass::Ok => 0,
            ExitClass::Internal => 1,
            ExitClass::Usage => 2,
            ExitClass::Config => 3,
            ExitClass::Network => 4,
            ExitClass::Signature => 5,
            ExitClass::Expired => 6,
            ExitClass::Rollback => 7,
            ExitClass::Incompatible => 8,
            ExitClass::ChunkHash => 9,
            ExitClass::TooLarge => 10,
            ExitClass::Io => 11,
            ExitClass::State => 12,
            ExitClass::Health => 13,
        }
    }

    /// Short name, as `status --json` and logs print it.
    pub const fn name(self) -> &'static str {
        match self {
            ExitClass::Ok => "ok",
            ExitClass::Internal => "internal",
            ExitClass::Usage => "usage",
            ExitClass::Config => "config",
            ExitClass::Network => "network",
            ExitClass::Signature => "signature",
            ExitClass::Expired => "expired",
            ExitClass::Rollback => "rollback",
            ExitClass::Incompatible => "incompatible",
            ExitClass::ChunkHash => "chunk-hash",
            ExitClass::TooLarge => "too-large",
            ExitClass::Io => "io",
            ExitClass::State => "state",
            ExitClass::Health => "health",
        }
    }

    /// One line for the table: what happened and what to do.
    pub const fn meaning(self) -> &'static str {
        match self {
            ExitClass::Ok => "success, or already up to date",
            ExitClass::Internal => "internal error: report it with the log",
            ExitClass::Usage => "wrong command line: see --help",
            ExitClass::Config => "configuration, system description or disk layout wrong: fix the config",
            ExitClass::Network => "repository unreachable or download broke off after retries: try again later",
            ExitClass::Signature => "repository metadata failed verification: nothing was installed; alert the operator",
            ExitClass::Expired => "repository metadata expired: the publisher must re-sign; check the clock",
            ExitClass::Rollback => "offered release older than the installed one (--allow-downgrade to force) or below the anti-rollback floor: refused",
            ExitClass::Incompatible => "no release for this device (hardware id, system name or format)",
            ExitClass::ChunkHash => "downloaded or written data does not match its signed hash: try again or another mirror",
            ExitClass::TooLarge => "image larger than the slot, or a download above its cap",
            ExitClass::Io => "disk read/write failed: check the device",
            ExitClass::State => "boot state forbids it (trial pending, not on trial, no fallback) or state dir/running slot problem",
            ExitClass::Health => "a health check failed (the trial slot was marked bad)",
        }
    }

    /// The process exit code as [`ExitCode`].
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

/// The exit code table as plain text (for `--help`).
pub fn table() -> String {
    let mut out = String::from("Exit codes:\n");
    for class in ExitClass::ALL {
        out.push_str(&format!(
            "  {:>2}  {:<12}  {}\n",
            class.code(),
            class.name(),
            class.meaning()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_distinct_and_in_order() {
        let codes: Vec<u8> = ExitClass::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, (0..14).collect::<Vec<u8>>());
        let names: HashSet<&str> = ExitClass::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), ExitClass::ALL.len());
    }

    #[test]
    fn table_lists_every_class() {
        let t = table();
        for class in ExitClass::ALL {
            assert!(t.contains(class.name()), "{}", class.name());
        }
    }
}
