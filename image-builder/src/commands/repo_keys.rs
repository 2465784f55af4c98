//! `flipside-build repo prepare | sign-detached | merge | public-key | keygen`: threshold
//! signing across machines and keys kept away from the publisher (offline files, PKCS#11
//! tokens). Parsing only; the work is done by flipside-repository.

use std::io::Write;
use std::path::{Path, PathBuf};

use flipside_repository::detached::Prepared;
use flipside_repository::signer::{self, KeySpec};
use flipside_repository::{Error as RepoError, KeyDir, Published, Repository, RootChange};
use flipside_tuf::{Role, Signer, SigningKey};

use super::repo::{parse_role_number, Dirs, RoleArg};
use crate::Error;

pub const KEY_SPEC_HELP: &str = "\
A KEY is an ed25519 key file (KEYS/<role>/<keyid>.json), a file NAME.pkcs11 holding a PKCS#11
URI, or the URI itself:
  pkcs11:token=LABEL;object=KEY-LABEL?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/path/to/pin
The PIN comes from the pin-source file, the variable named by pin-env=NAME, or else from
FLIPSIDE_PKCS11_PIN; never from the command line. Token keys may be ECDSA P-256/P-384, RSA
(signed RSASSA-PSS SHA-256) or Ed25519.";

pub const PREPARE_EXAMPLE: &str = "\
Examples:
  flipside-build repo prepare --repo ./repo --role root --out root-next.json
  flipside-build repo prepare --repo ./repo --role root --out root-next.json \\
      --set-keys timestamp=new-timestamp.json            # rotate (or revoke) the timestamp key
  flipside-build repo prepare --repo ./repo --role root --out root-next.json \\
      --set-keys root=a.pub --set-keys root=b.pub --set-keys root=c.pub --threshold root=2
  flipside-build repo prepare --repo ./repo --role targets --out targets-next.json

Writes the role's next version, unsigned, as a TUF metadata file: root renewed (with the key
and threshold changes given), targets renewed, or the next snapshot or timestamp. Carry it to
the signers (`repo sign-detached`), then `repo merge` their signatures. --set-keys replaces
every key of the role with the keys given (public key files of `repo public-key`, key files,
token keys). Nothing in the repository changes.";

pub const SIGN_DETACHED_EXAMPLE: &str = "\
Example (on the signer's machine, with the prepared file carried there):
  flipside-build repo sign-detached root-next.json --key /media/root-key/3a5f.json --out alice.sig
  flipside-build repo sign-detached root-next.json --role root \\
      --key 'pkcs11:token=root;object=root-2?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/run/pin'

Prints what is signed (role, version, expiry, and for root every role's keys and threshold),
refuses metadata already expired (or of another role than --role), and writes the signature
(default: PREPARED.KEYID.sig).";

pub const MERGE_EXAMPLE: &str = "\
Example:
  flipside-build repo merge --repo ./repo --keys ./keys root-next.json alice.sig bob.sig

Publishes the prepared metadata when its signatures meet the role's threshold (for root: the
threshold of the current root and of the new one), re-signing snapshot and timestamp (and
targets when its keys changed) with the keys in KEYS/ that the new root lists; key files of keys
the new root dropped move to KEYS/retired/<role>/. A duplicate signature, a signature by a key
root does not list for the role, a bad signature, or too few signatures publish nothing.";

