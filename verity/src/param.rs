//! The `flipside.verity=` word of the kernel command line: everything dm-verity needs to open
//! a slot's root, in the UKI's `.cmdline`, so that the Secure Boot signature over the UKI
//! covers the root hash and with it every block of the root filesystem.
//!
//! ```text
//! flipside.verity=sha256:<root hash hex>:<salt hex>:<data blocks>:<restart|panic>
//! ```
//!
//! Blocks are 4096 bytes ([`crate::BLOCK_SIZE`]); the hash tree follows the data on the same
//! partition (hash start block = data blocks). The last field says what the kernel does when
//! a block read at run time does not match: `restart` (default) or `panic` (with `panic=-1`
//! on the command line a panic resets too; without, the machine stops). Either way the boot
//! fails, a trial slot spends its try and flipside-boot falls back like after any failed
//! boot. Pure.

use core::fmt;
use core::str::FromStr;

use crate::tree::{Tree, BLOCK_SIZE};

/// The command line key.
pub const KEY: &str = "flipside.verity=";
/// Sectors (512 bytes) per verity block.
const SECTORS_PER_BLOCK: u64 = BLOCK_SIZE / 512;

/// What the kernel does when a block does not match its hash at run time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnCorruption {
    /// `restart_on_corruption`: the machine resets at once.
    #[default]
    Restart,
    /// `panic_on_corruption`: the kernel panics (resets with `panic=-1`).
    Panic,
}

impl OnCorruption {
    pub fn name(self) -> &'static str {
        match self {
            OnCorruption::Restart => "restart",
            OnCorruption::Panic => "panic",
        }
    }

    fn table_word(self) -> &'static str {
        match self {
            OnCorruption::Restart => "restart_on_corruption",
            OnCorruption::Panic => "panic_on_corruption",
        }
    }
}

impl FromStr for OnCorruption {
    type Err = ParamError;
    fn from_str(s: &str) -> Result<Self, ParamError> {
        match s {
            "restart" => Ok(OnCorruption::Restart),
            "panic" => Ok(OnCorruption::Panic),
            _ => Err(ParamError(format!(
                "on-corruption {s:?} is neither restart nor panic"
            ))),
        }
    }
}

/// A malformed `flipside.verity=` word: what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

/// What opens one slot's root through dm-verity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerityParams {
    pub root: [u8; 32],
    pub salt: [u8; 32],
    pub data_blocks: u64,
    pub on_corruption: OnCorruption,
}

/// How the device-mapper table reacts to a corrupted block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableMode {
    /// As the command line says (restart or panic): the device the system runs on.
    Configured,
    /// The read fails with EIO: the check device the initramfs reads end to end, so that it
    /// can tell a corrupted slot without resetting the machine.
    ReadError,
}

impl VerityParams {
    /// The parameters of `tree` with `salt`.
    pub fn of(tree: &Tree, salt: [u8; 32], on_corruption: OnCorruption) -> Self {
        Self {
            root: tree.root,
            salt,
            data_blocks: tree.data_blocks,
            on_corruption,
        }
    }

    /// Bytes of data the tree covers (the hash tree starts here).
    pub fn data_len(&self) -> u64 {
        self.data_blocks * BLOCK_SIZE
    }

    /// The `flipside.verity=` word in `cmdline`, if any (the last one wins, as in the kernel).
    pub fn from_cmdline(cmdline: &str) -> Result<Option<Self>, ParamError> {
        match cmdline
            .split_ascii_whitespace()
            .filter_map(|w| w.strip_prefix(KEY))
            .next_back()
        {
            Some(value) => value.parse().map(Some),
            None => Ok(None),
        }
    }

    /// The device-mapper table of one verity target over `device` (data and hash tree on the
    /// same device, the tree right after the data).
    pub fn table(&self, device: &str, mode: TableMode) -> (u64, String) {
        let sectors = self.data_blocks * SECTORS_PER_BLOCK;
        let mut params = format!(
            "1 {device} {device} {BLOCK_SIZE} {BLOCK_SIZE} {blocks} {blocks} sha256 {root} {salt}",
            blocks = self.data_blocks,
            root = hex::encode(self.root),
            salt = hex::encode(self.salt),
        );
        if mode == TableMode::Configured {
            params.push_str(" 1 ");
            params.push_str(self.on_corruption.table_word());
        }
        (sectors, params)
    }
}

