//! `flipside-verity format` through the real binary, checked by `veritysetup verify` (Debian's
//! `cryptsetup-bin`, in user space: no device-mapper needed): the appended tree and the printed
//! root hash verify the image; the same image always gets the same tree; one flipped byte of
//! the data fails the verification.

use std::path::Path;
use std::process::Command;

use flipside_verity::VerityParams;

const BIN: &str = env!("CARGO_BIN_EXE_flipside-verity");

fn format(image: &Path, extra: &[&str]) -> VerityParams {
    let out = Command::new(BIN)
        .arg("format")
        .arg(image)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let word = String::from_utf8(out.stdout).unwrap();
    VerityParams::from_cmdline(word.trim()).unwrap().unwrap()
}

fn veritysetup_verify(image: &Path, p: &VerityParams) -> bool {
    Command::new("veritysetup")
        .args(["verify", "--no-superblock", "--hash=sha256", "--format=1"])
        .args(["--data-block-size=4096", "--hash-block-size=4096"])
        .arg(format!("--data-blocks={}", p.data_blocks))
        .arg(format!("--hash-offset={}", p.data_len()))
        .arg(format!("--salt={}", hex::encode(p.salt)))
        .arg(image)
        .arg(image)
        .arg(hex::encode(p.root))
        .output()
        .expect("veritysetup (Debian package cryptsetup-bin; scripts/setup.sh installs it)")
        .status
        .success()
}

#[test]
fn format_appends_a_tree_veritysetup_verifies_and_a_flipped_byte_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_001u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let image = dir.path().join("root.img");
    let again = dir.path().join("again.img");
    std::fs::write(&image, &data).unwrap();
    std::fs::write(&again, &data).unwrap();

    let p = format(&image, &[]);
    assert_eq!(p.data_blocks, 74, "300001 bytes padded to 74 blocks");
    assert_eq!(p.on_corruption, flipside_verity::OnCorruption::Restart);
    assert!(veritysetup_verify(&image, &p));
    let formatted = std::fs::read(&image).unwrap();
    assert_eq!(&formatted[..data.len()], &data[..]);
    assert_eq!(
        formatted.len() as u64,
        p.data_len() + 4096,
        "one hash block"
    );

    // Reproducible: the same bytes give the same tree and word.
    let q = format(&again, &["--on-corruption", "panic"]);
    assert_eq!((q.root, q.salt), (p.root, p.salt));
    assert_eq!(std::fs::read(&again).unwrap(), formatted);

    let mut bad = formatted.clone();
    bad[123_456] ^= 0x01;
    std::fs::write(&image, &bad).unwrap();
    assert!(!veritysetup_verify(&image, &p));

    let usage = Command::new(BIN).arg("format").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let missing = Command::new(BIN)
        .args(["format", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
}
