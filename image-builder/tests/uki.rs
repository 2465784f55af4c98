//! Unified kernel images: bit-for-bit reproducible, each section holding exactly its input,
//! a sane PE layout (read back here and by `objdump`), typed refusals with their exit codes
//! through the real `flipside-build`; the kernel part of `flipside-build image` (uki.efi, its
//! bundle and index, release.json's `kernel`, the kernel release from a bzImage header or
//! `release =`), published by `repo add` and downloaded by python-tuf; and Debian's real kernel.
//!
//! Needs systemd's EFI stub (Debian package `systemd-boot-efi`), `objdump` (`binutils`) and
//! python-tuf (`$FLIPSIDE_TEST_PYTHON`, default `python3`); `scripts/setup.sh` and
//! `scripts/test.sh` install them. The real-kernel tests download Debian's current kernel
//! package once into `<target>/tmp/uki-kernel/`; `$FLIPSIDE_UKI_INITRD` gives them a real
//! initramfs (else 2 MiB of incompressible bytes stand in).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use flipside_bundle::Limits;
use flipside_contract::release::{kernel_file_names, FileInfo, Release, UKI_FORMAT};
use flipside_image_builder::uki::{self, UkiParts, DEFAULT_STUB};
use flipside_image_builder::{bzimage, Error};
use flipside_test_support::sha256_hex;
use sha2::{Digest, Sha256};

mod common;

use common::BIN;
const CMDLINE: &str = "console=ttyS0 root=PARTLABEL=slot-a ro quiet";

fn stub() -> &'static Path {
    let stub = Path::new(DEFAULT_STUB);
    assert!(
        stub.is_file(),
        "{DEFAULT_STUB} is missing: install systemd-boot-efi (scripts/setup.sh does)"
    );
    stub
}

/// The inputs of a UKI in `dir`: a fake kernel and initrd (the stub does not look inside them
/// at assembly time) and an os-release.
struct Inputs {
    kernel: PathBuf,
    initrd: PathBuf,
    os_release: PathBuf,
}

fn kernel_bytes() -> Vec<u8> {
    // Not a multiple of the file alignment, so the padding is exercised.
    (0..300_001u32).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn initrd_bytes() -> Vec<u8> {
    b"070701 fake initramfs ".repeat(5_003)
}

const OS_RELEASE: &str = "NAME=\"appliance\"\nID=appliance\nIMAGE_VERSION=3\n";

fn inputs(dir: &Path) -> Inputs {
    fs::create_dir_all(dir).unwrap();
    let i = Inputs {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        os_release: dir.join("os-release"),
    };
    fs::write(&i.kernel, kernel_bytes()).unwrap();
    fs::write(&i.initrd, initrd_bytes()).unwrap();
    fs::write(&i.os_release, OS_RELEASE).unwrap();
    i
}

fn assemble(i: &Inputs, cmdline: &str, out: &Path) -> Result<uki::UkiInfo, uki::Error> {
    let parts = UkiParts {
        stub: stub(),
        kernel: &i.kernel,
        initrd: &i.initrd,
        cmdline,
        os_release: OS_RELEASE,
    };
    uki::assemble(&parts, out)
}

// A PE reader of its own, so that the tests do not trust the code under test.

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sect {
    name: String,
    virtual_size: u32,
    rva: u32,
    raw_size: u32,
    raw_offset: u32,
}

struct Pe {
    timestamp: u32,
    symbol_table: u32,
    section_alignment: u32,
    file_alignment: u32,
    size_of_image: u32,
    size_of_headers: u32,
    checksum: u32,
    checksum_at: usize,
    sections: Vec<Sect>,
}

fn read_pe(b: &[u8]) -> Pe {
    assert_eq!(&b[..2], b"MZ");
    let pe = u32_at(b, 0x3c) as usize;
    assert_eq!(&b[pe..pe + 4], b"PE\0\0");
    let fh = pe + 4;
    let oh = fh + 20;
    assert_eq!(u16_at(b, oh), 0x20b, "PE32+");
    let table = oh + u16_at(b, fh + 16) as usize;
    let sections = (0..u16_at(b, fh + 2) as usize)
        .map(|i| {
            let at = table + 40 * i;
            Sect {
                name: String::from_utf8_lossy(&b[at..at + 8])
                    .trim_end_matches('\0')
                    .into(),
                virtual_size: u32_at(b, at + 8),
                rva: u32_at(b, at + 12),
                raw_size: u32_at(b, at + 16),
                raw_offset: u32_at(b, at + 20),
            }
        })
        .collect();
    Pe {
        timestamp: u32_at(b, fh + 4),
        symbol_table: u32_at(b, fh + 8),
        section_alignment: u32_at(b, oh + 32),
        file_alignment: u32_at(b, oh + 36),
        size_of_image: u32_at(b, oh + 56),
        size_of_headers: u32_at(b, oh + 60),
        checksum: u32_at(b, oh + 64),
        checksum_at: oh + 64,
        sections,
    }
}

/// The section's contents: its first VirtualSize bytes.
fn contents<'a>(b: &'a [u8], pe: &Pe, name: &str) -> &'a [u8] {
    let s = pe
        .sections
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} section"));
    assert!(s.virtual_size <= s.raw_size, "{name}: data beyond the file");
    &b[s.raw_offset as usize..(s.raw_offset + s.virtual_size) as usize]
}

