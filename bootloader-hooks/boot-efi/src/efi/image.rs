//! Starting a kernel image from memory: `LoadImage` from the buffer (so Secure Boot
//! verification applies unchanged), the load options set on the new image, `StartImage`.

use alloc::format;
use alloc::vec::Vec;

use uefi::boot::{self, LoadImageSource};
use uefi::proto::loaded_image::LoadedImage;

use crate::flow::KernelFailure;

/// Loads and starts `image` with `options` as its UCS-2 load options. Returns only when the
/// image was refused or returned.
pub fn load_and_start(image: &[u8], options: &str) -> Result<(), KernelFailure> {
    let handle = boot::load_image(
        boot::image_handle(),
        LoadImageSource::FromBuffer {
            buffer: image,
            file_path: None,
        },
    )
    .map_err(|e| KernelFailure::Load(format!("{:?}", e.status())))?;

    // UCS-2 with a terminating NUL; it must outlive StartImage.
    let ucs2: Vec<u16> = options.encode_utf16().chain([0]).collect();
    let bytes = u32::try_from(ucs2.len() * 2).unwrap_or(0);
    match boot::open_protocol_exclusive::<LoadedImage>(handle) {
        Ok(mut loaded) => {
            // SAFETY: `ucs2` lives until after StartImage returns (end of this function).
            unsafe { loaded.set_load_options(ucs2.as_ptr().cast(), bytes) };
        }
        Err(e) => {
            let _ = boot::unload_image(handle);
            return Err(KernelFailure::Load(format!(
                "cannot set its load options: {:?}",
                e.status()
            )));
        }
    }
    let started = boot::start_image(handle);
    drop(ucs2);
    match started {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = boot::unload_image(handle);
            Err(KernelFailure::Start(format!("{:?}", e.status())))
        }
    }
}
