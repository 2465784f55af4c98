//! The trained dictionary and the delta frames on real images: what the builder writes
//! decodes, with the real zstd CLI too, and every delta rebuilds its chunk from its base.

mod util;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use flipside_bundle::{
    extract, read_index, write_bundle, write_bundle_with, write_index, BundleParams, ChunkIndex,
    Error, Limits, Previous, SUGGESTED_DICTIONARY,
};
use flipside_contract::index::{ChunkVerifier, DELTA_AREA_HEADER, DELTA_AREA_MAGIC};
use tempfile::TempDir;
use util::*;

fn zstd_d(bundle: &Path, dictionary: Option<&Path>) -> Option<Vec<u8>> {
    require_tool("zstd", "zstd");
    let mut cmd = Command::new("zstd");
    cmd.args(["-d", "-c"]);
    if let Some(d) = dictionary {
        cmd.arg("-D").arg(d);
    }
    let output = (cmd.stdin(fs::File::open(bundle).unwrap()))
        .stderr(Stdio::null())
        .output()
        .expect("run zstd");
    output.status.success().then_some(output.stdout)
}

fn slice(bytes: &[u8], range: std::ops::Range<u64>) -> &[u8] {
    &bytes[range.start as usize..range.end as usize]
}

#[test]
fn a_trained_dictionary_makes_the_bundle_smaller_and_zstd_decodes_with_it() {
    let dir = TempDir::new().unwrap();
    let image = squashfs_image(dir.path(), 24 << 20);
    let bytes = fs::read(&image).unwrap();
    let plain = write_bundle(&image, &dir.path().join("plain.bundle"), &params(2)).unwrap();
    let with = BundleParams {
        dictionary_length: SUGGESTED_DICTIONARY,
        ..params(2)
    };
    let bundle = dir.path().join("dict.bundle");
    let index = write_bundle(&image, &bundle, &with).unwrap();
    let dictionary = index.dictionary().expect("a dictionary was trained");
    assert!(dictionary.len() <= SUGGESTED_DICTIONARY as usize);
    assert_eq!(index.format_version(), 2);
    assert!(plain.dictionary().is_none());
    // The same chunks; smaller frames, even counting the dictionary shipped in the index.
    let sums = |i: &ChunkIndex| i.iter().map(|e| e.sha256).collect::<Vec<_>>();
    assert_eq!(sums(&index), sums(&plain));
    assert!(
        index.delta_area_start() + dictionary.len() as u64 <= plain.delta_area_start(),
        "{} + {} vs {}",
        index.delta_area_start(),
        dictionary.len(),
        plain.delta_area_start()
    );
    // Through the index file, then the verifying reader.
    let index_file = dir.path().join("dict.index");
    write_index(&index, &index_file).unwrap();
    let index = read_index(&index_file, &Limits::default()).unwrap();
    let out = dir.path().join("out.img");
    extract(&bundle, &index, &out).unwrap();
    assert!(fs::read(&out).unwrap() == bytes);
    // zstd's CLI decodes it with the dictionary, and not without.
    let dict_file = write_file(&dir.path().join("dict"), dictionary);
    assert!(zstd_d(&bundle, Some(&dict_file)).unwrap() == bytes);
    assert!(zstd_d(&bundle, None).is_none_or(|b| b != bytes));
}

/// The previous image with a few files' worth of changes: bytes overwritten in places, and an
/// insertion that shifts what follows.
fn changed(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    for k in 1..8 {
        let at = old.len() * k / 9;
        for (i, b) in new[at..at + 300].iter_mut().enumerate() {
            *b = b.wrapping_add(i as u8 | 1);
        }
    }
    let at = old.len() / 2 + 12_345;
    new.splice(at..at, random_bytes(700, 5));
    new
}

