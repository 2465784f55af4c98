//! `flipside-build image` end to end: reproducibility, the filesystem checker's view, a real
//! Nix closure, and bad input (exit code, nothing half-written).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flipside_test_support::tools::{copy_tree, tool};
use flipside_test_support::{sha256_file_hex, sha256_hex};

mod common;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/appliance")
}

/// Runs flipside-build with a umask, from `cwd`.
fn build(args: &[&str], umask: &str, cwd: &Path) -> Output {
    common::build_with_umask(args, umask, cwd)
}

fn listing(image: &Path) -> String {
    common::unsquashfs_listing(image, "-l")
}

fn outputs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn example_builds_bit_for_bit_reproducibly() {
    // Two copies of the example in different places, with different file times and umasks,
    // into different stores and output directories.
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    copy_tree(&example_dir(), &one.path().join("appliance"));
    let deep = two.path().join("some/other/place");
    fs::create_dir_all(&deep).unwrap();
    copy_tree(&example_dir(), &deep.join("appliance"));
    let status = Command::new("find")
        .arg(&deep)
        .args([
            "-exec",
            "touch",
            "-h",
            "-d",
            "2001-02-03 04:05:06",
            "{}",
            "+",
        ])
        .status()
        .unwrap();
    assert!(status.success());

    let a = build(
        &[
            "image",
            "appliance/system.toml",
            "-o",
            "out",
            "--store",
            "store",
        ],
        "022",
        one.path(),
    );
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = build(
        &[
            "image",
            "appliance/system.toml",
            "-o",
            "out",
            "--store",
            "store",
            "--threads",
            "1",
        ],
        "077",
        &deep,
    );
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));

    let names = outputs(&one.path().join("out"));
    assert_eq!(
        names,
        [
            "appliance-1.bundle",
            "appliance-1.index",
            "appliance-1.squashfs",
            "release.json"
        ]
    );
    for name in &names {
        assert_eq!(
            sha256_file_hex(&one.path().join("out").join(name)),
            sha256_file_hex(&deep.join("out").join(name)),
            "{name} differs between the two builds"
        );
    }
}

#[test]
fn the_image_is_what_the_description_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = build(
        &[
            "image",
            example_dir().join("system.toml").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--store",
            dir.path().join("store").to_str().unwrap(),
        ],
        "022",
        dir.path(),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let image = out.join("appliance-1.squashfs");
    let list = listing(&image);
    for path in [
        "/proc",
        "/sys",
        "/dev",
        "/run",
        "/tmp",
        "/data",
        "/bin",
        "/etc",
        "/init",
        "/.flipside/system.json",
    ] {
        assert!(
            list.lines().any(|l| l == path),
            "{path} missing from\n{list}"
        );
    }
    assert!(list
        .lines()
        .any(|l| l.starts_with("/flipside/store/") && l.ends_with("-busybox/bin/busybox")));

    // The squashfs is uncompressed (the bundle compresses) and has no fragments.
    let stats = tool("unsquashfs", "squashfs-tools")
        .arg("-s")
        .arg(&image)
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&stats.stdout);
    assert!(
        stats.contains("Data is uncompressed") && stats.contains("Inodes are uncompressed"),
        "{stats}"
    );
    assert!(stats.contains("Fragments are not stored"), "{stats}");

    // release.json agrees with the files, and the bundle decompresses to the image.
    let release: flipside_contract::release::Release =
        serde_json::from_slice(&fs::read(out.join("release.json")).unwrap()).unwrap();
    release.validate().unwrap();
    assert_eq!(release.image.sha256, sha256_file_hex(&image));
    assert_eq!(
        release.bundle.sha256,
        sha256_file_hex(&out.join(&release.bundle.name))
    );
    assert_eq!(
        release.index.sha256,
        sha256_file_hex(&out.join(&release.index.name))
    );
    assert_eq!(release.closure.len(), 2);
    let unpacked = tool("zstd", "zstd")
        .arg("-d")
        .arg("-c")
        .arg(out.join(&release.bundle.name))
        .output()
        .unwrap();
    assert!(unpacked.status.success());
    assert_eq!(sha256_hex(&unpacked.stdout), release.image.sha256);

    // The running system can read what it is.
    let extract = dir.path().join("x");
    let status = tool("unsquashfs", "squashfs-tools")
        .arg("-q")
        .arg("-no-progress")
        .arg("-d")
        .arg(&extract)
        .arg(&image)
        .arg("/.flipside/system.json")
        .status()
        .unwrap();
    assert!(status.success());
    let info: flipside_contract::release::SystemInfo =
        serde_json::from_slice(&fs::read(extract.join(".flipside/system.json")).unwrap()).unwrap();
    assert_eq!(
        (info.name.as_str(), info.version, info.hardware_id.as_str()),
        ("appliance", 1, "qemu-x86_64")
    );
    assert_eq!(info.closure, release.closure);
}

