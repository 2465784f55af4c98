//! `flipside health` on a trial boot when the checks cannot tell: a check that cannot run is a
//! failed check with every effect of one (slot marked bad, recorded, reboot command run, exit
//! 13); no checks at all commit nothing unless `health.no_checks = "commit"` says so.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{code, Setup, World};
use flipside_bootloader_hooks::{BootAttrs, Slot};

fn attrs(p: u8, t: u8, s: bool) -> BootAttrs {
    BootAttrs::new(p, t, s).unwrap()
}

/// A world whose slot b runs on trial (no repository needed: `health` only judges the boot).
fn on_trial() -> World {
    let w = World::new(Setup {
        publish: vec![],
        ..Setup::default()
    });
    w.set_attrs(Slot::A, attrs(1, 0, true));
    w.set_attrs(Slot::B, attrs(2, 2, false));
    w.set_running(Slot::B, 2, common::HARDWARE);
    w
}

#[test]
fn a_check_that_cannot_run_rejects_the_trial_with_every_effect() {
    /// Case, the name the failure is reported under, how the world is broken.
    type Case = (&'static str, &'static str, fn(&World));
    let cases: [Case; 4] = [
        ("missing interpreter", "20-check", |w| {
            let p = w.health.join("20-check");
            std::fs::write(&p, "#!/nonexistent/sh\nexit 0\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }),
        ("no executable bit", "20-check", |w| {
            w.add_check("20-check", "exit 0");
            std::fs::set_permissions(
                w.health.join("20-check"),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap();
        }),
        ("dangling link", "20-check", |w| {
            std::os::unix::fs::symlink("/nonexistent/check", w.health.join("20-check")).unwrap()
        }),
        ("health.dir a plain file", "health.d", |w| {
            std::fs::remove_dir_all(&w.health).unwrap();
            std::fs::write(&w.health, "not a directory").unwrap();
        }),
    ];
    for (case, name, make) in cases {
        let w = on_trial();
        w.add_check("10-ok", "exit 0");
        make(&w);
        let run = w.run(&["health"]);
        run.expect(code::HEALTH);
        assert!(run.stderr.contains("cannot run"), "{case}: {}", run.stderr);
        assert!(
            w.rebooted.exists(),
            "{case}: the reboot command did not run"
        );
        let state = w.boot_state();
        assert_eq!(state.attrs(Slot::B), attrs(0, 0, false), "{case}");
        assert_eq!(state.boots_next().unwrap(), Slot::A, "{case}");
        let last = &w.status_json()["last"];
        assert_eq!(last["event"], "marked-bad", "{case}");
        let detail = last["detail"].as_str().unwrap();
        assert!(detail.contains(name), "{case}: {detail}");
    }
}

#[test]
fn no_checks_commit_nothing_unless_the_configuration_says_so() {
    for missing_dir in [false, true] {
        let w = on_trial();
        if missing_dir {
            std::fs::remove_dir(&w.health).unwrap();
        }
        let before = w.gpt_bytes();
        let run = w.run(&["health"]);
        run.expect(code::CONFIG);
        assert!(
            run.stderr.contains("no health checks in")
                && run.stderr.contains("health.no_checks = \"commit\""),
            "{}",
            run.stderr
        );
        assert_eq!(w.gpt_bytes(), before, "the trial was judged");
        assert!(!w.rebooted.exists());

        let text = std::fs::read_to_string(&w.config).unwrap();
        let text = text.replace(
            "dir = \"health.d\"",
            "dir = \"health.d\"\nno_checks = \"commit\"",
        );
        std::fs::write(&w.config, text).unwrap();
        let run = w.run(&["health"]);
        run.expect(code::OK);
        assert!(
            run.stdout.contains("committed (no checks configured"),
            "{}",
            run.stdout
        );
        assert_eq!(w.boot_state().attrs(Slot::B), attrs(2, 0, true));
    }
}
