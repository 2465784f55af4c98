//! A repository published to real S3-compatible object storage (Garage) by
//! `flipside-repository-upload`, and a device installing from it over HTTP through nginx (the
//! CDN's place). An upload cut short by the storage (a bucket quota) leaves devices on the
//! previous repository; a re-run finishes it without sending again what is there; an upload
//! onto another repository's objects is refused before anything is sent.

mod common;

use chrono::Utc;
use common::garage::{Garage, REGION};
use common::{code, Setup, World};
use flipside_bootloader_hooks::Slot;
use flipside_repository_upload::{upload, Credentials, Destination, Error, Options, Report};

const BUCKET: &str = "fleet-updates";
const PREFIX: &str = "kiosk";

fn destination(garage: &Garage) -> Destination {
    let mut d = Destination::parse(&format!("s3://{BUCKET}/{PREFIX}")).unwrap();
    d.endpoint = Some(garage.endpoint());
    d.region = REGION.into();
    d
}

fn credentials(garage: &Garage) -> Credentials {
    Credentials {
        access_key_id: garage.access_key_id.clone(),
        secret_access_key: garage.secret_access_key.clone(),
    }
}

fn publish(w: &World, garage: &Garage) -> Result<Report, Error> {
    upload(
        &w.repo,
        &destination(garage),
        &credentials(garage),
        Options::default(),
        Utc::now(),
    )
}

/// The bytes devices get for `path` under the prefix, through the front (None: 404).
fn fetch(front: &str, path: &str) -> Option<(Vec<u8>, String)> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/stderr", "--fail"])
        .arg(format!("{front}{PREFIX}/{path}"))
        .output()
        .unwrap();
    out.status.success().then(|| {
        let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
        (out.stderr, headers)
    })
}

#[test]
fn a_device_installs_from_object_storage_and_a_cut_upload_changes_nothing_it_sees() {
    common::require_tool("curl", "curl");
    let mut w = World::new(Setup {
        publish: vec![(1, common::HARDWARE)],
        ..Setup::default()
    });
    let garage = Garage::start(BUCKET);
    let front = garage.front(BUCKET);
    let url = front.url();

    // Release 1, uploaded whole: every file, the timestamp last.
    let first = publish(&w, &garage).unwrap();
    assert_eq!(
        first.uploaded.last().map(String::as_str),
        Some("metadata/timestamp.json")
    );
    assert!(first.uploaded.iter().any(|k| k.starts_with("targets/")));
    let served = |path: &str| fetch(&url, path).map(|(bytes, _)| bytes);
    let repo = w.repo.clone();
    let local = |path: &str| std::fs::read(repo.join(path)).unwrap();
    assert_eq!(
        served("metadata/timestamp.json").unwrap(),
        local("metadata/timestamp.json")
    );
    let (_, headers) = fetch(&url, "metadata/timestamp.json").unwrap();
    assert!(
        headers.contains("cache-control: public, max-age=60"),
        "{headers}"
    );
    let (_, headers) = fetch(&url, "metadata/1.root.json").unwrap();
    assert!(headers.contains("immutable"), "{headers}");
    w.write_config(&[format!("{url}{PREFIX}/")], 0);
    w.run(&["check"]).expect(code::OK).says("up to date");

    // Release 2, but the bucket takes only two more objects: the bundle and the targets
    // metadata go up, the snapshot is refused, the timestamp never goes.
    w.publish(2, common::HARDWARE, 3 << 20);
    let objects = garage
        .cli(&["bucket", "info", BUCKET])
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Objects:")
                .map(|n| n.trim().parse::<u64>().unwrap())
        })
        .expect("garage bucket info names the object count");
    let limit = (objects + 2).to_string();
    garage.cli(&["bucket", "set-quotas", "--max-objects", &limit, BUCKET]);
    let before = served("metadata/timestamp.json").unwrap();
    let err = publish(&w, &garage).unwrap_err();
    assert!(
        matches!(err, Error::Store { visible: false, .. }),
        "a failure before the timestamp: {err}"
    );
    assert!(
        err.to_string()
            .contains("devices still see the previous repository"),
        "{err}"
    );
    assert_eq!(served("metadata/timestamp.json").unwrap(), before);
    w.run(&["check"]).expect(code::OK).says("up to date");
    w.assert_b_untouched();

    // The quota lifted, the same command finishes: what is there is not sent again.
    garage.cli(&["bucket", "set-quotas", "--max-objects", "none", BUCKET]);
    let second = publish(&w, &garage).unwrap();
    assert!(second.unchanged > first.uploaded.len() - 1, "{second:?}");
    assert!(
        !second.uploaded.iter().any(|k| k.ends_with(".bundle")),
        "the bundle that went up before was sent again: {second:?}"
    );
    assert_eq!(
        second.uploaded.last().map(String::as_str),
        Some("metadata/timestamp.json")
    );
    assert_eq!(
        served("metadata/timestamp.json").unwrap(),
        local("metadata/timestamp.json")
    );

    // A third run has nothing to do.
    let third = publish(&w, &garage).unwrap();
    assert!(third.uploaded.is_empty(), "{third:?}");

    // The device installs release 2 from the bucket.
    let run = w.run(&["install"]);
    run.expect(code::OK).says("event=installed");
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
}

#[test]
fn another_repositorys_objects_are_never_overwritten() {
    let a = World::new(Setup::default());
    let b = World::new(Setup::default());
    let garage = Garage::start(BUCKET);
    publish(&a, &garage).unwrap();
    let listing = garage.cli(&["bucket", "info", BUCKET]);
    // Repository b has its own keys: its version-1 root differs from a's under the same name.
    let err = publish(&b, &garage).unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("nothing was uploaded"), "{err}");
    assert_eq!(garage.cli(&["bucket", "info", BUCKET]), listing);
}

#[test]
fn delete_removes_what_prune_removed_only_after_the_timestamp() {
    let w = World::new(Setup::default());
    let garage = Garage::start(BUCKET);
    publish(&w, &garage).unwrap();
    w.withdraw(1);
    let mut repo = flipside_repository::Repository::open(&w.repo).unwrap();
    let pruned = repo
        .prune(Utc::now(), chrono::TimeDelta::zero(), false)
        .unwrap();
    drop(repo);
    assert!(!pruned.files.is_empty());

    // Without --delete the leftovers stay and are named; with it they go, after the timestamp.
    let kept = publish(&w, &garage).unwrap();
    assert!(
        !kept.left_in_place.is_empty() && kept.removed.is_empty(),
        "{kept:?}"
    );
    let delete = |dry_run: bool| {
        let options = Options {
            delete: true,
            dry_run,
        };
        upload(
            &w.repo,
            &destination(&garage),
            &credentials(&garage),
            options,
            Utc::now(),
        )
        .unwrap()
    };
    assert_eq!(delete(true).removed, kept.left_in_place);
    assert_eq!(delete(false).removed, kept.left_in_place);
    let again = publish(&w, &garage).unwrap();
    assert!(
        again.left_in_place.is_empty() && again.uploaded.is_empty(),
        "{again:?}"
    );
}
