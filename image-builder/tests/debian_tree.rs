//! A real Debian root tree, unpacked with `dpkg -x` from bookworm's `systemd` and `libc6` as a
//! new user would, through the real `flipside-build store add` and `flipside-build image`: its
//! absolute links (`bin/systemd -> /lib/systemd/systemd`, unit masks `-> /dev/null`, the
//! loader, `-> /etc/environment`) are in the image with the exact targets dpkg laid down.
//!
//! The packages are downloaded once with `apt-get download` into `target/tmp/debian-debs` and
//! reused; where Debian's package registry cannot be reached the test fails and says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flipside-build");

/// Small packages that hold absolute links (checked with `find -lname '/*'`).
const PACKAGES: &[&str] = &["systemd", "libc6"];

/// The cached `.deb` of `package`, if one was downloaded before.
fn cached(cache: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".deb")
        })
}

/// The `.deb` of every package in [`PACKAGES`], downloading the missing ones.
fn debs() -> Vec<PathBuf> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-debs");
    fs::create_dir_all(&cache).unwrap();
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| cached(&cache, p).is_none())
        .collect();
    if !missing.is_empty() {
        // Into a directory of its own, so that an interrupted download is never taken for a
        // cached package.
        let partial = tempfile::tempdir_in(&cache).unwrap();
        let out = Command::new("apt-get")
            .arg("download")
            .args(&missing)
            .current_dir(partial.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run apt-get ({e}): this test downloads {missing:?} from Debian's package registry")
            });
        assert!(
            out.status.success(),
            "`apt-get download {}` failed: this test needs Debian's package registry \
             (a network connection and `apt-get update` done once):\n{}",
            missing.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        for entry in fs::read_dir(partial.path()).unwrap() {
            let path = entry.unwrap().path();
            fs::rename(&path, cache.join(path.file_name().unwrap())).unwrap();
        }
    }
    PACKAGES
        .iter()
        .map(|p| cached(&cache, p).unwrap_or_else(|| panic!("apt-get left no {p}_*.deb")))
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every symlink with an absolute target below `tree`: (path relative to `tree`, target).
fn absolute_links(tree: &Path) -> Vec<(String, String)> {
    let found = run(Command::new("find")
        .arg(tree)
        .args(["-lname", "/*", "-printf", "%P\\t%l\\n"]));
    found
        .lines()
        .map(|l| {
            let (path, target) = l.split_once('\t').unwrap();
            (path.to_string(), target.to_string())
        })
        .collect()
}

#[test]
fn a_debian_tree_keeps_its_absolute_links_in_the_store_and_the_image() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("debian");
    fs::create_dir(&tree).unwrap();
    for deb in debs() {
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree));
    }
    let links = absolute_links(&tree);
    assert!(
        links.contains(&("bin/systemd".into(), "/lib/systemd/systemd".into())),
        "{links:?}"
    );
    assert!(links.iter().any(|(_, t)| t == "/dev/null"), "{links:?}");

    // store add: the links are stored as they are.
    let added = run(Command::new(BIN)
        .args([
            "store", "add", "debian", "--name", "debian", "--store", "st",
        ])
        .current_dir(t.path())
        .env_remove("FLIPSIDE_STORE"));
    let host_path = t.path().join(added.trim());
    for (rel, target) in &links {
        let link = host_path.join(rel);
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink(), "{rel}");
        assert_eq!(fs::read_link(&link).unwrap(), Path::new(target), "{rel}");
    }

    // An image with the tree's top directories at the root; init is reached through the
    // tree's own `bin/systemd -> /lib/systemd/systemd`, resolved inside the image.
    let logical = format!(
        "/flipside/store/{}",
        host_path.file_name().unwrap().to_str().unwrap()
    );
    let mut system = format!(
        "name = \"debian\"\nversion = 1\nhardware_id = \"qemu-x86_64\"\ninit = \"/bin/systemd\"\n\
         mountpoints = [\"/proc\", \"/sys\", \"/dev\", \"/run\", \"/tmp\"]\n\
         [[root]]\nname = \"debian\"\npath = \"{logical}\"\n[symlinks]\n"
    );
    let mut tops: Vec<String> = fs::read_dir(&tree)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    tops.sort();
    for top in &tops {
        system.push_str(&format!("\"/{top}\" = \"@debian/{top}\"\n"));
    }
    fs::write(t.path().join("system.toml"), system).unwrap();
    run(Command::new(BIN)
        .args(["image", "system.toml", "-o", "out", "--store", "st"])
        .current_dir(t.path()));

    let release: flipside_contract::release::Release =
        serde_json::from_slice(&fs::read(t.path().join("out/release.json")).unwrap()).unwrap();
    assert_eq!(release.closure.len(), 1);
    let root = &release.closure[0].path;
    assert_eq!(root, &logical);
    let image = t.path().join("out").join("debian-1.squashfs");
    let list = run(Command::new("unsquashfs")
        .arg("-lls")
        .arg("-d")
        .arg("")
        .arg(&image));
    // Links inside the tree (not the image's top links into it).
    let image_links: Vec<&str> = list
        .lines()
        .filter(|l| l.starts_with('l'))
        .filter(|l| {
            let (entry, _target) = l.split_once(" -> ").unwrap();
            entry.contains(&format!(" {root}/"))
        })
        .collect();
    for (rel, target) in &links {
        let want = format!(" {root}/{rel} -> {target}");
        assert!(
            image_links.iter().any(|l| l.ends_with(&want)),
            "{want:?} missing from the image:\n{list}"
        );
    }
    let absolute_in_image = image_links.iter().filter(|l| l.contains(" -> /")).count();
    assert_eq!(absolute_in_image, links.len(), "{list}");
    assert!(list.lines().any(|l| l.ends_with(" /init -> /bin/systemd")));
}
