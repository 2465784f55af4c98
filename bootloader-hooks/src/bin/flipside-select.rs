//! `flipside-select`: picks the slot to boot, as firmware would, from an initramfs.
//!
//! ```text
//! flipside-select --disk DISK [--label-a root-a] [--label-b root-b] [--dry-run]
//! flipside-select --disk DISK --mark-bad a|b
//! ```
//!
//! Reads the GPT on DISK (a block device, loop device or image file), finds the two slot
//! partitions by GPT partition name, applies the selection rules (highest priority among
//! P>0 and (S=1 or T>0); a tie goes to the lower partition number), consumes a try when the
//! chosen slot is on trial, and writes the table back (backup copy first, each copy flushed)
//! when something changed or a copy needed repair. `--dry-run` opens DISK read-only and writes
//! nothing. On success it prints one line for `eval`:
//!
//! ```text
//! FLIPSIDE_SLOT=b FLIPSIDE_PARTUUID=8c1f...-... FLIPSIDE_PARTITION=/dev/vda3 FLIPSIDE_PARTNUM=3 FLIPSIDE_TRIAL=1 FLIPSIDE_TRIES_LEFT=2
//! ```
//!
//! `FLIPSIDE_PARTITION` is the partition device (`/dev/vda3`, `/dev/nvme0n1p3`, `/dev/loop0p3`)
//! when DISK is a block device, and just the partition number when DISK is a file.
//!
//! Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | a slot was chosen; the line above is on stdout |
//! | 1 | internal error |
//! | 2 | usage error (unknown or missing argument) |
//! | 3 | no bootable slot: neither slot has P>0 and (S=1 or T>0) |
//! | 4 | cannot read the table: DISK cannot be opened or read, has no protective MBR, both GPT copies are corrupt, or a slot partition is missing or ambiguous |
//! | 5 | cannot write the table: the consumed try was not recorded, so do not boot the trial slot from this run |
//!
//! `--mark-bad SLOT` is for the initramfs that found SLOT unusable before anything ran on it
//! (its root does not match the dm-verity root hash the signed command line names): it clears
//! SLOT (P=0, T=0, S=0), so that the next boot starts the other slot even when SLOT was proven,
//! prints `FLIPSIDE_MARKED_BAD=SLOT` and exits 0; exit 3 when the other slot is not bootable
//! (nothing is written), 5 when the table cannot be written.
//!
//! A proven slot (S=1) needs no write: it is chosen (exit 0) even when DISK opens only
//! read-only or a broken GPT copy cannot be repaired; a warning goes to stderr.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flipside_bootloader_hooks::devpath::partition_device;
use flipside_bootloader_hooks::disk::{self, SlotLayout, DEFAULT_LABEL_A, DEFAULT_LABEL_B};
use flipside_bootloader_hooks::{Disk, Error, Selection, Slot, TableHealth};

const EXIT_INTERNAL: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NO_BOOTABLE_SLOT: u8 = 3;
const EXIT_CANNOT_READ: u8 = 4;
const EXIT_CANNOT_WRITE: u8 = 5;

const USAGE: &str =
    "usage: flipside-select --disk DISK [--label-a LABEL] [--label-b LABEL] [--dry-run]
  --disk DISK      whole disk, loop device or image file holding the GPT
  --label-a LABEL  GPT partition name of slot a (default root-a)
  --label-b LABEL  GPT partition name of slot b (default root-b)
  --dry-run        read only: report the choice, write nothing
  --mark-bad SLOT  clear slot a or b (its root is corrupted) so that the other one boots next
exit codes: 0 chosen, 1 internal, 2 usage, 3 no bootable slot, 4 cannot read the table,
            5 cannot write the table";

