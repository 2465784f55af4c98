//! Serial markers: the lines the initramfs and the test systems print so that the harness can
//! follow a VM. A marker is `FLIPSIDE: SOURCE EVENT key=value ...` anywhere in a console line
//! (kernel messages may share the line). Every boot starts with `FLIPSIDE: initrd start`, so
//! the markers split into [`Boot`]s. The UEFI boot manager's lines `flipside-boot: EVENT
//! key=value ...` are markers of source `boot`; a boot through it starts at `boot start`.
//! Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use flipside_bootloader_hooks::Slot;

/// What every marker line starts with.
pub const PREFIX: &str = "FLIPSIDE: ";

/// One parsed marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// Who printed it: `initrd` or `system`.
    pub source: String,
    /// What happened: `start`, `select`, `switch`, `fail`, `up`, `end`, ...
    pub event: String,
    pub fields: BTreeMap<String, String>,
}

impl Marker {
    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// Whether this is `SOURCE EVENT`.
    pub fn is(&self, source: &str, event: &str) -> bool {
        self.source == source && self.event == event
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.source, self.event)?;
        for (k, v) in &self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// Lines the updater (`flipside install`) prints on stdout, read as markers of source
/// `updater`: `FLIPSIDE_RESULT event=installed ...` becomes `updater result event=installed ...`.
const UPDATER_LINES: &[(&str, &str)] = &[
    ("FLIPSIDE_RESULT ", "result"),
    ("FLIPSIDE_PROGRESS ", "progress"),
    ("FLIPSIDE_SYNCED ", "synced"),
];

/// What flipside-boot's console lines start with; read as markers of source `boot`. Its
/// explanations (`flipside-boot: error: ...`, `warning: ...`) are markers with event `error:`
/// or `warning:`.
pub const BOOT_PREFIX: &str = "flipside-boot: ";

/// The one field whose value is the rest of the line (JSON, which has spaces): the system
/// prints `flipside status --json` with its newlines removed as `... json=<document>`.
pub const JSON_FIELD: &str = "json";

/// The marker in a console line, if there is one.
pub fn parse(line: &str) -> Option<Marker> {
    for (prefix, event) in UPDATER_LINES {
        if let Some(at) = line.find(prefix) {
            return Some(Marker {
                source: "updater".into(),
                event: (*event).into(),
                fields: fields(&line[at + prefix.len()..]),
            });
        }
    }
    if let Some(at) = line.find(BOOT_PREFIX) {
        let (event, after) = first_word(&line[at + BOOT_PREFIX.len()..])?;
        return Some(Marker {
            source: "boot".into(),
            event: event.to_string(),
            fields: fields(after),
        });
    }
    let at = line.find(PREFIX)?;
    let rest = &line[at + PREFIX.len()..];
    let (source, rest) = first_word(rest)?;
    let (event, after) = first_word(rest)?;
    let (source, event) = (source.to_string(), event.to_string());
    Some(Marker {
        source,
        event,
        fields: fields(after),
    })
}

/// The first word of `text` and what follows it.
fn first_word(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    (end > 0).then(|| (&text[..end], &text[end..]))
}

/// `key=value` words; `json=` takes the rest of the line.
fn fields(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if let Some(doc) = rest.strip_prefix(&format!("{JSON_FIELD}=")) {
            out.insert(JSON_FIELD.to_string(), doc.trim_end().to_string());
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if let Some((k, v)) = rest[..end].split_once('=') {
            out.insert(k.to_string(), v.to_string());
        }
        rest = rest[end..].trim_start();
    }
    out
}

/// What the initramfs chose, from its `select` marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    pub slot: Slot,
    pub trial: bool,
    /// Tries left on the slot after this boot consumed one (0 for a proven slot).
    pub tries_left: u8,
}

/// How a boot ended, as far as the markers tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The initramfs gave up: `fail stage=.. action=..`.
    InitrdFailed { stage: String, action: String },
    /// The system said how it ends: `end action=poweroff|reboot|debug-exit|hang|panic`.
    System { action: String },
    /// No ending marker (yet): still running, or reset by the watchdog or a panic.
    Unknown,
}

/// The markers of one boot, from `initrd start` to the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Boot {
    /// 1 for the first boot of the VM.
    pub number: usize,
    pub markers: Vec<Marker>,
}

