//! The kill-point matrix's engine: a CSI or Flex flow of one driver,
//! with the host killed (SIGKILL, from inside, see `wasmvol::fault`) at each
//! point the flow passes in turn: before and after each driver call, after
//! each capability operation and before it is audited, around each durable
//! record write. After each kill the host is started again, kubelet's retry
//! of the interrupted call is replayed, the rest of the flow runs, and then:
//! the flow completed; no second volume was made; ListVolumes never lists
//! a volume whose storage is gone; no mount, loop device, file or record is
//! left that the uninterrupted flow does not leave; every audit line is whole.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::{loops_under, Fixture, FixtureGrants, ServeProcess};
use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::group_controller_client::GroupControllerClient;
use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::*;

/// One call of a flow, as kubelet (or a sidecar) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// CreateVolume of the flow's one volume.
    Create,
    /// ControllerPublishVolume to the fixture's node.
    ControllerPublish,
    /// NodeStageVolume.
    Stage,
    /// NodePublishVolume.
    Publish,
    /// NodeUnpublishVolume.
    Unpublish,
    /// NodeUnstageVolume.
    Unstage,
    /// ControllerUnpublishVolume.
    ControllerUnpublish,
    /// DeleteVolume.
    Delete,
    /// CreateSnapshot of the flow's volume.
    Snapshot,
    /// CreateVolume of a second volume from that snapshot.
    Restore,
    /// DeleteVolume of the restored volume.
    DeleteRestored,
    /// DeleteSnapshot.
    DeleteSnapshot,
    /// CreateVolume of a second volume cloned from the flow's volume.
    Clone,
    /// DeleteVolume of the clone.
    DeleteClone,
    /// NodeExpandVolume of the published volume to twice its size, as
    /// kubelet sends it for a node-local driver (csi-resizer only records
    /// the size; the host runs the controller half on the node).
    Expand,
    /// ControllerModifyVolume of the flow's volume to `readOnly=true`.
    Modify,
    /// CreateVolumeGroupSnapshot of the flow's volume and, if the flow made
    /// them, its clone and its restore.
    GroupSnapshot,
    /// DeleteVolumeGroupSnapshot, with its member snapshots.
    DeleteGroupSnapshot,
    /// A Flex call-out (`init`, `attach`, `mount`, ...).
    Flex(&'static str),
}

/// A flow of one driver through one front end (Flex when its grants offer
/// the driver over Flex, else CSI).
pub struct Flow {
    /// The driver's component name.
    pub driver: &'static str,
    /// Its grants.
    pub grants: FixtureGrants,
    /// Block access (CSI only).
    pub block: bool,
    /// Publish an ephemeral inline volume (no CreateVolume).
    pub ephemeral: bool,
    /// Whether the driver offers ListVolumes (checked after every restart).
    pub lists: bool,
    /// CreateVolume parameters.
    pub parameters: &'static [(&'static str, &'static str)],
    /// Flex options beyond kubelet's own (`kubernetes.io/...`).
    pub flex_options: &'static [(&'static str, &'static str)],
    /// The calls, in order.
    pub steps: &'static [Step],
    /// What the driver's storage holds now (files under the root, logical
    /// volumes, directories on a share): after every step a killed run must
    /// hold what the uninterrupted one held.
    pub storage: fn(&Fixture) -> BTreeSet<String>,
    /// Kill only where the host's or the kernel's state may have changed
    /// since the point before: not before a driver call (`call:`: the
    /// driver has done nothing of it yet, and the front end at most made a
    /// directory on the way, which the retry makes again) and
    /// not after an operation that only reads ([`READ_ONLY`]). For flows
    /// whose every restart is costly (the VM's, under emulation); native
    /// flows kill at every point.
    pub changes_only: bool,
    /// Puts what the flow uses outside the fixture back as it was, before
    /// each run (a Flex flow leaves its volume; a share needs its directory).
    pub reset: fn(),
}

