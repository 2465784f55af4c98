//! The Nix archive (NAR) serialisation of a file tree, written as a stream of events.
//!
//! A NAR holds exactly what a store path's identity depends on: entry names (sorted by bytes),
//! file contents, the executable bit and symlink targets; no times, owners or other mode bits.
//! Built-in store paths are hashed over it too, so one digest function checks both sources, and
//! `nix-store --dump` is a real tool to check this encoder against.
//!
//! Every string is its length as a little-endian u64, the bytes, then zero padding to 8 bytes.

use std::io::{self, Write};

const PADDING: [u8; 8] = [0; 8];

/// Writes the NAR of a tree to `W`; the caller drives it in NAR order (a directory's entries
/// sorted by name bytes, each entry's node complete before the next).
pub struct NarEncoder<W> {
    out: W,
}

impl<W: Write> NarEncoder<W> {
    /// Starts an archive: writes the magic string.
    pub fn new(mut out: W) -> io::Result<Self> {
        write_str(&mut out, b"nix-archive-1")?;
        Ok(NarEncoder { out })
    }

    /// The sink, to inspect it after the archive is complete.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Opens a regular file node of `len` bytes; follow with exactly `len` bytes of
    /// [`Self::contents`] and then [`Self::end_regular`].
    pub fn begin_regular(&mut self, executable: bool, len: u64) -> io::Result<()> {
        self.strs(&[b"(", b"type", b"regular"])?;
        if executable {
            self.strs(&[b"executable", b""])?;
        }
        write_str(&mut self.out, b"contents")?;
        self.out.write_all(&len.to_le_bytes())
    }

    pub fn contents(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.out.write_all(chunk)
    }

    /// Closes a regular file node of `len` bytes (pads its contents).
    pub fn end_regular(&mut self, len: u64) -> io::Result<()> {
        self.out.write_all(&PADDING[..padding(len)])?;
        write_str(&mut self.out, b")")
    }

    pub fn symlink(&mut self, target: &[u8]) -> io::Result<()> {
        self.strs(&[b"(", b"type", b"symlink", b"target", target, b")"])
    }

    pub fn begin_directory(&mut self) -> io::Result<()> {
        self.strs(&[b"(", b"type", b"directory"])
    }

    /// Opens a directory entry; follow with the entry's node and [`Self::end_entry`].
    pub fn begin_entry(&mut self, name: &[u8]) -> io::Result<()> {
        self.strs(&[b"entry", b"(", b"name", name, b"node"])
    }

    pub fn end_entry(&mut self) -> io::Result<()> {
        write_str(&mut self.out, b")")
    }

    pub fn end_directory(&mut self) -> io::Result<()> {
        write_str(&mut self.out, b")")
    }

    fn strs(&mut self, items: &[&[u8]]) -> io::Result<()> {
        items.iter().try_for_each(|s| write_str(&mut self.out, s))
    }
}

fn padding(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

fn write_str(out: &mut impl Write, s: &[u8]) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s)?;
    out.write_all(&PADDING[..padding(s.len() as u64)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nar_str(s: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_str(&mut v, s).unwrap();
        v
    }

    #[test]
    fn strings_are_length_prefixed_and_padded_to_eight() {
        assert_eq!(nar_str(b""), vec![0; 8]);
        assert_eq!(
            nar_str(b"("),
            [&[1, 0, 0, 0, 0, 0, 0, 0][..], b"(\0\0\0\0\0\0\0"].concat()
        );
        for n in 0..=17usize {
            let s = vec![b'x'; n];
            let enc = nar_str(&s);
            assert_eq!(enc.len() % 8, 0);
            assert_eq!(enc.len(), 8 + n.div_ceil(8) * 8);
        }
    }

    #[test]
    fn a_single_executable_file() {
        let mut nar = NarEncoder::new(Vec::new()).unwrap();
        nar.begin_regular(true, 3).unwrap();
        nar.contents(b"abc").unwrap();
        nar.end_regular(3).unwrap();
        let got = nar.into_inner();
        let mut want = Vec::new();
        for s in [
            &b"nix-archive-1"[..],
            b"(",
            b"type",
            b"regular",
            b"executable",
            b"",
            b"contents",
            b"abc",
            b")",
        ] {
            want.extend(nar_str(s));
        }
        assert_eq!(got, want);
    }
}
