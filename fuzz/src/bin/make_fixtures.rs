//! Makes `fuzz/fixtures`: a real repository's metadata (root, timestamp, snapshot, targets,
//! valid for ten years) and a real bundle and chunk index, with the project's own builder
//! crates. The fuzz targets verify mutations against them. Run from `fuzz/`:
//! `cargo run --bin make-fixtures`.

use std::path::Path;

use chrono::Utc;
use flipside_bundle::{write_bundle, BundleParams};
use flipside_contract::release::{FileInfo, ImageInfo, Release, RELEASE_FORMAT};
use flipside_repository::{InitSettings, KeyDir, Repository, RoleSettings};
use flipside_tuf::Role;
use sha2::{Digest, Sha256};

fn main() {
    let out = Path::new("fixtures");
    std::fs::create_dir_all(out).expect("create fixtures/");
    let tmp = tempfile::tempdir().expect("temporary directory");
    let work = tmp.path();

    // An image of text and pseudo-random runs: several content-defined chunks, some repeated.
    let mut image = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while image.len() < 1 << 20 {
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            image.push(x as u8);
        }
        image.extend_from_slice(&b"flipside fixture line\n".repeat(200));
    }
    let image_path = work.join("image");
    std::fs::write(&image_path, &image).expect("write image");

    let dir = work.join("release");
    std::fs::create_dir_all(&dir).expect("release dir");
    let (bundle_name, index_name) = flipside_contract::release::file_names("fuzz", 1);
    let params = BundleParams {
        zstd_level: 3,
        ..BundleParams::default()
    };
    let index = write_bundle(&image_path, &dir.join(&bundle_name), &params).expect("bundle");
    let index_bytes = index.encode();
    std::fs::write(dir.join(&index_name), &index_bytes).expect("index");
    let bundle = std::fs::read(dir.join(&bundle_name)).expect("read bundle");
    let info = |name: &str, bytes: &[u8]| FileInfo {
        name: name.into(),
        length: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    };
    let release = Release {
        format: RELEASE_FORMAT,
        name: "fuzz".into(),
        version: 1,
        display_version: "1".into(),
        hardware_id: "fuzz-board".into(),
        architecture: Default::default(),
        image: ImageInfo {
            filesystem: "squashfs".into(),
            length: index.image_length(),
            sha256: hex::encode(index.image_sha256()),
        },
        bundle: info(&bundle_name, &bundle),
        index: info(&index_name, &index_bytes),
        init: "/sbin/init".into(),
        closure: vec![],
        kernel: None,
        allow_rollback: false,
    };
    std::fs::write(
        dir.join("release.json"),
        serde_json::to_vec_pretty(&release).expect("release json"),
    )
    .expect("write release.json");

    let repo = work.join("repo");
    let keys = KeyDir::new(work.join("keys"));
    let mut settings = InitSettings::default();
    for role in Role::ALL {
        settings.roles.insert(
            role,
            RoleSettings {
                keys: 1,
                threshold: 1,
                expiry_days: 3650,
            },
        );
    }
    let mut r = Repository::create(&repo).expect("create repository");
    r.init(&keys, &settings, Utc::now()).expect("init");
    r.add(&keys, &dir, Utc::now()).expect("add release");

    let md = repo.join("metadata");
    let ts = std::fs::read(md.join("timestamp.json")).expect("timestamp");
    let v: serde_json::Value = serde_json::from_slice(&ts).expect("timestamp json");
    let sv = v["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .expect("snapshot version");
    let snap = std::fs::read(md.join(format!("{sv}.snapshot.json"))).expect("snapshot");
    let s: serde_json::Value = serde_json::from_slice(&snap).expect("snapshot json");
    let tv = s["signed"]["meta"]["targets.json"]["version"]
        .as_u64()
        .expect("targets version");
    let copy = |from: &Path, to: &str| {
        std::fs::copy(from, out.join(to)).expect("copy fixture");
    };
    copy(&md.join("1.root.json"), "root.json");
    copy(&md.join("timestamp.json"), "timestamp.json");
    copy(&md.join(format!("{sv}.snapshot.json")), "snapshot.json");
    copy(&md.join(format!("{tv}.targets.json")), "targets.json");
    std::fs::write(out.join("image.index"), &index_bytes).expect("index fixture");
    std::fs::write(out.join("image.bundle"), &bundle).expect("bundle fixture");
    println!(
        "fixtures: {} chunks, bundle {} bytes, index {} bytes",
        index.len(),
        bundle.len(),
        index_bytes.len()
    );
}
