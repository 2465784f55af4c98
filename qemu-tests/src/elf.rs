//! Just enough ELF reading to check the programs that go into the initramfs: a PID 1 helper
//! must be a static executable for the guest's machine (an initramfs has no dynamic loader).

const PT_INTERP: u32 = 3;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// A guest machine's ELF `e_machine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfMachine {
    X86_64,
    Aarch64,
}

impl ElfMachine {
    fn code(self) -> u16 {
        match self {
            ElfMachine::X86_64 => EM_X86_64,
            ElfMachine::Aarch64 => EM_AARCH64,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ElfMachine::X86_64 => "x86-64",
            ElfMachine::Aarch64 => "aarch64",
        }
    }
}

/// Why a file is not a static x86-64 executable, or `None` when it is one.
pub fn static_x86_64_problem(bytes: &[u8]) -> Option<String> {
    static_problem(bytes, ElfMachine::X86_64)
}

/// Why a file is not a static executable for `machine`, or `None` when it is one.
pub fn static_problem(bytes: &[u8], machine: ElfMachine) -> Option<String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Some("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Some("not a 64-bit little-endian ELF file".into());
    }
    if u16_at(bytes, 0x12) != Some(machine.code()) {
        return Some(format!("not built for {}", machine.name()));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (
        u64_at(bytes, 0x20),
        u16_at(bytes, 0x36),
        u16_at(bytes, 0x38),
    ) else {
        return Some("truncated ELF header".into());
    };
    for i in 0..u64::from(phnum) {
        let at = phoff.checked_add(i * u64::from(phentsize));
        let p_type = at
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| u32_at(bytes, at));
        match p_type {
            None => return Some("program header table lies outside the file".into()),
            Some(PT_INTERP) => return Some("dynamically linked (it names an interpreter)".into()),
            Some(_) => {}
        }
    }
    None
}

/// Whether `bytes` start like an ELF file.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 x86-64 header with `types` as program headers.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * types.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            b[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        b
    }

    #[test]
    fn static_and_dynamic_are_told_apart() {
        assert_eq!(static_x86_64_problem(&elf(&[1, 4, 1])), None);
        assert!(static_x86_64_problem(&elf(&[6, PT_INTERP, 1]))
            .is_some_and(|w| w.contains("dynamically")));
        let mut arm = elf(&[1]);
        arm[0x12] = 183;
        assert!(static_x86_64_problem(&arm).is_some_and(|w| w.contains("x86-64")));
        assert_eq!(static_problem(&arm, ElfMachine::Aarch64), None);
        assert!(
            static_problem(&elf(&[1]), ElfMachine::Aarch64).is_some_and(|w| w.contains("aarch64"))
        );
        let mut cut = elf(&[1, 1]);
        cut.truncate(100);
        assert!(static_x86_64_problem(&cut).is_some_and(|w| w.contains("outside")));
        assert!(static_x86_64_problem(b"#!/bin/sh\n").is_some());
        assert!(is_elf(&elf(&[])));
    }

    #[test]
    fn host_programs() {
        // /bin/sh on Debian is dash, dynamically linked.
        let sh = std::fs::read("/bin/sh").unwrap();
        assert!(static_x86_64_problem(&sh).is_some());
    }
}
