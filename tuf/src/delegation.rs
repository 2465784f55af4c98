//! Delegated targets (specification 1.0, section 5.6.7): which delegated role may sign for a
//! target name, and the order roles are searched in. Pure: the walk takes a loader that
//! returns a role's verified targets metadata, so the order is tested without a repository.
//!
//! Rules, as python-tuf applies them:
//! - a path pattern matches a target name with as many `/`-separated segments, each segment
//!   matched by shell-style wildcards as Python's `fnmatch`: `*` any run of characters, `?`
//!   one character, `[abc]`, `[a-z]` and `[!...]` one character of (or not of) a class (none
//!   crosses a `/`); other characters match themselves, and so does a `[` never closed;
//! - a `path_hash_prefixes` entry matches when the lowercase hex sha256 of the target name
//!   starts with it, compared exactly (an uppercase prefix matches nothing, as in python-tuf);
//! - `succinct_roles` (TAP 15) delegate to the one hashed bin a name falls in
//!   ([`crate::metadata::SuccinctRoles::role_for_target`]), a terminating role;
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

/// One element of a segment pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*`: any run of characters.
    Star,
    /// `?`: one character.
    Any,
    /// `[...]` or `[!...]`: one character in (or not in) the inclusive ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// A character matching itself.
    Literal(char),
}

/// Splits a segment pattern into tokens as Python's `fnmatch` reads it: `[` opens a class
/// closed by the next `]` (a `]` first in the class is a member), `!` first negates, `a-z`
/// is a range; a `[` never closed matches itself.
fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => out.push(Token::Star),
            '?' => out.push(Token::Any),
            '[' => {
                let mut j = i;
                if chars.get(j) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                let Some(close) = (j..chars.len()).find(|&k| chars[k] == ']') else {
                    out.push(Token::Literal('['));
                    continue;
                };
                let negated = chars.get(i) == Some(&'!');
                let body = &chars[i + usize::from(negated)..close];
                let mut ranges = Vec::new();
                let mut k = 0;
                while k < body.len() {
                    if k + 2 < body.len() && body[k + 1] == '-' {
                        ranges.push((body[k], body[k + 2]));
                        k += 3;
                    } else {
                        ranges.push((body[k], body[k]));
                        k += 1;
                    }
                }
                out.push(Token::Class { negated, ranges });
                i = close + 1;
            }
            c => out.push(Token::Literal(c)),
        }
    }
    out
}

impl Token {
    /// Whether this single-character token matches `c`.
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Star => false,
            Token::Any => true,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
            Token::Literal(l) => *l == c,
        }
    }
}

/// Glob matching of one segment (`*`, `?` and `[...]` classes) over characters, iterative
/// with one backtrack point (never exponential).
fn segment_matches(pattern: &str, text: &str) -> bool {
    let pattern = tokens(pattern);
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(token) if token.matches(text[t]) => {
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
    pattern[p..].iter().all(|t| *t == Token::Star)
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
        // TAP 15: the one bin trusted for this name (by construction), with the bins' keys.
        let bin = delegations
            .succinct_roles
            .as_ref()
            .map(|succinct| succinct.role_for_target(name));
        let listed = delegations
            .roles
            .iter()
            .filter(|child| child.is_delegated_path(name));
        for child in listed.chain(&bin) {
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