impl Boot {
    /// flipside-boot's `boot EVENT` markers of this boot, in order, as `EVENT slot=S` (or
    /// `EVENT` without a slot).
    pub fn firmware_events(&self) -> Vec<String> {
        self.markers
            .iter()
            .filter(|m| m.source == "boot" && !m.event.ends_with(':'))
            .map(|m| match m.get("slot") {
                Some(slot) => format!("{} slot={slot}", m.event),
                None => m.event.clone(),
            })
            .collect()
    }

    /// The first marker `SOURCE EVENT` of this boot.
    pub fn find(&self, source: &str, event: &str) -> Option<&Marker> {
        self.markers.iter().find(|m| m.is(source, event))
    }

    /// The initramfs' choice; `None` without a well-formed `select` marker.
    pub fn selection(&self) -> Option<Selection> {
        let m = self.find("initrd", "select")?;
        let slot = match m.get("slot")? {
            "a" => Slot::A,
            "b" => Slot::B,
            _ => return None,
        };
        let trial = match m.get("trial")? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let tries_left = m.get("tries_left")?.parse().ok()?;
        Some(Selection {
            slot,
            trial,
            tries_left,
        })
    }

    /// The version the system reported in its `up` marker.
    pub fn system_version(&self) -> Option<u64> {
        self.find("system", "up")?.get("version")?.parse().ok()
    }

    /// How the boot ended.
    pub fn ending(&self) -> Ending {
        if let Some(m) = self.find("initrd", "fail") {
            return Ending::InitrdFailed {
                stage: m.get("stage").unwrap_or("?").to_string(),
                action: m.get("action").unwrap_or("?").to_string(),
            };
        }
        match self.find("system", "end").and_then(|m| m.get("action")) {
            Some(action) => Ending::System {
                action: action.to_string(),
            },
            None => Ending::Unknown,
        }
    }

    /// The boot as one row of an expected-boots table.
    pub fn summary(&self) -> BootSummary {
        BootSummary {
            selection: self.selection(),
            version: self.system_version(),
            ending: self.ending(),
        }
    }
}

/// One row of a table of expected boots: what was chosen, what ran, how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootSummary {
    pub selection: Option<Selection>,
    pub version: Option<u64>,
    pub ending: Ending,
}

impl BootSummary {
    /// A boot of `slot` (trial or proven, with `tries_left`) into system `version` that ended
    /// with the system's `action`.
    pub fn system(slot: Slot, trial: bool, tries_left: u8, version: u64, action: &str) -> Self {
        Self {
            selection: Some(Selection {
                slot,
                trial,
                tries_left,
            }),
            version: Some(version),
            ending: Ending::System {
                action: action.to_string(),
            },
        }
    }
}

