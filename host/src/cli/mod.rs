//! The subcommands, one file each.

pub(crate) mod audit;
pub(crate) mod build;
pub(crate) mod conformance;
pub(crate) mod flex;
pub(crate) mod inspect;
pub(crate) mod manifests;
pub(crate) mod new;
pub(crate) mod serve;
pub(crate) mod status;
