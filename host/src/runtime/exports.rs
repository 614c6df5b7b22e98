//! The driver's exported functions: found and typechecked once at load, then
//! reached by index on every fresh instance.
//!
//! Looking up and typechecking every export of the world on each
//! instantiation (what the generated `VolumeDriver::instantiate` does) costs
//! more than the instantiation itself; a call needs one function. So the
//! host resolves each export's index once, proves at load that every
//! function has the type the host calls it at, and per call only fetches
//! the one function it needs by index.

use wasmtime::component::{Component, ComponentExportIndex, Instance, Resource, TypedFunc};
use wasmtime::AsContextMut;

use crate::bindings::controller::{
    ControllerExpandRequest, ControllerExpandResponse, ControllerPublishRequest,
    ControllerUnpublishRequest, CreateSnapshotRequest, CreateVolumeRequest, DeleteSnapshotRequest,
    DeleteVolumeRequest, GetCapacityRequest, GetCapacityResponse, ListSnapshotsRequest,
    ListSnapshotsResponse, ListVolumesRequest, ListVolumesResponse, ValidateRequest,
    ValidateResponse,
};
use crate::bindings::node::{
    NodeExpandRequest, NodeInfo, PublishRequest, StageRequest, UnpublishRequest, UnstageRequest,
    VolumeStats, VolumeStatsRequest,
};
use crate::bindings::types::{DriverInfo, KeyValues, Snapshot, Volume};
use crate::bindings::DriverError;
use crate::capability::mount::TargetHandle;

const IDENTITY: &str = "wasmvol:driver/identity@0.1.0";
const CONTROLLER: &str = "wasmvol:driver/controller@0.1.0";
const NODE: &str = "wasmvol:driver/node@0.1.0";

type Target = Resource<TargetHandle>;
type Answer<T> = Result<T, DriverError>;

/// Declares [`Exports`]: one field per exported function, with the type the
/// host calls it at. The type is written once here and used both for the
/// load-time check and for every call, so the two cannot drift apart.
macro_rules! exports {
    ($($field:ident: $iface:ident . $name:literal, ($($param:ty),*) -> $ret:ty;)*) => {
        /// Indices of the world's exported functions in one component.
        #[derive(Debug, Clone)]
        pub struct Exports {
            $($field: ComponentExportIndex,)*
        }

        impl Exports {
            /// Finds every export of the world in `component`, naming the first one missing.
            pub fn find(component: &Component) -> Result<Self, String> {
                let iface = |name: &str| {
                    component
                        .get_export_index(None, name)
                        .ok_or_else(|| format!("no export `{name}`"))
                };
                let (identity, controller, node) = (iface(IDENTITY)?, iface(CONTROLLER)?, iface(NODE)?);
                let ifaces = [(IDENTITY, &identity), (CONTROLLER, &controller), (NODE, &node)];
                let func = |iface: &str, name: &str| {
                    let (_, index) = ifaces.iter().find(|(n, _)| *n == iface).expect("known interface");
                    component
                        .get_export_index(Some(index), name)
                        .ok_or_else(|| format!("`{iface}` exports no function `{name}`"))
                };
                Ok(Self {
                    $($field: func($iface, $name)?,)*
                })
            }

            /// Checks, on a live instance, that every export has the type the
            /// host calls it at. Run once at load; the calls rely on it.
            #[allow(clippy::extra_unused_lifetimes)]
            pub fn typecheck<'a>(
                &self,
                mut store: impl AsContextMut,
                instance: &Instance,
            ) -> wasmtime::Result<()> {
                $(
                    instance
                        .get_typed_func::<($($param,)*), ($ret,)>(&mut store, &self.$field)
                        .map_err(|e| e.context(concat!("export `", $name, "`")))?;
                )*
                Ok(())
            }

            $(
                #[doc = concat!("Calls the `", $name, "` export of a fresh instance.")]
                #[allow(clippy::extra_unused_lifetimes)]
                pub fn $field<'a>(
                    &self,
                    mut store: impl AsContextMut,
                    instance: &Instance,
                    params: ($($param,)*),
                ) -> wasmtime::Result<$ret> {
                    let func = instance
                        .get_func(&mut store, &self.$field)
                        .expect("exports are found at load, in the same component");
                    // SAFETY: `typecheck` proved at load that this export of
                    // this component has exactly this type, and a component's
                    // types do not change between instances.
                    let typed = unsafe { TypedFunc::<($($param,)*), ($ret,)>::new_unchecked(func) };
                    Ok(typed.call(store, params)?.0)
                }
            )*
        }
    };
}

exports! {
    info: IDENTITY."info", () -> DriverInfo;
    create_volume: CONTROLLER."create-volume", (&'a CreateVolumeRequest) -> Answer<Volume>;
    delete_volume: CONTROLLER."delete-volume", (&'a DeleteVolumeRequest) -> Answer<()>;
    controller_publish: CONTROLLER."controller-publish", (&'a ControllerPublishRequest) -> Answer<KeyValues>;
    controller_unpublish: CONTROLLER."controller-unpublish", (&'a ControllerUnpublishRequest) -> Answer<()>;
    validate_volume_capabilities: CONTROLLER."validate-volume-capabilities", (&'a ValidateRequest) -> Answer<ValidateResponse>;
    list_volumes: CONTROLLER."list-volumes", (&'a ListVolumesRequest) -> Answer<ListVolumesResponse>;
    get_capacity: CONTROLLER."get-capacity", (&'a GetCapacityRequest) -> Answer<GetCapacityResponse>;
    create_snapshot: CONTROLLER."create-snapshot", (&'a CreateSnapshotRequest) -> Answer<Snapshot>;
    delete_snapshot: CONTROLLER."delete-snapshot", (&'a DeleteSnapshotRequest) -> Answer<()>;
    list_snapshots: CONTROLLER."list-snapshots", (&'a ListSnapshotsRequest) -> Answer<ListSnapshotsResponse>;
    controller_expand: CONTROLLER."expand-volume", (&'a ControllerExpandRequest) -> Answer<ControllerExpandResponse>;
    stage: NODE."stage", (Target, &'a StageRequest) -> Answer<()>;
    unstage: NODE."unstage", (Target, &'a UnstageRequest) -> Answer<()>;
    publish: NODE."publish", (Target, Option<Target>, &'a PublishRequest) -> Answer<()>;
    unpublish: NODE."unpublish", (Target, &'a UnpublishRequest) -> Answer<()>;
    volume_stats: NODE."get-volume-stats", (Target, &'a VolumeStatsRequest) -> Answer<VolumeStats>;
    node_expand: NODE."expand-volume", (Target, &'a NodeExpandRequest) -> Answer<u64>;
    node_info: NODE."get-info", () -> Answer<NodeInfo>;
}
