use std::os::unix::fs::{symlink, PermissionsExt};

use super::*;

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn umask() -> u32 {
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.bits()
}

#[test]
fn writes_replaces_and_leaves_nothing_behind() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("last.json");
    write(&path, b"one").unwrap();
    write(&path, b"two").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    assert_eq!(names(t.path()), ["last.json"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644 & !umask());
    write_with(&path, b"three", Options::mode(0o600)).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn temporary_names_are_unpredictable_and_hidden() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("slot-a.index");
    let a = AtomicFile::create(&path).unwrap();
    let b = AtomicFile::create(&path).unwrap();
    assert_ne!(a.temp_path(), b.temp_path());
    for f in [&a, &b] {
        let name = f
            .temp_path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(TEMP_PREFIX) && name.ends_with("-slot-a.index"),
            "{name}"
        );
        assert_eq!(f.temp_path().parent(), Some(t.path()));
    }
}

#[test]
fn a_planted_symlink_at_the_temporary_name_is_never_followed() {
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let path = t.path().join("last.json");
    let planted = t.path().join(format!("{TEMP_PREFIX}{:016x}-last.json", 1));
    symlink(&victim, &planted).unwrap();
    // A dangling link too: O_CREAT alone would create its target.
    let dangling_target = t.path().join("created-through-link");
    let dangling = t.path().join(format!("{TEMP_PREFIX}{:016x}-last.json", 2));
    symlink(&dangling_target, &dangling).unwrap();

    let mut f = AtomicFile::create_named(&path, Options::default(), [Ok(1), Ok(2), Ok(3)]).unwrap();
    assert_eq!(
        f.temp_path().file_name().unwrap().to_string_lossy(),
        format!("{TEMP_PREFIX}{:016x}-last.json", 3)
    );
    f.write_all(b"new").unwrap();
    f.commit().unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!dangling_target.exists());
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
}

#[test]
fn names_taken_every_time_is_a_create_error_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let path = t.path().join("last.json");
    std::fs::write(&path, b"old").unwrap();
    symlink(
        &victim,
        t.path().join(format!("{TEMP_PREFIX}{:016x}-last.json", 7)),
    )
    .unwrap();
    let e = AtomicFile::create_named(&path, Options::default(), std::iter::repeat_with(|| Ok(7)))
        .unwrap_err();
    assert_eq!(e.step, Step::Create);
    assert_eq!(e.path, path);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
}

#[test]
fn a_symlink_at_the_final_name_is_replaced_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let path = t.path().join("last.json");
    symlink(&victim, &path).unwrap();
    write(&path, b"new").unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
}

#[test]
fn an_abandoned_write_leaves_the_old_file_and_no_temporary() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("install.json");
    std::fs::write(&path, b"old").unwrap();
    {
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"half of the new con").unwrap();
        // The caller fails here: the file is dropped, not committed.
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    assert_eq!(names(t.path()), ["install.json"]);
}

#[test]
fn a_failed_rename_leaves_the_old_entry_and_no_temporary() {
    let t = tempfile::tempdir().unwrap();
    // A non-empty directory cannot be renamed over.
    let path = t.path().join("metadata");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("root.json"), b"old").unwrap();
    let e = write(&path, b"new").unwrap_err();
    assert_eq!(e.step, Step::Rename);
    assert_eq!(std::fs::read(path.join("root.json")).unwrap(), b"old");
    assert_eq!(names(t.path()), ["metadata"]);
    let io: io::Error = e.into();
    assert!(io.to_string().contains("rename into place"), "{io}");
}

#[test]
fn a_missing_directory_is_a_create_error() {
    let t = tempfile::tempdir().unwrap();
    let e = write(&t.path().join("no/such/file"), b"x").unwrap_err();
    assert_eq!(e.step, Step::Create);
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotFound);
}
