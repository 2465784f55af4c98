//! What flipside-boot decides, apart from the firmware: read the GPT, apply the firmware rules
//! (`BootState::select`), record a consumed try *before* booting, read the slot's kernel
//! partition, trim the unified kernel image to its exact length, and hand it to the firmware
//! with its command line plus `flipside.slot=<slot>`. When that slot cannot be started, fall
//! back once to the other slot (`BootState::select_other`); when nothing can be started, give
//! control back to the firmware, which tries its next boot entry.
//!
//! The firmware is behind [`Firmware`] and the disk behind `BlockDevice`, so the whole flow is
//! unit-tested on the host (see the tests at the end); `crate::efi` implements both over UEFI.
//!
//! Every decision is one console line `flipside-boot: EVENT key=value ...` (`start`, `select`,
//! `commit`, `kernel`, `boot`, `fail`; listed in bootloader-hooks/README.md); a failure adds a
//! line `flipside-boot: error: ...` that says what happened and what to do.
//!
//! Invariants: at most two slots are tried (the chosen one, then the other one), so the flow
//! never loops; a proven slot's bits are never changed (only `select`/`select_other` change
//! state, and they only consume a trial slot's try); a trial slot is never booted unless its
//! consumed try was written back and read back first.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use flipside_bootloader_hooks::disk::{self, SlotLayout};
use flipside_bootloader_hooks::pe;
use flipside_bootloader_hooks::{
    BlockDevice, BootState, Disk, GptTable, PartitionSelector, Selection, Slot,
};

/// Prefix of every console line flipside-boot prints.
pub const PREFIX: &str = "flipside-boot: ";
/// GPT partition name of a slot's kernel partition is this plus the slot name.
pub const KERNEL_LABEL_PREFIX: &str = "kernel-";
/// Bytes read first from a kernel partition to parse the PE headers: far more than any PE
/// header and section table (at most 96 sections) need.
pub const HEAD_LEN: u64 = 64 * 1024;
/// The kernel command line word that names the slot for the booted system.
pub const SLOT_PARAMETER: &str = "flipside.slot=";

/// The GPT partition name of `slot`'s kernel partition: `kernel-a` or `kernel-b`.
pub fn kernel_label(slot: Slot) -> String {
    format!("{KERNEL_LABEL_PREFIX}{}", slot.name())
}

/// What flipside-boot needs from the firmware besides the disk.
pub trait Firmware {
    /// Prints one console line (without line end).
    fn say(&mut self, line: &str);
    /// Sets the volatile `FlipsideSlot` variable to `slot`.
    fn set_slot_variable(&mut self, slot: Slot) -> Result<(), String>;
    /// Loads `image` from memory (Secure Boot verification applies) with `load_options` as
    /// its UCS-2 load options, and starts it. A kernel that boots never returns; `Ok` means
    /// the image ran and returned success.
    fn boot_image(&mut self, image: &[u8], load_options: &str) -> Result<(), KernelFailure>;
}

/// Why the firmware did not run a kernel image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelFailure {
    /// `LoadImage` refused it (the firmware status, e.g. `SECURITY_VIOLATION`).
    Load(String),
    /// `StartImage` returned an error (the image ran and failed, e.g. the stub found no
    /// kernel).
    Start(String),
}

/// Why flipside-boot gives control back to the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The boot disk's GPT cannot be read or trusted.
    Table,
    /// Neither slot is a candidate.
    NoBootableSlot,
    /// The chosen slot failed and there was no other slot, or it failed too.
    NothingStarted,
}

/// One slot to try: the choice, the state on the disk before, and after its try is consumed.
struct Attempt {
    choice: Selection,
    before: BootState,
    after: BootState,
    reason: &'static str,
}

