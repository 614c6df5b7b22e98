//! SDK for writing wasmvol storage drivers.
//!
//! A driver is a type implementing [`Driver`]: [`Driver::info`] is required,
//! every other method answers `unimplemented` until you override it. One
//! [`export_driver!`] line turns the type into the component's exports. The
//! host's capabilities are here as typed modules: [`volumes`] (your storage
//! root), [`mount`] (the request's target handles), [`device`] (loop
//! devices), [`netfs`] (NFS exports), [`tmpfs`], [`state`] (durable
//! key-value store) and [`log`].
//!
//! ```ignore
//! use wasmvol_driver_sdk::*;
//! struct Hello;
//! impl Driver for Hello {
//!     fn info() -> DriverInfo { DriverInfo::named("hello.example.com", "0.1.0", &[]) }
//! }
//! export_driver!(Hello);
//! ```

#![allow(clippy::too_many_arguments)]

/// Bindings generated from the `wasmvol:driver` WIT world (documented there).
/// In a native build (`cargo test` of a driver crate) the capability
/// interfaces are [`fake_host`]'s instead of imports, so driver code runs
/// with no wasm and no root.
#[allow(missing_docs)]
pub mod bindings {
    /// The world's bindings, with `$with` mapping interfaces elsewhere.
    macro_rules! world {
        ($($with:tt)*) => {
            wit_bindgen::generate!({
                path: "../wit",
                world: "volume-driver",
                pub_export_macro: true,
                export_macro_name: "export_world",
                default_bindings_module: "wasmvol_driver_sdk::bindings",
                additional_derives: [PartialEq],
                $($with)*
            });
        };
    }
    #[cfg(target_arch = "wasm32")]
    world!();
    #[cfg(not(target_arch = "wasm32"))]
    world!(with: {
        "wasmvol:driver/volumes@0.1.0": crate::fake_host::volumes,
        "wasmvol:driver/mount@0.1.0": crate::fake_host::mount,
        "wasmvol:driver/device@0.1.0": crate::fake_host::device,
        "wasmvol:driver/state@0.1.0": crate::fake_host::state,
        "wasmvol:driver/log@0.1.0": crate::fake_host::log,
        "wasmvol:driver/netfs@0.1.0": crate::fake_host::netfs,
        "wasmvol:driver/tmpfs@0.1.0": crate::fake_host::tmpfs,
        "wasmvol:driver/lvm@0.1.0": crate::fake_host::lvm,
    });
}

pub mod capacity;
#[cfg(not(target_arch = "wasm32"))]
pub mod fake_host;
#[cfg(feature = "json")]
pub mod groups;
pub mod ids;
pub mod mutable;
pub mod paging;
#[cfg(feature = "json")]
pub mod records;

use core::marker::PhantomData;

/// Publish-context key a driver that attaches sets to the device it attached:
/// FlexVolume's `attach` answers it to kubelet as the device path.
pub const DEVICE_PATH_KEY: &str = "devicePath";

pub use bindings::exports::wasmvol::driver::controller::{
    ControllerExpandRequest, ControllerExpandResponse, ControllerPublishRequest,
    ControllerUnpublishRequest, CreateGroupSnapshotRequest, CreateSnapshotRequest,
    CreateVolumeRequest, DeleteSnapshotRequest, DeleteVolumeRequest, GetCapacityRequest,
    GetCapacityResponse, GetSnapshotRequest, GetVolumeRequest, GroupSnapshotRequest,
    ListSnapshotsRequest, ListSnapshotsResponse, ListVolumesRequest, ListVolumesResponse,
    ListedVolume, ModifyVolumeRequest, ValidateRequest, ValidateResponse,
};
pub use bindings::exports::wasmvol::driver::node::{
    NodeExpandRequest, NodeInfo, PublishRequest, StageRequest, UnpublishRequest, UnstageRequest,
    UsageEntry, UsageUnit, VolumeStats, VolumeStatsRequest,
};
// The capability interfaces: the host's imports in a wasm build, the
// in-process fake host's in a native one.
#[cfg(target_arch = "wasm32")]
use bindings::wasmvol::driver as capabilities;
pub use bindings::wasmvol::driver::types::{
    AccessMode, AccessType, CapacityRange, ContentSource, DriverError, DriverInfo, Feature,
    GroupSnapshot, KeyValues, MountAccess, Snapshot, Timestamp, Topology, TopologyRequirement,
    Volume, VolumeCapability,
};
pub use capabilities::device::{self, BlockDevice, FsType, MkfsOptions};
pub use capabilities::log;
pub use capabilities::lvm::{self, LogicalVolume};
pub use capabilities::mount::{self, Target, TargetRole, TargetShape};
pub use capabilities::netfs::{self, NfsShare, NfsVersion};
pub use capabilities::state;
pub use capabilities::tmpfs::{self, TmpfsOptions};
pub use capabilities::volumes::{self, Root};
#[cfg(not(target_arch = "wasm32"))]
use fake_host as capabilities;

