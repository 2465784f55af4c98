//! Rollout waves and channels through the `flipside` binary against nginx: a device outside
//! its wave waits (and says until when), a paused rollout holds it, an opened one installs; a
//! device takes the releases of its channel only. Every wait leaves the disk as it was.

mod common;

use chrono::{SubsecRound, TimeDelta, Utc};
use common::nginx::Nginx;
use common::{code, Setup, World, MACHINE_ID, SYSTEM};
use flipside_bootloader_hooks::{BootAttrs, Slot};
use flipside_contract::rollout::{place, Rollout, Wave, FLEET};
use flipside_repository::{AddOptions, Amend};

#[test]
fn a_device_waits_for_its_wave_is_held_by_a_pause_and_installs_once_reached() {
    let mut w = World::new(Setup {
        publish: vec![(1, common::HARDWARE)],
        ..Setup::default()
    });
    let me = place(MACHINE_ID.as_bytes(), SYSTEM);
    assert!(
        me > 0 && me < FLEET - 1,
        "the test needs a place inside the fleet: {me}"
    );
    // The first wave (started an hour ago) stops just below this device; the whole fleet
    // follows in a day.
    let opens = (Utc::now() + TimeDelta::days(1)).trunc_subsecs(0);
    let schedule = Rollout {
        waves: vec![
            Wave {
                start: Utc::now() - TimeDelta::hours(1),
                share: me,
            },
            Wave {
                start: opens,
                share: FLEET,
            },
        ],
        paused_at: None,
    };
    let options = AddOptions {
        rollout: Some(schedule),
        ..AddOptions::default()
    };
    w.publish_with(2, 3 << 20, options);
    let nginx = Nginx::start(&w.repo);
    w.write_config(&[nginx.url()], 0);

    let check = w.run(&["check"]);
    check.expect(code::OK);
    let when = opens.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(
        check
            .stdout
            .contains(&format!("this device's wave opens at {when}")),
        "{}",
        check.stdout
    );
    let run = w.run(&["install"]);
    run.expect(code::OK);
    assert!(
        run.stdout
            .contains("FLIPSIDE_RESULT event=waiting version=2"),
        "{}",
        run.stdout
    );
    w.assert_b_untouched();
    assert!(
        !nginx.access_log().contains(".bundle"),
        "a waiting device fetched the bundle: {}",
        nginx.access_log()
    );

    // Paused: the share stays below this device whatever the schedule says later.
    w.amend(2, &Amend::Pause);
    let run = w.run(&["install"]);
    run.expect(code::OK);
    assert!(
        run.stdout.contains("rollout is paused before this device"),
        "{}",
        run.stdout
    );
    w.assert_b_untouched();

    // Resumed with a wave that covers the device now: it installs.
    w.amend(2, &Amend::Resume);
    let open = flipside_repository::Amend::Rollout(Some(Rollout {
        waves: vec![Wave {
            start: Utc::now() - TimeDelta::minutes(1),
            share: me + 1,
        }],
        paused_at: None,
    }));
    w.amend(2, &open);
    let run = w.run(&["install"]);
    run.expect(code::OK);
    assert!(run.stdout.contains("event=installed"), "{}", run.stdout);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
}

#[test]
fn a_device_takes_the_releases_of_its_channel_only() {
    let mut w = World::new(Setup::default());
    let beta = AddOptions {
        channels: vec!["beta".into()],
        ..AddOptions::default()
    };
    w.publish_with(3, 3 << 20, beta);
    let nginx = Nginx::start(&w.repo);

    // Stable (the default): release 2, the newest of stable.
    w.write_config(&[nginx.url()], 0);
    w.run(&["check"])
        .expect(code::OK)
        .says("update available: kiosk 2");

    // Beta: release 3, the only one in beta.
    w.write_config_with(&[format!("{:?}", nginx.url())], 0, "");
    let config = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        config.replace("[update]\n", "[update]\nchannel = \"beta\"\n"),
    )
    .unwrap();
    w.run(&["check"])
        .expect(code::OK)
        .says("update available: kiosk 3");

    // A channel nothing is published in: incompatible (8), naming the channel.
    std::fs::write(
        &w.config,
        config.replace("[update]\n", "[update]\nchannel = \"edge\"\n"),
    )
    .unwrap();
    let run = w.run(&["install"]);
    run.expect(code::INCOMPATIBLE);
    run.complains(&["in channel edge"]);
    w.assert_b_untouched();

    // Pinned to 2 in beta: 2 is not in beta.
    std::fs::write(
        &w.config,
        config.replace(
            "[update]\n",
            "[update]\nchannel = \"beta\"\npin_version = 2\n",
        ),
    )
    .unwrap();
    w.run(&["check"]).expect(code::INCOMPATIBLE);
    // Promoted to beta as well: the pinned device takes it.
    w.amend(2, &Amend::Channels(vec!["stable".into(), "beta".into()]));
    w.run(&["check"])
        .expect(code::OK)
        .says("update available: kiosk 2");
}

