//! The object store at the edge: list, compare, put (multipart for large files) and delete.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{
    Attribute, Attributes, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use crate::destination::{Credentials, Destination};
use crate::plan::Put;
use crate::Error;

/// Files at least this large go up in parts of this size, several at a time; memory stays
/// bounded by `PART * PARTS_IN_FLIGHT` whatever the bundle's size.
const PART: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 4;

pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    destination: Destination,
}

impl Remote {
    pub(crate) fn connect(
        destination: &Destination,
        credentials: &Credentials,
    ) -> Result<Self, Error> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&destination.bucket)
            .with_region(&destination.region)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key);
        if let Some(endpoint) = &destination.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| Error::Destination {
            url: format!("s3://{}/{}", destination.bucket, destination.prefix),
            why: e.to_string(),
        })?;
        Ok(Remote {
            store: Arc::new(store),
            destination: destination.clone(),
        })
    }

    fn key(&self, relative: &str) -> Key {
        Key::from(self.destination.key(relative))
    }

    /// Every object under the prefix: key relative to the prefix -> size.
    pub(crate) async fn list(&self) -> Result<BTreeMap<String, u64>, Error> {
        let prefix = (!self.destination.prefix.is_empty())
            .then(|| Key::from(self.destination.prefix.as_str()));
        let objects: Vec<_> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|source| Error::Store {
                operation: "listing",
                key: self.destination.key(""),
                visible: false,
                source: Box::new(source),
            })?;
        let strip = if self.destination.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.destination.prefix)
        };
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let key = meta.location.to_string();
                key.strip_prefix(&strip).map(|k| (k.to_string(), meta.size))
            })
            .collect())
    }

    pub(crate) async fn get(&self, relative: &str, visible: bool) -> Result<Vec<u8>, Error> {
        let failed = |source| Error::Store {
            operation: "reading",
            key: self.destination.key(relative),
            visible,
            source: Box::new(source),
        };
        let result = self.store.get(&self.key(relative)).await.map_err(failed)?;
        Ok(result.bytes().await.map_err(failed)?.to_vec())
    }

    /// Puts one file with its cache policy; large files in parts.
    pub(crate) async fn put(&self, file: &Path, put: &Put, visible: bool) -> Result<(), Error> {
        let failed = |source| Error::Store {
            operation: "uploading",
            key: self.destination.key(&put.key),
            visible,
            source: Box::new(source),
        };
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::CacheControl, put.cache.header().into());
        let content_type = if put.key.ends_with(".json") {
            "application/json"
        } else {
            "application/octet-stream"
        };
        attributes.insert(Attribute::ContentType, content_type.into());
        let key = self.key(&put.key);
        if put.size < PART as u64 {
            let bytes = tokio::fs::read(file).await.map_err(Error::io(file))?;
            let options = PutOptions {
                attributes,
                ..Default::default()
            };
            self.store
                .put_opts(&key, PutPayload::from(bytes), options)
                .await
                .map_err(failed)?;
            return Ok(());
        }
        let options = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let upload = self
            .store
            .put_multipart_opts(&key, options)
            .await
            .map_err(failed)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut reader = tokio::fs::File::open(file).await.map_err(Error::io(file))?;
        let mut buffer = vec![0u8; PART];
        loop {
            let n = match read_full(&mut reader, &mut buffer).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Error::io(file)(e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(source) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(failed(source));
            }
            writer.write(&buffer[..n]);
        }
        // An upload that is not completed stays invisible; S3 discards its parts.
        writer.finish().await.map_err(failed)?;
        Ok(())
    }

    pub(crate) async fn delete(&self, relative: &str) -> Result<(), Error> {
        self.store
            .delete(&self.key(relative))
            .await
            .map_err(|source| Error::Store {
                operation: "removing",
                key: self.destination.key(relative),
                visible: true,
                source: Box::new(source),
            })
    }
}

async fn read_full(reader: &mut tokio::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let n = reader.read(&mut buffer[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
