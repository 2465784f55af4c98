//! Where a repository goes: `s3://bucket[/prefix]`, an endpoint for S3-compatible servers, and
//! the credentials to write there.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Error;

/// An S3 bucket and the prefix the repository lives under (empty: the bucket's root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub bucket: String,
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; `None`: AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
}

impl Destination {
    /// Parses `s3://bucket[/prefix]`; the region defaults to `us-east-1` (S3-compatible servers
    /// name their own, for example Garage's `garage`).
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Destination {
            url: url.to_string(),
            why: why.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("give it as s3://bucket or s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad(
                "the bucket name must be 3 to 63 lowercase letters, digits, dots or dashes",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
            return Err(bad("the prefix must not contain empty, `.` or `..` parts"));
        }
        Ok(Destination {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: None,
            region: "us-east-1".into(),
        })
    }

    /// The object key of a repository file (`metadata/1.root.json` under the prefix).
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }
}

/// An access key that may write to the bucket. Never printed.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

const KEY_ID: &str = "AWS_ACCESS_KEY_ID";
const SECRET: &str = "AWS_SECRET_ACCESS_KEY";

impl Credentials {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` from the environment.
    pub fn from_env() -> Result<Self, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var(KEY_ID), var(SECRET)) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
                access_key_id,
                secret_access_key,
            }),
            _ => Err(Error::Destination {
                url: "(credentials)".into(),
                why: format!("no credentials: set {KEY_ID} and {SECRET}, or pass --credentials-file with those two lines"),
            }),
        }
    }

    /// A file of `AWS_ACCESS_KEY_ID=...` and `AWS_SECRET_ACCESS_KEY=...` lines (`#` comments),
    /// readable by its owner only.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let bad = |why: String| Error::Destination {
            url: path.display().to_string(),
            why,
        };
        let meta = std::fs::metadata(path).map_err(Error::io(path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(bad(format!(
                "the credentials file is readable by others (mode {:o}); run chmod 600 on it",
                meta.permissions().mode() & 0o777
            )));
        }
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        Self::parse(&text).map_err(bad)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let (mut id, mut secret) = (None, None);
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(format!("line {} is not NAME=value", number + 1));
            };
            let value = value.trim().trim_matches('"').to_string();
            match name.trim() {
                KEY_ID => id = Some(value),
                SECRET => secret = Some(value),
                other => {
                    return Err(format!(
                        "line {}: unknown name {other}; only {KEY_ID} and {SECRET}",
                        number + 1
                    ))
                }
            }
        }
        match (id, secret) {
            (Some(access_key_id), Some(secret_access_key))
                if !access_key_id.is_empty() && !secret_access_key.is_empty() =>
            {
                Ok(Credentials {
                    access_key_id,
                    secret_access_key,
                })
            }
            _ => Err(format!(
                "the credentials file needs both {KEY_ID} and {SECRET}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let d = Destination::parse("s3://fleet-repo/stable/v1/").unwrap();
        assert_eq!(
            (d.bucket.as_str(), d.prefix.as_str()),
            ("fleet-repo", "stable/v1")
        );
        assert_eq!(
            d.key("metadata/timestamp.json"),
            "stable/v1/metadata/timestamp.json"
        );
        let d = Destination::parse("s3://fleet-repo").unwrap();
        assert_eq!(d.key("targets/a"), "targets/a");
        for bad in [
            "https://fleet-repo",
            "s3://",
            "s3://Fleet",
            "s3://ab",
            "s3://repo/a/../b",
            "s3://repo/a//b",
        ] {
            assert!(
                matches!(Destination::parse(bad), Err(Error::Destination { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn credentials_files() {
        let c = Credentials::parse(
            "# fleet publisher\nAWS_ACCESS_KEY_ID=GK1\nAWS_SECRET_ACCESS_KEY=\"s3cr3t\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("GK1", "s3cr3t")
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(Credentials::parse("AWS_ACCESS_KEY_ID=GK1\n")
            .unwrap_err()
            .contains("needs both"));
        assert!(Credentials::parse("TOKEN=x\n")
            .unwrap_err()
            .contains("unknown name TOKEN"));
        assert!(Credentials::parse("junk\n").unwrap_err().contains("line 1"));
    }

    #[test]
    fn a_credentials_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(&path, "AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Credentials::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Credentials::from_file(&path).unwrap().access_key_id, "a");
    }
}
