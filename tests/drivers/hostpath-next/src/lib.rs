//! hostpath-next: the bundled hostpath driver built as the next release
//! (version 0.2.0), so `tests/tests/hot_upgrade.rs` swaps a host between
//! two real builds of one driver that differ in `info.vendor-version` and
//! digest, not between a driver and a stand-in.

#[path = "../../../../plugins/hostpath/src/lib.rs"]
mod hostpath;
