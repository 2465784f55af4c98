//! Where each chunk of a new image comes from, pure: already in the slot (an interrupted
//! install wrote it), copied from the running slot (a delta), or downloaded.

/// The source of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkSource {
    /// The slot already holds it at its offset: nothing to do.
    Present,
    /// An identical chunk lies at this offset of the running slot's image.
    Copy { from: u64 },
    /// Download its frame.
    Fetch,
}

/// One source per chunk: present wins over a copy, a copy over a download.
/// `present[i]` says whether the slot holds chunk `i`; `seed[i]` where the running image holds
/// an identical chunk (from [`flipside_contract::index::ChunkIndex::locate_in`]).
pub fn plan(present: &[bool], seed: Option<&[Option<u64>]>) -> Vec<ChunkSource> {
    present
        .iter()
        .enumerate()
        .map(
            |(i, &p)| match (p, seed.and_then(|s| s.get(i).copied().flatten())) {
                (true, _) => ChunkSource::Present,
                (false, Some(from)) => ChunkSource::Copy { from },
                (false, None) => ChunkSource::Fetch,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_combination() {
        for p in [false, true] {
            for s in [None, Some(7u64)] {
                let seed = [s];
                let got = plan(&[p], Some(&seed));
                let want = match (p, s) {
                    (true, _) => ChunkSource::Present,
                    (false, Some(from)) => ChunkSource::Copy { from },
                    (false, None) => ChunkSource::Fetch,
                };
                assert_eq!(got, vec![want]);
                assert_eq!(
                    plan(&[p], None),
                    vec![if p {
                        ChunkSource::Present
                    } else {
                        ChunkSource::Fetch
                    }]
                );
            }
        }
        // A seed shorter than the index leaves the rest to download.
        assert_eq!(
            plan(&[false, false], Some(&[Some(0)])),
            vec![ChunkSource::Copy { from: 0 }, ChunkSource::Fetch]
        );
    }
}
