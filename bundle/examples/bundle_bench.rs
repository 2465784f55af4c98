//! Bundle cost against the zstd CLI on one image, for a few levels.
//!
//! `cargo run --release -p flipside-bundle --example bundle_bench -- IMAGE [LEVELS] [THREADS]`
//! LEVELS is a comma list (default 3,6,9,12,15,19), THREADS the bundle's compression threads
//! (default 0: all cores, as `zstd -T0`). Prints, per level, the bundle's time, size and peak
//! memory, then `zstd -LEVEL -T0` (one stream) on the same image, and the size overhead of
//! independent chunks; then the time to verify and rebuild the image from the default bundle.
//! Times are wall clock and CPU (user + system, all threads): on a shared machine the CPU time
//! is the steadier figure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use flipside_bundle::{read_bundle, write_bundle, BundleParams, DEFAULT_ZSTD_LEVEL};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bundle_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let image = PathBuf::from(
        args.next()
            .ok_or("usage: bundle_bench IMAGE [LEVELS] [THREADS]")?,
    );
    let levels: Vec<i32> = args
        .next()
        .unwrap_or_else(|| "3,6,9,12,15,19".into())
        .split(',')
        .map(|l| l.trim().parse().map_err(|e| format!("level {l:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let threads: usize = match args.next() {
        Some(t) => t.parse().map_err(|e| format!("threads {t:?}: {e}"))?,
        None => 0,
    };
    let image_length = fs::metadata(&image)
        .map_err(|e| format!("{}: {e}", image.display()))?
        .len();
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!(
        "image {} : {:.1} MB; bundle threads {} (0 = all); zstd CLI -T0",
        image.display(),
        mb(image_length),
        threads
    );
    println!(
        "{:>5} | {:>7} {:>7} {:>10} {:>6} {:>7} {:>9} | {:>7} {:>7} {:>10} {:>6} | {:>8}",
        "level",
        "wall s",
        "cpu s",
        "bundle MB",
        "ratio",
        "chunks",
        "peak MiB",
        "wall s",
        "cpu s",
        "zstd MB",
        "ratio",
        "overhead"
    );
    for level in levels {
        let bundle = work.path().join(format!("l{level}.bundle"));
        let params = BundleParams {
            zstd_level: level,
            threads,
            ..BundleParams::default()
        };
        reset_peak_memory();
        let cpu = cpu_seconds();
        let start = Instant::now();
        let index = write_bundle(&image, &bundle, &params).map_err(|e| e.to_string())?;
        let bundle_s = start.elapsed().as_secs_f64();
        let bundle_cpu = cpu_seconds().0 - cpu.0;
        let peak = peak_memory_mib();
        let bundle_len = index.bundle_length();
        let cpu = cpu_seconds();
        let (zstd_s, zstd_len) = zstd_cli(&image, level, work.path())?;
        let zstd_cpu = cpu_seconds().1 - cpu.1;
        println!(
            "{:>5} | {:>7.2} {:>7.2} {:>10.2} {:>6.2} {:>7} {:>9} | {:>7.2} {:>7.2} {:>10.2} {:>6.2} | {:>+7.1}%",
            level,
            bundle_s,
            bundle_cpu,
            mb(bundle_len),
            image_length as f64 / bundle_len as f64,
            index.len(),
            peak.map_or("?".into(), |p| p.to_string()),
            zstd_s,
            zstd_cpu,
            mb(zstd_len),
            image_length as f64 / zstd_len as f64,
            (bundle_len as f64 / zstd_len as f64 - 1.0) * 100.0
        );
        if level == DEFAULT_ZSTD_LEVEL {
            let start = Instant::now();
            read_bundle(&bundle, &index, &mut std::io::sink()).map_err(|e| e.to_string())?;
            let s = start.elapsed().as_secs_f64();
            println!(
                "      verify + decompress of the level {level} bundle (one thread): {s:.2} s, {:.0} MB/s of image; index {} bytes",
                mb(image_length) / s,
                index.encode().len()
            );
        }
        fs::remove_file(&bundle).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `zstd -LEVEL -T0 -c IMAGE > out`: wall time and size.
fn zstd_cli(image: &Path, level: i32, dir: &Path) -> Result<(f64, u64), String> {
    let out_path = dir.join("cli.zst");
    let out = fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("zstd");
    if level > 19 {
        cmd.arg("--ultra");
    }
    let start = Instant::now();
    let status = cmd
        .arg(format!("-{level}"))
        .args(["-T0", "-q", "-c"])
        .arg(image)
        .stdout(out)
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("cannot run zstd (apt-get install zstd): {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("zstd -{level} failed: {status}"));
    }
    let len = fs::metadata(&out_path).map_err(|e| e.to_string())?.len();
    fs::remove_file(&out_path).map_err(|e| e.to_string())?;
    Ok((seconds, len))
}

/// Resets VmHWM (Linux: writing 5 to clear_refs), so each level's peak is its own.
fn reset_peak_memory() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// CPU seconds (user + system) of this process and of its waited-for children, from
/// /proc/self/stat (fields 14-17, in clock ticks of 1/100 s on Linux).
fn cpu_seconds() -> (f64, f64) {
    let parse = || -> Option<(f64, f64)> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<f64> = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        Some((
            (fields[0] + fields[1]) / 100.0,
            (fields[2] + fields[3]) / 100.0,
        ))
    };
    parse().unwrap_or((f64::NAN, f64::NAN))
}

fn peak_memory_mib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