/// The layout invariants a firmware loader relies on.
fn assert_sane_layout(b: &[u8], pe: &Pe) {
    let mut by_rva = pe.sections.clone();
    by_rva.sort_by_key(|s| s.rva);
    for pair in by_rva.windows(2) {
        // Loaders map VirtualSize bytes (Debian's stub pads .sbat's raw data over .sdmagic).
        let end = pair[0].rva + pair[0].virtual_size;
        assert!(end <= pair[1].rva, "{pair:?} overlap in memory");
    }
    let mut by_offset: Vec<&Sect> = pe.sections.iter().filter(|s| s.raw_size > 0).collect();
    by_offset.sort_by_key(|s| s.raw_offset);
    assert!(by_offset[0].raw_offset >= pe.size_of_headers);
    for pair in by_offset.windows(2) {
        assert!(
            pair[0].raw_offset + pair[0].raw_size <= pair[1].raw_offset,
            "{pair:?} overlap in the file"
        );
    }
    for s in &pe.sections {
        // (Debian's stub itself places .sdmagic off its 0x200 section alignment.)
        assert_eq!(s.raw_offset % pe.file_alignment, 0, "{s:?}");
        assert!((s.raw_offset + s.raw_size) as usize <= b.len(), "{s:?}");
        assert!(s.rva + s.virtual_size <= pe.size_of_image, "{s:?}");
    }
    for name in [".osrel", ".cmdline", ".linux", ".initrd"] {
        let s = pe.sections.iter().find(|s| s.name == name).unwrap();
        assert_eq!(s.rva % 4096, 0, "{name} is page-aligned");
        assert_eq!(s.rva % pe.section_alignment, 0, "{name}");
    }
    assert_eq!(pe.size_of_image % pe.section_alignment, 0);
    assert_eq!(
        pe.checksum,
        uki::pe_checksum(b, pe.checksum_at),
        "PE checksum"
    );
}

#[test]
fn same_inputs_give_the_same_bytes_in_different_directories() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let a = inputs(&one.path().join("in"));
    let b = inputs(&two.path().join("some/where/else"));
    // Different file times must not matter.
    let status = Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .args([&b.kernel, &b.initrd])
        .status()
        .unwrap();
    assert!(status.success());
    let out_a = one.path().join("uki.efi");
    let out_b = two.path().join("other-name.efi");
    let info_a = assemble(&a, CMDLINE, &out_a).unwrap();
    let info_b = assemble(&b, CMDLINE, &out_b).unwrap();
    let bytes = fs::read(&out_a).unwrap();
    assert!(bytes == fs::read(&out_b).unwrap(), "two runs differ");
    assert_eq!(info_a, info_b);
    assert_eq!(info_a.sha256, sha256_hex(&bytes));
    assert_eq!(info_a.length, bytes.len() as u64);

    // The time stamp is the stub's, not the clock's; the checksum is right.
    let stub_bytes = fs::read(stub()).unwrap();
    let pe = read_pe(&bytes);
    assert_eq!(pe.timestamp, read_pe(&stub_bytes).timestamp);
    assert_eq!(pe.checksum, uki::pe_checksum(&bytes, pe.checksum_at));
    assert_ne!(pe.checksum, 0);

    // The CLI writes the same bytes as the library.
    let cli = one.path().join("cli.efi");
    let run = Command::new(BIN)
        .arg("uki")
        .arg("--kernel")
        .arg(&b.kernel)
        .arg("--initrd")
        .arg(&b.initrd)
        .args(["--cmdline", CMDLINE])
        .arg("--os-release")
        .arg(&b.os_release)
        .arg("-o")
        .arg(&cli)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(fs::read(&cli).unwrap() == bytes, "CLI and library differ");

    // A different command line changes the image (and nothing is cached by name).
    assert_ne!(
        assemble(&a, "console=ttyS1", &out_a).unwrap().sha256,
        info_a.sha256
    );
    // No temporary file is left beside the outputs.
    let mut names: Vec<String> = fs::read_dir(one.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["cli.efi", "in", "uki.efi"]);
}

