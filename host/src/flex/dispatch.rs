//! Each FlexVolume call-out mapped onto the driver world, the same exports
//! CSI uses: attach onto controller publish, mountdevice onto node stage,
//! mount onto node publish, and so on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::callout::CallOut;
use super::options::FlexOptions;
use super::records::{Attached, DeviceMounted, FlexRecords, Mounted};
use super::reply::{Capabilities, Reply};
use crate::bindings::types::{CapacityRange, Feature};
use crate::bindings::{controller, node};
use crate::call::{error_parts, CallError, Operation, Outcome, WithPaths};
use crate::host_path::derived_dir;
use crate::placement::{repeat_of, Placement, Repeat};
use crate::policy::FlexName;
use crate::runtime::live::LiveDriver;
use crate::store::records::HostRecords;
use crate::sys::mount::is_mount_point;
use crate::volume_locks::{Held, VolumeLocks};

/// Publish-context key a driver sets to name the device it attached.
pub const DEVICE_KEY: &str = "devicePath";

/// One driver offered to FlexVolume shims.
pub struct FlexDriver {
    driver: Arc<LiveDriver>,
    name: FlexName,
    records: FlexRecords,
    /// Host-owned root of the staging dirs the host keeps for drivers that
    /// stage but do not attach; each is named by [`derived_dir`].
    staging_root: PathBuf,
    /// One call-out at a time per volume: a second exec waits its turn.
    locks: VolumeLocks,
    next_request: AtomicU64,
}

/// A failed step, already worded for kubelet.
struct Failed(Reply);

impl From<CallError> for Failed {
    fn from(e: CallError) -> Self {
        Failed(Reply::failure(match e {
            CallError::Driver(d) => {
                let (kind, _, message) = error_parts(&d);
                format!("{kind}: {message}")
            }
            other => other.to_string(),
        }))
    }
}

impl From<crate::store::records::RecordError> for Failed {
    fn from(e: crate::store::records::RecordError) -> Self {
        Failed(Reply::failure(e.to_string()))
    }
}

fn io_failed(what: &str, path: &Path, e: std::io::Error) -> Failed {
    Failed(Reply::failure(format!("{what} {}: {e}", path.display())))
}

fn bad_options(m: String) -> Failed {
    Failed(Reply::failure(m))
}

impl FlexDriver {
    /// Offers `driver` as Flex driver `name`, keeping its records in `records`.
    pub fn new(
        driver: Arc<LiveDriver>,
        name: FlexName,
        records: HostRecords,
        staging_root: PathBuf,
    ) -> Self {
        Self {
            driver,
            name,
            records: FlexRecords::new(records),
            staging_root,
            locks: VolumeLocks::default(),
            next_request: AtomicU64::new(1),
        }
    }

    /// Waits for the volume named `volume` to be free, then holds it for
    /// this call-out: two kubelet execs on one volume never interleave.
    /// A call-out makes at most three driver calls, so it waits for up to
    /// four deadlines before answering that the volume is busy.
    fn hold(&self, volume: &str) -> Result<Held, Failed> {
        let wait = Duration::from_millis(self.driver.version().policy().limits.deadline_ms) * 4;
        self.locks
            .claim_within(format!("volume/{volume}"), wait)
            .map_err(|busy| Failed(Reply::failure(busy.to_string())))
    }

    /// The driver whose versions serve this Flex driver.
    pub fn live(&self) -> &Arc<LiveDriver> {
        &self.driver
    }

    /// `vendor/name` of this driver.
    pub fn name(&self) -> &FlexName {
        &self.name
    }

    fn has(&self, f: Feature) -> bool {
        self.driver.version().info().features.contains(&f)
    }

    fn call(&self, op: Operation) -> Result<Outcome, CallError> {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.driver
            .version()
            .call(&format!("flex-{}-{n}", std::process::id()), op)
    }

    /// Runs one call-out to its answer, every driver call of it on one
    /// driver version (a reload meanwhile serves the next call-out).
    pub fn handle(&self, call: CallOut) -> Reply {
        let name = call.name();
        match self.driver.pinned_here(|| self.run(call)) {
            Ok(reply) => reply,
            Err(Failed(mut reply)) => {
                if let Some(m) = reply.message.take() {
                    reply.message = Some(format!("{name}: {m}"));
                }
                reply
            }
        }
    }

