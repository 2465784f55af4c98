//! Unified kernel images (UKI): systemd's EFI stub with the kernel, its initramfs, the kernel
//! command line and an os-release text added as PE sections, one EFI program that the boot
//! manager loads from a slot's kernel partition.
//!
//! Sections added, in this order, after the stub's own:
//!
//! | section    | contents                                           |
//! |------------|----------------------------------------------------|
//! | `.osrel`   | os-release text ([`os_release`] for a system)      |
//! | `.cmdline` | the kernel command line, NUL-terminated            |
//! | `.linux`   | the kernel (bzImage / vmlinuz) as given            |
//! | `.initrd`  | the initramfs as given                             |
//!
//! The PE is written here rather than by `objcopy`, so the bytes depend on the inputs only
//! ([`build_pe`] is a pure function of the stub's bytes and the sections):
//! - the stub's bytes up to the end of its last section are kept as they are, with its time
//!   stamp (0 in Debian's stub); a COFF symbol table after the sections (Debian's stub has
//!   one; images should not) is dropped and its header fields zeroed;
//! - each new section's data starts at the next `FileAlignment` offset of the file and is
//!   padded with zeros to it; its virtual address is the next multiple of the section
//!   alignment, at least 4 KiB (page-aligned sections suit firmware that maps image sections
//!   with page-granular permissions), after the end of the previous section; its
//!   `VirtualSize` is the exact data length, which is what systemd-stub reads;
//! - `NumberOfSections`, `SizeOfInitializedData`, `SizeOfImage` and the PE `CheckSum` are
//!   recomputed.
//!
//! A signed stub (non-empty certificate table) is refused: sign the assembled UKI instead.
//! Inputs are read into memory (the kernel and initramfs of an appliance are tens of MB).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Class;

/// systemd's x86-64 EFI stub as Debian installs it (package [`STUB_PACKAGE`]).
pub const DEFAULT_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// The Debian package that ships [`DEFAULT_STUB`].
pub const STUB_PACKAGE: &str = "systemd-boot-efi";
/// Longest command line accepted, in bytes: x86 Linux takes 2048 including the NUL.
pub const CMDLINE_MAX: usize = 2047;

/// What goes into a UKI.
#[derive(Debug, Clone, Copy)]
pub struct UkiParts<'a> {
    /// systemd's EFI stub, e.g. [`DEFAULT_STUB`].
    pub stub: &'a Path,
    /// The kernel image (bzImage). Its format is not checked here.
    pub kernel: &'a Path,
    /// The initramfs.
    pub initrd: &'a Path,
    /// The kernel command line, without the NUL ([`check_cmdline`]).
    pub cmdline: &'a str,
    /// os-release text (`KEY=value` lines), e.g. from [`os_release`].
    pub os_release: &'a str,
}

/// What [`assemble`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UkiInfo {
    /// Length of the UKI in bytes.
    pub length: u64,
    /// Lowercase hex sha256 of the whole UKI.
    pub sha256: String,
    /// Every section of the UKI, the stub's and the added ones, in table order.
    pub sections: Vec<SectionInfo>,
}

