//! PE32+ (the EFI application format, Microsoft PE/COFF specification) headers as a boot
//! manager needs them: where a unified kernel image (UKI) ends, and the contents of its
//! `.cmdline` and `.osrel` sections.
//!
//! A kernel partition holds a UKI followed by whatever the partition held before (zeros, an
//! older and longer image). Firmware hashes every byte of the buffer it is given for Secure
//! Boot's Authenticode check, so the boot manager trims the partition's bytes to
//! [`image_len`]: the end of the file as the loader sees it, the largest of
//!
//! - `SizeOfHeaders`,
//! - each section's `PointerToRawData + SizeOfRawData`,
//! - the certificate table (data directory 4, whose address is a *file offset*) `offset + size`:
//!   an Authenticode-signed file ends with it.
//!
//! A COFF symbol table after the sections (deprecated for images; flipside-build's UKIs have
//! none) is not part of that end: an unsigned image that has one loses it when trimmed.
//!
//! Hostile input never panics: every offset is read through [`Reader`], whose reads are
//! bounds-checked, and every sum is checked. Only what the headers say is parsed; section
//! contents are never interpreted. Pure: `core` + `alloc`, no I/O.

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

/// `MZ`, the DOS header's signature.
const DOS_SIGNATURE: &[u8; 2] = b"MZ";
/// Offset of `e_lfanew` (the PE header's file offset) in the DOS header.
const OFF_E_LFANEW: usize = 0x3c;
/// `PE\0\0`.
const PE_SIGNATURE: &[u8; 4] = b"PE\0\0";
/// Size of the COFF file header that follows the PE signature.
const COFF_HEADER_LEN: usize = 20;
/// Optional header magic of PE32+ (64-bit images; PE32 is 0x10b).
pub const PE32_PLUS_MAGIC: u16 = 0x20b;
/// COFF machine type of x86-64.
pub const MACHINE_X86_64: u16 = 0x8664;
/// COFF machine type of AArch64.
pub const MACHINE_ARM64: u16 = 0xaa64;
/// Offset of `SizeOfHeaders` in the PE32+ optional header.
const OFF_SIZE_OF_HEADERS: usize = 60;
/// Offset of `NumberOfRvaAndSizes` in the PE32+ optional header.
const OFF_NUMBER_OF_RVA_AND_SIZES: usize = 108;
/// Offset of the data directories in the PE32+ optional header.
const OFF_DATA_DIRECTORIES: usize = 112;
/// Index of the certificate table among the data directories.
const CERTIFICATE_TABLE: u32 = 4;
/// Bytes of one data directory entry (address, size).
const DATA_DIRECTORY_LEN: usize = 8;
/// Bytes of one section table entry.
const SECTION_HEADER_LEN: usize = 40;
/// The specification's limit on the number of sections.
pub const MAX_SECTIONS: u16 = 96;
/// The number of data directories the specification defines.
const MAX_DATA_DIRECTORIES: u32 = 16;

/// Why bytes are not a PE32+ image this module can read. Each message names the field and the
/// offset involved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeError {
    /// The bytes end before a header does.
    #[error("{len} bytes are too short for the {what} at offset {offset}+{need}: not a complete PE image")]
    TooShort {
        what: &'static str,
        offset: u64,
        need: u64,
        len: u64,
    },
    /// No `MZ` at offset 0.
    #[error("no MZ signature at offset 0: not a PE/EFI image (the partition may be empty or hold something else)")]
    NoDosSignature,
    /// No `PE\0\0` where `e_lfanew` points.
    #[error("no PE signature at offset {offset} (e_lfanew): not a PE/EFI image")]
    NoPeSignature { offset: u64 },
    /// The optional header is missing or not PE32+.
    #[error("optional header magic is {magic:#x}, not PE32+ ({PE32_PLUS_MAGIC:#x}): not a 64-bit EFI image")]
    NotPe32Plus { magic: u16 },
    /// `SizeOfOptionalHeader` is smaller than the fields it must hold.
    #[error("SizeOfOptionalHeader is {size}, smaller than the {need} bytes its fields need")]
    OptionalHeaderTooSmall { size: u16, need: u64 },
    /// `NumberOfRvaAndSizes` above the 16 the specification defines.
    #[error("NumberOfRvaAndSizes is {count}, above the 16 data directories PE defines")]
    TooManyDataDirectories { count: u32 },
    /// `NumberOfSections` above the specification's limit.
    #[error("NumberOfSections is {count}, above the limit of {MAX_SECTIONS}")]
    TooManySections { count: u16 },
    /// A header field points past what a 64-bit offset can hold.
    #[error("{what} overflows: the header fields are corrupt")]
    Overflow { what: &'static str },
    /// The headers are fine but the file they describe is longer than the bytes given.
    #[error("the image ends at byte {end} ({what}) but only {len} bytes are present: the image is truncated")]
    Truncated {
        what: &'static str,
        end: u64,
        len: u64,
    },
}

