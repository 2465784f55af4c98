use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::*;
use crate::metadata::Extra;

#[test]
fn patterns_match_segment_by_segment() {
    let cases: &[(&str, &str, bool)] = &[
        ("apps/*", "apps/a.tgz", true),
        ("apps/*", "apps/", true),
        ("apps/*", "apps/sub/a.tgz", false),
        ("apps/*", "apps", false),
        ("apps/*/*", "apps/sub/a.tgz", true),
        ("*", "a.tgz", true),
        ("*", "dir/a.tgz", false),
        ("*.tgz", "a.tgz", true),
        ("*.tgz", "a.tar", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("a?c", "abbc", false),
        ("a?c", "a/c", false),
        ("?", "é", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        (
            "*a*a*a*a*a*b",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            false,
        ),
        ("**", "", true),
        ("exact/name", "exact/name", true),
        ("exact/name", "exact/Name", false),
        // Character classes, expected values from Python's fnmatch.fnmatchcase.
        ("[ab]", "a", true),
        ("[ab]", "[ab]", false),
        ("[ab]", "c", false),
        ("[!ab]", "c", true),
        ("[!ab]", "a", false),
        ("[a-c].txt", "b.txt", true),
        ("[a-c].txt", "d.txt", false),
        ("[]]", "x", false),
        ("[]]", "]", true),
        ("[!]]", "x", true),
        ("[", "[", true),
        ("a[", "a[", true),
        ("[a-", "[a-", true),
        ("[a-]", "-", true),
        ("file[0-9][0-9].tgz", "file42.tgz", true),
        ("file[0-9][0-9].tgz", "file4x.tgz", false),
        ("*[0-9]", "abc7", true),
        ("[*]", "*", true),
        ("[*]", "a", false),
        ("[?]", "?", true),
        ("[?]", "a", false),
        ("[z-a]", "m", false),
        ("[é]", "é", true),
        ("[/]", "/", false),
        ("", "", true),
        ("/*", "/x", true),
    ];
    for &(pattern, name, expected) in cases {
        assert_eq!(
            path_matches(pattern, name),
            expected,
            "{pattern:?} ~ {name:?}"
        );
    }
}

#[test]
fn hash_prefixes() {
    // sha256("apps/a.tgz") starts with this digest's first characters.
    let digest = hex::encode(Sha256::digest(b"apps/a.tgz"));
    let p = |s: &str| vec![s.to_string()];
    assert!(hash_prefix_matches(&p(&digest[..2]), "apps/a.tgz"));
    // Compared exactly, as python-tuf does: an uppercase prefix delegates nothing.
    let upper = digest[..8].to_uppercase();
    assert_ne!(upper, digest[..8], "the prefix has a letter");
    assert!(!hash_prefix_matches(&p(&upper), "apps/a.tgz"));
    assert!(hash_prefix_matches(&p(""), "apps/a.tgz"));
    assert!(hash_prefix_matches(&p(&digest), "apps/a.tgz"));
    let other = if digest.starts_with('0') { "1" } else { "0" };
    assert!(!hash_prefix_matches(&p(other), "apps/a.tgz"));
    assert!(!hash_prefix_matches(&[], "apps/a.tgz"));
    assert!(hash_prefix_matches(
        &[other.to_string(), digest[..4].to_string()],
        "apps/a.tgz"
    ));
}

fn expires() -> DateTime<Utc> {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

fn role(name: &str, paths: &[&str], terminating: bool) -> DelegatedRole {
    DelegatedRole {
        name: name.to_string(),
        keyids: Vec::new(),
        threshold: 1,
        terminating,
        paths: Some(paths.iter().map(|p| p.to_string()).collect()),
        path_hash_prefixes: None,
        extra: Extra::new(),
    }
}

fn targets(listed: &[&str], children: Vec<DelegatedRole>) -> Targets {
    let mut t = Targets::new(1, expires());
    for name in listed {
        t.targets
            .insert(name.to_string(), TargetFile::new(1, &"00".repeat(32), None));
    }
    if !children.is_empty() {
        t.delegations = Some(Delegations {
            keys: BTreeMap::new(),
            roles: children,
            succinct_roles: None,
            extra: Extra::new(),
        });
    }
    t
}

/// A repository of delegated roles in memory; returns (found role, visit order, loads).
fn run(
    top: &Targets,
    roles: &BTreeMap<&str, Targets>,
    name: &str,
    max: usize,
) -> (Option<String>, Vec<String>, Vec<String>) {
    let mut visits = Vec::new();
    let mut loads = Vec::new();
    let found = search(
        top,
        name,
        max,
        |role, _| {
            loads.push(role.name.clone());
            roles
                .get(role.name.as_str())
                .cloned()
                .ok_or_else(|| format!("no role {}", role.name))
        },
        |r| visits.push(r.to_string()),
    )
    .unwrap();
    (found.map(|f| f.role), visits, loads)
}

/// targets -> [A (apps/*), B (*)], A -> [C (apps/*)], C lists apps/x, B lists apps/x too.
fn tree(a_terminating: bool) -> (Targets, BTreeMap<&'static str, Targets>) {
    let top = targets(
        &["top.txt"],
        vec![
            role("A", &["apps/*"], a_terminating),
            role("B", &["*", "apps/*"], false),
        ],
    );
    let roles = BTreeMap::from([
        ("A", targets(&[], vec![role("C", &["apps/*"], false)])),
        ("B", targets(&["apps/x", "apps/y"], vec![])),
        ("C", targets(&["apps/x"], vec![])),
    ]);
    (top, roles)
}

#[test]
fn pre_order_depth_first() {
    let (top, roles) = tree(false);
    // C (under A) is searched before B: depth first, in listed order.
    let (found, visits, _) = run(&top, &roles, "apps/x", 32);
    assert_eq!(found.as_deref(), Some("C"));
    assert_eq!(visits, ["targets", "A", "C"]);
    // Not in A's subtree: B after the whole subtree of A.
    let (found, visits, _) = run(&top, &roles, "apps/y", 32);
    assert_eq!(found.as_deref(), Some("B"));
    assert_eq!(visits, ["targets", "A", "C", "B"]);
    // The top level wins over everything.
    let (found, visits, loads) = run(&top, &roles, "top.txt", 32);
    assert_eq!(found.as_deref(), Some("targets"));
    assert_eq!(visits, ["targets"]);
    assert!(loads.is_empty(), "no delegated role is fetched");
    // Only roles whose paths match are visited.
    let (found, visits, _) = run(&top, &roles, "other.txt", 32);
    assert_eq!(found, None);
    assert_eq!(visits, ["targets", "B"]);
}

#[test]
fn terminating_role_ends_the_search_after_its_subtree() {
    let (top, roles) = tree(true);
    let (found, visits, _) = run(&top, &roles, "apps/y", 32);
    assert_eq!(found, None, "B must not be searched after terminating A");
    assert_eq!(visits, ["targets", "A", "C"]);
    // A terminating role that does not match the name terminates nothing.
    let (found, _, _) = run(&top, &roles, "b.txt", 32);
    assert_eq!(found, None);
    let mut roles = roles;
    roles.insert("B", targets(&["b.txt"], vec![]));
    let (found, _, _) = run(&top, &roles, "b.txt", 32);
    assert_eq!(found.as_deref(), Some("B"));
}

#[test]
fn terminating_drops_later_siblings_of_the_same_delegator() {
    let top = targets(
        &[],
        vec![role("T", &["*"], true), role("Later", &["*"], false)],
    );
    let roles = BTreeMap::from([
        ("T", targets(&[], vec![])),
        ("Later", targets(&["x"], vec![])),
    ]);
    let (found, visits, _) = run(&top, &roles, "x", 32);
    assert_eq!(found, None);
    assert_eq!(visits, ["targets", "T"]);
}

#[test]
fn cycles_are_visited_once_and_the_cap_holds() {
    // A -> B -> A: each role once.
    let top = targets(&[], vec![role("A", &["*"], false)]);
    let roles = BTreeMap::from([
        ("A", targets(&[], vec![role("B", &["*"], false)])),
        ("B", targets(&[], vec![role("A", &["*"], false)])),
    ]);
    let (found, visits, loads) = run(&top, &roles, "x", 32);
    assert_eq!(found, None);
    assert_eq!(visits, ["targets", "A", "B"]);
    assert_eq!(loads, ["A", "B"]);
    // A chain longer than the cap: at most `max` roles, the top level included.
    let mut roles = BTreeMap::new();
    let names: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let children = match names.get(i + 1) {
            Some(next) => vec![role(next, &["*"], false)],
            None => vec![],
        };
        let listed: &[&str] = if i == 39 { &["x"] } else { &[] };
        roles.insert(name.as_str(), targets(listed, children));
    }
    let top = targets(&[], vec![role("r0", &["*"], false)]);
    let (found, visits, _) = run(&top, &roles, "x", 5);
    assert_eq!(found, None);
    assert_eq!(visits.len(), 5);
    let (found, visits, _) = run(&top, &roles, "x", 41);
    assert_eq!(found.as_deref(), Some("r39"));
    assert_eq!(visits.len(), 41);
}

#[test]
fn a_role_that_fails_to_load_ends_the_search() {
    let (top, mut roles) = tree(false);
    roles.remove("C");
    let err = search(
        &top,
        "apps/y",
        32,
        |role, _| {
            roles
                .get(role.name.as_str())
                .cloned()
                .ok_or(role.name.clone())
        },
        |_| {},
    )
    .unwrap_err();
    assert_eq!(err, "C");
}

#[test]
fn hash_prefix_delegations_are_followed() {
    let digest = hex::encode(Sha256::digest(b"bins/x"));
    let mut bins = role("bins", &[], false);
    bins.paths = None;
    bins.path_hash_prefixes = Some(vec![digest[..1].to_string()]);
    let top = targets(&[], vec![bins]);
    let roles = BTreeMap::from([("bins", targets(&["bins/x"], vec![]))]);
    let (found, _, _) = run(&top, &roles, "bins/x", 32);
    assert_eq!(found.as_deref(), Some("bins"));
}

#[test]
fn role_file_stems_are_safe_file_names() {
    assert_eq!(role_file_stem("apps"), "apps");
    assert_eq!(role_file_stem("a.b-c_d"), "a.b-c_d");
    assert_eq!(role_file_stem("a/b"), "a%2Fb");
    assert_eq!(role_file_stem(".."), "%2E%2E");
    assert_eq!(role_file_stem("."), "%2E");
    assert_eq!(role_file_stem("../x"), "..%2Fx");
    assert_eq!(role_file_stem("é"), "%C3%A9");
    assert_eq!(role_file_stem("a b%"), "a%20b%25");
    for name in ["a/b", "..", "../../etc/passwd", "\0"] {
        let stem = role_file_stem(name);
        assert!(
            !stem.contains('/') && stem != ".." && stem != ".",
            "{name:?}"
        );
    }
}
