//! Console lines on the firmware's standard output (the serial console under OVMF).

use core::fmt::Write;

/// Writes `text` and a line end. A console that cannot be written to is ignored: the boot
/// goes on without messages.
pub fn line(text: &str) {
    uefi::system::with_stdout(|out| {
        let _ = out.write_str(text);
        let _ = out.write_str("\r\n");
    });
}