/// Create a volume, snapshot it, restore a second volume from the
/// snapshot, then delete the restore, the snapshot and the volume.
pub const SNAPSHOT_AND_RESTORE: &[Step] = &[
    Step::Create,
    Step::Snapshot,
    Step::Restore,
    Step::DeleteRestored,
    Step::DeleteSnapshot,
    Step::Delete,
];

/// Create a volume (and, with `clone`, a clone of it), make it read-only,
/// snapshot the volumes as a group, then delete the group and the volumes.
pub const fn modify_and_group_snapshot(clone: bool) -> &'static [Step] {
    if clone {
        &[
            Step::Create,
            Step::Clone,
            Step::Modify,
            Step::GroupSnapshot,
            Step::DeleteGroupSnapshot,
            Step::DeleteClone,
            Step::Delete,
        ]
    } else {
        &[
            Step::Create,
            Step::Modify,
            Step::GroupSnapshot,
            Step::DeleteGroupSnapshot,
            Step::Delete,
        ]
    }
}

/// Capability operations that change nothing on the host: a kill right
/// after one leaves what a kill right before it leaves.
pub const READ_ONLY: &[&str] = &[
    "volumes.open-root",
    "volumes.list-dir",
    "volumes.exists",
    "volumes.read-file",
    "volumes.statvfs",
    "volumes.usage",
    "mount.is-mounted",
    "mount.statvfs",
    "state.get",
    "state.list-prefix",
    "device.find-attached",
    "device.node",
    "device.size",
    "device.probe-filesystem",
    "device.check-filesystem",
    "netfs.open-share",
    "lvm.list-volumes",
    "lvm.free-bytes",
    "lvm.open",
];

/// Whether a kill at `point` (a trace line) can leave another state than a
/// kill at the point before it.
fn changes(point: &str) -> bool {
    if point.starts_with("call:") {
        return false;
    }
    point
        .strip_prefix("capability:")
        .is_none_or(|op| !READ_ONLY.contains(&op))
}

impl Flow {
    /// A flow of `driver` with `grants` through `steps`, on a filesystem
    /// volume of a driver with ListVolumes, whose storage is its root.
    pub fn new(driver: &'static str, grants: FixtureGrants, steps: &'static [Step]) -> Self {
        Self {
            driver,
            grants,
            block: false,
            ephemeral: false,
            lists: true,
            parameters: &[],
            flex_options: &[],
            steps,
            storage: storage_root,
            changes_only: false,
            reset: || {},
        }
    }
}

/// Every path beneath the fixture's storage root.
pub fn storage_root(f: &Fixture) -> BTreeSet<String> {
    walk(&f.root())
}

/// What a flow leaves behind, to compare a killed run with an uninterrupted one.
#[derive(Debug, PartialEq)]
struct Leftovers {
    storage: BTreeSet<String>,
    records: BTreeSet<String>,
}

const VOLUME: &str = "pv-kill";
/// The size CreateVolume asks for; [`Step::Expand`] doubles it.
const SIZE: i64 = 16 << 20;
const NODE: &str = "test-node";

/// A fixture and the host serving it, started again after each kill.
struct Run<'a> {
    flow: &'a Flow,
    f: Fixture,
    serve: Option<ServeProcess>,
    shim: Option<PathBuf>,
    volume_id: Option<String>,
    snapshot_id: Option<String>,
    restored_id: Option<String>,
    clone_id: Option<String>,
    /// The group snapshot's id and its member snapshots' ids, sorted.
    group: Option<(String, Vec<String>)>,
    device: Option<String>,
    kills: u32,
    /// The fault trace, when this run traces.
    trace: Option<PathBuf>,
    /// Which lines of the trace were written during the flow's calls (not start-up, not checks).
    during_steps: Vec<std::ops::Range<usize>>,
    /// The driver's storage after each step.
    storage_after: Vec<BTreeSet<String>>,
}

