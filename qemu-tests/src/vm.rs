//! One QEMU virtual machine: the test kernel and initramfs, the disk on virtio-blk, the serial
//! console read line by line (each line is appended to the VM's serial log and parsed for
//! markers), `isa-debug-exit` for exit codes, optionally the i6300esb watchdog and user
//! networking restricted to one forwarded port. The harness kills the QEMU it started when a
//! [`Vm`] is dropped, also when a test panics.
//!
//! [`qemu_args`] builds the command line without starting anything.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::accel::Accel;
use crate::error::{Error, Result};
use crate::markers::{self, Boot, Marker};

/// How often a waiting VM checks whether QEMU is still there.
const POLL: Duration = Duration::from_millis(200);

/// What [`Vm::next_line`] got.
enum Next {
    Line(String),
    /// QEMU is gone; its exit status as text.
    Ended(String),
    TimedOut,
}

/// I/O port of the isa-debug-exit device.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Address the guest reaches the host's forwarded server at.
pub const GUEST_SERVER_ADDR: &str = "10.0.2.100";

/// What a guest reboot does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnReboot {
    /// The VM resets and boots again from the same disk: reboot cycles (no `-no-reboot`).
    Reset,
    /// QEMU exits (`-no-reboot`).
    Exit,
}

/// A guest TCP port forwarded to a server on the host's 127.0.0.1 (QEMU user networking with
/// `restrict=on`: the guest reaches nothing else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestFwd {
    /// Port the guest connects to at [`GUEST_SERVER_ADDR`].
    pub guest_port: u16,
    /// Port of the server on 127.0.0.1.
    pub host_port: u16,
    /// A static busybox on the host; each guest connection runs `busybox nc 127.0.0.1 PORT`.
    pub busybox: PathBuf,
}

/// UEFI firmware in two flash devices: OVMF's code (read-only) and a writable copy of its
/// variable store for this VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars: PathBuf,
    /// OVMF built for Secure Boot (`OVMF_CODE_4M.secboot.fd`): it requires SMM, and its
    /// variable store lives in the flash that only SMM may write, so the booted system cannot
    /// change the enrolled keys.
    pub secure_boot: bool,
}

/// The emulated machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `qemu-system-x86_64 -machine q35`, with `isa-debug-exit`; the kernel from `-kernel` or
    /// UEFI from OVMF's flash ([`VmConfig::firmware`]).
    Q35,
    /// `qemu-system-aarch64 -machine virt -cpu cortex-a57` (always TCG) with `bios` as its
    /// firmware: Debian's U-Boot for QEMU, which boots the disk alone through its UEFI. No
    /// `isa-debug-exit` (a guest powers off through PSCI: QEMU exits 0).
    ArmVirt { bios: PathBuf },
}

impl Machine {
    /// The QEMU program.
    pub fn program(&self) -> &'static str {
        match self {
            Machine::Q35 => "qemu-system-x86_64",
            Machine::ArmVirt { .. } => "qemu-system-aarch64",
        }
    }
}

/// How to run one VM.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The emulated machine; [`Machine::Q35`] unless a test asks for another.
    pub machine: Machine,
    /// Name of the VM's log files (`<name>.serial.log`, `.timeline.log`, `.qemu.log`, `.cmdline`).
    pub name: String,
    /// Directory of the logs, usually [`crate::paths::logs_dir`] of the test.
    pub log_dir: PathBuf,
    /// The kernel: an ELF vmlinux (PVH) or a bzImage; QEMU tells them apart itself.
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The disk image (raw); none for the accelerator probe.
    pub disk: Option<PathBuf>,
    pub on_reboot: OnReboot,
    /// Seconds of the i6300esb watchdog the initramfs arms; `None`: no watchdog device.
    pub watchdog_secs: Option<u32>,
    pub network: Option<GuestFwd>,
    pub memory_mib: u32,
    /// Extra kernel command line words.
    pub extra_cmdline: Vec<String>,
    /// Boot through UEFI firmware from the disk alone: `kernel`, `initramfs` and the command
    /// line are then not given to QEMU (the disk's ESP and kernel partitions hold them).
    pub firmware: Option<Firmware>,
}