#[test]
fn each_section_holds_its_input_in_a_sane_layout() {
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(dir.path());
    let out = dir.path().join("uki.efi");
    let info = assemble(&i, CMDLINE, &out).unwrap();
    let bytes = fs::read(&out).unwrap();
    let pe = read_pe(&bytes);
    assert_sane_layout(&bytes, &pe);

    assert_eq!(contents(&bytes, &pe, ".osrel"), OS_RELEASE.as_bytes());
    assert_eq!(
        contents(&bytes, &pe, ".cmdline"),
        format!("{CMDLINE}\0").as_bytes()
    );
    assert_eq!(contents(&bytes, &pe, ".linux"), &kernel_bytes()[..]);
    assert_eq!(contents(&bytes, &pe, ".initrd"), &initrd_bytes()[..]);
    let names: Vec<&str> = pe.sections.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names[names.len() - 4..],
        [".osrel", ".cmdline", ".linux", ".initrd"]
    );

    // The stub's own sections are there with their bytes unchanged.
    let stub_bytes = fs::read(stub()).unwrap();
    let stub_pe = read_pe(&stub_bytes);
    assert_eq!(pe.sections[..stub_pe.sections.len()], stub_pe.sections[..]);
    for s in &stub_pe.sections {
        assert_eq!(
            contents(&bytes, &pe, &s.name),
            contents(&stub_bytes, &stub_pe, &s.name),
            "{}",
            s.name
        );
    }
    // Debian's stub carries a COFF symbol table after its sections; the UKI does not.
    assert_eq!(pe.symbol_table, 0);

    // What assemble() reports is what is in the file.
    for (reported, read) in info.sections.iter().zip(&pe.sections) {
        assert_eq!(
            (reported.name.as_str(), reported.rva, reported.size),
            (read.name.as_str(), read.rva, read.virtual_size)
        );
        assert_eq!(
            reported.sha256,
            sha256_hex(contents(&bytes, &pe, &read.name)),
            "{}",
            read.name
        );
    }

    // binutils reads the same sections at the same places.
    let objdump = Command::new("objdump")
        .arg("-h")
        .arg(&out)
        .output()
        .expect("objdump is missing: install binutils (scripts/setup.sh does)");
    assert!(objdump.status.success());
    let text = String::from_utf8(objdump.stdout).unwrap();
    assert!(text.contains("file format pei-x86-64"), "{text}");
    for s in &pe.sections {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(s.name.as_str()))
            .unwrap_or_else(|| panic!("objdump does not list {}: {text}", s.name));
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |v: &str| u64::from_str_radix(v, 16).unwrap();
        assert_eq!(hex(f[2]), s.virtual_size as u64, "{line}");
        assert_eq!(hex(f[3]), s.rva as u64, "{line}"); // the stub's image base is 0
        assert_eq!(hex(f[5]), s.raw_offset as u64, "{line}");
    }
}

#[test]
fn the_checksum_of_debians_stub_is_the_one_its_linker_wrote() {
    let bytes = fs::read(stub()).unwrap();
    let pe = read_pe(&bytes);
    assert_ne!(pe.checksum, 0);
    assert_eq!(uki::pe_checksum(&bytes, pe.checksum_at), pe.checksum);
}

/// Runs `flipside-build` under `umask` in `cwd`.
fn run(args: &[&str], umask: &str, cwd: &Path) -> Output {
    common::build_with_umask(args, umask, cwd)
}

fn uki_args<'a>(stub: &'a str, kernel: &'a str) -> Vec<&'a str> {
    vec![
        "uki",
        "--stub",
        stub,
        "--kernel",
        kernel,
        "--initrd",
        "initrd.img",
        "--cmdline",
        CMDLINE,
        "--os-release",
        "os-release",
        "-o",
        "out/uki.efi",
    ]
}

