//! Store path names (`<storedir>/<hash>-<name>`) and the rule for where a symlink inside a
//! store path may point. Pure: no file is touched here.
//!
//! Symlinks ([`classify_symlink`]): a store path may be a whole root tree (Debian's packages
//! unpacked into one directory), so an absolute target outside the store directories
//! (`bin/systemd -> /lib/systemd/systemd`, a unit masked `-> /dev/null`) is a path of the
//! image, resolved by the running system against the image's root: it is kept byte for byte,
//! is no reference, and is never followed on the build host. What stays refused is what would
//! break the closure, whose paths are the only store contents of an image: a target inside a
//! store directory must end inside a store path of that same store (then it is a reference the
//! closure must hold); a relative target must not climb with `..` above the store directory or
//! end beside the store paths, because there its meaning depends on where the store sits, not
//! on the image's root; and an absolute target with `..` is refused, because after a symlinked
//! directory (`/usr/..`) only the finished image can say where it leads, possibly into a store.

use std::ffi::OsStr;
use std::path::{Component, Path};

use crate::base32;
use crate::scan::HASH_PART_LEN;

/// Where built-in store paths appear inside an image.
pub const BUILTIN_STORE_DIR: &str = "/flipside/store";
/// Where Nix store paths appear, on the build host and inside an image.
pub const NIX_STORE_DIR: &str = "/nix/store";

/// Longest name Nix accepts in a store path (its limit is on `<hash>-<name>`: 211 + 33).
const MAX_NIX_NAME: usize = 211;

/// A store path split into its parts: `store_dir/hash-name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePathName<'a> {
    pub store_dir: &'static str,
    /// The 32 base-32 digits.
    pub hash: &'a str,
    pub name: &'a str,
}

impl StorePathName<'_> {
    /// `<hash>-<name>`.
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.hash, self.name)
    }

    pub fn path(&self) -> String {
        format!("{}/{}-{}", self.store_dir, self.hash, self.name)
    }
}

/// Splits `<hash>-<name>` (a directory entry of a store directory).
pub fn parse_base_name(base: &str) -> Option<(&str, &str)> {
    let (hash, name) = base.split_at_checked(HASH_PART_LEN)?;
    let name = name.strip_prefix('-')?;
    if hash.bytes().all(base32::is_digit) && is_valid_nix_name(name) {
        Some((hash, name))
    } else {
        None
    }
}

/// The names Nix allows after the hash: `[A-Za-z0-9+-._?=]`, not starting with `.`.
pub fn is_valid_nix_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NIX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b))
}

/// Splits an absolute path under one of the known store directories into the store path and
/// the rest (`""` or `/sub/path`). `None` if it is not under a store directory or the first
/// component is not a `<hash>-<name>`.
pub fn split_store_path(path: &str) -> Option<(StorePathName<'_>, &str)> {
    for store_dir in [BUILTIN_STORE_DIR, NIX_STORE_DIR] {
        let Some(rest) = path
            .strip_prefix(store_dir)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let (base, sub) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (hash, name) = parse_base_name(base)?;
        let sub = sub.trim_end_matches('/');
        return Some((
            StorePathName {
                store_dir,
                hash,
                name,
            },
            sub,
        ));
    }
    None
}

/// Where a symlink inside a store path points, when the rule allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTarget {
    /// Into the same store path.
    Inside,
    /// Into another store path (its `<hash>-<name>`), which must then be in the closure.
    Other(String),
    /// To an absolute path of the image outside the store directories (`/dev/null`,
    /// `/lib/systemd/systemd`): kept as it is, resolved against the image's root at run time.
    Image,
}

/// Where a symlink may not point, as a phrase for the error message.
pub type LinkRefusal = &'static str;

