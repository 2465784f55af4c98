//! `flipside-build repo`: create and maintain the signed static TUF repository of releases.
//! Parsing only; the work is done by flipside-repository.

use std::io::Write;
use std::path::PathBuf;

use flipside_repository::{
    AddOptions, Amend, Error as RepoError, InitSettings, KeyDir, Published, Repository,
};
use flipside_tuf::Role;

use super::{repo_keys, rollout};
use crate::{Class, Error};

const INIT_EXAMPLE: &str = "\
Example:
  flipside-build repo init --repo ./repo --keys ./keys
  flipside-build repo init --repo ./repo --keys ./keys \\
      --keys-per-role root=3 --threshold root=2 --expires timestamp=2

Creates REPO/metadata/ (1.root.json, root.json, 1.targets.json, 1.snapshot.json,
timestamp.json) and REPO/targets/. Keys already in KEYS/<role>/ are used; the missing ones are
generated there (files of mode 0600). Keep KEYS/root and KEYS/targets offline; snapshot and
timestamp keys stay with the publisher. Defaults: one key and threshold 1 per role; expiry
root 365, targets 90, snapshot 7, timestamp 1 days.";

const ADD_EXAMPLE: &str = "\
Example:
  flipside-build image system.toml -o out/v7
  flipside-build repo add --repo ./repo --keys ./keys out/v7

Publishes the bundle and index named in RELEASE_DIR/release.json as targets (copied into
REPO/targets/ and checked against release.json), then new targets, snapshot and timestamp
metadata. Needs the targets, snapshot and timestamp keys. Adding a published release again
changes nothing.";

const WITHDRAW_EXAMPLE: &str = "\
Example:
  flipside-build repo withdraw --repo ./repo --keys ./keys kiosk 8

Removes every target of release 8 of kiosk from new targets, snapshot and timestamp metadata
(the files stay, for downloads in progress). Devices no longer choose it; a device that runs it
keeps it until a newer release. To send devices below their anti-rollback floor, publish the
older content with `repo add --allow-rollback`.";

const RESIGN_EXAMPLE: &str = "\
Examples:
  flipside-build repo resign --repo ./repo --keys ./keys               # daily, e.g. from cron
  flipside-build repo resign --repo ./repo --keys ./keys --role targets --role root

Always renews snapshot and timestamp (online keys); --role targets and --role root also renew
those (offline keys), e.g. after an `expired` error (exit 7).";

const ROTATE_EXAMPLE: &str = "\
Example:
  flipside-build repo rotate-key --repo ./repo --keys ./keys timestamp

Replaces every key of ROLE with new ones (same number and threshold) in a new root version,
signed by the current root keys (and by the new ones when ROLE is root), then re-signs the
roles that need it. Needs the root keys. Old key files move to KEYS/retired/<role>/.
With the root keys offline, rotate through `repo prepare --role root --set-keys ROLE=KEY`,
`repo sign-detached` and `repo merge` instead.";

