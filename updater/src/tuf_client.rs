//! The production update source: `flipside_tuf`'s client (TUF 1.0 section 5) with its trusted
//! metadata in `STATE_DIR/metadata`, started from the pinned root, reaching the repository
//! through [`MirrorTransport`] (HTTP(S) with the network policy, or a directory).

use std::fs::File;
use std::io::Read;

use chrono::Utc;
use flipside_tuf::client::transport::check_path;
use flipside_tuf::client::{
    Client, Error as ClientError, Limits, MetadataStore, Transport, TransportError,
};

use crate::config::{Location, Mirror};
use crate::error::{Error, Result};
use crate::http::Http;
use crate::source::{SourceSpec, TargetInfo, UpdateSource};

/// The mirrors of one repository, tried in order for every file.
pub struct MirrorTransport {
    mirrors: Vec<Mirror>,
    http: Http,
}

impl MirrorTransport {
    pub fn new(mirrors: Vec<Mirror>, http: Http) -> Self {
        MirrorTransport { mirrors, http }
    }
}

impl Transport for MirrorTransport {
    fn fetch(
        &self,
        path: &str,
        _max_len: u64,
    ) -> std::result::Result<Box<dyn Read + '_>, TransportError> {
        check_path(path)?;
        let mut not_found = false;
        let mut last: Option<TransportError> = None;
        for mirror in &self.mirrors {
            let opened: std::result::Result<Box<dyn Read>, TransportError> = match mirror.join(path)
            {
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
                Location::File(file) => match File::open(&file) {
                    Ok(f) => Ok(Box::new(f)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(TransportError::NotFound {
                            path: path.to_string(),
                        })
                    }
                    Err(e) => Err(TransportError::io(path, e)),
                },
            };
            match opened {
                Ok(reader) => return Ok(reader),
                Err(TransportError::NotFound { .. }) => not_found = true,
                Err(e) => {
                    log::warn!("mirror {mirror}: {e}");
                    last = Some(e);
                }
            }
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
    mirrors: Vec<Mirror>,
}

/// Builds the production source: the metadata store is initialised from the pinned root the
/// first time and kept across runs (so versions never go back).
pub fn tuf_source(spec: &SourceSpec) -> Result<Box<dyn UpdateSource>> {
    let pinned = std::fs::read(&spec.trusted_root).map_err(|source| Error::ConfigRead {
        path: spec.trusted_root.clone(),
        source,
    })?;
    let store = MetadataStore::open_or_init(&spec.metadata_dir, &pinned).map_err(tuf)?;
    let http = Http::new(spec.network)?;
    let client = Client::new(
        store,
        MirrorTransport::new(spec.mirrors.clone(), http),
        Limits::default(),
    );
    Ok(Box::new(TufSource {
        client,
        mirrors: spec.mirrors.clone(),
    }))
}

fn tuf(source: ClientError) -> Error {
    Error::Tuf { source }
}

impl UpdateSource for TufSource {
    fn refresh(&mut self) -> Result<Vec<TargetInfo>> {
        let refreshed = self.client.refresh(Utc::now()).map_err(tuf)?;
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
            out.push(TargetInfo {
                name: name.clone(),
                length: file.length,
                sha256,
                custom: file.custom.clone(),
            });
        }
        Ok(out)
    }

    fn fetch_target(&mut self, target: &TargetInfo) -> Result<Vec<u8>> {
        self.client.fetch_target_bytes(&target.name).map_err(tuf)
    }

    fn target_locations(&self, target: &TargetInfo) -> Vec<Location> {
        let path = self
            .client
            .target_path(&target.name)
            .unwrap_or_else(|_| target.repository_path());
        self.mirrors.iter().map(|m| m.join(&path)).collect()
    }
}
