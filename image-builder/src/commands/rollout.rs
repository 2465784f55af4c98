//! `flipside-build repo rollout` and `repo channels`: who may take a published release, and
//! when. The schedule text is parsed here; the repository re-signs the release's targets.

use chrono::{DateTime, TimeDelta, Utc};
use flipside_contract::rollout::{Rollout, Wave, FLEET};
use flipside_repository::Amend;

use super::repo::{Dirs, ReleaseRef};

pub const ROLLOUT_EXAMPLE: &str = "\
Examples:
  flipside-build repo rollout --repo ./repo --keys ./keys kiosk 8 --waves '1%@now,10%@+1d,100%@+3d'
  flipside-build repo rollout --repo ./repo --keys ./keys kiosk 8 --pause
  flipside-build repo rollout --repo ./repo --keys ./keys kiosk 8 --resume
  flipside-build repo rollout --repo ./repo --keys ./keys kiosk 8 --everyone

A wave is SHARE%@WHEN: from WHEN on, that share of the fleet may take the release. WHEN is now,
+N followed by m, h or d from now, or an RFC 3339 time. Each device's place in the fleet comes
from its machine id and never leaves it. --pause stops the share growing (devices the rollout
reached keep the release); --resume lets it go on along the schedule; to abort, withdraw the
release (`repo withdraw`). The same waves can be given to `repo add --rollout`.";

pub const CHANNELS_EXAMPLE: &str = "\
Examples:
  flipside-build repo add --repo ./repo --keys ./keys out/v9 --channel beta
  flipside-build repo channels --repo ./repo --keys ./keys kiosk 9 beta stable   # promote

Offers the release in exactly these channels; devices take releases of the channel of their
update.channel (default stable). A release published without a channel is in stable.";

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("change").required(true).args(["waves", "pause", "resume", "everyone"])))]
pub struct RolloutArgs {
    #[command(flatten)]
    pub dirs: Dirs,
    #[command(flatten)]
    pub release: ReleaseRef,
    /// The new schedule, e.g. '1%@now,10%@+1d,100%@+3d'.
    #[arg(long, value_name = "WAVES")]
    pub waves: Option<String>,
    /// Stop the rollout where it is.
    #[arg(long)]
    pub pause: bool,
    /// Let a paused rollout go on.
    #[arg(long)]
    pub resume: bool,
    /// Drop the schedule: every device may take the release now.
    #[arg(long)]
    pub everyone: bool,
}

#[derive(Debug, clap::Args)]
pub struct ChannelsArgs {
    #[command(flatten)]
    pub dirs: Dirs,
    #[command(flatten)]
    pub release: ReleaseRef,
    /// The channels to offer it in (at least one).
    #[arg(value_name = "CHANNEL", required = true)]
    pub channels: Vec<String>,
}

impl RolloutArgs {
    /// The change asked for, with relative times read from `now`.
    pub fn change(&self, now: DateTime<Utc>) -> Result<Amend, String> {
        Ok(match &self.waves {
            Some(text) => Amend::Rollout(Some(parse_waves(text, now)?)),
            None if self.pause => Amend::Pause,
            None if self.resume => Amend::Resume,
            None => Amend::Rollout(None),
        })
    }
}

/// Parses `SHARE%@WHEN,...` into a schedule checked by [`Rollout::validate`] (pure).
pub fn parse_waves(text: &str, now: DateTime<Utc>) -> Result<Rollout, String> {
    let waves = text
        .split(',')
        .map(|wave| parse_wave(wave.trim(), now))
        .collect::<Result<Vec<_>, _>>()?;
    let rollout = Rollout {
        waves,
        paused_at: None,
    };
    rollout.validate().map_err(|e| format!("{text:?}: {e}"))?;
    Ok(rollout)
}

fn parse_wave(text: &str, now: DateTime<Utc>) -> Result<Wave, String> {
    let bad = |why: &str| format!("wave {text:?}: {why}; expected SHARE%@WHEN, e.g. 10%@+1d");
    let (share, when) = text.split_once('@').ok_or_else(|| bad("no @"))?;
    let percent = share
        .strip_suffix('%')
        .ok_or_else(|| bad("the share ends with %"))?;
    let share = parse_basis_points(percent).ok_or_else(|| bad("the share is 0.01 to 100"))?;
    let start =
        parse_when(when, now).ok_or_else(|| bad("WHEN is now, +N(m|h|d) or an RFC 3339 time"))?;
    Ok(Wave { start, share })
}

/// `12.5` -> 1250 basis points; at most two decimals, 0.01 to 100.
fn parse_basis_points(percent: &str) -> Option<u32> {
    let (whole, frac) = percent.split_once('.').unwrap_or((percent, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let frac: u32 = format!("{frac:0<2}").parse().ok()?;
    let bp = whole.checked_mul(100)?.checked_add(frac)?;
    (1..=FLEET).contains(&bp).then_some(bp)
}

fn parse_when(when: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if when == "now" {
        return Some(now);
    }
    if let Some(rel) = when.strip_prefix('+') {
        let (n, unit) = rel.split_at(rel.len().checked_sub(1)?);
        let n: i64 = n.parse().ok()?;
        let delta = match unit {
            "m" => TimeDelta::try_minutes(n)?,
            "h" => TimeDelta::try_hours(n)?,
            "d" => TimeDelta::try_days(n)?,
            _ => return None,
        };
        return now.checked_add_signed(delta);
    }
    DateTime::parse_from_rfc3339(when)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn waves_parse_with_relative_and_absolute_times() {
        let r = parse_waves("0.5%@now, 10%@+36h,100%@2026-12-04T00:00:00+01:00", now()).unwrap();
        let starts: Vec<String> = r.waves.iter().map(|w| w.start.to_rfc3339()).collect();
        assert_eq!(
            starts,
            [
                "2026-12-01T00:00:00+00:00",
                "2026-12-02T12:00:00+00:00",
                "2026-12-03T23:00:00+00:00"
            ]
        );
        let shares: Vec<u32> = r.waves.iter().map(|w| w.share).collect();
        assert_eq!(shares, [50, 1_000, 10_000]);
    }

    #[test]
    fn bad_waves_are_refused_naming_the_wave() {
        for (text, why) in [
            ("10@now", "ends with %"),
            ("10%now", "no @"),
            ("0%@now", "0.01 to 100"),
            ("100.5%@now", "0.01 to 100"),
            ("1.234%@now", "0.01 to 100"),
            ("-1%@now", "0.01 to 100"),
            ("10%@+3w", "WHEN"),
            ("10%@tomorrow", "WHEN"),
            ("10%@+1d,5%@+2d", "larger share"),
            ("10%@+2d,50%@+1d", "start after"),
        ] {
            let err = parse_waves(text, now()).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
