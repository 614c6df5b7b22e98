//! Each FlexVolume call-out mapped onto the driver world, the same exports
//! CSI uses: attach onto controller publish, mountdevice onto node stage,
//! mount onto node publish, and so on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::callout::CallOut;
use super::options::FlexOptions;
use super::reply::{Capabilities, Reply};
use crate::bindings::types::{CapacityRange, DriverError, Feature};
use crate::bindings::{controller, node};
use crate::call::{CallError, Operation, Outcome, WithPaths};
use crate::driver::LoadedDriver;
use crate::host_records::{HostRecords, Persist};
use crate::policy::FlexName;
use crate::sys::mount::is_mount_point;

/// Publish-context key a driver sets to name the device it attached.
pub const DEVICE_KEY: &str = "devicePath";

/// One driver offered to FlexVolume shims.
pub struct FlexDriver {
    driver: Arc<LoadedDriver>,
    name: FlexName,
    records: HostRecords,
    /// Staging dirs the host keeps for drivers that stage but do not attach.
    staging_root: PathBuf,
    next_request: AtomicU64,
}

#[derive(Serialize, Deserialize)]
struct Attached {
    volume_id: String,
    device: String,
}

#[derive(Serialize, Deserialize)]
struct Mounted {
    volume_id: String,
    /// Staging dir the host made for this mount (drivers without attach).
    host_staging: Option<PathBuf>,
}

/// A failed step, already worded for kubelet.
struct Failed(Reply);

impl From<CallError> for Failed {
    fn from(e: CallError) -> Self {
        Failed(Reply::failure(match e {
            CallError::Driver(d) => describe(&d),
            other => other.to_string(),
        }))
    }
}

impl From<crate::host_records::RecordError> for Failed {
    fn from(e: crate::host_records::RecordError) -> Self {
        Failed(Reply::failure(e.to_string()))
    }
}

fn describe(e: &DriverError) -> String {
    let (code, m) = match e {
        DriverError::InvalidArgument(m) => ("invalid argument", m),
        DriverError::NotFound(m) => ("not found", m),
        DriverError::AlreadyExists(m) => ("already exists", m),
        DriverError::FailedPrecondition(m) => ("failed precondition", m),
        DriverError::ResourceExhausted(m) => ("resource exhausted", m),
        DriverError::OutOfRange(m) => ("out of range", m),
        DriverError::Aborted(m) => ("aborted", m),
        DriverError::Unavailable(m) => ("unavailable", m),
        DriverError::PermissionDenied(m) => ("permission denied", m),
        DriverError::Unimplemented(m) => ("unimplemented", m),
        DriverError::Internal(m) => ("internal", m),
    };
    format!("{code}: {m}")
}

fn io_failed(what: &str, path: &Path, e: std::io::Error) -> Failed {
    Failed(Reply::failure(format!("{what} {}: {e}", path.display())))
}

fn key(prefix: &str, path: &Path) -> String {
    format!("{prefix}/{}", path.display())
}

impl FlexDriver {
    /// Offers `driver` as Flex driver `name`, keeping its records in `records`.
    pub fn new(
        driver: Arc<LoadedDriver>,
        name: FlexName,
        records: HostRecords,
        staging_root: PathBuf,
    ) -> Self {
        Self {
            driver,
            name,
            records,
            staging_root,
            next_request: AtomicU64::new(1),
        }
    }

    /// `vendor/name` of this driver.
    pub fn name(&self) -> &FlexName {
        &self.name
    }

    fn has(&self, f: Feature) -> bool {
        self.driver.info().features.contains(&f)
    }

    fn call(&self, op: Operation) -> Result<Outcome, CallError> {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.driver
            .call(&format!("flex-{}-{n}", std::process::id()), op)
    }