/// Runs the boot flow on `disk`. Returns the slot whose image ran and returned success
/// (a kernel that boots never returns), or why nothing was started.
pub fn run<D: BlockDevice>(fw: &mut impl Firmware, disk: &mut Disk<D>) -> Result<Slot, Failure> {
    let layout = SlotLayout::default();
    let (mut table, state) = match disk::load(disk, &layout) {
        Ok(loaded) => loaded,
        Err(e) => {
            say(fw, "fail stage=table action=firmware");
            error(
                fw,
                &format!(
                    "cannot read the boot table: {e}; nothing was written; \
                     the firmware tries its next boot entry"
                ),
            );
            return Err(Failure::Table);
        }
    };
    let (choice, after) = match state.select() {
        Ok(selected) => selected,
        Err(e) => {
            say(fw, "fail stage=select action=firmware");
            error(fw, &format!("{e}; the firmware tries its next boot entry"));
            return Err(Failure::NoBootableSlot);
        }
    };
    let first = Attempt {
        choice,
        before: state,
        after,
        reason: "select",
    };
    let on_disk = match attempt(fw, disk, &mut table, &first) {
        Ok(()) => return Ok(choice.slot),
        Err(on_disk) => on_disk,
    };

    let failed = choice.slot;
    let (other, after) = match on_disk.select_other(failed) {
        Ok(selected) => selected,
        Err(_) => {
            say(
                fw,
                &format!("fail stage=fallback slot={} action=firmware", !failed),
            );
            error(
                fw,
                &format!(
                    "slot {failed} failed and slot {} is not bootable ({}); \
                     the firmware tries its next boot entry: reinstall slot {failed}",
                    !failed,
                    on_disk.attrs(!failed)
                ),
            );
            return Err(Failure::NothingStarted);
        }
    };
    let second = Attempt {
        choice: other,
        before: on_disk,
        after,
        reason: "fallback",
    };
    match attempt(fw, disk, &mut table, &second) {
        Ok(()) => Ok(other.slot),
        Err(_) => {
            error(
                fw,
                "both slots failed to start; the firmware tries its next boot entry: \
                 reinstall a slot from recovery media",
            );
            Err(Failure::NothingStarted)
        }
    }
}

/// Tries one slot. Returns only if its image returned success (`Ok`) or it could not be
/// started: then the boot state now on the disk.
fn attempt<D: BlockDevice>(
    fw: &mut impl Firmware,
    disk: &mut Disk<D>,
    table: &mut GptTable,
    a: &Attempt,
) -> Result<(), BootState> {
    let slot = a.choice.slot;
    let label = kernel_label(slot);
    say(
        fw,
        &format!(
            "select slot={slot} trial={} tries_left={} kernel={label} reason={}",
            u8::from(a.choice.trial),
            a.choice.tries_left,
            a.reason
        ),
    );

    // A consumed try is on the disk (backup copy first, read back) before the kernel runs.
    match disk::commit(disk, table, &a.after) {
        Ok(wrote) => {
            if a.after != a.before {
                say(
                    fw,
                    &format!(
                        "commit slot={slot} attrs={} was={}",
                        fields(&a.after, slot),
                        fields(&a.before, slot)
                    ),
                );
            } else if wrote {
                say(fw, "repair table=rewritten");
            }
        }
        Err(e) if a.choice.trial => {
            say(
                fw,
                &format!("fail stage=commit slot={slot} action=fallback"),
            );
            error(
                fw,
                &format!(
                    "cannot record the consumed try of slot {slot}: {e}; \
                     not booting a trial that would go unrecorded"
                ),
            );
            return Err(a.before.clone());
        }
        Err(e) => warning(
            fw,
            &format!("cannot repair the boot table: {e}; booting proven slot {slot} anyway"),
        ),
    }
    let on_disk = if a.choice.trial {
        a.after.clone()
    } else {
        a.before.clone()
    };

    let image = match read_kernel(disk, table, slot) {
        Ok(image) => image,
        Err(why) => {
            say(
                fw,
                &format!("fail stage=kernel slot={slot} action=fallback"),
            );
            error(
                fw,
                &format!(
                    "{why}; write a unified kernel image into {label} (reinstall slot {slot})"
                ),
            );
            return Err(on_disk);
        }
    };
    say(
        fw,
        &format!("kernel slot={slot} partition={label} bytes={}", image.len()),
    );

    if let Err(e) = fw.set_slot_variable(slot) {
        warning(
            fw,
            &format!(
                "cannot set the FlipsideSlot EFI variable: {e}; \
                 the system reads {SLOT_PARAMETER}{slot} from its command line instead"
            ),
        );
    }
    let options = load_options(&image, slot);
    say(fw, &format!("boot slot={slot}"));
    match fw.boot_image(&image, &options) {
        Ok(()) => Ok(()),
        Err(KernelFailure::Load(status)) => {
            say(
                fw,
                &format!("fail stage=load slot={slot} status={status} action=fallback"),
            );
            error(
                fw,
                &format!(
                    "the firmware refused to load the kernel image in {label} ({status}); \
                     with Secure Boot on it must be signed by a key the firmware trusts; \
                     reinstall slot {slot}"
                ),
            );
            Err(on_disk)
        }
        Err(KernelFailure::Start(status)) => {
            say(
                fw,
                &format!("fail stage=start slot={slot} status={status} action=fallback"),
            );
            error(
                fw,
                &format!(
                    "the kernel image in {label} started and returned {status}; \
                     reinstall slot {slot}"
                ),
            );
            Err(on_disk)
        }
    }
}

