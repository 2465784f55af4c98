//! Closures of Nix store paths, read from `nix path-info --json --recursive` (run here or saved
//! by the user) or from a `closureInfo` directory (`store-paths` + `registration`).
//!
//! Hashes are normalised to `sha256:<hex>` whatever form Nix printed them in.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::closure::{Closure, StorePath};
use crate::hash::normalize_nix_hash;
use crate::path::{split_store_path, NIX_STORE_DIR};
use crate::{Error, Result};

/// The program run for [`query`].
pub const NIX: &str = "nix";

/// Parses `nix path-info --json` output: a JSON array of objects with `path` (Nix 2.8 to
/// 2.18), or an object keyed by path (later versions). `origin` names the source in errors.
pub fn parse_path_info(json: &str, origin: &str) -> Result<Vec<StorePath>> {
    let bad = |why: String| Error::NixInfo {
        origin: origin.to_string(),
        why,
    };
    let value: Value = serde_json::from_str(json)
        .map_err(|e| bad(format!("not JSON from `nix path-info --json`: {e}")))?;
    let records: Vec<(String, Value)> = match value {
        Value::Array(items) => items
            .into_iter()
            .map(|item| {
                let path = item
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("an entry has no \"path\"".to_string()))?
                    .to_string();
                Ok((path, item))
            })
            .collect::<Result<_>>()?,
        Value::Object(map) => map.into_iter().collect(),
        _ => {
            return Err(bad(
                "expected a JSON array or object from `nix path-info --json`".to_string(),
            ))
        }
    };
    records
        .into_iter()
        .map(|(path, info)| {
            let nar_hash = info.get("narHash").and_then(Value::as_str).ok_or_else(|| {
                bad(format!(
                    "{path} is not a valid path in the Nix store (no narHash)"
                ))
            })?;
            let references = match info.get("references") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(refs)) => refs
                    .iter()
                    .map(|r| {
                        r.as_str()
                            .map(qualify)
                            .ok_or_else(|| bad(format!("a reference of {path} is not a string")))
                    })
                    .collect::<Result<_>>()?,
                Some(_) => return Err(bad(format!("the references of {path} are not a list"))),
            };
            record(&path, nar_hash, references).map_err(bad)
        })
        .collect()
}

/// References printed without the store directory (some Nix versions) get it back.
fn qualify(reference: &str) -> String {
    if reference.starts_with('/') {
        reference.to_string()
    } else {
        format!("{NIX_STORE_DIR}/{reference}")
    }
}

fn record(
    path: &str,
    nar_hash: &str,
    references: Vec<String>,
) -> std::result::Result<StorePath, String> {
    match split_store_path(path) {
        Some((name, "")) if name.store_dir == NIX_STORE_DIR => {}
        _ => return Err(format!("{path} is not a path in {NIX_STORE_DIR}")),
    }
    let hash = normalize_nix_hash(nar_hash).map_err(|why| format!("narHash of {path}: {why}"))?;
    let references: BTreeSet<String> = references.into_iter().collect();
    Ok(StorePath {
        path: path.to_string(),
        source: PathBuf::from(path),
        hash,
        references: references.into_iter().collect(),
    })
}

/// Parses a `registration` file (what `nix-store --load-db` and `--dump-db` use): per path,
/// lines path, narHash, narSize, deriver (may be empty), reference count, references.
pub fn parse_registration(text: &str, file: &Path) -> Result<Vec<StorePath>> {
    let bad = |line: usize, why: String| Error::Registration {
        path: file.to_path_buf(),
        line,
        why,
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).peekable();
    let mut out = Vec::new();
    loop {
        // Blank lines may separate records.
        while lines.next_if(|(_, l)| l.is_empty()).is_some() {}
        let Some((n, path)) = lines.next() else {
            break;
        };
        let mut next = |what: &str| {
            lines
                .next()
                .ok_or_else(|| bad(n, format!("the record of {path} ends before its {what}")))
        };
        let (_, nar_hash) = next("narHash")?;
        let (sn, size) = next("narSize")?;
        size.parse::<u64>()
            .map_err(|_| bad(sn, format!("narSize {size:?} is not a number")))?;
        next("deriver")?;
        let (cn, count) = next("reference count")?;
        let count: usize = count
            .parse()
            .map_err(|_| bad(cn, format!("reference count {count:?} is not a number")))?;
        let mut refs = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            let (rn, r) = next("references")?;
            if split_store_path(r).is_none_or(|(_, rest)| !rest.is_empty()) {
                return Err(bad(rn, format!("reference {r:?} is not a store path")));
            }
            refs.push(r.to_string());
        }
        out.push(record(path, nar_hash, refs).map_err(|why| bad(n, why))?);
    }
    Ok(out)
}

/// Reads a closure saved with `nix path-info --json --recursive PATH... > FILE`.
pub fn read_path_info_file(file: &Path) -> Result<Closure> {
    let text = read(file)?;
    Closure::from_complete(parse_path_info(&text, &file.display().to_string())?)
}

/// Reads a Nix `closureInfo` output directory: its `registration` holds every path with its
/// hash and references, and each path of `store-paths` must be among them.
pub fn read_closure_info(dir: &Path) -> Result<Closure> {
    let reg_file = dir.join("registration");
    let paths = parse_registration(&read(&reg_file)?, &reg_file)?;
    let closure = Closure::from_complete(paths)?;
    let list_file = dir.join("store-paths");
    for (i, line) in read(&list_file)?.lines().enumerate() {
        if !line.is_empty() && closure.get(line).is_none() {
            return Err(Error::Registration {
                path: list_file,
                line: i + 1,
                why: format!("{line} is not in {}", reg_file.display()),
            });
        }
    }
    Ok(closure)
}

