//! What to upload, in which order, and what to remove: a pure function of the local files and
//! the remote listing (no I/O).
//!
//! The order keeps every device safe at every instant. A device reads `timestamp.json`, then
//! the snapshot it names, then the targets metadata the snapshot names, then target files, all
//! but the timestamp by versioned or content-addressed names. So everything a new timestamp
//! points to goes up before it: targets, delegated and targets metadata, snapshot, roots (the
//! order of a local publish), and `timestamp.json` last. Until that last object lands, devices
//! see the previous repository whole; a failed upload changes nothing they can see and a re-run
//! finishes it. Removals come after the timestamp, so nothing a device may still fetch is gone.

use std::collections::BTreeMap;

use flipside_repository::layout::{
    METADATA_DIR, ROOT_COPY_FILE, TARGETS_DIR, TEMP_PREFIX, TIMESTAMP_FILE,
};

/// A file of the local repository, by its key relative to the repository's root
/// (`metadata/3.snapshot.json`, `targets/<sha256>.<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub key: String,
    pub size: u64,
}

/// The upload phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// `targets/<sha256>.<name>`: content-addressed, never replaced.
    Targets,
    /// `metadata/N.<delegated role>.json`.
    Delegated,
    /// `metadata/N.targets.json`.
    TargetsMetadata,
    /// `metadata/N.snapshot.json`.
    Snapshot,
    /// `metadata/N.root.json`, then the `metadata/root.json` copy.
    Root,
    /// `metadata/timestamp.json`: the one object a device polls; the switch to the new state.
    Timestamp,
}

/// How long a CDN or a device's cache may keep an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Versioned or content-addressed: the bytes under this name never change.
    Immutable,
    /// `timestamp.json` and the `root.json` copy: replaced by each publish.
    Revalidate,
}

impl CachePolicy {
    /// The `Cache-Control` header stored with the object (and served by S3 and CDNs).
    pub fn header(self) -> &'static str {
        match self {
            CachePolicy::Immutable => "public, max-age=31536000, immutable",
            // One minute: a device polls far less often, a burst of a fleet still hits the cache.
            CachePolicy::Revalidate => "public, max-age=60",
        }
    }
}

/// Whether an object already at the destination can be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Absent remotely: upload.
    Upload,
    /// Present with the same size under an immutable metadata name: compare the bytes (small)
    /// and skip the upload when equal; different bytes are a conflict.
    CompareBytes,
    /// Mutable name (`timestamp.json`, `root.json`): upload unless the bytes are equal.
    Replace,
}

/// One object to put, in plan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub key: String,
    pub size: u64,
    pub phase: Phase,
    pub cache: CachePolicy,
    pub check: Check,
}

/// An immutable name that holds other bytes at the destination: another repository was
/// uploaded there, or an upload was tampered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub key: String,
    pub local_size: u64,
    pub remote_size: u64,
}

/// The whole upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Objects to put (or to compare), in order.
    pub puts: Vec<Put>,
    /// Target files already at the destination with their size (content-addressed: kept).
    pub kept: Vec<String>,
    /// Remote objects under `metadata/` or `targets/` that the local repository no longer has;
    /// removed after the timestamp only when asked.
    pub extra: Vec<String>,
    /// Immutable names whose remote size differs; the upload refuses to start.
    pub conflicts: Vec<Conflict>,
}

/// Which phase a repository file belongs to; `None` for files that are not served (temporary
/// files, anything outside `metadata/` and `targets/`).
pub fn phase_of(key: &str) -> Option<Phase> {
    let (dir, name) = key.split_once('/')?;
    if name.is_empty() || name.contains('/') || name.starts_with(TEMP_PREFIX) {
        return None;
    }
    match dir {
        TARGETS_DIR => Some(Phase::Targets),
        METADATA_DIR if name == TIMESTAMP_FILE => Some(Phase::Timestamp),
        METADATA_DIR if name == ROOT_COPY_FILE => Some(Phase::Root),
        METADATA_DIR => {
            let (version, rest) = name.split_once('.')?;
            let role = rest.strip_suffix(".json")?;
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) || role.is_empty()
            {
                return None;
            }
            Some(match role {
                "root" => Phase::Root,
                "targets" => Phase::TargetsMetadata,
                "snapshot" => Phase::Snapshot,
                _ => Phase::Delegated,
            })
        }
        _ => None,
    }
}

