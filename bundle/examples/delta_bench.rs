//! Delta frame strategies measured on two releases, without building bundles.
//!
//! `cargo run --release -p flipside-bundle --example delta_bench -- OLD_IMAGE OLD_INDEX NEW_IMAGE NEW_INDEX [LEVEL]`
//! For the chunks of the new image the old one lacks, prints the bytes a device would fetch
//! (full frames, or a delta frame and its 64-byte record where smaller) with the base chosen
//! and sized in several ways, and the time each took.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use flipside_bundle::{delta_features as features, read_index, ChunkEntry, Limits};
use rayon::prelude::*;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("delta_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Side {
    image: File,
    entries: Vec<ChunkEntry>,
}

fn side(image: &str, index: &str) -> Result<Side, String> {
    let index = read_index(&PathBuf::from(index), &Limits::default()).map_err(|e| e.to_string())?;
    Ok(Side {
        image: File::open(image).map_err(|e| format!("{image}: {e}"))?,
        entries: index.entries().to_vec(),
    })
}

fn read(s: &Side, range: std::ops::Range<u64>) -> Vec<u8> {
    let mut buf = vec![0; (range.end - range.start) as usize];
    s.image.read_exact_at(&mut buf, range.start).unwrap();
    buf
}

fn run() -> Result<(), String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 4 {
        return Err("usage: delta_bench OLD_IMAGE OLD_INDEX NEW_IMAGE NEW_INDEX [LEVEL]".into());
    }
    let old = side(&a[0], &a[1])?;
    let new = side(&a[2], &a[3])?;
    let level: i32 = a
        .get(4)
        .map_or(Ok(16), |l| l.parse())
        .map_err(|e| format!("{e}"))?;
    let held: HashSet<([u8; 32], u64)> = old.entries.iter().map(|e| (e.sha256, e.length)).collect();
    let present: HashSet<([u8; 32], u64)> =
        new.entries.iter().map(|e| (e.sha256, e.length)).collect();
    let needed: Vec<usize> = (0..new.entries.len())
        .filter(|&n| !held.contains(&(new.entries[n].sha256, new.entries[n].length)))
        .collect();
    let full: u64 = needed.iter().map(|&n| new.entries[n].frame_length).sum();
    println!(
        "new chunks {} of {}, full frames {} bytes; index {} bytes",
        needed.len(),
        new.entries.len(),
        full,
        new.entries.len() * 64
    );
    let t = Instant::now();
    let changed: Vec<usize> = (0..old.entries.len())
        .filter(|&k| !present.contains(&(old.entries[k].sha256, old.entries[k].length)))
        .collect();
    let index_changed = feature_index(&old, &changed);
    let all: Vec<usize> = (0..old.entries.len()).collect();
    let index_all = feature_index(&old, &all);
    println!(
        "features: {} changed old chunks, {} in all, {:.1} s",
        changed.len(),
        all.len(),
        t.elapsed().as_secs_f64()
    );
    // (name, candidates, neighbours each side, level, long window)
    let strategies: Vec<(&str, &HashMap<u64, u32>, u64, i32)> = vec![
        ("changed, 1 chunk", &index_changed, 0, level),
        ("changed, 1 chunk, level 19", &index_changed, 0, 19),
        ("changed, 1 chunk, level 22", &index_changed, 0, 22),
        ("all, +-1 chunk", &index_all, 1, level),
        ("all, +-1 chunk, level 19", &index_all, 1, 19),
        ("all, +-1 chunk, level 22", &index_all, 1, 22),
    ];
    for (name, index, around, lvl) in strategies {
        let t = Instant::now();
        let sizes: Vec<(u64, u64)> = needed
            .par_iter()
            .map(|&n| {
                let e = &new.entries[n];
                let chunk = read(&new, e.image_offset..e.image_offset + e.length);
                let f = features(&chunk);
                let Some(k) = best(index, &f) else {
                    return (e.frame_length, 0);
                };
                let lo = (k as u64).saturating_sub(around) as usize;
                let hi = ((k as u64 + around) as usize).min(old.entries.len() - 1);
                let base = read(
                    &old,
                    old.entries[lo].image_offset
                        ..old.entries[hi].image_offset + old.entries[hi].length,
                );
                let d = compress_against(&chunk, &base, lvl) as u64 + 64;
                if d + 64 <= e.frame_length {
                    (d, base.len() as u64)
                } else {
                    (e.frame_length, 0)
                }
            })
            .collect();
        let total: u64 = sizes.iter().map(|s| s.0).sum();
        if std::env::var_os("DELTA_BENCH_TOP").is_some() {
            let mut order: Vec<usize> = (0..needed.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(sizes[i].0));
            for &i in order.iter().take(12) {
                let e = &new.entries[needed[i]];
                println!(
                    "  chunk at {:>10} length {:>7}: {:>7} bytes (full frame {:>7})",
                    e.image_offset, e.length, sizes[i].0, e.frame_length
                );
            }
        }
        let max_base = sizes.iter().map(|s| s.1).max().unwrap_or(0);
        println!(
            "{name:28} {:>10} bytes, deltas {:>5}, largest base {:>8}, {:.1} s",
            total,
            sizes.iter().filter(|s| s.1 > 0).count(),
            max_base,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn feature_index(old: &Side, chunks: &[usize]) -> HashMap<u64, u32> {
    let sampled: Vec<Vec<u64>> = chunks
        .par_iter()
        .map(|&k| {
            let e = &old.entries[k];
            features(&read(old, e.image_offset..e.image_offset + e.length))
        })
        .collect();
    let mut map = HashMap::new();
    for (i, f) in sampled.iter().enumerate() {
        for &h in f {
            map.entry(h).or_insert(chunks[i] as u32);
        }
    }
    map
}

fn best(index: &HashMap<u64, u32>, wanted: &[u64]) -> Option<u32> {
    let mut votes: HashMap<u32, u32> = HashMap::new();
    for h in wanted {
        if let Some(&k) = index.get(h) {
            *votes.entry(k).or_default() += 1;
        }
    }
    let (k, n) = votes
        .into_iter()
        .max_by_key(|&(k, n)| (n, std::cmp::Reverse(k)))?;
    (n >= 2).then_some(k)
}

fn compress_against(chunk: &[u8], base: &[u8], level: i32) -> usize {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .unwrap();
    cctx.set_parameter(CParameter::ContentSizeFlag(true))
        .unwrap();
    cctx.set_parameter(CParameter::ChecksumFlag(false)).unwrap();
    cctx.set_parameter(CParameter::DictIdFlag(false)).unwrap();
    cctx.ref_prefix(base).unwrap();
    let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(chunk.len()));
    cctx.compress2(&mut frame, chunk).unwrap();
    frame.len()
}
