//! Secure Boot through the real `flipside-build`: `secure-boot-keys` makes PK, KEK and db,
//! `sign` signs a UKI with the db key (checked here again with `sbverify`, and against another
//! key), and the refusals exit with the key class (6).
//!
//! Needs `openssl`, `sbsigntool` and systemd's EFI stub (`systemd-boot-efi`); scripts/setup.sh
//! installs them.

use std::path::Path;
use std::process::Command;

use flipside_image_builder::uki::{self, UkiParts, DEFAULT_STUB};

mod common;

use common::BIN;

fn flipside_build(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn sbverify(cert: &Path, image: &Path) -> bool {
    Command::new("sbverify")
        .arg("--cert")
        .arg(cert)
        .arg(image)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn keys_are_made_once_and_sign_uki_that_only_their_db_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keys = d.join("keys");
    let other = d.join("other");
    for (dir, name) in [(&keys, "Kiosks"), (&other, "Someone else")] {
        let out = flipside_build(&[
            "secure-boot-keys".as_ref(),
            dir.as_os_str(),
            "--name".as_ref(),
            name.as_ref(),
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    for f in ["PK.key", "PK.crt", "KEK.key", "KEK.crt", "db.key", "db.crt"] {
        assert!(keys.join(f).is_file(), "{f}");
    }
    let again = flipside_build(&["secure-boot-keys".as_ref(), keys.as_os_str()]);
    assert_eq!(again.status.code(), Some(6), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));

    let (kernel, initrd) = (d.join("vmlinuz"), d.join("initrd"));
    std::fs::write(&kernel, vec![0x4du8; 8192]).unwrap();
    std::fs::write(&initrd, b"initrd").unwrap();
    let unsigned = d.join("uki.efi");
    uki::assemble(
        &UkiParts {
            stub: Path::new(DEFAULT_STUB),
            kernel: &kernel,
            initrd: &initrd,
            cmdline: "console=ttyS0",
            os_release: &uki::os_release("t", 1, "1"),
        },
        &unsigned,
    )
    .unwrap();
    let signed = d.join("signed.efi");
    let out = flipside_build(&[
        "sign".as_ref(),
        unsigned.as_os_str(),
        "-o".as_ref(),
        signed.as_os_str(),
        "--key".as_ref(),
        keys.join("db.key").as_os_str(),
        "--cert".as_ref(),
        keys.join("db.crt").as_os_str(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(sbverify(&keys.join("db.crt"), &signed));
    assert!(!sbverify(&other.join("db.crt"), &signed));
    assert!(!sbverify(&keys.join("db.crt"), &unsigned));

    let missing = flipside_build(&[
        "sign".as_ref(),
        unsigned.as_os_str(),
        "-o".as_ref(),
        d.join("x.efi").as_os_str(),
        "--key".as_ref(),
        d.join("nope.key").as_os_str(),
        "--cert".as_ref(),
        keys.join("db.crt").as_os_str(),
    ]);
    assert_eq!(missing.status.code(), Some(6), "{missing:?}");
    assert!(!d.join("x.efi").exists());
}