/// One section of the UKI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionInfo {
    pub name: String,
    /// Address relative to the image base where the firmware loads it.
    pub rva: u32,
    /// `VirtualSize`: the bytes that are the section's contents.
    pub size: u32,
    /// Where its data starts in the file.
    pub file_offset: u32,
    /// Lowercase hex sha256 of its contents in the file: the first `size` bytes of its data
    /// (fewer if the file holds fewer; the loader fills the rest with zeros).
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("EFI stub {path} not found ({source}); install {STUB_PACKAGE} (apt-get install {STUB_PACKAGE}) or point the stub path at systemd's linuxx64.efi.stub")]
    StubMissing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable EFI stub: {why}; use systemd's unsigned linuxx64.efi.stub from {STUB_PACKAGE}")]
    StubInvalid { path: PathBuf, why: String },
    #[error("{what} {path} does not exist; check the {what} path")]
    InputMissing { what: &'static str, path: PathBuf },
    #[error("{what} {path} is empty; give the real {what}")]
    InputEmpty { what: &'static str, path: PathBuf },
    #[error("kernel command line {cmdline:?}: {why}")]
    Cmdline { cmdline: String, why: String },
    #[error("os-release text: {why}")]
    OsRelease { why: String },
    #[error("the UKI would be larger than the 4 GiB a PE image can address ({section} does not fit); use a smaller kernel or initramfs")]
    TooLarge { section: &'static str },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::StubMissing { .. } => Class::Tool,
            Error::StubInvalid { .. }
            | Error::InputMissing { .. }
            | Error::InputEmpty { .. }
            | Error::Cmdline { .. }
            | Error::OsRelease { .. }
            | Error::TooLarge { .. } => Class::Input,
            Error::Io { .. } => Class::Io,
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Builds the UKI from `parts` and writes it to `out` atomically (a temporary file in the
/// same directory, fsync, rename, fsync of the directory). Same inputs, same bytes.
pub fn assemble(parts: &UkiParts<'_>, out: &Path) -> Result<UkiInfo, Error> {
    check_cmdline(parts.cmdline)?;
    check_os_release(parts.os_release)?;
    let stub = fs::read(parts.stub).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::StubMissing {
            path: parts.stub.to_path_buf(),
            source,
        },
        _ => Error::Io {
            action: "read the EFI stub",
            path: parts.stub.to_path_buf(),
            source,
        },
    })?;
    let kernel = read_input("kernel", parts.kernel)?;
    let initrd = read_input("initrd", parts.initrd)?;
    let mut cmdline = parts.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    let added = [
        (".osrel", parts.os_release.as_bytes()),
        (".cmdline", &cmdline[..]),
        (".linux", &kernel[..]),
        (".initrd", &initrd[..]),
    ];
    let image = build_pe(&stub, &added).map_err(|problem| match problem {
        Problem::Stub(why) => Error::StubInvalid {
            path: parts.stub.to_path_buf(),
            why,
        },
        Problem::TooLarge(section) => Error::TooLarge { section },
    })?;
    let info = describe(&image).map_err(|why| Error::StubInvalid {
        path: parts.stub.to_path_buf(),
        why: format!("the assembled image does not parse back ({why})"),
    })?;
    write_atomic(out, &image)?;
    Ok(info)
}

fn read_input(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    let bytes = fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::InputMissing {
            what,
            path: path.to_path_buf(),
        },
        _ => Error::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        },
    })?;
    if bytes.is_empty() {
        return Err(Error::InputEmpty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// A kernel command line the stub can carry: printable ASCII and spaces, at most
/// [`CMDLINE_MAX`] bytes, not empty.
pub fn check_cmdline(cmdline: &str) -> Result<(), Error> {
    let bad = |why: String| {
        Err(Error::Cmdline {
            cmdline: cmdline.to_string(),
            why,
        })
    };
    if cmdline.trim().is_empty() {
        return bad("is empty; give at least the root= the initramfs needs".into());
    }
    if cmdline.len() > CMDLINE_MAX {
        return bad(format!(
            "is {} bytes; the kernel takes at most {CMDLINE_MAX}",
            cmdline.len()
        ));
    }
    if let Some(c) = cmdline
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' '))
    {
        return bad(format!(
            "contains {c:?}; only printable ASCII and spaces are allowed"
        ));
    }
    Ok(())
}

/// os-release text: `KEY=value` lines (comments and blank lines allowed), UTF-8 without NUL.
fn check_os_release(text: &str) -> Result<(), Error> {
    let bad = |why: String| Err(Error::OsRelease { why });
    if text.contains('\0') {
        return bad("contains a NUL byte".into());
    }
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split('=').next().unwrap_or_default();
        if !line.contains('=')
            || key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return bad(format!("line {line:?} is not KEY=value"));
        }
    }
    if !text.lines().any(|l| l.trim_start().starts_with("ID=")) {
        return bad("has no ID= line".into());
    }
    Ok(())
}

