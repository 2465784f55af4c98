//! Downloads over HTTP(S) with blocking reqwest (rustls, no native-tls): exact lengths, Range
//! requests checked against `Content-Range`, a per-read timeout and a low-speed limit like
//! curl's `--speed-limit`/`--speed-time`, so a server that trickles bytes ends with an error
//! in bounded time. Local files are read through the same [`ByteStream`] interface.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use url::Url;

use flipside_tuf::client::transport::open_regular;

use crate::config::{Location, NetworkPolicy};
use crate::error::{Error, Result};
use crate::redirect;

/// A source of bytes that fails with a classified [`Error`] (read from a network thread).
pub trait ByteStream: Send {
    /// Reads some bytes; 0 means the stream ended.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;
}

/// Fills `buf` from `stream`; an early end is [`Error::BodyEnded`].
pub fn read_full(stream: &mut dyn ByteStream, buf: &mut [u8], what: &str) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let n = stream.read(&mut buf[got..])?;
        if n == 0 {
            return Err(Error::BodyEnded {
                url: what.to_string(),
                expected: buf.len() as u64,
                got: got as u64,
                why: "the stream ended early".into(),
            });
        }
        got += n;
    }
    Ok(())
}

/// The HTTP client with the network policy applied.
#[derive(Clone, Debug)]
pub struct Http {
    client: Client,
    policy: NetworkPolicy,
    /// Files whose server answered a Range request with the whole file (`200`).
    whole_files: Arc<Mutex<BTreeSet<String>>>,
}

impl Http {
    /// Builds the client: connect timeout, per-read timeout, the mirrors' redirect rules
    /// ([`crate::redirect`]), and `network.ca_file` as the only trusted roots when set.
    pub fn new(policy: NetworkPolicy) -> Result<Http> {
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
        if let Some(path) = &policy.ca_file {
            builder = builder.tls_built_in_root_certs(false);
            for cert in ca_certificates(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| Error::Internal {
            what: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Http {
            client,
            policy,
            whole_files: Arc::default(),
        })
    }

    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// Whether the server of `url` answered a Range request with the whole file: each further
    /// request would send everything up to the range again.
    pub fn ignores_range(&self, url: &Url) -> bool {
        self.whole_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(url.as_str())
    }

    /// Opens bytes `range` of a file whose signed length is `total` (the whole file when
    /// `range` is `None`). The stream yields exactly the requested bytes or fails: a `206` must
    /// carry the matching `Content-Range`; a `200` (server without Range support) must have
    /// the signed length, and the bytes before the range are skipped.
    pub fn open(&self, url: &Url, range: Option<Range<u64>>, total: u64) -> Result<HttpStream> {
        let wanted = range.clone().unwrap_or(0..total);
        if wanted.start > wanted.end || wanted.end > total {
            return Err(Error::Internal {
                what: format!("range {wanted:?} outside a {total}-byte file"),
            });
        }
        let mut request = self.client.get(url.clone());
        if range.is_some() {
            request = request.header(
                RANGE,
                format!("bytes={}-{}", wanted.start, wanted.end.saturating_sub(1)),
            );
        }
        let response = request.send().map_err(|source| Error::Network {
            url: url.to_string(),
            source,
        })?;
        let status = response.status();
        let bad = |why: String| Error::BadResponse {
            url: url.to_string(),
            why,
        };
        let content_length = header_u64(&response, CONTENT_LENGTH.as_str());
        let skip = match status {
            StatusCode::PARTIAL_CONTENT if range.is_some() => {
                let value = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| bad("206 without a Content-Range header".into()))?;
                let (first, last, size) = parse_content_range(value)
                    .ok_or_else(|| bad(format!("unreadable Content-Range {value:?}")))?;
                if let Some(size) = size {
                    if size != total {
                        return Err(Error::DataMismatch {
                            what: url.to_string(),
                            expected_what: "length",
                            expected: total.to_string(),
                            found: size.to_string(),
                        });
                    }
                }
                if first != wanted.start || last.checked_add(1) != Some(wanted.end) {
                    return Err(bad(format!(
                        "asked for bytes {}-{}, got Content-Range {value:?}",
                        wanted.start,
                        wanted.end.saturating_sub(1)
                    )));
                }
                if content_length.is_some_and(|l| l != wanted.end - wanted.start) {
                    return Err(bad(format!(
                        "Content-Length {content_length:?} does not match Content-Range {value:?}"
                    )));
                }
                0
            }
            StatusCode::OK => {
                if range.is_some() && wanted != (0..total) {
                    self.whole_files
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(url.to_string());
                }
                if let Some(l) = content_length {
                    if l != total {
                        return Err(Error::DataMismatch {
                            what: url.to_string(),
                            expected_what: "length",
                            expected: total.to_string(),
                            found: l.to_string(),
                        });
                    }
                }
                wanted.start
            }
            other => {
                return Err(Error::HttpStatus {
                    url: url.to_string(),
                    status: other.as_u16(),
                    hint: status_hint(other),
                })
            }
        };
        let mut stream = HttpStream {
            url: url.to_string(),
            response,
            remaining: wanted.end - wanted.start,
            until_eof: false,
            guard: SpeedGuard::new(&self.policy, Instant::now()),
        };
        stream.skip(skip)?;
        Ok(stream)
    }
}

impl Http {
    /// Opens a whole file of unknown length (TUF metadata); the caller caps what it reads.
    /// Opening is retried as the policy says; the body is not.
    pub fn open_unsized(&self, url: &Url) -> Result<HttpStream> {
        let mut failures = 0;
        loop {
            match self.open_unsized_once(url) {
                Err(e) if is_retryable(&e) && failures < self.policy.retries => {
                    failures += 1;
                    let pause = self.policy.backoff(failures);
                    log::warn!("{e}; retry {failures}/{} in {pause:?}", self.policy.retries);
                    std::thread::sleep(pause);
                }
                other => return other,
            }
        }
    }