#[test]
fn a_real_nix_closure_becomes_an_image() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/tests/nix-fixture.sh");
    let built = Command::new("sh")
        .arg(&fixture)
        .output()
        .expect("run the Nix fixture");
    assert!(
        built.status.success(),
        "nix-build failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let app = String::from_utf8(built.stdout).unwrap().trim().to_string();
    let closure = Command::new("nix-store")
        .args(["-qR", &app])
        .output()
        .unwrap();
    let mut expected: Vec<String> = String::from_utf8(closure.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    expected.sort();
    assert!(
        expected.len() >= 2,
        "the fixture should reference another store path: {expected:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("system.toml"),
        format!(
            "name = \"nixapp\"\nversion = 4\nhardware_id = \"qemu-x86_64\"\ninit = \"@app/bin/app\"\n\
             [symlinks]\n\"/share\" = \"@app/share\"\n[[root]]\nname = \"app\"\npath = \"{app}\"\n"
        ),
    )
    .unwrap();
    let run = build(
        &["image", "system.toml", "-o", "out", "--store", "store"],
        "022",
        dir.path(),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let list = listing(&dir.path().join("out/nixapp-4.squashfs"));
    for path in &expected {
        assert!(
            list.lines().any(|l| l == path),
            "{path} missing from\n{list}"
        );
    }
    let release: flipside_contract::release::Release =
        serde_json::from_slice(&fs::read(dir.path().join("out/release.json")).unwrap()).unwrap();
    let paths: Vec<&str> = release.closure.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, expected);
    assert_eq!(release.init, format!("{app}/bin/app"));
}

/// Builds a variant of the example and expects `code`, with nothing left in the output dir.
fn refused(edit: impl Fn(&str) -> String, extra: &[&str], code: i32, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&example_dir(), &dir.path().join("appliance"));
    let toml = dir.path().join("appliance/system.toml");
    fs::write(&toml, edit(&fs::read_to_string(&toml).unwrap())).unwrap();
    let mut args = vec![
        "image",
        "appliance/system.toml",
        "-o",
        "out",
        "--store",
        "store",
    ];
    args.extend_from_slice(extra);
    let run = build(&args, "022", dir.path());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(message), "expected {message:?} in {stderr}");
    let out = dir.path().join("out");
    if out.exists() {
        assert_eq!(
            outputs(&out),
            Vec::<String>::new(),
            "a refused build left files behind"
        );
    }
}

#[test]
fn bad_input_is_refused_with_its_exit_code_and_leaves_nothing() {
    refused(
        |t| t.replace("version = 1 ", "version = 0 "),
        &[],
        3,
        "version",
    );
    refused(
        |t| t.replace("@base/bin/init", "@base/bin/missing"),
        &[],
        3,
        "does not exist",
    );
    refused(
        |t| t.replace("dir = \"base\"", "dir = \"no-such-dir\""),
        &[],
        3,
        "no-such-dir",
    );
    refused(
        |t| {
            format!("{t}\n[[root]]\nname = \"ghost\"\npath = \"/flipside/store/00000000000000000000000000000000-ghost\"\n")
        },
        &[],
        4,
        "ghost",
    );
    refused(
        |t| t.replace("\"/bin/busybox\" }", "\"/no/such/file\" }"),
        &[],
        4,
        "/no/such/file",
    );
    refused(
        |t| t.replace("64MiB", "1MiB"),
        &[],
        5,
        "slot holds 1048576 bytes",
    );
    refused(
        |t| t.to_string(),
        &["--slot-size", "4096"],
        5,
        "slot holds 4096 bytes",
    );
    refused(
        |t| {
            t.replace(
                "name = \"appliance\"",
                "name = \"appliance\"\ncolour = \"blue\"",
            )
        },
        &[],
        3,
        "colour",
    );
    refused(
        |t| t.to_string(),
        &["--threads", "10000"],
        3,
        "10000 compression threads is over the cap of 256",
    );
}