impl fmt::Display for VerityParams {
    /// The whole command line word, `flipside.verity=...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{KEY}sha256:{}:{}:{}:{}",
            hex::encode(self.root),
            hex::encode(self.salt),
            self.data_blocks,
            self.on_corruption.name()
        )
    }
}

fn digest(what: &str, s: &str) -> Result<[u8; 32], ParamError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| ParamError(format!("the {what} {s:?} is not 64 hex digits")))?;
    Ok(out)
}

impl FromStr for VerityParams {
    type Err = ParamError;
    /// The value after `flipside.verity=`.
    fn from_str(value: &str) -> Result<Self, ParamError> {
        let fields: Vec<&str> = value.split(':').collect();
        let [algorithm, root, salt, blocks, mode] = fields[..] else {
            return Err(ParamError(format!(
                "{KEY}{value} has {} fields, not 5 (sha256:ROOT:SALT:BLOCKS:restart|panic)",
                fields.len()
            )));
        };
        if algorithm != "sha256" {
            return Err(ParamError(format!(
                "hash algorithm {algorithm:?} is not sha256"
            )));
        }
        let data_blocks: u64 = blocks
            .parse()
            .ok()
            .filter(|&b| b > 0 && b <= u64::MAX / BLOCK_SIZE)
            .ok_or_else(|| ParamError(format!("data blocks {blocks:?} is not a block count")))?;
        Ok(Self {
            root: digest("root hash", root)?,
            salt: digest("salt", salt)?,
            data_blocks,
            on_corruption: mode.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VerityParams {
        VerityParams {
            root: [0xab; 32],
            salt: [0x01; 32],
            data_blocks: 27116,
            on_corruption: OnCorruption::Restart,
        }
    }

    #[test]
    fn round_trips_through_the_command_line() {
        let word = sample().to_string();
        assert_eq!(
            word,
            format!(
                "flipside.verity=sha256:{}:{}:27116:restart",
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
        let cmdline = format!("console=ttyS0 {word} panic=-1");
        assert_eq!(VerityParams::from_cmdline(&cmdline), Ok(Some(sample())));
        assert_eq!(VerityParams::from_cmdline("console=ttyS0"), Ok(None));
        let panic = VerityParams {
            on_corruption: OnCorruption::Panic,
            ..sample()
        };
        assert_eq!(panic.to_string().parse::<VerityParams>().ok(), None);
        let value = panic.to_string()[KEY.len()..].to_string();
        assert_eq!(value.parse(), Ok(panic));
    }

    #[test]
    fn malformed_words_say_what_is_wrong() {
        let root = "ab".repeat(32);
        let salt = "01".repeat(32);
        for (value, why) in [
            (format!("sha256:{root}:{salt}:10"), "has 4 fields"),
            (format!("sha1:{root}:{salt}:10:restart"), "is not sha256"),
            (format!("sha256:{root}x:{salt}:10:restart"), "root hash"),
            (format!("sha256:{root}:zz:10:restart"), "salt"),
            (
                format!("sha256:{root}:{salt}:0:restart"),
                "not a block count",
            ),
            (
                format!("sha256:{root}:{salt}:10:eio"),
                "neither restart nor panic",
            ),
        ] {
            let e = value.parse::<VerityParams>().unwrap_err();
            assert!(e.0.contains(why), "{value}: {e}");
        }
    }

    #[test]
    fn table_puts_the_tree_after_the_data() {
        let (sectors, params) = sample().table("/dev/vda2", TableMode::Configured);
        assert_eq!(sectors, 27116 * 8);
        assert_eq!(
            params,
            format!(
                "1 /dev/vda2 /dev/vda2 4096 4096 27116 27116 sha256 {} {} 1 restart_on_corruption",
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
        let (_, check) = sample().table("/dev/vda2", TableMode::ReadError);
        assert!(check.ends_with(&"01".repeat(32)), "{check}");
        assert_eq!(sample().data_len(), 27116 * 4096);
    }
}