/// `P=p,T=t,S=s` of `slot` in `state` (one word on the console line).
fn fields(state: &BootState, slot: Slot) -> String {
    state.attrs(slot).to_string().replace(' ', ",")
}

/// The unified kernel image in `slot`'s kernel partition, trimmed to its exact length
/// ([`pe::image_len`]): the partition's trailing bytes are not part of it and would change
/// its Authenticode hash.
fn read_kernel<D: BlockDevice>(
    disk: &mut Disk<D>,
    table: &GptTable,
    slot: Slot,
) -> Result<Vec<u8>, String> {
    let label = kernel_label(slot);
    let entry = table
        .find(&PartitionSelector::Label(label.clone()))
        .map_err(|e| format!("slot {slot} has no kernel partition: {e}"))?;
    let range = entry
        .byte_range(table.sector_size())
        .ok_or_else(|| format!("partition {label} has an impossible range"))?;
    let part_len = range.end - range.start;
    let head_len = usize::try_from(part_len.min(HEAD_LEN))
        .map_err(|_| format!("partition {label} is too large to read"))?;
    let mut image = Vec::new();
    image
        .try_reserve_exact(head_len)
        .map_err(|_| format!("out of memory reading {label}"))?;
    image.resize(head_len, 0);
    disk.read_at(range.start, &mut image)
        .map_err(|e| format!("cannot read {label}: {e}"))?;
    let headers = pe::PeHeaders::parse(&image)
        .map_err(|e| format!("partition {label} does not hold a kernel image: {e}"))?;
    let (end, what) = headers.file_end();
    if end > part_len {
        return Err(format!(
            "the kernel image in {label} ends at byte {end} ({what}), \
             past the end of the partition ({part_len} bytes): it is corrupt"
        ));
    }
    let end =
        usize::try_from(end).map_err(|_| format!("the kernel image in {label} is too large"))?;
    if end > image.len() {
        let have = image.len();
        image
            .try_reserve_exact(end - have)
            .map_err(|_| format!("out of memory: the kernel image in {label} is {end} bytes"))?;
        image.resize(end, 0);
        disk.read_at(range.start + have as u64, &mut image[have..])
            .map_err(|e| format!("cannot read {label}: {e}"))?;
    } else {
        image.truncate(end);
    }
    let len = pe::image_len(&image)
        .map_err(|e| format!("partition {label} does not hold a kernel image: {e}"))?;
    image.truncate(len);
    Ok(image)
}

/// The load options for the image: its own `.cmdline` (systemd's stub uses load options
/// instead of `.cmdline` when Secure Boot is off) without any `flipside.slot=` word, then
/// `flipside.slot=<slot>`.
pub fn load_options(image: &[u8], slot: Slot) -> String {
    let mut words: Vec<&str> = pe::section_text(image, ".cmdline")
        .unwrap_or("")
        .split_ascii_whitespace()
        .filter(|w| !w.starts_with(SLOT_PARAMETER))
        .collect();
    let slot_word = format!("{SLOT_PARAMETER}{slot}");
    words.push(&slot_word);
    words.join(" ")
}

fn say(fw: &mut impl Firmware, text: &str) {
    fw.say(&format!("{PREFIX}{text}"));
}

fn error(fw: &mut impl Firmware, text: &str) {
    fw.say(&format!("{PREFIX}error: {text}"));
}

fn warning(fw: &mut impl Firmware, text: &str) {
    fw.say(&format!("{PREFIX}warning: {text}"));
}

/// The first line flipside-boot prints.
pub fn start_line() -> String {
    format!("{PREFIX}start version={}", env!("CARGO_PKG_VERSION"))
}
