//! Round trips of real images through the builder and the verifying reader, with the real zstd
//! CLI as an independent decoder.

mod util;

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use flipside_bundle::{
    extract, read_bundle, read_index, write_bundle, write_bundle_with_progress, write_index,
    BundleParams, ChunkIndex, Error, Limits,
};
use flipside_contract::index;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use util::*;

/// Bundles, checks the index against the image, extracts and compares.
fn round_trip(dir: &Path, image: &Path, params: &BundleParams) -> ChunkIndex {
    let bundle = dir.join("image.bundle");
    let index = write_bundle(image, &bundle, params).unwrap();
    let bytes = fs::read(image).unwrap();
    assert_eq!(index.image_length(), bytes.len() as u64);
    assert_eq!(
        index.image_sha256(),
        <[u8; 32]>::from(Sha256::digest(&bytes))
    );
    assert_eq!(index.bundle_length(), fs::metadata(&bundle).unwrap().len());
    let chunker = params.chunker;
    for (n, e) in index.iter().enumerate() {
        let last = n + 1 == index.len();
        assert!(e.length <= u64::from(chunker.max));
        assert!(
            last || e.length >= u64::from(chunker.min),
            "chunk {n} below min"
        );
    }

    // Frame parameters are part of the format: content size present, no checksum, no
    // dictionary id (RFC 8878 frame header descriptor: bit 2 checksum, bits 0-1 dictionary).
    let bundle_bytes = fs::read(&bundle).unwrap();
    for e in &index {
        let frame =
            &bundle_bytes[e.frame_offset as usize..(e.frame_offset + e.frame_length) as usize];
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(frame).ok(),
            Some(Some(e.length))
        );
        assert_eq!(frame[4] & 0b111, 0, "descriptor {:#010b}", frame[4]);
    }

    let index_file = dir.join("image.index");
    write_index(&index, &index_file).unwrap();
    let index = read_index(&index_file, &Limits::default()).unwrap();

    let out = dir.join("extracted.img");
    extract(&bundle, &index, &out).unwrap();
    assert!(fs::read(&out).unwrap() == bytes, "extracted image differs");
    let mut streamed = Vec::new();
    read_bundle(&bundle, &index, &mut streamed).unwrap();
    assert!(streamed == bytes, "streamed image differs");
    assert_eq!(zstd_cli_decompress(&bundle), bytes);
    index
}

/// `zstd -d < bundle`: the concatenated frames are a valid zstd stream of the image.
fn zstd_cli_decompress(bundle: &Path) -> Vec<u8> {
    require_tool("zstd", "zstd");
    let output = Command::new("zstd")
        .args(["-d", "-c"])
        .stdin(fs::File::open(bundle).unwrap())
        .stderr(Stdio::inherit())
        .output()
        .expect("run zstd");
    assert!(output.status.success(), "zstd -d failed: {}", output.status);
    output.stdout
}

#[test]
fn squashfs_of_real_files_round_trips() {
    let dir = TempDir::new().unwrap();
    let image = squashfs_image(dir.path(), 24 << 20);
    let index = round_trip(dir.path(), &image, &params(2));
    // 24 MiB of 16/64/256 KiB chunks: a few hundred, not one per min or max size.
    assert!((100..1000).contains(&index.len()), "{} chunks", index.len());
    assert!(index.bundle_length() < index.image_length());
}

#[test]
fn random_data_round_trips() {
    let dir = TempDir::new().unwrap();
    // Not a multiple of any chunk size, over two batches, incompressible.
    let image = write_file(
        &dir.path().join("random.img"),
        &random_bytes(40 * 1024 * 1024 + 12_345, 1),
    );
    let index = round_trip(dir.path(), &image, &params(3));
    // Incompressible chunks cost only zstd's frame overhead, and so do the segments.
    let chunk_frames = index.delta_area_start();
    assert!(chunk_frames < index.image_length() + 100 * index.len() as u64);
    let segments = index.bundle_length() - chunk_frames;
    assert_eq!(index.segments().len(), 3, "40 MiB in segments of 16 MiB");
    assert!(segments < index.image_length() + 10_000);
}

