//! Redirects and the TLS trust of mirrors, against real nginx servers on 127.0.0.1 (HTTP and
//! HTTPS with a certificate from the test's own CA): a mirror may redirect within its origin;
//! to another host only from https to https where its setting allows; never down to http.
//! A refused redirect leaves the disk as it was.

mod common;

use common::nginx::{Nginx, Options, TestCa};
use common::{code, Setup, World};
use flipside_bootloader_hooks::Slot;

/// A server whose every request is redirected to the same path on `target`.
fn redirecting(
    w: &World,
    target: &str,
    tls: Option<(&std::path::Path, &std::path::Path)>,
) -> Nginx {
    let server = format!("location / {{ return 302 {target}$request_uri; }}");
    Nginx::start_with(
        &w.repo,
        Options {
            tls,
            server: &server,
        },
    )
}

fn mirror(url: &str, redirects: Option<&str>) -> String {
    match redirects {
        Some(r) => format!("{{ url = {url:?}, redirects = {r:?} }}"),
        None => format!("{url:?}"),
    }
}

#[test]
fn a_redirect_within_the_mirror_origin_is_followed_and_another_origin_refused() {
    let w = World::new(Setup::default());
    // The repository moved from /old/ to / on the same server: followed.
    let moved = Nginx::start_with(
        &w.repo,
        Options {
            server: "location /old/ { rewrite ^/old/(.*)$ /$1 redirect; }",
            ..Options::default()
        },
    );
    let old = format!("{}old/", moved.url());
    w.write_config(std::slice::from_ref(&old), 0);
    w.run(&["check"]).expect(code::OK);

    // Another port is another origin: refused by default and by "https" (not https).
    let good = Nginx::start(&w.repo);
    let away = redirecting(&w, good.url().trim_end_matches('/'), None);
    for setting in [None, Some("https")] {
        w.write_config_with(&[mirror(&away.url(), setting)], 0, "");
        let run = w.run(&["install"]);
        run.expect(code::NETWORK);
        run.complains(&["redirect refused", "another origin"]);
        w.assert_b_untouched();
    }
    assert!(good.access_log().is_empty(), "{}", good.access_log());

    // "never" refuses even a redirect within the origin.
    w.write_config_with(&[mirror(&old, Some("never"))], 0, "");
    let run = w.run(&["check"]);
    run.expect(code::NETWORK);
    run.complains(&["redirects = \"never\""]);
}

#[test]
fn https_mirrors_trust_the_configured_ca_and_redirect_to_https_hosts_only_when_allowed() {
    let w = World::new(Setup::default());
    let ca = TestCa::new();
    let (cert, key) = ca.server();
    let tls = Some((cert.as_path(), key.as_path()));
    let ca_line = format!("ca_file = {:?}", ca.ca().display().to_string());

    // The system's trust store does not know the test CA; network.ca_file does.
    let https = Nginx::start_with(
        &w.repo,
        Options {
            tls,
            ..Options::default()
        },
    );
    w.write_config(&[https.url()], 0);
    let run = w.run(&["check"]);
    run.expect(code::ACCESS);
    run.complains(&["not issued by a trusted CA"]);
    w.write_config_with(&[mirror(&https.url(), None)], 0, &ca_line);
    w.run(&["check"]).expect(code::OK);

    // https -> https on another origin: refused by default, followed with redirects = "https".
    let hop = redirecting(&w, https.url().trim_end_matches('/'), tls);
    w.write_config_with(&[mirror(&hop.url(), None)], 0, &ca_line);
    let run = w.run(&["install"]);
    run.expect(code::NETWORK);
    run.complains(&["set redirects = \"https\""]);
    w.assert_b_untouched();

    // https -> http: refused whatever the setting.
    let plain = Nginx::start(&w.repo);
    let down = redirecting(&w, plain.url().trim_end_matches('/'), tls);
    w.write_config_with(&[mirror(&down.url(), Some("https"))], 0, &ca_line);
    let run = w.run(&["install"]);
    run.expect(code::NETWORK);
    run.complains(&["down to http"]);
    w.assert_b_untouched();
    assert!(plain.access_log().is_empty(), "{}", plain.access_log());

    w.write_config_with(&[mirror(&hop.url(), Some("https"))], 0, &ca_line);
    w.run(&["install"]).expect(code::OK);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
    assert!(
        https.access_log().contains(".bundle"),
        "{}",
        https.access_log()
    );
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate_is_a_configuration_error() {
    let w = World::new(Setup::default());
    let https = Nginx::start(&w.repo);
    let empty = w.repo.parent().unwrap().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (file, why) in [
        ("/nonexistent/ca.pem", "No such file"),
        (empty.to_str().unwrap(), "no PEM certificate"),
    ] {
        w.write_config_with(
            &[mirror(&https.url(), None)],
            0,
            &format!("ca_file = {file:?}"),
        );
        let run = w.run(&["check"]);
        run.expect(code::CONFIG);
        run.complains(&["network.ca_file", why]);
    }
}

#[test]
fn redirects_on_a_directory_mirror_is_refused_naming_the_field() {
    let w = World::new(Setup::default());
    let dir = w.repo.display().to_string();
    w.write_config_with(&[mirror(&dir, Some("https"))], 0, "");
    let run = w.run(&["check"]);
    run.expect(code::CONFIG);
    run.complains(&["repository.mirrors", "http(s) mirrors only"]);
}
