//! A repository in memory: verified targets as given, files served from memory by any number
//! of mirrors, some of which may fail or serve damaged bytes. The second implementation of
//! [`UpdateSource`], for the tests of the install steps.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use flipside_tuf::client::TargetName;
use sha2::{Digest, Sha256};

use super::{TargetInfo, UpdateSource};
use crate::config::Location;
use crate::error::{Error, Result};
use crate::http::ByteStream;

/// Targets and their bytes, served by `mirrors` mirrors.
#[derive(Debug, Default)]
pub struct MemorySource {
    pub targets: Vec<TargetInfo>,
    files: BTreeMap<String, Vec<u8>>,
    pub mirrors: usize,
    /// Mirrors that answer every range with 404.
    pub missing_on: BTreeSet<usize>,
    /// Mirrors that serve every file with this byte offset flipped.
    pub damaged_on: BTreeMap<usize, u64>,
    /// Every range opened: mirror and bytes.
    pub opened: RefCell<Vec<(usize, Range<u64>)>>,
    /// Targets fetched whole (indexes), by name.
    pub fetched: RefCell<Vec<String>>,
}

impl MemorySource {
    pub fn new() -> MemorySource {
        MemorySource {
            mirrors: 1,
            ..MemorySource::default()
        }
    }

    /// Adds a target with its bytes: its signed length and sha256 are theirs.
    pub fn add(&mut self, name: &str, bytes: Vec<u8>, custom: serde_json::Value) -> TargetInfo {
        let target = TargetInfo {
            name: TargetName::new(name).expect("a safe target name"),
            length: bytes.len() as u64,
            sha256: Sha256::digest(&bytes).into(),
            custom: Some(custom),
        };
        self.targets.push(target.clone());
        self.files.insert(name.to_string(), bytes);
        target
    }

    /// The mirror and target name of a location this source gave.
    fn parse(location: &Location) -> Option<(usize, String)> {
        let Location::File(path) = location else {
            return None;
        };
        let text = path.to_str()?;
        let (mirror, name) = text.strip_prefix("memory-")?.split_once("/targets/")?;
        Some((mirror.parse().ok()?, name.to_string()))
    }
}

impl UpdateSource for MemorySource {
    fn refresh(&mut self) -> Result<Vec<TargetInfo>> {
        Ok(self.targets.clone())
    }

    fn fetch_target(&mut self, target: &TargetInfo) -> Result<Vec<u8>> {
        self.fetched.borrow_mut().push(target.name.to_string());
        let bytes = (self.files.get(target.name.as_str()).cloned()).unwrap_or_default();
        if <[u8; 32]>::from(Sha256::digest(&bytes)) != target.sha256 {
            return Err(Error::DataMismatch {
                what: target.name.to_string(),
                expected_what: "sha256",
                expected: hex::encode(target.sha256),
                found: hex::encode(Sha256::digest(&bytes)),
            });
        }
        Ok(bytes)
    }

    fn target_locations(&self, target: &TargetInfo) -> Vec<Location> {
        (0..self.mirrors)
            .map(|m| Location::File(PathBuf::from(format!("memory-{m}/targets/{}", target.name))))
            .collect()
    }

    fn open_range(
        &self,
        location: &Location,
        range: Range<u64>,
        total: u64,
    ) -> Result<Box<dyn ByteStream>> {
        let (mirror, name) = Self::parse(location).ok_or_else(|| Error::Internal {
            what: format!("{location} is not a location of the memory source"),
        })?;
        self.opened.borrow_mut().push((mirror, range.clone()));
        let file = self.files.get(&name).filter(|f| f.len() as u64 == total);
        let Some(file) = file.filter(|_| !self.missing_on.contains(&mirror)) else {
            return Err(Error::HttpStatus {
                url: location.to_string(),
                status: 404,
                hint: "not in the memory source",
            });
        };
        let mut bytes = file.clone();
        if let Some(&at) = self.damaged_on.get(&mirror) {
            if let Some(b) = usize::try_from(at).ok().and_then(|i| bytes.get_mut(i)) {
                *b ^= 0xff;
            }
        }
        let span = usize::try_from(range.start).unwrap_or(usize::MAX)
            ..usize::try_from(range.end).unwrap_or(usize::MAX);
        Ok(Box::new(Bytes {
            bytes: bytes.get(span).unwrap_or_default().to_vec(),
            at: 0,
        }))
    }

    fn ignores_range(&self, _location: &Location) -> bool {
        false
    }
}

/// Bytes served in small reads, as a network would.
struct Bytes {
    bytes: Vec<u8>,
    at: usize,
}

impl ByteStream for Bytes {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = buf.len().min(self.bytes.len() - self.at).min(4096);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
