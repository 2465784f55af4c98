//! The update server the virtual appliance reaches through `guestfwd`: a small HTTP/1.1 server
//! on the host's 127.0.0.1 with two jobs.
//!
//! - `GET /repo/<path>`: files of the repository directory being served, with `Range` support
//!   (the updater streams bundles with Range requests and resumes with them). Which directory
//!   is served can change between steps of a scenario (a newer release published, a tampered
//!   or expired copy), and bundle bodies can be throttled so that a test can cut the power in
//!   the middle of a download (the bundle bytes sent are counted as they go out).
//! - `GET /control/next`: the next step of the scenario, as one word (`install`, `status`,
//!   `reboot`, `poweroff`); the appliance's init asks for steps until one ends the boot. A step
//!   may switch the served repository first, so what the device sees is fixed by the step it
//!   is on, not by timing. An empty queue answers `poweroff`.
//!
//! - `POST /events`: the fleet events collector: the updater's NDJSON batches, each line kept
//!   in arrival order (answered 200).
//!
//! Every request is logged (path, range, bytes sent) for assertions. Each connection is closed
//! after one response.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// One step the appliance asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The word the init acts on: `install`, `status`, `reboot`, `poweroff`.
    pub action: String,
    /// Serve this repository directory from now on.
    pub repo: Option<PathBuf>,
}

impl Step {
    pub fn new(action: &str) -> Self {
        Self {
            action: action.to_string(),
            repo: None,
        }
    }

    /// The step, after switching the served repository to `repo`.
    pub fn with_repo(action: &str, repo: &Path) -> Self {
        Self {
            action: action.to_string(),
            repo: Some(repo.to_path_buf()),
        }
    }
}

/// One answered request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes written (fewer than promised when the client went away).
    pub sent: u64,
}

#[derive(Default)]
struct State {
    repo: Option<PathBuf>,
    steps: VecDeque<Step>,
    /// Bytes per second for bundle bodies; `None`: as fast as possible.
    throttle: Option<u64>,
    /// Bundle body bytes written so far, counted as they go out.
    bundle_bytes: u64,
    /// The same per request path.
    bundle_bytes_by_path: std::collections::BTreeMap<String, u64>,
    log: Vec<Request>,
    /// Lines POSTed to `/events`, in arrival order.
    events: Vec<String>,
}

/// The running server; it stops with the test process.
#[derive(Clone)]
pub struct UpdateServer {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl UpdateServer {
    /// Listens on 127.0.0.1 (a free port), one thread per connection.
    pub fn start() -> Result<Self> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(Error::io("listen on", "127.0.0.1"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("read the address of", "the update server"))?
            .port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    // A client that goes away mid-response is normal (power cuts): ignore.
                    let _ = serve(stream, &state);
                });
            }
        });
        Ok(Self { port, state })
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `repo` from now on.
    pub fn set_repo(&self, repo: &Path) {
        self.lock().repo = Some(repo.to_path_buf());
    }

    /// Appends steps to the queue.
    pub fn push_steps(&self, steps: impl IntoIterator<Item = Step>) {
        self.lock().steps.extend(steps);
    }

    /// Steps not yet taken.
    pub fn pending_steps(&self) -> usize {
        self.lock().steps.len()
    }

    /// Throttles bundle bodies (`*.bundle` under `targets/`) to `bytes_per_sec` (`None`: full
    /// speed); metadata and chunk indexes always go at full speed.
    pub fn set_throttle(&self, bytes_per_sec: Option<u64>) {
        self.lock().throttle = bytes_per_sec;
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().log.clone()
    }

    /// The event lines POSTed to `/events` so far.
    pub fn events(&self) -> Vec<String> {
        self.lock().events.clone()
    }

    /// Bundle body bytes sent so far, also of responses still being sent.
    pub fn bundle_bytes_sent(&self) -> u64 {
        self.lock().bundle_bytes
    }

    /// Bundle body bytes sent so far for paths ending with `suffix` (`.kernel.bundle`: the
    /// kernel parts), also of responses still being sent.
    pub fn bundle_bytes_sent_for(&self, suffix: &str) -> u64 {
        self.lock()
            .bundle_bytes_by_path
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Body bytes sent for paths under `targets/` so far (finished responses).
    pub fn target_bytes_sent(&self) -> u64 {
        self.lock()
            .log
            .iter()
            .filter(|r| r.path.starts_with("/repo/targets/"))
            .map(|r| r.sent)
            .sum()
    }
}

/// A parsed `Range: bytes=A-B` / `bytes=A-` header, the end shortened to the file as RFC 9110
/// says (the parser is shared with the updater's test server: `flipside-test-support`). Pure.
pub use flipside_test_support::range::clamp as parse_range;

