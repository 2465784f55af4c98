//! `flipside-build uki --kernel K --initrd I --cmdline C --os-release F -o OUT`

use std::path::PathBuf;

use crate::uki::{self, UkiParts};
use crate::Error;

const EXAMPLE: &str = "\
Example:
  flipside-build uki --kernel vmlinuz --initrd initrd.img \\
      --cmdline 'console=ttyS0 root=PARTLABEL=a ro' --os-release os-release -o uki.efi

Writes OUT atomically: systemd's EFI stub with the sections .osrel, .cmdline, .linux and
.initrd added. The same inputs give the same bytes. `flipside-build image` builds the same
file as uki.efi when the system description has a [kernel] section.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub struct UkiArgs {
    /// systemd's EFI stub (Debian package systemd-boot-efi).
    #[arg(long, value_name = "FILE", default_value = uki::DEFAULT_STUB)]
    pub stub: PathBuf,
    /// The kernel image (bzImage, e.g. /boot/vmlinuz-*).
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// The initramfs.
    #[arg(long, value_name = "FILE")]
    pub initrd: PathBuf,
    /// The kernel command line (printable ASCII, at most 2047 bytes).
    #[arg(long)]
    pub cmdline: String,
    /// os-release text for the .osrel section (KEY=value lines with an ID=).
    #[arg(long, value_name = "FILE")]
    pub os_release: PathBuf,
    /// Where to write the UKI.
    #[arg(short, long, value_name = "FILE")]
    pub out: PathBuf,
    /// Print the result (length, sha256, sections) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: UkiArgs) -> Result<(), Error> {
    let os_release = std::fs::read(&args.os_release).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => uki::Error::InputMissing {
            what: "os-release",
            path: args.os_release.clone(),
        },
        _ => uki::Error::Io {
            action: "read",
            path: args.os_release.clone(),
            source,
        },
    })?;
    let os_release = String::from_utf8(os_release).map_err(|_| uki::Error::OsRelease {
        why: format!("{} is not UTF-8", args.os_release.display()),
    })?;
    let parts = UkiParts {
        stub: &args.stub,
        kernel: &args.kernel,
        initrd: &args.initrd,
        cmdline: &args.cmdline,
        os_release: &os_release,
    };
    let info = uki::assemble(&parts, &args.out)?;
    if args.json {
        let text = serde_json::to_string_pretty(&info).expect("UkiInfo always serialises");
        println!("{text}");
    } else {
        println!(
            "{}: {} bytes sha256 {}",
            args.out.display(),
            info.length,
            info.sha256
        );
        for s in &info.sections {
            println!(
                "  {:<9} rva {:#010x} size {:>10} file offset {:#010x}",
                s.name, s.rva, s.size, s.file_offset
            );
        }
    }
    Ok(())
}
