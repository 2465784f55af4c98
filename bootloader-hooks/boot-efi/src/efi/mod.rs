//! The firmware side of flipside-boot, in small modules: [`block`] (the whole disk the ESP is
//! on, as a `BlockDevice`), [`vars`] (`FlipsideSlot`), [`console`] and [`image`]
//! (`LoadImage` from memory, load options, `StartImage`). [`main`] wires them to
//! [`crate::flow::run`].

pub mod block;
pub mod console;
pub mod image;
pub mod vars;

use alloc::format;
use alloc::string::String;

use flipside_bootloader_hooks::{Disk, Slot};
use uefi::Status;

use crate::flow::{self, Failure, Firmware, KernelFailure};

/// The firmware as [`flow::run`] sees it.
struct Uefi;

impl Firmware for Uefi {
    fn say(&mut self, line: &str) {
        console::line(line);
    }

    fn set_slot_variable(&mut self, slot: Slot) -> Result<(), String> {
        vars::set_slot(slot).map_err(|status| format!("{status:?}"))
    }

    fn set_refused_variable(&mut self, slot: Slot, status: &str) -> Result<(), String> {
        vars::set_refused(slot, status).map_err(|status| format!("{status:?}"))
    }

    fn boot_image(&mut self, image: &[u8], load_options: &str) -> Result<(), KernelFailure> {
        image::load_and_start(image, load_options)
    }
}

/// The application: returns only when no kernel was started (or a started image returned),
/// with a status that makes the firmware try its next boot entry.
pub fn main() -> Status {
    console::line(&flow::start_line());
    let (name, device) = match block::boot_disk() {
        Ok(found) => found,
        Err(why) => {
            console::line("flipside-boot: fail stage=disk action=firmware");
            console::line(&format!(
                "flipside-boot: error: cannot find the disk flipside-boot was loaded from: {why}; \
                 the firmware tries its next boot entry"
            ));
            return Status::NOT_FOUND;
        }
    };
    let mut disk = Disk::new(name, device);
    match flow::run(&mut Uefi, &mut disk) {
        // The image ran and returned success: hand control back like any boot entry.
        Ok(_) => Status::SUCCESS,
        Err(Failure::Table) => Status::VOLUME_CORRUPTED,
        Err(Failure::NoBootableSlot) => Status::NOT_FOUND,
        Err(Failure::NothingStarted) => Status::LOAD_ERROR,
    }
}

/// A panic is a bug: say so and return to the firmware (its next boot entry), never hang.
pub fn panic(info: &core::panic::PanicInfo) -> ! {
    console::line(&format!(
        "flipside-boot: error: internal error: {info}; returning to the firmware"
    ));
    // SAFETY: this image is still loaded; Exit unloads it and does not return on success.
    unsafe {
        let _ = uefi::boot::exit(
            uefi::boot::image_handle(),
            Status::ABORTED,
            0,
            core::ptr::null_mut(),
        );
    }
    // Exit failed: stop here rather than run on in an unknown state.
    uefi::runtime::reset(uefi::runtime::ResetType::COLD, Status::ABORTED, None)
}
