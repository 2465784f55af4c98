//! The production update source: `flipside_tuf`'s client (TUF 1.0 section 5) with its trusted
//! metadata in `STATE_DIR/metadata`, started from the pinned root, reaching the repository
//! through [`MirrorTransport`] (HTTP(S) with the network policy, or a directory).

use std::io::Read;
use std::ops::Range;
use std::path::Path;

use chrono::Utc;
use flipside_tuf::client::transport::{check_path, open_regular};
use flipside_tuf::client::{
    Client, Error as ClientError, Limits, MetadataStore, Refreshed, TargetName, Transport,
    TransportError,
};

use crate::config::Location;
use crate::error::{Error, Result};
use crate::file::read_capped;
use crate::http::{open_range, ByteStream, Http};
use crate::mirrors::MirrorSet;
use crate::source::{SourceSpec, TargetInfo, UpdateSource};

/// The TUF client's transport: every file asked from the mirrors by [`MirrorSet`]'s rule, one
/// try each.
pub struct MirrorTransport {
    mirrors: MirrorSet,
    http: Http,
}

impl MirrorTransport {
    pub fn new(mirrors: MirrorSet, http: Http) -> Self {
        MirrorTransport { mirrors, http }
    }

    fn open(
        &self,
        location: Location,
        path: &str,
    ) -> std::result::Result<Box<dyn Read>, TransportError> {
        match location {
            Location::Url(url) => match self.http.open_unsized(&url) {
                Ok(stream) => Ok(Box::new(stream)),
                Err(Error::HttpStatus {
                    status: 404 | 410, ..
                }) => Err(TransportError::NotFound {
                    path: path.to_string(),
                }),
                Err(e) => Err(TransportError::Failed {
                    path: path.to_string(),
                    source: Box::new(e),
                }),
            },
            // Not a plain open: a FIFO or a link on a stick must not hang or redirect.
            Location::File(file) => match open_regular(&file) {
                Ok(f) => Ok(Box::new(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(TransportError::NotFound {
                        path: path.to_string(),
                    })
                }
                Err(e) => Err(TransportError::io(path, e)),
            },
        }
    }
}

impl Transport for MirrorTransport {
    fn fetch(
        &self,
        path: &str,
        _max_len: u64,
    ) -> std::result::Result<Box<dyn Read + '_>, TransportError> {
        check_path(path)?;
        let locations = self.mirrors.join(path);
        let mut failover = self.mirrors.failover();
        let mut not_found = false;
        let mut last: Option<TransportError> = None;
        let mut mirror = Some(0).filter(|_| !locations.is_empty());
        while let Some(m) = mirror {
            match self.open(locations[m].clone(), path) {
                Ok(reader) => return Ok(reader),
                Err(TransportError::NotFound { .. }) => not_found = true,
                Err(e) => {
                    log::warn!("mirror {}: {e}", locations[m]);
                    last = Some(e);
                }
            }
            mirror = failover.failed(true);
        }
        // "Not found" only when no mirror failed otherwise: the root-chain walk stops on it.
        match last {
            Some(e) if !not_found || self.mirrors.len() == 1 => Err(e),
            Some(_) | None => Err(TransportError::NotFound {
                path: path.to_string(),
            }),
        }
    }
}

/// [`UpdateSource`] over the TUF client.
pub struct TufSource {
    client: Client,
    mirrors: MirrorSet,
    spec: SourceSpec,
    stored_root: Option<StoredRoot>,
    /// Bundles are read with Range requests through this client (the transport has a clone:
    /// one record of servers that ignore Range).
    http: Http,
}

impl TufSource {
    /// A refresh failure, naming the stored root when it, not the pinned one, may be the cause.
    fn refused(&self, source: ClientError) -> Error {
        match &self.stored_root {
            Some(root) if crate::error::tuf_class(&source) == crate::ExitClass::Signature => {
                Error::StoredRootDiffers {
                    root: Box::new(root.clone()),
                    store: self.spec.metadata_dir.clone(),
                    source,
                }
            }
            _ => tuf(source),
        }
    }
}

/// Builds the production source: the metadata store is initialised from the pinned root the
/// first time and kept across runs (so versions never go back).
pub fn tuf_source(spec: &SourceSpec) -> Result<Box<dyn UpdateSource>> {
    let pinned = read_pinned_root(&spec.trusted_root)?;
    let store = match MetadataStore::open(&spec.metadata_dir) {
        // First run: the pinned root becomes the trusted one, once it verifies. Its failure
        // is the configuration's (the store does not exist yet), so it names the pinned file.
        Err(ClientError::NotInitialised { .. }) => MetadataStore::init(&spec.metadata_dir, &pinned)
            .map_err(|e| match e {
                ClientError::TrustedRoot { source, .. } => Error::TrustedRootInvalid {
                    path: spec.trusted_root.clone(),
                    why: source.to_string(),
                },
                other => tuf(other),
            })?,
        opened => opened.map_err(tuf)?,
    };
    let stored_root = StoredRoot::differing(&store, &pinned, spec);
    let mirrors = MirrorSet::new(spec.mirrors.clone());
    let http = Http::new(spec.network.clone())?;
    let client = client_for(&http, mirrors.clone(), store);
    Ok(Box::new(TufSource {
        client,
        mirrors,
        spec: spec.clone(),
        stored_root,
        http,
    }))
}

/// The store's root when it differs from the pinned one without being newer: a root pinned
/// wrongly on the first run stays trusted after the configuration is fixed, so a refusal must
/// say that it is the stored root, not the pinned one, that verified (or failed) it.
#[derive(Clone, Debug)]
pub struct StoredRoot {
    pub stored: std::path::PathBuf,
    pub stored_version: u64,
    pub pinned: std::path::PathBuf,
    pub pinned_version: u64,
}

