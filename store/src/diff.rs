//! What an update changes: the store paths added, removed and changed between two closures.
//!
//! Pure. A path that is gone and one that appeared are paired as "changed" when they are the
//! same package: names are parsed like Nix's `DrvName` (the name ends at the first `-` not
//! followed by a letter, so `openssl-3.0.1` and `openssl-3.0.2` are `openssl`), after setting
//! aside an output suffix (`-dev`, `-lib`, `-bin`, ...) as `nix store diff-closures` does.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use flipside_contract::release::ClosureEntry;
use serde::Serialize;

use crate::path::split_store_path;

/// A store path name split into package name, version and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageName<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// Output suffix (`dev`, `lib`, ...) or `""`.
    pub output: &'a str,
}

/// Parses the name part of a store path (after `<hash>-`).
pub fn package_name(store_name: &str) -> PackageName<'_> {
    let (rest, output) = match store_name.rsplit_once('-') {
        Some((head, tail)) if !head.is_empty() && is_output_name(tail) => (head, tail),
        _ => (store_name, ""),
    };
    let bytes = rest.as_bytes();
    let split = (0..bytes.len())
        .find(|&i| bytes[i] == b'-' && bytes.get(i + 1).is_some_and(|c| !c.is_ascii_alphabetic()));
    let (name, version) = match split {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    PackageName {
        name,
        version,
        output,
    }
}

/// What `nix store diff-closures` takes for an output name: lowercase letters, or lib32/lib64.
fn is_output_name(s: &str) -> bool {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase())) || s == "lib32" || s == "lib64"
}

/// Nix's `compareVersions`: components are digit runs or other runs, split at `.` and `-`;
/// numbers compare as numbers, `pre` sorts first, a string sorts before a number.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() || !b.is_empty() {
        let (ca, ra) = next_component(a);
        let (cb, rb) = next_component(b);
        if component_less(ca, cb) {
            return Ordering::Less;
        }
        if component_less(cb, ca) {
            return Ordering::Greater;
        }
        (a, b) = (ra, rb);
    }
    Ordering::Equal
}

fn next_component(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(['.', '-']);
    let first_digit = s.bytes().next().is_some_and(|c| c.is_ascii_digit());
    let end = s
        .bytes()
        .position(|c| c == b'.' || c == b'-' || c.is_ascii_digit() != first_digit)
        .unwrap_or(s.len());
    s.split_at(end)
}

fn is_number(c: &str) -> bool {
    !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())
}

fn compare_numbers(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn component_less(c1: &str, c2: &str) -> bool {
    let (n1, n2) = (is_number(c1), is_number(c2));
    if n1 && n2 {
        compare_numbers(c1, c2) == Ordering::Less
    } else if (c1.is_empty() && n2) || (c1 == "pre" && c2 != "pre") {
        true
    } else if c2 == "pre" {
        false
    } else if n2 {
        true
    } else if n1 {
        false
    } else {
        c1 < c2
    }
}

/// One package whose store path changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Package name (with its output, `openssl` or `openssl (dev)`).
    pub name: String,
    pub old: ClosureEntry,
    pub new: ClosureEntry,
}

impl Change {
    pub fn old_version(&self) -> &str {
        package_name(store_name(&self.old.path)).version
    }

    pub fn new_version(&self) -> &str {
        package_name(store_name(&self.new.path)).version
    }
}

/// The difference between two closures, each list sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClosureDiff {
    pub added: Vec<ClosureEntry>,
    pub removed: Vec<ClosureEntry>,
    pub changed: Vec<Change>,
}

impl ClosureDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The name part of a store path (`openssl-3.0.1` of `/nix/store/<hash>-openssl-3.0.1`); a
/// string that is no store path is its own name.
fn store_name(path: &str) -> &str {
    split_store_path(path).map_or(path, |(name, _)| name.name)
}

