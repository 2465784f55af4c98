//! sha256 throughput of the `sha2` crate on this CPU (it uses SHA-NI when the CPU has it,
//! detected at run time): hashes 1 GiB from a 16 MiB buffer and prints MB/s.

use std::time::Instant;

use sha2::{Digest, Sha256};

fn main() {
    let buf: Vec<u8> = (0..16usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    let rounds = 64;
    let start = Instant::now();
    let mut h = Sha256::new();
    for _ in 0..rounds {
        h.update(&buf);
    }
    let digest = h.finalize();
    let secs = start.elapsed().as_secs_f64();
    let mb = (buf.len() * rounds) as f64 / 1e6;
    println!(
        "sha2 sha256: {:.0} MB/s ({})",
        mb / secs,
        hex::encode(&digest[..4])
    );
}
