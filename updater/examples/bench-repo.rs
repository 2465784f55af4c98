//! Publishes an existing root-filesystem image as release VERSION of system `kiosk` in a fresh
//! or existing repository, for `scripts/bench-install.sh`:
//!
//! ```text
//! bench-repo IMAGE OUT_DIR VERSION HARDWARE_ID
//! ```
//!
//! writes `OUT_DIR/release-VERSION/` (bundle, index, release.json), `OUT_DIR/keys/`,
//! `OUT_DIR/repo/` and `OUT_DIR/root.json` (the root to pin).

use std::path::PathBuf;

use chrono::Utc;
use flipside_bundle::{write_bundle, BundleParams};
use flipside_contract::release::{file_names, FileInfo, ImageInfo, Release, RELEASE_FORMAT};
use flipside_repository::{InitSettings, KeyDir, Repository};
use sha2::{Digest, Sha256};

fn file_info(path: &std::path::Path, name: &str) -> FileInfo {
    let bytes = std::fs::read(path).expect("read a release file");
    FileInfo {
        name: name.into(),
        length: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: bench-repo IMAGE OUT_DIR VERSION HARDWARE_ID");
        std::process::exit(2);
    }
    let image = PathBuf::from(&args[1]);
    let out = PathBuf::from(&args[2]);
    let version: u64 = args[3].parse().expect("VERSION is a number");
    let hardware_id = &args[4];
    let release_dir = out.join(format!("release-{version}"));
    std::fs::create_dir_all(&release_dir).expect("create the release directory");
    let (bundle_name, index_name) = file_names("kiosk", version);
    let bundle = release_dir.join(&bundle_name);
    let index = write_bundle(&image, &bundle, &BundleParams::default()).expect("write the bundle");
    let index_path = release_dir.join(&index_name);
    std::fs::write(&index_path, index.encode()).expect("write the index");
    let release = Release {
        format: RELEASE_FORMAT,
        name: "kiosk".into(),
        version,
        display_version: format!("bench-{version}"),
        hardware_id: hardware_id.clone(),
        architecture: Default::default(),
        image: ImageInfo {
            filesystem: "squashfs".into(),
            length: index.image_length(),
            sha256: hex::encode(index.image_sha256()),
        },
        bundle: file_info(&bundle, &bundle_name),
        index: file_info(&index_path, &index_name),
        init: "/sbin/init".into(),
        closure: vec![],
        kernel: None,
        allow_rollback: false,
    };
    std::fs::write(
        release_dir.join("release.json"),
        serde_json::to_vec_pretty(&release).expect("serialise release.json"),
    )
    .expect("write release.json");

    let repo_dir = out.join("repo");
    let keys = KeyDir::new(out.join("keys"));
    if !repo_dir.join("metadata").exists() {
        let mut repo = Repository::create(&repo_dir).expect("create the repository");
        repo.init(&keys, &InitSettings::default(), Utc::now())
            .expect("init the repository");
    }
    let mut repo = Repository::open(&repo_dir).expect("open the repository");
    repo.add(&keys, &release_dir, Utc::now())
        .expect("publish the release");
    std::fs::copy(repo_dir.join("metadata/1.root.json"), out.join("root.json")).expect("copy root");
    println!(
        "image {} bytes, bundle {} bytes, {} chunks",
        index.image_length(),
        release.bundle.length,
        index.len()
    );
}