/// One entry of the section table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionHeader {
    /// The name as stored: up to 8 bytes, NUL-padded.
    pub raw_name: [u8; 8],
    /// `VirtualSize`: the bytes of the section in memory (systemd's stub reads this much).
    pub virtual_size: u32,
    /// `VirtualAddress` (RVA).
    pub virtual_address: u32,
    /// `SizeOfRawData`: the bytes in the file (a multiple of `FileAlignment`).
    pub raw_size: u32,
    /// `PointerToRawData`: where those bytes start in the file.
    pub raw_offset: u32,
}

impl SectionHeader {
    /// The name without its NUL padding (bytes; a `/NNN` long name is not resolved).
    pub fn name(&self) -> &[u8] {
        let end = self
            .raw_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.raw_name.len());
        self.raw_name.get(..end).unwrap_or(&[])
    }

    /// The section's bytes in the file; `None` when it has none.
    pub fn raw_range(&self) -> Option<Range<u64>> {
        if self.raw_size == 0 {
            return None;
        }
        let start = u64::from(self.raw_offset);
        Some(start..start + u64::from(self.raw_size))
    }

    /// The section's contents: its first `min(VirtualSize, SizeOfRawData)` bytes in the file
    /// (the raw size is padded to the file alignment; the virtual size is the exact length).
    pub fn content_range(&self) -> Range<u64> {
        let start = u64::from(self.raw_offset);
        start..start + u64::from(self.virtual_size.min(self.raw_size))
    }
}

/// The parts of a PE32+ image's headers that say where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeHeaders {
    /// COFF machine type, e.g. [`MACHINE_X86_64`].
    pub machine: u16,
    /// `SizeOfHeaders`: DOS stub, PE headers and section table, rounded to `FileAlignment`.
    pub size_of_headers: u32,
    /// The certificate table's (file offset, size) when data directory 4 is present and
    /// non-empty: the image is Authenticode-signed.
    pub certificate_table: Option<(u32, u32)>,
    /// The section table in file order.
    pub sections: Vec<SectionHeader>,
}

