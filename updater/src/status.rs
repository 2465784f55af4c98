//! `flipside status`: both slots (partition, boot bits, what they hold), which slot runs and
//! which boots next, and what happened last; as text or JSON. Reads only.

use flipside_bootloader_hooks::Slot;
use serde::Serialize;

use crate::config::Config;
use crate::device::Device;
use crate::error::Result;
use crate::fallback::failed_trial;
use crate::record::{Journal, Outcome, StateDir};
use crate::running::{firmware_refusal, running_slot};
use crate::system::installed;

/// What `status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The format's version ([`crate::events::SCHEMA`]); it grows only by new fields.
    pub schema: u32,
    pub disk: String,
    /// The running slot, or why it is unknown.
    pub running: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_unknown: Option<String>,
    /// The slot firmware boots next (none when neither is bootable).
    pub boots_next: Option<String>,
    pub trial_pending: bool,
    /// Whether the running slot booted as a trial and waits for mark-good/mark-bad.
    pub running_on_trial: bool,
    pub slots: Vec<SlotStatus>,
    pub last: Option<Outcome>,
    /// An install that started and has not finished (interrupted, or running now).
    pub unfinished_install: Option<Journal>,
    /// The anti-rollback floor: no release below it is installed unless its publisher allows
    /// the rollback (`None` until the first commit).
    pub floor: Option<u64>,
    /// State files that could not be used (corrupt, unreadable): what is shown without them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// A kernel image the firmware refused to load this boot (flipside-boot's
    /// `FlipsideRefused` variable), so that flipside-boot started the other slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_kernel: Option<RefusedKernel>,
}

/// A kernel image the firmware would not load this boot.
#[derive(Clone, Debug, Serialize)]
pub struct RefusedKernel {
    pub slot: String,
    /// The firmware's status, e.g. `SECURITY_VIOLATION`.
    pub status: String,
    /// What it means and what to do.
    pub detail: String,
}

impl RefusedKernel {
    fn from_refusal(r: &flipside_bootloader_hooks::efivar::Refusal) -> Self {
        let why = match r.status.as_str() {
            "SECURITY_VIOLATION" | "ACCESS_DENIED" => {
                "Secure Boot is on and the image is not signed by a key in the firmware's db \
                 (or its signature no longer matches its bytes)"
            }
            _ => "the firmware could not load it",
        };
        Self {
            slot: r.slot.name().into(),
            status: r.status.clone(),
            detail: format!(
                "the firmware refused the kernel image of slot {} ({}): {why}; flipside-boot \
                 started the other slot; reinstall slot {} with a release signed by the \
                 enrolled key",
                r.slot, r.status, r.slot
            ),
        }
    }
}

/// One slot.
#[derive(Clone, Debug, Serialize)]
pub struct SlotStatus {
    pub slot: String,
    pub partition: u32,
    pub label: String,
    pub partuuid: String,
    pub priority: u8,
    pub tries: u8,
    pub successful: bool,
    pub bootable: bool,
    pub running: bool,
    pub boots_next: bool,
    pub release: Option<SlotRelease>,
}

/// What a slot holds, as far as the device knows.
#[derive(Clone, Debug, Serialize)]
pub struct SlotRelease {
    pub name: String,
    pub version: u64,
    pub display_version: String,
    /// `running-system` (from system.json) or `installed` (recorded by the install).
    pub source: &'static str,
    /// The kernel release of the slot's kernel part, on a device with kernel partitions: as
    /// recorded by the install that wrote it, else (the running slot) the running kernel's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
}

