//! The kernel release (`uname -r`) an x86 bzImage names in its setup header (Linux boot
//! protocol, `Documentation/arch/x86/boot.rst`):
//!
//! | offset  | field            | meaning                                                  |
//! |---------|------------------|----------------------------------------------------------|
//! | `0x202` | `header`         | the magic `"HdrS"`: a bzImage with a setup header        |
//! | `0x206` | `version`        | boot protocol version (`kernel_version` needs 2.00)      |
//! | `0x20E` | `kernel_version` | if not 0, the version string is at `0x200 + this value`  |
//!
//! The version string is NUL-terminated, e.g. `6.1.0-57-amd64 (debian-kernel@lists.debian.org)
//! #1 SMP ...`; its first word is the release. Other kernel images (arm64 `Image`, ELF
//! `vmlinux`) carry no such header: their release has to be given (`release =` in `[kernel]`).
//!
//! [`kernel_release`] is pure and reads only inside the bytes it is given; [`HEADER_WINDOW`]
//! bytes from the start of the file are always enough.

/// Offset of the `"HdrS"` magic.
const MAGIC_AT: usize = 0x202;
const MAGIC: &[u8; 4] = b"HdrS";
/// Offset of the boot protocol version (u16, little-endian).
const PROTOCOL_AT: usize = 0x206;
/// Offset of `kernel_version` (u16, little-endian), relative to [`VERSION_BASE`].
const VERSION_POINTER_AT: usize = 0x20e;
const VERSION_BASE: usize = 0x200;
/// Longest version string read; Linux's `linux_banner` part is well under this.
pub const VERSION_MAX: usize = 512;
/// Bytes from the start of a kernel image that hold any setup header's version string.
pub const HEADER_WINDOW: usize = VERSION_BASE + u16::MAX as usize + 1 + VERSION_MAX;

/// Why a bzImage's setup header gives no usable release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("its setup header points to a version string at offset {offset:#x}, past the end of the file ({length} bytes)")]
    OutOfBounds { offset: usize, length: usize },
    #[error("its version string at offset {offset:#x} has no NUL within {VERSION_MAX} bytes")]
    Unterminated { offset: usize },
    #[error("its version string {text:?} does not start with a release as uname -r prints it")]
    BadRelease { text: String },
}

