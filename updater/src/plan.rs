//! Where each chunk of a new image comes from, pure: already in the slot (an interrupted
//! install wrote it), copied from the running slot (a delta), rebuilt from a delta frame and a
//! base chunk of the running slot, or downloaded.

/// The source of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkSource {
    /// The slot already holds it at its offset: nothing to do.
    Present,
    /// An identical chunk lies at this offset of the running slot's image.
    Copy { from: u64 },
    /// Download delta frame `delta` of the index and decode it against the base chunk at
    /// offset `from` of the running slot's image.
    Delta { delta: usize, from: u64 },
    /// Download its frame.
    Fetch,
}

/// One source per chunk: present wins over a copy, a copy over a delta, a delta over a full
/// download. `present[i]` says whether the slot holds chunk `i`; `seed[i]` where the running
/// image holds an identical chunk (from [`flipside_contract::index::ChunkIndex::locate_in`]);
/// `deltas[i]` a delta frame of chunk `i` whose base the running image holds, and where
/// ([`flipside_contract::index::ChunkIndex::deltas_from`]).
pub fn plan(
    present: &[bool],
    seed: Option<&[Option<u64>]>,
    deltas: Option<&[Option<(usize, u64)>]>,
) -> Vec<ChunkSource> {
    present
        .iter()
        .enumerate()
        .map(|(i, &p)| match (p, at(seed, i), at(deltas, i)) {
            (true, _, _) => ChunkSource::Present,
            (false, Some(from), _) => ChunkSource::Copy { from },
            (false, None, Some((delta, from))) => ChunkSource::Delta { delta, from },
            (false, None, None) => ChunkSource::Fetch,
        })
        .collect()
}

/// `v[i]`, `None` when `v` is missing or too short.
fn at<T: Copy>(v: Option<&[Option<T>]>, i: usize) -> Option<T> {
    v.and_then(|v| v.get(i).copied().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_combination() {
        for p in [false, true] {
            for s in [None, Some(7u64)] {
                for d in [None, Some((2usize, 9u64))] {
                    let (seed, deltas) = ([s], [d]);
                    let got = plan(&[p], Some(&seed), Some(&deltas));
                    let want = match (p, s, d) {
                        (true, _, _) => ChunkSource::Present,
                        (false, Some(from), _) => ChunkSource::Copy { from },
                        (false, None, Some((delta, from))) => ChunkSource::Delta { delta, from },
                        (false, None, None) => ChunkSource::Fetch,
                    };
                    assert_eq!(got, vec![want], "{p} {s:?} {d:?}");
                    let no_seed = match p {
                        true => ChunkSource::Present,
                        false => ChunkSource::Fetch,
                    };
                    assert_eq!(plan(&[p], None, None), vec![no_seed]);
                }
            }
        }
        // A seed or delta list shorter than the index leaves the rest to download.
        assert_eq!(
            plan(&[false, false], Some(&[Some(0)]), Some(&[None])),
            vec![ChunkSource::Copy { from: 0 }, ChunkSource::Fetch]
        );
    }
}
