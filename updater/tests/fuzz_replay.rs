//! Replays the fuzz corpora and the inputs the fuzzers found (`fuzz/corpus/<target>/`,
//! `fuzz/artifacts/<target>/`, `fuzz/regressions/<target>/`) through the fuzz targets' own
//! bodies (`fuzz/src/harness.rs`, included here), so every finding stays a regression test
//! of the normal suite on a stable toolchain. Bounded: the corpora are kept small (see
//! fuzz/README.md), and each input runs once.

#[allow(dead_code)]
#[path = "../../fuzz/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for kind in ["corpus", "artifacts", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        out.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    out.sort();
    out
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no corpus for {target} in fuzz/corpus/{target}: the seeds are part of the repository"
    );
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target} panicked on {}", file.display());
    }
}

#[test]
fn fuzz_corpus_tuf_metadata_replays() {
    replay("tuf_metadata", harness::tuf_metadata);
}

#[test]
fn fuzz_corpus_chunk_index_replays() {
    replay("chunk_index", harness::chunk_index);
}

#[test]
fn fuzz_corpus_chunk_decode_replays() {
    replay("chunk_decode", harness::chunk_decode);
}

#[test]
fn fuzz_corpus_gpt_parse_replays() {
    replay("gpt_parse", harness::gpt_parse);
}