/// A top-level TUF role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Root => Role::Root,
            RoleArg::Targets => Role::Targets,
            RoleArg::Snapshot => Role::Snapshot,
            RoleArg::Timestamp => Role::Timestamp,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum RepoCommand {
    /// Create a new repository (and the keys not yet in the keys directory).
    #[command(after_help = INIT_EXAMPLE)]
    Init(InitArgs),
    /// Publish a release built by `flipside-build image`.
    #[command(after_help = ADD_EXAMPLE)]
    Add(AddArgs),
    /// Withdraw a published release: devices no longer choose it.
    #[command(after_help = WITHDRAW_EXAMPLE)]
    Withdraw(WithdrawArgs),
    /// Renew metadata before it expires.
    #[command(after_help = RESIGN_EXAMPLE)]
    Resign(ResignArgs),
    /// Replace the keys of a role.
    #[command(after_help = ROTATE_EXAMPLE)]
    RotateKey(RotateArgs),
    /// Schedule, pause or resume the rollout of a published release.
    #[command(after_help = rollout::ROLLOUT_EXAMPLE)]
    Rollout(rollout::RolloutArgs),
    /// Set the channels a published release is offered in (promote it).
    #[command(after_help = rollout::CHANNELS_EXAMPLE)]
    Channels(rollout::ChannelsArgs),
    /// Remove what no device can still need: withdrawn releases' files, older metadata versions.
    #[command(after_help = PRUNE_EXAMPLE)]
    Prune(PruneArgs),
    /// Upload the repository to S3-compatible object storage, timestamp last.
    #[command(after_help = super::publish::PUBLISH_EXAMPLE)]
    Publish(super::publish::PublishArgs),
    /// Write a role's next metadata, unsigned, for signers on other machines.
    #[command(after_help = format!("{}\n\n{}", repo_keys::PREPARE_EXAMPLE, repo_keys::KEY_SPEC_HELP))]
    Prepare(repo_keys::PrepareArgs),
    /// Sign prepared metadata with one key, on the signer's machine: a detached signature.
    #[command(after_help = format!("{}\n\n{}", repo_keys::SIGN_DETACHED_EXAMPLE, repo_keys::KEY_SPEC_HELP))]
    SignDetached(repo_keys::SignDetachedArgs),
    /// Publish prepared metadata with its detached signatures once the threshold is met.
    #[command(after_help = repo_keys::MERGE_EXAMPLE)]
    Merge(repo_keys::MergeArgs),
    /// Print the public key object of a key (to put it in root with `prepare --set-keys`).
    #[command(after_help = repo_keys::KEY_SPEC_HELP)]
    PublicKey(repo_keys::PublicKeyArgs),
    /// Make a new ed25519 key file.
    Keygen(repo_keys::KeygenArgs),
}

const PRUNE_EXAMPLE: &str = "\
Examples:
  flipside-build repo prune --repo ./repo --dry-run
  flipside-build repo prune --repo ./repo --grace-days 14

Removes the files under targets/ that the current targets metadata no longer lists (withdrawn
releases) and the targets and snapshot versions older than the current ones, once they are
older than the grace period (default 7 days: devices and CDN caches that started from the older
state finish first). Every root version and the current state stay; nothing is signed, so no
keys are needed. Run it after the CDN's cache lifetime has passed.";

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Repository directory.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// Keep unreferenced files younger than this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    pub grace_days: u32,
    /// List what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `repo prune` and prints what it removed.
fn prune(args: &PruneArgs, now: chrono::DateTime<chrono::Utc>) -> Result<(), Error> {
    let mut repo = Repository::open(&args.repo)?;
    let grace = chrono::TimeDelta::days(i64::from(args.grace_days));
    let pruned = repo.prune(now, grace, args.dry_run)?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut out = std::io::stdout().lock();
    let mut lines: Vec<String> = pruned
        .files
        .iter()
        .map(|p| format!("{verb} {}", p.display()))
        .collect();
    lines.push(format!(
        "{verb} {} files, {} bytes from {}",
        pruned.files.len(),
        pruned.bytes,
        args.repo.display()
    ));
    lines
        .iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .map_err(|source| {
            Error::from(RepoError::Io {
                path: PathBuf::from("<stdout>"),
                source,
            })
        })
}

/// `--repo` and `--keys`, shared by every repo command.
#[derive(Debug, Clone, clap::Args)]
pub struct Dirs {
    /// Repository directory (serve it as is over HTTP).
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// Keys directory: KEYS/<role>/<keyid>.json.
    #[arg(long, value_name = "DIR")]
    pub keys: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub dirs: Dirs,
    /// Signatures a role needs, e.g. root=2 (repeatable; default 1).
    #[arg(long, value_name = "ROLE=N", value_parser = parse_role_number)]
    pub threshold: Vec<(Role, u64)>,
    /// Number of keys of a role, e.g. root=3 (repeatable; default 1).
    #[arg(long, value_name = "ROLE=N", value_parser = parse_role_number)]
    pub keys_per_role: Vec<(Role, u64)>,
    /// Days each new version of a role's metadata stays valid, e.g. timestamp=2 (repeatable).
    #[arg(long, value_name = "ROLE=DAYS", value_parser = parse_role_number)]
    pub expires: Vec<(Role, u64)>,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub dirs: Dirs,
    /// Output directory of `flipside-build image` (holds release.json, the bundle and index).
    #[arg(value_name = "RELEASE_DIR")]
    pub release_dir: PathBuf,
    /// A deliberate rollback: devices that committed a newer release may install this one,
    /// and committing it lowers their anti-rollback floor to its version.
    #[arg(long)]
    pub allow_rollback: bool,
    /// Offer the release in this channel (repeatable; default stable).
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Vec<String>,
    /// Roll the release out in waves, e.g. '1%@now,10%@+1d,100%@+3d' (see `repo rollout`).
    #[arg(long, value_name = "WAVES")]
    pub rollout: Option<String>,
}