fn read(file: &Path) -> Result<String> {
    fs::read_to_string(file).map_err(|e| Error::ReadSource {
        path: file.to_path_buf(),
        source: e,
    })
}

/// Runs `nix path-info --json --recursive` for Nix store paths and returns their closure.
/// Each path must exist on this host; a missing `nix` is [`Error::ToolMissing`].
pub fn query(paths: &[String]) -> Result<Closure> {
    if paths.is_empty() {
        return Ok(Closure::default());
    }
    for p in paths {
        if fs::symlink_metadata(p).is_err() {
            return Err(Error::NotInStore { path: p.clone() });
        }
    }
    let args = [
        "--extra-experimental-features",
        "nix-command",
        "path-info",
        "--json",
        "--recursive",
    ];
    let output = Command::new(NIX)
        .args(args)
        .args(paths)
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => Error::ToolMissing {
                tool: NIX,
                source: e,
            },
            _ => Error::ToolFailed {
                command: format!("{NIX} path-info"),
                status: "could not start".to_string(),
                stderr: e.to_string(),
            },
        })?;
    if !output.status.success() {
        return Err(Error::ToolFailed {
            command: format!("{NIX} {} {}", args.join(" "), paths.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Closure::from_complete(parse_path_info(&text, "nix path-info")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "/nix/store/21jg5z7mpgryiswrhz5iff7m433hlvba-flipside-test-app-1.0";
    const LEAF: &str = "/nix/store/fq94bd52s6lahsiqagj26ss3fgyqa4dh-flipside-test-leaf";
    const APP_HASH: &str =
        "sha256:bccc20dab57ea6d30fdbcff3fbfcd159ee2983b8f46f40e45d83b594fda8ff50";
    const LEAF_HASH: &str =
        "sha256:38d03397ab98b3b375137e7184c31d2e595988445d74233e28d74a3f95c8f0cc";

    fn check_fixture_closure(paths: Vec<StorePath>) {
        let closure = Closure::from_complete(paths).unwrap();
        let got: Vec<(&str, &str, Vec<&str>)> = closure
            .paths()
            .iter()
            .map(|p| {
                (
                    p.path.as_str(),
                    p.hash.as_str(),
                    p.references.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [(APP, APP_HASH, vec![LEAF]), (LEAF, LEAF_HASH, vec![]),]
        );
        assert_eq!(closure.get(APP).unwrap().source, Path::new(APP));
    }

    #[test]
    fn path_info_of_nix_2_8_and_of_later_versions() {
        for text in [
            include_str!("../tests/data/nix/path-info-2.8.json"),
            include_str!("../tests/data/nix/path-info-keyed.json"),
        ] {
            check_fixture_closure(parse_path_info(text, "fixture").unwrap());
        }
    }

    #[test]
    fn registration_of_closure_info() {
        let text = include_str!("../tests/data/nix/closure-info/registration");
        check_fixture_closure(parse_registration(text, Path::new("registration")).unwrap());
        // Blank lines between records and base-32 hashes are accepted too.
        let b32 = text.replace(
            "bccc20dab57ea6d30fdbcff3fbfcd159ee2983b8f46f40e45d83b594fda8ff50\n",
            "sha256:0l7zm3yr9dc3bpj40vzlp21jkvjrs7ygpwygvc7x79kynpd21k5w\n",
        );
        assert_ne!(b32, text);
        let spaced = b32.replacen(&format!("\n{APP}"), &format!("\n\n{APP}"), 1);
        check_fixture_closure(parse_registration(&spaced, Path::new("registration")).unwrap());
    }

    #[test]
    fn broken_registrations_name_the_line() {
        let cases = [
            (format!("{LEAF}\n"), 1, "ends before its narHash"),
            (
                format!("{LEAF}\n{}\nlots\n\n0\n", "0".repeat(64)),
                3,
                "narSize",
            ),
            (
                format!("{LEAF}\n{}\n1\n\ntwo\n", "0".repeat(64)),
                5,
                "reference count",
            ),
            (
                format!("{LEAF}\n{}\n1\n\n2\n{APP}\n", "0".repeat(64)),
                1,
                "ends before its references",
            ),
            (
                format!("{LEAF}\n{}\n1\n\n1\n/tmp/x\n", "0".repeat(64)),
                6,
                "not a store path",
            ),
            (format!("{LEAF}\nmd5:abc\n1\n\n0\n"), 1, "narHash"),
            (
                format!("/tmp/x\n{}\n1\n\n0\n", "0".repeat(64)),
                1,
                "not a path in /nix/store",
            ),
        ];
        for (text, want_line, want_why) in cases {
            match parse_registration(&text, Path::new("reg")) {
                Err(Error::Registration { line, why, .. }) => {
                    assert_eq!(line, want_line, "{text:?}: {why}");
                    assert!(why.contains(want_why), "{text:?}: {why}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn broken_path_info_is_refused() {
        for text in [
            "",
            "42",
            "[{\"narHash\": \"sha256:00\"}]",
            &format!("[{{\"path\": \"{LEAF}\"}}]"),
            &format!("{{\"{LEAF}\": null}}"),
            &format!("[{{\"path\": \"{LEAF}\", \"narHash\": \"sha1:abc\"}}]"),
            &format!("[{{\"path\": \"{LEAF}\", \"narHash\": \"{LEAF_HASH}\", \"references\": 3}}]"),
            &format!("[{{\"path\": \"/tmp/x\", \"narHash\": \"{LEAF_HASH}\"}}]"),
        ] {
            assert!(
                matches!(parse_path_info(text, "t"), Err(Error::NixInfo { .. })),
                "{text} accepted"
            );
        }
    }
}
