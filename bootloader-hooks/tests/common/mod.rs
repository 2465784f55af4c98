//! Helpers shared by the integration tests: real GPT images made with sgdisk, the real tools'
//! views of the attribute bits, loop devices, and the flipside-select binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flipside_bootloader_hooks::{BootAttrs, Slot};

pub mod hostile_gpt;

/// ChromeOS kernel partition type: cgpt treats P/T/S on it as boot state.
pub const KERNEL_TYPE: &str = "FE3A2A5D-4F32-41A7-B725-ACCC3285A309";

/// Fails the test with a clear message when a tool the test needs is not installed.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file());
    assert!(
        found,
        "this test needs `{tool}`: install the Debian package `{package}` (apt-get install {package})"
    );
}

fn tool_path(tool: &str) -> PathBuf {
    for d in ["/usr/sbin", "/sbin"] {
        let p = Path::new(d).join(tool);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(tool)
}

/// Runs a tool and returns its output, whatever its exit status.
pub fn run_raw(tool: &str, args: &[&str]) -> Output {
    Command::new(tool_path(tool))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
}

/// Runs a tool, asserts it succeeded, returns its stdout.
pub fn run(tool: &str, args: &[&str]) -> String {
    let out = run_raw(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Partitions every image gets: 1 root-a and 2 root-b (ChromeOS kernel type), 3 data.
pub fn partition_with_sgdisk(target: &Path, first_sector: u64, slot_size: &str) {
    require("sgdisk", "gdisk");
    let first = format!("1:{first_sector}:+{slot_size}");
    let second = format!("2:0:+{slot_size}");
    let t1 = format!("1:{KERNEL_TYPE}");
    let t2 = format!("2:{KERNEL_TYPE}");
    run(
        "sgdisk",
        &[
            "-a",
            "8",
            "-o",
            "-n",
            &first,
            "-t",
            &t1,
            "-c",
            "1:root-a",
            "-n",
            &second,
            "-t",
            &t2,
            "-c",
            "2:root-b",
            "-n",
            "3:0:0",
            "-c",
            "3:data",
            s(target),
        ],
    );
}

/// A 256 KiB image file with a 512-byte-sector GPT made by sgdisk.
pub fn make_image(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(256 * 1024))
        .expect("create image file");
    partition_with_sgdisk(&path, 40, "64K");
    path
}

/// A loop device over an image file, detached on drop.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    /// Attaches `image` with the given logical sector size.
    pub fn attach(image: &Path, sector_size: u32) -> Self {
        Self::losetup(&["--sector-size", &sector_size.to_string(), s(image)])
    }

    /// Attaches `image` read-only.
    pub fn attach_read_only(image: &Path) -> Self {
        Self::losetup(&["-r", s(image)])
    }

    fn losetup(args: &[&str]) -> Self {
        require("losetup", "mount");
        let mut all = vec!["--show", "-f"];
        all.extend_from_slice(args);
        let out = run_raw("losetup", &all);
        assert!(
            out.status.success(),
            "this test needs a loop device (run as root with /dev/loop-control): losetup said {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Loop { dev }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = run_raw("losetup", &["-d", s(&self.dev)]);
    }
}

/// A 1 MiB image file holding a GPT with 4096-byte sectors, made by sgdisk on a 4K loop device.
pub fn make_image_4k(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(1024 * 1024))
        .expect("create image file");
    let lo = Loop::attach(&path, 4096);
    partition_with_sgdisk(&lo.dev, 8, "64K");
    path
}

/// P, T, S of partition `n` as cgpt shows them.
pub fn cgpt_pts(disk: &Path, n: u32) -> (u8, u8, bool) {
    require("cgpt", "cgpt");
    let i = n.to_string();
    let field = |f: &str| -> u8 {
        let out = run("cgpt", &["show", "-i", &i, f, s(disk)]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("cgpt show {f} printed {out:?}"))
    };
    (field("-P"), field("-T"), field("-S") == 1)
}

/// Sets P, T, S of partition `n` with cgpt.
pub fn cgpt_set(disk: &Path, n: u32, p: u8, t: u8, s_: bool) {
    require("cgpt", "cgpt");
    let (i, p, t, sv) = (
        n.to_string(),
        p.to_string(),
        t.to_string(),
        u8::from(s_).to_string(),
    );
    run(
        "cgpt",
        &["add", "-i", &i, "-P", &p, "-T", &t, "-S", &sv, s(disk)],
    );
}

/// The attribute bits of partition `n` as `sgdisk -A n:show` lists them.
pub fn sgdisk_bits(disk: &Path, n: u32) -> u64 {
    require("sgdisk", "gdisk");
    let out = run("sgdisk", &["-A", &format!("{n}:show"), s(disk)]);
    let mut bits = 0u64;
    for line in out.lines() {
        // "2:48:1 (Undefined bit #48)"
        let mut f = line.split(':');
        let (Some(part), Some(bit), Some(val)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if part.trim() == n.to_string() && val.starts_with('1') {
            let bit: u32 = bit
                .parse()
                .unwrap_or_else(|_| panic!("odd sgdisk line {line:?}"));
            bits |= 1 << bit;
        }
    }
    bits
}

/// Asserts `sgdisk -v` and `cgpt show` find no problem in either table copy. sgdisk says
/// "No problems found" even when it silently used the backup, so its cautions are checked too.
pub fn assert_sgdisk_clean(disk: &Path) {
    require("sgdisk", "gdisk");
    require("cgpt", "cgpt");
    let out = run_raw("sgdisk", &["-v", s(disk)]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lower = text.to_lowercase();
    let alarms = ["corrupt", "crc", "invalid", "error", "warning", "damaged"];
    assert!(
        out.status.success()
            && text.contains("No problems found")
            && !alarms.iter().any(|a| lower.contains(a)),
        "sgdisk -v {}: {text}",
        disk.display()
    );
    let shown = run("cgpt", &["show", s(disk)]);
    assert!(
        !shown.contains("INVALID") && !shown.contains("WARNING"),
        "cgpt show {}: {shown}",
        disk.display()
    );
}

/// The boot state firmware rules give for two slots' (number, P, T, S), written here apart from
/// the library: the slot to boot, or None.
pub fn reference_choice(a: (u32, u8, u8, bool), b: (u32, u8, u8, bool)) -> Option<Slot> {
    let mut candidates: Vec<(Slot, u32, u8)> = [(Slot::A, a), (Slot::B, b)]
        .into_iter()
        .filter(|(_, (_, p, t, s))| *p != 0 && (*s || *t != 0))
        .map(|(slot, (n, p, _, _))| (slot, n, p))
        .collect();
    candidates.sort_by(|x, y| y.2.cmp(&x.2).then(x.1.cmp(&y.1)));
    candidates.first().map(|c| c.0)
}

pub fn attrs(p: u8, t: u8, s: bool) -> BootAttrs {
    BootAttrs::new(p, t, s).expect("test attrs in range")
}

/// Runs flipside-select with `args`.
pub fn select(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flipside-select"))
        .args(args)
        .output()
        .expect("run flipside-select")
}

/// The KEY=VALUE pairs of flipside-select's stdout.
pub fn eval_vars(out: &Output) -> std::collections::BTreeMap<String, String> {
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