/// The release named by the setup header of the bzImage whose first bytes are `image`
/// (at least [`HEADER_WINDOW`] of them, or the whole file if shorter). `Ok(None)`: not a
/// bzImage, or one of a boot protocol before 2.00 or without a version string.
pub fn kernel_release(image: &[u8]) -> Result<Option<String>, Error> {
    let u16_at = |at: usize| {
        image
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    if image.get(MAGIC_AT..MAGIC_AT + MAGIC.len()) != Some(MAGIC) {
        return Ok(None);
    }
    match (u16_at(PROTOCOL_AT), u16_at(VERSION_POINTER_AT)) {
        (Some(protocol), Some(pointer)) if protocol >= 0x200 && pointer != 0 => {
            let offset = VERSION_BASE + pointer as usize;
            let text = image.get(offset..).ok_or(Error::OutOfBounds {
                offset,
                length: image.len(),
            })?;
            let window = &text[..text.len().min(VERSION_MAX)];
            let end = window
                .iter()
                .position(|&b| b == 0)
                .ok_or(Error::Unterminated { offset })?;
            let text = String::from_utf8_lossy(&window[..end]);
            let release = text.split(' ').next().unwrap_or_default();
            flipside_contract::release::check_kernel_release(release).map_err(|_| {
                Error::BadRelease {
                    text: text.to_string(),
                }
            })?;
            Ok(Some(release.to_string()))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage-like prefix: the magic, protocol 2.15 and `version` at 0x200 + `pointer`.
    fn header(pointer: u16, version: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 0x4000];
        b[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        b[MAGIC_AT..MAGIC_AT + 4].copy_from_slice(MAGIC);
        b[PROTOCOL_AT..PROTOCOL_AT + 2].copy_from_slice(&0x20fu16.to_le_bytes());
        b[VERSION_POINTER_AT..VERSION_POINTER_AT + 2].copy_from_slice(&pointer.to_le_bytes());
        let at = VERSION_BASE + pointer as usize;
        if b.len() < at + version.len() {
            b.resize(at + version.len(), 0);
        }
        b[at..at + version.len()].copy_from_slice(version);
        b
    }

    const DEBIAN: &[u8] =
        b"6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3\0";

    #[test]
    fn the_first_word_of_the_version_string_is_the_release() {
        let image = header(0x42c0, DEBIAN);
        assert_eq!(
            kernel_release(&image),
            Ok(Some("6.1.0-57-amd64".to_string()))
        );
        // A string of one word, and the highest pointer the field can hold.
        let image = header(u16::MAX, b"6.12.9-custom\0");
        assert_eq!(kernel_release(&image), Ok(Some("6.12.9-custom".into())));
    }

    #[test]
    fn images_without_a_header_or_version_string_give_none() {
        assert_eq!(kernel_release(b""), Ok(None));
        assert_eq!(kernel_release(&[0u8; 0x300]), Ok(None));
        // arm64 Image: "ARM\x64" magic at 0x38, nothing at 0x202.
        let mut arm64 = vec![0u8; 0x1000];
        arm64[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(kernel_release(&arm64), Ok(None));
        let mut no_pointer = header(0x100, DEBIAN);
        no_pointer[VERSION_POINTER_AT..VERSION_POINTER_AT + 2].fill(0);
        assert_eq!(kernel_release(&no_pointer), Ok(None));
        let mut old_protocol = header(0x100, DEBIAN);
        old_protocol[PROTOCOL_AT..PROTOCOL_AT + 2].copy_from_slice(&0x1ffu16.to_le_bytes());
        assert_eq!(kernel_release(&old_protocol), Ok(None));
    }

    #[test]
    fn broken_headers_are_refused_without_reading_past_the_bytes() {
        let image = header(0x100, DEBIAN);
        // Cut inside the string: no terminator within the bytes given.
        let cut = &image[..VERSION_BASE + 0x100 + 5];
        assert_eq!(
            kernel_release(cut),
            Err(Error::Unterminated { offset: 0x300 })
        );
        // Cut before the string: the pointer leads outside.
        assert_eq!(
            kernel_release(&image[..0x280]),
            Err(Error::OutOfBounds {
                offset: 0x300,
                length: 0x280
            })
        );
        // Cut inside the header fields themselves.
        assert_eq!(kernel_release(&image[..0x20f]), Ok(None));
        assert_eq!(kernel_release(&image[..0x204]), Ok(None));
        // No NUL within VERSION_MAX bytes.
        let long = header(0x100, &[b'x'; VERSION_MAX + 10]);
        assert_eq!(
            kernel_release(&long),
            Err(Error::Unterminated { offset: 0x300 })
        );
        for bad in [&b" 6.1 leading space\0"[..], b"\0", b"6.1\xff-bad\0"] {
            assert!(
                matches!(
                    kernel_release(&header(0x100, bad)),
                    Err(Error::BadRelease { .. })
                ),
                "{bad:?}"
            );
        }
        // Every prefix of a good header either reads the release or fails cleanly.
        let image = header(0x100, DEBIAN);
        for len in 0..=image.len() {
            let _ = kernel_release(&image[..len]);
        }
        // The window the builder reads holds the farthest, longest string a header can name.
        let mut far = b"6.1.0-far ".to_vec();
        far.resize(VERSION_MAX - 1, b'y');
        far.push(0);
        let mut image = header(u16::MAX, &far);
        image.resize(image.len() + 1000, 0xaa);
        assert_eq!(
            kernel_release(&image[..HEADER_WINDOW]),
            Ok(Some("6.1.0-far".into()))
        );
    }
}
