//! `flipside-build diff`: the store paths an update from one image to another adds, removes
//! and changes.

use std::io::Write;
use std::path::PathBuf;

use flipside_store::diff::{Change, ClosureDiff};
use flipside_store::release::read_release_closure;

use super::store::{print_line, stdout_result};
use crate::Error;

const EXAMPLE: &str = "\
Example:
  flipside-build diff out/kiosk-6 out/kiosk-7
  # ~ openssl 3.0.1 -> 3.0.2: /nix/store/<a>-openssl-3.0.1 -> /nix/store/<b>-openssl-3.0.2
  # + /nix/store/<c>-zlib-1.3
  # - /nix/store/<d>-curl-8.0
  # 1 added, 1 removed, 1 changed

Paths of the same package (name up to the first '-' not followed by a letter, and output)
are paired as changed. The exit code is 0 whether or not the closures differ.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub struct DiffArgs {
    /// The older image: its release.json or the output directory holding it.
    #[arg(value_name = "OLD")]
    pub old: PathBuf,
    /// The newer image: its release.json or the output directory holding it.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// Print JSON ({added, removed, changed: [{name, old, new}]}) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DiffArgs) -> Result<(), Error> {
    let old = read_release_closure(&args.old)?;
    let new = read_release_closure(&args.new)?;
    let diff = flipside_store::diff(&old, &new);
    if args.json {
        let mut out = std::io::stdout().lock();
        return stdout_result(
            serde_json::to_writer_pretty(&mut out, &diff)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
                .and_then(|()| out.flush()),
        );
    }
    for line in text_lines(&diff) {
        print_line(&line)?;
    }
    Ok(())
}

/// Changed, then added, then removed, then a summary line.
fn text_lines(diff: &ClosureDiff) -> Vec<String> {
    let mut lines: Vec<String> = diff.changed.iter().map(change_line).collect();
    lines.extend(diff.added.iter().map(|e| format!("+ {}", e.path)));
    lines.extend(diff.removed.iter().map(|e| format!("- {}", e.path)));
    lines.push(format!(
        "{} added, {} removed, {} changed",
        diff.added.len(),
        diff.removed.len(),
        diff.changed.len()
    ));
    lines
}

fn change_line(c: &Change) -> String {
    let (old_v, new_v) = (c.old_version(), c.new_version());
    let what = if old_v == new_v {
        if old_v.is_empty() {
            format!("{} (rebuilt)", c.name)
        } else {
            format!("{} {old_v} (rebuilt)", c.name)
        }
    } else {
        format!("{} {old_v} -> {new_v}", c.name)
    };
    format!("~ {what}: {} -> {}", c.old.path, c.new.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flipside_contract::release::ClosureEntry;

    fn e(path: &str, h: char) -> ClosureEntry {
        ClosureEntry {
            path: path.into(),
            hash: format!("sha256:{}", h.to_string().repeat(64)),
            references: vec![],
        }
    }

    #[test]
    fn text_output() {
        let a = "/nix/store/0c0aq1rx8hwbzj1l1lvxv3f1pz3vmd4y-openssl-3.0.1";
        let b = "/nix/store/143xibwh31h9bvxzalr0sjvbbvpa6ffs-openssl-3.0.2";
        let c = "/flipside/store/2h9i448h1w70s30b184hh1q60l2060h1-init";
        let d = "/flipside/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-init";
        let z = "/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-zlib-1.3";
        let diff =
            flipside_store::diff(&[e(a, 'a'), e(c, 'c')], &[e(b, 'b'), e(d, 'd'), e(z, 'z')]);
        assert_eq!(
            text_lines(&diff),
            [
                format!("~ init (rebuilt): {c} -> {d}"),
                format!("~ openssl 3.0.1 -> 3.0.2: {a} -> {b}"),
                format!("+ {z}"),
                "1 added, 0 removed, 2 changed".to_string(),
            ]
        );
        assert_eq!(
            text_lines(&ClosureDiff::default()),
            ["0 added, 0 removed, 0 changed"]
        );
    }
}