    /// Runs one call-out to its answer.
    pub fn handle(&self, call: CallOut) -> Reply {
        let name = call.name();
        match self.run(call) {
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
                let volume = options
                    .volume_name()
                    .map_err(|m| Failed(Reply::failure(m)))?;
                let volume_id = self.ensure_volume(&options)?;
                let ctx = match self.call(Operation::ControllerPublish(
                    controller::ControllerPublishRequest {
                        volume_id: volume_id.clone(),
                        node_id: node.clone(),
                        volume_capability: options.capability(),
                        readonly: options.read_only,
                        secrets: Vec::new(),
                        volume_context: options.volume_context(),
                    },
                ))? {
                    Outcome::PublishContext(c) => c,
                    other => {
                        return Err(Failed(Reply::failure(format!(
                            "unexpected answer {other:?}"
                        ))))
                    }
                };
                let device = ctx
                    .iter()
                    .find(|(k, _)| k == DEVICE_KEY)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                self.records.put(
                    &format!("attach/{volume}/{node}"),
                    Some(&Attached {
                        volume_id,
                        device: device.clone(),
                    }),
                    Persist::Durable,
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
                let volume = options
                    .volume_name()
                    .map_err(|m| Failed(Reply::failure(m)))?;
                let record: Option<Attached> =
                    self.records.get(&format!("attach/{volume}/{node}"))?;
                Ok(Reply {
                    attached: Some(record.is_some()),
                    ..Reply::success()
                })
            }
            CallOut::Detach { volume, node } => {
                if !attaches {
                    return Ok(Reply::not_supported("the driver does not attach"));
                }
                let key = format!("attach/{volume}/{node}");
                let record: Option<Attached> = self.records.get(&key)?;
                let volume_id = record.map_or(volume, |r| r.volume_id);
                self.call(Operation::ControllerUnpublish(
                    controller::ControllerUnpublishRequest {
                        volume_id,
                        node_id: node,
                        secrets: Vec::new(),
                    },
                ))?;
                self.records.put::<Attached>(&key, None, Persist::Durable)?;
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
                let volume_id = self.ensure_volume(&options)?;
                self.stage(
                    &volume_id,
                    &dir,
                    &options,
                    vec![(DEVICE_KEY.to_owned(), device)],
                )?;
                self.records
                    .put(&key("device", &dir), Some(&volume_id), Persist::Durable)?;
                self.records.put(
                    &format!("device-of/{volume_id}"),
                    Some(&dir),
                    Persist::Durable,
                )?;
                Ok(Reply::success())
            }
            CallOut::UnmountDevice { dir } => {
                if !stages {
                    return Ok(Reply::not_supported("the driver does not stage"));
                }
                let record: Option<String> = self.records.get(&key("device", &dir))?;
                if let Some(volume_id) = record {
                    self.unstage(&volume_id, &dir)?;
                    self.records
                        .put::<String>(&key("device", &dir), None, Persist::Durable)?;
                    self.records.put::<PathBuf>(
                        &format!("device-of/{volume_id}"),
                        None,
                        Persist::Durable,
                    )?;
                }
                Ok(Reply::success())
            }
            CallOut::Mount { dir, options } => self.mount(&dir, &options, attaches, stages),
            CallOut::Unmount { dir } => {
                let record: Option<Mounted> = self.records.get(&key("mount", &dir))?;
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
                    self.unstage(&volume_id, &staging)?;
                    let _ = std::fs::remove_dir(&staging);
                }
                self.records
                    .put::<Mounted>(&key("mount", &dir), None, Persist::Relaxed)?;
                Ok(Reply::success())
            }
            CallOut::ExpandVolume {
                options, new_size, ..
            } => {
                if !self.has(Feature::ExpandVolume) {
                    return Ok(Reply::not_supported("the driver does not expand volumes"));
                }
                let volume_id = self.ensure_volume(&options)?;
                match self.call(Operation::ControllerExpand(
                    controller::ControllerExpandRequest {
                        volume_id,
                        capacity_range: Some(CapacityRange {
                            required_bytes: new_size,
                            limit_bytes: 0,
                        }),
                        secrets: Vec::new(),
                        volume_capability: Some(options.capability()),
                    },
                ))? {
                    Outcome::Expanded(e) => Ok(Reply {
                        volume_new_size: Some(e.capacity_bytes),
                        ..Reply::success()
                    }),
                    other => Err(Failed(Reply::failure(format!(
                        "unexpected answer {other:?}"
                    )))),
                }
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
        let name = o.volume_name().map_err(|m| Failed(Reply::failure(m)))?;
        if !self.has(Feature::CreateDeleteVolume) {
            return Ok(name);
        }
        match self.call(Operation::CreateVolume(controller::CreateVolumeRequest {
            name,
            capacity_range: None,
            volume_capabilities: vec![o.capability()],
            parameters: o.parameters.clone(),
            secrets: o.secrets.clone(),
            content_source: None,
            accessibility_requirements: None,
            mutable_parameters: Vec::new(),
        }))? {
            Outcome::Volume(v) => Ok(v.volume_id),
            other => Err(Failed(Reply::failure(format!(
                "unexpected answer {other:?}"
            )))),
        }
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
        let volume_id = self.ensure_volume(o)?;
        // Kubelet makes the dir and skips mounted ones; repeat both for direct callers.
        std::fs::create_dir_all(dir).map_err(|e| io_failed("creating", dir, e))?;
        if is_mount_point(dir).unwrap_or(false) {
            return Ok(Reply::success());
        }
        let (staging, host_staging) = match (stages, attaches) {
            (false, _) => (None, None),
            // Kubelet ran mountdevice: find where.
            (true, true) => (self.device_dir_of(&volume_id)?, None),
            // No attach, so no mountdevice: the host stages for the driver.
            (true, false) => {
                let s = self.staging_root.join(&volume_id);
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
        self.records.put(
            &key("mount", dir),
            Some(&Mounted {
                volume_id,
                host_staging,
            }),
            Persist::Relaxed,
        )?;
        Ok(Reply::success())
    }

    /// The device mount dir mountdevice recorded for a volume.
    fn device_dir_of(&self, volume_id: &str) -> Result<Option<PathBuf>, Failed> {
        Ok(self.records.get(&format!("device-of/{volume_id}"))?)
    }
}
