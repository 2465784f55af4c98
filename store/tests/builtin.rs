//! The built-in store on real files: hashing, reference scanning, atomic and idempotent
//! imports, refusals, and materialisation, cross-checked with the real `nix-hash`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use flipside_store::{materialize, verify, BuiltinStore, Error, StorePath};
use tempfile::TempDir;

fn store() -> (TempDir, BuiltinStore) {
    let dir = TempDir::new().unwrap();
    let store = BuiltinStore::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn add_tree(store: &BuiltinStore, name: &str, build: impl FnOnce(&Path)) -> StorePath {
    let src = TempDir::new().unwrap();
    build(src.path());
    store.add(src.path(), name, &[]).unwrap()
}

fn base(p: &StorePath) -> &str {
    p.base_name()
}

#[test]
fn the_hash_ignores_modes_times_and_owner_but_not_the_executable_bit() {
    let (_d, store) = store();
    let a = add_tree(&store, "pkg-1.0", sample_tree);
    // Same content, other permission bits and times.
    let b = add_tree(&store, "pkg-1.0", |root| {
        sample_tree(root);
        for rel in ["B", "a", "a.b"] {
            file(root, rel, &fs::read(root.join(rel)).unwrap(), 0o600);
        }
        file(root, "bin/tool", b"#!/bin/sh\necho tool\n", 0o700);
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        fs::File::open(root.join("a.b"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o700)).unwrap();
    });
    assert_eq!(a, b);
    assert!(a.path.starts_with("/flipside/store/"));
    assert!(a.path.ends_with("-pkg-1.0"));
    assert_eq!(a.source, store.dir().join(base(&a)));
    assert!(a.references.is_empty());

    let not_exec = add_tree(&store, "pkg-1.0", |root| {
        sample_tree(root);
        file(root, "bin/tool", b"#!/bin/sh\necho tool\n", 0o644);
    });
    assert_ne!(not_exec.path, a.path);
    assert_ne!(not_exec.hash, a.hash);
    let renamed = add_tree(&store, "pkg-1.1", sample_tree);
    assert_eq!(
        renamed.hash, a.hash,
        "the content hash does not cover the name"
    );
    assert_ne!(&renamed.path[16..48], &a.path[16..48], "the path hash does");
}

#[test]
fn the_content_hash_is_the_nar_hash_nix_computes() {
    let src = TempDir::new().unwrap();
    sample_tree(src.path());
    let (_d, store) = store();
    let p = store.add(src.path(), "sample", &[]).unwrap();
    assert_eq!(p.hash, nix_nar_hash(src.path()));
    assert_eq!(
        p.hash,
        nix_nar_hash(&p.source),
        "the stored copy hashes the same"
    );
}

#[test]
fn references_are_found_across_chunk_boundaries_in_files_and_symlinks() {
    let (_d, store) = store();
    let lib = add_tree(&store, "lib-1.0", |r| {
        file(r, "lib/libx.so", b"\x7fELF", 0o644);
    });
    let other = add_tree(&store, "other", |r| {
        file(r, "x", b"x", 0o644);
    });
    // The hash part straddles the 64 KiB read chunk of the walker.
    let by_content = add_tree(&store, "app", |r| {
        let mut data = vec![b' '; 65_536 - 40];
        data.extend_from_slice(lib.path.as_bytes());
        data.extend_from_slice(b"/lib/libx.so\n");
        file(r, "bin/app", &data, 0o755);
    });
    assert_eq!(by_content.references, std::slice::from_ref(&lib.path));
    let by_link = add_tree(&store, "app-link", |r| {
        symlink(r, "lib", &format!("{}/lib", lib.path));
        symlink(r, "rel", &format!("../{}/x", base(&other)));
    });
    let mut want = vec![lib.path.clone(), other.path.clone()];
    want.sort();
    assert_eq!(by_link.references, want);
    // A hash-shaped string of no store path is no reference.
    let none = add_tree(&store, "none", |r| {
        file(
            r,
            "f",
            b"/flipside/store/0c0aq1rx8hwbzj1l1lvxv3f1pz3vmd4y-x",
            0o644,
        );
    });
    assert!(none.references.is_empty());

    let closure = store.closure(std::slice::from_ref(&by_link.path)).unwrap();
    let paths: Vec<&str> = closure.paths().iter().map(|p| p.path.as_str()).collect();
    let mut want = vec![
        by_link.path.as_str(),
        lib.path.as_str(),
        other.path.as_str(),
    ];
    want.sort();
    assert_eq!(paths, want);
}

#[test]
fn explicit_references_count_and_change_the_path() {
    let (_d, store) = store();
    let dep = add_tree(&store, "dep", |r| {
        file(r, "f", b"dep", 0o644);
    });
    let src = TempDir::new().unwrap();
    file(src.path(), "conf", b"no reference in here", 0o644);
    let plain = store.add(src.path(), "conf", &[]).unwrap();
    // By logical path and by host path: the same reference.
    let with_ref = store
        .add(src.path(), "conf", std::slice::from_ref(&dep.path))
        .unwrap();
    let host = dep.source.to_str().unwrap().to_string();
    let again = store.add(src.path(), "conf", &[host]).unwrap();
    assert_eq!(with_ref, again);
    assert_eq!(with_ref.references, std::slice::from_ref(&dep.path));
    assert_eq!(with_ref.hash, plain.hash);
    assert_ne!(with_ref.path, plain.path);
    assert_eq!(
        store
            .closure(std::slice::from_ref(&with_ref.path))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn adding_the_same_content_twice_changes_nothing() {
    let (_d, store) = store();
    let src = TempDir::new().unwrap();
    sample_tree(src.path());
    let first = store.add(src.path(), "twice", &[]).unwrap();
    let before = snapshot(store.dir());
    let second = store.add(src.path(), "twice", &[]).unwrap();
    assert_eq!(first, second);
    assert_eq!(snapshot(store.dir()), before);
    assert_eq!(fs::read_dir(store.dir().join(".tmp")).unwrap().count(), 0);
}

#[test]
fn store_files_are_read_only_and_listed() {
    let (_d, store) = store();
    let p = add_tree(&store, "modes", sample_tree);
    assert_eq!(mode(&p.source.join("a")), 0o444);
    assert_eq!(mode(&p.source.join("bin/tool")), 0o555);
    assert_eq!(mode(&p.source.join("bin")), 0o755);
    assert_eq!(store.list().unwrap(), std::slice::from_ref(&p));
    let meta: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(store.dir().join(".meta").join(format!("{}.json", base(&p)))).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["path"], p.path.as_str());
    assert_eq!(meta["hash"], p.hash.as_str());
    assert_eq!(meta["name"], "modes");
}

#[test]
fn paths_are_found_by_logical_path_host_path_sub_path_and_link() {
    let (dir, store) = store();
    let p = add_tree(&store, "find-me", sample_tree);
    let host = p.source.to_str().unwrap();
    let link = dir.path().join("result");
    std::os::unix::fs::symlink(&p.source, &link).unwrap();
    for spec in [
        p.path.clone(),
        format!("{}/bin/tool", p.path),
        host.to_string(),
        format!("{host}/bin/tool"),
        format!("{host}/"),
        link.to_str().unwrap().to_string(),
    ] {
        assert_eq!(store.get(&spec).unwrap(), p, "{spec}");
    }
    assert!(matches!(
        store.get("/etc/passwd"),
        Err(Error::NotAStorePath { .. })
    ));
    let missing = format!("/flipside/store/{}-find-me", "0".repeat(32));
    assert!(matches!(store.get(&missing), Err(Error::NotInStore { path }) if path == missing));
}

/// Adds `build`'s tree and expects an error; the store must be unchanged afterwards.
fn refused(store: &BuiltinStore, name: &str, refs: &[String], build: impl FnOnce(&Path)) -> Error {
    let src = TempDir::new().unwrap();
    build(src.path());
    let before = snapshot(store.dir());
    let err = store.add(src.path(), name, refs).unwrap_err();
    assert_eq!(
        snapshot(store.dir()),
        before,
        "a failed add changed the store"
    );
    assert_eq!(fs::read_dir(store.dir().join(".tmp")).unwrap().count(), 0);
    err
}

#[test]
fn bad_input_is_refused_with_its_own_error_and_leaves_the_store_alone() {
    let (_d, store) = store();
    let good = add_tree(&store, "good", |r| {
        file(r, "f", b"f", 0o644);
    });
    let before = snapshot(store.dir());

    let missing = store
        .add(Path::new("/nonexistent/src"), "x", &[])
        .unwrap_err();
    assert!(matches!(missing, Error::SourceMissing { .. }), "{missing}");
    let a_file = store.add(&good.source.join("f"), "x", &[]).unwrap_err();
    assert!(
        matches!(a_file, Error::SourceNotDirectory { .. }),
        "{a_file}"
    );
    for name in ["", "a/b", ".x", "-x", "a b", "ü", "../up"] {
        let e = refused(&store, name, &[], |r| {
            file(r, "f", b"f", 0o644);
        });
        assert!(matches!(e, Error::InvalidName { .. }), "{name:?}: {e}");
    }

    let fifo = refused(&store, "fifo", &[], |r| {
        run("mkfifo", &[r.join("pipe").to_str().unwrap()]);
    });
    assert!(
        matches!(&fifo, Error::UnsupportedFileType { kind, .. } if kind.contains("FIFO")),
        "{fifo}"
    );
    let socket = refused(&store, "socket", &[], |r| {
        // Leaked so the socket file stays bound while the store reads the tree.
        std::mem::forget(std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap());
    });
    assert!(
        matches!(
            socket,
            Error::UnsupportedFileType {
                kind: "a socket",
                ..
            }
        ),
        "{socket}"
    );

    for target in [
        "../../../etc/passwd".to_string(),
        "../../etc/passwd".to_string(),
        "/usr/../etc/passwd".to_string(),
        "/nix/store/x".to_string(),
        "/flipside/store".to_string(),
        "../../.meta/x".to_string(),
        format!("{}/../../etc", good.path),
    ] {
        let e = refused(&store, "escape", &[], |r| {
            symlink(r, "sub/link", &target);
        });
        assert!(matches!(e, Error::SymlinkEscapes { .. }), "{target}: {e}");
    }
    let absent = format!("/flipside/store/{}-absent", "1".repeat(32));
    let e = refused(&store, "dangling", &[], |r| {
        symlink(r, "link", &absent);
    });
    assert!(
        matches!(&e, Error::SymlinkTargetMissing { base, .. } if absent.ends_with(base.as_str())),
        "{e}"
    );

    let e = refused(&store, "ref", std::slice::from_ref(&absent), |r| {
        file(r, "f", b"f", 0o644);
    });
    assert!(
        matches!(&e, Error::RefNotInStore { reference, .. } if *reference == absent),
        "{e}"
    );
    let e = refused(&store, "ref", &["/tmp".to_string()], |r| {
        file(r, "f", b"f", 0o644);
    });
    assert!(matches!(e, Error::NotAStorePath { .. }), "{e}");

    assert_eq!(snapshot(store.dir()), before);
    // Every message says what to do.
    for e in [missing, a_file, fifo, socket] {
        let text = e.to_string();
        assert!(text.contains(':'), "{text}");
    }
}

#[test]
fn a_non_store_directory_is_not_opened() {
    let dir = TempDir::new().unwrap();
    file(dir.path(), "precious.txt", b"x", 0o644);
    assert!(matches!(
        BuiltinStore::open(dir.path()),
        Err(Error::NotAStore { .. })
    ));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    // An empty directory becomes a store, and opens again.
    let empty = TempDir::new().unwrap();
    BuiltinStore::open(empty.path()).unwrap();
    BuiltinStore::open(empty.path()).unwrap();
}

#[test]
fn an_import_cut_short_is_adopted_and_a_tampered_one_is_refused() {
    let (_d, store) = store();
    let src = TempDir::new().unwrap();
    sample_tree(src.path());
    let p = store.add(src.path(), "cut", &[]).unwrap();
    let meta = store.dir().join(".meta").join(format!("{}.json", base(&p)));
    // The tree was renamed into place but the record never written.
    fs::remove_file(&meta).unwrap();
    assert!(store.lookup(&p.path).unwrap().is_none());
    assert_eq!(store.add(src.path(), "cut", &[]).unwrap(), p);
    assert!(meta.exists());

    fs::remove_file(&meta).unwrap();
    let f = p.source.join("B");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&f, b"tampered").unwrap();
    let e = store.add(src.path(), "cut", &[]).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt { path, .. } if *path == p.path),
        "{e}"
    );
}