impl PeHeaders {
    /// Parses the headers and the section table. Needs only the first bytes of the file (up to
    /// the end of the section table), not the section contents.
    pub fn parse(bytes: &[u8]) -> Result<Self, PeError> {
        let r = Reader(bytes);
        if r.bytes(0, 2, "DOS header")? != DOS_SIGNATURE {
            return Err(PeError::NoDosSignature);
        }
        let pe = u64::from(r.u32(OFF_E_LFANEW as u64, "DOS header (e_lfanew)")?);
        if r.bytes(pe, 4, "PE signature")? != PE_SIGNATURE {
            return Err(PeError::NoPeSignature { offset: pe });
        }
        let coff = pe + 4;
        let machine = r.u16(coff, "COFF header")?;
        let number_of_sections = r.u16(coff + 2, "COFF header")?;
        let optional_size = r.u16(coff + 16, "COFF header")?;
        // The COFF header is read as a whole so that its absence is reported as such.
        r.bytes(coff, COFF_HEADER_LEN as u64, "COFF header")?;
        let opt = coff + COFF_HEADER_LEN as u64;

        if u64::from(optional_size) < 2 {
            return Err(PeError::OptionalHeaderTooSmall {
                size: optional_size,
                need: OFF_DATA_DIRECTORIES as u64,
            });
        }
        let magic = r.u16(opt, "optional header")?;
        if magic != PE32_PLUS_MAGIC {
            return Err(PeError::NotPe32Plus { magic });
        }
        if u64::from(optional_size) < OFF_DATA_DIRECTORIES as u64 {
            return Err(PeError::OptionalHeaderTooSmall {
                size: optional_size,
                need: OFF_DATA_DIRECTORIES as u64,
            });
        }
        let size_of_headers = r.u32(opt + OFF_SIZE_OF_HEADERS as u64, "optional header")?;
        let directories = r.u32(opt + OFF_NUMBER_OF_RVA_AND_SIZES as u64, "optional header")?;
        if directories > MAX_DATA_DIRECTORIES {
            return Err(PeError::TooManyDataDirectories { count: directories });
        }
        let directories_end =
            OFF_DATA_DIRECTORIES as u64 + u64::from(directories) * DATA_DIRECTORY_LEN as u64;
        if u64::from(optional_size) < directories_end {
            return Err(PeError::OptionalHeaderTooSmall {
                size: optional_size,
                need: directories_end,
            });
        }
        let certificate_table = if directories > CERTIFICATE_TABLE {
            let at = opt
                + OFF_DATA_DIRECTORIES as u64
                + u64::from(CERTIFICATE_TABLE) * DATA_DIRECTORY_LEN as u64;
            let offset = r.u32(at, "data directory 4 (certificate table)")?;
            let size = r.u32(at + 4, "data directory 4 (certificate table)")?;
            (size != 0).then_some((offset, size))
        } else {
            None
        };

        if number_of_sections > MAX_SECTIONS {
            return Err(PeError::TooManySections {
                count: number_of_sections,
            });
        }
        let table = opt + u64::from(optional_size);
        let table_len = u64::from(number_of_sections) * SECTION_HEADER_LEN as u64;
        let raw_table = r.bytes(table, table_len, "section table")?;
        let sections = raw_table
            .chunks_exact(SECTION_HEADER_LEN)
            .map(section_header)
            .collect();
        Ok(Self {
            machine,
            size_of_headers,
            certificate_table,
            sections,
        })
    }

    /// Where the file ends as the loader sees it (see the module docs), and which part ends
    /// it. All fields are 32-bit, so the sums cannot overflow a `u64`.
    pub fn file_end(&self) -> (u64, &'static str) {
        let mut end = (u64::from(self.size_of_headers), "SizeOfHeaders");
        for s in &self.sections {
            if let Some(raw) = s.raw_range() {
                if raw.end > end.0 {
                    end = (raw.end, "end of a section's raw data");
                }
            }
        }
        if let Some((offset, size)) = self.certificate_table {
            let cert_end = u64::from(offset) + u64::from(size);
            if cert_end > end.0 {
                end = (cert_end, "end of the certificate table");
            }
        }
        end
    }

    /// The first section named `name` (compared without the NUL padding).
    pub fn section(&self, name: &str) -> Option<&SectionHeader> {
        self.sections.iter().find(|s| s.name() == name.as_bytes())
    }
}

fn section_header(raw: &[u8]) -> SectionHeader {
    // `raw` is exactly SECTION_HEADER_LEN bytes (chunks_exact), so these reads cannot fail;
    // they still go through the checked reader rather than indexing.
    let r = Reader(raw);
    let mut raw_name = [0u8; 8];
    if let Ok(name) = r.bytes(0, 8, "section name") {
        raw_name.copy_from_slice(name);
    }
    let field = |off: u64| r.u32(off, "section header").unwrap_or(0);
    SectionHeader {
        raw_name,
        virtual_size: field(8),
        virtual_address: field(12),
        raw_size: field(16),
        raw_offset: field(20),
    }
}