/// Gathers the status; only a broken configuration or an unreadable disk is an error.
pub fn gather(config: &Config) -> Result<Status> {
    let device = Device::open(&config.device, false)?;
    let state = device.state();
    let state_dir = StateDir::new(&config.device.state_dir);
    let (running, running_unknown) = match running_slot(&config.device, state) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let boots_next = state.boots_next().ok();
    let system = installed(config).ok();
    let mut warnings = Vec::new();
    // A state file that cannot be used is shown as missing, with a warning that says so.
    let mut usable = |e: crate::Error| {
        log::warn!("{e}");
        warnings.push(e.to_string());
    };
    let mut slots = Vec::new();
    for slot in Slot::ALL {
        let s = state.slot(slot);
        let record = state_dir.slot_record(slot).unwrap_or_else(|e| {
            usable(e);
            None
        });
        let kernel_release = device.has_kernel_partitions().then(|| {
            record
                .as_ref()
                .and_then(|r| r.kernel.as_ref())
                .map(|k| k.kernel_release.clone())
                .or_else(|| (Some(slot) == running).then(running_kernel).flatten())
        });
        let kernel_release = kernel_release.flatten();
        let release = if Some(slot) == running {
            system.as_ref().map(|i| SlotRelease {
                name: i.name.clone(),
                version: i.version,
                display_version: i.display_version.clone(),
                source: "running-system",
                kernel_release: kernel_release.clone(),
            })
        } else {
            None
        };
        let release = release.or_else(|| {
            record.map(|r| SlotRelease {
                name: r.name,
                version: r.version,
                display_version: r.display_version,
                source: "installed",
                kernel_release,
            })
        });
        slots.push(SlotStatus {
            slot: slot.name().into(),
            partition: s.partition.number,
            label: s.partition.label.clone(),
            partuuid: s.partition.partuuid.hyphenated().to_string(),
            priority: s.attrs.priority(),
            tries: s.attrs.tries(),
            successful: s.attrs.successful(),
            bootable: s.attrs.is_bootable(),
            running: Some(slot) == running,
            boots_next: Some(slot) == boots_next,
            release,
        });
    }
    let last = state_dir.last().unwrap_or_else(|e| {
        usable(e);
        None
    });
    let unfinished_install = state_dir.journal().unwrap_or_else(|e| {
        usable(e);
        None
    });
    // A trial that never came back left no record of its own: tell it from the bits.
    let last = match running {
        Some(r) => failed_trial(last.as_ref(), r, state.attrs(r), state.attrs(!r)).or(last),
        None => last,
    };
    Ok(Status {
        schema: crate::events::SCHEMA,
        disk: config.device.disk.display().to_string(),
        running: running.map(|s| s.name().to_string()),
        running_unknown,
        boots_next: boots_next.map(|s| s.name().to_string()),
        trial_pending: state.is_trial_pending(),
        running_on_trial: running.is_some_and(|s| state.is_on_trial(s)),
        slots,
        last,
        unfinished_install,
        floor: state_dir
            .floor()
            .unwrap_or_else(|e| {
                log::warn!("{e}");
                None
            })
            .map(|f| f.version),
        warnings,
        refused_kernel: firmware_refusal(&config.device.efivars)
            .as_ref()
            .map(RefusedKernel::from_refusal),
    })
}

/// `uname -r` of the running kernel.
fn running_kernel() -> Option<String> {
    let uname = rustix::system::uname();
    uname.release().to_str().ok().map(str::to_string)
}

/// The status as text for people.
pub fn render_text(s: &Status) -> String {
    let mut out = String::new();
    out.push_str(&format!("disk: {}\n", s.disk));
    for slot in &s.slots {
        let mut roles = Vec::new();
        if slot.running {
            roles.push("running");
        }
        if slot.boots_next {
            roles.push("boots next");
        }
        let release = slot
            .release
            .as_ref()
            .map_or("unknown contents".to_string(), |r| {
                let kernel = r
                    .kernel_release
                    .as_ref()
                    .map_or(String::new(), |k| format!(", kernel {k}"));
                format!("{} {} ({}){kernel}", r.name, r.version, r.display_version)
            });
        out.push_str(&format!(
            "slot {}: partition {} ({}, PARTUUID {}): P={} T={} S={}{}: {}{}\n",
            slot.slot,
            slot.partition,
            slot.label,
            slot.partuuid,
            slot.priority,
            slot.tries,
            u8::from(slot.successful),
            if slot.bootable { "" } else { " (not bootable)" },
            release,
            if roles.is_empty() {
                String::new()
            } else {
                format!(" [{}]", roles.join(", "))
            }
        ));
    }
    match (&s.running, &s.running_unknown) {
        (Some(r), _) => out.push_str(&format!(
            "running: slot {r}{}\n",
            if s.running_on_trial {
                " (on trial: run flipside health or mark-good)"
            } else {
                ""
            }
        )),
        (None, Some(why)) => out.push_str(&format!("running: unknown ({why})\n")),
        (None, None) => out.push_str("running: unknown\n"),
    }
    out.push_str(&format!(
        "boots next: {}\n",
        s.boots_next
            .as_deref()
            .map_or("nothing bootable".to_string(), |b| format!("slot {b}"))
    ));
    // A trial under way is already shown on the running line.
    if s.trial_pending && !s.running_on_trial {
        out.push_str("trial pending: reboot to try the new slot\n");
    }
    if let Some(j) = &s.unfinished_install {
        out.push_str(&format!(
            "unfinished install: {} {} into slot {} since {} (run flipside install to resume)\n",
            j.bundle_target,
            j.version,
            j.slot,
            j.started.to_rfc3339()
        ));
    }
    if let Some(r) = &s.refused_kernel {
        out.push_str(&format!("refused kernel: {}\n", r.detail));
    }
    if let Some(floor) = s.floor {
        out.push_str(&format!(
            "anti-rollback floor: {floor} (the highest version committed)\n"
        ));
    }
    match &s.last {
        Some(o) => out.push_str(&format!(
            "last: {} {} slot {}{}: {}\n",
            o.time.to_rfc3339(),
            o.event.name(),
            o.slot,
            o.version.map_or(String::new(), |v| format!(" version {v}")),
            o.detail
        )),
        None => out.push_str("last: nothing recorded\n"),
    }
    for w in &s.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}