impl VmConfig {
    /// A VM of `assets` booting `disk`, rebooting in place, without watchdog or network.
    pub fn new(assets: &crate::Assets, log_dir: &Path, name: &str, disk: &Path) -> Self {
        Self {
            machine: Machine::Q35,
            name: name.to_string(),
            log_dir: log_dir.to_path_buf(),
            kernel: assets.kernel.image.clone(),
            initramfs: assets.initramfs.clone(),
            disk: Some(disk.to_path_buf()),
            on_reboot: OnReboot::Reset,
            watchdog_secs: None,
            network: None,
            memory_mib: 256,
            extra_cmdline: Vec::new(),
            firmware: None,
        }
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> String {
        // quiet: fewer kernel lines on the slow emulated UART; panic=-1: a panic reboots at
        // once, so a failed trial boot moves on.
        let mut words = vec![
            "console=ttyS0".to_string(),
            "quiet".into(),
            "panic=-1".into(),
        ];
        if let Some(secs) = self.watchdog_secs {
            words.push(format!("flipside.watchdog={secs}"));
        }
        words.extend(self.extra_cmdline.iter().cloned());
        words.join(" ")
    }
}

/// Doubles commas, QEMU's escape inside an option value.
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// The QEMU command line (without the program). Pure.
pub fn qemu_args(cfg: &VmConfig, accel: Accel) -> Vec<String> {
    if let Machine::ArmVirt { bios } = &cfg.machine {
        return arm_virt_args(cfg, bios);
    }
    let mut a: Vec<String> = Vec::new();
    let mut push = |words: &[&str]| a.extend(words.iter().map(|w| w.to_string()));
    let secure = cfg.firmware.as_ref().is_some_and(|fw| fw.secure_boot);
    let machine = if secure { "q35,smm=on" } else { "q35" };
    push(&[
        "-machine",
        machine,
        "-accel",
        accel.qemu_name(),
        "-smp",
        "1",
    ]);
    if secure {
        push(&["-global", "driver=cfi.pflash01,property=secure,value=on"]);
    }
    push(&["-m", &cfg.memory_mib.to_string()]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&[
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
    ]);
    match &cfg.firmware {
        None => {
            push(&["-kernel", &cfg.kernel.to_string_lossy()]);
            push(&["-initrd", &cfg.initramfs.to_string_lossy()]);
            push(&["-append", &cfg.cmdline()]);
        }
        Some(fw) => {
            let code = format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                qemu_escape(&fw.code.to_string_lossy())
            );
            let vars = format!(
                "if=pflash,format=raw,unit=1,file={}",
                qemu_escape(&fw.vars.to_string_lossy())
            );
            push(&["-drive", &code, "-drive", &vars]);
        }
    }
    let debug_exit = format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04");
    push(&["-device", &debug_exit]);
    if let Some(disk) = &cfg.disk {
        let drive = format!(
            "file={},if=none,id=disk0,format=raw",
            qemu_escape(&disk.to_string_lossy())
        );
        push(&["-drive", &drive, "-device", "virtio-blk-pci,drive=disk0"]);
    }
    if cfg.on_reboot == OnReboot::Exit {
        push(&["-no-reboot"]);
    }
    if cfg.watchdog_secs.is_some() {
        push(&["-device", "i6300esb", "-action", "watchdog=reset"]);
    }
    if let Some(fwd) = &cfg.network {
        a.extend(network_args(fwd));
    }
    a
}

