//! `wasmvol audit --log` over a 1 GB log (issue: driver lifecycle; budget 10 s).
//!
//! The log is made of real records: hostpath creates and deletes volumes
//! through `wasmvol call`, and the lines those calls wrote are repeated,
//! each with a later time stamp, until the file holds 1 GB. The release
//! binary then reads it (and its policy) three times; the median is reported.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use wasmvol_tests::{Fixture, FixtureGrants};

const LOG_BYTES: u64 = 1 << 30;

fn wasmvol() -> Command {
    Command::new(env!("CARGO_MANIFEST_DIR").to_owned() + "/../target/release/wasmvol")
}

fn main() {
    let f = Fixture::new("hostpath", FixtureGrants::default());
    let create = |name: &str| {
        serde_json::json!({
            "name": name, "capacity_range": null,
            "volume_capabilities": [{"access_type": {"Mount": {"fs_type": "", "mount_flags": [], "volume_mount_group": ""}}, "access_mode": "SingleNodeWriter"}],
            "parameters": [], "secrets": [], "content_source": null,
            "accessibility_requirements": null, "mutable_parameters": []
        })
    };
    for n in 0..5 {
        let out = wasmvol()
            .args(["call", "--config"])
            .arg(&f.policy_path)
            .args(["hostpath", "create-volume", "--request"])
            .arg(create(&format!("pvc-{n}")).to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let log = f.dir.path().join("state/audit.jsonl");
    let real = std::fs::read_to_string(&log).unwrap();
    let records: Vec<serde_json::Value> = real
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!records.is_empty());
    // Grow it to 1 GB of those records, time stamps moving forward.
    let started = Instant::now();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&log).unwrap());
    let (mut written, mut n) = (0u64, 0u64);
    while written < LOG_BYTES {
        let mut r = records[(n as usize) % records.len()].clone();
        let secs = n / 1000;
        r["time"] = format!(
            "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            1 + (secs / 86_400) % 28,
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            n % 1000
        )
        .into();
        let mut line = serde_json::to_vec(&r).unwrap();
        line.push(b'\n');
        out.write_all(&line).unwrap();
        written += line.len() as u64;
        n += 1;
    }
    out.flush().unwrap();
    drop(out);
    println!(
        "made a {} MB log of {n} records in {:.1?}",
        written >> 20,
        started.elapsed()
    );
    let mut took: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let out = wasmvol()
                .args(["audit", "--json", "--config"])
                .arg(&f.policy_path)
                .arg("--log")
                .arg(&log)
                .output()
                .unwrap();
            let took = t.elapsed();
            assert!(out.status.success(), "{out:?}");
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let used = report.to_string();
            assert!(
                used.contains("call:create-volume"),
                "the log was read: {used:.400}"
            );
            took
        })
        .collect();
    took.sort();
    let budget = Duration::from_secs(10);
    println!(
        "{:<52} median {:>10.2?}  max {:>10.2?}  {}",
        "audit --log over a 1 GB log",
        took[1],
        took[2],
        if took[1] <= budget {
            format!("ok (budget {budget:?})")
        } else {
            format!("OVER BUDGET {budget:?}")
        }
    );
    std::fs::remove_file(&log).unwrap();
}