#[derive(Debug, clap::Args)]
pub struct PrepareArgs {
    /// Repository directory.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// The role to prepare the next version of.
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: RoleArg,
    /// Root only: a key of ROLE in the new root, e.g. timestamp=new.pub (repeatable; the keys
    /// given replace all of the role's keys).
    #[arg(long, value_name = "ROLE=KEY", value_parser = parse_role_key)]
    pub set_keys: Vec<(Role, String)>,
    /// Root only: a role's new threshold, e.g. root=2 (repeatable).
    #[arg(long, value_name = "ROLE=N", value_parser = parse_role_number)]
    pub threshold: Vec<(Role, u64)>,
    /// Where to write the prepared metadata.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SignDetachedArgs {
    /// The prepared metadata (from `repo prepare`).
    #[arg(value_name = "PREPARED")]
    pub prepared: PathBuf,
    /// The signing key.
    #[arg(long, value_name = "KEY")]
    pub key: String,
    /// Refuse to sign unless the prepared metadata is of this role.
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: Option<RoleArg>,
    /// Where to write the signature (default PREPARED.KEYID.sig).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    #[command(flatten)]
    pub dirs: Dirs,
    /// The prepared metadata (from `repo prepare`).
    #[arg(value_name = "PREPARED")]
    pub prepared: PathBuf,
    /// Detached signatures (from `repo sign-detached`).
    #[arg(value_name = "SIGNATURE", required = true)]
    pub signatures: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PublicKeyArgs {
    /// The key.
    #[arg(long, value_name = "KEY")]
    pub key: String,
    /// Write the public key object here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The new key file (mode 0600, its directory made 0700 if missing; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Parses `ROLE=KEY`.
fn parse_role_key(text: &str) -> Result<(Role, String), String> {
    let (role, key) = text
        .split_once('=')
        .ok_or_else(|| format!("expected ROLE=KEY, e.g. timestamp=new.pub, not {text:?}"))?;
    let role: Role = role
        .parse()
        .map_err(|e: flipside_tuf::Error| e.to_string())?;
    if key.is_empty() {
        return Err(format!("no key after {role}="));
    }
    Ok((role, key.to_string()))
}

/// The root change of `--set-keys` and `--threshold`.
fn root_change(args: &PrepareArgs) -> Result<RootChange, RepoError> {
    let mut change = RootChange::default();
    for (role, key) in &args.set_keys {
        let public = signer::public_key(key)?;
        change.keys.entry(*role).or_default().push(public);
    }
    change.thresholds.extend(args.threshold.iter().copied());
    Ok(change)
}

pub fn prepare(args: &PrepareArgs, now: chrono::DateTime<chrono::Utc>) -> Result<(), Error> {
    let change = root_change(args)?;
    let mut repo = Repository::open(&args.repo)?;
    let bytes = repo.prepare(args.role.into(), &change, now)?;
    let prepared = Prepared::from_slice(&args.out, &bytes)?;
    write(&args.out, &bytes)?;
    let mut lines = prepared.summary();
    lines.push(format!(
        "prepared {} version {} in {}: sign it with `flipside-build repo sign-detached {} --key KEY`, then `flipside-build repo merge`",
        prepared.role,
        prepared.version,
        args.out.display(),
        args.out.display()
    ));
    print_lines(&lines)
}

pub fn sign_detached(
    args: &SignDetachedArgs,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let bytes = std::fs::read(&args.prepared).map_err(io(&args.prepared))?;
    let prepared = Prepared::from_slice(&args.prepared, &bytes)?;
    if let Some(role) = args.role.map(Role::from) {
        if role != prepared.role {
            return Err(RepoError::Prepared {
                path: args.prepared.clone(),
                why: format!(
                    "it is {} metadata, not {role} as --role says",
                    prepared.role
                ),
            }
            .into());
        }
    }
    // What is signed, before the key is touched.
    print_lines(&prepared.summary())?;
    let key = KeySpec::parse(&args.key)?.open()?;
    let signature = prepared.sign(key.as_ref(), now)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_signature_path(&args.prepared, key.as_ref()));
    write(&out, &signature.to_bytes())?;
    print_lines(&[format!(
        "signed {} version {} with key {} into {}",
        prepared.role,
        prepared.version,
        key.key_id(),
        out.display()
    )])
}

/// `PREPARED.KEYID.sig`, beside the prepared file.
fn default_signature_path(prepared: &Path, key: &dyn Signer) -> PathBuf {
    let mut name = prepared.as_os_str().to_owned();
    name.push(format!(".{}.sig", &key.key_id().as_str()[..16]));
    PathBuf::from(name)
}

pub fn merge(args: &MergeArgs, now: chrono::DateTime<chrono::Utc>) -> Result<Published, Error> {
    let mut repo = Repository::open(&args.dirs.repo)?;
    Ok(repo.merge(
        &KeyDir::new(&args.dirs.keys),
        &args.prepared,
        &args.signatures,
        now,
    )?)
}

pub fn public_key(args: &PublicKeyArgs) -> Result<(), Error> {
    let public = signer::public_key(&args.key)?;
    let key_id = public
        .key_id()
        .map_err(|source| RepoError::KeyFile { source })?;
    let mut text = serde_json::to_vec_pretty(&public).expect("a public key serializes");
    text.push(b'\n');
    match &args.out {
        Some(out) => {
            write(out, &text)?;
            print_lines(&[format!("key {key_id}: public key in {}", out.display())])
        }
        None => {
            eprintln!("key id {key_id}");
            std::io::stdout()
                .lock()
                .write_all(&text)
                .map_err(io(Path::new("<stdout>")))
                .map_err(Error::from)
        }
    }
}

pub fn keygen(args: &KeygenArgs) -> Result<(), Error> {
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    let key = SigningKey::generate();
    key.save(&args.out)
        .map_err(|source| RepoError::KeyFile { source })?;
    print_lines(&[format!(
        "new ed25519 key {} in {}",
        key.key_id(),
        args.out.display()
    )])
}

fn print_lines(lines: &[String]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    lines
        .iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush())
        .map_err(io(Path::new("<stdout>")))
        .map_err(Error::from)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError {
    let path = path.to_path_buf();
    move |source| RepoError::Io { path, source }
}

/// Writes a file atomically (temporary file, fsync, rename).
fn write(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    flipside_atomic_file::write(path, bytes).map_err(|e| RepoError::Io {
        path: e.path,
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_keys() {
        assert_eq!(
            parse_role_key("timestamp=new.pub"),
            Ok((Role::Timestamp, "new.pub".to_string()))
        );
        // A URI holds `=` itself: only the first one splits.
        let (role, key) = parse_role_key("root=pkcs11:token=t;object=k?module-path=/m").unwrap();
        assert_eq!(
            (role, key.as_str()),
            (Role::Root, "pkcs11:token=t;object=k?module-path=/m")
        );
        for bad in ["timestamp", "timestamp=", "nobody=k"] {
            assert!(parse_role_key(bad).is_err(), "{bad}");
        }
    }
}