#[test]
fn materialize_normalises_modes_and_times_and_keeps_the_hash() {
    let (dir, store) = store();
    let dep = add_tree(&store, "dep", |r| {
        file(r, "f", b"dep", 0o644);
    });
    let p = add_tree(&store, "mat", |r| {
        sample_tree(r);
        symlink(r, "dep", &format!("{}/f", dep.path));
    });
    let dest = dir
        .path()
        .join("rootfs")
        .join(p.path.trim_start_matches('/'));
    materialize(&p, &dest).unwrap();
    assert_eq!(nix_nar_hash(&dest), p.hash);
    assert_eq!(mode(&dest), 0o555);
    assert_eq!(mode(&dest.join("bin")), 0o555);
    assert_eq!(mode(&dest.join("empty")), 0o555);
    assert_eq!(mode(&dest.join("a")), 0o444);
    assert_eq!(mode(&dest.join("bin/tool")), 0o555);
    assert_eq!(fs::read(dest.join("a.b")).unwrap(), vec![7u8; 200_000]);
    assert_eq!(
        fs::read_link(dest.join("share/link")).unwrap(),
        Path::new("../bin/tool")
    );
    assert_eq!(
        fs::read_link(dest.join("dep")).unwrap(),
        Path::new(&format!("{}/f", dep.path))
    );
    for rel in ["", "bin", "a", "a.b", "share/link", "dep"] {
        assert_eq!(
            fs::symlink_metadata(dest.join(rel)).unwrap().mtime(),
            1,
            "{rel}"
        );
    }
    // Twice into two places: byte-identical trees.
    let dest2 = dir.path().join("rootfs2");
    materialize(&p, &dest2).unwrap();
    let strip = |root: &Path| {
        snapshot(root)
            .into_iter()
            .map(|(k, v)| (k.strip_prefix(root).unwrap().to_path_buf(), v))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&dest), strip(&dest2));
    // A destination that exists is not overwritten.
    assert!(matches!(materialize(&p, &dest), Err(Error::Write { .. })));
}