#[test]
fn the_cli_refuses_missing_or_bad_inputs_with_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    fs::create_dir(dir.path().join("out")).unwrap();
    fs::write(dir.path().join("not-a-stub"), b"MZ but nothing else").unwrap();
    let cases: [(Vec<&str>, i32, &str); 5] = [
        (
            uki_args("/nonexistent/linuxx64.efi.stub", "vmlinuz"),
            9,
            "install systemd-boot-efi",
        ),
        (
            uki_args(DEFAULT_STUB, "no-such-vmlinuz"),
            3,
            "kernel no-such-vmlinuz does not exist",
        ),
        (
            uki_args("not-a-stub", "vmlinuz"),
            3,
            "not a usable EFI stub",
        ),
        (
            uki_args(DEFAULT_STUB, "vmlinuz")
                .into_iter()
                .map(|a| if a == CMDLINE { "a\tb" } else { a })
                .collect(),
            3,
            "printable ASCII",
        ),
        (
            uki_args(DEFAULT_STUB, "vmlinuz")
                .into_iter()
                .map(|a| if a == "os-release" { "vmlinuz" } else { a })
                .collect(),
            3,
            "os-release",
        ),
    ];
    stub();
    for (args, code, message) in cases {
        let out = run(&args, "022", dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "expected {message:?} in {stderr}");
        assert_eq!(
            fs::read_dir(dir.path().join("out")).unwrap().count(),
            0,
            "{args:?} left a file"
        );
    }

    // The library gives the typed variants behind those codes.
    let i = inputs(dir.path());
    let missing_stub = uki::assemble(
        &UkiParts {
            stub: Path::new("/nonexistent/stub"),
            kernel: &i.kernel,
            initrd: &i.initrd,
            cmdline: CMDLINE,
            os_release: OS_RELEASE,
        },
        &dir.path().join("x.efi"),
    )
    .unwrap_err();
    assert!(matches!(missing_stub, uki::Error::StubMissing { .. }));
    assert_eq!(Error::from(missing_stub).class().exit_code(), 9);
    let missing_kernel = uki::assemble(
        &UkiParts {
            stub: stub(),
            kernel: &dir.path().join("nope"),
            initrd: &i.initrd,
            cmdline: CMDLINE,
            os_release: OS_RELEASE,
        },
        &dir.path().join("x.efi"),
    )
    .unwrap_err();
    assert!(matches!(
        missing_kernel,
        uki::Error::InputMissing { what: "kernel", .. }
    ));
    assert_eq!(Error::from(missing_kernel).class().exit_code(), 3);
}

