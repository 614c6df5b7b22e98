//! The host's metrics, in Prometheus' text format (`/metrics`).
//!
//! One process-wide set, so the CSI and Flex front ends, the runtime and
//! the capability gate each record where the event happens without a
//! handle threaded through every constructor:
//! - `csi_plugin_operations_seconds{driver_name, method_name,
//!   grpc_status_code}`: the histogram csi-lib-utils keeps, with its
//!   buckets, so dashboards made for other CSI drivers work unchanged;
//! - `wasmvol_flex_operations_seconds{driver_name, method_name, status}`;
//! - `wasmvol_driver_calls_total{driver, outcome}`: ok, driver_error,
//!   trapped, deadline, memory, busy, refused (an answer the host refuses);
//! - `wasmvol_capability_decisions_total{driver, operation, decision}`;
//! - `wasmvol_calls_in_flight{driver}`: instances in use;
//! - `wasmvol_audit_records_total`: records the audit log wrote.
//!
//! Recording starts only when the host serves `/metrics` (`[host] http`):
//! a host without the endpoint pays nothing for it.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::call::CallError;

/// csi-lib-utils' operation buckets, in seconds.
const CSI_BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 25.0, 50.0, 120.0, 300.0, 600.0,
];

/// Labels of a CSI operation, as csi-lib-utils names them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CsiOperation {
    /// The CSI driver name.
    pub driver_name: String,
    /// The full gRPC method, e.g. `/csi.v1.Node/NodePublishVolume`.
    pub method_name: String,
    /// The gRPC status code's name, e.g. `OK`, `NotFound`.
    pub grpc_status_code: String,
}

/// Labels of a Flex call-out.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlexOperation {
    /// The Flex driver name, e.g. `k8s/nfs`.
    pub driver_name: String,
    /// The call, e.g. `mount`.
    pub method_name: String,
    /// `Success`, `Failure` or `Not supported`.
    pub status: String,
}

/// Labels of one driver call's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverCall {
    /// The policy's driver name.
    pub driver: String,
    /// How the call ended.
    pub outcome: &'static str,
}

/// Labels of one capability decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapabilityDecision {
    /// The policy's driver name.
    pub driver: String,
    /// The capability operation, e.g. `mount.bind-from-root`.
    pub operation: &'static str,
    /// `allow` or `deny`.
    pub decision: &'static str,
}

/// Labels naming a driver.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverLabel {
    /// The policy's driver name.
    pub driver: String,
}

/// Makes each histogram of a family with the CSI buckets.
#[derive(Clone, Copy)]
pub struct CsiBuckets;

impl MetricConstructor<Histogram> for CsiBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(CSI_BUCKETS)
    }
}

/// Every metric the host keeps.
pub struct Metrics {
    /// Off until a host serves `/metrics`: no endpoint, no recording.
    enabled: std::sync::atomic::AtomicBool,
    registry: Registry,
    csi: Family<CsiOperation, Histogram, CsiBuckets>,
    flex: Family<FlexOperation, Histogram, CsiBuckets>,
    calls: Family<DriverCall, Counter>,
    decisions: Family<CapabilityDecision, Counter>,
    in_flight: Family<DriverLabel, Gauge<i64, AtomicI64>>,
    audit_records: Counter<u64, AtomicU64>,
}

/// The host's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let csi = Family::new_with_constructor(CsiBuckets);
        registry.register(
            "csi_plugin_operations_seconds",
            "Duration of CSI operations",
            csi.clone(),
        );
        let flex = Family::new_with_constructor(CsiBuckets);
        registry.register(
            "wasmvol_flex_operations_seconds",
            "Duration of FlexVolume call-outs",
            flex.clone(),
        );
        let calls = Family::default();
        registry.register(
            "wasmvol_driver_calls",
            "Driver calls by outcome",
            calls.clone(),
        );
        let decisions = Family::default();
        registry.register(
            "wasmvol_capability_decisions",
            "Capability uses allowed and denied",
            decisions.clone(),
        );
        let in_flight = Family::default();
        registry.register(
            "wasmvol_calls_in_flight",
            "Driver instances in use",
            in_flight.clone(),
        );
        let audit_records = Counter::default();
        registry.register(
            "wasmvol_audit_records",
            "Records written to the audit log",
            audit_records.clone(),
        );
        Self {
            enabled: std::sync::atomic::AtomicBool::new(false),
            registry,
            csi,
            flex,
            calls,
            decisions,
            in_flight,
            audit_records,
        }
    }

    /// Starts recording (a host that serves `/metrics` calls this first).
    pub fn enable(&self) {
        self.enabled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether anything is recorded: callers skip building labels when not.
    pub fn on(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records one CSI operation.
    pub fn csi_operation(&self, labels: CsiOperation, took: Duration) {
        if !self.on() {
            return;
        }
        self.csi.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Records one Flex call-out.
    pub fn flex_operation(&self, labels: FlexOperation, took: Duration) {
        if !self.on() {
            return;
        }
        self.flex.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Records how a driver call ended.
    pub fn driver_call(&self, driver: &str, result: Result<(), &CallError>) {
        if !self.on() {
            return;
        }
        let outcome = match result {
            Ok(()) => "ok",
            Err(CallError::Driver(_)) => "driver_error",
            Err(CallError::Trapped(_)) => "trapped",
            Err(CallError::Deadline(_)) => "deadline",
            Err(CallError::Memory(_)) => "memory",
            Err(CallError::Busy(_)) => "busy",
            Err(CallError::BadAnswer(_)) | Err(CallError::UnexpectedAnswer(_)) => "refused",
            Err(CallError::InvalidRequest(_)) | Err(CallError::UnknownDriver(_)) => "invalid",
        };
        self.calls
            .get_or_create(&DriverCall {
                driver: driver.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Records a capability decision.
    pub fn decision(&self, driver: &str, operation: &'static str, allowed: bool) {
        if !self.on() {
            return;
        }
        self.decisions
            .get_or_create(&CapabilityDecision {
                driver: driver.to_owned(),
                operation,
                decision: if allowed { "allow" } else { "deny" },
            })
            .inc();
    }

    /// A driver instance starts (`+1`) or ends (`-1`) a call.
    pub fn in_flight(&self, driver: &str, delta: i64) {
        if !self.on() {
            return;
        }
        self.in_flight
            .get_or_create(&DriverLabel {
                driver: driver.to_owned(),
            })
            .inc_by(delta);
    }

    /// Records audit records written.
    pub fn audit_records(&self, n: u64) {
        if !self.on() {
            return;
        }
        self.audit_records.inc_by(n);
    }

    /// Everything, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The name csi-lib-utils gives a gRPC status code.
pub fn grpc_code_name(code: tonic::Code) -> String {
    match code {
        tonic::Code::Ok => "OK".into(),
        other => format!("{other:?}"),
    }
}