/// What every driver method returns.
pub type Result<T> = core::result::Result<T, DriverError>;

impl VolumeStats {
    /// Bytes and inodes of the filesystem mounted at a volume (what
    /// `mount.target.statvfs` answers), used counted as total minus free.
    pub fn of_filesystem(fs: &volumes::FsStats) -> Self {
        Self {
            usage: vec![
                UsageEntry {
                    unit: UsageUnit::Bytes,
                    total: fs.total_bytes,
                    used: fs.total_bytes.saturating_sub(fs.free_bytes),
                    available: fs.available_bytes,
                },
                UsageEntry {
                    unit: UsageUnit::Inodes,
                    total: fs.total_inodes,
                    used: fs.total_inodes.saturating_sub(fs.free_inodes),
                    available: fs.free_inodes,
                },
            ],
            abnormal_message: None,
        }
    }
}

impl ValidateResponse {
    /// The answer for `caps` given the driver's check of them: confirmed
    /// when the check passed, else not, with the check's message as the reason.
    pub fn checked(caps: Vec<VolumeCapability>, check: Result<()>) -> Self {
        match check {
            Ok(()) => Self {
                confirmed: Some(caps),
                message: String::new(),
            },
            Err(e) => Self {
                confirmed: None,
                message: e.message().to_owned(),
            },
        }
    }
}

impl DriverInfo {
    /// A driver info with no manifest entries.
    pub fn named(name: &str, version: &str, features: &[Feature]) -> Self {
        Self {
            name: name.into(),
            vendor_version: version.into(),
            features: features.to_vec(),
            manifest: Vec::new(),
        }
    }
}

impl DriverError {
    /// The error's message without its class: what a response field that
    /// carries a reason (ValidateVolumeCapabilities' `message`, say) shows.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidArgument(m)
            | Self::NotFound(m)
            | Self::AlreadyExists(m)
            | Self::FailedPrecondition(m)
            | Self::ResourceExhausted(m)
            | Self::OutOfRange(m)
            | Self::Aborted(m)
            | Self::Unavailable(m)
            | Self::PermissionDenied(m)
            | Self::Unimplemented(m)
            | Self::Internal(m) => m,
        }
    }
}

/// The error a method you did not implement returns.
pub fn unimplemented(what: &str) -> DriverError {
    DriverError::Unimplemented(format!("{what} is not implemented by this driver"))
}

/// Looks a key up in key-values (parameters, volume context, secrets).
pub fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Logs a line at info level with no fields.
pub fn info(message: &str) {
    log::log(log::Level::Info, message, &[]);
}

/// A storage driver. Implement [`Driver::info`] and the calls your driver
/// supports, listing them as features; the rest answer `unimplemented`.
pub trait Driver {
    /// Name, version and features.
    fn info() -> DriverInfo;

