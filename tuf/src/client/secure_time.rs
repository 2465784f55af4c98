//! The secure-time rule: expiry is checked against `max(system clock, last trusted time)`, so
//! a clock reset to the past (a dead RTC battery, a spoofed NTP answer) cannot make expired
//! metadata valid again.
//!
//! The last trusted time is the reference time of the last refresh that succeeded, a reading
//! of the device's own clock, never a time taken from the network. Recording it only on
//! success bounds it by the expiry of metadata that verified at that moment: a clock that once
//! jumped far into the future is never recorded, so it cannot lock the device out of updates.
//! (The image builder may also seed it with its build time: see
//! [`crate::client::MetadataStore::raise_trusted_time`].)

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The fixed update start time of 5.1: the system clock, but never before the last trusted
/// time.
pub fn reference_time(now: DateTime<Utc>, last_trusted: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match last_trusted {
        Some(last) if last > now => last,
        _ => now,
    }
}

/// Content of the store's `last-trusted-time` file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeFile {
    /// RFC 3339, full precision (so that reading back gives the exact value written).
    last_trusted_time: DateTime<Utc>,
}

pub(crate) fn encode(time: DateTime<Utc>) -> Vec<u8> {
    let text = format!(
        "{{\"last_trusted_time\": \"{}\"}}\n",
        time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    text.into_bytes()
}

pub(crate) fn decode(bytes: &[u8]) -> Result<DateTime<Utc>, String> {
    serde_json::from_slice::<TimeFile>(bytes)
        .map(|f| f.last_trusted_time)
        .map_err(|e| format!("not a time file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn reference_time_never_goes_back() {
        let (early, late) = (t("2025-01-01T00:00:00Z"), t("2025-06-01T00:00:00Z"));
        assert_eq!(reference_time(late, None), late);
        assert_eq!(reference_time(late, Some(early)), late);
        assert_eq!(reference_time(early, Some(late)), late, "clock set back");
        assert_eq!(reference_time(late, Some(late)), late);
    }

    #[test]
    fn time_file_round_trips_exactly() {
        for s in [
            "2025-01-01T00:00:00Z",
            "2025-01-01T00:00:00.5Z",
            "2030-12-31T23:59:59.123456789Z",
        ] {
            assert_eq!(decode(&encode(t(s))).unwrap(), t(s));
        }
        assert!(decode(b"{}").is_err());
        assert!(decode(b"{\"last_trusted_time\": \"yesterday\"}").is_err());
        assert!(decode(b"{\"last_trusted_time\": \"2025-01-01T00:00:00Z\", \"x\": 1}").is_err());
    }
}