#[test]
fn tiny_images_round_trip_and_empty_ones_are_refused() {
    let dir = TempDir::new().unwrap();
    for (name, len) in [("one", 1), ("small", 1000)] {
        let image = write_file(&dir.path().join(name), &random_bytes(len, 2));
        let index = round_trip(dir.path(), &image, &params(1));
        assert_eq!(index.len(), 1);
    }
    let empty = write_file(&dir.path().join("empty"), b"");
    let err = write_bundle(&empty, &dir.path().join("e.bundle"), &params(1)).unwrap_err();
    assert!(matches!(err, Error::EmptyImage { .. }), "{err:?}");
}

/// New chunks after inserting bytes in the middle: the content-defined cut points realign.
fn chunks_changed_by_insertion(dir: &Path, bytes: &[u8], insert_at: usize) -> (usize, usize) {
    let before = write_file(&dir.join("before.img"), bytes);
    let mut changed = bytes.to_vec();
    changed.splice(insert_at..insert_at, random_bytes(1000, 9));
    let after = write_file(&dir.join("after.img"), &changed);
    let old = write_bundle(&before, &dir.join("before.bundle"), &params(2)).unwrap();
    let new = write_bundle(&after, &dir.join("after.bundle"), &params(2)).unwrap();
    let known: HashSet<[u8; 32]> = old.iter().map(|e| e.sha256).collect();
    let fresh = new.iter().filter(|e| !known.contains(&e.sha256)).count();
    // The device-side planner agrees with the direct comparison.
    let reusable = new.locate_in(&old).iter().filter(|o| o.is_some()).count();
    assert_eq!(reusable + fresh, new.len());
    (fresh, new.len())
}

#[test]
fn insertion_changes_only_nearby_chunks_in_random_data() {
    let dir = TempDir::new().unwrap();
    let bytes = random_bytes(16 << 20, 3);
    let (fresh, total) = chunks_changed_by_insertion(dir.path(), &bytes, 8 << 20);
    assert!(total > 150, "{total} chunks");
    assert!(
        (1..=3).contains(&fresh),
        "{fresh} of {total} chunks changed"
    );
}

#[test]
fn insertion_changes_only_nearby_chunks_in_a_squashfs() {
    let dir = TempDir::new().unwrap();
    let image = squashfs_image(dir.path(), 16 << 20);
    let bytes = fs::read(&image).unwrap();
    let (fresh, total) = chunks_changed_by_insertion(dir.path(), &bytes, bytes.len() / 2);
    assert!(
        (1..=3).contains(&fresh),
        "{fresh} of {total} chunks changed"
    );
}

#[test]
fn output_is_identical_for_any_thread_count() {
    let dir = TempDir::new().unwrap();
    let mut bytes = random_bytes(20 << 20, 4);
    // Compressible stretches too, so frames differ in size.
    for (i, b) in bytes.iter_mut().enumerate().skip(5 << 20).take(6 << 20) {
        *b = (i % 251) as u8 & 0x0f;
    }
    let image = write_file(&dir.path().join("image"), &bytes);
    let mut results = Vec::new();
    for threads in [1, 2, 5] {
        let bundle = dir.path().join(format!("t{threads}.bundle"));
        let index = write_bundle(&image, &bundle, &params(threads)).unwrap();
        results.push((index.encode(), fs::read(&bundle).unwrap()));
    }
    assert!(results[0] == results[1], "1 vs 2 threads differ");
    assert!(results[0] == results[2], "1 vs 5 threads differ");
}