#[test]
fn delta_frames_rebuild_each_changed_chunk_from_the_previous_release() {
    let dir = TempDir::new().unwrap();
    let old_image = squashfs_image(dir.path(), 16 << 20);
    let old_bytes = fs::read(&old_image).unwrap();
    let old = write_bundle(&old_image, &dir.path().join("old.bundle"), &params(2)).unwrap();
    let new_bytes = changed(&old_bytes);
    let image = write_file(&dir.path().join("new.img"), &new_bytes);
    let bundle = dir.path().join("new.bundle");
    let previous = [Previous {
        image: old_image.clone(),
        index: old.clone(),
    }];
    let index = write_bundle_with(&image, &bundle, &params(2), &previous, &mut |_| {}).unwrap();
    let bundle_bytes = fs::read(&bundle).unwrap();
    assert_eq!(index.bundle_length(), bundle_bytes.len() as u64);
    assert_eq!(index.format_version(), 2);

    // The chunks a device running the old release lacks, and what their frames cost.
    let needed: Vec<usize> = (index.locate_in(&old).iter().enumerate())
        .filter(|(_, o)| o.is_none())
        .map(|(n, _)| n)
        .collect();
    assert!((3..40).contains(&needed.len()), "{} chunks", needed.len());
    let full: u64 = needed
        .iter()
        .map(|&n| index.entries()[n].frame_length)
        .sum();
    let chosen = index.deltas_from(&old);
    let (mut with_deltas, mut multi_chunk_bases) = (0, 0);
    let mut verifier = ChunkVerifier::for_index(&index).unwrap();
    let mut out = Vec::new();
    for &n in &needed {
        let e = &index.entries()[n];
        let Some((d, from)) = chosen[n] else {
            with_deltas += e.frame_length;
            continue;
        };
        let delta = &index.deltas()[d];
        assert_eq!(delta.chunk, n as u64);
        let base = &old_bytes[from as usize..(from + delta.base_length) as usize];
        let run = old.delta_base(delta, from).unwrap();
        assert_eq!(old.entries()[run.start].image_offset, from);
        multi_chunk_bases += usize::from(run.len() > 1);
        let frame = slice(&bundle_bytes, delta.frame_range());
        verifier
            .verify_delta_into(e, delta, &old.entries()[run], base, frame, &mut out)
            .unwrap();
        assert!(out == slice(&new_bytes, e.image_range()));
        with_deltas += delta.frame_length;
    }
    // Small, local changes: the deltas cost a fraction of the full frames; bases span the
    // matched old chunk's neighbours.
    assert!(with_deltas * 4 < full, "{with_deltas} of {full}");
    assert!(multi_chunk_bases > 0);
    // Deltas exist only for chunks the old release lacks.
    assert!(index
        .deltas()
        .iter()
        .all(|d| needed.contains(&(d.chunk as usize))));

    // The delta area is one skippable frame: the bundle still decodes to the image.
    let area = index.delta_area_start() as usize;
    assert_eq!(bundle_bytes[area..area + 4], DELTA_AREA_MAGIC.to_le_bytes());
    let length = u32::from_le_bytes(bundle_bytes[area + 4..area + 8].try_into().unwrap());
    assert_eq!(
        area as u64 + DELTA_AREA_HEADER + u64::from(length),
        index.segment_area_start()
    );
    assert!(zstd_d(&bundle, None).unwrap() == new_bytes);
    let out_image = dir.path().join("out.img");
    extract(&bundle, &index, &out_image).unwrap();
    assert!(fs::read(&out_image).unwrap() == new_bytes);
}

#[test]
fn an_unchanged_image_gets_no_deltas_and_a_wrong_previous_image_is_refused() {
    let dir = TempDir::new().unwrap();
    let image = squashfs_image(dir.path(), 4 << 20);
    let old = write_bundle(&image, &dir.path().join("old.bundle"), &params(1)).unwrap();
    let previous = [Previous {
        image: image.clone(),
        index: old.clone(),
    }];
    let out = dir.path().join("same.bundle");
    let same = write_bundle_with(&image, &out, &params(1), &previous, &mut |_| {}).unwrap();
    assert_eq!(same, old);
    assert_eq!(fs::metadata(&out).unwrap().len(), old.bundle_length());

    // An old image that is not the one its index describes.
    let mut other = fs::read(&image).unwrap();
    let at = other.len() / 3;
    other[at] ^= 1;
    let other = write_file(&dir.path().join("other.img"), &other);
    let wrong = [Previous {
        image: image.clone(),
        index: write_bundle(&other, &dir.path().join("o.bundle"), &params(1)).unwrap(),
    }];
    let err = write_bundle_with(&image, &out, &params(1), &wrong, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::PreviousMismatch { .. }), "{err:?}");
}