    fn run(&self, call: CallOut) -> Result<Reply, Failed> {
        let attaches = self.has(Feature::PublishUnpublishVolume);
        let stages = self.has(Feature::StageUnstageVolume);
        match call {
            CallOut::Init => Ok(Reply {
                capabilities: Some(Capabilities {
                    attach: attaches,
                    selinux_relabel: self.has(Feature::SelinuxRelabel),
                    supports_metrics: self.has(Feature::VolumeStats),
                    fs_group: self.has(Feature::FsGroup),
                    requires_fs_resize: self.has(Feature::ExpandVolume),
                }),
                ..Reply::success()
            }),
            CallOut::GetVolumeName(o) => Ok(Reply {
                volume_name: Some(o.volume_name().map_err(|m| Failed(Reply::failure(m)))?),
                ..Reply::success()
            }),
            CallOut::Attach { options, node } => {
                if !attaches {
                    return Ok(Reply::not_supported("the driver does not attach"));
                }
                let volume = options.volume_name().map_err(bad_options)?;
                let _held = self.hold(&volume)?;
                let volume_id = self.ensure_volume(&options)?;
                let ctx = self
                    .call(Operation::ControllerPublish(
                        controller::ControllerPublishRequest {
                            volume_id: volume_id.clone(),
                            node_id: node.clone(),
                            volume_capability: options.capability(),
                            readonly: options.read_only,
                            secrets: Vec::new(),
                            volume_context: options.volume_context(),
                        },
                    ))?
                    .into_publish_context()?;
                let device = ctx
                    .iter()
                    .find(|(k, _)| k == DEVICE_KEY)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                self.records.set_attached(
                    &volume,
                    &node,
                    Some(&Attached {
                        volume_id,
                        device: device.clone(),
                    }),
                )?;
                Ok(Reply {
                    device: Some(device),
                    ..Reply::success()
                })
            }
            CallOut::WaitForAttach { device, options: _ } => {
                if !attaches {
                    return Ok(Reply::not_supported("the driver does not attach"));
                }
                Ok(Reply {
                    device: Some(device),
                    ..Reply::success()
                })
            }
            CallOut::IsAttached { options, node } => {
                if !attaches {
                    return Ok(Reply::not_supported("the driver does not attach"));
                }
                let volume = options.volume_name().map_err(bad_options)?;
                let record = self.records.attached(&volume, &node)?;
                Ok(Reply {
                    attached: Some(record.is_some()),
                    ..Reply::success()
                })
            }
            CallOut::Detach { volume, node } => {
                if !attaches {
                    return Ok(Reply::not_supported("the driver does not attach"));
                }
                let _held = self.hold(&volume)?;
                let record = self.records.attached(&volume, &node)?;
                let volume_id = record.map_or_else(|| volume.clone(), |r| r.volume_id);
                self.call(Operation::ControllerUnpublish(
                    controller::ControllerUnpublishRequest {
                        volume_id,
                        node_id: node.clone(),
                        secrets: Vec::new(),
                    },
                ))?;
                self.records.set_attached(&volume, &node, None)?;
                Ok(Reply::success())
            }
            CallOut::MountDevice {
                dir,
                device,
                options,
            } => {
                if !stages {
                    return Ok(Reply::not_supported("the driver does not stage"));
                }
                let volume_name = options.volume_name().map_err(bad_options)?;
                let _held = self.hold(&volume_name)?;
                let volume_id = self.ensure_volume(&options)?;
                self.stage(
                    &volume_id,
                    &dir,
                    &options,
                    vec![(DEVICE_KEY.to_owned(), device)],
                )?;
                let record = DeviceMounted {
                    volume_name,
                    volume_id,
                };
                self.records
                    .set_device_mounted(&dir, &record.volume_id, Some(&record))?;
                Ok(Reply::success())
            }
            CallOut::UnmountDevice { dir } => {
                if !stages {
                    return Ok(Reply::not_supported("the driver does not stage"));
                }
                if let Some(found) = self.records.device_mounted(&dir)? {
                    let _held = self.hold(&found.volume_name)?;
                    // Read again under the lock: a call that held it may have changed it.
                    if let Some(record) = self.records.device_mounted(&dir)? {
                        self.unstage(&record.volume_id, &dir)?;
                        self.records
                            .set_device_mounted(&dir, &record.volume_id, None)?;
                    }
                }
                Ok(Reply::success())
            }
            CallOut::Mount { dir, options } => self.mount(&dir, &options, attaches, stages),
            CallOut::Unmount { dir } => {
                // Held by volume when the record names one, else by the dir.
                let lock_key = match self.records.mounted(&dir)? {
                    Some(m) if !m.volume_name.is_empty() => m.volume_name,
                    _ => format!("dir:{}", dir.display()),
                };
                let _held = self.hold(&lock_key)?;
                let record = self.records.mounted(&dir)?;
                let volume_id = record
                    .as_ref()
                    .map(|r| r.volume_id.clone())
                    .unwrap_or_default();
                if std::fs::symlink_metadata(&dir).is_ok() {
                    self.call(Operation::NodeUnpublish(WithPaths {
                        target_path: dir.clone(),
                        staging_path: None,
                        request: node::UnpublishRequest {
                            volume_id: volume_id.clone(),
                        },
                    }))?;
                }
                if let Some(staging) = record.and_then(|r| r.host_staging) {
                    // Only ever the dir the host derives for this volume: a
                    // record written by an older host (which joined the id
                    // onto its root) is not trusted to name a path.
                    if staging == derived_dir(&self.staging_root, &volume_id) {
                        self.unstage(&volume_id, &staging)?;
                        let _ = std::fs::remove_dir(&staging);
                    } else {
                        tracing::warn!(driver = self.driver.version().name(), staging = %staging.display(),
                            "ignoring a host staging dir the host did not derive");
                    }
                }
                self.records.set_mounted(&dir, None)?;
                Ok(Reply::success())
            }
            CallOut::ExpandVolume {
                options, new_size, ..
            } => {
                if !self.has(Feature::ExpandVolume) {
                    return Ok(Reply::not_supported("the driver does not expand volumes"));
                }
                let _held = self.hold(&options.volume_name().map_err(bad_options)?)?;
                let volume_id = self.ensure_volume(&options)?;
                let expanded = self
                    .call(Operation::ControllerExpand(
                        controller::ControllerExpandRequest {
                            volume_id,
                            capacity_range: Some(CapacityRange {
                                required_bytes: new_size,
                                limit_bytes: 0,
                            }),
                            secrets: Vec::new(),
                            volume_capability: Some(options.capability()),
                        },
                    ))?
                    .into_expanded()?;
                Ok(Reply {
                    volume_new_size: Some(expanded.capacity_bytes),
                    ..Reply::success()
                })
            }
            CallOut::ExpandFs {
                options,
                device_mount_dir,
                new_size,
                ..
            } => {
                if !self.has(Feature::ExpandVolume) {
                    return Ok(Reply::not_supported("the driver does not expand volumes"));
                }
                let _held = self.hold(&options.volume_name().map_err(bad_options)?)?;
                let volume_id = self.ensure_volume(&options)?;
                self.call(Operation::NodeExpand(WithPaths {
                    target_path: device_mount_dir,
                    staging_path: None,
                    request: node::NodeExpandRequest {
                        volume_id,
                        capacity_range: Some(CapacityRange {
                            required_bytes: new_size,
                            limit_bytes: 0,
                        }),
                        volume_capability: Some(options.capability()),
                        secrets: Vec::new(),
                    },
                }))?;
                Ok(Reply::success())
            }
        }
    }