    fn open_unsized_once(&self, url: &Url) -> Result<HttpStream> {
        let response = self
            .client
            .get(url.clone())
            .send()
            .map_err(|source| Error::Network {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(Error::HttpStatus {
                url: url.to_string(),
                status: status.as_u16(),
                hint: status_hint(status),
            });
        }
        Ok(HttpStream {
            url: url.to_string(),
            response,
            remaining: u64::MAX,
            until_eof: true,
            guard: SpeedGuard::new(&self.policy, Instant::now()),
        })
    }
}

fn status_hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 | 410 => "the mirror does not have this file: check the mirror URL, or the repository is being republished",
        416 => "the mirror's file is shorter than the signed length: it is stale or truncated",
        401 | 403 => "access denied: check the mirror's permissions",
        500..=599 => "the server failed: try again later",
        _ => "unexpected answer: check the mirror URL",
    }
}

/// Whether trying again (same or next mirror) may succeed.
pub fn is_retryable(e: &Error) -> bool {
    match e {
        Error::Network { .. }
        | Error::BodyEnded { .. }
        | Error::LowSpeed { .. }
        | Error::BadResponse { .. } => true,
        Error::HttpStatus { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        _ => false,
    }
}

fn header_u64(response: &Response, name: &str) -> Option<u64> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Parses `bytes FIRST-LAST/SIZE` (SIZE may be `*`).
pub fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, size) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    if last < first {
        return None;
    }
    let size = match size.trim() {
        "*" => None,
        s => Some(s.parse().ok()?),
    };
    Some((first, last, size))
}

/// The certificates of a PEM file of certificate authorities (`network.ca_file`).
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

/// The low-speed limit: over every `window`, at least `limit` bytes/s on average.
#[derive(Clone, Copy, Debug)]
pub struct SpeedGuard {
    limit: u64,
    window: Duration,
    started: Instant,
    bytes: u64,
}

impl SpeedGuard {
    pub fn new(policy: &NetworkPolicy, now: Instant) -> Self {
        SpeedGuard {
            limit: policy.low_speed_limit,
            window: policy.low_speed_time,
            started: now,
            bytes: 0,
        }
    }

    /// Records `n` bytes received at `now`; returns the average rate when a finished window
    /// fell below the limit.
    pub fn record(&mut self, n: u64, now: Instant) -> std::result::Result<(), u64> {
        self.bytes = self.bytes.saturating_add(n);
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < self.window {
            return Ok(());
        }
        let rate = (self.bytes as f64 / elapsed.as_secs_f64()) as u64;
        if rate < self.limit {
            return Err(rate);
        }
        self.started = now;
        self.bytes = 0;
        Ok(())
    }
}

/// The body of one response, limited to the requested bytes and guarded by the low-speed limit.
pub struct HttpStream {
    url: String,
    response: Response,
    remaining: u64,
    /// The length is not known in advance: the end of the body is the end of the stream.
    until_eof: bool,
    guard: SpeedGuard,
}

impl HttpStream {
    fn skip(&mut self, mut n: u64) -> Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while n > 0 {
            let want = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            let got = self.read_raw(&mut buf[..want], n)?;
            n -= got as u64;
        }
        Ok(())
    }

    fn read_raw(&mut self, buf: &mut [u8], expected: u64) -> Result<usize> {
        let n = self.response.read(buf).map_err(|e| Error::BodyEnded {
            url: self.url.clone(),
            expected,
            got: 0,
            why: e.to_string(),
        })?;
        if n == 0 {
            if self.until_eof {
                return Ok(0);
            }
            return Err(Error::BodyEnded {
                url: self.url.clone(),
                expected,
                got: 0,
                why: "the server closed the connection early".into(),
            });
        }
        if let Err(rate) = self.guard.record(n as u64, Instant::now()) {
            return Err(Error::LowSpeed {
                url: self.url.clone(),
                rate,
                limit: self.guard.limit,
                secs: self.guard.window.as_secs(),
            });
        }
        Ok(n)
    }
}

