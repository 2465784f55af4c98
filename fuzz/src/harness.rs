//! The bodies of the fuzz targets, shared with the replay test of the normal test suite
//! (`updater/tests/fuzz_replay.rs` includes this file), so that every corpus and crash input
//! runs through exactly the same code under `cargo test` on a stable toolchain.
//!
//! Each function takes arbitrary bytes and must neither panic nor allocate without bound; where
//! a property can be checked (round trips, "verified means identical"), it asserts it.

use std::io::Cursor;
use std::sync::OnceLock;

use chrono::{DateTime, TimeDelta, Utc};
use flipside_bootloader_hooks::{disk, BootAttrs, Disk, GptTable, Slot, SlotLayout};
use flipside_contract::index::{verify_chunk, ChunkEntry, ChunkIndex, ChunkVerifier, Limits};
use flipside_tuf::{
    canonical, verify, Metadata, Origin, Root, Snapshot, Targets, Timestamp, TrustedSet,
};
use serde_json::Value;

/// A real repository (`fuzz/fixtures`, made by `cargo run --bin make-fixtures`): root, and the
/// timestamp, snapshot and targets that verify against it.
pub struct Fixtures {
    pub root: &'static [u8],
    pub timestamp: &'static [u8],
    pub snapshot: &'static [u8],
    pub targets: &'static [u8],
    /// A time at which all four are valid.
    pub time: DateTime<Utc>,
    pub index: ChunkIndex,
    pub bundle: &'static [u8],
}

pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let timestamp: &'static [u8] = include_bytes!("../fixtures/timestamp.json");
        let ts: Value = serde_json::from_slice(timestamp).expect("fixture timestamp");
        let expires: DateTime<Utc> = ts["signed"]["expires"]
            .as_str()
            .expect("expires")
            .parse()
            .expect("expires is RFC 3339");
        Fixtures {
            root: include_bytes!("../fixtures/root.json"),
            timestamp,
            snapshot: include_bytes!("../fixtures/snapshot.json"),
            targets: include_bytes!("../fixtures/targets.json"),
            time: expires - TimeDelta::days(1),
            index: ChunkIndex::decode(
                include_bytes!("../fixtures/image.index"),
                &Limits::default(),
            )
            .expect("fixture index"),
            bundle: include_bytes!("../fixtures/image.bundle"),
        }
    })
}

/// `tuf_metadata`: the first byte picks a step of the client workflow; the rest is the file
/// offered at that step, after the fixture files of the earlier steps were accepted. Every
/// input is also parsed as each role and canonicalised.
pub fn tuf_metadata(data: &[u8]) {
    let Some((&sel, file)) = data.split_first() else {
        return;
    };
    if let Ok(value) = serde_json::from_slice::<Value>(file) {
        // Canonical JSON is deterministic and is itself JSON that parses back to the same value.
        if let Ok(bytes) = canonical::to_vec(&value, "fuzz input") {
            let again: Value = serde_json::from_slice(&bytes).expect("canonical JSON parses");
            assert_eq!(
                canonical::to_vec(&again, "fuzz input").expect("canonical twice"),
                bytes
            );
        }
    }
    if let Ok(root) = Metadata::<Root>::from_slice(file) {
        let _ = verify::verify_role(&root.signed, &root);
        let _ = root.to_bytes();
    }
    let _ = Metadata::<Timestamp>::from_slice(file);
    let _ = Metadata::<Snapshot>::from_slice(file);
    let _ = Metadata::<Targets>::from_slice(file);

    let f = fixtures();
    let mut set = TrustedSet::new(f.root, f.time).expect("fixture root verifies");
    let accepted = match sel % 4 {
        0 => set.update_root(file).is_ok(),
        1 => set.update_timestamp(file, Origin::Remote).is_ok(),
        2 => {
            set.update_timestamp(f.timestamp, Origin::Remote)
                .expect("fixture timestamp");
            set.update_snapshot(file, Origin::Remote).is_ok()
        }
        _ => {
            set.update_timestamp(f.timestamp, Origin::Remote)
                .expect("fixture timestamp");
            set.update_snapshot(f.snapshot, Origin::Remote)
                .expect("fixture snapshot");
            set.update_targets(file).is_ok()
        }
    };
    // Nothing but the repository's keys sign: what is accepted has the signed content of a
    // fixture file (only the envelope's formatting or the signature order can differ).
    if accepted {
        let fixture = match sel % 4 {
            0 => f.root,
            1 => f.timestamp,
            2 => f.snapshot,
            _ => f.targets,
        };
        let signed = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap()["signed"].clone();
        assert_eq!(signed(file), signed(fixture), "accepted forged metadata");
    }
}

