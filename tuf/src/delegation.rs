//! Delegated targets (specification 1.0, section 5.6.7): which delegated role may sign for a
//! target name, and the order roles are searched in. Pure: the walk takes a loader that
//! returns a role's verified targets metadata, so the order is tested without a repository.
//!
//! Rules, as python-tuf applies them:
//! - a path pattern matches a target name with as many `/`-separated segments, each segment
//!   matched by shell-style wildcards: `*` any run of characters, `?` one character (neither
//!   crosses a `/`); other characters match themselves (`[...]` classes are not supported and
//!   match literally);
//! - a `path_hash_prefixes` entry matches when the lowercase hex sha256 of the target name
//!   starts with it, compared exactly (an uppercase prefix matches nothing, as in python-tuf);
//! - the search is pre-order depth-first from the top-level targets role, children in the
//!   order their delegator lists them; a role already visited is skipped; a terminating
//!   role that matched ends the search of every role not yet visited except its own
//!   delegations; at most [`MAX_DELEGATIONS`] roles are visited.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use std::rc::Rc;

use crate::metadata::{DelegatedRole, Delegations, TargetFile, Targets};

/// Most roles (the top-level targets included) visited in one target search (python-tuf's
/// `max_delegations`).
pub const MAX_DELEGATIONS: usize = 32;

/// The name of the top-level targets role, where every search starts.
pub const TOP_LEVEL: &str = "targets";

/// Whether `pattern` matches target `name` (see the module documentation).
pub fn path_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let name: Vec<&str> = name.split('/').collect();
    pattern.len() == name.len()
        && pattern
            .iter()
            .zip(&name)
            .all(|(p, n)| segment_matches(p, n))
}

/// Glob matching of one segment with `*` and `?` over characters, iterative with one
/// backtrack point (never exponential).
fn segment_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` take one more character and try again from there.
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Whether the lowercase hex sha256 of `name` starts with one of `prefixes`, exactly.
pub fn hash_prefix_matches(prefixes: &[String], name: &str) -> bool {
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    prefixes.iter().any(|p| digest.starts_with(p.as_str()))
}

/// Where a search found a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The role whose metadata lists the target.
    pub role: String,
    pub target: TargetFile,
}

/// Searches for target `name` from the top-level `targets`, visiting at most `max_roles`
/// roles. `load(role, delegations)` returns the verified metadata of delegated `role`, listed
/// in `delegations` (which hold the keys it is verified with); an error
/// ends the search (a role that fails verification is not skipped: the specification treats
/// it as the end of the search, and python-tuf fails the lookup).
///
/// `visit` is told each role in the order visited (for tests and logs).
pub fn search<E>(
    targets: &Targets,
    name: &str,
    max_roles: usize,
    mut load: impl FnMut(&DelegatedRole, &Delegations) -> Result<Targets, E>,
    mut visit: impl FnMut(&str),
) -> Result<Option<Found>, E> {
    // (role, its entry and the delegator's delegations); the top level has neither.
    type Entry = (String, Option<(DelegatedRole, Rc<Delegations>)>);
    let mut stack: Vec<Entry> = vec![(TOP_LEVEL.to_string(), None)];
    let mut visited: BTreeSet<String> = BTreeSet::new();
    while let Some((role, entry)) = stack.pop() {
        if visited.len() >= max_roles {
            break;
        }
        if visited.contains(&role) {
            continue;
        }
        let loaded;
        let metadata = match &entry {
            None => targets,
            Some((entry, delegations)) => {
                loaded = load(entry, delegations)?;
                &loaded
            }
        };
        visit(&role);
        if let Some(target) = metadata.targets.get(name) {
            return Ok(Some(Found {
                role,
                target: target.clone(),
            }));
        }
        visited.insert(role.clone());
        let Some(delegations) = &metadata.delegations else {
            continue;
        };
        let delegations = Rc::new(delegations.clone());
        let mut children = Vec::new();
        for child in &delegations.roles {
            if !child.is_delegated_path(name) {
                continue;
            }
            children.push((
                child.name.clone(),
                Some((child.clone(), delegations.clone())),
            ));
            if child.terminating {
                // Nothing after a matching terminating role is searched (5.6.7.2.2).
                stack.clear();
                break;
            }
        }
        // Pre-order: the first listed child is popped first.
        stack.extend(children.into_iter().rev());
    }
    Ok(None)
}

/// The file name of a role's metadata (without version and `.json`): the name with every
/// byte outside `[A-Za-z0-9._-]` percent-encoded (python-tuf quotes names the same way), so
/// a name from metadata never becomes a path with `/` or `..`. A name made only of dots is
/// encoded whole.
pub fn role_file_stem(role: &str) -> String {
    let all_dots = role.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(role.len());
    for b in role.bytes() {
        let plain =
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-') || (b == b'.' && !all_dots);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