#[test]
fn the_uki_gets_the_mode_the_umask_gives() {
    for (umask, want) in [("022", 0o644), ("027", 0o640)] {
        let dir = tempfile::tempdir().unwrap();
        inputs(dir.path());
        fs::create_dir(dir.path().join("out")).unwrap();
        let out = run(&uki_args(DEFAULT_STUB, "vmlinuz"), umask, dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mode = fs::metadata(dir.path().join("out/uki.efi"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, want, "umask {umask}");
    }
}

// `flipside-build image` with a [kernel] section.

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/appliance")
}

/// The example appliance plus a root holding the kernel, the initrd from the build host.
fn appliance_with_kernel(dir: &Path, kernel_section: &str) -> PathBuf {
    let status = Command::new("cp")
        .arg("-a")
        .arg(example_dir())
        .arg(dir.join("appliance"))
        .status()
        .unwrap();
    assert!(status.success());
    inputs(&dir.join("appliance"));
    let toml = dir.join("appliance/system.toml");
    let text = fs::read_to_string(&toml).unwrap();
    let text = format!(
        "{text}\n[[root]]\nname = \"linux\"\nfiles = {{ \"boot/vmlinuz\" = \"vmlinuz\" }}\n\n{kernel_section}"
    );
    fs::write(&toml, text).unwrap();
    toml
}

/// The fake kernel is no bzImage, so its release is given.
const KERNEL_SECTION: &str = "[kernel]\nimage = \"@linux/boot/vmlinuz\"\n\
    initrd = \"initrd.img\"\ncmdline = \"console=ttyS0 ro\"\nrelease = \"6.1.0-test\"\n";

/// A synthetic x86 bzImage: boot sector signature, setup header magic, boot protocol 2.15
/// and a version string at 0x200 + 0x1000, then filler.
fn synthetic_bzimage(version: &str) -> Vec<u8> {
    let mut b: Vec<u8> = (0..200_003u32).map(|i| (i * 13 + i / 509) as u8).collect();
    b[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x20e..0x210].copy_from_slice(&0x1000u16.to_le_bytes());
    let at = 0x1200;
    b[at..at + version.len()].copy_from_slice(version.as_bytes());
    b[at + version.len()] = 0;
    b
}

fn build_image(dir: &Path) -> Output {
    run(
        &[
            "image",
            "appliance/system.toml",
            "-o",
            "out",
            "--store",
            "store",
        ],
        "022",
        dir,
    )
}

/// Reads release.json of a build.
fn release_of(out: &Path) -> Release {
    let release: Release =
        serde_json::from_slice(&fs::read(out.join("release.json")).unwrap()).unwrap();
    release.validate().unwrap();
    release
}

/// Length and sha256 of a file as release.json must give them.
fn assert_describes(out: &Path, info: &FileInfo) {
    let bytes = fs::read(out.join(&info.name)).unwrap();
    assert_eq!(info.length, bytes.len() as u64, "{}", info.name);
    assert_eq!(info.sha256, sha256_hex(&bytes), "{}", info.name);
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
            let name = e.file_name().into_string().unwrap();
            (name, fs::read(e.path()).unwrap(), mode)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_image_command_writes_a_reproducible_kernel_part_beside_the_image() {
    stub();
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    for dir in [one.path(), two.path()] {
        appliance_with_kernel(dir, KERNEL_SECTION);
        let out = build_image(dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("kernel 6.1.0-test: uki.efi "), "{stdout}");
    }
    // Two builds in different directories: every output file is byte-identical.
    let out = one.path().join("out");
    let files = listing(&out);
    assert!(
        files == listing(&two.path().join("out")),
        "two builds differ"
    );
    let names: Vec<&str> = files.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "appliance-1.bundle",
            "appliance-1.index",
            "appliance-1.kernel.bundle",
            "appliance-1.kernel.index",
            "appliance-1.squashfs",
            "release.json",
            "uki.efi",
        ]
    );
    for (name, _, mode) in &files {
        assert_eq!(*mode, 0o644, "{name} under umask 022");
    }

    let bytes = fs::read(out.join("uki.efi")).unwrap();
    let pe = read_pe(&bytes);
    assert_sane_layout(&bytes, &pe);
    assert_eq!(contents(&bytes, &pe, ".linux"), &kernel_bytes()[..]);
    assert_eq!(contents(&bytes, &pe, ".initrd"), &initrd_bytes()[..]);
    assert_eq!(contents(&bytes, &pe, ".cmdline"), b"console=ttyS0 ro\0");
    let osrel = String::from_utf8(contents(&bytes, &pe, ".osrel").to_vec()).unwrap();
    assert_eq!(
        osrel,
        "NAME=\"appliance\"\nID=appliance\nIMAGE_ID=appliance\nVERSION=\"1.0.0\"\n\
         VERSION_ID=1.0.0\nIMAGE_VERSION=1\nPRETTY_NAME=\"appliance 1.0.0\"\n"
    );

    // release.json's kernel part describes the files exactly.
    let release = release_of(&out);
    let kernel = release
        .kernel
        .as_ref()
        .expect("release.json has no kernel part");
    assert_eq!(kernel.kernel_release, "6.1.0-test");
    assert_eq!(kernel.image.filesystem, UKI_FORMAT);
    assert_eq!(kernel.image.length, bytes.len() as u64);
    assert_eq!(kernel.image.sha256, sha256_hex(&bytes));
    let (bundle_name, index_name) = kernel_file_names("appliance", 1);
    assert_eq!(
        (&kernel.bundle.name, &kernel.index.name),
        (&bundle_name, &index_name)
    );
    for info in [
        &kernel.bundle,
        &kernel.index,
        &release.bundle,
        &release.index,
    ] {
        assert_describes(&out, info);
    }
    assert_eq!(release.files().len(), 4);

    // The kernel bundle decodes, through the bundle crate's reader, to uki.efi bit for bit;
    // it was cut with the same parameters as the root's.
    let index = flipside_bundle::read_index(&out.join(&index_name), &Limits::default()).unwrap();
    let root_index =
        flipside_bundle::read_index(&out.join(&release.index.name), &Limits::default()).unwrap();
    assert_eq!(index.image_length(), bytes.len() as u64);
    assert_eq!(hex::encode(index.image_sha256()), kernel.image.sha256);
    assert_eq!(index.chunker(), root_index.chunker());
    assert_eq!(index.zstd_level(), root_index.zstd_level());
    let mut decoded = Vec::new();
    flipside_bundle::read_bundle(&out.join(&bundle_name), &index, &mut decoded).unwrap();
    assert!(
        decoded == bytes,
        "the kernel bundle does not decode to uki.efi"
    );
}

#[test]
fn the_release_comes_from_a_bzimage_header_or_release_and_must_agree() {
    stub();
    let dir = tempfile::tempdir().unwrap();
    appliance_with_kernel(
        dir.path(),
        &KERNEL_SECTION.replace("release = \"6.1.0-test\"\n", ""),
    );
    let vmlinuz = synthetic_bzimage("6.6.6-synthetic (builder@example) #1 SMP PREEMPT_DYNAMIC");
    fs::write(dir.path().join("appliance/vmlinuz"), &vmlinuz).unwrap();
    let out = build_image(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let release = release_of(&dir.path().join("out"));
    assert_eq!(release.kernel.unwrap().kernel_release, "6.6.6-synthetic");

    // The same with `release =` agreeing gives the same release.json.
    let toml = dir.path().join("appliance/system.toml");
    let text = fs::read_to_string(&toml).unwrap();
    fs::write(&toml, format!("{text}release = \"6.6.6-synthetic\"\n")).unwrap();
    let before = listing(&dir.path().join("out"));
    let out = build_image(dir.path());
    assert!(out.status.success());
    assert!(listing(&dir.path().join("out")) == before);

    // Disagreeing: refused with both releases named, the previous build left as it was.
    fs::write(&toml, format!("{text}release = \"6.6.7-synthetic\"\n")).unwrap();
    let out = build_image(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "kernel.release \"6.6.7-synthetic\" disagrees with kernel.image @linux/boot/vmlinuz, \
             whose setup header says \"6.6.6-synthetic\"; correct `release =` or remove it"
        ),
        "{stderr}"
    );
    assert!(
        listing(&dir.path().join("out")) == before,
        "a refused build changed the output"
    );
}