/// The length of the PE32+ image at the start of `bytes`: the end of the file as the loader
/// sees it (see the module docs). Fails when the headers are not PE32+ or the bytes end before
/// the image does.
pub fn image_len(bytes: &[u8]) -> Result<usize, PeError> {
    let headers = PeHeaders::parse(bytes)?;
    let (end, what) = headers.file_end();
    let len = bytes.len() as u64;
    if end > len {
        return Err(PeError::Truncated { what, end, len });
    }
    usize::try_from(end).map_err(|_| PeError::Overflow { what })
}

/// The contents of the first section named `name` (e.g. `.cmdline`, `.osrel`): its first
/// `min(VirtualSize, SizeOfRawData)` bytes. `None` when `bytes` is not a PE32+ image, has no
/// such section, or the section's bytes are not all present.
pub fn section<'a>(bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let headers = PeHeaders::parse(bytes).ok()?;
    let range = headers.section(name)?.content_range();
    let start = usize::try_from(range.start).ok()?;
    let end = usize::try_from(range.end).ok()?;
    bytes.get(start..end)
}

/// The text of a section such as `.cmdline`: the contents up to the first NUL, with trailing
/// whitespace removed, when they are UTF-8.
pub fn section_text<'a>(bytes: &'a [u8], name: &str) -> Option<&'a str> {
    let raw = section(bytes, name)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let text = core::str::from_utf8(raw.get(..end)?).ok()?;
    Some(text.trim_end())
}

/// Bounds-checked little-endian reads at 64-bit offsets.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&self, offset: u64, len: u64, what: &'static str) -> Result<&'a [u8], PeError> {
        let short = PeError::TooShort {
            what,
            offset,
            need: len,
            len: self.0.len() as u64,
        };
        let end = offset.checked_add(len).ok_or(PeError::Overflow { what })?;
        let (Ok(start), Ok(end)) = (usize::try_from(offset), usize::try_from(end)) else {
            return Err(short);
        };
        self.0.get(start..end).ok_or(short)
    }

    fn u16(&self, offset: u64, what: &'static str) -> Result<u16, PeError> {
        let b = self.bytes(offset, 2, what)?;
        let mut x = [0u8; 2];
        x.copy_from_slice(b);
        Ok(u16::from_le_bytes(x))
    }

    fn u32(&self, offset: u64, what: &'static str) -> Result<u32, PeError> {
        let b = self.bytes(offset, 4, what)?;
        let mut x = [0u8; 4];
        x.copy_from_slice(b);
        Ok(u32::from_le_bytes(x))
    }
}