/// Whether the bytes under this key may change between publishes.
fn is_mutable(key: &str) -> bool {
    key == format!("{METADATA_DIR}/{TIMESTAMP_FILE}")
        || key == format!("{METADATA_DIR}/{ROOT_COPY_FILE}")
}

/// Plans the upload of `local` to a destination that holds `remote` (key -> size, keys
/// relative to the destination prefix).
pub fn plan(local: &[LocalFile], remote: &BTreeMap<String, u64>) -> Plan {
    let mut plan = Plan::default();
    let mut puts: Vec<Put> = Vec::new();
    for file in local {
        let Some(phase) = phase_of(&file.key) else {
            continue;
        };
        let mutable = is_mutable(&file.key);
        let check = match remote.get(&file.key) {
            None => Check::Upload,
            Some(_) if mutable => Check::Replace,
            Some(&size) if size != file.size => {
                plan.conflicts.push(Conflict {
                    key: file.key.clone(),
                    local_size: file.size,
                    remote_size: size,
                });
                continue;
            }
            Some(_) if phase == Phase::Targets => {
                plan.kept.push(file.key.clone());
                continue;
            }
            Some(_) => Check::CompareBytes,
        };
        puts.push(Put {
            key: file.key.clone(),
            size: file.size,
            phase,
            cache: if mutable {
                CachePolicy::Revalidate
            } else {
                CachePolicy::Immutable
            },
            check,
        });
    }
    // Phase order, then the copy of root after every versioned root, then by version so that
    // a client walking the root chain never meets a gap.
    puts.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    plan.puts = puts;
    let local_keys: std::collections::BTreeSet<&str> =
        local.iter().map(|f| f.key.as_str()).collect();
    plan.extra = remote
        .keys()
        .filter(|key| phase_of(key).is_some() && !local_keys.contains(key.as_str()))
        .cloned()
        .collect();
    plan
}