/// Compares two closures (as release.json records them).
///
/// A path in both with the same hash is unchanged; with a different hash (a non-reproducible
/// build) it is changed. Of the rest, paths of the same package and output are paired: equal
/// versions first, then in version order; what remains is added or removed.
pub fn diff(old: &[ClosureEntry], new: &[ClosureEntry]) -> ClosureDiff {
    let old_by_path: BTreeMap<&str, &ClosureEntry> =
        old.iter().map(|e| (e.path.as_str(), e)).collect();
    let new_by_path: BTreeMap<&str, &ClosureEntry> =
        new.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = ClosureDiff::default();
    // (package, output) -> (old entries, new entries)
    type Group<'a> = (Vec<&'a ClosureEntry>, Vec<&'a ClosureEntry>);
    let mut groups: BTreeMap<(&str, &str), Group<'_>> = BTreeMap::new();
    for (path, o) in &old_by_path {
        match new_by_path.get(path) {
            Some(n) if n.hash != o.hash => out.changed.push(change(o, n)),
            Some(_) => {}
            None => {
                let p = package_name(store_name(path));
                groups.entry((p.name, p.output)).or_default().0.push(o);
            }
        }
    }
    for (path, n) in &new_by_path {
        if !old_by_path.contains_key(path) {
            let p = package_name(store_name(path));
            groups.entry((p.name, p.output)).or_default().1.push(n);
        }
    }
    for (_, (mut olds, mut news)) in groups {
        let by_version = |a: &&ClosureEntry, b: &&ClosureEntry| {
            let (va, vb) = (
                package_name(store_name(&a.path)).version,
                package_name(store_name(&b.path)).version,
            );
            compare_versions(va, vb).then_with(|| a.path.cmp(&b.path))
        };
        olds.sort_by(by_version);
        news.sort_by(by_version);
        // Same version on both sides first: a rebuild, not an upgrade.
        let mut rest_old = Vec::new();
        for o in olds {
            let version = package_name(store_name(&o.path)).version;
            match news
                .iter()
                .position(|n| package_name(store_name(&n.path)).version == version)
            {
                Some(i) => out.changed.push(change(o, news.remove(i))),
                None => rest_old.push(o),
            }
        }
        let pairs = rest_old.len().min(news.len());
        for (o, n) in rest_old.iter().zip(&news) {
            out.changed.push(change(o, n));
        }
        out.removed
            .extend(rest_old[pairs..].iter().map(|e| (*e).clone()));
        out.added.extend(news[pairs..].iter().map(|e| (*e).clone()));
    }
    out.added.sort();
    out.removed.sort();
    out.changed.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.old.path.cmp(&b.old.path))
    });
    out
}