impl StoredRoot {
    fn differing(store: &MetadataStore, pinned: &[u8], spec: &SourceSpec) -> Option<StoredRoot> {
        let stored = store.read(flipside_tuf::Role::Root).ok().flatten()?;
        let version = |bytes: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()?
                .pointer("/signed/version")?
                .as_u64()
        };
        let (stored_version, pinned_version) = (version(&stored)?, version(pinned)?);
        // A newer stored root is the normal result of rotations since the pin.
        (stored != pinned && stored_version <= pinned_version).then(|| StoredRoot {
            stored: store.path(flipside_tuf::Role::Root),
            stored_version,
            pinned: spec.trusted_root.clone(),
            pinned_version,
        })
    }
}

/// The pinned root metadata, read with the cap of any root metadata.
pub fn read_pinned_root(path: &Path) -> Result<Vec<u8>> {
    read_capped(path, Limits::default().max_root_size).map_err(|source| {
        if source.kind() == std::io::ErrorKind::FileTooLarge {
            Error::TrustedRootInvalid {
                path: path.to_path_buf(),
                why: source.to_string(),
            }
        } else {
            Error::TrustedRootRead {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn client_for(http: &Http, mirrors: MirrorSet, store: MetadataStore) -> Client {
    Client::new(
        store,
        MirrorTransport::new(mirrors, http.clone()),
        Limits::default(),
    )
}

/// Whether a refresh failure may be the mirror's fault (garbage, stale or oversized metadata,
/// a missing file, a transfer error), so that another mirror deserves a try; a failure of the
/// device's own store does not.
fn mirror_may_be_at_fault(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Metadata { .. }
            | ClientError::TooLarge { .. }
            | ClientError::Missing { .. }
            | ClientError::Fetch { .. }
    )
}

fn tuf(source: ClientError) -> Error {
    Error::Tuf { source }
}

impl TufSource {
    /// Refreshes from each mirror in turn until one serves metadata that verifies. The
    /// transport moves to the next mirror only when a fetch fails; metadata that fetched fine
    /// but does not verify (a malicious or stale mirror) is retried here with the mirrors
    /// asked from the next one on. Nothing unverified was stored, so every attempt starts from
    /// the same trusted state; the first error is the one reported.
    fn refresh_any_mirror(&mut self) -> Result<Refreshed> {
        let first = match self.client.refresh(Utc::now()) {
            Ok(refreshed) => return Ok(refreshed),
            Err(e) if self.mirrors.len() > 1 && mirror_may_be_at_fault(&e) => e,
            Err(e) => return Err(self.refused(e)),
        };
        log::warn!(
            "mirror {}: {first}",
            self.mirrors.get(0).map_or(String::new(), |m| m.to_string())
        );
        let mut failover = self.mirrors.failover();
        while let Some(start) = failover.failed(true) {
            let store = MetadataStore::open(&self.spec.metadata_dir).map_err(tuf)?;
            let mut client = client_for(&self.http, self.mirrors.starting_at(start), store);
            match client.refresh(Utc::now()) {
                Ok(refreshed) => {
                    self.client = client;
                    return Ok(refreshed);
                }
                Err(e) if mirror_may_be_at_fault(&e) => {
                    let mirror = self
                        .mirrors
                        .get(start)
                        .map_or(String::new(), |m| m.to_string());
                    log::warn!("mirror {mirror}: {e}");
                }
                Err(e) => return Err(self.refused(e)),
            }
        }
        Err(self.refused(first))
    }
}

impl UpdateSource for TufSource {
    fn refresh(&mut self) -> Result<Vec<TargetInfo>> {
        let refreshed = self.refresh_any_mirror()?;
        log::info!(
            "repository metadata: root {}, timestamp {}, snapshot {}, targets {}",
            refreshed.versions.root,
            refreshed.versions.timestamp,
            refreshed.versions.snapshot,
            refreshed.versions.targets
        );
        let mut out = Vec::new();
        for (name, file) in self.client.targets().map_err(tuf)? {
            let sha256 = file.sha256(name).map_err(|e| Error::Signature {
                what: format!("target {name}"),
                why: e.to_string(),
            })?;
            // Such a target could never be downloaded (its name is no safe path): it is not
            // offered, rather than failing every refresh of the repository.
            let name = match TargetName::new(name) {
                Ok(name) => name,
                Err(e) => {
                    log::warn!("ignoring a target: {e}");
                    continue;
                }
            };
            out.push(TargetInfo {
                name,
                length: file.length,
                sha256,
                custom: file.custom.clone(),
            });
        }
        Ok(out)
    }

    fn fetch_target(&mut self, target: &TargetInfo) -> Result<Vec<u8>> {
        self.client
            .fetch_target_bytes(target.name.as_str())
            .map_err(tuf)
    }

    fn target_locations(&self, target: &TargetInfo) -> Vec<Location> {
        let path = self
            .client
            .target_path(target.name.as_str())
            .unwrap_or_else(|_| target.repository_path());
        self.mirrors.join(&path)
    }

    fn open_range(
        &self,
        location: &Location,
        range: Range<u64>,
        total: u64,
    ) -> Result<Box<dyn ByteStream>> {
        open_range(&self.http, location, range, total)
    }

    fn ignores_range(&self, location: &Location) -> bool {
        match location {
            Location::Url(url) => self.http.ignores_range(url),
            Location::File(_) => false,
        }
    }
}