impl<'a> Run<'a> {
    fn new(flow: &'a Flow) -> Self {
        (flow.reset)();
        let f = Fixture::new(flow.driver, flow.grants.clone());
        let shim = flow.grants.flex.then(|| crate::install_flex_shim(&f));
        for dir in [
            "kubelet/staging",
            "kubelet/target",
            "kubelet/devmount",
            "kubelet/pod",
        ] {
            std::fs::create_dir_all(f.dir.path().join(dir)).unwrap();
        }
        Self {
            flow,
            f,
            serve: None,
            shim,
            volume_id: None,
            snapshot_id: None,
            restored_id: None,
            clone_id: None,
            group: None,
            device: None,
            kills: 0,
            trace: None,
            during_steps: Vec::new(),
            storage_after: Vec::new(),
        }
    }

    fn socket(&self) -> PathBuf {
        if self.shim.is_some() {
            self.f.flex_socket()
        } else {
            self.f.csi_socket()
        }
    }

    /// Starts the host, with `env` (the fault plan) set.
    fn start(&mut self, env: &[(&str, String)]) {
        let socket = self.socket();
        self.serve = Some(ServeProcess::start_with(&self.f, &socket, |cmd| {
            for (k, v) in env {
                cmd.env(k, v);
            }
        }));
    }

    fn alive(&mut self) -> bool {
        self.serve.as_mut().is_some_and(ServeProcess::alive)
    }

    /// Whether the host is still up after a call failed: a host killed
    /// mid-call closes its sockets a moment before it can be reaped.
    fn survived(&mut self) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.alive() {
            if std::time::Instant::now() > until {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    }

    /// Lines in the trace file so far.
    fn traced(&self) -> usize {
        self.trace
            .as_ref()
            .and_then(|t| std::fs::read_to_string(t).ok())
            .map_or(0, |s| s.lines().count())
    }

    fn path(&self, name: &str) -> String {
        self.f
            .dir
            .path()
            .join("kubelet")
            .join(name)
            .display()
            .to_string()
    }

    /// Runs the flow; after a kill, restarts the host (with no fault plan)
    /// and retries the call that was cut off, as kubelet would.
    async fn flow(&mut self) {
        for &step in self.flow.steps {
            let mut attempts = 0;
            loop {
                attempts += 1;
                let before = self.traced();
                let result = self.step(step).await;
                let down = if result.is_ok() {
                    !self.alive()
                } else {
                    !self.survived()
                };
                self.during_steps.push(before..self.traced());
                if down {
                    // Died in this call (or just after answering it): a
                    // supervisor starts it again and kubelet calls again.
                    self.kills += 1;
                    self.start(&[]);
                    self.check_listing().await;
                    if result.is_ok() {
                        break;
                    }
                    continue;
                }
                match result {
                    Ok(()) => break,
                    Err(e) => panic!("{step:?} failed with the host up (attempt {attempts}): {e}"),
                }
            }
            if step == Step::Create && self.flow.lists {
                let listed = self.list().await;
                assert_eq!(listed.len(), 1, "one volume for one name: {listed:?}");
            }
            self.storage_after.push((self.flow.storage)(&self.f));
        }
    }

    /// One call; `Err` is what the caller saw.
    async fn step(&mut self, step: Step) -> Result<(), String> {
        match step {
            Step::Flex(op) => self.flex(op),
            _ => self.csi(step).await.map_err(|s| format!("{s:?}")),
        }
    }

    fn flex(&mut self, op: &str) -> Result<(), String> {
        let mut opts = serde_json::json!({
            "kubernetes.io/fsType": "",
            "kubernetes.io/readwrite": "rw",
            "kubernetes.io/pvOrVolumeName": VOLUME,
        });
        for (k, v) in self.flow.flex_options {
            opts[*k] = (*v).into();
        }
        let opts = opts.to_string();
        let (devmount, pod) = (self.path("devmount"), self.path("pod"));
        let device = self.device.clone().unwrap_or_default();
        let args: Vec<&str> = match op {
            "init" => vec!["init"],
            "attach" => vec!["attach", &opts, NODE],
            "waitforattach" => vec!["waitforattach", &device, &opts],
            "mountdevice" => vec!["mountdevice", &devmount, &device, &opts],
            "mount" => vec!["mount", &pod, &opts],
            "unmount" => vec!["unmount", &pod],
            "unmountdevice" => vec!["unmountdevice", &devmount],
            "detach" => vec!["detach", VOLUME, NODE],
            other => panic!("flex call-out `{other}`"),
        };
        let out = std::process::Command::new(self.shim.as_ref().expect("a Flex flow"))
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("exec the shim");
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("kubelet could not parse {:?}: {e}", out.stdout))?;
        if reply["status"] != "Success" {
            return Err(reply.to_string());
        }
        if op == "attach" {
            self.device = reply["device"].as_str().map(str::to_owned);
        }
        Ok(())
    }