/// `rel` as a path inside `root`, refusing anything that leaves it. Pure.
pub fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            } else if k.trim().eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let head = method == "HEAD";
    let mut out = &stream;

    let record = |status: u16, sent: u64| {
        lock(state).log.push(Request {
            path: path.clone(),
            range: range.clone(),
            status,
            sent,
        })
    };
    let small = |out: &mut &TcpStream, status: u16, body: &str| -> std::io::Result<()> {
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Error",
        };
        write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        if !head {
            out.write_all(body.as_bytes())?;
        }
        out.flush()
    };
    if method == "POST" && path == "/events" {
        // Batches are small (the spool holds at most 1,000 events); 4 MiB bounds a bad client.
        let mut body = vec![0u8; content_length.min(4 << 20)];
        reader.read_exact(&mut body)?;
        let text = String::from_utf8_lossy(&body);
        lock(state).events.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
        record(200, 0);
        return small(&mut out, 200, "");
    }
    if method != "GET" && !head {
        record(405, 0);
        return small(&mut out, 405, "");
    }
    if path == "/control/next" {
        let step = {
            let mut s = lock(state);
            let step = s.steps.pop_front().unwrap_or_else(|| Step::new("poweroff"));
            if let Some(repo) = &step.repo {
                s.repo = Some(repo.clone());
            }
            step
        };
        let body = format!("{}\n", step.action);
        record(200, body.len() as u64);
        return small(&mut out, 200, &body);
    }
    let (repo, throttle) = {
        let s = lock(state);
        (s.repo.clone(), s.throttle)
    };
    let file = path
        .strip_prefix("/repo/")
        .zip(repo)
        .and_then(|(rel, repo)| resolve(&repo, rel))
        .filter(|p| p.is_file());
    let Some(file) = file else {
        record(404, 0);
        return small(&mut out, 404, "not found\n");
    };
    let mut f = File::open(&file)?;
    let len = f.metadata()?.len();
    let (status, start, end) = match range.as_deref().map(|r| parse_range(r, len)) {
        None => (200, 0, len.saturating_sub(1)),
        Some(Some((a, b))) => (206, a, b),
        Some(None) => {
            record(416, 0);
            write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return out.flush();
        }
    };
    let body_len = if len == 0 { 0 } else { end - start + 1 };
    let mut header = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {body_len}\r\nAccept-Ranges: bytes\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n",
        if status == 206 { "Partial Content" } else { "OK" }
    );
    if status == 206 {
        header.push_str(&format!("Content-Range: bytes {start}-{end}/{len}\r\n"));
    }
    header.push_str("\r\n");
    out.write_all(header.as_bytes())?;
    let mut sent = 0u64;
    if !head {
        f.seek(SeekFrom::Start(start))?;
        let bundle = path.starts_with("/repo/targets/") && path.ends_with(".bundle");
        let throttle = throttle.filter(|_| bundle);
        // Throttled bodies go out in tenth-of-a-second slices.
        let piece = throttle.map_or(64 << 10, |bps| (bps / 10).max(512)) as usize;
        let mut buf = vec![0u8; piece];
        while sent < body_len {
            let want = piece.min((body_len - sent) as usize);
            f.read_exact(&mut buf[..want])?;
            if let Err(e) = out.write_all(&buf[..want]) {
                record(status, sent);
                return Err(e);
            }
            sent += want as u64;
            if bundle {
                let mut s = lock(state);
                s.bundle_bytes += want as u64;
                *s.bundle_bytes_by_path.entry(path.clone()).or_default() += want as u64;
            }
            if throttle.is_some() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        out.flush()?;
    }
    record(status, sent);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-4", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-1", 0), None);
    }

    #[test]
    fn paths_stay_inside_the_repository() {
        let root = Path::new("/srv/repo");
        assert_eq!(
            resolve(root, "/metadata/1.root.json"),
            Some(PathBuf::from("/srv/repo/metadata/1.root.json"))
        );
        assert_eq!(resolve(root, "../etc/passwd"), None);
        assert_eq!(resolve(root, "targets/../../x"), None);
    }

    #[test]
    fn serves_ranges_and_steps_over_tcp() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("targets")).unwrap();
        std::fs::write(dir.path().join("targets/b"), b"0123456789").unwrap();
        let server = UpdateServer::start().unwrap();
        server.push_steps([Step::with_repo("install", dir.path())]);
        let get = |path: &str, range: Option<&str>| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
            let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{range}\r\n").unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        };
        assert!(get("/control/next", None).ends_with("\r\n\r\ninstall\n"));
        let r = get("/repo/targets/b", Some("bytes=3-5"));
        assert!(r.starts_with("HTTP/1.1 206"), "{r}");
        assert!(r.contains("Content-Range: bytes 3-5/10"));
        assert!(r.ends_with("\r\n\r\n345"));
        assert!(get("/repo/targets/b", None).ends_with("0123456789"));
        assert!(get("/repo/../x", None).starts_with("HTTP/1.1 404"));
        assert!(get("/control/next", None).ends_with("poweroff\n"));
        assert_eq!(server.target_bytes_sent(), 13);
        let mut s = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        let body = "{\"event\":\"check\"}\n{\"event\":\"waiting\"}\n";
        write!(
            s,
            "POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert_eq!(
            server.events(),
            ["{\"event\":\"check\"}", "{\"event\":\"waiting\"}"]
        );
    }
}