/// `chunk_index`: decode with a device's limits; what decodes re-encodes to the same bytes,
/// and its lookups never panic.
pub fn chunk_index(data: &[u8]) {
    let limits = Limits {
        max_image_length: 1 << 30,
        max_chunk_length: 1 << 20,
        max_chunks: 1 << 16,
        max_deltas: 1 << 16,
        max_dictionary_length: 1 << 16,
    };
    let Ok(index) = ChunkIndex::decode(data, &limits) else {
        return;
    };
    let encoded = index.encode();
    assert_eq!(encoded, data, "decode/encode is not the identity");
    let again = ChunkIndex::decode(&encoded, &limits).expect("re-decodes");
    assert_eq!(again.entries(), index.entries());
    let _ = index.entry_for_offset(index.image_length() / 2);
    let _ = index.entry_for_offset(index.image_length());
    let _ = index.locate_in(&fixtures().index);
    let _ = fixtures().index.locate_in(&index);
    let ranges = index.fetch_ranges(|i, _| i % 3 != 1, 4096);
    for r in &ranges {
        assert!(r.http_range().starts_with("bytes="));
    }
    let _ = index.bundle_length();
}

/// `chunk_decode`: a frame offered for a chunk of the fixture index (first byte: which one),
/// or, with the top bit set, for a hand-built entry whose length comes from the input. A frame
/// that verifies is exactly the chunk; nothing grows beyond the entry's length.
pub fn chunk_decode(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let f = fixtures();
    let entries = f.index.entries();
    let entry = entries[usize::from(sel & 0x7f) % entries.len()];
    let (entry, frame) = if sel & 0x80 == 0 {
        (entry, rest)
    } else {
        let Some((len, frame)) = rest.split_first_chunk::<4>() else {
            return;
        };
        let hand = ChunkEntry {
            length: u64::from(u32::from_le_bytes(*len)),
            frame_length: frame.len() as u64,
            ..entry
        };
        (hand, frame)
    };
    let mut verifier = ChunkVerifier::new();
    let mut out = Vec::new();
    let verified = verifier.verify_into(&entry, frame, &mut out);
    assert!(out.len() as u64 <= entry.length);
    if verified.is_ok() {
        let real = &f.bundle[entry.frame_range().start as usize..entry.frame_range().end as usize];
        let expected = verify_chunk(&entry, real).expect("the fixture's own frame verifies");
        assert_eq!(out, expected, "a frame verified with other content");
    }
    // The verifier is reusable after any input.
    let real =
        &f.bundle[entries[0].frame_range().start as usize..entries[0].frame_range().end as usize];
    verifier
        .verify_into(&entries[0], real, &mut out)
        .expect("the verifier still works");
}

/// `gpt_parse`: the input is a whole disk. A table that reads gives a boot state; writing the
/// state back (slot b cleared for writing) and reading again gives that state.
pub fn gpt_parse(data: &[u8]) {
    let mut d = Disk::new("fuzz", Cursor::new(data.to_vec()));
    let Ok(table) = GptTable::read(&mut d) else {
        return;
    };
    let _ = table.partitions();
    let _ = table.health();
    let Ok(state) = disk::boot_state(&table, &SlotLayout::default()) else {
        return;
    };
    let _ = state.boots_next();
    let _ = state.select();
    let _ = state.is_trial_pending();
    let next = state.with_attrs(Slot::B, BootAttrs::new(0, 0, false).expect("valid bits"));
    let mut table = table;
    if disk::commit(&mut d, &mut table, &next).is_err() {
        return;
    }
    let (_, reread) = disk::load(&mut d, &SlotLayout::default()).expect("a written table reads");
    assert_eq!(reread.attrs(Slot::B), next.attrs(Slot::B));
    assert_eq!(reread.attrs(Slot::A), next.attrs(Slot::A));
}