/// QEMU user networking that reaches only `fwd`'s server, on a virtio-net PCI card (x86-64
/// and aarch64 `virt` alike). Pure.
fn network_args(fwd: &GuestFwd) -> [String; 4] {
    let cmd = format!(
        "{} nc 127.0.0.1 {}",
        fwd.busybox.to_string_lossy(),
        fwd.host_port
    );
    let netdev = format!(
        "user,id=net0,restrict=on,guestfwd=tcp:{GUEST_SERVER_ADDR}:{}-cmd:{}",
        fwd.guest_port,
        qemu_escape(&cmd)
    );
    // romfile= skips the option ROM (iPXE on x86-64): nothing boots from the network.
    [
        "-netdev".into(),
        netdev,
        "-device".into(),
        "virtio-net-pci,netdev=net0,romfile=".into(),
    ]
}

/// The QEMU command line of an aarch64 `virt` machine booting `cfg.disk` through `bios`
/// (U-Boot): TCG (the build machine is x86-64), one CPU, the disk on virtio-blk-pci, the
/// network of [`VmConfig::network`] when given, no watchdog. Pure.
fn arm_virt_args(cfg: &VmConfig, bios: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "-machine",
        "virt",
        "-cpu",
        "cortex-a57",
        "-accel",
        "tcg",
        "-smp",
        "1",
        "-m",
    ]
    .iter()
    .map(|w| w.to_string())
    .collect();
    a.push(cfg.memory_mib.to_string());
    for w in [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
        "-bios",
    ] {
        a.push(w.to_string());
    }
    a.push(bios.to_string_lossy().into_owned());
    if let Some(disk) = &cfg.disk {
        a.push("-drive".into());
        a.push(format!(
            "file={},if=none,id=disk0,format=raw",
            qemu_escape(&disk.to_string_lossy())
        ));
        a.push("-device".into());
        a.push("virtio-blk-pci,drive=disk0".into());
    }
    if let Some(fwd) = &cfg.network {
        a.extend(network_args(fwd));
    }
    if cfg.on_reboot == OnReboot::Exit {
        a.push("-no-reboot".into());
    }
    a
}

/// How QEMU ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QemuExit {
    /// Exit status 0: the guest powered off (QEMU also exits 0 on SIGTERM).
    PoweredOff,
    /// The guest wrote `code` to isa-debug-exit (status `code * 2 + 1`, code 1..=127).
    DebugExit(u8),
    /// Anything else: a QEMU error (status 1 also means debug-exit code 0), or a signal.
    Other(String),
}

impl QemuExit {
    /// Decodes QEMU's exit status. Pure.
    pub fn from_status(status: ExitStatus) -> Self {
        match status.code() {
            Some(0) => QemuExit::PoweredOff,
            Some(c) if c > 1 && c % 2 == 1 => {
                QemuExit::DebugExit(u8::try_from(c / 2).unwrap_or(u8::MAX))
            }
            _ => QemuExit::Other(status.to_string()),
        }
    }
}

/// A running (or finished) VM.
pub struct Vm {
    name: String,
    child: Child,
    lines: Receiver<String>,
    serial_log: PathBuf,
    stderr_log: PathBuf,
    markers: Vec<Marker>,
    exit: Option<QemuExit>,
}

