//! The last check before publishing: the publisher's clock is not behind the last publish, and
//! every role a device will fetch stays valid for a while (pure; no I/O).
//!
//! The publisher's clock is the only clock an operation has. When it runs behind, every renewed
//! role gets an expiry that is already in the past for devices, which then refuse the whole
//! repository (exit 6 on every device). A lower bound of the true time is the time of the last
//! publish, recorded in the repository ([`layout::PUBLISHED_FILE`](crate::layout::PUBLISHED_FILE)).

use chrono::{DateTime, TimeDelta, Utc};
use flipside_tuf::Role;
use serde::{Deserialize, Serialize};

use crate::state::Trusted;
use crate::Error;

/// How long every role of a state about to be published must stay valid at least: a role that
/// expires sooner would make devices fail shortly after publishing. Below the shortest expiry
/// period (1 day), so that a freshly renewed role always passes.
pub const SAFETY_MARGIN: TimeDelta = TimeDelta::hours(1);

/// How far the clock may be behind the last publish before it is refused: two publishers'
/// clocks a little apart are normal, hours apart are not.
pub const CLOCK_TOLERANCE: TimeDelta = TimeDelta::minutes(5);

/// The record of the last publish, kept beside the metadata (never served as TUF metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRecord {
    /// The publisher's clock when the last state was published.
    pub published_at: DateTime<Utc>,
}

/// Refuses to publish a state whose roles expire at `expiries` when `now` is more than
/// [`CLOCK_TOLERANCE`] behind the last publish ([`Error::ClockBehind`]), or when a role expires
/// before `now + SAFETY_MARGIN` ([`Error::ExpiresTooSoon`]).
pub fn check(
    last: Option<PublishRecord>,
    expiries: &[(Role, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if let Some(last) = last {
        if now + CLOCK_TOLERANCE < last.published_at {
            return Err(Error::ClockBehind {
                published_at: last.published_at,
                now,
            });
        }
    }
    for &(role, expires) in expiries {
        if expires < now + SAFETY_MARGIN {
            return Err(Error::ExpiresTooSoon { role, expires, now });
        }
    }
    Ok(())
}

/// The expiry of each role of a verified state.
pub(crate) fn expiries(state: &Trusted) -> [(Role, DateTime<Utc>); 4] {
    [
        (Role::Root, state.root().signed.expires),
        (Role::Targets, state.targets.signed.expires),
        (Role::Snapshot, state.snapshot.signed.expires),
        (Role::Timestamp, state.timestamp.signed.expires),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn roles(expires: DateTime<Utc>) -> Vec<(Role, DateTime<Utc>)> {
        [Role::Root, Role::Targets, Role::Snapshot, Role::Timestamp]
            .into_iter()
            .map(|r| (r, expires))
            .collect()
    }

    fn record(s: &str) -> Option<PublishRecord> {
        Some(PublishRecord {
            published_at: at(s),
        })
    }

    #[test]
    fn a_state_valid_past_the_margin_with_the_clock_after_the_last_publish_passes() {
        let now = at("2025-01-02T00:00:00Z");
        let valid = roles(now + TimeDelta::days(1));
        assert!(check(None, &valid, now).is_ok());
        assert!(check(record("2025-01-01T00:00:00Z"), &valid, now).is_ok());
        // Within the tolerance: another publisher's clock a little ahead.
        assert!(check(record("2025-01-02T00:04:59Z"), &valid, now).is_ok());
        // Exactly the margin left is enough.
        assert!(check(None, &roles(now + SAFETY_MARGIN), now).is_ok());
    }

    #[test]
    fn a_clock_behind_the_last_publish_is_refused_whatever_the_expiries() {
        let now = at("2025-01-02T00:00:00Z");
        let err = check(
            record("2025-01-05T00:00:00Z"),
            &roles(now + TimeDelta::days(7)),
            now,
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::ClockBehind { published_at, now: n }
                if published_at == at("2025-01-05T00:00:00Z") && n == now),
            "{err:?}"
        );
        assert!(err.to_string().contains("set the clock right"), "{err}");
        let err = check(record("2025-01-02T00:05:01Z"), &roles(now), now).unwrap_err();
        assert!(matches!(err, Error::ClockBehind { .. }), "{err:?}");
    }

    #[test]
    fn each_role_expiring_within_the_margin_is_refused_and_named() {
        let now = at("2025-01-02T00:00:00Z");
        for i in 0..4 {
            let mut expiries = roles(now + TimeDelta::days(30));
            expiries[i].1 = now + SAFETY_MARGIN - TimeDelta::seconds(1);
            let err = check(None, &expiries, now).unwrap_err();
            match err {
                Error::ExpiresTooSoon { role, expires, .. } => {
                    assert_eq!(role, expiries[i].0);
                    assert_eq!(expires, expiries[i].1);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