/// What the user asked for.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    disk: PathBuf,
    label_a: String,
    label_b: String,
    dry_run: bool,
    mark_bad: Option<Slot>,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut disk = None;
    let mut label_a = DEFAULT_LABEL_A.to_string();
    let mut label_b = DEFAULT_LABEL_B.to_string();
    let mut dry_run = false;
    let mut mark_bad = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not UTF-8"))?;
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--disk" => disk = Some(PathBuf::from(value("--disk")?)),
            "--label-a" => label_a = text(value("--label-a")?, "--label-a")?,
            "--label-b" => label_b = text(value("--label-b")?, "--label-b")?,
            "--dry-run" => dry_run = true,
            "--mark-bad" => {
                mark_bad = Some(match text(value("--mark-bad")?, "--mark-bad")?.as_str() {
                    "a" => Slot::A,
                    "b" => Slot::B,
                    other => return Err(format!("--mark-bad {other:?} is neither a nor b")),
                })
            }
            "-h" | "--help" => return Ok(Parsed::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let disk = disk.ok_or("--disk is required")?;
    if label_a == label_b {
        return Err(format!("--label-a and --label-b are both {label_a:?}"));
    }
    if dry_run && mark_bad.is_some() {
        return Err("--dry-run and --mark-bad exclude each other".into());
    }
    Ok(Parsed::Run(Args {
        disk,
        label_a,
        label_b,
        dry_run,
        mark_bad,
    }))
}

fn text(v: OsString, name: &str) -> Result<String, String> {
    v.into_string()
        .map_err(|v| format!("{name} value {v:?} is not UTF-8"))
}