#[test]
fn an_unreadable_input_file_is_a_store_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&example_dir(), &dir.path().join("appliance"));
    let secret = dir.path().join("appliance/base/etc/secret");
    fs::write(&secret, "not for the builder\n").unwrap();
    // Everyone may build here, but nobody may read the secret; root reads anything, so as root
    // the builder runs as nobody.
    let status = Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let args = [
        "image",
        "appliance/system.toml",
        "-o",
        "out",
        "--store",
        "store",
    ];
    let as_root = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&secret).unwrap()) == 0;
    let run = if as_root {
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(common::BIN)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    } else {
        build(&args, "022", dir.path())
    };
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("etc/secret"), "{stderr}");
}

#[test]
fn a_symlink_escaping_the_store_is_refused() {
    // `bin/sh` of the busybox root climbing above the store directory.
    refused(
        |t| {
            t.replace(
                "\"bin/sh\" = \"busybox\"",
                "\"bin/sh\" = \"../../../etc/passwd\"",
            )
        },
        &[],
        4,
        "climbs above the store directory",
    );
    refused(
        |t| t.replace("\"bin/sh\" = \"busybox\"", "\"bin/sh\" = \"/nix/store/x\""),
        &[],
        4,
        "/nix/store/x",
    );
}

#[test]
fn every_output_file_has_the_mode_the_umask_gives() {
    for (umask, want) in [("022", 0o644), ("027", 0o640)] {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&example_dir(), &dir.path().join("appliance"));
        let run = build(
            &[
                "image",
                "appliance/system.toml",
                "-o",
                "out",
                "--store",
                "store",
            ],
            umask,
            dir.path(),
        );
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let out = dir.path().join("out");
        let names = outputs(&out);
        assert_eq!(names.len(), 4, "{names:?}");
        for name in names {
            let meta = fs::symlink_metadata(out.join(&name)).unwrap();
            assert!(meta.is_file(), "{name}");
            assert_eq!(
                meta.permissions().mode() & 0o7777,
                want,
                "{name} under umask {umask}"
            );
        }
    }
}

/// `unsquashfs -lls`: one line per entry, ending in ` <path>` or ` <path> -> <target>`.
fn long_listing(image: &Path) -> String {
    common::unsquashfs_listing(image, "-lls")
}

