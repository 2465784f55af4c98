//! flipside-verity: dm-verity for flipside's root images.
//!
//! ```text
//! flipside-verity format IMAGE [--on-corruption restart|panic]
//! flipside-verity open DEVICE [--name NAME] [--cmdline FILE] [--bench yes]
//! ```
//!
//! `format` pads IMAGE to whole 4096-byte blocks, appends its hash tree (veritysetup's format,
//! no superblock; the salt is the sha256 of the padded data, so the same image always gets the
//! same tree) and prints the `flipside.verity=` word for the UKI's command line.
//!
//! `open` runs in the initramfs: when the kernel command line (`/proc/cmdline`) has a
//! `flipside.verity=` word, it first reads the whole root through a check device whose
//! corrupted blocks fail with EIO (so a changed root is found here, where the boot can still
//! fall back, and not as a reset loop later), then opens DEVICE as `NAME` (default `root`)
//! with the configured reaction to corruption and prints the node to mount (`/dev/dm-N`).
//! Without the word it prints nothing. `--bench yes` also reads the same bytes from DEVICE
//! directly first and prints both times on stderr as a console marker
//! (`FLIPSIDE: initrd verity-bench bytes=N raw_ms=A verity_ms=B`): the read cost of dm-verity.
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | done (`open`: the node, or nothing without `flipside.verity=`) |
//! | 2 | usage error |
//! | 3 | the `flipside.verity=` word is malformed, or the image cannot be read or written |
//! | 4 | a block of the root does not match the root hash: the slot is corrupted |
//! | 5 | device-mapper failed (module missing, device too small) |

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use flipside_verity::dm::{Control, Target};
use flipside_verity::param::TableMode;
use flipside_verity::{tree, OnCorruption, VerityParams};

const USAGE: &str = "usage: flipside-verity format IMAGE [--on-corruption restart|panic]
       flipside-verity open DEVICE [--name NAME] [--cmdline FILE] [--bench yes]";

enum Failure {
    Usage(String),
    Input(String),
    Corrupt(String),
    DeviceMapper(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Input(_) => 3,
            Failure::Corrupt(_) => 4,
            Failure::DeviceMapper(_) => 5,
        }
    }
    fn message(&self) -> &str {
        match self {
            Failure::Usage(m)
            | Failure::Input(m)
            | Failure::Corrupt(m)
            | Failure::DeviceMapper(m) => m,
        }
    }
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> Failure {
    let (what, path) = (what.to_string(), path.display().to_string());
    move |e| Failure::Input(format!("cannot {what} {path}: {e}"))
}

/// Pads, hashes and extends `image`; returns the command line word.
fn format(image: &Path, on_corruption: OnCorruption) -> Result<String, Failure> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(io_err("open", image))?;
    let params =
        tree::append_to(&mut f, on_corruption).map_err(io_err("append a hash tree to", image))?;
    Ok(params.to_string())
}

fn dm_err(e: flipside_verity::dm::Error) -> Failure {
    Failure::DeviceMapper(e.to_string())
}

/// Opens `device` as `name` through dm-verity; `None` without `flipside.verity=`.
fn open(
    device: &Path,
    name: &str,
    cmdline: &Path,
    bench: bool,
) -> Result<Option<PathBuf>, Failure> {
    let text = std::fs::read_to_string(cmdline).map_err(io_err("read", cmdline))?;
    let Some(params) = VerityParams::from_cmdline(&text)
        .map_err(|e| Failure::Input(format!("{}: {e}", cmdline.display())))?
    else {
        return Ok(None);
    };
    let dev = device.to_string_lossy();
    let control = Control::open().map_err(dm_err)?;
    let target = |mode| {
        let (sectors, params) = params.table(&dev, mode);
        Target {
            sectors,
            target_type: "verity".into(),
            params,
        }
    };
    let raw_ms = if bench {
        let t = Instant::now();
        read_all(device, params.data_len())
            .map_err(|(at, e)| Failure::Input(format!("cannot read {dev} at byte {at}: {e}")))?;
        Some(t.elapsed().as_millis())
    } else {
        None
    };
    // The check pass: every data block read once through verity, errors as EIO.
    let check_name = format!("{name}-check");
    let node = control
        .create_readonly(&check_name, &target(TableMode::ReadError))
        .map_err(dm_err)?;
    let t = Instant::now();
    let checked = read_all(&node, params.data_len());
    let verity_ms = t.elapsed().as_millis();
    control.remove(&check_name).map_err(dm_err)?;
    if let Some(raw_ms) = raw_ms {
        eprintln!(
            "FLIPSIDE: initrd verity-bench bytes={} raw_ms={raw_ms} verity_ms={verity_ms}",
            params.data_len()
        );
    }
    if let Err((offset, e)) = checked {
        return Err(Failure::Corrupt(format!(
            "{dev} does not match the root hash on the command line: reading {} at byte {offset} failed ({e}); the slot was changed after it was written",
            node.display()
        )));
    }
    let node = control
        .create_readonly(name, &target(TableMode::Configured))
        .map_err(dm_err)?;
    Ok(Some(node))
}

/// Reads `len` bytes of `node`; the offset of the first failed read.
fn read_all(node: &Path, len: u64) -> Result<(), (u64, io::Error)> {
    let mut f = File::open(node).map_err(|e| (0, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        match f.read(&mut buf[..want]) {
            Ok(0) => return Err((done, io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => done += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

fn run(args: Vec<String>) -> Result<(), Failure> {
    let usage = |m: &str| Failure::Usage(format!("{m}\n{USAGE}"));
    let mut it = args.into_iter();
    let cmd = it.next().ok_or_else(|| usage("no command"))?;
    let target = it.next().ok_or_else(|| usage("no IMAGE or DEVICE"))?;
    let mut on_corruption = OnCorruption::default();
    let mut name = "root".to_string();
    let mut cmdline = PathBuf::from("/proc/cmdline");
    let mut bench = false;
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| usage(&format!("{flag} needs a value")))?;
        match (cmd.as_str(), flag.as_str()) {
            ("format", "--on-corruption") => {
                on_corruption = value
                    .parse()
                    .map_err(|e: flipside_verity::param::ParamError| usage(&e.0))?
            }
            ("open", "--name") => name = value,
            ("open", "--cmdline") => cmdline = PathBuf::from(value),
            ("open", "--bench") => bench = value == "yes",
            _ => return Err(usage(&format!("unknown argument {flag}"))),
        }
    }
    match cmd.as_str() {
        "format" => println!("{}", format(Path::new(&target), on_corruption)?),
        "open" => {
            if let Some(node) = open(Path::new(&target), &name, &cmdline, bench)? {
                println!("{}", node.display());
            }
        }
        other => return Err(usage(&format!("unknown command {other}"))),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("flipside-verity: {}", f.message());
            ExitCode::from(f.code())
        }
    }
}
