//! `/healthz` and `/metrics` of a separate `wasmvol serve`: a known sequence
//! of CSI and Flex calls (a success, a denial, a trap among them) is counted
//! exactly, and health turns bad, saying why, once a driver's probe traps.

use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::{volume_capability, CreateVolumeRequest, VolumeCapability};
use wasmvol_tests::{csi_channel, exec_flex_shim, http_get, Fixture, FixtureGrants, ServeProcess};

/// The value of the sample `name{labels}`, 0 when there is none yet.
fn sample(metrics: &str, name: &str, labels: &str) -> f64 {
    let key = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn create(name: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        volume_capabilities: vec![VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(Default::default())),
            access_mode: Some(volume_capability::AccessMode {
                mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
            }),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_sequence_exactly_and_health_says_why_it_fails() {
    let f = Fixture::new(
        "adversary",
        FixtureGrants {
            csi: true,
            flex: true,
            http: true,
            device: true, // the adversary imports the device interface too
            ..FixtureGrants::default()
        },
    );
    let shim = wasmvol_tests::install_flex_shim(&f);
    // The HTTP endpoint opens after the CSI and Flex sockets: waiting for it
    // waits for all of them.
    let http = f.http_socket();
    let _serve = ServeProcess::start_on(&f, &http);
    let (status, body) = http_get(&http, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(http_get(&http, "/nowhere").0, 404);

    let before = http_get(&http, "/metrics").1;
    let audit_before = f.audit().len();
    let mut controller = ControllerClient::new(csi_channel(&f.csi_socket()).await);
    for _ in 0..2 {
        controller
            .create_volume(create("slow-1"))
            .await
            .expect("a plain create");
    }
    let denied = controller
        .create_volume(create("escape-dotdot"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let trapped = controller.create_volume(create("trap")).await.unwrap_err();
    assert_eq!(trapped.code(), tonic::Code::Internal, "{trapped:?}");
    assert_eq!(exec_flex_shim(&shim, &["init"])["status"], "Success");
    assert_eq!(
        exec_flex_shim(&shim, &["mount", "/nonexistent", "{not json"])["status"],
        "Failure"
    );
    let after = http_get(&http, "/metrics").1;

    let delta =
        |name: &str, labels: &str| sample(&after, name, labels) - sample(&before, name, labels);
    let csi = |code: &str| {
        format!(
            "driver_name=\"adversary.csi.wasmvol.io\",method_name=\"/csi.v1.Controller/CreateVolume\",grpc_status_code=\"{code}\""
        )
    };
    let op = "csi_plugin_operations_seconds_count";
    assert_eq!(delta(op, &csi("OK")), 2.0, "{after}");
    assert_eq!(delta(op, &csi("PermissionDenied")), 1.0);
    assert_eq!(delta(op, &csi("Internal")), 1.0);
    let calls = |outcome: &str| format!("driver=\"adversary\",outcome=\"{outcome}\"");
    let total = "wasmvol_driver_calls_total";
    // Flex init is the host's own answer; the bad mount never reaches the driver.
    assert_eq!(delta(total, &calls("ok")), 2.0);
    assert_eq!(delta(total, &calls("driver_error")), 1.0);
    assert_eq!(delta(total, &calls("trapped")), 1.0);
    assert_eq!(
        delta(
            "wasmvol_capability_decisions_total",
            "driver=\"adversary\",operation=\"volumes.create-dir\",decision=\"deny\""
        ),
        1.0
    );
    let flex = |method: &str, status: &str| {
        format!("driver_name=\"wasmvol/adversary\",method_name=\"{method}\",status=\"{status}\"")
    };
    let fop = "wasmvol_flex_operations_seconds_count";
    assert_eq!(delta(fop, &flex("init", "Success")), 1.0);
    assert_eq!(
        delta(fop, &flex("mount", "Failure")),
        1.0,
        "{}",
        after
            .lines()
            .filter(|l| l.contains("flex"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        delta("wasmvol_audit_records_total", ""),
        (f.audit().len() - audit_before) as f64,
        "every record the log gained is counted"
    );
    assert_eq!(
        sample(&after, "wasmvol_calls_in_flight", "driver=\"adversary\""),
        0.0
    );

    // A driver that loaded fine and stops answering its probe: unhealthy, and why.
    controller
        .create_volume(create("arm-probe-trap"))
        .await
        .expect("arm");
    let (status, body) = http_get(&http, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("adversary") && body.contains("trapped"),
        "{body}"
    );
}