/// The section name as text for messages (lossy).
pub fn display_name(section: &SectionHeader) -> String {
    String::from_utf8_lossy(section.name()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const E_LFANEW: usize = 0x80;
    const FILE_ALIGNMENT: usize = 0x200;

    /// A minimal PE32+ image: headers of 0x400 bytes, then each section's data padded to
    /// the file alignment, then an optional certificate table of `cert` bytes.
    struct Image {
        sections: Vec<(&'static str, Vec<u8>)>,
        cert: usize,
        directories: u32,
    }

    impl Image {
        fn new(sections: &[(&'static str, &[u8])]) -> Self {
            Self {
                sections: sections.iter().map(|(n, d)| (*n, d.to_vec())).collect(),
                cert: 0,
                directories: 16,
            }
        }

        fn optional_size(&self) -> usize {
            OFF_DATA_DIRECTORIES + self.directories as usize * DATA_DIRECTORY_LEN
        }

        fn section_table(&self) -> usize {
            E_LFANEW + 4 + COFF_HEADER_LEN + self.optional_size()
        }

        fn build(&self) -> Vec<u8> {
            let headers = 0x400;
            let mut out = vec![0u8; headers];
            out[..2].copy_from_slice(DOS_SIGNATURE);
            put32(&mut out, OFF_E_LFANEW, E_LFANEW as u32);
            out[E_LFANEW..E_LFANEW + 4].copy_from_slice(PE_SIGNATURE);
            let coff = E_LFANEW + 4;
            put16(&mut out, coff, MACHINE_X86_64);
            put16(&mut out, coff + 2, self.sections.len() as u16);
            put16(&mut out, coff + 16, self.optional_size() as u16);
            let opt = coff + COFF_HEADER_LEN;
            put16(&mut out, opt, PE32_PLUS_MAGIC);
            put32(&mut out, opt + OFF_SIZE_OF_HEADERS, headers as u32);
            put32(
                &mut out,
                opt + OFF_NUMBER_OF_RVA_AND_SIZES,
                self.directories,
            );
            let mut table = self.section_table();
            let mut data = Vec::new();
            let mut rva = 0x1000u32;
            for (name, bytes) in &self.sections {
                let offset = headers + data.len();
                let mut raw_name = [0u8; 8];
                raw_name[..name.len()].copy_from_slice(name.as_bytes());
                out[table..table + 8].copy_from_slice(&raw_name);
                put32(&mut out, table + 8, bytes.len() as u32);
                put32(&mut out, table + 12, rva);
                let raw = bytes.len().div_ceil(FILE_ALIGNMENT) * FILE_ALIGNMENT;
                put32(&mut out, table + 16, raw as u32);
                put32(&mut out, table + 20, offset as u32);
                data.extend_from_slice(bytes);
                data.resize(offset - headers + raw, 0);
                rva += 0x1000 * (1 + raw as u32 / 0x1000);
                table += SECTION_HEADER_LEN;
            }
            out.extend_from_slice(&data);
            if self.cert > 0 {
                let at = opt + OFF_DATA_DIRECTORIES + 4 * DATA_DIRECTORY_LEN;
                let cert_at = out.len() as u32;
                put32(&mut out, at, cert_at);
                put32(&mut out, at + 4, self.cert as u32);
                out.extend(core::iter::repeat_n(0xc5, self.cert));
            }
            out
        }
    }

    fn put16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn uki() -> Image {
        Image::new(&[
            (".text", &[0x90; 700]),
            (".osrel", b"ID=flipside\nVERSION_ID=2\n"),
            (".cmdline", b"console=ttyS0 quiet\0"),
            (".linux", &[0x11; 3000]),
        ])
    }

    #[test]
    fn parses_headers_and_sections() {
        let bytes = uki().build();
        let h = PeHeaders::parse(&bytes).unwrap();
        assert_eq!(h.machine, MACHINE_X86_64);
        assert_eq!(h.size_of_headers, 0x400);
        assert_eq!(h.certificate_table, None);
        let names: Vec<_> = h.sections.iter().map(display_name).collect();
        assert_eq!(names, [".text", ".osrel", ".cmdline", ".linux"]);
        let cmdline = h.section(".cmdline").unwrap();
        assert_eq!(cmdline.virtual_size, 20);
        assert_eq!(cmdline.raw_size, 0x200);
        assert_eq!(cmdline.raw_offset, 0x400 + 0x400 + 0x200);
        assert!(h.section(".initrd").is_none());
    }

    #[test]
    fn image_len_is_the_end_of_the_last_section() {
        let bytes = uki().build();
        // 0x400 headers + .text 0x400 + .osrel 0x200 + .cmdline 0x200 + .linux 0xc00.
        assert_eq!(bytes.len(), 0x400 + 0x400 + 0x200 + 0x200 + 0xc00);
        assert_eq!(image_len(&bytes), Ok(bytes.len()));
        // A partition padded with zeros, or holding the tail of an older, longer image.
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + (1 << 16), 0);
        assert_eq!(image_len(&padded), Ok(bytes.len()));
        padded.iter_mut().skip(bytes.len()).for_each(|b| *b = 0xee);
        assert_eq!(image_len(&padded), Ok(bytes.len()));
    }

    #[test]
    fn image_len_includes_the_certificate_table() {
        let mut img = uki();
        img.cert = 0x5e8;
        let bytes = img.build();
        let h = PeHeaders::parse(&bytes).unwrap();
        let unsigned_end = bytes.len() - 0x5e8;
        assert_eq!(h.certificate_table, Some((unsigned_end as u32, 0x5e8)));
        assert_eq!(
            h.file_end(),
            (bytes.len() as u64, "end of the certificate table")
        );
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + 4096, 0);
        assert_eq!(image_len(&padded), Ok(bytes.len()));
        // Cut inside the signature: truncated, never "the unsigned part".
        assert_eq!(
            image_len(&bytes[..bytes.len() - 1]),
            Err(PeError::Truncated {
                what: "end of the certificate table",
                end: bytes.len() as u64,
                len: bytes.len() as u64 - 1,
            })
        );
    }

    #[test]
    fn headers_alone_end_a_sectionless_image() {
        let bytes = Image::new(&[]).build();
        assert_eq!(image_len(&bytes), Ok(0x400));
        assert_eq!(
            PeHeaders::parse(&bytes).unwrap().file_end(),
            (0x400, "SizeOfHeaders")
        );
    }

    #[test]
    fn fewer_data_directories_mean_no_certificate_table() {
        let mut img = uki();
        img.directories = 4;
        let bytes = img.build();
        let h = PeHeaders::parse(&bytes).unwrap();
        assert_eq!(h.certificate_table, None);
        assert_eq!(
            section_text(&bytes, ".cmdline"),
            Some("console=ttyS0 quiet")
        );
    }

    #[test]
    fn sections_by_name() {
        let bytes = uki().build();
        assert_eq!(
            section(&bytes, ".osrel"),
            Some(&b"ID=flipside\nVERSION_ID=2\n"[..])
        );
        assert_eq!(
            section(&bytes, ".cmdline"),
            Some(&b"console=ttyS0 quiet\0"[..])
        );
        assert_eq!(
            section_text(&bytes, ".cmdline"),
            Some("console=ttyS0 quiet")
        );
        assert_eq!(section(&bytes, ".initrd"), None);
        assert_eq!(section(&bytes, ".cmdlin"), None);
        assert_eq!(section(&bytes, ""), None);
        assert_eq!(section(b"not a PE", ".cmdline"), None);
        // A section whose bytes lie past the end of what was read.
        let cut = 0x400 + 0x400 + 0x200 + 0x10;
        assert_eq!(section(&bytes[..cut], ".cmdline"), None);
        assert_eq!(section(&bytes[..cut], ".osrel").map(<[u8]>::len), Some(25));
    }

    #[test]
    fn section_text_stops_at_nul_and_trims() {
        let bytes = Image::new(&[(".cmdline", b"root=x quiet \n\0garbage")]).build();
        assert_eq!(section_text(&bytes, ".cmdline"), Some("root=x quiet"));
        let bytes = Image::new(&[(".cmdline", &[0xff, 0xfe, 0])]).build();
        assert_eq!(section_text(&bytes, ".cmdline"), None, "not UTF-8");
    }

    #[test]
    fn refuses_what_is_not_pe32_plus() {
        let good = uki().build();
        assert_eq!(image_len(&[0u8; 4096]), Err(PeError::NoDosSignature));
        assert!(matches!(image_len(b"M"), Err(PeError::TooShort { .. })));

        let mut bad = good.clone();
        bad[E_LFANEW] = b'X';
        assert_eq!(
            image_len(&bad),
            Err(PeError::NoPeSignature {
                offset: E_LFANEW as u64
            })
        );

        let mut pe32 = good.clone();
        put16(&mut pe32, E_LFANEW + 4 + COFF_HEADER_LEN, 0x10b);
        assert_eq!(image_len(&pe32), Err(PeError::NotPe32Plus { magic: 0x10b }));

        let mut far = good.clone();
        put32(&mut far, OFF_E_LFANEW, u32::MAX);
        assert_eq!(
            image_len(&far),
            Err(PeError::TooShort {
                what: "PE signature",
                offset: u64::from(u32::MAX),
                need: 4,
                len: good.len() as u64
            })
        );

        let mut many = good.clone();
        put16(&mut many, E_LFANEW + 6, MAX_SECTIONS + 1);
        assert_eq!(
            image_len(&many),
            Err(PeError::TooManySections {
                count: MAX_SECTIONS + 1
            })
        );

        let mut dirs = good.clone();
        let opt = E_LFANEW + 4 + COFF_HEADER_LEN;
        put32(&mut dirs, opt + OFF_NUMBER_OF_RVA_AND_SIZES, 17);
        assert_eq!(
            image_len(&dirs),
            Err(PeError::TooManyDataDirectories { count: 17 })
        );

        let mut small = good.clone();
        put16(&mut small, E_LFANEW + 4 + 16, 100);
        assert_eq!(
            image_len(&small),
            Err(PeError::OptionalHeaderTooSmall {
                size: 100,
                need: OFF_DATA_DIRECTORIES as u64
            })
        );
        let mut short_dirs = good.clone();
        put16(&mut short_dirs, E_LFANEW + 4 + 16, 120);
        assert_eq!(
            image_len(&short_dirs),
            Err(PeError::OptionalHeaderTooSmall {
                size: 120,
                need: OFF_DATA_DIRECTORIES as u64 + 16 * 8
            })
        );
        let mut none = good;
        put16(&mut none, E_LFANEW + 4 + 16, 0);
        assert!(matches!(
            image_len(&none),
            Err(PeError::OptionalHeaderTooSmall { size: 0, .. })
        ));
    }

    #[test]
    fn fields_near_u32_max_are_truncation_not_overflow() {
        let good = uki().build();
        let table = uki().section_table();
        let mut huge = good.clone();
        // .text: PointerToRawData and SizeOfRawData both u32::MAX.
        put32(&mut huge, table + 16, u32::MAX);
        put32(&mut huge, table + 20, u32::MAX);
        let end = 2 * u64::from(u32::MAX);
        assert_eq!(
            image_len(&huge),
            Err(PeError::Truncated {
                what: "end of a section's raw data",
                end,
                len: good.len() as u64
            })
        );
        assert_eq!(section(&huge, ".text"), None);
        let mut cert = good.clone();
        let at = E_LFANEW + 4 + COFF_HEADER_LEN + OFF_DATA_DIRECTORIES + 4 * DATA_DIRECTORY_LEN;
        put32(&mut cert, at, u32::MAX);
        put32(&mut cert, at + 4, u32::MAX);
        assert!(matches!(
            image_len(&cert),
            Err(PeError::Truncated {
                what: "end of the certificate table",
                ..
            })
        ));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut img = uki();
        img.cert = 64;
        let bytes = img.build();
        for cut in 0..bytes.len() {
            let got = image_len(&bytes[..cut]);
            assert!(got.is_err(), "cut at {cut}: {got:?}");
            let _ = section(&bytes[..cut], ".cmdline");
        }
        assert_eq!(image_len(&bytes), Ok(bytes.len()));
    }

    #[test]
    fn corrupted_headers_never_panic() {
        // Every header byte set to values that stress offsets and counts; the result may be
        // anything but a panic, and a success never claims more bytes than are present.
        let bytes = uki().build();
        let headers_end = uki().section_table() + 4 * SECTION_HEADER_LEN;
        for at in 0..headers_end {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
                let mut bad = bytes.clone();
                bad[at] = value;
                if let Ok(len) = image_len(&bad) {
                    assert!(len <= bad.len(), "byte {at} = {value:#x}: {len}");
                }
                for name in [".cmdline", ".osrel", ".linux"] {
                    if let Some(s) = section(&bad, name) {
                        assert!(s.len() <= bad.len());
                    }
                }
            }
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let msg = |e: PeError| alloc::format!("{e}");
        assert!(msg(PeError::NoDosSignature).contains("not a PE/EFI image"));
        assert!(msg(PeError::Truncated {
            what: "end of a section's raw data",
            end: 10,
            len: 5
        })
        .contains("ends at byte 10 (end of a section's raw data) but only 5 bytes"));
        assert!(msg(PeError::NotPe32Plus { magic: 0x10b }).contains("0x10b, not PE32+ (0x20b)"));
    }
}
