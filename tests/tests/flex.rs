//! FlexVolume end to end: the shim installed by `wasmvol flex install` is
//! exec'd exactly as kubelet execs it (argv and JSON as in kubelet's code),
//! against a `wasmvol serve` process running hostpath, with real mounts.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use wasmvol_tests::{mounts_under, wasmvol_bin, Fixture, FixtureGrants, ServeProcess};

struct Flex {
    shim: PathBuf,
    serve: Option<ServeProcess>,
    f: Fixture,
}

/// What one exec of the shim printed and returned.
#[derive(Debug)]
struct Answer {
    code: i32,
    json: Value,
    stderr: String,
}

fn setup() -> Flex {
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            flex: true,
            ..FixtureGrants::default()
        },
    );
    let shim = wasmvol_tests::install_flex_shim(&f);
    let serve = Some(ServeProcess::start_on(&f, &f.flex_socket()));
    Flex { shim, serve, f }
}

impl Flex {
    /// Execs the shim like kubelet: no shell, no stdin, the output parsed as one JSON object.
    fn exec(&self, args: &[&str]) -> Answer {
        run_shim(&self.shim, args)
    }

    fn dir(&self, name: &str) -> PathBuf {
        // Kubelet creates the mount dir (0750) before calling mount.
        let p = self.f.dir.path().join("pods").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

fn run_shim(shim: &Path, args: &[&str]) -> Answer {
    let out = Command::new(shim)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("kubelet could not parse {stdout:?}: {e}"));
    Answer {
        code: out.status.code().unwrap(),
        json,
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn opts(name: &str, rw: &str) -> String {
    json!({"kubernetes.io/fsType": "", "kubernetes.io/readwrite": rw, "kubernetes.io/pvOrVolumeName": name}).to_string()
}

fn assert_success(a: &Answer) {
    assert_eq!(a.json["status"], "Success", "{a:?}");
    assert_eq!(a.code, 0, "{a:?}");
    assert!(a.stderr.is_empty(), "kubelet reads stderr too: {a:?}");
}

#[test]
fn init_reports_capabilities_from_the_driver() {
    let fx = setup();
    let a = fx.exec(&["init"]);
    assert_success(&a);
    assert_eq!(
        a.json["capabilities"],
        json!({"attach": false, "selinuxRelabel": false, "supportsMetrics": true, "fsGroup": false, "requiresFSResize": true})
    );
    let mode = std::fs::metadata(&fx.shim).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o755);
}

#[test]
fn mount_and_unmount_are_real_and_idempotent() {
    let fx = setup();
    let dir = fx.dir("pod-1-vol");
    let o = opts("pv-flex-1", "rw");
    for _ in 0..2 {
        assert_success(&fx.exec(&["mount", dir.to_str().unwrap(), &o]));
    }
    assert_eq!(mounts_under(&dir), vec![dir.clone()], "one mount, not two");
    // Another volume, or the same one read-only, at a dir already mounted is refused.
    for other in [opts("pv-flex-other", "rw"), opts("pv-flex-1", "ro")] {
        let a = fx.exec(&["mount", dir.to_str().unwrap(), &other]);
        assert_eq!(a.json["status"], "Failure", "{a:?}");
        assert!(
            a.json["message"]
                .as_str()
                .unwrap()
                .contains("already holds volume"),
            "{a:?}"
        );
    }
    assert_eq!(mounts_under(&dir), vec![dir.clone()], "still one mount");
    std::fs::write(dir.join("from-pod"), b"hello").unwrap();
    let vols: Vec<_> = std::fs::read_dir(fx.f.root().join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(vols.len(), 1);
    assert_eq!(std::fs::read(vols[0].join("from-pod")).unwrap(), b"hello");
    for _ in 0..2 {
        assert_success(&fx.exec(&["unmount", dir.to_str().unwrap()]));
    }
    assert!(mounts_under(fx.f.dir.path()).is_empty());

    // Read-only is honoured.
    let ro = fx.dir("pod-ro");
    assert_success(&fx.exec(&["mount", ro.to_str().unwrap(), &opts("pv-flex-1", "ro")]));
    assert_eq!(std::fs::read(ro.join("from-pod")).unwrap(), b"hello");
    let err = std::fs::write(ro.join("x"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert_success(&fx.exec(&["unmount", ro.to_str().unwrap()]));
    assert!(mounts_under(fx.f.dir.path()).is_empty());
}

/// The args of the last audit record for a driver call.
fn last_call(f: &Fixture, operation: &str) -> Value {
    f.audit()
        .into_iter()
        .rev()
        .find(|r| r["operation"] == operation)
        .unwrap_or_else(|| panic!("no {operation} in the audit log"))["args"]
        .clone()
}

#[test]
fn seed_options_reach_the_driver_as_typed_fields_and_parameters() {
    let fx = setup();
    // The PV seed: driver k8s/nfs, fsType nfs, options {server, share}.
    let nfs = r#"{"kubernetes.io/fsType":"nfs","kubernetes.io/readwrite":"rw","kubernetes.io/pvOrVolumeName":"pv-flex-nfs","server":"10.10.0.25","share":"export"}"#;
    let dir = fx.dir("nfs");
    assert_success(&fx.exec(&["mount", dir.to_str().unwrap(), nfs]));
    let create = last_call(&fx.f, "call:create-volume");
    assert_eq!(create["name"], "pv-flex-nfs");
    assert_eq!(
        create["parameters"],
        json!([["server", "10.10.0.25"], ["share", "export"]])
    );
    let publish = last_call(&fx.f, "call:node-publish");
    assert_eq!(
        publish["volume_capability"]["access_type"]["Mount"]["fs_type"],
        "nfs"
    );
    assert_eq!(publish["readonly"], false);
    assert_success(&fx.exec(&["unmount", dir.to_str().unwrap()]));

    // The pod seed: kubernetes.io/lvm, fsType ext4, {volumeID, size, volumegroup},
    // plus what kubelet adds for mount (pod, fsGroup, a secret).
    let lvm = json!({
        "kubernetes.io/fsType": "ext4", "kubernetes.io/readwrite": "rw",
        "kubernetes.io/pvOrVolumeName": "data", "kubernetes.io/pod.name": "web-0",
        "kubernetes.io/pod.namespace": "shop", "kubernetes.io/pod.uid": "1234-abcd",
        "kubernetes.io/serviceAccount.name": "default", "kubernetes.io/mounterArgs.FsGroup": "2000",
        "kubernetes.io/secret/password": "aHVudGVyMg==",
        "volumeID": "vol1", "size": "1000m", "volumegroup": "kube_vg"
    })
    .to_string();
    let dir = fx.dir("lvm");
    assert_success(&fx.exec(&["mount", dir.to_str().unwrap(), &lvm]));
    let create = last_call(&fx.f, "call:create-volume");
    assert_eq!(create["name"], "vol1", "volumeID names the volume");
    assert_eq!(
        create["parameters"],
        json!([
            ["size", "1000m"],
            ["volumeID", "vol1"],
            ["volumegroup", "kube_vg"]
        ])
    );
    let publish = last_call(&fx.f, "call:node-publish");
    let mount = &publish["volume_capability"]["access_type"]["Mount"];
    assert_eq!(mount["fs_type"], "ext4");
    assert_eq!(mount["volume_mount_group"], "2000");
    let ctx = publish["volume_context"].to_string();
    assert!(
        ctx.contains(r#"["csi.storage.k8s.io/pod.uid","1234-abcd"]"#),
        "{ctx}"
    );
    // Secrets: hostpath has no secrets grant, so none reach it, and none are logged.
    assert_eq!(publish["secrets"], json!([]));
    let audit = std::fs::read_to_string(fx.f.dir.path().join("state/audit.jsonl")).unwrap();
    assert!(!audit.contains("hunter2") && !audit.contains("aHVudGVyMg=="));
    assert_success(&fx.exec(&["unmount", dir.to_str().unwrap()]));
}

#[test]
fn bad_input_gets_a_clear_answer() {
    let mut fx = setup();
    let a = fx.exec(&["frobnicate", "x"]);
    assert_eq!(a.json["status"], "Not supported");
    assert_eq!(a.code, 0);
    let a = fx.exec(&["attach", &opts("v", "rw"), "node-1"]);
    assert_eq!(
        a.json["status"], "Not supported",
        "hostpath does not attach"
    );

    let dir = fx.dir("bad");
    let cases: [(&[&str], &str); 5] = [
        (
            &["mount", dir.to_str().unwrap(), "{not json"],
            "mount: options are not JSON",
        ),
        (
            &["mount", dir.to_str().unwrap()],
            "mount takes 2 argument(s)",
        ),
        (&["mount", "relative/dir", "{}"], "must be an absolute path"),
        (
            &[
                "mount",
                dir.to_str().unwrap(),
                r#"{"kubernetes.io/readwrite":"yes"}"#,
            ],
            "`ro` or `rw`",
        ),
        (&["unmountdevice"], "unmountdevice takes 1 argument(s)"),
    ];
    for (args, want) in cases {
        let a = fx.exec(args);
        assert_eq!(a.json["status"], "Failure", "{args:?}: {a:?}");
        assert_eq!(a.code, 1);
        let msg = a.json["message"].as_str().unwrap();
        assert!(msg.contains(want), "{args:?}: {msg}");
    }
    assert!(mounts_under(fx.f.dir.path()).is_empty());

    // No host: a Failure naming the socket, quickly.
    drop(fx.serve.take());
    let started = std::time::Instant::now();
    let a = fx.exec(&["init"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(a.json["status"], "Failure");
    assert_eq!(a.code, 1);
    let msg = a.json["message"].as_str().unwrap();
    assert!(
        msg.contains(&fx.f.flex_socket().display().to_string()),
        "{msg}"
    );
}

#[test]
fn fifty_parallel_mounts_and_unmounts() {
    let fx = setup();
    let dirs: Vec<PathBuf> = (0..50).map(|i| fx.dir(&format!("par-{i}"))).collect();
    let run_all = |callout: &str| {
        std::thread::scope(|s| {
            let handles: Vec<_> = dirs
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let (shim, o) = (&fx.shim, opts(&format!("pv-par-{i}"), "rw"));
                    s.spawn(move || match callout {
                        "mount" => run_shim(shim, &["mount", d.to_str().unwrap(), &o]),
                        _ => run_shim(shim, &["unmount", d.to_str().unwrap()]),
                    })
                })
                .collect();
            for h in handles {
                assert_success(&h.join().unwrap());
            }
        })
    };
    run_all("mount");
    assert_eq!(mounts_under(fx.f.dir.path()).len(), 50);
    run_all("unmount");
    assert!(mounts_under(fx.f.dir.path()).is_empty());
}

#[test]
fn install_is_atomic_and_uninstall_removes() {
    let f = Fixture::new("hostpath", FixtureGrants::default());
    let plugins = f.dir.path().join("plugins");
    for _ in 0..2 {
        let out = Command::new(wasmvol_bin())
            .args(["flex", "install", "--driver", "acme/fast", "--plugin-dir"])
            .arg(&plugins)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let entries: Vec<_> = std::fs::read_dir(plugins.join("acme~fast"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        ["fast"],
        "no temporary file is left beside the shim"
    );
    let out = Command::new(wasmvol_bin())
        .args(["flex", "uninstall", "--driver", "acme/fast", "--plugin-dir"])
        .arg(&plugins)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!plugins.join("acme~fast").exists());
    let bad = Command::new(wasmvol_bin())
        .args(["flex", "install", "--driver", "no-slash", "--plugin-dir"])
        .arg(&plugins)
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
