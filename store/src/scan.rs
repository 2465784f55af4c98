//! Reference scanning as Nix does it: a path references every store path whose 32-digit hash
//! part occurs anywhere in its serialisation (file contents, symlink targets, names).
//!
//! The scanner is fed the NAR in chunks of any size; it keeps the last 31 bytes of the
//! previous chunk so a hash split across two chunks is still found.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};

use crate::base32;

/// Length of the hash part of a store path name.
pub const HASH_PART_LEN: usize = 32;

/// Finds hash parts of candidate paths in a byte stream.
#[derive(Debug, Default)]
pub struct RefScanner {
    /// Hash part -> the store path it identifies.
    candidates: HashMap<[u8; HASH_PART_LEN], String>,
    found: BTreeSet<String>,
    /// The last bytes seen, shorter than a hash part.
    tail: Vec<u8>,
}

impl RefScanner {
    /// A scanner for the given `(hash part, store path)` candidates; hash parts of another
    /// length cannot occur as references and are ignored.
    pub fn new<'a>(candidates: impl IntoIterator<Item = (&'a str, String)>) -> Self {
        let candidates = candidates
            .into_iter()
            .filter_map(|(hash, path)| Some((hash.as_bytes().try_into().ok()?, path)))
            .collect();
        RefScanner {
            candidates,
            found: BTreeSet::new(),
            tail: Vec::new(),
        }
    }

    /// Scans the next chunk of the stream.
    pub fn feed(&mut self, data: &[u8]) {
        if self.candidates.is_empty() {
            return;
        }
        // Hashes that start in the tail and end in this chunk.
        let mut seam = std::mem::take(&mut self.tail);
        let seam_start = seam.len();
        seam.extend_from_slice(&data[..data.len().min(HASH_PART_LEN - 1)]);
        self.search(&seam);
        self.search(data);
        // Keep the last HASH_PART_LEN - 1 bytes of tail + data for the next seam.
        let keep = HASH_PART_LEN - 1;
        if data.len() >= keep {
            self.tail = data[data.len() - keep..].to_vec();
        } else {
            seam.truncate(seam_start + data.len());
            let from = seam.len().saturating_sub(keep);
            self.tail = seam[from..].to_vec();
        }
    }

    /// The store paths found so far, sorted.
    pub fn found(&self) -> &BTreeSet<String> {
        &self.found
    }

    pub fn into_found(self) -> BTreeSet<String> {
        self.found
    }

    fn search(&mut self, s: &[u8]) {
        let mut i = 0;
        'outer: while i + HASH_PART_LEN <= s.len() {
            // Check from the end of the window: a non-digit lets us skip past it at once.
            for j in (i..i + HASH_PART_LEN).rev() {
                if !base32::is_digit(s[j]) {
                    i = j + 1;
                    continue 'outer;
                }
            }
            let window = <&[u8; HASH_PART_LEN]>::try_from(&s[i..i + HASH_PART_LEN]);
            if let Some(path) = window.ok().and_then(|w| self.candidates.get(w)) {
                self.found.insert(path.clone());
            }
            i += 1;
        }
    }
}

/// Lets the scanner sit behind a writer in a tee.
impl Write for RefScanner {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0c0aq1rx8hwbzj1l1lvxv3f1pz3vmd4y";
    const B: &str = "143xibwh31h9bvxzalr0sjvbbvpa6ffs";

    fn scanner() -> RefScanner {
        RefScanner::new([
            (A, format!("/flipside/store/{A}-a")),
            (B, format!("/flipside/store/{B}-b")),
        ])
    }

    fn scan_in_pieces(data: &[u8], cuts: &[usize]) -> BTreeSet<String> {
        let mut s = scanner();
        let mut from = 0;
        for &cut in cuts {
            s.feed(&data[from..cut]);
            from = cut;
        }
        s.feed(&data[from..]);
        s.into_found()
    }

    #[test]
    fn finds_a_hash_split_at_every_position_and_in_single_bytes() {
        let data = format!("xx/flipside/store/{A}-a/bin/sh\0{B}yy");
        let data = data.as_bytes();
        let want: BTreeSet<String> = scan_in_pieces(data, &[]);
        assert_eq!(want.len(), 2);
        for cut in 0..=data.len() {
            assert_eq!(scan_in_pieces(data, &[cut]), want, "cut at {cut}");
        }
        for a in 0..=data.len() {
            for b in a..=data.len() {
                assert_eq!(scan_in_pieces(data, &[a, b]), want, "cuts {a} {b}");
            }
        }
        let singles: Vec<usize> = (1..data.len()).collect();
        assert_eq!(scan_in_pieces(data, &singles), want);
    }

    #[test]
    fn ignores_near_misses() {
        let mut s = scanner();
        // One digit short, one digit changed, and a run of digits longer than a hash that
        // contains neither.
        s.feed(&A.as_bytes()[..31]);
        s.feed(b"-");
        s.feed(format!("{}1", &A[..31]).as_bytes());
        s.feed(b" ");
        s.feed("0".repeat(100).as_bytes());
        assert!(s.found().is_empty());
    }

    #[test]
    fn finds_a_hash_inside_a_longer_run_of_digits() {
        let mut s = scanner();
        s.feed(format!("zz{A}zz").as_bytes());
        assert_eq!(s.found().len(), 1);
    }
}
