//! The HTTP clients: one for every mirror without settings of its own, and one per mirror with
//! credentials or TLS settings ([`MirrorAccess`]); a request goes through the client of the
//! mirror its URL is below. Secrets are read once, from files only the owner may read, and
//! never shown (their `Debug` is redacted); reqwest drops `Authorization` on redirects to
//! another host.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use reqwest::blocking::{Client, ClientBuilder, RequestBuilder};
use url::Url;

use crate::config::{MirrorAccess, NetworkPolicy};
use crate::error::{Error, Result};
use crate::redirect;

/// Largest secret or PEM file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;

#[derive(Clone, Debug)]
pub(super) struct Clients {
    default: Client,
    mirrors: Vec<MirrorClient>,
}

#[derive(Clone, Debug)]
struct MirrorClient {
    base: Url,
    client: Client,
    auth: Option<Auth>,
}

#[derive(Clone)]
enum Auth {
    Bearer(String),
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Bearer(_) => "Bearer <redacted>",
            Auth::Basic { .. } => "Basic <redacted>",
        })
    }
}

impl Clients {
    pub(super) fn new(policy: &NetworkPolicy) -> Result<Self> {
        let default = build(builder(policy, policy.ca_file.as_deref())?)?;
        let mirrors = policy
            .access
            .iter()
            .map(|a| mirror_client(policy, a))
            .collect::<Result<Vec<_>>>()?;
        Ok(Clients { default, mirrors })
    }

    /// The client and credentials of the mirror `url` is below (the longest base).
    fn route(&self, url: &Url) -> (&Client, Option<&Auth>) {
        self.mirrors
            .iter()
            .filter(|m| url.as_str().starts_with(m.base.as_str()))
            .max_by_key(|m| m.base.as_str().len())
            .map_or((&self.default, None), |m| (&m.client, m.auth.as_ref()))
    }

    pub(super) fn get(&self, url: &Url) -> RequestBuilder {
        let (client, auth) = self.route(url);
        with_auth(client.get(url.clone()), auth)
    }

    pub(super) fn post(&self, url: &Url) -> RequestBuilder {
        let (client, auth) = self.route(url);
        with_auth(client.post(url.clone()), auth)
    }
}

fn with_auth(request: RequestBuilder, auth: Option<&Auth>) -> RequestBuilder {
    match auth {
        None => request,
        Some(Auth::Bearer(token)) => request.bearer_auth(token),
        Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
    }
}

/// Timeouts, the redirect rules of every mirror, and the trusted CAs: `ca` alone when given,
/// else the system's store.
fn builder(policy: &NetworkPolicy, ca: Option<&Path>) -> Result<ClientBuilder> {
    let rules = policy.redirects.clone();
    let redirect = reqwest::redirect::Policy::custom(move |attempt| {
        let first = attempt.previous().first().unwrap_or(attempt.url()).clone();
        let hops = attempt.previous().len();
        match redirect::check(rules.for_url(&first), &first, attempt.url(), hops) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    });
    let mut builder = Client::builder()
        .connect_timeout(policy.connect_timeout)
        // The blocking client applies this to waiting for the headers and to every read.
        .timeout(policy.read_timeout)
        .redirect(redirect)
        .user_agent(concat!("flipside/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca {
        builder = builder.tls_built_in_root_certs(false);
        for cert in ca_certificates(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

fn build(builder: ClientBuilder) -> Result<Client> {
    builder.build().map_err(|e| Error::Internal {
        what: format!("cannot build the HTTP client: {e}"),
    })
}

fn mirror_client(policy: &NetworkPolicy, access: &MirrorAccess) -> Result<MirrorClient> {
    let ca = access.ca.as_deref().or(policy.ca_file.as_deref());
    let mut builder = builder(policy, ca)?;
    if let (Some(cert), Some(key)) = (&access.client_cert, &access.client_key) {
        let mut pem = read_file(cert, "client_cert", false)?;
        pem.extend(read_file(key, "client_key", true)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| Error::Credentials {
            path: cert.clone(),
            field: "client_cert",
            why: format!("not a PEM certificate and key: {e}"),
        })?;
        builder = builder.identity(identity);
    }
    let auth = match (&access.token_file, &access.credentials_file) {
        (Some(path), _) => Some(Auth::Bearer(secret_text(path, "token_file")?)),
        (None, Some(path)) => {
            let text = secret_text(path, "credentials_file")?;
            let (user, password) = text.split_once(':').ok_or_else(|| Error::Credentials {
                path: path.clone(),
                field: "credentials_file",
                why: "expected user:password".into(),
            })?;
            Some(Auth::Basic {
                user: user.to_string(),
                password: password.to_string(),
            })
        }
        (None, None) => None,
    };
    Ok(MirrorClient {
        base: access.base.clone(),
        client: build(builder)?,
        auth,
    })
}

/// A secret file's one line, trimmed.
fn secret_text(path: &Path, field: &'static str) -> Result<String> {
    let bytes = read_file(path, field, true)?;
    let text = String::from_utf8(bytes)
        .map(|t| t.trim().to_string())
        .ok()
        .filter(|t| !t.is_empty() && !t.contains(['\n', '\r']))
        .ok_or_else(|| Error::Credentials {
            path: path.to_path_buf(),
            field,
            why: "expected one line of text".into(),
        })?;
    Ok(text)
}

/// Reads a file of at most [`MAX_SECRET_FILE`] bytes; a `secret` one must be a regular file
/// that neither group nor others may read or write.
fn read_file(path: &Path, field: &'static str, secret: bool) -> Result<Vec<u8>> {
    let bad = |why: String| Error::Credentials {
        path: path.to_path_buf(),
        field,
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() || meta.len() > MAX_SECRET_FILE {
        return Err(bad(format!(
            "not a regular file of at most {MAX_SECRET_FILE} bytes"
        )));
    }
    if secret && meta.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "group or others may access it (mode {:o}): chmod 600 it",
            meta.mode() & 0o777
        )));
    }
    std::fs::read(path).map_err(|e| bad(e.to_string()))
}

/// The certificates of a PEM file of certificate authorities.
fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let invalid = |why: String| Error::CaFile {
        path: path.to_path_buf(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("it holds no PEM certificate".into()));
    }
    Ok(certs)
}
