//! From what a user writes (built-in store paths in either spelling, Nix store paths, links to
//! them) to one closure that may mix both sources.

use std::path::Path;

use crate::builtin::BuiltinStore;
use crate::closure::Closure;
use crate::path::{split_store_path, BUILTIN_STORE_DIR, NIX_STORE_DIR};
use crate::{nix, Error, Result};

/// A root, by source, as its store path (a sub-path given by the user is dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// `/flipside/store/<hash>-<name>`.
    Builtin(String),
    /// `/nix/store/<hash>-<name>`.
    Nix(String),
}

/// Where Nix paths' records come from.
#[derive(Debug, Clone)]
pub enum NixSource {
    /// Run `nix path-info --json --recursive` on this host.
    Run,
    /// A closure read earlier (a saved path-info file, a closureInfo directory).
    Known(Closure),
}

/// Names the store path a spec stands for:
/// - `/flipside/store/<hash>-<name>[/sub]`: the built-in store (which must be given);
/// - `/nix/store/<hash>-<name>[/sub]`: Nix;
/// - a host path in the built-in store, or a symlink to a store path (like `./result`).
pub fn classify_root(spec: &str, builtin: Option<&BuiltinStore>) -> Result<Root> {
    let by_dir = |path: &str| {
        split_store_path(path).map(|(name, _)| match name.store_dir {
            BUILTIN_STORE_DIR => Root::Builtin(name.path()),
            _ => Root::Nix(name.path()),
        })
    };
    let root = by_dir(spec)
        .or_else(|| builtin.and_then(|b| b.parse_spec(spec)).map(Root::Builtin))
        .or_else(|| {
            // A link such as nix-build's `result`.
            let canonical = Path::new(spec).canonicalize().ok()?;
            canonical
                .to_str()
                .filter(|c| c.starts_with(NIX_STORE_DIR))
                .and_then(by_dir)
        })
        .ok_or_else(|| Error::NotAStorePath {
            spec: spec.to_string(),
        })?;
    if let (Root::Builtin(path), None) = (&root, builtin) {
        return Err(Error::NoBuiltinStore { path: path.clone() });
    }
    Ok(root)
}

/// The closure of a mix of built-in and Nix store paths, running `nix` for the Nix ones.
pub fn resolve_roots(specs: &[String], builtin: Option<&BuiltinStore>) -> Result<Closure> {
    resolve(specs, builtin, &NixSource::Run)
}

/// [`resolve_roots`] with the Nix records taken from `nix`.
pub fn resolve(
    specs: &[String],
    builtin: Option<&BuiltinStore>,
    nix: &NixSource,
) -> Result<Closure> {
    let mut builtin_roots = Vec::new();
    let mut nix_roots = Vec::new();
    for spec in specs {
        match classify_root(spec, builtin)? {
            Root::Builtin(p) => builtin_roots.push(p),
            Root::Nix(p) => nix_roots.push(p),
        }
    }
    let from_builtin = match builtin {
        Some(store) if !builtin_roots.is_empty() => {
            Closure::compute(&builtin_roots, |p| store.lookup(p))?
        }
        _ => Closure::default(),
    };
    let from_nix = match nix {
        NixSource::Run => nix::query(&nix_roots)?,
        NixSource::Known(known) => Closure::compute(&nix_roots, |p| Ok(known.get(p).cloned()))?,
    };
    Ok(from_builtin.merge(from_nix))
}