#[test]
fn a_built_kernel_part_is_published_and_python_tuf_downloads_all_four_targets() {
    stub();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    appliance_with_kernel(d, KERNEL_SECTION);
    let out = build_image(d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [
        &["repo", "init", "--repo", "repo", "--keys", "keys"][..],
        &["repo", "add", "--repo", "repo", "--keys", "keys", "out"],
    ] {
        let out = run(args, "022", d);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let python = std::env::var("FLIPSIDE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../repository/tests/python/client.py");
    let mut cmd = Command::new(&python);
    cmd.arg(script)
        .args([
            "--repo",
            "repo",
            "--root",
            "repo/metadata/1.root.json",
            "--cache",
            "cache",
        ])
        .current_dir(d);
    let kinds = [
        ("appliance-1.bundle", "bundle"),
        ("appliance-1.index", "index"),
        ("appliance-1.kernel.bundle", "kernel-bundle"),
        ("appliance-1.kernel.index", "kernel-index"),
    ];
    for (name, kind) in kinds {
        cmd.arg("--download").arg(format!("{name}=out/{name}"));
        cmd.arg("--kind").arg(format!("{name}={kind}"));
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run scripts/test.sh"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python-tuf: {text}");
    for (name, kind) in kinds {
        assert!(text.contains(&format!("downloaded {name}: ")), "{text}");
        assert!(
            text.contains(&format!(
                "custom {name}: kind {kind}, kernel 6.1.0-test \
                 appliance-1.kernel.bundle appliance-1.kernel.index"
            )),
            "{text}"
        );
    }
    // Publishing the same build again changes nothing.
    let metadata = fs::read_dir(d.join("repo/metadata")).unwrap().count();
    let out = run(
        &["repo", "add", "--repo", "repo", "--keys", "keys", "out"],
        "022",
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_dir(d.join("repo/metadata")).unwrap().count(),
        metadata
    );
}

#[test]
fn the_image_command_refuses_a_missing_kernel_or_stub_and_leaves_nothing() {
    for (section, code, message) in [
        (
            KERNEL_SECTION.replace("@linux/boot/vmlinuz", "@linux/boot/nope"),
            3,
            "kernel.image \"@linux/boot/nope\"",
        ),
        (
            KERNEL_SECTION.replace("initrd.img", "no-initrd.img"),
            3,
            "initrd",
        ),
        (
            format!("{KERNEL_SECTION}stub = \"/nonexistent/linuxx64.efi.stub\"\n"),
            9,
            "install systemd-boot-efi",
        ),
        (
            KERNEL_SECTION.replace("release = \"6.1.0-test\"\n", ""),
            3,
            "names no kernel release (it is not an x86 bzImage with a version string); \
             add `release = \"...\"` to [kernel]",
        ),
        (
            KERNEL_SECTION.replace("6.1.0-test", "6.1 test"),
            3,
            "kernel.release: invalid kernel release",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        appliance_with_kernel(dir.path(), &section);
        let out = build_image(dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{section}: {stderr}");
        assert!(stderr.contains(message), "expected {message:?} in {stderr}");
        let left: Vec<_> = fs::read_dir(dir.path().join("out"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "a refused build left {left:?}");
    }
}

/// `verity =` and the Secure Boot key: the image ends with its dm-verity tree (veritysetup
/// verifies it), the UKI's `.cmdline` names the root hash after the configured command line,
/// `uki.efi` is signed by the db key (sbverify), and the image and the root hash are the same
/// in a second build (the signature alone carries a time).
#[test]
fn verity_puts_the_tree_on_the_image_and_its_root_hash_in_the_signed_uki() {
    stub();
    let mut words = Vec::new();
    let mut images = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        appliance_with_kernel(d, &format!("{KERNEL_SECTION}verity = \"panic\"\n"));
        let keys = run(&["secure-boot-keys", "keys"], "022", d);
        assert!(keys.status.success(), "{keys:?}");
        let out = run(
            &[
                "image",
                "appliance/system.toml",
                "-o",
                "out",
                "--store",
                "store",
                "--secure-boot-key",
                "keys/db.key",
                "--secure-boot-cert",
                "keys/db.crt",
            ],
            "022",
            d,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out_dir = d.join("out");
        let release = release_of(&out_dir);
        let image = out_dir.join("appliance-1.squashfs");
        let bytes = fs::read(&image).unwrap();
        assert_eq!(release.image.length, bytes.len() as u64);
        assert_eq!(
            release.image.sha256,
            sha256_hex(&bytes),
            "the tree is part of the image"
        );

        let uki = fs::read(out_dir.join("uki.efi")).unwrap();
        let cmdline =
            String::from_utf8(contents(&uki, &read_pe(&uki), ".cmdline").to_vec()).unwrap();
        let cmdline = cmdline.trim_end_matches('\0');
        assert!(
            cmdline.starts_with("console=ttyS0 ro flipside.verity=sha256:"),
            "{cmdline}"
        );
        let p = flipside_verity::VerityParams::from_cmdline(cmdline)
            .unwrap()
            .unwrap();
        assert_eq!(p.on_corruption, flipside_verity::OnCorruption::Panic);
        assert!(p.data_len() < bytes.len() as u64);
        let verify = Command::new("veritysetup")
            .args(["verify", "--no-superblock", "--hash=sha256", "--format=1"])
            .args(["--data-block-size=4096", "--hash-block-size=4096"])
            .arg(format!("--data-blocks={}", p.data_blocks))
            .arg(format!("--hash-offset={}", p.data_len()))
            .arg(format!("--salt={}", hex::encode(p.salt)))
            .arg(&image)
            .arg(&image)
            .arg(hex::encode(p.root))
            .status()
            .expect("veritysetup (cryptsetup-bin)");
        assert!(verify.success());
        let sbverify = Command::new("sbverify")
            .arg("--cert")
            .arg(d.join("keys/db.crt"))
            .arg(out_dir.join("uki.efi"))
            .output()
            .expect("sbverify (sbsigntool)");
        assert!(sbverify.status.success(), "{sbverify:?}");
        // The kernel part describes the signed UKI.
        let kernel = release.kernel.unwrap();
        assert_eq!(kernel.image.sha256, sha256_hex(&uki));
        words.push(cmdline.to_string());
        images.push(bytes);
    }
    assert_eq!(words[0], words[1]);
    assert!(
        images[0] == images[1],
        "the image with its tree is reproducible"
    );

    let dir = tempfile::tempdir().unwrap();
    appliance_with_kernel(dir.path(), &format!("{KERNEL_SECTION}verity = \"eio\"\n"));
    let out = build_image(dir.path());
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kernel.verity"));
}

// Debian's real kernel.

/// Debian's current amd64 kernel (`vmlinuz`): `$FLIPSIDE_UKI_KERNEL`, or the package that
/// `linux-image-amd64` depends on, downloaded once into `<target>/tmp/uki-kernel/`.
fn debian_kernel() -> PathBuf {
    if let Some(path) = std::env::var_os("FLIPSIDE_UKI_KERNEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let depends = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .expect("apt-cache is missing: this test needs Debian's apt");
    let text = String::from_utf8_lossy(&depends.stdout);
    let package = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .unwrap_or_else(|| panic!("apt knows no linux-image-amd64 (run apt-get update): {text}"))
        .to_string();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("uki-kernel");
    let vmlinuz = cache.join(format!("{package}.vmlinuz"));
    if vmlinuz.is_file() {
        return vmlinuz;
    }
    fs::create_dir_all(&cache).unwrap();
    let work = tempfile::tempdir_in(&cache).unwrap();
    let status = Command::new("apt-get")
        .args(["-q", "-o", "APT::Sandbox::User=root", "download", &package])
        .current_dir(work.path())
        .status()
        .unwrap();
    assert!(status.success(), "apt-get download {package} failed");
    let deb = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download left no .deb");
    let tree = work.path().join("tree");
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(status.success(), "dpkg -x {} failed", deb.display());
    let found = fs::read_dir(tree.join("boot"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .expect("the kernel package has no /boot/vmlinuz-*");
    fs::rename(found, &vmlinuz).unwrap();
    vmlinuz
}

#[test]
fn debians_real_kernel_becomes_a_reproducible_uki() {
    stub();
    let kernel = debian_kernel();
    let dir = tempfile::tempdir().unwrap();
    let i = Inputs {
        kernel: kernel.clone(),
        initrd: dir.path().join("initrd.img"),
        os_release: dir.path().join("os-release"),
    };
    fs::write(&i.initrd, initrd_bytes()).unwrap();
    let mut infos = Vec::new();
    for name in ["one.efi", "two.efi"] {
        let started = Instant::now();
        infos.push(assemble(&i, CMDLINE, &dir.path().join(name)).unwrap());
        eprintln!(
            "{}: {} bytes in {:?} (kernel {})",
            name,
            infos.last().unwrap().length,
            started.elapsed(),
            kernel.display()
        );
    }
    assert_eq!(infos[0], infos[1]);
    let bytes = fs::read(dir.path().join("one.efi")).unwrap();
    assert!(bytes == fs::read(dir.path().join("two.efi")).unwrap());
    let pe = read_pe(&bytes);
    assert_sane_layout(&bytes, &pe);
    let linux = contents(&bytes, &pe, ".linux");
    assert_eq!(linux, &fs::read(&kernel).unwrap()[..]);
    // A bzImage: the setup header's magic, and an EFI handover-capable kernel.
    assert_eq!(&linux[0x202..0x206], b"HdrS");
    assert_eq!(u16_at(linux, 0x1fe), 0xaa55);
}

#[test]
fn debians_real_kernel_names_its_release() {
    let kernel = debian_kernel();
    let bytes = fs::read(&kernel).unwrap();
    let release = bzimage::kernel_release(&bytes[..bzimage::HEADER_WINDOW.min(bytes.len())])
        .unwrap()
        .expect("Debian's vmlinuz has a version string in its setup header");
    // The whole file reads the same as the window the builder reads.
    assert_eq!(bzimage::kernel_release(&bytes), Ok(Some(release.clone())));
    let name = kernel.file_name().unwrap().to_string_lossy().into_owned();
    match name
        .strip_prefix("linux-image-")
        .and_then(|n| n.strip_suffix(".vmlinuz"))
    {
        // The package is named after the release: linux-image-6.1.0-57-amd64.
        Some(from_package) => assert_eq!(release, from_package),
        None => assert!(
            release.starts_with(|c: char| c.is_ascii_digit()),
            "{release}"
        ),
    }
    eprintln!("{}: kernel release {release}", kernel.display());
}

/// `$FLIPSIDE_UKI_INITRD` (e.g. the QEMU harness's `target/qemu-assets/initramfs.cpio.zst`),
/// else 2 MiB of incompressible bytes, about a compressed initramfs's size.
fn real_sized_initrd(dir: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("FLIPSIDE_UKI_INITRD").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let path = dir.join("initrd.img");
    let mut bytes = Vec::with_capacity(2 << 20);
    let mut block = Sha256::digest(b"initrd");
    while bytes.len() < 2 << 20 {
        bytes.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn debians_real_kernel_becomes_a_kernel_part() {
    stub();
    let kernel = debian_kernel();
    let expected_release = {
        let bytes = fs::read(&kernel).unwrap();
        bzimage::kernel_release(&bytes).unwrap().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    // No `release =`: the bzImage's header gives it.
    appliance_with_kernel(
        dir.path(),
        &KERNEL_SECTION.replace("release = \"6.1.0-test\"\n", ""),
    );
    fs::copy(&kernel, dir.path().join("appliance/vmlinuz")).unwrap();
    let initrd = real_sized_initrd(dir.path());
    fs::copy(&initrd, dir.path().join("appliance/initrd.img")).unwrap();
    let started = Instant::now();
    let out = build_image(dir.path());
    let whole = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out_dir = dir.path().join("out");
    let release = release_of(&out_dir);
    let part = release.kernel.as_ref().unwrap();
    assert_eq!(part.kernel_release, expected_release);
    let uki = fs::read(out_dir.join("uki.efi")).unwrap();
    assert_eq!(part.image.sha256, sha256_hex(&uki));
    let index =
        flipside_bundle::read_index(&out_dir.join(&part.index.name), &Limits::default()).unwrap();
    let mut decoded = Vec::new();
    flipside_bundle::read_bundle(&out_dir.join(&part.bundle.name), &index, &mut decoded).unwrap();
    assert!(
        decoded == uki,
        "the kernel bundle does not decode to uki.efi"
    );

    // The kernel part's own cost: assembling the UKI, then cutting it as `image` does.
    let i = Inputs {
        kernel: kernel.clone(),
        initrd,
        os_release: dir.path().join("unused"),
    };
    let started = Instant::now();
    let info = assemble(&i, "console=ttyS0 ro", &dir.path().join("uki.efi")).unwrap();
    let assembled = started.elapsed();
    let started = Instant::now();
    let params = flipside_bundle::BundleParams::default();
    let again =
        flipside_bundle::write_bundle(&dir.path().join("uki.efi"), &dir.path().join("b"), &params)
            .unwrap();
    let bundled = started.elapsed();
    assert_eq!(again.image_length(), info.length);
    eprintln!(
        "kernel part of {}: UKI {} bytes assembled in {assembled:?}, bundle {} bytes ({} chunks, \
         zstd {}) in {bundled:?}; whole `flipside-build image` {whole:?}",
        kernel.display(),
        info.length,
        fs::metadata(dir.path().join("b")).unwrap().len(),
        again.len(),
        params.zstd_level,
    );
}
