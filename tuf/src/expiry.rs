//! Expiry: every role expires, checked against a clock value the caller passes in.
//!
//! Times are written as `YYYY-MM-DDTHH:MM:SSZ` (no fractional seconds), the only form
//! python-tuf reads; any RFC 3339 time is accepted when reading.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use crate::{Error, Result, Role};

/// True when metadata with this expiry time is no longer valid at `now` (the specification's
/// "expiration timestamp MUST be higher than the update start time").
pub fn is_expired(expires: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now >= expires
}

/// Refuses expired metadata of `role`.
pub fn check(role: Role, expires: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
    if is_expired(expires, now) {
        Err(Error::Expired { role, expires, now })
    } else {
        Ok(())
    }
}

/// The expiry time `valid_for` after `now`, in whole seconds; `None` if it is out of range.
pub fn expires_after(now: DateTime<Utc>, valid_for: TimeDelta) -> Option<DateTime<Utc>> {
    now.trunc_subsecs(0).checked_add_signed(valid_for)
}

/// Serde format of `expires` fields.
pub(crate) mod format {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(de)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| D::Error::custom(format!("expires {text:?} is not an RFC 3339 time: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn boundaries() {
        let expires = t("2030-01-01T00:00:00Z");
        assert!(!is_expired(expires, t("2029-12-31T23:59:59Z")));
        assert!(!is_expired(expires, t("2029-12-31T23:59:59.999999999Z")));
        assert!(
            is_expired(expires, t("2030-01-01T00:00:00Z")),
            "equal is expired"
        );
        assert!(is_expired(expires, t("2030-01-01T00:00:00.000000001Z")));
        assert!(is_expired(expires, t("2031-01-01T00:00:00Z")));
        assert!(check(Role::Targets, expires, t("2029-01-01T00:00:00Z")).is_ok());
        let err = check(Role::Targets, expires, t("2030-01-01T00:00:00Z")).unwrap_err();
        assert!(matches!(
            err,
            Error::Expired {
                role: Role::Targets,
                ..
            }
        ));
    }

    #[test]
    fn expires_after_drops_fractional_seconds() {
        let now = t("2025-03-04T05:06:07.89Z");
        let got = expires_after(now, TimeDelta::days(1)).unwrap();
        assert_eq!(got, t("2025-03-05T05:06:07Z"));
        assert!(expires_after(now, TimeDelta::MAX).is_none());
    }

    #[test]
    fn written_without_fractions_read_with_offsets() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct E {
            #[serde(with = "format")]
            expires: DateTime<Utc>,
        }
        let e = E {
            expires: t("2030-01-01T00:00:00Z"),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"expires":"2030-01-01T00:00:00Z"}"#
        );
        let e: E = serde_json::from_str(r#"{"expires":"2030-01-01T02:00:00+02:00"}"#).unwrap();
        assert_eq!(e.expires, t("2030-01-01T00:00:00Z"));
        assert!(serde_json::from_str::<E>(r#"{"expires":"next tuesday"}"#).is_err());
    }
}