#[test]
fn a_store_path_modified_after_import_is_corrupt() {
    let (dir, store) = store();
    let p = add_tree(&store, "victim", sample_tree);
    verify(&p).unwrap();
    let f = p.source.join("a.b");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let mut data = fs::read(&f).unwrap();
    data[100_000] ^= 1;
    fs::write(&f, data).unwrap();
    for result in [verify(&p), materialize(&p, &dir.path().join("out"))] {
        match result {
            Err(Error::Corrupt {
                path,
                expected,
                actual,
                ..
            }) => {
                assert_eq!((path, expected), (p.path.clone(), p.hash.clone()));
                assert_ne!(actual, p.hash);
            }
            other => panic!("{other:?}"),
        }
    }
    // Only the executable bit counts: chmod alone is no corruption, +x is.
    let q = add_tree(&store, "chmod", sample_tree);
    fs::set_permissions(q.source.join("a"), fs::Permissions::from_mode(0o600)).unwrap();
    verify(&q).unwrap();
    fs::set_permissions(q.source.join("a"), fs::Permissions::from_mode(0o700)).unwrap();
    assert!(matches!(verify(&q), Err(Error::Corrupt { .. })));
}

#[test]
fn a_dangling_reference_in_the_store_is_named() {
    let (_d, store) = store();
    let dep = add_tree(&store, "dep", |r| {
        file(r, "f", b"dep", 0o644);
    });
    let src = TempDir::new().unwrap();
    file(src.path(), "f", b"app", 0o644);
    let app = store
        .add(src.path(), "app", std::slice::from_ref(&dep.path))
        .unwrap();
    fs::remove_file(
        store
            .dir()
            .join(".meta")
            .join(format!("{}.json", base(&dep))),
    )
    .unwrap();
    match store.closure(std::slice::from_ref(&app.path)) {
        Err(Error::DanglingReference { path, reference }) => {
            assert_eq!((path, reference), (app.path.clone(), dep.path.clone()));
        }
        other => panic!("{other:?}"),
    }
}

