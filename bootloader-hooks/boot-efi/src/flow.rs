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
    /// Sets the volatile `FlipsideRefused` variable: the firmware refused to load `slot`'s
    /// kernel image with `status` (`efivar::encode_refusal`).
    fn set_refused_variable(&mut self, slot: Slot, status: &str) -> Result<(), String>;
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
                    "the firmware refused to load the kernel image in {label} ({status}): {}; \
                     reinstall slot {slot}",
                    load_hint(&status)
                ),
            );
            // The booted system reports it (`flipside status`): the console is rarely seen.
            if let Err(e) = fw.set_refused_variable(slot, &status) {
                warning(
                    fw,
                    &format!("cannot set the FlipsideRefused EFI variable: {e}"),
                );
            }
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

/// What a `LoadImage` status most likely means.
fn load_hint(status: &str) -> &'static str {
    match status {
        "SECURITY_VIOLATION" | "ACCESS_DENIED" => {
            "Secure Boot is on and the image is not signed by a key the firmware trusts"
        }
        "UNSUPPORTED" => "it is not an EFI image for this machine",
        "OUT_OF_RESOURCES" => "the firmware has not enough memory for it",
        _ => "it is not a loadable EFI image",
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::rc::Rc;
    use alloc::vec;
    use core::cell::RefCell;
    use flipside_bootloader_hooks::{BootAttrs, DeviceError};
    use std::io::Cursor;
    use std::process::Command;

    const KIB: u64 = 1024;
    const KERNEL_PART: u64 = 256 * KIB;

    /// What happened, in order: device writes and flushes, and the firmware's actions.
    type Log = Rc<RefCell<Vec<String>>>;

    /// An in-memory disk that logs writes and flushes and can refuse writes.
    struct LoggedDisk {
        inner: Cursor<Vec<u8>>,
        log: Log,
        read_only: bool,
    }

    impl BlockDevice for LoggedDisk {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
            self.inner.read_at(offset, buf)
        }
        fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
            if self.read_only {
                return Err(DeviceError::other("write protected"));
            }
            self.log.borrow_mut().push(format!("write {offset}"));
            self.inner.write_at(offset, buf)
        }
        fn sync(&mut self) -> Result<(), DeviceError> {
            self.log.borrow_mut().push("sync".into());
            self.inner.sync()
        }
        fn byte_len(&mut self) -> Result<u64, DeviceError> {
            self.inner.byte_len()
        }
    }

    /// A firmware that records what it is asked and refuses images by their contents:
    /// `REFUSE` fails LoadImage, `RETURN` fails StartImage; anything else "boots".
    struct FakeFirmware {
        log: Log,
        lines: Vec<String>,
        variable: Option<Slot>,
        refused: Option<(Slot, String)>,
        variable_fails: bool,
        booted: Vec<(Vec<u8>, String)>,
    }

    impl FakeFirmware {
        fn new(log: &Log) -> Self {
            Self {
                log: log.clone(),
                lines: Vec::new(),
                variable: None,
                refused: None,
                variable_fails: false,
                booted: Vec::new(),
            }
        }

        fn events(&self) -> Vec<String> {
            self.lines
                .iter()
                .filter_map(|l| l.strip_prefix(PREFIX))
                .filter(|l| !l.starts_with("error:") && !l.starts_with("warning:"))
                .map(|l| {
                    let event = l.split(' ').next().unwrap_or("");
                    match l.split(' ').find_map(|w| w.strip_prefix("slot=")) {
                        Some(slot) => format!("{event} {slot}"),
                        None => event.to_string(),
                    }
                })
                .collect()
        }

        fn said(&self, text: &str) -> bool {
            self.lines.iter().any(|l| l.contains(text))
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    impl Firmware for FakeFirmware {
        fn say(&mut self, line: &str) {
            self.lines.push(line.to_string());
        }
        fn set_slot_variable(&mut self, slot: Slot) -> Result<(), String> {
            if self.variable_fails {
                return Err("WRITE_PROTECTED".into());
            }
            self.variable = Some(slot);
            Ok(())
        }
        fn set_refused_variable(&mut self, slot: Slot, status: &str) -> Result<(), String> {
            if self.variable_fails {
                return Err("WRITE_PROTECTED".into());
            }
            self.refused = Some((slot, status.to_string()));
            Ok(())
        }
        fn boot_image(&mut self, image: &[u8], options: &str) -> Result<(), KernelFailure> {
            self.log.borrow_mut().push("boot".into());
            self.booted.push((image.to_vec(), options.to_string()));
            if contains(image, b"REFUSE") {
                return Err(KernelFailure::Load("SECURITY_VIOLATION".into()));
            }
            if contains(image, b"RETURN") {
                return Err(KernelFailure::Start("LOAD_ERROR".into()));
            }
            Ok(())
        }
    }

    /// A minimal PE32+ image: 0x400 bytes of headers, then each section's data padded to
    /// 0x200 bytes.
    fn pe(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; 0x400];
        out[..2].copy_from_slice(b"MZ");
        out[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        out[0x80..0x84].copy_from_slice(b"PE\0\0");
        out[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        out[0x86..0x88].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        let optional = 112 + 16 * 8;
        out[0x94..0x96].copy_from_slice(&(optional as u16).to_le_bytes());
        let opt = 0x98;
        out[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        out[opt + 60..opt + 64].copy_from_slice(&0x400u32.to_le_bytes());
        out[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let mut table = opt + optional;
        for (name, data) in sections {
            let offset = out.len();
            let raw = data.len().div_ceil(0x200) * 0x200;
            out[table..table + name.len()].copy_from_slice(name.as_bytes());
            out[table + 8..table + 12].copy_from_slice(&(data.len() as u32).to_le_bytes());
            out[table + 16..table + 20].copy_from_slice(&(raw as u32).to_le_bytes());
            out[table + 20..table + 24].copy_from_slice(&(offset as u32).to_le_bytes());
            out.extend_from_slice(data);
            out.resize(offset + raw, 0);
            table += 40;
        }
        out
    }

    fn uki(cmdline: &str, linux: &[u8]) -> Vec<u8> {
        let mut cmd = cmdline.as_bytes().to_vec();
        cmd.push(0);
        pe(&[
            (".osrel", b"ID=testapp\n"),
            (".cmdline", &cmd),
            (".linux", linux),
        ])
    }

    /// A test disk made by sgdisk: root-a, root-b, kernel-a, kernel-b; kernel partitions
    /// hold `kernel_a` / `kernel_b` followed by 0xee (an older image's tail), slot bits as given.
    struct Setup {
        disk: Disk<LoggedDisk>,
        log: Log,
    }

    fn setup(kernel_a: &[u8], kernel_b: &[u8], a: (u8, u8, bool), b: (u8, u8, bool)) -> Setup {
        Setup::new(disk_bytes(kernel_a, kernel_b, a, b), false)
    }

    fn disk_bytes(
        kernel_a: &[u8],
        kernel_b: &[u8],
        a: (u8, u8, bool),
        b: (u8, u8, bool),
    ) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        std::fs::write(&path, vec![0u8; 2 * 1024 * 1024]).unwrap();
        let out = Command::new("sgdisk")
            .args(["-o", "-n", "1:2048:+64K", "-c", "1:root-a"])
            .args(["-n", "2:0:+64K", "-c", "2:root-b"])
            .args(["-n", "3:0:+256K", "-c", "3:kernel-a"])
            .args(["-n", "4:0:+256K", "-c", "4:kernel-b"])
            .arg(&path)
            .output()
            .expect("sgdisk (Debian package gdisk) must be installed for these tests");
        assert!(out.status.success(), "sgdisk: {out:?}");
        let mut disk = Disk::new("setup", Cursor::new(std::fs::read(&path).unwrap()));
        let (mut table, state) = disk::load(&mut disk, &SlotLayout::default()).unwrap();
        let mut dev = disk.into_inner();
        for (slot, image) in [(Slot::A, kernel_a), (Slot::B, kernel_b)] {
            let entry = table
                .find(&PartitionSelector::Label(kernel_label(slot)))
                .unwrap();
            let range = entry.byte_range(table.sector_size()).unwrap();
            assert_eq!(range.end - range.start, KERNEL_PART);
            let mut contents = image.to_vec();
            contents.resize(KERNEL_PART as usize, 0xee);
            dev.write_at(range.start, &contents).unwrap();
        }
        let mut disk = Disk::new("setup", dev);
        let attrs = |(p, t, s)| BootAttrs::new(p, t, s).unwrap();
        let state = state
            .with_attrs(Slot::A, attrs(a))
            .with_attrs(Slot::B, attrs(b));
        disk::commit(&mut disk, &mut table, &state).unwrap();
        disk.into_inner().into_inner()
    }

    impl Setup {
        fn new(bytes: Vec<u8>, read_only: bool) -> Self {
            let log: Log = Rc::default();
            let disk = Disk::new(
                "test.img",
                LoggedDisk {
                    inner: Cursor::new(bytes),
                    log: log.clone(),
                    read_only,
                },
            );
            Setup { disk, log }
        }

        fn bits(&mut self, slot: Slot) -> (u8, u8, bool) {
            let (_, state) = disk::load(&mut self.disk, &SlotLayout::default()).unwrap();
            let a = state.attrs(slot);
            (a.priority(), a.tries(), a.successful())
        }

        fn run(&mut self) -> (Result<Slot, Failure>, FakeFirmware) {
            let mut fw = FakeFirmware::new(&self.log);
            let result = run(&mut fw, &mut self.disk);
            (result, fw)
        }

        fn writes(&self) -> usize {
            self.log
                .borrow()
                .iter()
                .filter(|e| e.starts_with("write"))
                .count()
        }
    }

    const PROVEN: (u8, u8, bool) = (1, 0, true);
    const PREFERRED: (u8, u8, bool) = (2, 0, true);

    #[test]
    fn boots_the_preferred_proven_slot_trimmed_with_its_command_line() {
        let a = uki("console=ttyS0 quiet", b"kernel a");
        let b = uki("console=ttyS0 panic=-1", b"kernel b");
        let mut s = setup(&a, &b, PROVEN, PREFERRED);
        let (result, fw) = s.run();
        assert_eq!(result, Ok(Slot::B));
        assert_eq!(fw.booted.len(), 1);
        let (image, options) = &fw.booted[0];
        assert_eq!(image, &b, "exactly the UKI, without the partition's tail");
        assert_eq!(options, "console=ttyS0 panic=-1 flipside.slot=b");
        assert_eq!(fw.variable, Some(Slot::B));
        assert_eq!(fw.events(), ["select b", "kernel b", "boot b"]);
        assert!(fw.said(
            "flipside-boot: select slot=b trial=0 tries_left=0 kernel=kernel-b reason=select"
        ));
        assert!(fw.said(&format!(
            "flipside-boot: kernel slot=b partition=kernel-b bytes={}",
            b.len()
        )));
        assert_eq!(s.writes(), 0, "a proven slot is never written");
        assert_eq!(s.bits(Slot::B), PREFERRED);
        assert_eq!(s.bits(Slot::A), PROVEN);
    }

    #[test]
    fn a_trial_try_is_written_and_flushed_before_the_kernel_starts() {
        let k = uki("console=ttyS0", b"kernel");
        let mut s = setup(&k, &k, PROVEN, (2, 2, false));
        let (result, fw) = s.run();
        assert_eq!(result, Ok(Slot::B));
        assert!(fw.said("select slot=b trial=1 tries_left=1"));
        assert!(fw.said("commit slot=b attrs=P=2,T=1,S=0 was=P=2,T=2,S=0"));
        let log = s.log.borrow().clone();
        let boot = log.iter().position(|e| e == "boot").unwrap();
        let last_sync = log.iter().rposition(|e| e == "sync").unwrap();
        assert!(s.writes() > 0 && last_sync < boot, "{log:?}");
        assert_eq!(log.len(), boot + 1, "nothing after the boot: {log:?}");
        assert_eq!(s.bits(Slot::B), (2, 1, false));
        assert_eq!(s.bits(Slot::A), PROVEN);
    }

    #[test]
    fn the_last_try_leaves_the_trial_slot_unbootable_before_it_runs() {
        let k = uki("console=ttyS0", b"kernel");
        let mut s = setup(&k, &k, PROVEN, (2, 1, false));
        let (result, fw) = s.run();
        assert_eq!(result, Ok(Slot::B));
        assert!(fw.said("select slot=b trial=1 tries_left=0"));
        assert_eq!(s.bits(Slot::B), (0, 0, false));
        assert_eq!(s.bits(Slot::A), PROVEN);
    }

    #[test]
    fn garbage_in_the_kernel_partition_falls_back_and_keeps_the_proven_bits() {
        let a = uki("console=ttyS0", b"kernel a");
        let mut s = setup(&a, b"garbage, not a kernel", PROVEN, PREFERRED);
        let (result, fw) = s.run();
        assert_eq!(result, Ok(Slot::A));
        assert_eq!(
            fw.events(),
            ["select b", "fail b", "select a", "kernel a", "boot a"]
        );
        assert!(fw.said("fail stage=kernel slot=b action=fallback"));
        assert!(fw.said("error: partition kernel-b does not hold a kernel image: no MZ signature"));
        assert!(fw.said("select slot=a trial=0 tries_left=0 kernel=kernel-a reason=fallback"));
        assert_eq!(fw.booted.len(), 1);
        assert_eq!(fw.booted[0].1, "console=ttyS0 flipside.slot=a");
        assert_eq!(fw.variable, Some(Slot::A));
        assert_eq!(s.writes(), 0);
        assert_eq!(s.bits(Slot::B), PREFERRED);
        assert_eq!(s.bits(Slot::A), PROVEN);
    }

    #[test]
    fn a_refused_trial_kernel_spends_its_try_and_the_fallback_boots() {
        let a = uki("console=ttyS0", b"kernel a");
        let b = uki("console=ttyS0", b"REFUSE");
        let mut s = setup(&a, &b, PROVEN, (2, 2, false));
        let (result, fw) = s.run();
        assert_eq!(result, Ok(Slot::A));
        assert_eq!(
            fw.events(),
            [
                "select b", "commit b", "kernel b", "boot b", "fail b", "select a", "kernel a",
                "boot a"
            ]
        );
        assert!(fw.said("fail stage=load slot=b status=SECURITY_VIOLATION action=fallback"));
        assert!(fw.said("Secure Boot is on and the image is not signed"));
        assert_eq!(fw.refused, Some((Slot::B, "SECURITY_VIOLATION".into())));
        assert_eq!(fw.variable, Some(Slot::A), "the fallback's slot");
        assert_eq!(s.bits(Slot::B), (2, 1, false), "one try spent, no more");
        assert_eq!(s.bits(Slot::A), PROVEN);
    }

    #[test]
    fn a_fallback_on_trial_has_its_try_recorded_too() {
        let a = uki("console=ttyS0", b"kernel a");
        let mut s = setup(&a, b"", (1, 1, false), PREFERRED);
        let (result, fw) = s.run();
        assert_eq!(result, Ok(Slot::A));
        assert_eq!(
            fw.events(),
            ["select b", "fail b", "select a", "commit a", "kernel a", "boot a"]
        );
        assert_eq!(s.bits(Slot::A), (0, 0, false));
        assert_eq!(s.bits(Slot::B), PREFERRED);
    }

    #[test]
    fn both_slots_failing_gives_up_after_two_attempts() {
        let a = uki("console=ttyS0", b"RETURN");
        let b = uki("console=ttyS0", b"REFUSE");
        let mut s = setup(&a, &b, PROVEN, PREFERRED);
        let (result, fw) = s.run();
        assert_eq!(result, Err(Failure::NothingStarted));
        assert_eq!(fw.booted.len(), 2, "never more than two attempts");
        assert!(fw.said("fail stage=start slot=a status=LOAD_ERROR action=fallback"));
        assert_eq!(
            fw.refused,
            Some((Slot::B, "SECURITY_VIOLATION".into())),
            "only LoadImage refusals are recorded"
        );
        assert!(fw.said("error: both slots failed to start"));
        assert_eq!(s.writes(), 0);
        assert_eq!(s.bits(Slot::B), PREFERRED);
        assert_eq!(s.bits(Slot::A), PROVEN);
    }

    #[test]
    fn no_fallback_when_the_other_slot_is_not_bootable() {
        let mut s = setup(b"", b"", (0, 0, false), PREFERRED);
        let (result, fw) = s.run();
        assert_eq!(result, Err(Failure::NothingStarted));
        assert!(fw.said("fail stage=fallback slot=a action=firmware"));
        assert!(fw.said("slot b failed and slot a is not bootable (P=0 T=0 S=0)"));
        assert!(fw.booted.is_empty());
        assert_eq!(s.bits(Slot::B), PREFERRED);
    }

    #[test]
    fn no_bootable_slot_returns_to_the_firmware_without_writing() {
        let mut s = setup(b"", b"", (0, 0, false), (0, 3, false));
        let (result, fw) = s.run();
        assert_eq!(result, Err(Failure::NoBootableSlot));
        assert_eq!(fw.events(), ["fail"]);
        assert!(fw.said("error: no bootable slot"));
        assert!(fw.booted.is_empty());
        assert_eq!(s.writes(), 0);
    }

    #[test]
    fn an_unreadable_table_returns_to_the_firmware() {
        let mut bytes = disk_bytes(b"", b"", PROVEN, PREFERRED);
        // Both GPT headers destroyed.
        let len = bytes.len();
        bytes[512..1024].fill(0);
        bytes[len - 512..].fill(0);
        let mut s = Setup::new(bytes, false);
        let (result, fw) = s.run();
        assert_eq!(result, Err(Failure::Table));
        assert!(fw.said("fail stage=table action=firmware"));
        assert!(fw.said("error: cannot read the boot table"));
        assert!(fw.booted.is_empty());
        assert_eq!(s.writes(), 0);
    }

    #[test]
    fn an_unrecordable_try_is_not_booted() {
        let k = uki("console=ttyS0", b"kernel");
        let mut s = Setup::new(disk_bytes(&k, &k, PROVEN, (2, 2, false)), true);
        let (result, fw) = s.run();
        // The trial slot b is skipped; proven a needs no write and boots.
        assert_eq!(result, Ok(Slot::A));
        assert_eq!(
            fw.events(),
            ["select b", "fail b", "select a", "kernel a", "boot a"]
        );
        assert!(fw.said("fail stage=commit slot=b action=fallback"));
        assert!(fw.said("not booting a trial that would go unrecorded"));
        assert_eq!(s.bits(Slot::B), (2, 2, false));
    }

    #[test]
    fn a_variable_that_cannot_be_set_is_a_warning() {
        let k = uki("console=ttyS0", b"kernel");
        let mut s = setup(&k, &k, PROVEN, PREFERRED);
        let mut fw = FakeFirmware::new(&s.log);
        fw.variable_fails = true;
        assert_eq!(run(&mut fw, &mut s.disk), Ok(Slot::B));
        assert!(fw.said("warning: cannot set the FlipsideSlot EFI variable: WRITE_PROTECTED"));
        assert_eq!(fw.booted.len(), 1);

        // A refusal that cannot be recorded is a warning too; the fallback still boots.
        let a = uki("console=ttyS0", b"kernel a");
        let b = uki("console=ttyS0", b"REFUSE");
        let mut s = setup(&a, &b, PROVEN, PREFERRED);
        let mut fw = FakeFirmware::new(&s.log);
        fw.variable_fails = true;
        assert_eq!(run(&mut fw, &mut s.disk), Ok(Slot::A));
        assert!(fw.said("warning: cannot set the FlipsideRefused EFI variable: WRITE_PROTECTED"));
    }

    #[test]
    fn an_image_longer_than_its_partition_is_refused() {
        let mut big = uki("console=ttyS0", b"kernel");
        // .linux's SizeOfRawData claims far more than the partition holds.
        let linux_header = 0x98 + 112 + 16 * 8 + 2 * 40;
        big[linux_header + 16..linux_header + 20].copy_from_slice(&(1u32 << 20).to_le_bytes());
        let a = uki("console=ttyS0", b"kernel a");
        let mut s = setup(&a, &big, PROVEN, PREFERRED);
        let (result, fw) = s.run();
        assert_eq!(result, Ok(Slot::A));
        assert!(fw.said("past the end of the partition (262144 bytes): it is corrupt"));
    }

    #[test]
    fn load_options_replace_any_slot_word_and_survive_a_missing_cmdline() {
        let k = uki("console=ttyS0  flipside.slot=a quiet ", b"k");
        assert_eq!(
            load_options(&k, Slot::B),
            "console=ttyS0 quiet flipside.slot=b"
        );
        let bare = pe(&[(".linux", b"k")]);
        assert_eq!(load_options(&bare, Slot::A), "flipside.slot=a");
        assert_eq!(kernel_label(Slot::B), "kernel-b");
    }
}
