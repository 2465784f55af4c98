use super::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn schedule() -> Rollout {
    Rollout {
        waves: vec![
            Wave {
                start: at("2026-01-01T00:00:00Z"),
                share: 100,
            },
            Wave {
                start: at("2026-01-02T00:00:00Z"),
                share: 1_000,
            },
            Wave {
                start: at("2026-01-04T00:00:00Z"),
                share: FLEET,
            },
        ],
        paused_at: None,
    }
}

#[test]
fn the_share_grows_wave_by_wave() {
    let r = schedule();
    assert_eq!(r.share_at(at("2025-12-31T23:59:59Z")), 0);
    assert_eq!(r.share_at(at("2026-01-01T00:00:00Z")), 100);
    assert_eq!(r.share_at(at("2026-01-03T00:00:00Z")), 1_000);
    assert_eq!(r.share_at(at("2030-01-01T00:00:00Z")), FLEET);
}

/// Every place against every instant around the wave starts: open exactly when the place is
/// below the share; otherwise the start of the first wave covering it.
#[test]
fn admission_of_every_place_at_every_instant() {
    let r = schedule();
    let instants = [
        "2025-12-31T00:00:00Z",
        "2026-01-01T00:00:00Z",
        "2026-01-01T12:00:00Z",
        "2026-01-02T00:00:00Z",
        "2026-01-03T23:59:59Z",
        "2026-01-04T00:00:00Z",
    ];
    for now in instants.map(at) {
        let share = r.share_at(now);
        for place in 0..FLEET {
            let got = r.admission(place, now);
            if place < share {
                assert_eq!(got, Admission::Open, "{place} at {now}");
            } else {
                let opens = r.waves.iter().find(|w| place < w.share).unwrap().start;
                assert!(opens > now, "{place} at {now}");
                assert_eq!(got, Admission::OpensAt(opens), "{place} at {now}");
            }
        }
    }
}

#[test]
fn a_paused_rollout_stops_growing_and_a_resumed_one_goes_on() {
    let mut r = schedule();
    r.paused_at = Some(at("2026-01-02T12:00:00Z"));
    let later = at("2026-02-01T00:00:00Z");
    assert_eq!(r.share_at(later), 1_000);
    assert_eq!(r.admission(999, later), Admission::Open);
    assert_eq!(r.admission(1_000, later), Admission::Paused);
    // Paused before it started: nobody.
    r.paused_at = Some(at("2025-12-01T00:00:00Z"));
    assert_eq!(r.admission(0, later), Admission::Paused);
    r.paused_at = None;
    assert_eq!(r.admission(9_999, later), Admission::Open);
}

#[test]
fn a_schedule_below_the_whole_fleet_never_reaches_the_rest() {
    let r = Rollout {
        waves: vec![Wave {
            start: at("2026-01-01T00:00:00Z"),
            share: 500,
        }],
        paused_at: None,
    };
    assert_eq!(
        r.admission(499, at("2026-01-02T00:00:00Z")),
        Admission::Open
    );
    assert_eq!(
        r.admission(500, at("2026-01-02T00:00:00Z")),
        Admission::Never
    );
}

#[test]
fn schedules_out_of_order_or_out_of_range_are_refused() {
    let w = |start: &str, share| Wave {
        start: at(start),
        share,
    };
    let check = |waves: Vec<Wave>| {
        Rollout {
            waves,
            paused_at: None,
        }
        .validate()
    };
    assert_eq!(check(vec![]), Err(RolloutError::NoWaves));
    assert!(schedule().validate().is_ok());
    for share in [0, FLEET + 1] {
        assert_eq!(
            check(vec![w("2026-01-01T00:00:00Z", share)]),
            Err(RolloutError::Share { index: 0, share })
        );
    }
    let later_smaller = vec![
        w("2026-01-01T00:00:00Z", 500),
        w("2026-01-02T00:00:00Z", 400),
    ];
    assert_eq!(check(later_smaller), Err(RolloutError::Order { index: 1 }));
    let same_start = vec![
        w("2026-01-01T00:00:00Z", 500),
        w("2026-01-01T00:00:00Z", 900),
    ];
    assert_eq!(check(same_start), Err(RolloutError::Order { index: 1 }));
}

/// Places are stable, differ between systems, and spread over the fleet: of 10,000 seeds,
/// each tenth of the fleet holds 1,000 +- 15%.
#[test]
fn places_are_stable_and_spread_evenly() {
    assert_eq!(place(b"abc", "kiosk"), place(b"abc", "kiosk"));
    assert_ne!(place(b"abc", "kiosk"), place(b"abc", "signage"));
    let mut tenths = [0u32; 10];
    for i in 0..10_000u32 {
        let seed = format!("{i:032x}");
        let p = place(seed.as_bytes(), "kiosk");
        assert!(p < FLEET);
        tenths[(p / 1_000) as usize] += 1;
    }
    for (i, n) in tenths.iter().enumerate() {
        assert!((850..=1150).contains(n), "tenth {i}: {n}");
    }
}

#[test]
fn channels_default_to_stable() {
    assert!(in_channel(&[], "stable"));
    assert!(!in_channel(&[], "beta"));
    let both = ["beta".to_string(), "stable".to_string()];
    assert!(in_channel(&both, "beta") && in_channel(&both, "stable"));
    assert!(!in_channel(&["beta".to_string()], "stable"));
}
