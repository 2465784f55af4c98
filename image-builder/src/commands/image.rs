//! `flipside-build image SYSTEM.toml -o OUTDIR`

use std::path::PathBuf;

use flipside_bundle::BundleParams;

use crate::image::{self, Options};
use crate::Error;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  flipside-build image examples/appliance/system.toml -o out/v1\n\n\
Writes OUTDIR/<name>-<version>.squashfs (the root filesystem), .bundle (its chunks, each\n\
zstd-compressed), .index (the chunk index) and release.json (what `repo add` publishes).\n\
With a [kernel] section also the kernel part: uki.efi (kernel, initrd, command line and\n\
os-release in systemd's EFI stub), cut like the image into <name>-<version>.kernel.bundle and\n\
.kernel.index, and described with the kernel release in release.json.\n\n\
With --secure-boot-key/--secure-boot-cert, uki.efi is signed for Secure Boot (sbsign) before it\n\
is cut. With `verity =` in [kernel], the image ends with its dm-verity hash tree and the UKI's\n\
command line names the root hash."
)]
pub struct ImageArgs {
    /// The system description (TOML; see examples/).
    pub system: PathBuf,
    /// Output directory for the image, bundle, index and release.json.
    #[arg(short, long)]
    pub out: PathBuf,
    /// The built-in store for `dir` and `files` roots [default: $FLIPSIDE_STORE or ./flipside-store]
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Refuse an image larger than this many bytes (overrides `slot_size`).
    #[arg(long)]
    pub slot_size: Option<u64>,
    /// zstd level of the bundle's chunks (1-22; higher is smaller and slower to build).
    #[arg(long, default_value_t = BundleParams::default().zstd_level)]
    pub zstd_level: i32,
    /// Compression threads (0: one per core; at most 256). The output does not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// A previous release's output directory (repeatable, at most 4 used): the bundle also
    /// holds delta frames of the changed chunks against that release's image, which devices
    /// running it download instead of the full frames.
    #[arg(long, value_name = "DIR")]
    pub previous: Vec<PathBuf>,
    /// Train a zstd dictionary of this many bytes (1024 to 1048576; 0: none) on the image's
    /// chunks and compress every chunk with it (about 2% smaller, slower to build; `zstd -d`
    /// then needs `-D` with the dictionary).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub dictionary: u32,
    /// Leave out the segments (the image compressed again in large frames, for full
    /// installs): the bundle is about half the size on the server, and full installs fetch
    /// every chunk frame instead (about 17% more bytes, decoded more slowly).
    #[arg(long)]
    pub no_segments: bool,
    /// Sign uki.efi for Secure Boot with this db key (PEM; needs --secure-boot-cert).
    #[arg(long, value_name = "FILE", requires = "secure_boot_cert")]
    pub secure_boot_key: Option<PathBuf>,
    /// The db certificate (PEM) that goes with --secure-boot-key.
    #[arg(long, value_name = "FILE", requires = "secure_boot_key")]
    pub secure_boot_cert: Option<PathBuf>,
}

pub fn run(args: ImageArgs) -> Result<(), Error> {
    let store = args
        .store
        .or_else(|| std::env::var_os("FLIPSIDE_STORE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("flipside-store"));
    let options = Options {
        store,
        out_dir: args.out.clone(),
        slot_size: args.slot_size,
        bundle: BundleParams {
            zstd_level: args.zstd_level,
            threads: args.threads,
            dictionary_length: args.dictionary,
            segments: !args.no_segments,
            ..BundleParams::default()
        },
        previous: args.previous,
        secure_boot: match (args.secure_boot_key, args.secure_boot_cert) {
            (Some(key), Some(cert)) => Some(crate::secureboot::SigningKey { key, cert }),
            _ => None,
        },
    };
    let built = image::build(&args.system, &options)?;
    let release = &built.release;
    println!(
        "{} {} ({}) for {}: image {} bytes sha256 {}, bundle {} bytes, in {}",
        release.name,
        release.version,
        release.display_version,
        release.hardware_id,
        release.image.length,
        release.image.sha256,
        release.bundle.length,
        args.out.display()
    );
    if let Some(kernel) = &release.kernel {
        println!(
            "kernel {}: {} {} bytes sha256 {}, kernel bundle {} bytes",
            kernel.kernel_release,
            image::UKI_FILE,
            kernel.image.length,
            kernel.image.sha256,
            kernel.bundle.length
        );
    }
    Ok(())
}
