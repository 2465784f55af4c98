//! Private repositories against real nginx over TLS, certificates made by the test (rcgen):
//! a CA pinned per mirror, a certificate that expired, one for another name, a client
//! certificate the server requires, a bearer token and basic credentials the server checks.
//! Each failure is named, exits 14 (access) at once without retries, and leaves the disk as
//! it was; secrets never appear in what the device prints.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::nginx::{Nginx, Options};
use common::{code, Setup, World};
use flipside_bootloader_hooks::Slot;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use time::{Duration, OffsetDateTime};

const TOKEN: &str = "s3cret-token-of-this-device";

/// A CA and the files of what it issued.
struct Pki {
    dir: tempfile::TempDir,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            cert,
            key,
        };
        std::fs::write(pki.ca(), pki.cert.pem()).unwrap();
        pki
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a certificate for `san` (an IP or a name), valid from `from` to `to` days from
    /// now, for a server or a client; returns (certificate, key) files.
    fn issue(&self, name: &str, san: &str, from: i64, to: i64, client: bool) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![match san.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(san.try_into().unwrap()),
        }];
        params.not_before = OffsetDateTime::now_utc() + Duration::days(from);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(to);
        params.extended_key_usages = vec![match client {
            true => ExtendedKeyUsagePurpose::ClientAuth,
            false => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (c, k) = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        (c, k)
    }
}

fn serve(w: &World, cert: &Path, key: &Path, server: &str) -> Nginx {
    Nginx::start_with(
        &w.repo,
        Options {
            tls: Some((cert, key)),
            server,
        },
    )
}

/// A mirror table: the URL and `key = "path"` settings.
fn mirror(url: &str, settings: &[(&str, &Path)]) -> String {
    let mut fields = vec![format!("url = {url:?}")];
    for (key, path) in settings {
        fields.push(format!("{key} = {:?}", path.display().to_string()));
    }
    format!("{{ {} }}", fields.join(", "))
}