/// A value as a shell word: bare when it is plain, single-quoted otherwise.
fn shell_word(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:+,@%".contains(c));
    if plain {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

fn partition_name(disk: &Path, number: u32) -> String {
    let is_block = std::fs::metadata(disk).is_ok_and(|m| m.file_type().is_block_device());
    if is_block {
        // /dev/disk/by-id/... names are links: the kernel's name is what gets the suffix.
        let real = std::fs::canonicalize(disk).unwrap_or_else(|_| disk.to_path_buf());
        partition_device(&real, number).display().to_string()
    } else {
        number.to_string()
    }
}

fn eval_line(
    choice: &Selection,
    state: &flipside_bootloader_hooks::BootState,
    disk: &Path,
) -> String {
    let s = state.slot(choice.slot);
    let vars = [
        ("FLIPSIDE_SLOT", choice.slot.name().to_string()),
        (
            "FLIPSIDE_PARTUUID",
            s.partition.partuuid.hyphenated().to_string(),
        ),
        (
            "FLIPSIDE_PARTITION",
            partition_name(disk, s.partition.number),
        ),
        ("FLIPSIDE_PARTNUM", s.partition.number.to_string()),
        ("FLIPSIDE_TRIAL", u8::from(choice.trial).to_string()),
        ("FLIPSIDE_TRIES_LEFT", choice.tries_left.to_string()),
    ];
    vars.iter()
        .map(|(k, v)| format!("{k}={}", shell_word(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_failure(e: &Error) -> u8 {
    match e {
        Error::NoBootableSlot { .. } => EXIT_NO_BOOTABLE_SLOT,
        Error::FieldOutOfRange { .. } => EXIT_INTERNAL,
        _ => EXIT_CANNOT_READ,
    }
}

/// Opens the disk read-write (read-only for `--dry-run`). When it opens only read-only, the
/// reason comes back with it: a proven slot still boots from a read-only medium.
fn open(args: &Args) -> Result<(Disk<File>, Option<Error>), (u8, Error)> {
    if args.dry_run {
        let d = Disk::open(&args.disk, false).map_err(|e| (EXIT_CANNOT_READ, e))?;
        return Ok((d, None));
    }
    match Disk::open(&args.disk, true) {
        Ok(d) => Ok((d, None)),
        Err(write_refused) => {
            let d = Disk::open(&args.disk, false).map_err(|e| (EXIT_CANNOT_READ, e))?;
            Ok((d, Some(write_refused)))
        }
    }
}

/// Which copy was rewritten and why, for the repair line.
fn repair_reason(health: &TableHealth) -> String {
    match (&health.primary, &health.backup) {
        (Some(p), _) => format!("the primary copy was unusable: {p}"),
        (None, Some(b)) => format!("the backup copy was unusable: {b}"),
        (None, None) => "the two copies disagreed".to_string(),
    }
}

fn run(args: &Args) -> Result<String, (u8, Error)> {
    let (mut disk, write_refused) = open(args)?;
    let layout = SlotLayout::by_labels(args.label_a.clone(), args.label_b.clone());
    let (mut table, state) = disk::load(&mut disk, &layout).map_err(|e| (read_failure(&e), e))?;
    if let Some(slot) = args.mark_bad {
        let next = state
            .mark_bad(slot)
            .map_err(|e| (EXIT_NO_BOOTABLE_SLOT, e))?;
        if let Some(e) = write_refused {
            return Err((EXIT_CANNOT_WRITE, e));
        }
        disk::commit(&mut disk, &mut table, &next).map_err(|e| (EXIT_CANNOT_WRITE, e))?;
        eprintln!(
            "flipside-select: {}: marked slot {slot} bad: {} (was {})",
            args.disk.display(),
            next.attrs(slot),
            state.attrs(slot)
        );
        return Ok(format!("FLIPSIDE_MARKED_BAD={}", slot.name()));
    }
    let (choice, next) = state.select().map_err(|e| (read_failure(&e), e))?;
    let name = args.disk.display();
    if args.dry_run {
        if table.needs_repair() {
            eprintln!(
                "flipside-select: {name}: a GPT copy needs repair ({:?}); --dry-run leaves it",
                table.health()
            );
        }
        return Ok(eval_line(&choice, &next, &args.disk));
    }
    // A consumed try must be on disk before the trial boots; a repair may wait.
    let must_write = next != state;
    let repair = table.needs_repair().then(|| repair_reason(&table.health()));
    let written = match write_refused {
        Some(e) => Err(e),
        None => disk::commit(&mut disk, &mut table, &next),
    };
    match written {
        Ok(true) => {
            // Said apart: a repair alone changes no boot bit, and must not read as if it did.
            if must_write {
                eprintln!(
                    "flipside-select: {name}: wrote slot {} {} (was {})",
                    choice.slot,
                    next.attrs(choice.slot),
                    state.attrs(choice.slot)
                );
            }
            if let Some(why) = &repair {
                eprintln!("flipside-select: {name}: repaired the GPT ({why})");
            }
        }
        Ok(false) => {}
        Err(e) if must_write => return Err((EXIT_CANNOT_WRITE, e)),
        Err(e) if table.needs_repair() => eprintln!(
            "flipside-select: {name}: cannot repair the GPT ({e}); booting proven slot {} anyway",
            choice.slot
        ),
        Err(_) => {}
    }
    Ok(eval_line(&choice, &next, &args.disk))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("flipside-select: {msg}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err((code, e)) => {
            eprintln!("flipside-select: {e}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Parsed, String> {
        parse_args(v.iter().map(OsString::from))
    }

    #[test]
    fn parses_the_documented_forms() {
        let Ok(Parsed::Run(a)) = parse(&["--disk", "/dev/vda"]) else {
            panic!("plain --disk must parse");
        };
        assert_eq!(
            a,
            Args {
                disk: "/dev/vda".into(),
                label_a: "root-a".into(),
                label_b: "root-b".into(),
                dry_run: false,
                mark_bad: None,
            }
        );
        let Ok(Parsed::Run(a)) = parse(&[
            "--dry-run",
            "--label-b",
            "B",
            "--disk",
            "x.img",
            "--label-a",
            "A",
        ]) else {
            panic!("all options must parse");
        };
        assert_eq!(
            (a.label_a.as_str(), a.label_b.as_str(), a.dry_run),
            ("A", "B", true)
        );
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
        let Ok(Parsed::Run(a)) = parse(&["--disk", "d", "--mark-bad", "b"]) else {
            panic!("--mark-bad must parse");
        };
        assert_eq!(a.mark_bad, Some(Slot::B));
    }

    #[test]
    fn refuses_bad_usage() {
        for bad in [
            &[][..],
            &["--disk"][..],
            &["--disk", "d", "--bogus"][..],
            &["--disk", "d", "--label-a", "x", "--label-b", "x"][..],
            &["--disk", "d", "--mark-bad", "c"][..],
            &["--disk", "d", "--mark-bad"][..],
            &["--disk", "d", "--mark-bad", "a", "--dry-run"][..],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shell_words_are_safe() {
        assert_eq!(shell_word("/dev/vda3"), "/dev/vda3");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("$(x)"), "'$(x)'");
        assert_eq!(shell_word(""), "''");
    }
}
