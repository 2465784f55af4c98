//! Targets (5.7 "fetch target"): names that cannot be mistaken for paths, and the verified
//! copy: stream -> signed length as a cap -> digests -> writer, with success reported only
//! after every digest matched. A target listing neither sha256 nor sha512 is refused, never
//! trusted unchecked.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256, Sha512};

use crate::client::transport::TransportError;
use crate::client::{Error, Result};
use crate::metadata::TargetFile;

/// A target name from targets metadata, checked to be usable in a repository path: `/`-separated
/// components, none empty, `.` or `..` (nor `%2e%2e` and the like, which URL resolution
/// treats as `..`), and no backslash or NUL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetName(String);

impl TargetName {
    pub fn new(name: &str) -> Result<Self> {
        let why = if name.is_empty() {
            Some("it is empty")
        } else if name.contains(['\\', '\0']) {
            Some("it contains a backslash or a NUL byte")
        } else if name.starts_with('/') {
            Some("it is an absolute path")
        } else if name.split('/').any(|c| c.is_empty() || is_dot_segment(c)) {
            Some("it has an empty, `.` or `..` path component (percent-encoded or not)")
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::UnsafeTargetName {
                name: name.to_string(),
                why,
            }),
            None => Ok(TargetName(name.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the target is in the repository: `targets/DIR/{sha256}.{file}` with consistent
    /// snapshots (the digest prefixes the last component), `targets/{name}` without.
    pub fn repository_path(&self, consistent_sha256: Option<&str>) -> String {
        match consistent_sha256 {
            None => format!("targets/{}", self.0),
            Some(sha) => match self.0.rsplit_once('/') {
                Some((dir, file)) => format!("targets/{dir}/{sha}.{file}"),
                None => format!("targets/{sha}.{}", self.0),
            },
        }
    }
}

/// Whether path component `c` is `.` or `..`, also when spelled with `%2e` (any case), as
/// URL resolution reads it.
pub(crate) fn is_dot_segment(c: &str) -> bool {
    let decoded = c.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
}

impl std::fmt::Display for TargetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The digests a target is checked with: each supported algorithm it lists (at least one).
struct Digests {
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
}

impl Digests {
    fn update(&mut self, chunk: &[u8]) {
        if let Some(d) = &mut self.sha256 {
            d.update(chunk);
        }
        if let Some(d) = &mut self.sha512 {
            d.update(chunk);
        }
    }

    /// Each computed digest, lowercase hex, by algorithm name.
    fn finish(self) -> Vec<(&'static str, String)> {
        let sha256 = self.sha256.map(|d| ("sha256", hex::encode(d.finalize())));
        let sha512 = self.sha512.map(|d| ("sha512", hex::encode(d.finalize())));
        sha256.into_iter().chain(sha512).collect()
    }
}

/// Copies `src` to `dest`, never writing more than `info.length` bytes, and checks the
/// length and every listed hash the client supports (sha256, sha512; at least one must be
/// listed) of what was written. `dest` holds unverified bytes until this returns `Ok`.
/// `path` names the source in errors.
pub(crate) fn copy_verified(
    src: &mut dyn Read,
    dest: &mut dyn Write,
    info: &TargetFile,
    name: &str,
    path: &str,
) -> Result<u64> {
    let refused = |source| Error::Target {
        name: name.to_string(),
        path: path.to_string(),
        source: Box::new(source),
    };
    // Before any byte moves: a target that cannot be checked is not downloaded.
    info.path_digest(name).map_err(refused)?;
    let mut digests = Digests {
        sha256: info.hashes.contains_key("sha256").then(Sha256::new),
        sha512: info.hashes.contains_key("sha512").then(Sha512::new),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Fetch {
                    what: format!("target {name}"),
                    path: path.to_string(),
                    source: TransportError::io(path, e),
                })
            }
        };
        if total + n as u64 > info.length {
            return Err(Error::TooLarge {
                what: format!("target {name}"),
                path: path.to_string(),
                limit: info.length,
            });
        }
        total += n as u64;
        let chunk = &buf[..n];
        digests.update(chunk);
        dest.write_all(chunk).map_err(|source| Error::Write {
            name: name.to_string(),
            source,
        })?;
    }
    if total != info.length {
        return Err(refused(crate::Error::LengthMismatch {
            what: format!("target {name}"),
            expected: info.length,
            found: total,
        }));
    }
    let found = digests.finish();
    for (algorithm, found) in found {
        let expected = &info.hashes[algorithm];
        if !found.eq_ignore_ascii_case(expected) {
            return Err(refused(crate::Error::HashMismatch {
                what: format!("target {name}"),
                algorithm: algorithm.to_string(),
                expected: expected.clone(),
                found,
            }));
        }
    }
    dest.flush().map_err(|source| Error::Write {
        name: name.to_string(),
        source,
    })?;
    Ok(total)
}

