use super::*;
use chrono::NaiveDate;

fn t(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
}

fn window(days: &[Weekday], start: &str, end: &str) -> MaintenanceWindow {
    MaintenanceWindow::new(days, parse_time(start).unwrap(), parse_time(end).unwrap()).unwrap()
}

/// 2026-12-07 is a Monday.
const WEEKDAYS: [Weekday; 5] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
];

/// Every minute of a fortnight against a reference computed the slow way.
#[test]
fn contains_agrees_with_a_minute_by_minute_reference() {
    let windows = [
        window(&WEEKDAYS, "02:00", "04:00"),
        window(&[Weekday::Sat], "23:00", "01:30"),
        window(&[Weekday::Sun, Weekday::Wed], "00:00", "00:00"),
    ];
    for w in windows {
        let start = NaiveDate::from_ymd_opt(2026, 12, 7)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        for minute in 0..(14 * 24 * 60) {
            let now = start + TimeDelta::minutes(minute);
            // Reference: the window opened on `now`'s day or the day before, and `now` lies
            // in [opening, opening + length).
            let length = {
                let l = w.end.signed_duration_since(w.start);
                if l <= TimeDelta::zero() {
                    l + TimeDelta::days(1)
                } else {
                    l
                }
            };
            let expected = [now.date(), now.date() - TimeDelta::days(1)]
                .into_iter()
                .filter(|d| w.opens_on(d.weekday()))
                .map(|d| d.and_time(w.start))
                .any(|open| now >= open && now < open + length);
            assert_eq!(w.contains(now), expected, "{w:?} at {now}");
            let next = w.next_opening(now);
            assert!(
                next >= now && w.contains(next),
                "{w:?}: next {next} from {now}"
            );
            assert!(
                next - now < TimeDelta::days(7),
                "{w:?}: next {next} from {now}"
            );
        }
    }
}

#[test]
fn an_overnight_window_belongs_to_the_day_it_opens() {
    let w = window(&[Weekday::Sat], "23:00", "01:00");
    assert!(w.contains(t("2026-12-12 23:30"))); // Saturday
    assert!(w.contains(t("2026-12-13 00:59"))); // Sunday morning, opened Saturday
    assert!(!w.contains(t("2026-12-13 23:30"))); // Sunday night
    assert!(!w.contains(t("2026-12-12 00:30"))); // Saturday morning, Friday did not open
    assert_eq!(w.next_opening(t("2026-12-13 02:00")), t("2026-12-19 23:00"));
}

#[test]
fn decisions_for_every_policy() {
    let w = window(&WEEKDAYS, "02:00", "04:00");
    let inside = t("2026-12-08 03:00");
    let outside = t("2026-12-08 12:00");
    use RebootDecision::*;
    for when in [RebootWhen::Never, RebootWhen::Now, RebootWhen::Window] {
        assert_eq!(decide(when, Some(&w), false, inside), NotNeeded);
    }
    assert_eq!(
        decide(RebootWhen::Never, Some(&w), true, inside),
        LeftToOperator
    );
    assert_eq!(decide(RebootWhen::Now, Some(&w), true, outside), Reboot);
    assert_eq!(decide(RebootWhen::Window, Some(&w), true, inside), Reboot);
    assert_eq!(
        decide(RebootWhen::Window, Some(&w), true, outside),
        Wait {
            opens: t("2026-12-09 02:00")
        }
    );
    // Friday after the window: Monday's.
    assert_eq!(
        decide(RebootWhen::Window, Some(&w), true, t("2026-12-11 05:00")),
        Wait {
            opens: t("2026-12-14 02:00")
        }
    );
}

#[test]
fn days_and_times_parse_strictly() {
    assert_eq!(parse_day("mon"), Ok(Weekday::Mon));
    assert_eq!(parse_day("SUN"), Ok(Weekday::Sun));
    for bad in ["monday", "m", "xyz", ""] {
        assert!(parse_day(bad).is_err(), "{bad}");
    }
    assert!(parse_time("02:30").is_ok());
    for bad in ["24:00", "2", "02:60", "02:30:00"] {
        assert!(parse_time(bad).is_err(), "{bad}");
    }
    assert!(MaintenanceWindow::new(
        &[],
        parse_time("01:00").unwrap(),
        parse_time("02:00").unwrap()
    )
    .is_err());
}