    /// Provision a volume (idempotent by name). Feature `create-delete-volume`.
    fn create_volume(_r: CreateVolumeRequest) -> Result<Volume> {
        Err(unimplemented("create-volume"))
    }
    /// Delete a volume; an unknown id is success.
    fn delete_volume(_r: DeleteVolumeRequest) -> Result<()> {
        Err(unimplemented("delete-volume"))
    }
    /// Attach a volume to a node; returns the publish context. Feature `publish-unpublish-volume`.
    fn controller_publish(_r: ControllerPublishRequest) -> Result<KeyValues> {
        Err(unimplemented("controller-publish"))
    }
    /// Detach a volume from a node.
    fn controller_unpublish(_r: ControllerUnpublishRequest) -> Result<()> {
        Err(unimplemented("controller-unpublish"))
    }
    /// Say whether a volume supports these capabilities.
    fn validate_volume_capabilities(_r: ValidateRequest) -> Result<ValidateResponse> {
        Err(unimplemented("validate-volume-capabilities"))
    }
    /// A page of volumes (see [`paging`]). Feature `list-volumes`.
    fn list_volumes(_r: ListVolumesRequest) -> Result<ListVolumesResponse> {
        Err(unimplemented("list-volumes"))
    }
    /// Space available for new volumes. Feature `get-capacity`.
    fn get_capacity(_r: GetCapacityRequest) -> Result<GetCapacityResponse> {
        Err(unimplemented("get-capacity"))
    }
    /// Snapshot a volume (idempotent by name). Feature `snapshots`.
    fn create_snapshot(_r: CreateSnapshotRequest) -> Result<Snapshot> {
        Err(unimplemented("create-snapshot"))
    }
    /// Delete a snapshot; an unknown id is success.
    fn delete_snapshot(_r: DeleteSnapshotRequest) -> Result<()> {
        Err(unimplemented("delete-snapshot"))
    }
    /// A page of snapshots (see [`paging`]). Feature `list-snapshots`.
    fn list_snapshots(_r: ListSnapshotsRequest) -> Result<ListSnapshotsResponse> {
        Err(unimplemented("list-snapshots"))
    }
    /// Grow a volume. Feature `expand-volume`.
    fn controller_expand(_r: ControllerExpandRequest) -> Result<ControllerExpandResponse> {
        Err(unimplemented("controller-expand"))
    }
    /// One volume, with its condition when the driver has feature
    /// `volume-condition`. Feature `get-volume`.
    fn get_volume(_r: GetVolumeRequest) -> Result<ListedVolume> {
        Err(unimplemented("get-volume"))
    }
    /// Change the given mutable parameters of a volume, and only those; an
    /// unknown key is `invalid-argument`. Feature `modify-volume`.
    fn modify_volume(_r: ModifyVolumeRequest) -> Result<()> {
        Err(unimplemented("modify-volume"))
    }
    /// One snapshot by id. Feature `get-snapshot`.
    fn get_snapshot(_r: GetSnapshotRequest) -> Result<Snapshot> {
        Err(unimplemented("get-snapshot"))
    }
    /// Snapshot several volumes at one point in time (idempotent by name;
    /// see [`groups`]). Feature `group-snapshots`.
    fn create_group_snapshot(_r: CreateGroupSnapshotRequest) -> Result<GroupSnapshot> {
        Err(unimplemented("create-group-snapshot"))
    }
    /// Delete a group snapshot and every member; an unknown id is success.
    fn delete_group_snapshot(_r: GroupSnapshotRequest) -> Result<()> {
        Err(unimplemented("delete-group-snapshot"))
    }
    /// A group snapshot by id.
    fn get_group_snapshot(_r: GroupSnapshotRequest) -> Result<GroupSnapshot> {
        Err(unimplemented("get-group-snapshot"))
    }
    /// Make a volume ready on this node at the staging handle. Feature `stage-unstage-volume`.
    fn stage(_staging: Target, _r: StageRequest) -> Result<()> {
        Err(unimplemented("node-stage"))
    }
    /// Undo `stage`.
    fn unstage(_staging: Target, _r: UnstageRequest) -> Result<()> {
        Err(unimplemented("node-unstage"))
    }
    /// Make a volume available at the target handle (from the staging handle when staged).
    fn publish(_target: Target, _staging: Option<Target>, _r: PublishRequest) -> Result<()> {
        Err(unimplemented("node-publish"))
    }
    /// Undo `publish`; nothing mounted is success.
    fn unpublish(_target: Target, _r: UnpublishRequest) -> Result<()> {
        Err(unimplemented("node-unpublish"))
    }
    /// Usage of a published volume. Feature `volume-stats`.
    fn volume_stats(_volume: Target, _r: VolumeStatsRequest) -> Result<VolumeStats> {
        Err(unimplemented("node-get-volume-stats"))
    }
    /// Grow the volume on this node (filesystem); returns the new size.
    fn node_expand(_volume: Target, _r: NodeExpandRequest) -> Result<u64> {
        Err(unimplemented("node-expand"))
    }
    /// This node's id (empty: the host's name), volume limit and topology.
    fn node_info() -> Result<NodeInfo> {
        Err(unimplemented("node-get-info"))
    }
}

