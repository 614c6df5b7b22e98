//! Host mechanisms the capabilities are built on: mounts by file descriptor
//! and whole-tree operations beneath a capability directory.

pub mod block_copy;
pub mod deferred_close;
pub mod fs_context;
pub mod fstools;
pub mod loopdev;
pub mod lvm;
pub mod lvm_groups;
pub mod lvm_metadata;
pub mod mount;
pub mod tree;