/// Whether `local` (e.g. a file already downloaded) has exactly the signed length and hashes
/// of `info`; reads at most one byte more than the signed length. A target without a hash the
/// client supports is an error, as for downloads.
pub fn local_copy_matches(info: &TargetFile, name: &str, local: &mut dyn Read) -> Result<bool> {
    match copy_verified(local, &mut io::sink(), info, name, "local copy") {
        Ok(_) => Ok(true),
        Err(Error::TooLarge { .. }) => Ok(false),
        Err(Error::Target { source, .. })
            if !matches!(*source, crate::Error::MissingHash { .. }) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn info(bytes: &[u8]) -> TargetFile {
        TargetFile::new(
            bytes.len() as u64,
            &hex::encode(Sha256::digest(bytes)),
            None,
        )
    }

    fn copy(src: &[u8], info: &TargetFile) -> (Result<u64>, Vec<u8>) {
        let mut out = Vec::new();
        let got = copy_verified(&mut &src[..], &mut out, info, "t", "targets/t");
        (got, out)
    }

    #[test]
    fn names() {
        for good in [
            "kiosk-1.bundle",
            "a/b.txt",
            "x..y",
            ".hidden",
            "%2e%2e%2e",
            "a%2fb",
        ] {
            TargetName::new(good).unwrap();
        }
        for bad in [
            "",
            "/abs",
            "../x",
            "a/../b",
            "a//b",
            "a/",
            ".",
            "a\\b",
            "a\0",
            "%2e%2e/x",
            "a/%2E%2e/b",
            ".%2e/x",
            "%2e./x",
            "a/%2e",
            "%2E",
        ] {
            let err = TargetName::new(bad).unwrap_err();
            assert!(matches!(err, Error::UnsafeTargetName { .. }), "{bad:?}");
        }
        let n = TargetName::new("kiosk-1.bundle").unwrap();
        assert_eq!(n.repository_path(Some("ab")), "targets/ab.kiosk-1.bundle");
        assert_eq!(n.repository_path(None), "targets/kiosk-1.bundle");
        let n = TargetName::new("dir/file.txt").unwrap();
        assert_eq!(n.repository_path(Some("ab")), "targets/dir/ab.file.txt");
    }

    #[test]
    fn exact_content_passes() {
        let data = vec![7u8; 200_000];
        let (got, out) = copy(&data, &info(&data));
        assert_eq!(got.unwrap(), 200_000);
        assert_eq!(out, data);
        let (got, _) = copy(b"", &info(b""));
        assert_eq!(got.unwrap(), 0);
    }

    #[test]
    fn longer_than_signed_is_cut_at_the_signed_length() {
        let signed = info(b"abc");
        let (got, out) = copy(b"abcd", &signed);
        assert!(matches!(got, Err(Error::TooLarge { limit: 3, .. })));
        assert!(out.len() <= 3);
        // Endless data: a reader that never ends stops at the cap too.
        let mut endless = io::repeat(b'x');
        let got = copy_verified(&mut endless, &mut io::sink(), &signed, "t", "p");
        assert!(matches!(got, Err(Error::TooLarge { .. })));
    }

    /// The verification failure of a refused target copy.
    fn refusal(got: &Result<u64>) -> &crate::Error {
        match got {
            Err(err @ Error::Target { .. }) => err.tuf_error().unwrap(),
            other => panic!("expected a refused target, got {other:?}"),
        }
    }

    #[test]
    fn short_or_altered_content_is_refused() {
        let signed = info(b"abc");
        let (got, _) = copy(b"ab", &signed);
        assert!(matches!(refusal(&got), crate::Error::LengthMismatch { .. }));
        let (got, _) = copy(b"abd", &signed);
        assert!(matches!(refusal(&got), crate::Error::HashMismatch { .. }));
    }

    #[test]
    fn every_supported_hash_listed_is_checked_and_one_is_required() {
        let sha512 = |b: &[u8]| hex::encode(Sha512::digest(b));
        let mut both = info(b"abc");
        both.hashes.insert("sha512".to_string(), sha512(b"abc"));
        let (got, out) = copy(b"abc", &both);
        assert_eq!(got.unwrap(), 3);
        assert_eq!(out, b"abc");
        both.hashes.insert("sha512".to_string(), sha512(b"abd"));
        let (got, _) = copy(b"abc", &both);
        assert!(
            matches!(refusal(&got), crate::Error::HashMismatch { algorithm, .. } if algorithm == "sha512")
        );
        // sha512 alone is enough, and checked.
        let only512 = TargetFile {
            hashes: BTreeMap::from([("sha512".to_string(), sha512(b"abc"))]),
            ..info(b"abc")
        };
        let (got, _) = copy(b"abc", &only512);
        assert_eq!(got.unwrap(), 3);
        let (got, _) = copy(b"abd", &only512);
        assert!(matches!(refusal(&got), crate::Error::HashMismatch { .. }));
        assert!(local_copy_matches(&only512, "t", &mut &b"abc"[..]).unwrap());
        // An unsupported algorithm is skipped beside a supported one, refused alone.
        let mut with_unknown = only512.clone();
        with_unknown
            .hashes
            .insert("blake2b".to_string(), "00".to_string());
        assert_eq!(copy(b"abc", &with_unknown).0.unwrap(), 3);
        let unknown_only = TargetFile {
            hashes: BTreeMap::from([("blake2b".to_string(), "00".to_string())]),
            ..info(b"abc")
        };
        let (got, out) = copy(b"abc", &unknown_only);
        assert!(matches!(refusal(&got), crate::Error::MissingHash { .. }));
        assert!(out.is_empty(), "nothing is written before the check");
        assert!(local_copy_matches(&unknown_only, "t", &mut &b"abc"[..]).is_err());
    }

    #[test]
    fn local_copies() {
        let signed = info(b"abc");
        assert!(local_copy_matches(&signed, "t", &mut &b"abc"[..]).unwrap());
        for other in [&b"ab"[..], b"abd", b"abcd"] {
            assert!(!local_copy_matches(&signed, "t", &mut &other[..]).unwrap());
        }
    }
}