fn order_key(put: &Put) -> (Phase, bool, u64, &str) {
    let name = put.key.rsplit('/').next().unwrap_or(&put.key);
    let version = name
        .split_once('.')
        .and_then(|(v, _)| v.parse::<u64>().ok())
        .unwrap_or(0);
    let is_copy = put.key.ends_with(&format!("/{ROOT_COPY_FILE}"));
    (put.phase, is_copy, version, &put.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &str, size: u64) -> LocalFile {
        LocalFile {
            key: key.into(),
            size,
        }
    }

    fn repo() -> Vec<LocalFile> {
        vec![
            file("metadata/timestamp.json", 10),
            file("metadata/root.json", 20),
            file("metadata/2.root.json", 20),
            file("metadata/1.root.json", 19),
            file("metadata/10.snapshot.json", 30),
            file("metadata/9.snapshot.json", 30),
            file("metadata/4.targets.json", 40),
            file("metadata/2.kiosk.json", 50),
            file("targets/ab.kiosk-2.bundle", 1000),
            file("targets/cd.kiosk-2.kernel", 500),
            file("metadata/.tmp-123", 1),
            file("flipside-repository.json", 5),
            file("flipside-published.json", 5),
        ]
    }

    fn keys(plan: &Plan) -> Vec<&str> {
        plan.puts.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn a_fresh_destination_gets_everything_in_the_order_devices_need() {
        let plan = plan(&repo(), &BTreeMap::new());
        assert_eq!(
            keys(&plan),
            [
                "targets/ab.kiosk-2.bundle",
                "targets/cd.kiosk-2.kernel",
                "metadata/2.kiosk.json",
                "metadata/4.targets.json",
                "metadata/9.snapshot.json",
                "metadata/10.snapshot.json",
                "metadata/1.root.json",
                "metadata/2.root.json",
                "metadata/root.json",
                "metadata/timestamp.json",
            ]
        );
        assert!(plan.puts.iter().all(|p| p.check == Check::Upload));
        assert!(plan.kept.is_empty() && plan.extra.is_empty() && plan.conflicts.is_empty());
        // Only the two names a publish replaces may be cached briefly.
        let revalidate: Vec<&str> = plan
            .puts
            .iter()
            .filter(|p| p.cache == CachePolicy::Revalidate)
            .map(|p| p.key.as_str())
            .collect();
        assert_eq!(
            revalidate,
            ["metadata/root.json", "metadata/timestamp.json"]
        );
    }

    #[test]
    fn the_timestamp_is_always_last_and_phases_never_go_backwards() {
        let plan = plan(&repo(), &BTreeMap::new());
        assert_eq!(plan.puts.last().unwrap().phase, Phase::Timestamp);
        assert!(plan.puts.windows(2).all(|w| w[0].phase <= w[1].phase));
    }

    #[test]
    fn a_rerun_keeps_targets_compares_metadata_and_replaces_the_timestamp() {
        let remote: BTreeMap<String, u64> = [
            ("targets/ab.kiosk-2.bundle", 1000),
            ("metadata/4.targets.json", 40),
            ("metadata/timestamp.json", 9),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
        let plan = plan(&repo(), &remote);
        assert_eq!(plan.kept, ["targets/ab.kiosk-2.bundle"]);
        let check = |key: &str| plan.puts.iter().find(|p| p.key == key).unwrap().check;
        assert_eq!(check("metadata/4.targets.json"), Check::CompareBytes);
        assert_eq!(check("metadata/timestamp.json"), Check::Replace);
        assert_eq!(check("targets/cd.kiosk-2.kernel"), Check::Upload);
    }

    #[test]
    fn an_immutable_name_of_another_size_is_a_conflict() {
        let remote: BTreeMap<String, u64> = [
            ("targets/ab.kiosk-2.bundle".to_string(), 999),
            ("metadata/9.snapshot.json".to_string(), 31),
            ("metadata/root.json".to_string(), 1),
        ]
        .into_iter()
        .collect();
        let plan = plan(&repo(), &remote);
        let conflicts: Vec<&str> = plan.conflicts.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            conflicts,
            ["metadata/9.snapshot.json", "targets/ab.kiosk-2.bundle"]
        );
        assert_eq!(plan.conflicts[1].remote_size, 999);
    }

    #[test]
    fn remote_leftovers_are_listed_but_foreign_objects_are_not() {
        let remote: BTreeMap<String, u64> = [
            ("targets/old.kiosk-1.bundle", 1),
            ("metadata/8.snapshot.json", 1),
            ("metadata/.tmp-1", 1),
            ("index.html", 1),
            ("metadata/notes/readme", 1),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
        let plan = plan(&repo(), &remote);
        assert_eq!(
            plan.extra,
            ["metadata/8.snapshot.json", "targets/old.kiosk-1.bundle"]
        );
    }

    #[test]
    fn phases_of_names() {
        assert_eq!(phase_of("metadata/timestamp.json"), Some(Phase::Timestamp));
        assert_eq!(phase_of("metadata/root.json"), Some(Phase::Root));
        assert_eq!(phase_of("metadata/3.root.json"), Some(Phase::Root));
        assert_eq!(
            phase_of("metadata/3.targets.json"),
            Some(Phase::TargetsMetadata)
        );
        assert_eq!(phase_of("metadata/3.snapshot.json"), Some(Phase::Snapshot));
        assert_eq!(phase_of("metadata/3.role-a.json"), Some(Phase::Delegated));
        assert_eq!(phase_of("targets/x.y"), Some(Phase::Targets));
        for unserved in [
            "metadata/x.snapshot.json",
            "metadata/.json",
            "metadata/3..json",
            "metadata/3.snapshot",
            "metadata/.tmp-3.snapshot.json",
            "targets/",
            "targets/a/b",
            "flipside-repository.json",
            "keys/root/x.json",
        ] {
            assert_eq!(phase_of(unserved), None, "{unserved}");
        }
    }
}
