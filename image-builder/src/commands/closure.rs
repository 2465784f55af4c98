//! `flipside-build closure`: the closure of store paths (built-in, Nix, or both), with each
//! path's references.

use std::io::Write;
use std::path::PathBuf;

use flipside_store::nix::{read_closure_info, read_path_info_file};
use flipside_store::{resolve, Closure, NixSource};

use super::store::{print_line, stdout_result, StoreArg};
use crate::Error;

const EXAMPLE: &str = "\
Examples:
  flipside-build closure /flipside/store/<hash>-motd-1.0 --store ./flipside-store
  flipside-build closure ./result                      # a nix-build output link
  flipside-build closure --nix-path-info closure.json  # saved `nix path-info --json -r`

Output: one line per store path, sorted: the path, a colon, then the paths it references.
With --json: an array of {path, source, hash, references}.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub struct ClosureArgs {
    /// Store paths: /flipside/store/<hash>-<name> or its host path in the built-in store,
    /// /nix/store/<hash>-<name>, or a link to one. Without any, every path of the
    /// --nix-path-info or --closure-info given.
    #[arg(value_name = "PATH", required_unless_present_any = ["nix_path_info", "closure_info"])]
    pub paths: Vec<String>,
    #[command(flatten)]
    pub store: StoreArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Read Nix paths from this saved `nix path-info --json --recursive` output instead of
    /// running nix.
    #[arg(long, value_name = "FILE", conflicts_with = "closure_info")]
    pub nix_path_info: Option<PathBuf>,
    /// Read Nix paths from this closureInfo directory (`store-paths` and `registration`)
    /// instead of running nix.
    #[arg(long, value_name = "DIR")]
    pub closure_info: Option<PathBuf>,
}

pub fn run(args: ClosureArgs) -> Result<(), Error> {
    let known = match (&args.nix_path_info, &args.closure_info) {
        (Some(file), _) => Some(read_path_info_file(file)?),
        (None, Some(dir)) => Some(read_closure_info(dir)?),
        (None, None) => None,
    };
    let roots: Vec<String> = if args.paths.is_empty() {
        known
            .iter()
            .flat_map(|c| c.paths().iter().map(|p| p.path.clone()))
            .collect()
    } else {
        args.paths.clone()
    };
    let builtin = args.store.open_existing()?;
    let nix = known.map_or(NixSource::Run, NixSource::Known);
    let closure = resolve(&roots, builtin.as_ref(), &nix)?;
    if args.json {
        print_json(&closure)
    } else {
        for p in closure.paths() {
            print_line(&text_line(&p.path, &p.references))?;
        }
        Ok(())
    }
}

/// `path: ref ref ...` (store paths hold no spaces or colons).
fn text_line(path: &str, references: &[String]) -> String {
    let mut line = format!("{path}:");
    for r in references {
        line.push(' ');
        line.push_str(r);
    }
    line
}

fn print_json(closure: &Closure) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    stdout_result(
        serde_json::to_writer_pretty(&mut out, closure.paths())
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
            .and_then(|()| out.flush()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines() {
        assert_eq!(text_line("/s/a", &[]), "/s/a:");
        assert_eq!(
            text_line("/s/a", &["/s/b".into(), "/s/c".into()]),
            "/s/a: /s/b /s/c"
        );
    }
}