/// A published release: its system name and version.
#[derive(Debug, Clone, clap::Args)]
pub struct ReleaseRef {
    /// System name of the release.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Its version.
    #[arg(value_name = "VERSION")]
    pub version: u64,
}

#[derive(Debug, clap::Args)]
pub struct WithdrawArgs {
    #[command(flatten)]
    pub dirs: Dirs,
    #[command(flatten)]
    pub release: ReleaseRef,
}

#[derive(Debug, clap::Args)]
pub struct ResignArgs {
    #[command(flatten)]
    pub dirs: Dirs,
    /// Also renew this offline role: targets or root (repeatable).
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: Vec<RoleArg>,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub dirs: Dirs,
    /// The role whose keys to replace.
    #[arg(value_enum, value_name = "ROLE")]
    pub role: RoleArg,
}

/// Parses `ROLE=N` (N a whole number).
pub(crate) fn parse_role_number(text: &str) -> Result<(Role, u64), String> {
    let (role, number) = text
        .split_once('=')
        .ok_or_else(|| format!("expected ROLE=N, e.g. root=2, not {text:?}"))?;
    let role: Role = role
        .parse()
        .map_err(|e: flipside_tuf::Error| e.to_string())?;
    let number = number
        .parse()
        .map_err(|_| format!("{number:?} is not a whole number"))?;
    Ok((role, number))
}

/// The init settings from the repeated ROLE=N options (the last one of a role wins).
fn init_settings(args: &InitArgs) -> Result<InitSettings, Error> {
    let mut settings = InitSettings::default();
    let too_big = |what: &str, role: Role, n: u64| {
        Error::from(RepoError::Settings {
            why: format!("{what} {role}={n} is too large"),
        })
    };
    for role in Role::ALL {
        settings.roles.insert(role, settings.role(role));
    }
    for (role, n) in &args.keys_per_role {
        let keys = usize::try_from(*n).map_err(|_| too_big("--keys-per-role", *role, *n))?;
        settings.roles.entry(*role).and_modify(|s| s.keys = keys);
    }
    for (role, n) in &args.threshold {
        settings.roles.entry(*role).and_modify(|s| s.threshold = *n);
    }
    for (role, n) in &args.expires {
        let days = u32::try_from(*n).map_err(|_| too_big("--expires", *role, *n))?;
        settings
            .roles
            .entry(*role)
            .and_modify(|s| s.expiry_days = days);
    }
    Ok(settings)
}

