//! Closures of real Nix store paths: `nix-store --add`, a `nix-build` with a reference, the
//! saved forms (path-info file, closureInfo), and closures mixing Nix and built-in paths.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;
use flipside_store::nix::{read_closure_info, read_path_info_file};
use flipside_store::resolve::{classify_root, Root};
use flipside_store::{
    materialize, resolve, resolve_roots, verify, BuiltinStore, Closure, Error, NixSource,
};
use tempfile::TempDir;

fn paths(c: &Closure) -> Vec<&str> {
    c.paths().iter().map(|p| p.path.as_str()).collect()
}

/// `nix-store -qR`: the closure as Nix itself lists it.
fn nix_requisites(path: &str) -> BTreeSet<String> {
    run("nix-store", &["-qR", path])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_leaf_added_with_nix_store_add() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("flipside-test-added-leaf");
    sample_tree(&src);
    let path = run("nix-store", &["--add", src.to_str().unwrap()])
        .trim()
        .to_string();
    let closure = resolve_roots(std::slice::from_ref(&path), None).unwrap();
    assert_eq!(paths(&closure), [path.as_str()]);
    let p = &closure.paths()[0];
    assert!(p.references.is_empty());
    // Nix's narHash, normalised, is the NAR hash this crate computes of the same tree.
    assert_eq!(p.hash, nix_nar_hash(&src));
    verify(p).unwrap();
    let dest = dir.path().join("rootfs").join(path.trim_start_matches('/'));
    materialize(p, &dest).unwrap();
    assert_eq!(nix_nar_hash(&dest), p.hash);
}

#[test]
fn a_nix_build_with_a_reference_has_a_two_path_closure() {
    let app = nix_fixture();
    let closure = resolve_roots(std::slice::from_ref(&app), None).unwrap();
    assert_eq!(
        paths(&closure)
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>(),
        nix_requisites(&app)
    );
    assert_eq!(closure.len(), 2);
    let leaf = closure
        .paths()
        .iter()
        .find(|p| p.path.ends_with("-flipside-test-leaf"))
        .unwrap();
    let app_path = closure.get(&app).unwrap();
    assert_eq!(app_path.references, std::slice::from_ref(&leaf.path));
    assert_eq!(closure.tops(), [app.as_str()]);

    // Both materialise, the app with its symlink into the leaf, and keep their NAR hashes.
    let dir = TempDir::new().unwrap();
    for p in closure.paths() {
        let dest = dir.path().join(p.path.trim_start_matches('/'));
        materialize(p, &dest).unwrap();
        assert_eq!(nix_nar_hash(&dest), p.hash, "{}", p.path);
    }
    let link = dir
        .path()
        .join(app.trim_start_matches('/'))
        .join("share/hello.txt");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new(&format!("{}/hello.txt", leaf.path))
    );
}

#[test]
fn saved_path_info_and_closure_info_give_what_running_nix_gives() {
    let app = nix_fixture();
    let live = resolve_roots(std::slice::from_ref(&app), None).unwrap();
    let dir = TempDir::new().unwrap();

    let json = run(
        "nix",
        &[
            "--extra-experimental-features",
            "nix-command",
            "path-info",
            "--json",
            "--recursive",
            &app,
        ],
    );
    let file = dir.path().join("closure.json");
    fs::write(&file, json).unwrap();
    assert_eq!(read_path_info_file(&file).unwrap(), live);

    let info = dir.path().join("closure-info");
    fs::create_dir(&info).unwrap();
    let all: Vec<String> = nix_requisites(&app).into_iter().collect();
    fs::write(info.join("store-paths"), all.join("\n") + "\n").unwrap();
    let mut args = vec!["--dump-db"];
    args.extend(all.iter().map(String::as_str));
    fs::write(info.join("registration"), run("nix-store", &args)).unwrap();
    assert_eq!(read_closure_info(&info).unwrap(), live);

    // The checked-in fixtures were captured from this same build.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nix");
    assert_eq!(
        read_path_info_file(&data.join("path-info-2.8.json")).unwrap(),
        live
    );
    assert_eq!(read_closure_info(&data.join("closure-info")).unwrap(), live);

    // Known records stand in for running nix.
    let known = NixSource::Known(read_closure_info(&info).unwrap());
    assert_eq!(
        resolve(std::slice::from_ref(&app), None, &known).unwrap(),
        live
    );
}

#[test]
fn a_closure_info_listing_a_path_it_does_not_register_is_refused() {
    let dir = TempDir::new().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nix/closure-info");
    fs::copy(data.join("registration"), dir.path().join("registration")).unwrap();
    let extra = format!("/nix/store/{}-extra", "0".repeat(32));
    let listed = fs::read_to_string(data.join("store-paths")).unwrap() + &extra + "\n";
    fs::write(dir.path().join("store-paths"), listed).unwrap();
    match read_closure_info(dir.path()) {
        Err(Error::Registration { line: 3, why, .. }) => assert!(why.contains(&extra), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_closure_mixes_built_in_and_nix_paths() {
    let app = nix_fixture();
    let dir = TempDir::new().unwrap();
    let store = BuiltinStore::open(dir.path().join("store")).unwrap();
    let src = dir.path().join("src");
    file(&src, "etc/motd", b"hello", 0o644);
    let own = store.add(&src, "motd", &[]).unwrap();

    let specs = vec![own.source.to_str().unwrap().to_string(), app.clone()];
    let closure = resolve_roots(&specs, Some(&store)).unwrap();
    assert_eq!(closure.len(), 3);
    assert_eq!(
        closure.paths()[0].path,
        own.path,
        "/flipside sorts before /nix"
    );
    let entries = closure.entries();
    assert!(entries.iter().any(|e| e.path == app));

    // A link to a Nix path (nix-build's `result`) counts as the Nix path.
    let result = dir.path().join("result");
    std::os::unix::fs::symlink(&app, &result).unwrap();
    assert_eq!(
        classify_root(result.to_str().unwrap(), None).unwrap(),
        Root::Nix(app.clone())
    );
    // A built-in path needs the built-in store.
    assert!(matches!(
        classify_root(&own.path, None),
        Err(Error::NoBuiltinStore { .. })
    ));
    assert!(matches!(
        resolve_roots(&["/usr/bin".to_string()], Some(&store)),
        Err(Error::NotAStorePath { .. })
    ));
    let gone = format!("/nix/store/{}-gone", "0".repeat(32));
    assert!(matches!(
        resolve_roots(&[gone], None),
        Err(Error::NotInStore { .. })
    ));
}
