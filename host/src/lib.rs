//! wasmvol: run Kubernetes storage drivers as sandboxed WebAssembly components.
//!
//! A driver is a component implementing the `wasmvol:driver/volume-driver`
//! world. The host compiles it once ([`artifact_cache`]), runs every call in
//! a fresh instance with deadline and memory limits ([`driver`]), and gives it
//! nothing but the capabilities the operator's [`policy`] grants, each use
//! checked in one place ([`context::CallContext::gate`]) and written to the
//! [`audit`] log.

pub mod artifact_cache;
pub mod audit;
pub mod bindings;
pub mod call;
pub mod capability;
pub mod concurrency;
pub mod context;
pub mod csi;
pub mod digest;
pub mod driver;
pub mod engine;
pub mod exports;
pub mod flex;
pub mod host_path;
pub mod host_records;
pub mod interfaces;
pub mod policy;
pub mod runtime;
pub mod state_store;
pub mod sync_calls;
pub mod sys;
pub mod unix_socket;
pub mod volume_locks;