/// A root tree as `dpkg -x` leaves it (`bin/systemd -> /lib/systemd/systemd`, a unit masked
/// with `-> /dev/null`), plus links to a directory and a file of the build host.
fn root_tree(root: &Path, host_dir: &str, host_file: &str) {
    file(root, "lib/systemd/systemd", b"\x7fELF systemd", 0o755);
    symlink(root, "bin/systemd", "/lib/systemd/systemd");
    symlink(root, "lib/systemd/system/rc.service", "/dev/null");
    symlink(root, "lib/systemd/system/sub.service", "../systemd");
    symlink(root, "hostdir", host_dir);
    symlink(root, "hostfile", host_file);
}

#[test]
fn a_root_tree_keeps_its_absolute_links_and_nothing_on_the_host_is_followed() {
    let (dir, store) = store();
    // What the links name on the build host: the store must hold the links, not this.
    let host = dir.path().join("host");
    file(&host, "secret", b"host secret", 0o644);
    let host_dir = host.to_str().unwrap().to_string();
    let host_file = format!("{host_dir}/secret");
    let p = add_tree(&store, "debian", |r| root_tree(r, &host_dir, &host_file));
    let links = [
        ("bin/systemd", "/lib/systemd/systemd"),
        ("lib/systemd/system/rc.service", "/dev/null"),
        ("hostdir", host_dir.as_str()),
        ("hostfile", host_file.as_str()),
    ];
    for (rel, target) in links {
        let link = p.source.join(rel);
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink(), "{rel}");
        assert_eq!(fs::read_link(&link).unwrap(), Path::new(target), "{rel}");
    }
    // The real Nix agrees on the NAR hash: the links are serialised as links.
    assert_eq!(nix_nar_hash(&p.source), p.hash);
    assert!(p.references.is_empty(), "{:?}", p.references);

    // What the host has behind the links changes nothing, not even its absence.
    fs::write(&host_file, b"other host secret").unwrap();
    let again = add_tree(&store, "debian", |r| root_tree(r, &host_dir, &host_file));
    assert_eq!(again, p);
    fs::remove_dir_all(&host).unwrap();
    let without_host = add_tree(&store, "debian", |r| root_tree(r, &host_dir, &host_file));
    assert_eq!(without_host, p);
    verify(&p).unwrap();

    // Into an image tree: the same links, nothing of the host below them.
    file(&host, "secret", b"host secret", 0o644);
    let dest = dir.path().join("rootfs/flipside/store").join(base(&p));
    materialize(&p, &dest).unwrap();
    for (rel, target) in links {
        assert_eq!(fs::read_link(dest.join(rel)).unwrap(), Path::new(target));
        assert_eq!(fs::symlink_metadata(dest.join(rel)).unwrap().mtime(), 1);
    }
    let mut entries: Vec<String> = snapshot(&dest)
        .into_keys()
        .map(|k| k.strip_prefix(&dest).unwrap().display().to_string())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            "bin",
            "bin/systemd",
            "hostdir",
            "hostfile",
            "lib",
            "lib/systemd",
            "lib/systemd/system",
            "lib/systemd/system/rc.service",
            "lib/systemd/system/sub.service",
            "lib/systemd/systemd",
        ]
    );
}

#[test]
fn the_hash_covers_every_link_target() {
    let (_d, store) = store();
    let paths: Vec<StorePath> = ["/dev/null", "/dev/zero", "/dev/null/", "null", "../null"]
        .into_iter()
        .map(|target| {
            add_tree(&store, "mask", |r| {
                symlink(r, "etc/rc.service", target);
            })
        })
        .collect();
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[i + 1..] {
            assert_ne!(a.path, b.path);
            assert_ne!(a.hash, b.hash);
        }
    }
}