    fn capability(&self) -> VolumeCapability {
        use volume_capability::AccessType;
        VolumeCapability {
            access_type: Some(if self.flow.block {
                AccessType::Block(Default::default())
            } else {
                AccessType::Mount(Default::default())
            }),
            access_mode: Some(volume_capability::AccessMode {
                mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
            }),
        }
    }

    /// The flow's CreateVolume parameters, for its first volume and every
    /// one made from it.
    fn parameters(&self) -> HashMap<String, String> {
        self.flow
            .parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    async fn channel(&self) -> Result<tonic::transport::Channel, tonic::Status> {
        wasmvol::conformance::connect(&self.f.csi_socket(), None)
            .await
            .map_err(|e| tonic::Status::unavailable(format!("{e:#}")))
    }

    async fn csi(&mut self, step: Step) -> Result<(), tonic::Status> {
        let ch = self.channel().await?;
        let (mut c, mut g, mut n) = (
            ControllerClient::new(ch.clone()),
            GroupControllerClient::new(ch.clone()),
            NodeClient::new(ch),
        );
        let id = self
            .volume_id
            .clone()
            .unwrap_or_else(|| "csi-kill-0123".into());
        let cap = Some(self.capability());
        let staging = if self.flow.steps.contains(&Step::Stage) {
            self.path("staging")
        } else {
            String::new()
        };
        let target = if self.flow.block {
            // A raw block target is a file kubelet creates.
            let t = self.f.dir.path().join("kubelet/target/dev");
            std::fs::write(&t, b"").unwrap();
            t.display().to_string()
        } else {
            self.path("target")
        };
        match step {
            Step::Snapshot => {
                let snap = c
                    .create_snapshot(CreateSnapshotRequest {
                        source_volume_id: id,
                        name: "snap-kill".into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .snapshot
                    .expect("a snapshot");
                same_answer(&mut self.snapshot_id, snap.snapshot_id, "snapshot");
            }
            Step::Create => {
                let made = self.create(&mut c, VOLUME.into(), None).await?;
                same_answer(&mut self.volume_id, made, "create");
            }
            Step::Restore => {
                let snapshot_id = self.snapshot_id.clone().expect("snapshot first");
                let source =
                    volume_content_source::Type::Snapshot(volume_content_source::SnapshotSource {
                        snapshot_id,
                    });
                let made = self
                    .create(&mut c, format!("{VOLUME}-restored"), Some(source))
                    .await?;
                same_answer(&mut self.restored_id, made, "restore");
            }
            Step::Clone => {
                let source =
                    volume_content_source::Type::Volume(volume_content_source::VolumeSource {
                        volume_id: id,
                    });
                let made = self
                    .create(&mut c, format!("{VOLUME}-clone"), Some(source))
                    .await?;
                same_answer(&mut self.clone_id, made, "clone");
            }
            Step::Delete | Step::DeleteRestored | Step::DeleteClone => {
                let volume_id = match step {
                    Step::Delete => id,
                    Step::DeleteRestored => self.restored_id.clone().expect("restored first"),
                    _ => self.clone_id.clone().expect("clone first"),
                };
                c.delete_volume(DeleteVolumeRequest {
                    volume_id,
                    ..Default::default()
                })
                .await?;
            }
            Step::DeleteSnapshot => {
                c.delete_snapshot(DeleteSnapshotRequest {
                    snapshot_id: self.snapshot_id.clone().expect("snapshot first"),
                    ..Default::default()
                })
                .await?;
            }
            Step::Modify => {
                c.controller_modify_volume(ControllerModifyVolumeRequest {
                    volume_id: id,
                    mutable_parameters: [("readOnly".to_owned(), "true".to_owned())].into(),
                    ..Default::default()
                })
                .await?;
            }
            Step::GroupSnapshot => {
                let source_volume_ids = std::iter::once(id)
                    .chain(self.clone_id.clone())
                    .chain(self.restored_id.clone())
                    .collect::<Vec<_>>();
                let members = source_volume_ids.len();
                let made = g
                    .create_volume_group_snapshot(CreateVolumeGroupSnapshotRequest {
                        name: "group-kill".into(),
                        source_volume_ids,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .group_snapshot
                    .expect("a group snapshot");
                let mut snapshots: Vec<String> =
                    made.snapshots.into_iter().map(|s| s.snapshot_id).collect();
                snapshots.sort();
                assert_eq!(snapshots.len(), members, "a snapshot per member");
                let answer = (made.group_snapshot_id, snapshots);
                if let Some(before) = &self.group {
                    assert_eq!(before, &answer, "a retried group snapshot answers the same");
                }
                self.group = Some(answer);
            }
            Step::DeleteGroupSnapshot => {
                let (group_snapshot_id, snapshot_ids) =
                    self.group.clone().expect("group snapshot first");
                g.delete_volume_group_snapshot(DeleteVolumeGroupSnapshotRequest {
                    group_snapshot_id,
                    snapshot_ids,
                    ..Default::default()
                })
                .await?;
            }
            Step::Expand => {
                let grown = n
                    .node_expand_volume(NodeExpandVolumeRequest {
                        volume_id: id,
                        volume_path: target,
                        capacity_range: Some(CapacityRange {
                            required_bytes: 2 * SIZE,
                            limit_bytes: 0,
                        }),
                        staging_target_path: staging,
                        volume_capability: cap,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                assert!(
                    grown.capacity_bytes >= 2 * SIZE,
                    "grown to at least the size asked: {grown:?}"
                );
            }
            Step::ControllerPublish => {
                c.controller_publish_volume(ControllerPublishVolumeRequest {
                    volume_id: id,
                    node_id: NODE.into(),
                    volume_capability: cap,
                    ..Default::default()
                })
                .await?;
            }
            Step::ControllerUnpublish => {
                c.controller_unpublish_volume(ControllerUnpublishVolumeRequest {
                    volume_id: id,
                    node_id: NODE.into(),
                    ..Default::default()
                })
                .await?;
            }
            Step::Stage => {
                n.node_stage_volume(NodeStageVolumeRequest {
                    volume_id: id,
                    staging_target_path: staging,
                    volume_capability: cap,
                    ..Default::default()
                })
                .await?;
            }
            Step::Unstage => {
                n.node_unstage_volume(NodeUnstageVolumeRequest {
                    volume_id: id,
                    staging_target_path: staging,
                })
                .await?;
            }
            Step::Publish => {
                let volume_context: HashMap<String, String> = if self.flow.ephemeral {
                    [("csi.storage.k8s.io/ephemeral", "true"), ("size", "1Mi")]
                        .into_iter()
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect()
                } else {
                    HashMap::new()
                };
                n.node_publish_volume(NodePublishVolumeRequest {
                    volume_id: id,
                    staging_target_path: staging,
                    target_path: target,
                    volume_capability: cap,
                    volume_context,
                    ..Default::default()
                })
                .await?;
            }
            Step::Unpublish => {
                n.node_unpublish_volume(NodeUnpublishVolumeRequest {
                    volume_id: id,
                    target_path: target,
                })
                .await?;
            }
            Step::Flex(_) => unreachable!("a CSI step"),
        }
        Ok(())
    }

    /// CreateVolume of the flow's size and parameters named `name`, from
    /// `source` if any; the id it answered.
    async fn create(
        &self,
        c: &mut ControllerClient<tonic::transport::Channel>,
        name: String,
        source: Option<volume_content_source::Type>,
    ) -> Result<String, tonic::Status> {
        let v = c
            .create_volume(CreateVolumeRequest {
                name,
                capacity_range: Some(CapacityRange {
                    required_bytes: SIZE,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![self.capability()],
                parameters: self.parameters(),
                volume_content_source: source.map(|t| VolumeContentSource { r#type: Some(t) }),
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(v.volume.expect("a volume").volume_id)
    }

    /// The volumes ListVolumes lists (none for a flow without CreateVolume).
    async fn list(&self) -> Vec<list_volumes_response::Entry> {
        if !self.flow.lists || !self.flow.steps.contains(&Step::Create) {
            return Vec::new();
        }
        let ch = self.channel().await.expect("the host is up");
        ControllerClient::new(ch)
            .list_volumes(ListVolumesRequest::default())
            .await
            .expect("list volumes")
            .into_inner()
            .entries
    }

    /// After a restart: every volume listed is whole (its storage there);
    /// one whose delete was cut off is either whole or not listed at all.
    async fn check_listing(&self) {
        for entry in self.list().await {
            let abnormal = entry
                .status
                .and_then(|s| s.volume_condition)
                .filter(|c| c.abnormal);
            assert!(abnormal.is_none(), "listed but broken: {abnormal:?}");
        }
    }

    /// Audit records per operation made by the host process `pid`.
    fn audited_by(&self, pid: i32) -> HashMap<String, usize> {
        let mut by_op = HashMap::new();
        let mark = format!("-{pid}-");
        for r in self.f.audit() {
            if r["request_id"]
                .as_str()
                .is_some_and(|id| id.contains(&mark))
            {
                let op = r["operation"].as_str().unwrap_or_default().to_owned();
                *by_op.entry(op).or_default() += 1;
            }
        }
        by_op
    }

    /// Stops the host and reads what the flow left.
    async fn finish(mut self) -> (Leftovers, u32) {
        // Let this runtime close the channels of the last calls, so that the
        // host's graceful stop is not left waiting on a peer that cannot answer.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(self.serve.take());
        assert!(
            self.f.mounts().is_empty(),
            "mounts left: {:?}",
            self.f.mounts()
        );
        let loops = loops_under(self.f.dir.path());
        assert!(loops.is_empty(), "loop devices left: {loops:?}");
        // Every audit line whole and JSON (Fixture::audit panics otherwise).
        assert!(!self.f.audit().is_empty(), "the audit log has the flow");
        let storage = (self.flow.storage)(&self.f);
        let store =
            wasmvol::store::state::StateStore::open(&self.f.dir.path().join("state/state.redb"))
                .expect("the store opens after the kills");
        let mut records = BTreeSet::new();
        let driver = self.flow.driver;
        for ns in [
            driver.to_owned(),
            format!("@csi/{driver}"),
            format!("@flex/{driver}"),
        ] {
            for (key, _) in store.list(&ns, "").expect("list records") {
                records.insert(format!("{ns} {key}"));
            }
        }
        (Leftovers { storage, records }, self.kills)
    }
}

/// Keeps `id` in `slot`: a retried `call` (after a kill) must answer the
/// id the cut-off one did, when that one answered at all.
fn same_answer(slot: &mut Option<String>, id: String, call: &str) {
    if let Some(before) = slot {
        assert_eq!(before, &id, "a retried {call} answers the same");
    }
    *slot = Some(id);
}

/// Every path beneath `dir`, relative to it (none if it does not exist),
/// each file with its size.
pub fn walk(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_file() {
                // With its size: a copy cut short is not a whole one.
                let len = e.metadata().map_or(0, |m| m.len());
                out.insert(format!("{name} ({len} bytes)"));
            } else {
                out.insert(name);
            }
            if ft.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Runs `flow` once uninterrupted, tracing the points it passes; then once
/// per point reached during a call (with [`Flow::changes_only`], per point
/// that may change state), killed there, checking each run against the
/// uninterrupted one. Returns how many points it killed at.
pub fn matrix(flow: Flow) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut clean = Run::new(&flow);
        let trace_dir = tempfile::tempdir().unwrap();
        let trace = trace_dir.path().join("points");
        clean.trace = Some(trace.clone());
        clean.start(&[("WASMVOL_FAULT_TRACE", trace.display().to_string())]);
        clean.flow().await;
        let during = std::mem::take(&mut clean.during_steps);
        let storage_after = std::mem::take(&mut clean.storage_after);
        let (expected, kills) = clean.finish().await;
        assert_eq!(kills, 0);
        let points: Vec<String> = std::fs::read_to_string(&trace)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        // The n-th time each point is reached since the host started; only
        // those reached during the flow's calls are killed at.
        let mut seen: HashMap<&str, u32> = HashMap::new();
        let mut plan = Vec::new();
        let mut unchanged = Vec::new();
        for (i, p) in points.iter().enumerate() {
            let n = seen.entry(p).or_default();
            *n += 1;
            if during.iter().any(|r| r.contains(&i)) {
                if flow.changes_only && !changes(p) {
                    unchanged.push(format!("{p}#{n}"));
                } else {
                    plan.push((i, format!("{p}#{n}")));
                }
            }
        }
        assert!(
            plan.iter().any(|(_, p)| p.starts_with("capability:"))
                && plan.iter().any(|(_, p)| p.starts_with("called:")),
            "the flow passes capability and driver-call points: {plan:?}"
        );
        let names: Vec<&str> = plan.iter().map(|(_, p)| p.as_str()).collect();
        eprintln!("{}: {} kill points: {names:?}", flow.driver, plan.len());
        if !unchanged.is_empty() {
            eprintln!(
                "{}: {} more points change nothing a kill before them would not: {unchanged:?}",
                flow.driver,
                unchanged.len()
            );
        }
        for (killed_at, at) in &plan {
            let began = std::time::Instant::now();
            let mut run = Run::new(&flow);
            run.start(&[("WASMVOL_FAULT_AT", at.clone())]);
            let killed = run.serve.as_ref().expect("started").pid().as_raw();
            run.flow().await;
            assert_eq!(
                run.storage_after, storage_after,
                "killed at {at}: the storage after each step differs from the uninterrupted flow's"
            );
            let audited = run.audited_by(killed);
            let (left, kills) = run.finish().await;
            assert_eq!(kills, 1, "killed once at {at}");
            // Every capability operation done before the kill is in the
            // audit log, though its call never ended.
            let mut done: HashMap<&str, usize> = HashMap::new();
            for p in &points[..*killed_at] {
                if let Some(op) = p.strip_prefix("capability:") {
                    *done.entry(op).or_default() += 1;
                }
            }
            for (op, n) in done {
                let logged = audited.get(op).copied().unwrap_or(0);
                assert!(
                    logged >= n,
                    "killed at {at}: {n} `{op}` done before the kill, {logged} audited"
                );
            }
            assert_eq!(
                left, expected,
                "killed at {at}: leftovers differ from the uninterrupted flow"
            );
            eprintln!(
                "{}: killed at {at}: finished and checked in {:.1} s",
                flow.driver,
                began.elapsed().as_secs_f64()
            );
        }
        plan.len()
    })
}
