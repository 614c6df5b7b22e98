//! Host-side bindings of the `volume-driver` world (generated from `wit/`).
//!
//! Every import is `trappable`: a stale or forged resource handle traps the
//! call instead of reaching a capability. Data types derive serde so the CLI
//! can take requests as JSON.

// Generated code: its documentation is the WIT files' own.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "volume-driver",
    imports: { default: trappable },
    with: {
        "wasmvol:driver/volumes.root": crate::capability::volumes::StorageRoot,
        "wasmvol:driver/mount.target": crate::capability::mount::TargetHandle,
        "wasmvol:driver/device.block-device": crate::capability::device::BlockDeviceHandle,
    },
    additional_derives: [serde::Serialize, serde::Deserialize],
});

pub use exports::wasmvol::driver::{controller, identity, node};
pub use wasmvol::driver::types::{self, DriverError};
pub use wasmvol::driver::{device, log, lvm, mount, netfs, state, tmpfs, volumes};