/// Writes the configuration with mirror `url`, `update.reboot` and a window from `from` to
/// `to` hours around the local time now.
fn reboot_policy(w: &World, url: &str, reboot: &str, window: Option<(i64, i64)>) {
    w.write_config(&[url.to_string()], 0);
    let config = std::fs::read_to_string(&w.config).unwrap();
    let config = config.replace("[update]\n", &format!("[update]\nreboot = {reboot:?}\n"));
    let hhmm = |hours: i64| {
        (chrono::Local::now() + TimeDelta::hours(hours))
            .format("%H:%M")
            .to_string()
    };
    let window = window.map_or(String::new(), |(from, to)| {
        format!(
            "\n[update.window]\nstart = {:?}\nend = {:?}\n",
            hhmm(from),
            hhmm(to)
        )
    });
    std::fs::write(&w.config, config + &window).unwrap();
}

/// `flipside update`, what the timer runs: installs, then reboots only inside the maintenance
/// window; a due reboot outside it waits, and the next run installs nothing more.
#[test]
fn update_installs_then_reboots_only_inside_the_maintenance_window() {
    let w = World::new(Setup::default());
    let nginx = Nginx::start(&w.repo);
    reboot_policy(&w, &nginx.url(), "window", Some((2, 3)));
    let run = w.run(&["update"]);
    run.expect(code::OK);
    assert!(run.stdout.contains("event=installed"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("reboot due: the maintenance window opens at"),
        "{}",
        run.stdout
    );
    assert!(!w.rebooted.exists(), "rebooted outside the window");
    assert_eq!(
        w.boot_state().attrs(Slot::B),
        BootAttrs::new(2, 3, false).unwrap()
    );
    let fetched = nginx.access_log().matches(".bundle").count();

    // The next run: the armed slot still waits; nothing is fetched again.
    let run = w.run(&["update"]);
    run.expect(code::OK);
    assert!(
        run.stdout.contains("event=reboot-waiting"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("event=installed"), "{}", run.stdout);
    assert_eq!(nginx.access_log().matches(".bundle").count(), fetched);
    assert!(!w.rebooted.exists());

    // Inside the window: the reboot command runs.
    reboot_policy(&w, &nginx.url(), "window", Some((-1, 1)));
    let run = w.run(&["update"]);
    run.expect(code::OK);
    assert!(run.stdout.contains("event=rebooting"), "{}", run.stdout);
    assert!(w.rebooted.exists(), "the reboot command did not run");

    // Booted into the trial: the health check decides; update does nothing.
    std::fs::remove_file(&w.rebooted).unwrap();
    assert_eq!(w.reboot(|s| if s == Slot::B { 2 } else { 1 }), Slot::B);
    let run = w.run(&["update"]);
    run.expect(code::OK);
    assert!(
        run.stdout.contains("the health check decides first"),
        "{}",
        run.stdout
    );
    assert!(!w.rebooted.exists());
}

#[test]
fn update_reboots_at_once_or_never_as_configured() {
    for (policy, reboots) in [("now", true), ("never", false)] {
        let w = World::new(Setup::default());
        let nginx = Nginx::start(&w.repo);
        reboot_policy(&w, &nginx.url(), policy, None);
        let run = w.run(&["update"]);
        run.expect(code::OK);
        assert!(
            run.stdout.contains("event=installed"),
            "{policy}: {}",
            run.stdout
        );
        assert_eq!(w.rebooted.exists(), reboots, "{policy}: {}", run.stdout);
        if !reboots {
            assert!(run.stdout.contains("left to you"), "{}", run.stdout);
        }
    }
    // A window policy without a window is a configuration error naming the field.
    let w = World::new(Setup::default());
    reboot_policy(&w, "http://127.0.0.1:9/", "window", None);
    let run = w.run(&["update"]);
    run.expect(code::CONFIG);
    run.complains(&["update.window"]);
}

/// The `event` fields of an NDJSON body, each line checked to carry schema 1.
fn kinds(body: &str) -> Vec<String> {
    body.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["schema"], 1, "{line}");
            v["event"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Every step is a JSON line on stdout and in a spool; the spool goes to the collector after
/// each command, stays while the collector refuses it, and is sent whole once it accepts; a
/// failed trial's events reach it before the reboot command runs.
#[test]
fn events_reach_the_collector_and_wait_in_the_spool_while_it_is_down() {
    let w = World::new(Setup::default());
    let nginx = Nginx::start(&w.repo);
    let collector = common::collector::Collector::start();
    let with_events = |w: &World| {
        w.write_config_with(&[format!("{:?}", nginx.url())], 0, "");
        let config = std::fs::read_to_string(&w.config).unwrap();
        let config = format!("{config}\n[events]\nurl = {:?}\n", collector.url());
        std::fs::write(&w.config, config).unwrap();
    };
    with_events(&w);

    collector.answer(503);
    let run = w.run(&["install"]);
    run.expect(code::OK);
    let printed: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FLIPSIDE_EVENT "))
        .collect();
    assert_eq!(kinds(&printed.join("\n")), ["download", "installed"]);
    run.complains(&["events kept for the next run"]);
    let spool = std::fs::read_to_string(w.state.join("events.jsonl")).unwrap();
    assert_eq!(kinds(&spool), ["download", "installed"]);

    // Booted into the trial; the collector is back: the health check's commit and the
    // earlier events go out together, and the spool is empty.
    collector.answer(200);
    w.add_check("ok", "exit 0");
    assert_eq!(w.reboot(|s| if s == Slot::B { 2 } else { 1 }), Slot::B);
    w.run(&["health"]).expect(code::OK);
    let requests = collector.requests();
    let last = requests.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("POST", "/events")
    );
    assert_eq!(last.content_type, "application/x-ndjson");
    assert_eq!(kinds(&last.body), ["download", "installed", "committed"]);
    let spool = std::fs::read_to_string(w.state.join("events.jsonl")).unwrap();
    assert!(spool.is_empty(), "{spool}");
    assert!(!last.body.contains(common::MACHINE_ID));
}

#[test]
fn a_failed_trial_reports_marked_bad_and_rebooting_before_the_reboot() {
    let w = World::new(Setup::default());
    let nginx = Nginx::start(&w.repo);
    let collector = common::collector::Collector::start();
    w.write_config(&[nginx.url()], 0);
    let config = std::fs::read_to_string(&w.config).unwrap();
    // The reboot command fails if the collector has not yet been told.
    let reboot = format!(
        "reboot_command = [\"sh\", \"-c\", \"test -s {}/events.jsonl && exit 1; touch {}\"]",
        w.state.display(),
        w.rebooted.display()
    );
    let config = config
        .lines()
        .map(|l| {
            if l.starts_with("reboot_command") {
                reboot.clone()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        &w.config,
        format!("{config}\n[events]\nurl = {:?}\n", collector.url()),
    )
    .unwrap();
    w.run(&["install"]).expect(code::OK);
    w.add_check("fails", "exit 1");
    assert_eq!(w.reboot(|s| if s == Slot::B { 2 } else { 1 }), Slot::B);
    w.run(&["health"]).expect(code::HEALTH);
    assert!(
        w.rebooted.exists(),
        "the reboot command did not run or found events unsent"
    );
    let sent: Vec<String> = collector
        .requests()
        .iter()
        .flat_map(|r| kinds(&r.body))
        .collect();
    assert_eq!(sent, ["download", "installed", "marked-bad", "rebooting"]);
}

#[test]
fn a_collector_url_with_credentials_is_refused() {
    let w = World::new(Setup::default());
    w.write_config(&["http://127.0.0.1:9/".to_string()], 0);
    let config = std::fs::read_to_string(&w.config).unwrap();
    let config =
        format!("{config}\n[events]\nurl = \"https://fleet:secret@collector.example/e\"\n");
    std::fs::write(&w.config, config).unwrap();
    let run = w.run(&["check"]);
    run.expect(code::CONFIG);
    run.complains(&["events.url", "credentials"]);
    assert!(!run.stderr.contains("secret"), "{}", run.stderr);
}