impl Vm {
    /// Starts QEMU with `cfg` under `accel`. In `<log_dir>`: `<name>.serial.log` (the console
    /// as the guest wrote it), `<name>.timeline.log` (each console line with the seconds since
    /// QEMU started), `<name>.qemu.log` (QEMU's own messages), `<name>.cmdline`.
    pub fn start(cfg: &VmConfig, accel: Accel) -> Result<Vm> {
        fs::create_dir_all(&cfg.log_dir).map_err(Error::io("create directory", &cfg.log_dir))?;
        let serial_log = cfg.log_dir.join(format!("{}.serial.log", cfg.name));
        let timeline_log = cfg.log_dir.join(format!("{}.timeline.log", cfg.name));
        let stderr_log = cfg.log_dir.join(format!("{}.qemu.log", cfg.name));
        let cmdline_file = cfg.log_dir.join(format!("{}.cmdline", cfg.name));
        let args = qemu_args(cfg, accel);
        let program = cfg.machine.program();
        fs::write(&cmdline_file, format!("{program} {}\n", shell_quote(&args)))
            .map_err(Error::io("write", &cmdline_file))?;
        let mut log = File::create(&serial_log).map_err(Error::io("create", &serial_log))?;
        let mut timeline =
            File::create(&timeline_log).map_err(Error::io("create", &timeline_log))?;
        let stderr = File::create(&stderr_log).map_err(Error::io("create", &stderr_log))?;
        let mut child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|source| Error::QemuStart {
                program: program.to_string(),
                source,
            })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::io("read the console of", program)(
                std::io::ErrorKind::BrokenPipe.into(),
            ));
        };
        let (tx, lines) = mpsc::channel();
        let echo = std::env::var_os("FLIPSIDE_QEMU_ECHO").is_some();
        let vm_name = cfg.name.clone();
        let started = Instant::now();
        // The reader ends when the console pipe closes. It is never joined, so that a process
        // that inherited the pipe cannot hang a test.
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match stdout.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                // The logs are artefacts: a failed write must not stop the VM being followed.
                let _ = log.write_all(&buf).and_then(|()| log.flush());
                let at = started.elapsed().as_secs_f64();
                let _ = writeln!(timeline, "{at:8.3}s {line}");
                if echo {
                    eprintln!("[{vm_name}] {line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Vm {
            name: cfg.name.clone(),
            child,
            lines,
            serial_log,
            stderr_log,
            markers: Vec::new(),
            exit: None,
        })
    }

    /// The VM's serial log.
    pub fn serial_log(&self) -> &Path {
        &self.serial_log
    }

    /// Every marker seen so far.
    pub fn markers(&self) -> &[Marker] {
        &self.markers
    }

    /// The boots seen so far (a boot starts at each `initrd start` marker).
    pub fn boots(&self) -> Vec<Boot> {
        markers::boots(&self.markers)
    }

    /// The boots seen so far, one row each for a table of expected boots.
    pub fn boot_summaries(&self) -> Vec<markers::BootSummary> {
        self.boots().iter().map(Boot::summary).collect()
    }

    /// How QEMU ended, once it has.
    pub fn exit(&self) -> Option<&QemuExit> {
        self.exit.as_ref()
    }

    /// Reads console lines until a new marker satisfies `pred` and returns it. Fails after
    /// `timeout`, or when QEMU ends first. `what` names the marker in errors.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Marker) -> bool,
    ) -> Result<Marker> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_line(deadline) {
                Next::Line(line) => {
                    if let Some(m) = markers::parse(&line) {
                        self.markers.push(m.clone());
                        if pred(&m) {
                            return Ok(m);
                        }
                    }
                }
                Next::TimedOut => {
                    return Err(Error::Timeout {
                        vm: self.name.clone(),
                        waiting_for: what.to_string(),
                        waited: timeout,
                        log: self.serial_log.clone(),
                    })
                }
                Next::Ended(status) => {
                    return Err(Error::QemuEnded {
                        vm: self.name.clone(),
                        waiting_for: what.to_string(),
                        status,
                        log: self.serial_log.clone(),
                        stderr_log: self.stderr_log.clone(),
                    })
                }
            }
        }
    }

    /// Reads the console until QEMU ends (within `timeout`, else the VM is killed and this
    /// fails) and returns how it ended.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<QemuExit> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_line(deadline) {
                Next::Line(line) => self.markers.extend(markers::parse(&line)),
                Next::Ended(_) => break,
                Next::TimedOut => {
                    self.kill();
                    return Err(Error::Timeout {
                        vm: self.name.clone(),
                        waiting_for: "QEMU to exit".into(),
                        waited: timeout,
                        log: self.serial_log.clone(),
                    });
                }
            }
        }
        match &self.exit {
            Some(exit) => Ok(exit.clone()),
            None => Err(Error::QemuEnded {
                vm: self.name.clone(),
                waiting_for: "its exit status".into(),
                status: "unknown".into(),
                log: self.serial_log.clone(),
                stderr_log: self.stderr_log.clone(),
            }),
        }
    }

    /// The next console line, or the end of QEMU, or the deadline. QEMU's end is noticed
    /// when its console closes, and also when the process is gone while something else still
    /// holds the pipe (then the lines already read are delivered first).
    fn next_line(&mut self, deadline: Instant) -> Next {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(POLL)) {
                Ok(line) => return Next::Line(line),
                Err(RecvTimeoutError::Disconnected) => {
                    return Next::Ended(self.reap(Instant::now() + Duration::from_secs(5)))
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        self.exit = Some(QemuExit::from_status(status));
                        return match self.lines.recv_timeout(POLL) {
                            Ok(line) => Next::Line(line),
                            Err(_) => Next::Ended(status.to_string()),
                        };
                    }
                    if left.is_zero() {
                        return Next::TimedOut;
                    }
                }
            }
        }
    }

    /// Waits for the process until `deadline` after its console closed; describes its status.
    fn reap(&mut self, deadline: Instant) -> String {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(QemuExit::from_status(status));
                    return status.to_string();
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL / 10),
                Ok(None) => return "still running after closing its console".into(),
                Err(e) => return format!("unknown ({e})"),
            }
        }
    }

    /// Kills this VM's QEMU (only that process) and waits for it.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exit = Some(QemuExit::from_status(status));
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Arguments as one shell line, for the `.cmdline` artefact.
fn shell_quote(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,.:/+@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn config() -> VmConfig {
        VmConfig {
            machine: Machine::Q35,
            name: "t".into(),
            log_dir: "/logs".into(),
            kernel: "/a/vmlinux".into(),
            initramfs: "/a/initramfs.cpio.zst".into(),
            disk: Some("/d/disk,1.img".into()),
            on_reboot: OnReboot::Reset,
            watchdog_secs: None,
            network: None,
            memory_mib: 256,
            extra_cmdline: vec![],
            firmware: None,
        }
    }

    fn has(args: &[String], pair: [&str; 2]) -> bool {
        args.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1])
    }

    #[test]
    fn arm_virt_command_line() {
        let mut cfg = config();
        cfg.machine = Machine::ArmVirt {
            bios: "/u/u-boot.bin".into(),
        };
        cfg.on_reboot = OnReboot::Exit;
        let args = qemu_args(&cfg, Accel::Kvm);
        assert_eq!(cfg.machine.program(), "qemu-system-aarch64");
        assert!(has(&args, ["-machine", "virt"]));
        assert!(has(&args, ["-cpu", "cortex-a57"]));
        assert!(
            has(&args, ["-accel", "tcg"]),
            "aarch64 always runs under TCG"
        );
        assert!(has(&args, ["-bios", "/u/u-boot.bin"]));
        assert!(has(&args, ["-device", "virtio-blk-pci,drive=disk0"]));
        assert!(has(
            &args,
            ["-drive", "file=/d/disk,,1.img,if=none,id=disk0,format=raw"]
        ));
        assert!(args.iter().any(|a| a == "-no-reboot"));
        for absent in ["-kernel", "-initrd", "-append"] {
            assert!(!args.iter().any(|a| a == absent), "{absent}");
        }
        assert!(!args.iter().any(|a| a.contains("isa-debug-exit")));
        assert!(!args.iter().any(|a| a == "-netdev"));
        cfg.network = Some(GuestFwd {
            guest_port: 80,
            host_port: 8080,
            busybox: "/bin/busybox".into(),
        });
        let args = qemu_args(&cfg, Accel::Tcg);
        assert!(has(
            &args,
            ["-device", "virtio-net-pci,netdev=net0,romfile="]
        ));
        assert!(args
            .iter()
            .any(|a| a.starts_with("user,id=net0,restrict=on,")));
    }

    #[test]
    fn base_command_line() {
        let args = qemu_args(&config(), Accel::Tcg);
        assert!(has(&args, ["-accel", "tcg"]));
        assert!(has(&args, ["-kernel", "/a/vmlinux"]));
        assert!(has(&args, ["-append", "console=ttyS0 quiet panic=-1"]));
        assert!(has(
            &args,
            ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
        ));
        assert!(has(
            &args,
            ["-drive", "file=/d/disk,,1.img,if=none,id=disk0,format=raw"]
        ));
        assert!(!args
            .iter()
            .any(|a| a == "-no-reboot" || a == "i6300esb" || a == "-netdev"));
    }

    #[test]
    fn options_add_their_devices() {
        let mut cfg = config();
        cfg.on_reboot = OnReboot::Exit;
        cfg.watchdog_secs = Some(20);
        cfg.disk = None;
        cfg.network = Some(GuestFwd {
            guest_port: 80,
            host_port: 8080,
            busybox: "/bin/busybox".into(),
        });
        let args = qemu_args(&cfg, Accel::Kvm);
        assert!(has(&args, ["-accel", "kvm"]));
        assert!(args.iter().any(|a| a == "-no-reboot"));
        assert!(has(&args, ["-device", "i6300esb"]));
        assert!(has(&args, ["-action", "watchdog=reset"]));
        assert!(has(
            &args,
            [
                "-append",
                "console=ttyS0 quiet panic=-1 flipside.watchdog=20"
            ]
        ));
        assert!(has(
            &args,
            [
                "-netdev",
                "user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:/bin/busybox nc 127.0.0.1 8080"
            ]
        ));
        assert!(has(
            &args,
            ["-device", "virtio-net-pci,netdev=net0,romfile="]
        ));
        assert!(!args.iter().any(|a| a == "-drive"));
    }

    #[test]
    fn uefi_boots_from_the_disk_alone() {
        let mut cfg = config();
        cfg.firmware = Some(Firmware {
            code: "/ovmf/CODE.fd".into(),
            vars: "/w/vars,1.fd".into(),
            secure_boot: false,
        });
        let args = qemu_args(&cfg, Accel::Tcg);
        assert!(has(&args, ["-machine", "q35"]));
        assert!(!args.iter().any(|a| a.contains("smm") || a == "-global"));
        assert!(!args
            .iter()
            .any(|a| a == "-kernel" || a == "-initrd" || a == "-append"));
        assert!(has(
            &args,
            [
                "-drive",
                "if=pflash,format=raw,unit=0,readonly=on,file=/ovmf/CODE.fd"
            ]
        ));
        assert!(has(
            &args,
            ["-drive", "if=pflash,format=raw,unit=1,file=/w/vars,,1.fd"]
        ));
        assert!(has(
            &args,
            ["-drive", "file=/d/disk,,1.img,if=none,id=disk0,format=raw"]
        ));
    }

    #[test]
    fn secure_boot_firmware_gets_smm_and_a_secure_flash() {
        let mut cfg = config();
        cfg.firmware = Some(Firmware {
            code: "/ovmf/CODE.secboot.fd".into(),
            vars: "/w/vars.fd".into(),
            secure_boot: true,
        });
        let args = qemu_args(&cfg, Accel::Tcg);
        assert!(has(&args, ["-machine", "q35,smm=on"]));
        assert!(has(
            &args,
            ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        ));
    }

    #[test]
    fn exit_statuses() {
        let st = |code: i32| ExitStatus::from_raw(code << 8);
        assert_eq!(QemuExit::from_status(st(0)), QemuExit::PoweredOff);
        assert_eq!(QemuExit::from_status(st(3)), QemuExit::DebugExit(1));
        assert_eq!(QemuExit::from_status(st(85)), QemuExit::DebugExit(42));
        assert!(matches!(QemuExit::from_status(st(1)), QemuExit::Other(_)));
        assert!(matches!(QemuExit::from_status(st(2)), QemuExit::Other(_)));
        assert!(matches!(
            QemuExit::from_status(ExitStatus::from_raw(9)),
            QemuExit::Other(_)
        ));
    }
}
