//! Format 2: the trained dictionary and the delta frames, their checks and their decoding.

use super::*;

const LEVEL: i32 = 3;

/// Text-like bytes with shared vocabulary, so that a dictionary can be trained on them.
fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 8] = [
        b"flipside ",
        b"slot ",
        b"chunk ",
        b"verified ",
        b"#include <stdio.h>\n",
        b"return 0;\n",
        b"squashfs ",
        b"kernel ",
    ];
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.usize(..WORDS.len())]);
        if rng.u8(..) < 40 {
            out.extend_from_slice(format!("{} ", rng.u32(..)).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn dictionary() -> Vec<u8> {
    let samples: Vec<Vec<u8>> = (0..300).map(|i| text(100 + i, 2000)).collect();
    zstd::dict::from_samples(&samples, 4096).unwrap()
}

fn compress_with(chunk: &[u8], dictionary: &[u8]) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::with_dictionary(LEVEL, dictionary).unwrap();
    c.set_parameter(zstd_safe::CParameter::DictIdFlag(false))
        .unwrap();
    c.compress(chunk).unwrap()
}

fn compress_against(chunk: &[u8], base: &[u8]) -> Vec<u8> {
    let mut cctx = zstd_safe::CCtx::create();
    cctx.set_parameter(zstd_safe::CParameter::CompressionLevel(LEVEL))
        .unwrap();
    cctx.ref_prefix(base).unwrap();
    let mut frame = Vec::with_capacity(max_frame_length(chunk.len() as u64) as usize);
    cctx.compress2(&mut frame, chunk).unwrap();
    frame
}

/// A new image of 4 chunks with a dictionary, and an old image whose chunks 0 and 2 are the
/// bases of deltas for new chunks 0 and 2 (two alternatives for chunk 2).
struct Sample {
    index: ChunkIndex,
    bundle: Vec<u8>,
    image: Vec<u8>,
    old: ChunkIndex,
    old_image: Vec<u8>,
}

fn cut(image: &[u8], lengths: &[usize]) -> Vec<(u64, Vec<u8>)> {
    let mut at = 0;
    lengths
        .iter()
        .map(|&l| {
            let chunk = (at as u64, image[at..at + l].to_vec());
            at += l;
            chunk
        })
        .collect()
}

fn plain_index(image: &[u8], lengths: &[usize]) -> ChunkIndex {
    let mut entries = Vec::new();
    let mut frame_at = 0;
    for (offset, chunk) in cut(image, lengths) {
        let frame_length = zstd::bulk::compress(&chunk, LEVEL).unwrap().len() as u64;
        entries.push(ChunkEntry {
            image_offset: offset,
            length: chunk.len() as u64,
            frame_offset: frame_at,
            frame_length,
            sha256: Sha256::digest(&chunk).into(),
        });
        frame_at += frame_length;
    }
    let sha = Sha256::digest(image).into();
    ChunkIndex::new(
        ChunkerParams::default(),
        LEVEL,
        image.len() as u64,
        sha,
        entries,
    )
    .unwrap()
}

fn sample() -> Sample {
    let lengths = [20_000, 30_000, 25_000, 5_000];
    let old_image = text(1, 80_000);
    let mut image = old_image.clone();
    for at in [100, 7_000, 52_000, 60_000, 77_000] {
        image[at..at + 8].copy_from_slice(b"CHANGED!");
    }
    let old = plain_index(&old_image, &lengths);
    let dictionary = dictionary();
    let chunks = cut(&image, &lengths);
    let (mut bundle, mut entries) = (Vec::new(), Vec::new());
    for (offset, chunk) in &chunks {
        let frame = compress_with(chunk, &dictionary);
        entries.push(ChunkEntry {
            image_offset: *offset,
            length: chunk.len() as u64,
            frame_offset: bundle.len() as u64,
            frame_length: frame.len() as u64,
            sha256: Sha256::digest(chunk).into(),
        });
        bundle.extend_from_slice(&frame);
    }
    let area_header = bundle.len();
    bundle.extend_from_slice(&[0; DELTA_AREA_HEADER as usize]);
    let mut deltas = Vec::new();
    for (chunk, base) in [(0usize, 0usize), (2, 1), (2, 2)] {
        let base = &old_image[old.entries()[base].image_offset as usize..]
            [..old.entries()[base].length as usize];
        let frame = compress_against(&chunks[chunk].1, base);
        deltas.push(DeltaEntry {
            chunk: chunk as u64,
            base_length: base.len() as u64,
            base_sha256: Sha256::digest(base).into(),
            frame_offset: bundle.len() as u64,
            frame_length: frame.len() as u64,
        });
        bundle.extend_from_slice(&frame);
    }
    let area = (bundle.len() - area_header - DELTA_AREA_HEADER as usize) as u32;
    bundle[area_header..area_header + 4].copy_from_slice(&DELTA_AREA_MAGIC.to_le_bytes());
    bundle[area_header + 4..area_header + 8].copy_from_slice(&area.to_le_bytes());
    let sha = Sha256::digest(&image).into();
    let index = ChunkIndex::new(ChunkerParams::default(), LEVEL, 80_000, sha, entries)
        .unwrap()
        .with_dictionary(dictionary)
        .unwrap()
        .with_deltas(deltas)
        .unwrap();
    Sample {
        index,
        bundle,
        image,
        old,
        old_image,
    }
}

fn slice(bytes: &[u8], range: Range<u64>) -> &[u8] {
    &bytes[range.start as usize..range.end as usize]
}

#[test]
fn round_trip_in_format_2_and_every_frame_verifies() {
    let s = sample();
    let bytes = s.index.encode();
    assert_eq!(u32_at(&bytes, 8), 2);
    assert_eq!(s.index.format_version(), 2);
    let decoded = ChunkIndex::decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(decoded, s.index);
    assert_eq!(decoded.bundle_length(), s.bundle.len() as u64);
    assert_eq!(
        bytes.len(),
        HEADER_V2_LENGTH + 7 * RECORD_LENGTH + decoded.dictionary().unwrap().len()
    );

    let mut verifier = ChunkVerifier::for_index(&decoded).unwrap();
    let mut plain = ChunkVerifier::new();
    let mut out = Vec::new();
    for e in decoded.entries() {
        let frame = slice(&s.bundle, e.frame_range());
        verifier.verify_into(e, frame, &mut out).unwrap();
        assert_eq!(out, slice(&s.image, e.image_range()));
        // The dictionary is needed: without it the frame does not decode to the chunk.
        assert!(plain.verify_into(e, frame, &mut out).is_err());
        assert!(out.is_empty());
    }
    for d in decoded.deltas() {
        let e = &decoded.entries()[d.chunk as usize];
        let base_entry = s
            .old
            .entries()
            .iter()
            .find(|b| b.sha256 == d.base_sha256)
            .unwrap();
        let base = slice(&s.old_image, base_entry.image_range());
        let frame = slice(&s.bundle, d.frame_range());
        verifier
            .verify_delta_into(
                e,
                d,
                std::slice::from_ref(base_entry),
                base,
                frame,
                &mut out,
            )
            .unwrap();
        assert_eq!(out, slice(&s.image, e.image_range()));
        assert!(d.frame_length < e.frame_length, "a delta is smaller");
    }
}

/// `zstd -d` skips the delta area: a bundle with deltas still decompresses to the image (with
/// the dictionary; without one the frames would be plain).
#[test]
fn the_delta_area_is_skipped_by_a_plain_zstd_decoder() {
    let s = sample();
    let mut dctx = zstd_safe::DCtx::create();
    dctx.load_dictionary(s.index.dictionary().unwrap()).unwrap();
    let mut image = Vec::new();
    let mut rest = s.bundle.as_slice();
    while !rest.is_empty() {
        let size = zstd_safe::find_frame_compressed_size(rest).unwrap();
        let mut out = vec![0u8; 40_000];
        let n = dctx.decompress(&mut out, &rest[..size]).unwrap();
        image.extend_from_slice(&out[..n]);
        rest = &rest[size..];
    }
    assert_eq!(image, s.image);
}

#[test]
fn a_delta_needs_its_own_base_and_an_intact_frame() {
    let s = sample();
    let d = s.index.deltas()[0];
    let e = s.index.entries()[0];
    let frame = slice(&s.bundle, d.frame_range()).to_vec();
    let base = slice(&s.old_image, s.old.entries()[0].image_range()).to_vec();
    let chunks = &s.old.entries()[..1];
    let mut v = ChunkVerifier::for_index(&s.index).unwrap();
    let mut out = Vec::new();

    // Another chunk of the same length, or a changed byte: refused before decoding.
    let mut other = base.clone();
    other[5] ^= 1;
    for bad in [
        other.as_slice(),
        &base[1..],
        slice(&s.image, e.image_range()),
    ] {
        assert_eq!(
            v.verify_delta_into(&e, &d, chunks, bad, &frame, &mut out),
            Err(Error::DeltaBase { offset: 0 })
        );
        assert!(out.is_empty());
    }
    // The delta frame decoded as a full frame, or a corrupted delta frame: never the chunk.
    assert!(v.verify_into(&e, &frame, &mut out).is_err());
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..500 {
        let mut bad = frame.clone();
        let at = rng.usize(..bad.len());
        bad[at] ^= rng.u8(1..);
        if v.verify_delta_into(&e, &d, chunks, &base, &bad, &mut out)
            .is_ok()
        {
            assert_eq!(out, slice(&s.image, e.image_range()));
        } else {
            assert!(out.is_empty());
        }
    }
    // A frame of the wrong length (a bad Range answer).
    assert!(matches!(
        v.verify_delta_into(&e, &d, chunks, &base, &frame[1..], &mut out),
        Err(Error::FrameSize { .. })
    ));
}

/// A base of several chunks: found in the seed from its first chunk and length, every chunk of
/// it checked before decoding.
#[test]
fn a_base_of_consecutive_chunks_is_found_and_checked_chunk_by_chunk() {
    let s = sample();
    let (old, e) = (s.old.entries(), s.index.entries()[2]);
    let base = slice(&s.old_image, old[1].image_offset..old[2].image_range().end).to_vec();
    let new_chunk = slice(&s.image, e.image_range());
    let frame = compress_against(new_chunk, &base);
    let d = DeltaEntry {
        chunk: 2,
        base_length: base.len() as u64,
        base_sha256: old[1].sha256,
        frame_offset: 0,
        frame_length: frame.len() as u64,
    };
    let at = old[1].image_offset;
    assert_eq!(s.old.delta_base(&d, at), Some(1..3));
    // A length that ends inside a chunk or past the image, an offset inside a chunk or at
    // another one: no base.
    for length in [base.len() as u64 - 1, base.len() as u64 + 1, 1 << 30] {
        assert_eq!(
            s.old.delta_base(
                &DeltaEntry {
                    base_length: length,
                    ..d
                },
                at
            ),
            None
        );
    }
    for offset in [at + 1, old[2].image_offset, 1 << 40] {
        assert_eq!(s.old.delta_base(&d, offset), None);
    }
    let mut v = ChunkVerifier::new();
    let mut out = Vec::new();
    v.verify_delta_into(&e, &d, &old[1..3], &base, &frame, &mut out)
        .unwrap();
    assert_eq!(out, new_chunk);
    // A changed byte in the second chunk, the chunk list of another run, or only its first
    // chunk: refused before decoding.
    let mut other = base.clone();
    other[old[1].length as usize + 3] ^= 1;
    let refused = Err(Error::DeltaBase {
        offset: e.image_offset,
    });
    assert_eq!(
        v.verify_delta_into(&e, &d, &old[1..3], &other, &frame, &mut out),
        refused
    );
    assert_eq!(
        v.verify_delta_into(&e, &d, &old[2..4], &base, &frame, &mut out),
        refused
    );
    assert_eq!(
        v.verify_delta_into(&e, &d, &old[1..2], &base, &frame, &mut out),
        refused
    );
    assert!(out.is_empty());
    // deltas_from finds it as well, at the first chunk's offset.
    let index = (s.index.clone())
        .with_deltas(vec![DeltaEntry {
            frame_offset: s.index.delta_area_start() + DELTA_AREA_HEADER,
            ..d
        }])
        .unwrap();
    assert_eq!(index.deltas_from(&s.old)[2], Some((0, old[1].image_offset)));
}

#[test]
fn deltas_from_picks_the_first_delta_whose_base_the_seed_holds() {
    let s = sample();
    // The old index holds every base: chunk 0 -> delta 0, chunk 2 -> delta 1 (the first).
    let o = |n: usize| s.old.entries()[n].image_offset;
    assert_eq!(
        s.index.deltas_from(&s.old),
        vec![Some((0, o(0))), None, Some((1, o(1))), None]
    );
    // A seed that holds only old chunk 2 gets the second alternative for chunk 2.
    let only_2 = plain_index(&s.old_image[o(2) as usize..][..25_000], &[25_000]);
    assert_eq!(
        s.index.deltas_from(&only_2),
        vec![None, None, Some((2, 0)), None]
    );
    // An index without deltas, or a seed without bases: nothing.
    assert_eq!(s.old.deltas_from(&s.index), vec![None; 4]);
    // New chunk 1 is old chunk 1, the base of chunk 2's first delta.
    assert_eq!(
        s.index.deltas_from(&s.index),
        vec![None, None, Some((1, 20_000)), None]
    );
}

/// A delta record as the builder would write it for chunk `chunk` of `index`.
fn record(chunk: u64, frame_offset: u64, frame_length: u64) -> DeltaEntry {
    DeltaEntry {
        chunk,
        base_length: 100,
        base_sha256: [7; 32],
        frame_offset,
        frame_length,
    }
}

/// The ordering rules, exhaustively for up to 6 deltas over chunk numbers 0..4 of a 3-chunk
/// index, against a model: chunks exist, in order, at most [`MAX_DELTAS_PER_CHUNK`] each.
#[test]
fn delta_order_rules_against_a_model() {
    let entries: Vec<ChunkEntry> = (0..3)
        .map(|i| ChunkEntry {
            image_offset: i * 100,
            length: 100,
            frame_offset: i * 10,
            frame_length: 10,
            sha256: [i as u8; 32],
        })
        .collect();
    let mut checked = 0;
    for n in 0..=6u32 {
        for code in 0..4u32.pow(n) {
            let chunks: Vec<u64> = (0..n).map(|k| u64::from(code / 4u32.pow(k) % 4)).collect();
            let deltas: Vec<DeltaEntry> = chunks
                .iter()
                .enumerate()
                .map(|(k, &c)| record(c, 30 + DELTA_AREA_HEADER + 5 * k as u64, 5))
                .collect();
            let model = chunks.iter().all(|&c| c < 3)
                && chunks.windows(2).all(|w| w[0] <= w[1])
                && (0..3).all(|c| chunks.iter().filter(|&&x| x == c).count() <= 4);
            let got = check_deltas(&deltas, &entries, 30, &Limits::default());
            assert_eq!(got.is_ok(), model, "{chunks:?}: {got:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, (0..=6).map(|n| 4usize.pow(n)).sum::<usize>());
}

#[test]
fn every_delta_violation_has_its_error() {
    let s = sample();
    let good = s.index.deltas().to_vec();
    let chunks = s.index.entries();
    let start = s.index.delta_area_start() + DELTA_AREA_HEADER;
    let limits = Limits {
        max_chunk_length: 40_000,
        ..Limits::default()
    };
    type Mutation = Box<dyn Fn(&mut Vec<DeltaEntry>)>;
    let f0 = good[0].frame_length;
    let cases: Vec<(&str, Mutation, Error)> = vec![
        (
            "chunk past the index",
            Box::new(|d| d[2].chunk = 4),
            Error::DeltaChunk {
                delta: 2,
                chunk: 4,
                count: 4,
            },
        ),
        (
            "out of order",
            Box::new(|d| (d[0].chunk, d[1].chunk) = (2, 0)),
            Error::DeltaOrder {
                delta: 1,
                chunk: 0,
                previous: 2,
            },
        ),
        (
            "empty base",
            Box::new(|d| d[0].base_length = 0),
            Error::DeltaBaseLength {
                delta: 0,
                length: 0,
                max: 40_000,
            },
        ),
        (
            "base over the reader's chunk limit",
            Box::new(|d| d[1].base_length = 40_001),
            Error::DeltaBaseLength {
                delta: 1,
                length: 40_001,
                max: 40_000,
            },
        ),
        (
            "no room for the area's header",
            Box::new(move |d| d[0].frame_offset = start - 1),
            Error::DeltaFrameNotContiguous {
                delta: 0,
                expected: start,
                found: start - 1,
            },
        ),
        (
            "gap",
            Box::new(|d| d[1].frame_offset += 1),
            Error::DeltaFrameNotContiguous {
                delta: 1,
                expected: start + f0,
                found: start + f0 + 1,
            },
        ),
        (
            "empty frame",
            Box::new(|d| d[2].frame_length = 0),
            Error::DeltaFrameLength {
                delta: 2,
                length: 0,
                max: max_frame_length(25_000),
            },
        ),
        (
            "frame over zstd's bound for the chunk",
            Box::new(|d| d[0].frame_length = max_frame_length(20_000) + 1),
            Error::DeltaFrameLength {
                delta: 0,
                length: max_frame_length(20_000) + 1,
                max: max_frame_length(20_000),
            },
        ),
    ];
    for (what, mutate, expected) in cases {
        let mut deltas = good.clone();
        mutate(&mut deltas);
        let end = s.index.delta_area_start();
        assert_eq!(
            check_deltas(&deltas, chunks, end, &limits),
            Err(expected),
            "{what}"
        );
    }
    let five: Vec<DeltaEntry> = (0..5).map(|k| record(1, start + 10 * k, 10)).collect();
    assert_eq!(
        check_deltas(&five, chunks, s.index.delta_area_start(), &limits),
        Err(Error::TooManyAlternatives { chunk: 1 })
    );
}

#[test]
fn the_delta_area_fits_one_skippable_frame() {
    const BIG: u64 = 16 << 20;
    let entries: Vec<ChunkEntry> = (0..70)
        .map(|i| ChunkEntry {
            image_offset: i * BIG,
            length: BIG,
            frame_offset: i,
            frame_length: 1,
            sha256: [0; 32],
        })
        .collect();
    let mut deltas = Vec::new();
    let mut at = 70 + DELTA_AREA_HEADER;
    for chunk in 0..70 {
        for _ in 0..4 {
            deltas.push(DeltaEntry {
                base_length: 1,
                ..record(chunk, at, BIG)
            });
            at += BIG;
        }
    }
    let limits = Limits::FORMAT;
    assert_eq!(
        check_deltas(&deltas, &entries, 70, &limits),
        Err(Error::DeltaAreaTooLarge {
            length: 280 * BIG,
            max: u64::from(u32::MAX)
        })
    );
    deltas.truncate(255);
    assert_eq!(check_deltas(&deltas, &entries, 70, &limits), Ok(()));
}

#[test]
fn header_violations_of_format_2_have_their_errors() {
    let s = sample();
    let good = s.index.encode();
    let dict_len = s.index.dictionary().unwrap().len() as u64;
    let body = good.len() - HEADER_V2_LENGTH;
    let decode = |b: &[u8], l: &Limits| ChunkIndex::decode(b, l);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    let d = Limits::default();
    assert_eq!(
        decode(&good[..100], &d),
        Err(Error::TruncatedHeader {
            length: 100,
            needed: HEADER_V2_LENGTH
        })
    );
    assert_eq!(
        decode(&good, &Limits { max_deltas: 2, ..d }),
        Err(Error::TooManyDeltas { count: 3, limit: 2 })
    );
    assert_eq!(
        decode(
            &good,
            &Limits {
                max_dictionary_length: dict_len - 1,
                ..d
            }
        ),
        Err(Error::DictionaryOverLimit {
            length: dict_len,
            limit: dict_len - 1
        })
    );
    assert_eq!(
        decode(&with(&|b| put(b, 96, 4)), &d),
        Err(Error::TruncatedRecords {
            count: 4,
            needed: good.len() as u64 + 64,
            length: good.len()
        })
    );
    assert_eq!(
        decode(&with(&|b| put(b, 104, dict_len - 1)), &d),
        Err(Error::TrailingBytes { count: 4, extra: 1 })
    );
    assert_eq!(
        decode(&with(&|b| put(b, 96, u64::MAX / 2)), &Limits::FORMAT),
        Err(Error::TruncatedRecords {
            count: 4,
            needed: u64::MAX,
            length: good.len()
        })
    );
    // The dictionary: its magic, then whether zstd loads it.
    let dict_at = good.len() - dict_len as usize;
    assert_eq!(
        decode(&with(&|b| b[dict_at] ^= 1), &d),
        Err(Error::BadDictionary {
            why: "it does not start with zstd's dictionary magic"
        })
    );
    // A dictionary header that claims entropy tables it does not have.
    let junk = with(&|b| {
        for x in &mut b[dict_at + 8..dict_at + 64] {
            *x = 0xff;
        }
    });
    assert_eq!(
        decode(&junk, &d),
        Err(Error::BadDictionary {
            why: "zstd cannot load it"
        })
    );
    assert!(matches!(
        ChunkVerifier::with_dictionary(Some(&junk[dict_at..])),
        Err(Error::BadDictionary { .. })
    ));
    // Format 2 without anything of format 2 is not canonical.
    let bare = plain_index(&s.image, &[20_000, 30_000, 25_000, 5_000]);
    let mut v2 = bare.encode();
    put32(&mut v2, 8, 2);
    v2.splice(HEADER_LENGTH..HEADER_LENGTH, [0u8; 24]);
    assert_eq!(decode(&v2, &d), Err(Error::NeedlessVersion));
    assert_eq!(body as u64, 7 * 64 + dict_len);
}

#[test]
fn the_index_length_cap_covers_every_part() {
    let s = sample();
    let bytes = s.index.encode().len() as u64;
    let tight = Limits {
        max_chunks: 4,
        max_deltas: 3,
        max_dictionary_length: s.index.dictionary().unwrap().len() as u64,
        ..Limits::default()
    };
    // The sample has no segments; the cap leaves room for one per chunk.
    assert_eq!(tight.max_index_length(), bytes + 4 * 32);
    ChunkIndex::decode(&s.index.encode(), &tight).unwrap();
    assert_eq!(Limits::FORMAT.max_index_length(), u64::MAX);
    assert_eq!(
        Limits::default().max_index_length(),
        120 + (2 << 22) * 64 + (1 << 22) * 32 + (1 << 20)
    );
}

/// Random corruption of a format 2 index never panics; what is accepted re-encodes to the
/// same bytes.
#[test]
fn mutated_format_2_indexes_never_panic() {
    let good = sample().index.encode();
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..3_000 {
        let mut bytes = good.clone();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..bytes.len());
            match rng.u8(..3) {
                0 => bytes[at] = rng.u8(..),
                1 => bytes[at] ^= 1 << rng.u8(..8),
                _ => bytes.truncate(at.max(1)),
            }
        }
        if let Ok(decoded) = ChunkIndex::decode(&bytes, &Limits::default()) {
            assert_eq!(decoded.encode(), bytes);
        }
    }
}

fn put(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn put32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// An index of `image` cut in `lengths` with segments over the chunk runs `runs`, and its
/// bundle: chunk frames, then each segment's frame in a skippable frame.
fn segmented(image: &[u8], lengths: &[usize], runs: &[(u64, u64)]) -> (ChunkIndex, Vec<u8>) {
    let plain = plain_index(image, lengths);
    let mut bundle = Vec::new();
    for (_, chunk) in cut(image, lengths) {
        bundle.extend_from_slice(&zstd::bulk::compress(&chunk, LEVEL).unwrap());
    }
    let mut segments = Vec::new();
    for &(first_chunk, chunks) in runs {
        let e = &plain.entries()[first_chunk as usize..(first_chunk + chunks) as usize];
        let range = e[0].image_offset as usize..e[e.len() - 1].image_range().end as usize;
        let frame = zstd::bulk::compress(&image[range], LEVEL).unwrap();
        bundle.extend_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        bundle.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        segments.push(SegmentEntry {
            first_chunk,
            chunks,
            frame_offset: bundle.len() as u64,
            frame_length: frame.len() as u64,
        });
        bundle.extend_from_slice(&frame);
    }
    (plain.with_segments(segments).unwrap(), bundle)
}

#[test]
fn segments_round_trip_and_each_decodes_to_its_chunks() {
    let image = text(7, 300_000);
    let lengths = [30_000; 10];
    let (index, bundle) = segmented(&image, &lengths, &[(0, 4), (4, 4), (8, 2)]);
    assert_eq!(index.format_version(), 2);
    assert_eq!(index.bundle_length(), bundle.len() as u64);
    let decoded = ChunkIndex::decode(&index.encode(), &Limits::default()).unwrap();
    assert_eq!(decoded, index);
    for s in index.segments() {
        let frame = slice(&bundle, s.frame_range());
        let out = zstd::bulk::decompress(frame, 1 << 20).unwrap();
        let r = index.segment_image_range(s);
        assert_eq!(out, &image[r.start as usize..r.end as usize]);
    }
    // A plain zstd decoder skips the segments: the bundle is still the image, once.
    assert_eq!(zstd::stream::decode_all(bundle.as_slice()).unwrap(), image);
}

#[test]
fn every_segment_violation_has_its_error() {
    let image = text(8, 120_000);
    let lengths = [30_000; 4];
    let (good, _) = segmented(&image, &lengths, &[(0, 2), (2, 2)]);
    let base = good.segments().to_vec();
    let area = good.segment_area_start();
    let with = |f: &dyn Fn(&mut Vec<SegmentEntry>)| {
        let mut segments = base.clone();
        f(&mut segments);
        plain_index(&image, &lengths).with_segments(segments)
    };
    assert!(with(&|_| {}).is_ok());
    assert!(with(&|s| s.clear()).is_ok(), "no segments at all");
    let not_contiguous = |segment, expected, found| {
        Err(Error::SegmentNotContiguous {
            segment,
            expected,
            found,
        })
    };
    assert_eq!(with(&|s| s[0].first_chunk = 1), not_contiguous(0, 0, 1));
    assert_eq!(with(&|s| s[1].first_chunk = 1), not_contiguous(1, 2, 1));
    assert_eq!(with(&|s| s[0].chunks = 0), not_contiguous(0, 0, 0));
    assert_eq!(with(&|s| s[1].chunks = 3), not_contiguous(1, 2, 2));
    assert_eq!(
        with(&|s| s[1].chunks = u64::MAX),
        not_contiguous(1, 2, 2),
        "no overflow"
    );
    assert_eq!(
        with(&|s| {
            s.pop();
        }),
        Err(Error::SegmentCoverage {
            covered: 2,
            count: 4
        })
    );
    assert_eq!(
        with(&|s| s[0].frame_offset += 1),
        Err(Error::SegmentFrameNotContiguous {
            segment: 0,
            expected: area + SEGMENT_HEADER,
            found: area + SEGMENT_HEADER + 1,
        })
    );
    let second = base[0].frame_range().end + SEGMENT_HEADER;
    assert_eq!(
        with(&|s| s[1].frame_offset = base[0].frame_range().end),
        Err(Error::SegmentFrameNotContiguous {
            segment: 1,
            expected: second,
            found: second - SEGMENT_HEADER,
        })
    );
    let bound = max_frame_length(60_000);
    for length in [0, bound + 1, u64::MAX] {
        assert_eq!(
            with(&|s| s[0].frame_length = length),
            Err(Error::SegmentFrameLength {
                segment: 0,
                length,
                max: bound
            })
        );
    }
}

#[test]
fn a_segment_covers_at_most_its_limit_and_counts_are_checked_before_use() {
    // Five 16 MiB chunks: 80 MiB in one segment is over the limit, 64 MiB is not.
    let chunker = ChunkerParams {
        min: 1 << 20,
        avg: 4 << 20,
        max: 16 << 20,
    };
    let mib16 = 16u64 << 20;
    let entries: Vec<ChunkEntry> = (0..5)
        .map(|k| ChunkEntry {
            image_offset: k * mib16,
            length: mib16,
            frame_offset: k * 100,
            frame_length: 100,
            sha256: [0; 32],
        })
        .collect();
    let index = ChunkIndex::new(chunker, LEVEL, 5 * mib16, [0; 32], entries).unwrap();
    let one = |chunks, frame_offset| SegmentEntry {
        first_chunk: 0,
        chunks,
        frame_offset,
        frame_length: 1000,
    };
    let area = 500 + SEGMENT_HEADER;
    assert_eq!(
        index.clone().with_segments(vec![one(5, area)]),
        Err(Error::SegmentLength {
            segment: 0,
            length: 5 * mib16,
            max: MAX_SEGMENT_LENGTH
        })
    );
    let fits = vec![
        one(4, area),
        SegmentEntry {
            first_chunk: 4,
            chunks: 1,
            frame_offset: area + 1000 + SEGMENT_HEADER,
            frame_length: 1000,
        },
    ];
    let index = index.with_segments(fits).unwrap();
    // A header that counts more segments than chunks is refused before any record is read.
    let mut bytes = index.encode();
    let limits = Limits {
        max_chunk_length: 16 << 20,
        ..Limits::default()
    };
    assert_eq!(ChunkIndex::decode(&bytes, &limits).as_ref(), Ok(&index));
    put(&mut bytes, 112, 6);
    assert_eq!(
        ChunkIndex::decode(&bytes, &limits),
        Err(Error::SegmentCoverage {
            covered: 6,
            count: 5
        })
    );
    put(&mut bytes, 112, 1);
    assert!(matches!(
        ChunkIndex::decode(&bytes, &limits),
        Err(Error::TrailingBytes { .. })
    ));
}