/// The `.osrel` text of a system:
///
/// - `NAME`: the system name; `ID` and `IMAGE_ID`: the name in lower case, other characters
///   than `a-z0-9._-` as `_` (the os-release rules for identifiers);
/// - `VERSION`: the display version as written; `VERSION_ID`: the display version made an
///   identifier the same way;
/// - `IMAGE_VERSION`: the monotonic release number, the one devices compare;
/// - `PRETTY_NAME`: `"<name> <display version>"`.
pub fn os_release(name: &str, version: u64, display_version: &str) -> String {
    let id = identifier(name);
    format!(
        "NAME={}\nID={id}\nIMAGE_ID={id}\nVERSION={}\nVERSION_ID={}\nIMAGE_VERSION={version}\nPRETTY_NAME={}\n",
        quote(name),
        quote(display_version),
        identifier(display_version),
        quote(&format!("{name} {display_version}")),
    )
}

fn identifier(text: &str) -> String {
    text.chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect()
}

/// Double-quoted as os-release (shell syntax) wants, escaping `\ " $ \``.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Why [`build_pe`] refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// The stub is not a PE32+ image this module can extend.
    Stub(String),
    /// The named section would push the image past 4 GiB.
    TooLarge(&'static str),
}

const SECTION_HEADER: usize = 40;
/// IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ
const DATA_READ_ONLY: u32 = 0x4000_0040;
const PAGE: u64 = 4096;

// Offsets in the COFF file header (after "PE\0\0").
const FH_SECTIONS: usize = 2;
const FH_SYMBOL_TABLE: usize = 8;
const FH_SYMBOLS: usize = 12;
const FH_OPTIONAL_SIZE: usize = 16;
// Offsets in the PE32+ optional header.
const OH_INITIALIZED_DATA: usize = 8;
const OH_SECTION_ALIGNMENT: usize = 32;
const OH_FILE_ALIGNMENT: usize = 36;
const OH_SIZE_OF_IMAGE: usize = 56;
const OH_SIZE_OF_HEADERS: usize = 60;
const OH_CHECKSUM: usize = 64;
const OH_DIRECTORY_COUNT: usize = 108;
const OH_DIRECTORIES: usize = 112;
const SECURITY_DIRECTORY: usize = 4;

/// The parts of a PE32+ image's headers this module reads and rewrites.
#[derive(Debug)]
struct Headers {
    /// Offset of the COFF file header.
    file_header: usize,
    /// Offset of the optional header.
    optional: usize,
    /// Offset of the section table.
    table: usize,
    sections: Vec<Section>,
    section_alignment: u32,
    file_alignment: u32,
    size_of_headers: u32,
}

#[derive(Debug)]
struct Section {
    name: String,
    virtual_size: u32,
    rva: u32,
    raw_size: u32,
    raw_offset: u32,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("truncated at offset {at:#x}"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("truncated at offset {at:#x}"))
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn align_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

/// Reads and checks the headers of a PE32+ image.
fn parse(b: &[u8]) -> Result<Headers, String> {
    if b.get(..2) != Some(b"MZ") {
        return Err("no MZ header".into());
    }
    let pe = u32_at(b, 0x3c)? as usize;
    if b.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err("no PE signature".into());
    }
    let file_header = pe + 4;
    let count = u16_at(b, file_header + FH_SECTIONS)? as usize;
    let optional_size = u16_at(b, file_header + FH_OPTIONAL_SIZE)? as usize;
    let optional = file_header + 20;
    if u16_at(b, optional)? != 0x20b {
        return Err("not a PE32+ (64-bit) image".into());
    }
    if optional_size < OH_DIRECTORIES {
        return Err("optional header too short".into());
    }
    let section_alignment = u32_at(b, optional + OH_SECTION_ALIGNMENT)?;
    let file_alignment = u32_at(b, optional + OH_FILE_ALIGNMENT)?;
    if !file_alignment.is_power_of_two() || !section_alignment.is_power_of_two() {
        return Err("alignments are not powers of two".into());
    }
    let size_of_headers = u32_at(b, optional + OH_SIZE_OF_HEADERS)?;
    let table = optional + optional_size;
    let mut sections = Vec::with_capacity(count);
    for i in 0..count {
        let at = table + i * SECTION_HEADER;
        let raw_name = b
            .get(at..at + 8)
            .ok_or_else(|| format!("section table truncated at entry {i}"))?;
        let name = String::from_utf8_lossy(raw_name)
            .trim_end_matches('\0')
            .to_string();
        let section = Section {
            name,
            virtual_size: u32_at(b, at + 8)?,
            rva: u32_at(b, at + 12)?,
            raw_size: u32_at(b, at + 16)?,
            raw_offset: u32_at(b, at + 20)?,
        };
        if section.raw_size > 0
            && section.raw_offset as u64 + section.raw_size as u64 > b.len() as u64
        {
            return Err(format!("section {} lies beyond the file", section.name));
        }
        sections.push(section);
    }
    Ok(Headers {
        file_header,
        optional,
        table,
        sections,
        section_alignment,
        file_alignment,
        size_of_headers,
    })
}