pub fn run(cmd: RepoCommand) -> Result<(), Error> {
    let now = chrono::Utc::now();
    let (dirs, published) = match cmd {
        RepoCommand::Init(args) => {
            let settings = init_settings(&args)?;
            // Refuse bad settings before creating the repository directory.
            settings.validate()?;
            let mut repo = Repository::create(&args.dirs.repo)?;
            let published = repo.init(&KeyDir::new(&args.dirs.keys), &settings, now)?;
            (args.dirs, published)
        }
        RepoCommand::Add(args) => {
            let mut repo = Repository::open(&args.dirs.repo)?;
            let rollout = args
                .rollout
                .as_deref()
                .map(|text| rollout::parse_waves(text, now))
                .transpose()
                .map_err(|why| RepoError::Rollout { why })?;
            let options = AddOptions {
                allow_rollback: args.allow_rollback,
                channels: args.channel,
                rollout,
            };
            let published = repo.add_with(
                &KeyDir::new(&args.dirs.keys),
                &args.release_dir,
                options,
                now,
            )?;
            (args.dirs, published)
        }
        RepoCommand::Withdraw(args) => {
            let mut repo = Repository::open(&args.dirs.repo)?;
            let published = repo.withdraw(
                &KeyDir::new(&args.dirs.keys),
                &args.release.name,
                args.release.version,
                now,
            )?;
            (args.dirs, published)
        }
        RepoCommand::Resign(args) => {
            let roles: Vec<Role> = args.role.iter().map(|r| Role::from(*r)).collect();
            let mut repo = Repository::open(&args.dirs.repo)?;
            let published = repo.resign(&KeyDir::new(&args.dirs.keys), &roles, now)?;
            (args.dirs, published)
        }
        RepoCommand::Rollout(args) => {
            let change = args.change(now).map_err(|why| RepoError::Rollout { why })?;
            let mut repo = Repository::open(&args.dirs.repo)?;
            let keys = KeyDir::new(&args.dirs.keys);
            let r = &args.release;
            let published = repo.amend(&keys, &r.name, r.version, &change, now)?;
            (args.dirs, published)
        }
        RepoCommand::Channels(args) => {
            let change = Amend::Channels(args.channels);
            let mut repo = Repository::open(&args.dirs.repo)?;
            let keys = KeyDir::new(&args.dirs.keys);
            let r = &args.release;
            let published = repo.amend(&keys, &r.name, r.version, &change, now)?;
            (args.dirs, published)
        }
        // Changes no metadata: nothing to report but the files.
        RepoCommand::Prune(args) => return prune(&args, now),
        RepoCommand::Publish(args) => return super::publish::run(&args, now),
        RepoCommand::Prepare(args) => return repo_keys::prepare(&args, now),
        RepoCommand::SignDetached(args) => return repo_keys::sign_detached(&args, now),
        RepoCommand::PublicKey(args) => return repo_keys::public_key(&args),
        RepoCommand::Keygen(args) => return repo_keys::keygen(&args),
        RepoCommand::Merge(args) => {
            let published = repo_keys::merge(&args, now)?;
            (args.dirs, published)
        }
        RepoCommand::RotateKey(args) => {
            let mut repo = Repository::open(&args.dirs.repo)?;
            let published =
                repo.rotate_key(&KeyDir::new(&args.dirs.keys), args.role.into(), now)?;
            (args.dirs, published)
        }
    };
    report(&dirs, &published)
}

/// Prints what was published, one fact per line; a warning on stderr.
fn report(dirs: &Dirs, p: &Published) -> Result<(), Error> {
    if let Some(newer) = &p.newer {
        eprintln!(
            "warning: version {} ({}) of this system and hardware id is already published, above \
             the release just added: devices install the newest and never go back, so none will \
             install this one; publish a version above {} to replace it",
            newer.version, newer.display_version, newer.version
        );
    }
    let mut lines = Vec::new();
    for key in &p.new_keys {
        lines.push(format!(
            "new {} key {} in {}",
            key.role,
            key.key_id,
            key.path.display()
        ));
    }
    for path in &p.retired {
        lines.push(format!("retired key file {}", path.display()));
    }
    for name in &p.added {
        lines.push(format!("added target {name}"));
    }
    for name in &p.withdrawn {
        lines.push(format!("withdrew target {name}"));
    }
    let v = p.versions;
    lines.push(format!(
        "{} {}: root {}, targets {}, snapshot {}, timestamp {}",
        if p.changed {
            "published"
        } else {
            "unchanged (already published)"
        },
        dirs.repo.display(),
        v.root,
        v.targets,
        v.snapshot,
        v.timestamp
    ));
    let mut out = std::io::stdout().lock();
    lines
        .iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush())
        .map_err(|source| {
            Error::from(RepoError::Io {
                path: PathBuf::from("<stdout>"),
                source,
            })
        })
}

