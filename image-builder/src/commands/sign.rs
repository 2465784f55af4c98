//! `flipside-build sign IN -o OUT --key KEY --cert CERT` and
//! `flipside-build secure-boot-keys DIR`

use std::path::PathBuf;

use crate::secureboot::{self, SigningKey};
use crate::Error;

const SIGN_EXAMPLE: &str = "\
Example:
  flipside-build sign flipside-boot.efi -o BOOTX64.EFI --key keys/db.key --cert keys/db.crt

Writes OUT: IN with an Authenticode signature by the db key (sbsign), checked with sbverify
before the command succeeds.";

const KEYS_EXAMPLE: &str = "\
Example:
  flipside-build secure-boot-keys keys/secure-boot --name 'Example Kiosks'

Writes PK.key/PK.crt, KEK.key/KEK.crt and db.key/db.crt (RSA 2048, self-signed, PEM) into a
new directory readable by its owner only. Enroll the certificates on the device (README,
secure-boot); keep the keys offline like the repository's root keys.";

#[derive(Debug, clap::Args)]
#[command(after_help = SIGN_EXAMPLE)]
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

#[derive(Debug, clap::Args)]
#[command(after_help = KEYS_EXAMPLE)]
pub struct KeysArgs {
    /// The directory to create the keys in.
    pub dir: PathBuf,
    /// Who the keys belong to: the certificates' common names are `NAME PK`, `NAME KEK`, `NAME db`.
    #[arg(long, default_value = "flipside")]
    pub name: String,
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

pub fn run_keys(args: KeysArgs) -> Result<(), Error> {
    let set = secureboot::generate_keys(&args.dir, &args.name)?;
    for k in [&set.pk, &set.kek, &set.db] {
        println!("{} {}", k.key.display(), k.cert.display());
    }
    Ok(())
}
