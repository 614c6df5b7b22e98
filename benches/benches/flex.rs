//! FlexVolume benchmarks (issue: FlexVolume front end).
//!
//! - a mount + unmount cycle through the shim (two execs, real bind mount),
//!   beside the same cycle with a bash + jq driver of the shape the
//!   FlexVolume docs show, and a bare process exec, all in one run;
//! - `init` through the shim.
//!
//! Runs as root (needs jq: scripts/bench.sh installs it); mounts happen in a
//! private mount namespace of its own.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use wasmvol_bench::{measure, report};
use wasmvol_tests::{install_flex_shim, Fixture, FixtureGrants, ServeProcess};

/// A FlexVolume driver as the docs show them: bash, jq, mount.
const BASH_DRIVER: &str = r#"#!/bin/bash
case "$1" in
  init) echo '{"status":"Success","capabilities":{"attach":false}}' ;;
  mount)
    src=$(echo "$3" | jq -r '.source')
    mkdir -p "$2"
    mount --bind "$src" "$2" && echo '{"status":"Success"}' || echo '{"status":"Failure","message":"mount failed"}'
    ;;
  unmount) umount "$2" && echo '{"status":"Success"}' || echo '{"status":"Failure","message":"umount failed"}' ;;
  *) echo '{"status":"Not supported"}' ;;
esac
"#;

fn exec(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("exec");
    String::from_utf8(out.stdout).unwrap()
}

fn main() {
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            flex: true,
            ..FixtureGrants::default()
        },
    );
    let shim = install_flex_shim(&f);
    let _serve = ServeProcess::start_on(&f, &f.flex_socket());

    let bare = measure(300, || {
        Command::new("/bin/true").status().unwrap();
    });
    report("bare process exec (/bin/true)", bare, None);

    let init = measure(300, || {
        assert!(exec(&shim, &["init"]).contains("Success"));
    });
    report(
        "init through the shim",
        init,
        Some(Duration::from_micros(1500)),
    );

    let dir = f.dir.path().join("pods/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let options = r#"{"kubernetes.io/fsType":"","kubernetes.io/readwrite":"rw","kubernetes.io/pvOrVolumeName":"pv-bench"}"#;
    let ours = measure(300, || {
        assert!(exec(&shim, &["mount", d, options]).contains("Success"));
        assert!(exec(&shim, &["unmount", d]).contains("Success"));
    });
    report(
        "mount + unmount through the shim (wasmvol)",
        ours,
        Some(Duration::from_millis(3)),
    );

    let bash = f.dir.path().join("plugins/example~bash/bash");
    std::fs::create_dir_all(bash.parent().unwrap()).unwrap();
    std::fs::write(&bash, BASH_DRIVER).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bash, std::fs::Permissions::from_mode(0o755)).unwrap();
    let source = f.dir.path().join("bash-volume");
    std::fs::create_dir_all(&source).unwrap();
    let bash_opts = format!(r#"{{"source":"{}"}}"#, source.display());
    let theirs = measure(100, || {
        assert!(exec(&bash, &["mount", d, &bash_opts]).contains("Success"));
        assert!(exec(&bash, &["unmount", d]).contains("Success"));
    });
    report("mount + unmount with a bash + jq driver", theirs, None);
}