/// The exit class of a repository failure.
pub(crate) fn class(e: &RepoError) -> Class {
    use RepoError as E;
    match e {
        E::Expired { .. } | E::ExpiresTooSoon { .. } | E::ClockBehind { .. } => Class::Expired,
        E::KeyNotInRoot { .. }
        | E::WrongRoleKey { .. }
        | E::NotEnoughKeys { .. }
        | E::KeyFile { .. }
        | E::KeySpec { .. }
        | E::Pkcs11 { .. }
        | E::Pkcs11Key { .. }
        | E::Pkcs11Pin { .. }
        | E::Sign { .. }
        | E::DuplicateSignature { .. }
        | E::UnknownSigningKey { .. }
        | E::BadSignature { .. }
        | E::ThresholdNotMet { .. } => Class::Key,
        E::AlreadyExists { .. }
        | E::ReleaseJson { .. }
        | E::Release { .. }
        | E::ReleaseMismatch { .. }
        | E::TargetConflict { .. }
        | E::CustomConflict { .. }
        | E::NoSuchRelease { .. }
        | E::Rollout { .. }
        | E::Settings { .. }
        | E::Prepared { .. }
        | E::PreparedStale { .. }
        | E::PreparedExpired { .. }
        | E::SignatureMismatch { .. } => Class::Input,
        E::NotARepository { .. }
        | E::Locked { .. }
        | E::Corrupt { .. }
        | E::Inconsistent { .. }
        | E::RollbackFailed { .. } => Class::Repository,
        E::Io { .. } => Class::Io,
        E::Produce { .. } | E::SelfCheck { .. } => Class::Internal,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::commands::{Cli, Command};

    #[test]
    fn role_numbers() {
        assert_eq!(parse_role_number("root=2"), Ok((Role::Root, 2)));
        assert_eq!(parse_role_number("timestamp=30"), Ok((Role::Timestamp, 30)));
        for bad in ["root", "root=", "root=-1", "root=x", "delegated=1", "=1"] {
            assert!(parse_role_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn init_options_become_settings() {
        let cli = Cli::try_parse_from([
            "flipside-build",
            "repo",
            "init",
            "--repo",
            "r",
            "--keys",
            "k",
            "--keys-per-role",
            "root=3",
            "--threshold",
            "root=2",
            "--expires",
            "timestamp=2",
        ])
        .unwrap();
        let Command::Repo(RepoCommand::Init(args)) = cli.command else {
            panic!("not repo init");
        };
        let settings = init_settings(&args).unwrap();
        let root = settings.role(Role::Root);
        assert_eq!((root.keys, root.threshold, root.expiry_days), (3, 2, 365));
        assert_eq!(settings.role(Role::Timestamp).expiry_days, 2);
        settings.validate().unwrap();
    }

    #[test]
    fn every_subcommand_parses() {
        for argv in [
            &["repo", "add", "--repo", "r", "--keys", "k", "out/v1"][..],
            &[
                "repo", "resign", "--repo", "r", "--keys", "k", "--role", "targets", "--role",
                "root",
            ],
            &[
                "repo",
                "rotate-key",
                "--repo",
                "r",
                "--keys",
                "k",
                "timestamp",
            ],
            &[
                "repo",
                "prepare",
                "--repo",
                "r",
                "--role",
                "root",
                "--out",
                "p.json",
                "--set-keys",
                "timestamp=t.pub",
                "--threshold",
                "root=2",
            ],
            &[
                "repo",
                "sign-detached",
                "p.json",
                "--key",
                "k.json",
                "--role",
                "root",
            ],
            &[
                "repo", "merge", "--repo", "r", "--keys", "k", "p.json", "a.sig", "b.sig",
            ],
            &["repo", "public-key", "--key", "k.json"],
            &["repo", "keygen", "--out", "k.json"],
        ] {
            let mut full = vec!["flipside-build"];
            full.extend_from_slice(argv);
            Cli::try_parse_from(full).unwrap();
        }
        assert!(Cli::try_parse_from([
            "flipside-build",
            "repo",
            "rotate-key",
            "--repo",
            "r",
            "--keys",
            "k",
            "nobody"
        ])
        .is_err());
        // Merging needs at least one signature.
        assert!(Cli::try_parse_from([
            "flipside-build",
            "repo",
            "merge",
            "--repo",
            "r",
            "--keys",
            "k",
            "p.json"
        ])
        .is_err());
    }

    #[test]
    fn classes() {
        let e = RepoError::Expired {
            role: Role::Targets,
            expires: chrono::Utc::now(),
            now: chrono::Utc::now(),
        };
        assert_eq!(class(&e), Class::Expired);
        let e = RepoError::NotEnoughKeys {
            role: Role::Root,
            threshold: 1,
            found: 0,
            dir: PathBuf::from("k/root"),
        };
        assert_eq!(class(&e), Class::Key);
        let e = RepoError::Settings { why: String::new() };
        assert_eq!(class(&e), Class::Input);
        let e = RepoError::ThresholdNotMet {
            role: Role::Root,
            authority: "the new root",
            valid: 1,
            threshold: 2,
            missing: vec!["ab".to_string()],
        };
        assert_eq!(class(&e), Class::Key, "exit 6, like too few keys");
        assert!(e.to_string().contains("collect signatures of ab"), "{e}");
    }
}
