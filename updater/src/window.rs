//! When an installed update may reboot the device (pure; no I/O): at once, inside a
//! maintenance window of local time, or never (a person or another program reboots).

use chrono::{Datelike, NaiveDateTime, NaiveTime, TimeDelta, Weekday};
use serde::Deserialize;

/// `update.reboot`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebootWhen {
    /// Leave the reboot to a person or another program (the default).
    #[default]
    Never,
    /// Reboot as soon as the update is installed.
    Now,
    /// Reboot inside `update.window`.
    Window,
}

/// Days and local hours in which a reboot may happen. A window whose end is not after its
/// start runs past midnight (`23:00`-`01:00`); its days are the days it opens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Bit `n` set: the window opens on day `n` (Monday 0).
    days: u8,
    start: NaiveTime,
    end: NaiveTime,
}

/// What to do about a reboot, now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootDecision {
    /// Nothing was installed that needs a reboot.
    NotNeeded,
    /// Reboot now.
    Reboot,
    /// Due, but the window is closed: it opens at this local time.
    Wait { opens: NaiveDateTime },
    /// Due, and left to a person or another program.
    LeftToOperator,
}

impl MaintenanceWindow {
    /// A window on `days` from `start` to `end`; no days is refused.
    pub fn new(days: &[Weekday], start: NaiveTime, end: NaiveTime) -> Result<Self, String> {
        if days.is_empty() {
            return Err("a maintenance window needs at least one day".into());
        }
        let days = days
            .iter()
            .fold(0u8, |bits, d| bits | 1 << d.num_days_from_monday());
        Ok(MaintenanceWindow { days, start, end })
    }

    fn opens_on(&self, day: Weekday) -> bool {
        self.days & (1 << day.num_days_from_monday()) != 0
    }

    fn overnight(&self) -> bool {
        self.end <= self.start
    }

    /// Whether local time `t` is inside the window.
    pub fn contains(&self, t: NaiveDateTime) -> bool {
        let time = t.time();
        let yesterday = (t - TimeDelta::days(1)).weekday();
        if self.overnight() {
            (self.opens_on(t.weekday()) && time >= self.start)
                || (self.opens_on(yesterday) && time < self.end)
        } else {
            self.opens_on(t.weekday()) && time >= self.start && time < self.end
        }
    }

    /// The next local time at or after `t` when the window opens (within a week).
    pub fn next_opening(&self, t: NaiveDateTime) -> NaiveDateTime {
        (0..=7)
            .map(|n| (t.date() + TimeDelta::days(n)).and_time(self.start))
            .find(|open| *open >= t && self.opens_on(open.weekday()))
            .expect("a window with a day opens within eight days")
    }
}

/// Whether to reboot now: `due` when a trial slot is armed and waits for a reboot.
pub fn decide(
    when: RebootWhen,
    window: Option<&MaintenanceWindow>,
    due: bool,
    now: NaiveDateTime,
) -> RebootDecision {
    match (due, when, window) {
        (false, _, _) => RebootDecision::NotNeeded,
        (true, RebootWhen::Never, _) => RebootDecision::LeftToOperator,
        (true, RebootWhen::Now, _) => RebootDecision::Reboot,
        (true, RebootWhen::Window, Some(w)) if w.contains(now) => RebootDecision::Reboot,
        (true, RebootWhen::Window, Some(w)) => RebootDecision::Wait {
            opens: w.next_opening(now),
        },
        // The configuration refuses a window policy without a window.
        (true, RebootWhen::Window, None) => RebootDecision::LeftToOperator,
    }
}

/// Parses `HH:MM` (00:00 to 23:59).
pub fn parse_time(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| format!("{text:?} is not HH:MM"))
}

/// Parses `mon`, `tue`, ... (three letters, any case).
pub fn parse_day(text: &str) -> Result<Weekday, String> {
    text.parse::<Weekday>()
        .ok()
        .filter(|_| text.len() == 3)
        .ok_or_else(|| format!("{text:?} is not a day: mon, tue, wed, thu, fri, sat or sun"))
}

#[cfg(test)]
mod tests;