/// Splits markers into boots at each `boot start` (flipside-boot) and each `initrd start`
/// that is not the initramfs of a boot flipside-boot started; markers before the first are
/// dropped.
pub fn boots(markers: &[Marker]) -> Vec<Boot> {
    let mut out: Vec<Boot> = Vec::new();
    for m in markers {
        let firmware_boot_without_initrd = out.last().is_some_and(|b: &Boot| {
            b.find("boot", "start").is_some() && b.find("initrd", "start").is_none()
        });
        if m.is("boot", "start") || (m.is("initrd", "start") && !firmware_boot_without_initrd) {
            out.push(Boot {
                number: out.len() + 1,
                markers: Vec::new(),
            });
        }
        if let Some(boot) = out.last_mut() {
            boot.markers.push(m.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers(lines: &[&str]) -> Vec<Marker> {
        lines.iter().filter_map(|l| parse(l)).collect()
    }

    #[test]
    fn parses_marker_lines() {
        let m = parse("FLIPSIDE: initrd select slot=b trial=1 tries_left=1 partnum=2\r").unwrap();
        assert!(m.is("initrd", "select"));
        assert_eq!(m.get("slot"), Some("b"));
        assert_eq!(m.get("partnum"), Some("2"));
        assert_eq!(
            m.to_string(),
            "initrd select partnum=2 slot=b trial=1 tries_left=1"
        );
        // Kernel output may precede the marker on the same line.
        let m = parse("[    1.2] random: crng initFLIPSIDE: initrd start kernel=6.1").unwrap();
        assert!(m.is("initrd", "start"));
        assert_eq!(parse("flipside-initrd: no bootable slot"), None);
        assert_eq!(parse("FLIPSIDE: initrd"), None);
        assert_eq!(parse("plain console output"), None);
    }

    #[test]
    fn parses_updater_lines_and_json() {
        let m = parse("FLIPSIDE_RESULT event=installed slot=b version=2 fetched=10").unwrap();
        assert!(m.is("updater", "result"));
        assert_eq!(m.get("event"), Some("installed"));
        assert_eq!(m.get("version"), Some("2"));
        let m = parse("FLIPSIDE_PROGRESS phase=write done=1 total=9").unwrap();
        assert!(m.is("updater", "progress"));
        assert_eq!(m.get("phase"), Some("write"));
        let m = parse("FLIPSIDE_SYNCED part=root bytes=4096").unwrap();
        assert!(m.is("updater", "synced"));
        assert_eq!(m.get("bytes"), Some("4096"));
        let m = parse(r#"FLIPSIDE: updater status code=0 json={  "a": "x y",  "b": 1}"#).unwrap();
        assert!(m.is("updater", "status"));
        assert_eq!(m.get("code"), Some("0"));
        assert_eq!(m.get("json"), Some(r#"{  "a": "x y",  "b": 1}"#));
    }

    #[test]
    fn boots_split_at_start_and_summarise() {
        let all = markers(&[
            "FLIPSIDE: system end action=reboot",
            "FLIPSIDE: initrd start kernel=x",
            "FLIPSIDE: initrd select slot=b trial=1 tries_left=1 partnum=2",
            "FLIPSIDE: initrd switch slot=b",
            "FLIPSIDE: system up name=t version=2 slot=b",
            "FLIPSIDE: system end action=reboot",
            "FLIPSIDE: initrd start kernel=x",
            "FLIPSIDE: initrd fail stage=select code=3 action=poweroff",
            "FLIPSIDE: initrd start kernel=x",
        ]);
        let boots = boots(&all);
        assert_eq!(boots.len(), 3);
        assert_eq!(
            boots[0].summary(),
            BootSummary::system(Slot::B, true, 1, 2, "reboot")
        );
        assert_eq!(boots[1].number, 2);
        assert_eq!(
            boots[1].ending(),
            Ending::InitrdFailed {
                stage: "select".into(),
                action: "poweroff".into()
            }
        );
        assert_eq!(boots[1].selection(), None);
        assert_eq!(boots[2].ending(), Ending::Unknown);
        assert_eq!(boots[2].system_version(), None);
    }

    #[test]
    fn flipside_boot_lines_are_boot_markers_and_start_boots() {
        let m = parse("\x1b[0mflipside-boot: select slot=b trial=1 tries_left=1 kernel=kernel-b")
            .unwrap();
        assert!(m.is("boot", "select"));
        assert_eq!(m.get("kernel"), Some("kernel-b"));
        assert!(parse("flipside-boot: error: slot b failed")
            .unwrap()
            .is("boot", "error:"));
        let all = markers(&[
            "flipside-boot: start version=0.1.0",
            "flipside-boot: select slot=b trial=0 tries_left=0 kernel=kernel-b",
            "flipside-boot: boot slot=b",
            "FLIPSIDE: initrd start kernel=x",
            "FLIPSIDE: initrd select slot=b trial=0 tries_left=0 partnum=2 by=flipside-boot",
            "FLIPSIDE: system up name=t version=2 slot=b",
            "FLIPSIDE: system end action=reboot",
            "flipside-boot: start version=0.1.0",
            "flipside-boot: fail stage=kernel slot=b action=fallback",
            "flipside-boot: select slot=a trial=0 tries_left=0 kernel=kernel-a",
            "FLIPSIDE: initrd start kernel=x",
            "FLIPSIDE: initrd start kernel=x",
        ]);
        let boots = boots(&all);
        assert_eq!(boots.len(), 3, "{boots:#?}");
        assert_eq!(
            boots[0].summary(),
            BootSummary::system(Slot::B, false, 0, 2, "reboot")
        );
        assert!(boots[0].find("boot", "select").is_some());
        assert!(boots[1].find("boot", "fail").is_some());
        assert!(boots[1].find("initrd", "start").is_some());
        // A second initramfs start without flipside-boot in between is a boot of its own.
        assert_eq!(boots[2].markers.len(), 1);
    }

    #[test]
    fn malformed_selections_are_not_guessed() {
        for bad in [
            "FLIPSIDE: initrd select slot=c trial=1 tries_left=1",
            "FLIPSIDE: initrd select slot=a trial=yes tries_left=1",
            "FLIPSIDE: initrd select slot=a trial=1 tries_left=many",
            "FLIPSIDE: initrd select slot=a trial=1",
        ] {
            let all = markers(&["FLIPSIDE: initrd start", bad]);
            assert_eq!(boots(&all)[0].selection(), None, "{bad}");
        }
    }
}