fn change(old: &ClosureEntry, new: &ClosureEntry) -> Change {
    let p = package_name(store_name(&new.path));
    let name = if p.output.is_empty() {
        p.name.to_string()
    } else {
        format!("{} ({})", p.name, p.output)
    };
    Change {
        name,
        old: old.clone(),
        new: new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_like_nix_drv_name() {
        for (input, name, version, output) in [
            ("openssl-3.0.1", "openssl", "3.0.1", ""),
            ("openssl-3.0.1-dev", "openssl", "3.0.1", "dev"),
            ("hello", "hello", "", ""),
            (
                "python3.10-requests-2.28.1",
                "python3.10-requests",
                "2.28.1",
                "",
            ),
            ("nix-2.8.0pre", "nix", "2.8.0pre", ""),
            ("foo-bar-1.0-lib64", "foo-bar", "1.0", "lib64"),
            ("glibc-2.37-8-bin", "glibc", "2.37-8", "bin"),
            ("app-1.0", "app", "1.0", ""),
            ("a-", "a-", "", ""),
            ("x-_1", "x", "_1", ""),
            // Ambiguous as in Nix: a lowercase suffix reads as an output.
            ("hello-unstable", "hello", "", "unstable"),
        ] {
            assert_eq!(
                package_name(input),
                PackageName {
                    name,
                    version,
                    output
                },
                "{input}"
            );
        }
    }

    #[test]
    fn versions_compare_like_nix() {
        use Ordering::*;
        // Cases from Nix's own tests of compareVersions.
        for (a, b, want) in [
            ("1.0", "2.3", Less),
            ("2.1", "2.3", Less),
            ("2.3", "2.3", Equal),
            ("2.5", "2.3", Greater),
            ("3.1", "2.3", Greater),
            ("2.3.1", "2.3", Greater),
            ("2.3.1", "2.3a", Greater),
            ("2.3pre1", "2.3", Less),
            ("2.3pre3", "2.3pre12", Less),
            ("2.3a", "2.3c", Less),
            ("2.3pre1", "2.3c", Less),
            ("2.3pre1", "2.3q", Less),
            ("2.10", "2.9", Greater),
            ("1.0.0000000000000000000000000000001", "1.0.2", Less),
            ("", "1", Less),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    fn e(path: &str, hash: char) -> ClosureEntry {
        ClosureEntry {
            path: path.to_string(),
            hash: format!("sha256:{}", hash.to_string().repeat(64)),
            references: vec![],
        }
    }

    const H1: &str = "0c0aq1rx8hwbzj1l1lvxv3f1pz3vmd4y";
    const H2: &str = "143xibwh31h9bvxzalr0sjvbbvpa6ffs";
    const H3: &str = "2h9i448h1w70s30b184hh1q60l2060h1";
    const H4: &str = "0mdqa9w1p6cmli6976v4wi0sw9r4p5pr";

    fn nix(hash: &str, name: &str) -> String {
        format!("/nix/store/{hash}-{name}")
    }

    #[test]
    fn an_upgrade_is_a_change_not_an_add_and_a_remove() {
        let old = [
            e(&nix(H1, "openssl-3.0.1"), 'a'),
            e(&nix(H2, "glibc-2.37"), 'b'),
            e(&nix(H3, "curl-8.0"), 'c'),
        ];
        let new = [
            e(&nix(H4, "openssl-3.0.2"), 'd'),
            e(&nix(H2, "glibc-2.37"), 'b'),
            e(&nix(H3, "zlib-1.3"), 'c'),
        ];
        let d = diff(&old, &new);
        assert_eq!(d.added, [new[2].clone()]);
        assert_eq!(d.removed, [old[2].clone()]);
        assert_eq!(d.changed.len(), 1);
        let c = &d.changed[0];
        assert_eq!(
            (c.name.as_str(), c.old_version(), c.new_version()),
            ("openssl", "3.0.1", "3.0.2")
        );
        assert_eq!((&c.old, &c.new), (&old[0], &new[0]));
    }

    #[test]
    fn identical_closures_have_no_difference_and_diff_is_symmetric() {
        let a = [e(&nix(H1, "a-1"), 'a'), e(&nix(H2, "b-1"), 'b')];
        assert!(diff(&a, &a).is_empty());
        assert!(diff(&[], &[]).is_empty());
        let d = diff(&[], &a);
        assert_eq!((d.added.len(), d.removed.len()), (2, 0));
        let d = diff(&a, &[]);
        assert_eq!((d.added.len(), d.removed.len()), (0, 2));
    }

    #[test]
    fn same_path_with_another_hash_is_changed() {
        let d = diff(&[e(&nix(H1, "x-1"), 'a')], &[e(&nix(H1, "x-1"), 'b')]);
        assert_eq!(d.changed.len(), 1);
        assert!(d.added.is_empty() && d.removed.is_empty());
    }

    #[test]
    fn two_versions_of_a_package_pair_by_version() {
        // Both openssl 1.1 and 3.0 are in each closure, each rebuilt or upgraded.
        let old = [
            e(&nix(H1, "openssl-1.1.1t"), 'a'),
            e(&nix(H2, "openssl-3.0.1"), 'b'),
        ];
        let new = [
            e(&nix(H3, "openssl-3.0.2"), 'c'),
            e(&nix(H4, "openssl-1.1.1t"), 'd'),
        ];
        let d = diff(&old, &new);
        assert_eq!(d.changed.len(), 2);
        let pairs: Vec<(&str, &str)> = d
            .changed
            .iter()
            .map(|c| (c.old_version(), c.new_version()))
            .collect();
        assert_eq!(pairs, [("1.1.1t", "1.1.1t"), ("3.0.1", "3.0.2")]);
    }

    #[test]
    fn outputs_pair_with_their_own_output() {
        let old = [
            e(&nix(H1, "openssl-3.0.1"), 'a'),
            e(&nix(H2, "openssl-3.0.1-dev"), 'b'),
        ];
        let new = [
            e(&nix(H3, "openssl-3.0.2-dev"), 'c'),
            e(&nix(H4, "openssl-3.0.2"), 'd'),
        ];
        let d = diff(&old, &new);
        let names: Vec<(&str, &str, &str)> = d
            .changed
            .iter()
            .map(|c| (c.name.as_str(), c.old.path.as_str(), c.new.path.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("openssl", old[0].path.as_str(), new[1].path.as_str()),
                ("openssl (dev)", old[1].path.as_str(), new[0].path.as_str()),
            ]
        );
    }

    #[test]
    fn built_in_paths_and_unparseable_paths() {
        let old = [
            e(&format!("/flipside/store/{H1}-init"), 'a'),
            e("/not/a/store/path", 'b'),
        ];
        let new = [
            e(&format!("/flipside/store/{H2}-init"), 'c'),
            e("/not/a/store/path", 'b'),
        ];
        let d = diff(&old, &new);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].name, "init");
        assert!(d.added.is_empty() && d.removed.is_empty());
    }

    #[test]
    fn more_new_versions_than_old_leave_the_newest_added() {
        let old = [e(&nix(H1, "lib-1.0"), 'a')];
        let new = [e(&nix(H2, "lib-2.0"), 'b'), e(&nix(H3, "lib-3.0"), 'c')];
        let d = diff(&old, &new);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].new_version(), "2.0");
        assert_eq!(d.added, [new[1].clone()]);
    }
}
