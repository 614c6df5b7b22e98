//! A hostile driver offered over FlexVolume: it stages without attaching
//! (so the host keeps a staging dir for it) and answers create-volume with
//! volume ids made to become host paths. Each is contained (the host names
//! its staging dir itself) or refused (an id no caller could carry), audited,
//! leaves nothing outside the host's roots, and the next call works. Also:
//! two execs on one volume do not interleave.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use wasmvol_tests::{Fixture, FixtureGrants, ServeProcess};

struct Flex {
    shim: PathBuf,
    _serve: ServeProcess,
    f: Fixture,
}

fn setup() -> Flex {
    let f = Fixture::new(
        "adversary",
        FixtureGrants {
            flex: true,
            device: true,
            ..FixtureGrants::default()
        },
    );
    let shim = wasmvol_tests::install_flex_shim(&f);
    let serve = ServeProcess::start_on(&f, &f.flex_socket());
    Flex {
        shim,
        _serve: serve,
        f,
    }
}

/// Every mount point this test's namespace (and so the host it spawned) sees.
fn all_mounts() -> BTreeSet<PathBuf> {
    wasmvol_tests::mounts_under(Path::new("/"))
        .into_iter()
        .collect()
}

impl Flex {
    fn exec(&self, args: &[&str]) -> Value {
        let out = Command::new(&self.shim)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON {stdout:?}: {e}"))
    }

    fn pod_dir(&self, name: &str) -> PathBuf {
        let p = self.f.dir.path().join("pods").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// The host's own staging root for this driver (see `wasmvol serve`).
    fn staging_root(&self) -> PathBuf {
        self.f.dir.path().join("state/flex-staging/adversary")
    }

    /// Names in the staging root: each must be one the host derived (32 hex digits).
    fn assert_staging_names_are_the_hosts(&self) {
        let Ok(entries) = std::fs::read_dir(self.staging_root()) else {
            return;
        };
        for e in entries {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(
                name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()),
                "the host made `{name}` in its staging root"
            );
        }
    }

    /// Audit records of create-volume calls the host made for `name`.
    fn create_records(&self, name: &str) -> Vec<Value> {
        self.f
            .audit()
            .into_iter()
            .filter(|r| r["operation"] == "call:create-volume" && r["args"]["name"] == name)
            .collect()
    }
}

fn opts(name: &str) -> String {
    json!({"kubernetes.io/fsType": "", "kubernetes.io/readwrite": "rw", "kubernetes.io/pvOrVolumeName": name}).to_string()
}

#[test]
fn volume_ids_shaped_as_paths_are_contained_in_the_hosts_staging_root() {
    let fx = setup();
    let before = all_mounts();
    let etc_was_mounted = before.contains(Path::new("/etc"));
    for (attack, stray) in [
        ("flex-id-etc", PathBuf::from("/etc")),
        // Where a join of the id onto the staging root would have led.
        (
            "flex-id-dotdot",
            fx.f.dir.path().parent().unwrap().join("x"),
        ),
        ("flex-id-slash", fx.staging_root().join("a")),
    ] {
        let dir = fx.pod_dir(attack);
        let a = fx.exec(&["mount", dir.to_str().unwrap(), &opts(attack)]);
        assert_eq!(a["status"], "Success", "{attack}: {a}");
        // The pod sees the driver's own files, through the host's staging dir.
        std::fs::write(dir.join("from-pod"), b"x").unwrap();
        assert!(
            fx.f.root().join("volumes/flex/from-pod").exists(),
            "{attack}"
        );
        let new: Vec<PathBuf> = all_mounts().difference(&before).cloned().collect();
        for m in &new {
            assert!(
                m.starts_with(fx.f.dir.path()),
                "{attack}: mounted {} outside the fixture",
                m.display()
            );
        }
        assert_eq!(
            new.len(),
            2,
            "{attack}: staging and pod mounts only: {new:?}"
        );
        assert!(
            new.iter().any(|m| m.parent() == Some(&fx.staging_root())),
            "{new:?}"
        );
        assert_eq!(
            all_mounts().contains(Path::new("/etc")),
            etc_was_mounted,
            "{attack}: /etc mounted"
        );
        if attack != "flex-id-etc" {
            assert!(!stray.exists(), "{attack}: {} was made", stray.display());
        }
        fx.assert_staging_names_are_the_hosts();
        // The audit log names the id the driver answered; the binds landed in the host's dirs.
        let records = fx.f.audit();
        let stage_bind = records
            .iter()
            .rev()
            .find(|r| {
                r["operation"] == "mount.bind-from-root"
                    && r["args"]["role"] == "Staging"
                    && r["decision"] == "allow"
            })
            .unwrap_or_else(|| panic!("{attack}: no staging bind audited"));
        let staged_at = PathBuf::from(stage_bind["args"]["target"].as_str().unwrap());
        assert_eq!(staged_at.parent(), Some(fx.staging_root().as_path()));
        assert_eq!(stage_bind["args"]["flags"], json!(["nosuid", "nodev"]));

        let a = fx.exec(&["unmount", dir.to_str().unwrap()]);
        assert_eq!(a["status"], "Success", "{attack}: {a}");
        assert_eq!(all_mounts(), before, "{attack}: unmount left a mount");
        std::fs::remove_file(fx.f.root().join("volumes/flex/from-pod")).unwrap();
    }
}