#[test]
fn progress_reports_bytes_done_up_to_the_image_length() {
    let dir = TempDir::new().unwrap();
    let image = write_file(&dir.path().join("image"), &random_bytes(40 << 20, 5));
    let mut seen = Vec::new();
    write_bundle_with_progress(&image, &dir.path().join("b"), &params(2), &mut |done| {
        seen.push(done)
    })
    .unwrap();
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&(40 << 20)));
}

/// A bundle with its index, and the image bytes, from random data (raw zstd blocks, so a
/// flipped byte changes the chunk without breaking the frame).
fn random_bundle(dir: &Path) -> (std::path::PathBuf, ChunkIndex) {
    let image = write_file(&dir.join("image"), &random_bytes(2 << 20, 6));
    let bundle = dir.join("image.bundle");
    let index = write_bundle(&image, &bundle, &params(2)).unwrap();
    (bundle, index)
}

#[test]
fn corrupted_frame_is_refused_and_nothing_is_extracted() {
    let dir = TempDir::new().unwrap();
    let (bundle, index) = random_bundle(dir.path());
    let target = index.entries()[3];
    let mut bytes = fs::read(&bundle).unwrap();
    bytes[(target.frame_offset + target.frame_length / 2) as usize] ^= 0x40;
    fs::write(&bundle, &bytes).unwrap();

    let out = dir.path().join("out.img");
    let err = extract(&bundle, &index, &out).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Chunk {
                chunk: 3,
                source: index::Error::ChunkHash { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!out.exists());
    assert_eq!(
        other_entries(dir.path(), &["image", "image.bundle"]),
        Vec::<String>::new()
    );

    // A broken frame header is refused before decompression.
    bytes[(target.frame_offset) as usize] ^= 0xff;
    fs::write(&bundle, &bytes).unwrap();
    let err = read_bundle(&bundle, &index, &mut std::io::sink()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Chunk {
                chunk: 3,
                source: index::Error::NotOneFrame { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn truncated_bundle_is_refused() {
    let dir = TempDir::new().unwrap();
    let (bundle, index) = random_bundle(dir.path());
    let full = index.bundle_length();
    fs::OpenOptions::new()
        .write(true)
        .open(&bundle)
        .unwrap()
        .set_len(full - 10)
        .unwrap();
    let err = extract(&bundle, &index, &dir.path().join("out")).unwrap_err();
    assert!(
        matches!(err, Error::BundleLength { expected, found, .. } if expected == full && found == full - 10),
        "{err:?}"
    );
}

#[test]
fn index_of_another_image_is_refused() {
    let dir = TempDir::new().unwrap();
    let (bundle, index) = random_bundle(dir.path());
    let other_image = write_file(&dir.path().join("other"), &random_bytes(3 << 20, 7));
    let other = write_bundle(&other_image, &dir.path().join("other.bundle"), &params(1)).unwrap();
    let err = extract(&bundle, &other, &dir.path().join("out")).unwrap_err();
    assert!(matches!(err, Error::BundleLength { .. }), "{err:?}");

    // Same chunks, another whole-image hash: caught by the final check.
    let forged = ChunkIndex::new(
        index.chunker(),
        index.zstd_level(),
        index.image_length(),
        [0; 32],
        index.entries().to_vec(),
    )
    .and_then(|i| i.with_segments(index.segments().to_vec()))
    .unwrap();
    let out = dir.path().join("out");
    let err = extract(&bundle, &forged, &out).unwrap_err();
    assert!(matches!(err, Error::ImageHash { .. }), "{err:?}");
    assert!(!out.exists());

    // Same lengths, another chunk's hash: caught at that chunk.
    let mut entries = index.entries().to_vec();
    entries[5].sha256 = entries[4].sha256;
    let swapped = ChunkIndex::new(
        index.chunker(),
        3,
        index.image_length(),
        index.image_sha256(),
        entries,
    )
    .and_then(|i| i.with_segments(index.segments().to_vec()))
    .unwrap();
    let err = extract(&bundle, &swapped, &out).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Chunk {
                chunk: 5,
                source: index::Error::ChunkHash { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn failed_build_leaves_nothing_behind() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("x.bundle");
    let err = write_bundle(&dir.path().join("missing.img"), &out, &params(1)).unwrap_err();
    assert!(matches!(err, Error::OpenImage { .. }), "{err:?}");
    let bad = BundleParams {
        zstd_level: 99,
        ..params(1)
    };
    let image = write_file(&dir.path().join("image"), b"data");
    let err = write_bundle(&image, &out, &bad).unwrap_err();
    assert!(matches!(err, Error::InvalidParams { .. }), "{err:?}");
    // Reading a directory as the image fails mid-way, after the temporary file exists.
    let err = write_bundle(dir.path(), &out, &params(1)).unwrap_err();
    assert!(matches!(err, Error::ReadImage { .. }), "{err:?}");
    assert_eq!(other_entries(dir.path(), &["image"]), Vec::<String>::new());
}

#[test]
fn existing_bundle_is_replaced_whole() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("x.bundle");
    fs::write(&out, vec![0xaa; 10 << 20]).unwrap();
    let image = write_file(&dir.path().join("image"), &random_bytes(1 << 20, 8));
    let index = write_bundle(&image, &out, &params(1)).unwrap();
    assert_eq!(fs::metadata(&out).unwrap().len(), index.bundle_length());
}

#[test]
fn index_files_are_checked_on_read() {
    let dir = TempDir::new().unwrap();
    let (_, index) = random_bundle(dir.path());
    let path = dir.path().join("image.index");
    write_index(&index, &path).unwrap();
    assert_eq!(read_index(&path, &Limits::default()).unwrap(), index);

    let small = Limits {
        max_chunks: 2,
        max_deltas: 0,
        max_dictionary_length: 0,
        ..Limits::default()
    };
    let err = read_index(&path, &small).unwrap_err();
    assert!(matches!(err, Error::IndexTooLarge { .. }), "{err:?}");

    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"x").unwrap();
    let err = read_index(&path, &Limits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DecodeIndex {
                source: index::Error::TrailingBytes { extra: 1, .. },
                ..
            }
        ),
        "{err:?}"
    );
    let err = read_index(&dir.path().join("nope"), &Limits::default()).unwrap_err();
    assert!(matches!(err, Error::ReadIndex { .. }), "{err:?}");
}

/// A 5 GiB image (sparse, with random islands past 4 GiB): offsets over 32 bits survive the
/// builder, the index file and the verifying reader.
#[test]
fn image_over_4_gib_round_trips() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("big.img");
    let length = 5u64 << 30;
    let islands = [
        (1u64 << 20, 1),
        ((9 << 29) + 12_345, 2),
        (length - 1_000_000, 3),
    ];
    {
        let file = fs::File::create(&path).unwrap();
        file.set_len(length).unwrap();
        for (offset, seed) in islands {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&random_bytes(1_000_000, seed), offset)
                .unwrap();
        }
    }
    let bundle = dir.path().join("big.bundle");
    let index = write_bundle(&path, &bundle, &params(0)).unwrap();
    assert_eq!(index.image_length(), length);
    let index_file = dir.path().join("big.index");
    write_index(&index, &index_file).unwrap();
    let index = read_index(&index_file, &Limits::default()).unwrap();

    struct HashSink(Sha256, u64);
    impl Write for HashSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            self.1 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sink = HashSink(Sha256::new(), 0);
    read_bundle(&bundle, &index, &mut sink).unwrap();
    assert_eq!(sink.1, length);
    assert_eq!(<[u8; 32]>::from(sink.0.finalize()), index.image_sha256());
    // The island at 4.5 GiB is in chunks of its own content, found by offset.
    let (_, e) = index
        .entry_for_offset((9 << 29) + 12_345 + 500_000)
        .unwrap();
    assert!(e.image_offset > 4 << 30);
    assert_ne!(e.sha256, index.entries()[index.len() / 2].sha256);
}
