//! Fleet events: every update step as one JSON object (schema [`SCHEMA`]), printed as a
//! `FLIPSIDE_EVENT {...}` line (the journal, under systemd) and kept in a bounded spool in the
//! state directory until the configured collector (`events.url`) accepted it. Events only go
//! out: the collector's answer is read for its status code alone, so nothing in it can change
//! what the device installs. An event names the system, version and slot, never credentials
//! or the machine id.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::http::Http;
use crate::record::{Event, Outcome};

/// The version of the event (and `status --json`) format; it grows only by new fields.
pub const SCHEMA: u32 = 1;

/// Events kept while the collector is unreachable; older ones are dropped first.
pub const SPOOL_MAX_EVENTS: usize = 1000;

/// The spool file in the state directory.
pub const SPOOL_FILE: &str = "events.jsonl";

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The repository was checked.
    Check,
    /// A rollout has not reached this device yet.
    Waiting,
    /// A release is being downloaded into the inactive slot.
    Download,
    Installed,
    InstallFailed,
    /// The device reboots into the installed release.
    Rebooting,
    Committed,
    MarkedBad,
    RolledBack,
    FellBack,
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetEvent {
    pub schema: u32,
    pub time: DateTime<Utc>,
    pub event: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    pub detail: String,
}

impl FleetEvent {
    pub fn new(event: Kind, version: Option<u64>, slot: Option<String>, detail: String) -> Self {
        FleetEvent {
            schema: SCHEMA,
            time: Utc::now(),
            event,
            version,
            slot,
            detail,
        }
    }
}

impl From<&Outcome> for FleetEvent {
    fn from(o: &Outcome) -> Self {
        let event = match o.event {
            Event::Installed => Kind::Installed,
            Event::InstallFailed => Kind::InstallFailed,
            Event::Committed => Kind::Committed,
            Event::MarkedBad => Kind::MarkedBad,
            Event::RolledBack => Kind::RolledBack,
            Event::FellBack => Kind::FellBack,
        };
        FleetEvent {
            schema: SCHEMA,
            time: o.time,
            event,
            version: o.version,
            slot: Some(o.slot.clone()),
            detail: o.detail.clone(),
        }
    }
}

/// Prints `event` and keeps it in the spool of `state_dir`. Never fails the command: a spool
/// that cannot be written is a warning.
pub fn emit(state_dir: &Path, event: &FleetEvent) {
    let line = match serde_json::to_string(event) {
        Ok(line) => line,
        Err(e) => return log::warn!("cannot serialise an event: {e}"),
    };
    println!("FLIPSIDE_EVENT {line}");
    if let Err(e) = spool(&state_dir.join(SPOOL_FILE), &line) {
        log::warn!("cannot keep the event for the collector: {e}");
    }
}

/// Appends `line` to the spool, keeping the newest [`SPOOL_MAX_EVENTS`].
fn spool(path: &Path, line: &str) -> Result<()> {
    let mut lines = read_spool(path)?;
    lines.push(line.to_string());
    let keep = lines.len().saturating_sub(SPOOL_MAX_EVENTS);
    write_spool(path, &lines[keep..])
}

fn read_spool(path: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::StateIo {
            op: "read the event spool",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_spool(path: &Path, lines: &[String]) -> Result<()> {
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let options = flipside_atomic_file::Options::mode(0o600);
    flipside_atomic_file::write_with(path, text.as_bytes(), options).map_err(|e| Error::StateIo {
        op: "write the event spool",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Where events go (`[events]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsConfig {
    /// The collector: spooled events are POSTed here as NDJSON.
    pub url: Url,
}

/// Sends the spool of `state_dir` to the collector in one request; a 2xx answer empties it
/// (but for events added meanwhile), anything else keeps it for the next run.
pub fn deliver(state_dir: &Path, config: &EventsConfig, http: &Http) -> Result<usize> {
    let path: PathBuf = state_dir.join(SPOOL_FILE);
    let lines = read_spool(&path)?;
    if lines.is_empty() {
        return Ok(0);
    }
    let mut body = lines.join("\n");
    body.push('\n');
    http.post(&config.url, body.into_bytes(), "application/x-ndjson")?;
    // Events spooled while the request ran stay.
    let now = read_spool(&path)?;
    let sent = lines.len().min(now.len());
    write_spool(&path, &now[sent..])?;
    Ok(lines.len())
}

/// Sends the spooled events to the collector of `config`, if any; a failure leaves them
/// spooled for the next run and never fails the command. Called after every command, and
/// before a reboot (which may end the process).
pub fn deliver_configured(config: &crate::config::Config) {
    let Some(events) = &config.events else {
        return;
    };
    let sent = Http::new(config.network.clone())
        .and_then(|http| deliver(&config.device.state_dir, events, &http));
    match sent {
        Ok(0) => {}
        Ok(n) => log::info!("{n} events sent to {}", events.url),
        Err(e) => log::warn!("events kept for the next run: {e}"),
    }
}

/// Emits [`Kind::Rebooting`] and sends the spool before the reboot command runs.
pub fn before_reboot(config: &crate::config::Config, detail: String) {
    emit(
        &config.device.state_dir,
        &FleetEvent::new(Kind::Rebooting, None, None, detail),
    );
    deliver_configured(config);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_keeps_the_newest_events_up_to_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SPOOL_FILE);
        for i in 0..SPOOL_MAX_EVENTS + 5 {
            spool(&path, &format!("{{\"n\":{i}}}")).unwrap();
        }
        let lines = read_spool(&path).unwrap();
        assert_eq!(lines.len(), SPOOL_MAX_EVENTS);
        assert_eq!(lines[0], "{\"n\":5}");
        assert_eq!(
            lines.last().unwrap(),
            &format!("{{\"n\":{}}}", SPOOL_MAX_EVENTS + 4)
        );
    }

    #[test]
    fn events_serialise_with_their_schema_and_kebab_case_kinds() {
        let e = FleetEvent::new(Kind::MarkedBad, Some(3), Some("b".into()), "x".into());
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["event"], "marked-bad");
        assert_eq!(v["version"], 3);
        let back: FleetEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