#[test]
fn volume_ids_no_caller_could_carry_are_refused_and_audited() {
    let fx = setup();
    let before = all_mounts();
    for (attack, why) in [
        ("flex-id-nul", "control character"),
        ("flex-id-newline", "control character"),
        ("flex-id-long", "4096 bytes"),
    ] {
        let dir = fx.pod_dir(attack);
        let a = fx.exec(&["mount", dir.to_str().unwrap(), &opts(attack)]);
        assert_eq!(a["status"], "Failure", "{attack}: {a}");
        let message = a["message"].as_str().unwrap();
        assert!(
            message.contains("refuses") && message.contains(why),
            "{attack}: {message}"
        );
        let records = fx.create_records(attack);
        assert_eq!(records.len(), 1, "{attack}: {records:#?}");
        assert_eq!(records[0]["decision"], "deny");
        assert!(
            records[0]["outcome"]
                .as_str()
                .unwrap()
                .starts_with("contained:"),
            "{}",
            records[0]
        );
        assert_eq!(all_mounts(), before, "{attack}: something was mounted");
        assert!(
            std::fs::read_dir(fx.staging_root()).map_or(true, |mut d| d.next().is_none()),
            "{attack}: a staging dir was made"
        );
        assert!(
            !fx.f.root().join("volumes/flex").exists(),
            "{attack}: staged"
        );
    }
    // The host still serves: an honest mount and unmount.
    let dir = fx.pod_dir("after");
    let a = fx.exec(&["mount", dir.to_str().unwrap(), &opts("flex-id-slash")]);
    assert_eq!(a["status"], "Success", "{a}");
    assert_eq!(
        fx.exec(&["unmount", dir.to_str().unwrap()])["status"],
        "Success"
    );
    assert_eq!(all_mounts(), before);
}

#[test]
fn two_mounts_of_one_volume_at_once_are_serialised() {
    let fx = setup();
    let before = all_mounts();
    let (a, b) = (fx.pod_dir("serial-a"), fx.pod_dir("serial-b"));
    let o = opts("flex-serial-1");
    // Two kubelet execs at the same moment; the driver fails a create that
    // overlaps another (it holds a marker for 300 ms).
    let answers: Vec<Value> = std::thread::scope(|s| {
        let calls: Vec<_> = [&a, &b]
            .into_iter()
            .map(|dir| {
                let (fx, o) = (&fx, &o);
                s.spawn(move || fx.exec(&["mount", dir.to_str().unwrap(), o]))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for answer in &answers {
        assert_eq!(answer["status"], "Success", "{answer}");
    }
    let records = fx.create_records("flex-serial-1");
    assert_eq!(records.len(), 2, "{records:#?}");
    for dir in [&a, &b] {
        assert_eq!(
            fx.exec(&["unmount", dir.to_str().unwrap()])["status"],
            "Success"
        );
    }
    assert_eq!(all_mounts(), before);
}