/// Adapts a [`Driver`] to the generated export traits; used by [`export_driver!`].
#[doc(hidden)]
pub struct Export<D>(PhantomData<D>);

use bindings::exports::wasmvol::driver::{controller, identity, node};

impl<D: Driver> identity::Guest for Export<D> {
    fn info() -> DriverInfo {
        D::info()
    }
}

impl<D: Driver> controller::Guest for Export<D> {
    fn create_volume(r: CreateVolumeRequest) -> Result<Volume> {
        D::create_volume(r)
    }
    fn delete_volume(r: DeleteVolumeRequest) -> Result<()> {
        D::delete_volume(r)
    }
    fn controller_publish(r: ControllerPublishRequest) -> Result<KeyValues> {
        D::controller_publish(r)
    }
    fn controller_unpublish(r: ControllerUnpublishRequest) -> Result<()> {
        D::controller_unpublish(r)
    }
    fn validate_volume_capabilities(r: ValidateRequest) -> Result<ValidateResponse> {
        D::validate_volume_capabilities(r)
    }
    fn list_volumes(r: ListVolumesRequest) -> Result<ListVolumesResponse> {
        D::list_volumes(r)
    }
    fn get_capacity(r: GetCapacityRequest) -> Result<GetCapacityResponse> {
        D::get_capacity(r)
    }
    fn create_snapshot(r: CreateSnapshotRequest) -> Result<Snapshot> {
        D::create_snapshot(r)
    }
    fn delete_snapshot(r: DeleteSnapshotRequest) -> Result<()> {
        D::delete_snapshot(r)
    }
    fn list_snapshots(r: ListSnapshotsRequest) -> Result<ListSnapshotsResponse> {
        D::list_snapshots(r)
    }
    fn expand_volume(r: ControllerExpandRequest) -> Result<ControllerExpandResponse> {
        D::controller_expand(r)
    }
    fn get_volume(r: GetVolumeRequest) -> Result<ListedVolume> {
        D::get_volume(r)
    }
    fn modify_volume(r: ModifyVolumeRequest) -> Result<()> {
        D::modify_volume(r)
    }
    fn get_snapshot(r: GetSnapshotRequest) -> Result<Snapshot> {
        D::get_snapshot(r)
    }
    fn create_group_snapshot(r: CreateGroupSnapshotRequest) -> Result<GroupSnapshot> {
        D::create_group_snapshot(r)
    }
    fn delete_group_snapshot(r: GroupSnapshotRequest) -> Result<()> {
        D::delete_group_snapshot(r)
    }
    fn get_group_snapshot(r: GroupSnapshotRequest) -> Result<GroupSnapshot> {
        D::get_group_snapshot(r)
    }
}

impl<D: Driver> node::Guest for Export<D> {
    fn stage(staging: Target, r: StageRequest) -> Result<()> {
        D::stage(staging, r)
    }
    fn unstage(staging: Target, r: UnstageRequest) -> Result<()> {
        D::unstage(staging, r)
    }
    fn publish(target: Target, staging: Option<Target>, r: PublishRequest) -> Result<()> {
        D::publish(target, staging, r)
    }
    fn unpublish(target: Target, r: UnpublishRequest) -> Result<()> {
        D::unpublish(target, r)
    }
    fn get_volume_stats(volume: Target, r: VolumeStatsRequest) -> Result<VolumeStats> {
        D::volume_stats(volume, r)
    }
    fn expand_volume(volume: Target, r: NodeExpandRequest) -> Result<u64> {
        D::node_expand(volume, r)
    }
    fn get_info() -> Result<NodeInfo> {
        D::node_info()
    }
}

/// Exports a [`Driver`] implementation as the component's `identity`,
/// `controller` and `node` interfaces. Use once per driver crate.
#[macro_export]
macro_rules! export_driver {
    ($driver:ty) => {
        type __WasmvolDriverExport = $crate::Export<$driver>;
        $crate::bindings::export_world!(__WasmvolDriverExport with_types_in $crate::bindings);
    };
}