/// Checks a symlink's target against the store rule (see the module doc): an absolute target
/// without `..` outside the top directories of the stores (`/flipside`, `/nix`) is an image
/// path; other absolute targets must lie under `store_dir`, relative ones must not climb above
/// it, and either way they must end inside a store path (`<hash>-<name>`), not at the store
/// directory or beside the paths.
///
/// `own` is the `<hash>-<name>` of the store path holding the link (`None` while it is being
/// added and has no name yet). `parent_depth` is how many components the directory holding
/// the link lies below the store directory: 0 when the store path itself is the link, 1 for a
/// link at the top of a store path's directory.
pub fn classify_symlink(
    store_dir: &str,
    own: Option<&str>,
    parent_depth: usize,
    target: &OsStr,
) -> Result<LinkTarget, LinkRefusal> {
    let target = Path::new(target);
    // `which` is the store path entered at depth 1; None means `own`.
    let (mut depth, mut which, rest) = if target.is_absolute() {
        if target.components().any(|c| c == Component::ParentDir) {
            return Err("an absolute target with `..`, which only the finished image resolves");
        }
        let Ok(rest) = target.strip_prefix(store_dir) else {
            let in_a_store_top = [BUILTIN_STORE_DIR, NIX_STORE_DIR]
                .into_iter()
                .chain([store_dir])
                .any(|dir| target.starts_with(store_top(dir)));
            return if in_a_store_top {
                Err("a store directory other than its own, or beside the store")
            } else {
                Ok(LinkTarget::Image)
            };
        };
        (0usize, None::<&OsStr>, rest)
    } else {
        (parent_depth, None, target)
    };
    for component in rest.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or("a relative target that climbs above the store directory")?;
            }
            Component::Normal(c) => {
                if depth == 0 {
                    which = if own.is_some_and(|o| OsStr::new(o) == c) {
                        None
                    } else {
                        Some(c)
                    };
                }
                depth += 1;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("a target that is not a plain path");
            }
        }
    }
    if depth == 0 {
        return Err("the store directory itself");
    }
    match which {
        None => Ok(LinkTarget::Inside),
        Some(c) => match c.to_str().and_then(parse_base_name) {
            Some(_) => Ok(LinkTarget::Other(c.to_string_lossy().into_owned())),
            None => Err("an entry of the store directory that is not a store path"),
        },
    }
}