/// A root tree with absolute links (as Debian's packages have them) and links to a directory
/// and a program of the build host; returns the host directory.
fn root_tree_with_absolute_links(dir: &Path) -> PathBuf {
    let host = dir.join("host");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("secret"), "host secret\n").unwrap();
    fs::write(host.join("tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(host.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.join("root");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("sbin")).unwrap();
    fs::create_dir_all(root.join("lib/systemd/system")).unwrap();
    fs::write(root.join("bin/init"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("bin/init"), fs::Permissions::from_mode(0o755)).unwrap();
    let link =
        |rel: &str, target: &Path| std::os::unix::fs::symlink(target, root.join(rel)).unwrap();
    link("sbin/init", Path::new("/bin/init"));
    link("lib/systemd/system/rc.service", Path::new("/dev/null"));
    link("hostdir", &host);
    link("hosttool", &host.join("tool"));
    host
}

fn root_system(init: &str) -> String {
    format!(
        "name = \"rooted\"\nversion = 1\nhardware_id = \"qemu-x86_64\"\ninit = \"{init}\"\n\
         mountpoints = [\"/dev\"]\n\
         [symlinks]\n\"/bin\" = \"@root/bin\"\n\"/sbin\" = \"@root/sbin\"\n\"/lib\" = \"@root/lib\"\n\
         [[root]]\nname = \"root\"\ndir = \"root\"\n"
    )
}

#[test]
fn absolute_links_of_a_root_tree_are_in_the_image_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let host = root_tree_with_absolute_links(dir.path());
    // init is reached through the tree's own absolute link, resolved inside the image.
    fs::write(dir.path().join("system.toml"), root_system("/sbin/init")).unwrap();
    let run = build(
        &["image", "system.toml", "-o", "out", "--store", "store"],
        "022",
        dir.path(),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let release: flipside_contract::release::Release =
        serde_json::from_slice(&fs::read(dir.path().join("out/release.json")).unwrap()).unwrap();
    let root = &release.closure[0].path;
    let list = long_listing(&dir.path().join("out/rooted-1.squashfs"));
    let host = host.to_str().unwrap();
    for (rel, target) in [
        ("sbin/init", "/bin/init".to_string()),
        ("lib/systemd/system/rc.service", "/dev/null".to_string()),
        ("hostdir", host.to_string()),
        ("hosttool", format!("{host}/tool")),
    ] {
        let want = format!(" {root}/{rel} -> {target}");
        assert!(
            list.lines()
                .any(|l| l.starts_with('l') && l.ends_with(&want)),
            "{want:?} missing from\n{list}"
        );
    }
    assert!(list.lines().any(|l| l.ends_with(" /init -> /sbin/init")));
    // Nothing of the build host came in through the links.
    assert!(!list.contains("secret"), "{list}");
    assert!(!list.contains(&format!("{root}/hostdir/")), "{list}");
}

#[test]
fn init_through_a_link_to_the_build_host_is_not_followed() {
    // `hosttool` names an executable of the build host; in the image there is none.
    let dir = tempfile::tempdir().unwrap();
    root_tree_with_absolute_links(dir.path());
    fs::write(
        dir.path().join("system.toml"),
        root_system("@root/hosttool"),
    )
    .unwrap();
    let run = build(
        &["image", "system.toml", "-o", "out", "--store", "store"],
        "022",
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert_eq!(outputs(&dir.path().join("out")), Vec::<String>::new());
}

/// Writes `files` files of 64 MiB of xorshift noise (incompressible, like packed data) under
/// `dir/root/data`, with an executable init beside them.
fn noise_root(dir: &Path, files: usize) {
    let data = dir.join("root/data");
    fs::create_dir_all(&data).unwrap();
    fs::create_dir_all(dir.join("root/bin")).unwrap();
    fs::write(dir.join("root/bin/init"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("root/bin/init"), fs::Permissions::from_mode(0o755)).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    for i in 0..files {
        let mut f = fs::File::create(data.join(format!("noise-{i}"))).unwrap();
        for _ in 0..64 {
            for word in block.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            std::io::Write::write_all(&mut f, &block).unwrap();
        }
    }
}

/// The builder's peak memory, children (mksquashfs) included, does not follow the image's
/// size: mksquashfs left to itself fills a quarter of the host's RAM with its caches (about
/// 90% of the image here), the bundle writer holds two batches.
#[test]
fn builder_memory_stays_bounded_on_a_large_image() {
    const FILES: usize = 12; // 768 MiB
    const BOUND_KIB: u64 = 256 << 10;
    let dir = tempfile::tempdir().unwrap();
    noise_root(dir.path(), FILES);
    fs::write(
        dir.path().join("system.toml"),
        root_system("@root/bin/init"),
    )
    .unwrap();
    let time = tool("time", "time")
        .current_dir(dir.path())
        .args(["-f", "%M", "-o", "peak-kib", common::BIN])
        .args(["image", "system.toml", "-o", "out", "--store", "store"])
        .args(["--zstd-level", "1"])
        .output()
        .unwrap();
    assert!(
        time.status.success(),
        "{}",
        String::from_utf8_lossy(&time.stderr)
    );
    let image = fs::metadata(dir.path().join("out/rooted-1.squashfs")).unwrap();
    assert!(image.len() > (FILES as u64) << 26, "{}", image.len());
    let peak: u64 = fs::read_to_string(dir.path().join("peak-kib"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        peak < BOUND_KIB,
        "peak RSS {peak} KiB for a {} byte image",
        image.len()
    );
}
