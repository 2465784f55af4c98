//! `flipside-build sign IN -o OUT --key KEY --cert CERT`

use std::path::PathBuf;

use crate::secureboot::{self, SigningKey};
use crate::Error;

const EXAMPLE: &str = "\
Example:
  flipside-build sign flipside-boot.efi -o BOOTX64.EFI --key keys/db.key --cert keys/db.crt

Writes OUT: IN with an Authenticode signature by the db key (sbsign), checked with sbverify
before the command succeeds. `flipside-build image --secure-boot-key/--secure-boot-cert`
signs a release's uki.efi the same way.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub struct SignArgs {
    /// The EFI image to sign.
    pub input: PathBuf,
    /// Where to write the signed image.
    #[arg(short, long, value_name = "FILE")]
    pub out: PathBuf,
    /// The db signing key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The db certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
}

pub fn run(args: SignArgs) -> Result<(), Error> {
    let key = SigningKey {
        key: args.key,
        cert: args.cert,
    };
    secureboot::sign(&key, &args.input, &args.out)?;
    secureboot::verify(&key.cert, &args.out)?;
    println!("{}: signed with {}", args.out.display(), key.cert.display());
    Ok(())
}