fn secret(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Unknown CA, expired certificate, certificate for another name: each named, exit 14, no
/// retry (3 configured), nothing written; the right CA and certificate work.
#[test]
fn server_certificate_failures_are_named_and_not_retried() {
    let w = World::new(Setup::default());
    let pki = Pki::new("repository CA");
    let other = Pki::new("someone else's CA");
    let cases = [
        (
            "unknown-ca",
            "127.0.0.1",
            -1,
            30,
            other.ca(),
            "not issued by a trusted CA",
        ),
        ("expired", "127.0.0.1", -30, -1, pki.ca(), "has expired"),
        ("future", "127.0.0.1", 2, 30, pki.ca(), "not valid yet"),
        (
            "wrong-name",
            "repo.example",
            -1,
            30,
            pki.ca(),
            "for another name",
        ),
    ];
    for (name, san, from, to, trusted, why) in cases {
        let (cert, key) = pki.issue(name, san, from, to, false);
        let nginx = serve(&w, &cert, &key, "");
        w.write_config_with(&[mirror(&nginx.url(), &[("ca", &trusted)])], 3, "");
        let run = w.run(&["install"]);
        run.expect(code::ACCESS);
        assert!(run.stderr.contains(why), "{name}: {}", run.stderr);
        assert!(
            !run.stderr.contains("retry"),
            "{name}: retried: {}",
            run.stderr
        );
        w.assert_b_untouched();
    }
    let (cert, key) = pki.issue("good", "127.0.0.1", -1, 30, false);
    let nginx = serve(&w, &cert, &key, "");
    w.write_config_with(&[mirror(&nginx.url(), &[("ca", &pki.ca())])], 3, "");
    w.run(&["check"]).expect(code::OK);
}

/// A server that requires a client certificate issued by its client CA: refused without one
/// (exit 14, named), served with one.
#[test]
fn a_client_certificate_is_required_and_presented() {
    let w = World::new(Setup::default());
    let pki = Pki::new("repository CA");
    let clients = Pki::new("device CA");
    let (cert, key) = pki.issue("server", "127.0.0.1", -1, 30, false);
    let directives = format!(
        "ssl_client_certificate {}; ssl_verify_client on;",
        clients.ca().display()
    );
    let nginx = serve(&w, &cert, &key, &directives);
    w.write_config_with(&[mirror(&nginx.url(), &[("ca", &pki.ca())])], 3, "");
    // nginx completes the handshake and answers 400 (servers that refuse in the handshake
    // are exit 14, `TlsFailure::ClientCertRefused`); either way the message names client_cert.
    let run = w.run(&["check"]);
    run.expect(code::NETWORK);
    run.complains(&["HTTP 400", "client_cert"]);
    let (stranger, stranger_key) = pki.issue("stranger", "device-2.example", -1, 30, true);
    let settings = [
        ("ca", pki.ca()),
        ("client_cert", stranger),
        ("client_key", stranger_key),
    ];
    let settings: Vec<(&str, &Path)> = settings.iter().map(|(k, p)| (*k, p.as_path())).collect();
    w.write_config_with(&[mirror(&nginx.url(), &settings)], 3, "");
    let run = w.run(&["check"]);
    run.expect(code::NETWORK);
    run.complains(&["client_cert"]);
    let (client_cert, client_key) = clients.issue("device", "device-1.example", -1, 30, true);
    let settings = [
        ("ca", pki.ca()),
        ("client_cert", client_cert),
        ("client_key", client_key),
    ];
    let settings: Vec<(&str, &Path)> = settings.iter().map(|(k, p)| (*k, p.as_path())).collect();
    w.write_config_with(&[mirror(&nginx.url(), &settings)], 3, "");
    w.run(&["install"]).expect(code::OK);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
}

/// A server that checks a bearer token: a wrong token is refused (401, exit 14, once), a
/// token file others may read is a configuration error, the right one installs; the token
/// never appears in what the device prints. Basic credentials likewise.
#[test]
fn tokens_and_credentials_are_sent_checked_and_never_shown() {
    let w = World::new(Setup::default());
    let pki = Pki::new("repository CA");
    let (cert, key) = pki.issue("server", "127.0.0.1", -1, 30, false);
    // `Basic` of "device:pa55word" is ZGV2aWNlOnBhNTV3b3Jk.
    let directives = format!(
        "set $ok 0; if ($http_authorization = \"Bearer {TOKEN}\") {{ set $ok 1; }} \
         if ($http_authorization = \"Basic ZGV2aWNlOnBhNTV3b3Jk\") {{ set $ok 1; }} \
         if ($ok = 0) {{ return 401; }}"
    );
    let nginx = serve(&w, &cert, &key, &directives);
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca();
    let with = |field: &str, path: &Path| {
        w.write_config_with(
            &[mirror(&nginx.url(), &[("ca", &ca), (field, path)])],
            3,
            "",
        );
    };

    let wrong = secret(dir.path(), "wrong", "not-the-token\n", 0o600);
    with("token_file", &wrong);
    let run = w.run(&["install"]);
    run.expect(code::ACCESS);
    run.complains(&["401", "token_file"]);
    assert_eq!(
        nginx.access_log().lines().count(),
        1,
        "retried: {}",
        nginx.access_log()
    );
    w.assert_b_untouched();

    let open = secret(dir.path(), "open", &format!("{TOKEN}\n"), 0o644);
    with("token_file", &open);
    let run = w.run(&["check"]);
    run.expect(code::CONFIG);
    run.complains(&["token_file", "chmod 600"]);

    let good = secret(dir.path(), "good", &format!("{TOKEN}\n"), 0o600);
    with("token_file", &good);
    let run = w.run(&["install"]);
    run.expect(code::OK);
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(TOKEN), "the token was printed: {text}");
    }
    let events = std::fs::read_to_string(w.state.join("events.jsonl")).unwrap_or_default();
    assert!(!events.contains(TOKEN), "{events}");

    let basic = secret(dir.path(), "basic", "device:pa55word\n", 0o600);
    with("credentials_file", &basic);
    w.run(&["check"]).expect(code::OK);
}

/// Credentials and TLS settings on a plain http mirror would travel in the clear: refused.
#[test]
fn credentials_on_a_plain_http_mirror_are_refused() {
    let w = World::new(Setup::default());
    let dir = tempfile::tempdir().unwrap();
    let token = secret(dir.path(), "t", "x\n", 0o600);
    w.write_config_with(
        &[mirror("http://127.0.0.1:9/", &[("token_file", &token)])],
        0,
        "",
    );
    let run = w.run(&["check"]);
    run.expect(code::CONFIG);
    run.complains(&["in the clear"]);
}
