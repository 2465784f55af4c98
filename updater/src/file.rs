//! Reading a local file whole, with a cap: what the configuration points at may be a device
//! (`/dev/zero`) or a file grown without bound, and is never read past its cap.

use std::io::{self, Read};
use std::path::Path;

/// The bytes of `path`, at most `cap` of them; a longer file is an error of kind
/// [`io::ErrorKind::FileTooLarge`] that names the cap.
pub fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than the cap of {cap} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_device_stops_at_the_cap() {
        let e = read_capped(Path::new("/dev/zero"), 1000).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("1000 bytes"), "{e}");
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        std::fs::write(&p, [7u8; 1000]).unwrap();
        assert_eq!(read_capped(&p, 1000).unwrap().len(), 1000);
    }
}