    /// Flex has no provisioning step: the volume is created (idempotently)
    /// from the options by drivers that provision; others take the name as id.
    fn ensure_volume(&self, o: &FlexOptions) -> Result<String, Failed> {
        let name = o.volume_name().map_err(bad_options)?;
        if !self.has(Feature::CreateDeleteVolume) {
            return Ok(name);
        }
        let volume = self
            .call(Operation::CreateVolume(controller::CreateVolumeRequest {
                name,
                capacity_range: None,
                volume_capabilities: vec![o.capability()],
                parameters: o.parameters.clone(),
                secrets: o.secrets.clone(),
                content_source: None,
                accessibility_requirements: None,
                mutable_parameters: Vec::new(),
            }))?
            .into_volume()?;
        Ok(volume.volume_id)
    }

    fn stage(
        &self,
        volume_id: &str,
        dir: &Path,
        o: &FlexOptions,
        publish_context: Vec<(String, String)>,
    ) -> Result<(), Failed> {
        std::fs::create_dir_all(dir).map_err(|e| io_failed("creating", dir, e))?;
        if is_mount_point(dir).unwrap_or(false) {
            return Ok(());
        }
        self.call(Operation::NodeStage(WithPaths {
            target_path: dir.to_owned(),
            staging_path: None,
            request: node::StageRequest {
                volume_id: volume_id.to_owned(),
                publish_context,
                volume_capability: o.capability(),
                secrets: o.secrets.clone(),
                volume_context: o.volume_context(),
            },
        }))?;
        Ok(())
    }