impl Read for HttpStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        ByteStream::read(self, buf).map_err(std::io::Error::other)
    }
}

impl ByteStream for HttpStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.read_raw(&mut buf[..want], self.remaining)?;
        self.remaining = self.remaining.saturating_sub(n as u64);
        Ok(n)
    }
}

/// Bytes of a local file (a repository on a USB stick, say).
pub struct FileStream {
    path: PathBuf,
    file: std::io::Take<File>,
}

impl FileStream {
    /// Opens bytes `range` of `path`, whose length must be the signed `total`.
    pub fn open(path: &Path, range: Range<u64>, total: u64) -> Result<FileStream> {
        let err = |source| Error::LocalRead {
            path: path.to_path_buf(),
            source,
        };
        // Regular files only, opened without blocking: a FIFO on a stick must not hang.
        let mut file = open_regular(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len != total {
            return Err(Error::DataMismatch {
                what: path.display().to_string(),
                expected_what: "length",
                expected: total.to_string(),
                found: len.to_string(),
            });
        }
        file.seek(SeekFrom::Start(range.start)).map_err(err)?;
        Ok(FileStream {
            path: path.to_path_buf(),
            file: file.take(range.end - range.start),
        })
    }
}

impl ByteStream for FileStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.file.read(buf).map_err(|source| Error::LocalRead {
            path: self.path.clone(),
            source,
        })
    }
}

/// Opens bytes `range` of a file at `location` whose signed length is `total`.
pub fn open_range(
    http: &Http,
    location: &Location,
    range: Range<u64>,
    total: u64,
) -> Result<Box<dyn ByteStream>> {
    Ok(match location {
        Location::Url(url) => Box::new(http.open(url, Some(range), total)?),
        Location::File(path) => Box::new(FileStream::open(path, range, total)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((0, 99, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5, None)));
        for bad in [
            "bytes 9-5/10",
            "bytes */10",
            "0-9/10",
            "bytes 0-9",
            "bytes a-9/10",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn speed_guard_fails_a_trickle_and_passes_a_stream() {
        let policy = NetworkPolicy {
            low_speed_limit: 100,
            low_speed_time: Duration::from_secs(2),
            ..NetworkPolicy::default()
        };
        let t0 = Instant::now();
        let s = |secs: f64| t0 + Duration::from_secs_f64(secs);
        // 1 byte per second: fails when the first window closes.
        let mut g = SpeedGuard::new(&policy, t0);
        assert_eq!(g.record(1, s(1.0)), Ok(()));
        assert_eq!(g.record(1, s(2.0)), Err(1));
        // 150 bytes/s: every window passes.
        let mut g = SpeedGuard::new(&policy, t0);
        for i in 1..=20 {
            assert_eq!(g.record(150, s(f64::from(i))), Ok(()), "{i}");
        }
        // A fast start does not excuse a stall in a later window.
        let mut g = SpeedGuard::new(&policy, t0);
        assert_eq!(g.record(10_000, s(2.0)), Ok(()));
        assert_eq!(g.record(1, s(4.5)), Err(0));
    }

    #[test]
    fn retryable_classes() {
        let status = |status| Error::HttpStatus {
            url: String::new(),
            status,
            hint: "",
        };
        assert!(is_retryable(&status(500)));
        assert!(is_retryable(&status(503)));
        assert!(is_retryable(&status(429)));
        assert!(!is_retryable(&status(404)));
        assert!(!is_retryable(&Error::DataMismatch {
            what: String::new(),
            expected_what: "sha256",
            expected: String::new(),
            found: String::new(),
        }));
    }

    #[test]
    fn file_stream_checks_the_signed_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut s = FileStream::open(&path, 3..7, 10).unwrap();
        let mut buf = [0u8; 4];
        read_full(&mut s, &mut buf, "f").unwrap();
        assert_eq!(&buf, b"3456");
        assert_eq!(s.read(&mut buf).unwrap(), 0);
        assert!(matches!(
            FileStream::open(&path, 0..1, 11),
            Err(Error::DataMismatch { .. })
        ));
        // A FIFO no writer opens: refused at once instead of blocking.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(matches!(
            FileStream::open(&fifo, 0..1, 1),
            Err(Error::LocalRead { .. })
        ));
    }
}