/// The AArch64 `NOP` instruction (0xd503201f) as stored: Debian's arm64 stub
/// (`linuxaa64.efi.stub`, gnu-efi's header layout) pads its headers with it.
const AARCH64_NOP: [u8; 4] = [0x1f, 0x20, 0x03, 0xd5];

/// Whether `bytes` (found at file offset `at`, inside the headers and outside every section)
/// are padding the new section headers may overwrite: zeros, or AArch64 `NOP`s aligned to
/// 4 bytes of the file. Pure.
pub fn is_header_filler(bytes: &[u8], at: usize) -> bool {
    bytes.iter().all(|&b| b == 0)
        || bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| b == AARCH64_NOP[(at + i) % 4])
}

/// The stub with `added` sections appended (see the module documentation). Pure.
pub fn build_pe(stub: &[u8], added: &[(&'static str, &[u8])]) -> Result<Vec<u8>, Problem> {
    let h = parse(stub).map_err(Problem::Stub)?;
    if h.size_of_headers as usize > stub.len() {
        return Err(Problem::Stub("its headers extend beyond the file".into()));
    }
    let directories = u32_at(stub, h.optional + OH_DIRECTORY_COUNT).map_err(Problem::Stub)?;
    if directories as usize > SECURITY_DIRECTORY {
        let at = h.optional + OH_DIRECTORIES + SECURITY_DIRECTORY * 8;
        if u32_at(stub, at + 4).map_err(Problem::Stub)? != 0 {
            return Err(Problem::Stub(
                "it is signed (has a certificate table)".into(),
            ));
        }
    }
    for (name, _) in added {
        if h.sections.iter().any(|s| s.name == *name) {
            return Err(Problem::Stub(format!(
                "it already has a {name} section (is it a UKI already?)"
            )));
        }
    }
    let table_end = h.table + (h.sections.len() + added.len()) * SECTION_HEADER;
    let first_data = h
        .sections
        .iter()
        .filter(|s| s.raw_size > 0)
        .map(|s| s.raw_offset as usize)
        .min()
        .unwrap_or(stub.len());
    if table_end > h.size_of_headers as usize || table_end > first_data.min(stub.len()) {
        return Err(Problem::Stub(format!(
            "its headers have no room for {} more section headers",
            added.len()
        )));
    }
    let free_start = h.table + h.sections.len() * SECTION_HEADER;
    if !is_header_filler(&stub[free_start..table_end], free_start) {
        return Err(Problem::Stub(
            "the space after its section table is in use".into(),
        ));
    }

    // The stub's bytes up to the end of its last section's data.
    let data_end = h
        .sections
        .iter()
        .filter(|s| s.raw_size > 0)
        .map(|s| (s.raw_offset + s.raw_size) as usize)
        .max()
        .unwrap_or(0)
        .max(h.size_of_headers as usize);
    let file_alignment = h.file_alignment as u64;
    let section_alignment = h.section_alignment as u64;
    let va_alignment = section_alignment.max(PAGE);
    let mut va = h
        .sections
        .iter()
        .map(|s| s.rva as u64 + s.virtual_size.max(s.raw_size) as u64)
        .max()
        .unwrap_or(0);
    let mut offset = align_up(data_end as u64, file_alignment);
    let mut placed = Vec::with_capacity(added.len());
    for (name, data) in added {
        va = align_up(va, va_alignment);
        let raw_size = align_up(data.len() as u64, file_alignment);
        placed.push((*name, *data, va, offset, raw_size));
        va += data.len() as u64;
        offset += raw_size;
        if va > u32::MAX as u64 || offset > u32::MAX as u64 {
            return Err(Problem::TooLarge(name));
        }
    }
    let size_of_image = align_up(va, section_alignment);
    if size_of_image > u32::MAX as u64 {
        return Err(Problem::TooLarge(added.last().map_or("image", |a| a.0)));
    }

    let mut out = Vec::with_capacity(offset as usize);
    out.extend_from_slice(&stub[..data_end]);
    let mut added_raw = 0u64;
    for (i, (name, data, va, offset, raw_size)) in placed.iter().enumerate() {
        out.resize(*offset as usize, 0);
        out.extend_from_slice(data);
        out.resize((*offset + *raw_size) as usize, 0);
        added_raw += raw_size;
        let at = h.table + (h.sections.len() + i) * SECTION_HEADER;
        let header = &mut out[at..at + SECTION_HEADER];
        header[..name.len()].copy_from_slice(name.as_bytes());
        put_u32(header, 8, data.len() as u32);
        put_u32(header, 12, *va as u32);
        put_u32(header, 16, *raw_size as u32);
        put_u32(header, 20, *offset as u32);
        put_u32(header, 36, DATA_READ_ONLY);
    }
    let fh = h.file_header;
    put_u16(
        &mut out,
        fh + FH_SECTIONS,
        (h.sections.len() + added.len()) as u16,
    );
    // A symbol table after the sections was not copied; one inside the data stays valid.
    let symbols = u32_at(stub, fh + FH_SYMBOL_TABLE).map_err(Problem::Stub)? as usize;
    if symbols >= data_end {
        put_u32(&mut out, fh + FH_SYMBOL_TABLE, 0);
        put_u32(&mut out, fh + FH_SYMBOLS, 0);
    }
    let oh = h.optional;
    let initialized = u32_at(stub, oh + OH_INITIALIZED_DATA).map_err(Problem::Stub)? as u64;
    put_u32(
        &mut out,
        oh + OH_INITIALIZED_DATA,
        u32::try_from(initialized + added_raw).map_err(|_| Problem::TooLarge("image"))?,
    );
    put_u32(&mut out, oh + OH_SIZE_OF_IMAGE, size_of_image as u32);
    put_u32(&mut out, oh + OH_CHECKSUM, 0);
    let sum = pe_checksum(&out, oh + OH_CHECKSUM);
    put_u32(&mut out, oh + OH_CHECKSUM, sum);
    Ok(out)
}

/// The PE image checksum (as `CheckSumMappedFile` computes it): the 16-bit one's complement
/// sum of the file, skipping the 4-byte checksum field at `field`, plus the file length.
pub fn pe_checksum(image: &[u8], field: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, pair) in image.chunks(2).enumerate() {
        let at = i * 2;
        if at == field || at == field + 2 {
            continue;
        }
        let word = u16::from_le_bytes([pair[0], *pair.get(1).unwrap_or(&0)]) as u64;
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(image.len() as u32)
}

/// The sections of a PE32+ image with the hashes of their contents, and of the whole.
pub fn describe(image: &[u8]) -> Result<UkiInfo, String> {
    let h = parse(image)?;
    let sections = h
        .sections
        .iter()
        .map(|s| {
            let stored = s.virtual_size.min(s.raw_size) as usize;
            let start = s.raw_offset as usize;
            let mut hasher = Sha256::new();
            hasher.update(image.get(start..start + stored).unwrap_or_default());
            SectionInfo {
                name: s.name.clone(),
                rva: s.rva,
                size: s.virtual_size,
                file_offset: s.raw_offset,
                sha256: hex::encode(hasher.finalize()),
            }
        })
        .collect();
    Ok(UkiInfo {
        length: image.len() as u64,
        sha256: hex::encode(Sha256::digest(image)),
        sections,
    })
}

/// Writes `bytes` to `path` atomically (`flipside-atomic-file`), mode 0666 less the umask,
/// like any new file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let options = flipside_atomic_file::Options::mode(0o666);
    flipside_atomic_file::write_with(path, bytes, options)
        .map_err(|e| io(e.step.action(), path)(e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: headers of 0x400 bytes, one `.text` section of 0x200 bytes at
    /// RVA 0x1000, section alignment 0x1000, file alignment 0x200, plus `extra` after it.
    fn tiny_pe(extra: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 0x600];
        b[..2].copy_from_slice(b"MZ");
        put_u32(&mut b, 0x3c, 0x80);
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let fh = 0x84;
        put_u16(&mut b, fh, 0x8664);
        put_u16(&mut b, fh + FH_SECTIONS, 1);
        put_u32(&mut b, fh + 4, 0x1234_5678); // time stamp, kept
        put_u16(&mut b, fh + FH_OPTIONAL_SIZE, 0xf0);
        let oh = fh + 20;
        put_u16(&mut b, oh, 0x20b);
        put_u32(&mut b, oh + OH_INITIALIZED_DATA, 0);
        put_u32(&mut b, oh + OH_SECTION_ALIGNMENT, 0x1000);
        put_u32(&mut b, oh + OH_FILE_ALIGNMENT, 0x200);
        put_u32(&mut b, oh + OH_SIZE_OF_IMAGE, 0x2000);
        put_u32(&mut b, oh + OH_SIZE_OF_HEADERS, 0x400);
        put_u32(&mut b, oh + OH_DIRECTORY_COUNT, 16);
        let t = oh + 0xf0;
        b[t..t + 5].copy_from_slice(b".text");
        put_u32(&mut b, t + 8, 0x1f0);
        put_u32(&mut b, t + 12, 0x1000);
        put_u32(&mut b, t + 16, 0x200);
        put_u32(&mut b, t + 20, 0x400);
        b[0x400..0x600].fill(0xcc);
        b.extend_from_slice(extra);
        b
    }

    #[test]
    fn header_filler_is_zeros_or_aligned_aarch64_nops() {
        assert!(is_header_filler(&[0; 80], 328));
        let nops: Vec<u8> = AARCH64_NOP.repeat(20);
        assert!(is_header_filler(&nops, 328));
        // The same bytes starting 2 bytes into an instruction are not NOPs of the file.
        assert!(!is_header_filler(&nops, 330));
        let mut used = nops.clone();
        used[7] = 0x42;
        assert!(!is_header_filler(&used, 328));
    }

    #[test]
    fn sections_are_placed_aligned_and_in_order() {
        let pe = build_pe(
            &tiny_pe(&[]),
            &[(".osrel", b"ID=x\n"), (".linux", &[7; 0x201])],
        )
        .unwrap();
        let info = describe(&pe).unwrap();
        let got: Vec<(&str, u32, u32, u32)> = info
            .sections
            .iter()
            .map(|s| (s.name.as_str(), s.rva, s.size, s.file_offset))
            .collect();
        assert_eq!(
            got,
            [
                (".text", 0x1000, 0x1f0, 0x400),
                (".osrel", 0x2000, 5, 0x600),
                (".linux", 0x3000, 0x201, 0x800),
            ]
        );
        assert_eq!(pe.len(), 0x800 + 0x400);
        let oh = 0x84 + 20;
        assert_eq!(u32_at(&pe, oh + OH_SIZE_OF_IMAGE).unwrap(), 0x4000);
        assert_eq!(u32_at(&pe, oh + OH_INITIALIZED_DATA).unwrap(), 0x600);
        assert_eq!(u32_at(&pe, 0x84 + 4).unwrap(), 0x1234_5678);
        assert_eq!(
            u32_at(&pe, oh + OH_CHECKSUM).unwrap(),
            pe_checksum(&pe, oh + OH_CHECKSUM)
        );
        assert_eq!(&pe[0x800..0xa01], &[7; 0x201][..]);
        assert!(pe[0xa01..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_trailing_symbol_table_is_dropped() {
        let mut stub = tiny_pe(b"symbols and strings");
        put_u32(&mut stub, 0x84 + FH_SYMBOL_TABLE, 0x600);
        put_u32(&mut stub, 0x84 + FH_SYMBOLS, 3);
        let pe = build_pe(&stub, &[(".osrel", b"ID=x\n")]).unwrap();
        assert_eq!(u32_at(&pe, 0x84 + FH_SYMBOL_TABLE).unwrap(), 0);
        assert_eq!(u32_at(&pe, 0x84 + FH_SYMBOLS).unwrap(), 0);
        assert_eq!(&pe[0x600..0x605], b"ID=x\n");
    }

    #[test]
    fn unusable_stubs_are_refused_with_the_reason() {
        let signed = {
            let mut s = tiny_pe(&[]);
            put_u32(&mut s, 0x84 + 20 + OH_DIRECTORIES + 4 * 8 + 4, 0x100);
            s
        };
        let pe32 = {
            let mut s = tiny_pe(&[]);
            put_u16(&mut s, 0x84 + 20, 0x10b);
            s
        };
        let uki = build_pe(&tiny_pe(&[]), &[(".linux", b"k")]).unwrap();
        let full = {
            let mut s = tiny_pe(&[]);
            put_u32(&mut s, 0x84 + 20 + OH_SIZE_OF_HEADERS, 0x1d0);
            s
        };
        for (stub, why) in [
            (b"not a PE".to_vec(), "no MZ"),
            (signed, "signed"),
            (pe32, "PE32+"),
            (uki, "already has a .linux"),
            (full, "no room"),
        ] {
            match build_pe(&stub, &[(".linux", b"k")]) {
                Err(Problem::Stub(got)) => assert!(got.contains(why), "{got:?} for {why:?}"),
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_or_mangled_stubs_are_refused_without_panicking() {
        let stub = tiny_pe(b"tail");
        let added: [(&str, &[u8]); 2] = [(".osrel", b"ID=x\n"), (".linux", b"kernel")];
        for len in 0..stub.len() {
            let _ = build_pe(&stub[..len], &added);
        }
        for at in 0..0x400 {
            for value in [0x00, 0x7f, 0xff] {
                let mut mangled = stub.clone();
                mangled[at] = value;
                if let Ok(pe) = build_pe(&mangled, &added) {
                    describe(&pe).unwrap();
                }
            }
        }
    }

    #[test]
    fn checksum_matches_the_reference_algorithm() {
        // Odd length, carries: words 0xffff, 0xffff, 0x0001 -> folded 0x0000ffff + 0x0001.
        let data = [0xff, 0xff, 0xff, 0xff, 0x01];
        let folded = {
            let mut s: u32 = 0xffff + 0xffff;
            s = (s & 0xffff) + (s >> 16);
            s += 1;
            (s & 0xffff) + (s >> 16)
        };
        assert_eq!(pe_checksum(&data, 100), folded + 5);
        // The checksum field itself never counts.
        assert_eq!(pe_checksum(&[1, 0, 9, 9, 9, 9], 2), 1 + 6);
    }

    #[test]
    fn command_lines() {
        check_cmdline("console=ttyS0 root=PARTLABEL=a ro quiet").unwrap();
        for (bad, why) in [
            ("", "empty"),
            ("a\nb", "printable"),
            ("é", "printable"),
            (&"x".repeat(CMDLINE_MAX + 1), "at most"),
        ] {
            let err = check_cmdline(bad).unwrap_err();
            assert!(matches!(err, Error::Cmdline { .. }));
            assert!(err.to_string().contains(why), "{err}");
        }
    }

    #[test]
    fn os_release_of_a_system() {
        let text = os_release("Kiosk+Pro", 7, "2.1 \"beta\"");
        assert_eq!(
            text,
            "NAME=\"Kiosk+Pro\"\nID=kiosk_pro\nIMAGE_ID=kiosk_pro\nVERSION=\"2.1 \\\"beta\\\"\"\n\
             VERSION_ID=2.1__beta_\nIMAGE_VERSION=7\nPRETTY_NAME=\"Kiosk+Pro 2.1 \\\"beta\\\"\"\n"
        );
        check_os_release(&text).unwrap();
        assert!(check_os_release("NAME=x\n").is_err());
        assert!(check_os_release("ID=x\nnot a line\n").is_err());
    }
}