    fn unstage(&self, volume_id: &str, dir: &Path) -> Result<(), Failed> {
        if std::fs::symlink_metadata(dir).is_err() {
            return Ok(());
        }
        self.call(Operation::NodeUnstage(WithPaths {
            target_path: dir.to_owned(),
            staging_path: None,
            request: node::UnstageRequest {
                volume_id: volume_id.to_owned(),
            },
        }))?;
        Ok(())
    }

    fn mount(
        &self,
        dir: &Path,
        o: &FlexOptions,
        attaches: bool,
        stages: bool,
    ) -> Result<Reply, Failed> {
        let volume_name = o.volume_name().map_err(bad_options)?;
        let _held = self.hold(&volume_name)?;
        // Another volume at this dir is refused before anything is created for this one.
        if let Some(m) = self.records.mounted(dir)? {
            if !m.volume_name.is_empty() && m.volume_name != volume_name {
                return Err(Failed(Reply::failure(format!(
                    "{} already holds volume {} (`{}`)",
                    dir.display(),
                    m.volume_id,
                    m.volume_name
                ))));
            }
        }
        let volume_id = self.ensure_volume(o)?;
        // Kubelet makes the dir and skips mounted ones; repeat both for direct callers.
        std::fs::create_dir_all(dir).map_err(|e| io_failed("creating", dir, e))?;
        let placement = Placement::new(&volume_id, &o.capability(), o.read_only);
        // The same mount repeated is done; another volume or mode at this
        // dir is refused. With no record, or one written before the mount
        // (below), done or not, what follows is idempotent (staged and
        // mounted dirs are found, the driver's publish finds its target
        // mounted) and ends in the record: a host killed between a mount
        // and its record is finished so, and its unmount finds the record.
        if let Some(recorded) = self.records.mounted(dir)?.and_then(|m| m.placement) {
            match repeat_of(Some(&recorded), &placement, dir) {
                Repeat::AlreadyDone => return Ok(Reply::success()),
                Repeat::Conflict(m) => return Err(Failed(Reply::failure(m))),
                Repeat::Proceed => {}
            }
        }
        let (staging, host_staging) = match (stages, attaches) {
            (false, _) => (None, None),
            // Kubelet ran mountdevice: find where.
            (true, true) => (self.records.device_dir_of(&volume_id)?, None),
            // No attach, so no mountdevice: the host stages for the driver,
            // in a dir it names itself beneath its own root (never a path
            // made of the volume id, which the driver or a pod spec chose).
            (true, false) => {
                let s = derived_dir(&self.staging_root, &volume_id);
                // Recorded (durably) before staging: an unmount after a
                // host killed anywhere from here on still finds the
                // staging mount to unstage.
                self.records.set_mounted(
                    dir,
                    Some(&Mounted {
                        volume_name: volume_name.clone(),
                        volume_id: volume_id.clone(),
                        host_staging: Some(s.clone()),
                        placement: None,
                    }),
                )?;
                self.stage(&volume_id, &s, o, Vec::new())?;
                (Some(s.clone()), Some(s))
            }
        };
        self.call(Operation::NodePublish(WithPaths {
            target_path: dir.to_owned(),
            staging_path: staging,
            request: node::PublishRequest {
                volume_id: volume_id.clone(),
                publish_context: Vec::new(),
                volume_capability: o.capability(),
                readonly: o.read_only,
                secrets: o.secrets.clone(),
                volume_context: o.volume_context(),
            },
        }))?;
        self.records.set_mounted(
            dir,
            Some(&Mounted {
                volume_name,
                volume_id,
                host_staging,
                placement: Some(placement),
            }),
        )?;
        Ok(Reply::success())
    }
}
