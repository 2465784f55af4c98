//! The dm-verity hash tree of an image, as `veritysetup format --no-superblock --hash=sha256
//! --data-block-size=4096 --hash-block-size=4096 --format=1 --salt=S` writes it (checked
//! against veritysetup in the tests):
//!
//! - level 0 holds sha256(salt || block) of every data block, 128 digests per 4096-byte hash
//!   block, the last block zero-padded; level i+1 hashes level i's blocks the same way, until
//!   a level fits one block; the root hash is sha256(salt || that block);
//! - the levels are stored top level first, level 0 last;
//! - one data block has no tree: the root hash is that block's digest.
//!
//! flipside appends the tree to the image (hash offset = data size), so the dm-verity hash
//! start block is the number of data blocks. Pure.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

/// Data and hash block size in bytes.
pub const BLOCK_SIZE: u64 = 4096;
const DIGEST: usize = 32;
/// Digests in one hash block.
const PER_BLOCK: u64 = BLOCK_SIZE / DIGEST as u64;

/// A built hash tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    /// The root hash.
    pub root: [u8; 32],
    /// Data blocks the tree covers.
    pub data_blocks: u64,
    /// The hash area: every level, top first; a multiple of [`BLOCK_SIZE`].
    pub bytes: Vec<u8>,
}

/// Blocks of each level, level 0 first: level i has ceil(blocks / 128^(i+1)) blocks, and the
/// levels stop when one block holds the level below (veritysetup's rule). Empty for one block.
pub fn level_blocks(data_blocks: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut below = data_blocks;
    while below > 1 {
        let n = below.div_ceil(PER_BLOCK);
        out.push(n);
        below = n;
    }
    out
}

fn digest(salt: &[u8], block: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Hash blocks of `digests`, 128 a block, the last one zero-padded.
fn pack(digests: &[[u8; 32]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(digests.len().div_ceil(PER_BLOCK as usize) * 4096);
    for d in digests {
        out.extend_from_slice(d);
    }
    out.resize(
        out.len().div_ceil(BLOCK_SIZE as usize) * BLOCK_SIZE as usize,
        0,
    );
    out
}

/// The tree over `data_blocks` blocks read from `data` (whose length must be exactly
/// `data_blocks * BLOCK_SIZE`: pad the image first) with `salt`.
pub fn build(data: &mut impl Read, data_blocks: u64, salt: &[u8]) -> io::Result<Tree> {
    if data_blocks == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an empty image has no hash tree",
        ));
    }
    let mut block = vec![0u8; BLOCK_SIZE as usize];
    let mut level: Vec<[u8; 32]> = Vec::new();
    for _ in 0..data_blocks {
        data.read_exact(&mut block)?;
        level.push(digest(salt, &block));
    }
    if data_blocks == 1 {
        return Ok(Tree {
            root: level[0],
            data_blocks,
            bytes: Vec::new(),
        });
    }
    // Level 0 first; each packed level is hashed block by block into the next.
    let mut levels: Vec<Vec<u8>> = Vec::new();
    loop {
        let packed = pack(&level);
        let blocks = packed.len() as u64 / BLOCK_SIZE;
        let next: Vec<[u8; 32]> = packed
            .chunks(BLOCK_SIZE as usize)
            .map(|b| digest(salt, b))
            .collect();
        levels.push(packed);
        if blocks == 1 {
            let root = next[0];
            let bytes = levels.into_iter().rev().flatten().collect();
            return Ok(Tree {
                root,
                data_blocks,
                bytes,
            });
        }
        level = next;
    }
}

/// Pads the image in `file` to whole blocks, appends its tree and returns the parameters for
/// the command line. The salt is the sha256 of the padded data: the same image always gets the
/// same tree and root hash (reproducible builds), and two images never share a salt.
pub fn append_to(
    file: &mut File,
    on_corruption: crate::OnCorruption,
) -> io::Result<crate::VerityParams> {
    let len = file.metadata()?.len();
    let padded = len.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
    file.set_len(padded)?;
    file.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    io::copy(&mut (&*file).take(padded), &mut h)?;
    let salt: [u8; 32] = h.finalize().into();
    file.seek(SeekFrom::Start(0))?;
    let tree = build(
        &mut io::BufReader::new((&*file).take(padded)),
        padded / BLOCK_SIZE,
        &salt,
    )?;
    file.seek(SeekFrom::Start(padded))?;
    file.write_all(&tree.bytes)?;
    file.sync_all()?;
    Ok(crate::VerityParams::of(&tree, salt, on_corruption))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn levels_follow_veritysetup() {
        assert_eq!(level_blocks(1), Vec::<u64>::new());
        assert_eq!(level_blocks(2), [1]);
        assert_eq!(level_blocks(128), [1]);
        assert_eq!(level_blocks(129), [2, 1]);
        assert_eq!(level_blocks(128 * 128 + 1), [129, 2, 1]);
    }

    /// veritysetup's root hash and hash area for `data`, hash area written after the data.
    fn veritysetup(data: &[u8], salt: &[u8]) -> (String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("image");
        std::fs::write(&file, data).unwrap();
        let out = Command::new("veritysetup")
            .args(["format", "--no-superblock", "--hash=sha256", "--format=1"])
            .args(["--data-block-size=4096", "--hash-block-size=4096"])
            .arg(format!("--salt={}", hex::encode(salt)))
            .arg(format!("--data-blocks={}", data.len() / 4096))
            .arg(format!("--hash-offset={}", data.len()))
            .arg(&file)
            .arg(&file)
            .output()
            .expect("veritysetup (Debian package cryptsetup-bin; scripts/setup.sh installs it)");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let root = text
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .unwrap()
            .trim()
            .to_string();
        let all = std::fs::read(&file).unwrap();
        (root, all[data.len()..].to_vec())
    }

    #[test]
    fn matches_veritysetup_byte_for_byte() {
        let salt = [0x5au8; 32];
        // One block, one level, a partial level, two levels with a partial top.
        for blocks in [1u64, 2, 128, 200, 128 * 128 + 3] {
            let data: Vec<u8> = (0..blocks * 4096)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            let tree = build(&mut &data[..], blocks, &salt).unwrap();
            let (root, area) = veritysetup(&data, &salt);
            assert_eq!(hex::encode(tree.root), root, "{blocks} blocks");
            // veritysetup writes the levels and nothing after them.
            assert_eq!(
                tree.bytes.len() as u64,
                level_blocks(blocks).iter().sum::<u64>() * 4096
            );
            assert_eq!(tree.bytes, area[..tree.bytes.len()], "{blocks} blocks");
            assert_eq!(tree.data_blocks, blocks);
        }
    }

    #[test]
    fn refuses_an_empty_or_short_image() {
        assert!(build(&mut &[][..], 0, b"s").is_err());
        assert!(build(&mut &[0u8; 4096][..], 2, b"s").is_err());
    }
}
