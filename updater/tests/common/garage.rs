//! A real single-node Garage (S3-compatible object storage) on 127.0.0.1, started per test:
//! an S3 API port for the publisher, a website port that serves a bucket anonymously over
//! plain HTTP (devices fetch through nginx in front of it, as through a CDN).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::nginx::Nginx;

/// The S3 region name this Garage answers to.
pub const REGION: &str = "garage";
/// The domain under which the website port serves `<bucket>.<domain>`.
const WEB_DOMAIN: &str = "web.garage.localhost";

pub struct Garage {
    dir: TempDir,
    child: Child,
    pub s3_port: u16,
    pub web_port: u16,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The `garage` binary: on PATH, else where `cargo install` puts it.
fn garage_exe() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("garage"))
            .find(|p| p.is_file())
    });
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    on_path
        .or_else(|| {
            cargo_home
                .map(|c| c.join("bin/garage"))
                .filter(|p| p.is_file())
        })
        .expect("the object-storage tests need Garage: run scripts/setup.sh (cargo install garage)")
}

impl Garage {
    /// Starts Garage, gives its one node a role, and creates `bucket` with a key that may write
    /// it and website access for anonymous reads.
    pub fn start(bucket: &str) -> Garage {
        let dir = tempfile::Builder::new()
            .prefix("flipside-garage-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let (rpc, s3_port, web_port) = (Nginx::free_port(), Nginx::free_port(), Nginx::free_port());
        let config = format!(
            r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"
[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
[s3_web]
bind_addr = "127.0.0.1:{web_port}"
root_domain = ".{WEB_DOMAIN}"
"#,
            d = d.display(),
            secret = "5ee1d1a8b2e4c3f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0",
        );
        std::fs::write(d.join("garage.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("garage.log")).unwrap();
        let child = Command::new(garage_exe())
            .arg("-c")
            .arg(d.join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start garage");
        let mut garage = Garage {
            dir,
            child,
            s3_port,
            web_port,
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        garage.wait_for_port(s3_port);
        let node = garage.cli(&["node", "id", "-q"]);
        let node = node.split('@').next().unwrap().trim().to_string();
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        garage.cli(&["layout", "apply", "--version", "1"]);
        garage.cli(&["bucket", "create", bucket]);
        let key = garage.cli(&["key", "create", "publisher"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in: {key}"))
        };
        garage.access_key_id = field("Key ID:");
        garage.secret_access_key = field("Secret key:");
        garage.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            "publisher",
        ]);
        garage.cli(&["bucket", "website", "--allow", bucket]);
        garage
    }

    fn wait_for_port(&self, port: u16) {
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "garage did not start: {}",
                std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a `garage` admin command; its stdout. Retries while the fresh node settles.
    pub fn cli(&self, args: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let out: Output = Command::new(garage_exe())
                .arg("-c")
                .arg(self.dir.path().join("garage.toml"))
                .args(args)
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "garage {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The S3 endpoint for the publisher.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// nginx in front of the bucket's website, as a CDN would be: devices fetch from its URL.
    pub fn front(&self, bucket: &str) -> Nginx {
        let proxy = format!(
            "location / {{ proxy_pass http://127.0.0.1:{}; proxy_set_header Host {bucket}.{WEB_DOMAIN}; }}",
            self.web_port
        );
        let empty = self.dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        Nginx::start_with(
            &empty,
            super::nginx::Options {
                tls: None,
                server: &proxy,
            },
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
