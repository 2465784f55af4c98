//! Partition device names from whole-disk names, as the kernel forms them: `/dev/vda` + 3 is
//! `/dev/vda3`; a disk name ending in a digit takes a `p` first (`/dev/nvme0n1p3`,
//! `/dev/mmcblk0p3`, `/dev/loop0p3`).

use std::path::{Path, PathBuf};

/// The device path of partition `number` of the whole-disk device `disk`.
pub fn partition_device(disk: &Path, number: u32) -> PathBuf {
    let mut name = disk.as_os_str().to_os_string();
    let ends_in_digit = name
        .to_string_lossy()
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_digit());
    if ends_in_digit {
        name.push("p");
    }
    name.push(number.to_string());
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_naming() {
        for (disk, want) in [
            ("/dev/vda", "/dev/vda3"),
            ("/dev/sda", "/dev/sda3"),
            ("/dev/nvme0n1", "/dev/nvme0n1p3"),
            ("/dev/mmcblk0", "/dev/mmcblk0p3"),
            ("/dev/loop0", "/dev/loop0p3"),
            ("/dev/loop12", "/dev/loop12p3"),
        ] {
            assert_eq!(partition_device(Path::new(disk), 3), PathBuf::from(want));
        }
    }
}