/// The first directory of a store directory (`/flipside` of `/flipside/store`), which holds
/// nothing but the store in an image.
fn store_top(store_dir: &str) -> &Path {
    let dir = Path::new(store_dir);
    dir.ancestors()
        .filter(|a| a.parent().is_some())
        .last()
        .unwrap_or(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0c0aq1rx8hwbzj1l1lvxv3f1pz3vmd4y";
    const H2: &str = "143xibwh31h9bvxzalr0sjvbbvpa6ffs";

    #[test]
    fn base_names() {
        assert_eq!(parse_base_name(&format!("{H}-init")), Some((H, "init")));
        assert_eq!(
            parse_base_name(&format!("{H}-openssl-3.0.1")),
            Some((H, "openssl-3.0.1"))
        );
        for bad in [
            format!("{H}init"),
            format!("{H}-"),
            format!("{H}-.hidden"),
            format!("{H}-a b"),
            format!("{}-x", &H[..31]),
            format!("{}e-x", &H[..31]),
            "é".repeat(20),
            String::new(),
        ] {
            assert_eq!(parse_base_name(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn store_paths_split_into_store_path_and_rest() {
        let full = format!("/flipside/store/{H}-init/bin/init");
        let (p, rest) = split_store_path(&full).unwrap();
        assert_eq!(p.store_dir, BUILTIN_STORE_DIR);
        assert_eq!(p.base_name(), format!("{H}-init"));
        assert_eq!(rest, "/bin/init");
        let full = format!("/nix/store/{H}-hello-2.12/");
        let (p, rest) = split_store_path(&full).unwrap();
        assert_eq!(
            (p.store_dir, p.name, rest),
            (NIX_STORE_DIR, "hello-2.12", "")
        );
        assert_eq!(p.path(), format!("/nix/store/{H}-hello-2.12"));
        for bad in [
            "/nix/store".to_string(),
            "/nix/store/".to_string(),
            "/nix/storex/a".to_string(),
            format!("/usr/{H}-x"),
            "/nix/store/not-a-store-path".to_string(),
            format!("nix/store/{H}-x"),
        ] {
            assert_eq!(split_store_path(&bad), None, "{bad}");
        }
    }

    fn classify(own: Option<&str>, depth: usize, target: &str) -> Result<LinkTarget, LinkRefusal> {
        classify_symlink(BUILTIN_STORE_DIR, own, depth, OsStr::new(target))
    }

    #[test]
    fn symlinks_that_stay_in_the_store() {
        let own = format!("{H}-app");
        let other = format!("{H2}-lib");
        for own_name in [None, Some(own.as_str())] {
            for (depth, target) in [
                (1, "bin/app"),
                (1, "./bin/../bin/app"),
                (2, "../lib/x.so"),
                (3, "../../share"),
            ] {
                assert_eq!(
                    classify(own_name, depth, target),
                    Ok(LinkTarget::Inside),
                    "{target}"
                );
            }
            for (depth, target) in [
                (1, format!("../{other}/lib/x.so")),
                (2, format!("../../{other}")),
                (0, other.clone()),
                (5, format!("/flipside/store/{other}/bin")),
                (1, format!("/flipside/store/./{other}")),
            ] {
                assert_eq!(
                    classify(own_name, depth, &target),
                    Ok(LinkTarget::Other(other.clone())),
                    "{target}"
                );
            }
        }
        // Back into itself by name: only recognisable once the path has its name.
        assert_eq!(
            classify(Some(&own), 2, &format!("../../{own}/bin")),
            Ok(LinkTarget::Inside)
        );
        assert_eq!(
            classify(Some(&own), 1, &format!("/flipside/store/{own}/bin")),
            Ok(LinkTarget::Inside)
        );
    }

    #[test]
    fn absolute_links_outside_the_stores_are_image_paths() {
        // What a Debian root tree holds (`bin/systemd`, unit masks, the loader), at any depth,
        // before and after the path has its name.
        let own = format!("{H}-debian");
        for own_name in [None, Some(own.as_str())] {
            for (depth, target) in [
                (2, "/lib/systemd/systemd"),
                (4, "/dev/null"),
                (1, "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
                (3, "/etc/environment"),
                (0, "/etc/os-release"),
                (1, "/"),
                (1, "/usr/./lib"),
                (1, "/flipsidex/a"),
                (1, "/nixos/x"),
            ] {
                assert_eq!(
                    classify(own_name, depth, target),
                    Ok(LinkTarget::Image),
                    "{target} at {depth}"
                );
            }
        }
    }

    #[test]
    fn symlinks_that_escape() {
        for (depth, target) in [
            (1, "/nix/store/x"),
            (1, "/nix"),
            (1, "/flipside/other"),
            (1, "/usr/../flipside/store/x"),
            (1, "/lib/../etc/passwd"),
            (1, "/.."),
            (1, "/flipside/storex/a"),
            (1, "/flipside"),
            (1, "/flipside/store"),
            (1, "/flipside/store/"),
            (1, "../../etc"),
            (1, ".."),
            (0, ".."),
            (0, "."),
            (3, "../../../../x"),
            (1, "../not-a-store-path"),
            (1, "../.meta/x"),
            (1, "/flipside/store/../../etc"),
        ] {
            assert!(
                classify(None, depth, target).is_err(),
                "{target} at {depth} accepted"
            );
        }
    }

    #[test]
    fn the_nix_store_dir_applies_to_nix_paths() {
        let other = format!("{H2}-glibc-2.37");
        assert_eq!(
            classify_symlink(
                NIX_STORE_DIR,
                None,
                2,
                OsStr::new(&format!("/nix/store/{other}/lib/libc.so.6"))
            ),
            Ok(LinkTarget::Other(other.clone()))
        );
        assert_eq!(
            classify_symlink(NIX_STORE_DIR, None, 2, OsStr::new("/bin/sh")),
            Ok(LinkTarget::Image)
        );
        for target in [format!("/flipside/store/{other}"), "/nix/var/x".into()] {
            assert!(
                classify_symlink(NIX_STORE_DIR, None, 2, OsStr::new(&target)).is_err(),
                "{target}"
            );
        }
    }
}
