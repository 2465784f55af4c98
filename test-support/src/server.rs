//! A misbehaving HTTP/1.1 file server of our own (std TcpListener, one thread per
//! connection, `Connection: close`): serves a directory with Range support and injects the
//! faults a device must survive. It counts the body bytes it sends and logs every request.
//! (The QEMU tests keep their own server, with scripted steps; both parse Range with
//! [`crate::range::parse_range`].)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::range::parse_range;

/// What the server does wrong with files whose name ends in the fault's suffix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Serve correctly.
    None,
    /// Close the connection after this many body bytes, only on the first request.
    CutOnce { after: u64 },
    /// Close the connection after this many body bytes, on every request.
    CutAlways { after: u64 },
    /// Flip a bit at this file offset in every response that covers it.
    Corrupt { offset: u64 },
    /// Pretend the file is this many bytes longer (bytes of junk appended).
    Longer { extra: u64 },
    /// Answer with this status and no body.
    Status(u16),
    /// Send one body byte per second.
    Trickle,
    /// Send at most this many body bytes per second.
    Throttle { bytes_per_sec: u64 },
    /// The first request is honest but cut after `after` bytes; later requests flip a bit at
    /// `offset` (the file changed between two reads).
    CutOnceThenCorrupt { after: u64, offset: u64 },
    /// Ignore `Range`: answer every request with `200` and the whole file.
    IgnoreRange,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

struct Shared {
    root: PathBuf,
    fault: Mutex<(String, Fault)>,
    cut_done: AtomicBool,
    sent: AtomicU64,
    requests: Mutex<Vec<Request>>,
    stop: AtomicBool,
}

/// A running server; stops when dropped.
pub struct Server {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Server {
    /// Serves `root` on a free port of 127.0.0.1.
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test server");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            fault: Mutex::new((String::new(), Fault::None)),
            cut_done: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = handle(&s, conn);
                });
            }
        });
        Server { port, shared }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Applies `fault` to files whose name ends with `suffix` (e.g. `.bundle`).
    pub fn set_fault(&self, suffix: &str, fault: Fault) {
        *self.shared.fault.lock().unwrap() = (suffix.to_string(), fault);
        self.shared.cut_done.store(false, Ordering::SeqCst);
    }

    /// Body bytes sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }

    pub fn reset_count(&self) {
        self.shared.sent.store(0, Ordering::SeqCst);
        self.shared.requests.lock().unwrap().clear();
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(s: &Shared, mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    s.requests.lock().unwrap().push(Request {
        path: path.clone(),
        range: range.clone(),
    });
    let (suffix, fault) = s.fault.lock().unwrap().clone();
    let fault = if !suffix.is_empty() && path.ends_with(&suffix) {
        fault
    } else {
        Fault::None
    };

    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return respond_status(&mut conn, 404);
    }
    if let Fault::Status(code) = fault {
        return respond_status(&mut conn, code);
    }
    let Ok(mut data) = std::fs::read(s.root.join(rel)) else {
        return respond_status(&mut conn, 404);
    };
    if let Fault::Longer { extra } = fault {
        data.extend(std::iter::repeat_n(0x5a, extra as usize));
    }
    let total = data.len() as u64;
    let range = range.filter(|_| !matches!(fault, Fault::IgnoreRange));
    // Strict: a range reaching past the end (a file shorter than the signed length) is
    // refused with 416, which the updater names as a stale or truncated mirror.
    let asked = range.as_deref().and_then(|r| parse_range(r, total));
    let (status, start, end) = match asked.filter(|&(_, last)| last < total) {
        Some((a, b)) => (206, a, b + 1),
        None if range.is_some() => return respond_status(&mut conn, 416),
        None => (200, 0, total),
    };
    let mut body = data[start as usize..end as usize].to_vec();
    // Whether this request is the first of a `CutOnceThenCorrupt` fault (honest, then cut).
    let first_cut = matches!(fault, Fault::CutOnceThenCorrupt { .. })
        && !s.cut_done.swap(true, Ordering::SeqCst);
    let corrupt = match fault {
        Fault::Corrupt { offset } => Some(offset),
        Fault::CutOnceThenCorrupt { offset, .. } if !first_cut => Some(offset),
        _ => None,
    };
    if let Some(offset) = corrupt {
        if (start..end).contains(&offset) {
            body[(offset - start) as usize] ^= 0x01;
        }
    }
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        if status == 206 { "Partial Content" } else { "OK" },
        body.len()
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{total}\r\n",
            end - 1
        ));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;

    let limit = match fault {
        Fault::CutOnce { after } if !s.cut_done.swap(true, Ordering::SeqCst) => Some(after),
        Fault::CutAlways { after } => Some(after),
        Fault::CutOnceThenCorrupt { after, .. } if first_cut => Some(after),
        _ => None,
    };
    let (step, pause) = match fault {
        Fault::Trickle => (1usize, Duration::from_secs(1)),
        Fault::Throttle { bytes_per_sec } => (
            (bytes_per_sec / 10).max(1) as usize,
            Duration::from_millis(100),
        ),
        _ => (64 * 1024, Duration::ZERO),
    };
    let stop_at = limit.map_or(body.len(), |l| (l as usize).min(body.len()));
    let mut at = 0;
    while at < stop_at {
        let n = step.min(stop_at - at);
        conn.write_all(&body[at..at + n])?;
        s.sent.fetch_add(n as u64, Ordering::SeqCst);
        at += n;
        if !pause.is_zero() {
            conn.flush()?;
            std::thread::sleep(pause);
        }
    }
    conn.flush()?;
    // Dropping the connection closes it (early when a cut was asked for).
    let _ = conn.shutdown(std::net::Shutdown::Both);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    Ok(())
}

fn respond_status(conn: &mut TcpStream, code: u16) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {code} Fault\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    conn.flush()
}
