//! The flipside-boot binary: a UEFI application (`\EFI\BOOT\BOOTX64.EFI` on the ESP). Built for
//! any other target it only says so, so that host builds of the workspace keep working.

#![cfg_attr(target_os = "uefi", no_std)]
#![cfg_attr(target_os = "uefi", no_main)]

#[cfg(target_os = "uefi")]
#[uefi::entry]
fn efi_main() -> uefi::Status {
    flipside_boot::efi::main()
}

#[cfg(target_os = "uefi")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    flipside_boot::efi::panic(info)
}

#[cfg(not(target_os = "uefi"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "flipside-boot runs only as a UEFI application: build it with \
         `cargo build --release -p flipside-boot --target x86_64-unknown-uefi` and install \
         target/x86_64-unknown-uefi/release/flipside-boot.efi as \\EFI\\BOOT\\BOOTX64.EFI on the ESP"
    );
    std::process::ExitCode::from(2)
}
