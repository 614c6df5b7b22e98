//! wasmvol: run Kubernetes storage drivers as sandboxed WebAssembly components.
//!
//! A driver is a component implementing the `wasmvol:driver/volume-driver`
//! world. The host compiles it once ([`runtime::artifact_cache`]), runs every call in
//! a fresh instance with deadline and memory limits ([`runtime::driver`]), and gives it
//! nothing but the capabilities the operator's [`policy`] grants, each use
//! checked in one place ([`capability::context::CallContext::gate`]) and written to the
//! [`audit`] log.

pub mod admin;
pub mod audit;
pub mod bindings;
pub mod call;
pub mod capability;
pub mod conformance;
pub mod csi;
pub mod digest;
pub mod fault;
pub mod flex;
pub mod grant_usage;
pub mod grpc_authority;
pub mod host_path;
pub mod http;
pub mod manifests;
pub mod metrics;
pub mod nfs;
pub mod placement;
pub mod policy;
pub mod runtime;
pub mod signature;
pub mod store;
pub mod sys;
pub mod unix_socket;
pub mod volume_locks;
