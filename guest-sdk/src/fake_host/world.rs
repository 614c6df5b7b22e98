//! The fake host's world: one per test thread, as a component instance
//! has one host.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::log::Level;
use super::mount::Mount;
use crate::{FsType, LogicalVolume, TargetRole, TargetShape};

/// One line a driver logged.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its fields.
    pub fields: Vec<(String, String)>,
}

/// A place kubelet hands targets over at, and what is mounted there.
pub(crate) struct Place {
    pub role: TargetRole,
    pub shape: TargetShape,
    pub mounts: Vec<Mount>,
}

/// An attached loop device: its node and its backing file (device, inode).
pub(crate) struct Loop {
    pub node: String,
    pub backing: (u64, u64),
    pub path: PathBuf,
}

/// A volume group.
pub(crate) struct Group {
    pub size: u64,
    pub volumes: BTreeMap<String, Lv>,
}

/// A logical volume and the filesystem made on it, if any.
pub(crate) struct Lv {
    pub listed: LogicalVolume,
    pub fs: Option<FsType>,
}

impl Group {
    /// Bytes not taken by thick volumes or snapshots' change space (thin
    /// volumes take their pool's).
    pub fn free(&self) -> u64 {
        let used: u64 = self
            .volumes
            .values()
            .filter(|v| v.listed.thin_pool.is_none())
            .map(|v| v.listed.size_bytes)
            .sum();
        self.size.saturating_sub(used)
    }
}

pub(crate) struct World {
    pub dir: PathBuf,
    pub targets: BTreeMap<String, Place>,
    pub loops: Vec<Loop>,
    pub next_loop: u32,
    pub groups: BTreeMap<String, Group>,
    pub state: BTreeMap<String, Vec<u8>>,
    pub log: Vec<LogLine>,
}

impl World {
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn share_dir(&self, server: &str, export: &str) -> PathBuf {
        let name: String = format!("{server}:{export}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir = self.dir.join("shares").join(name);
        std::fs::create_dir_all(&dir).expect("fake host: making a share directory");
        dir
    }
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

/// Starts this thread's world in a new temporary directory, returned.
pub(crate) fn start() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wasmvol-fake-host-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("root")).expect("fake host: making the storage root");
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        assert!(w.is_none(), "a fake host runs on this thread already");
        *w = Some(World {
            dir: dir.clone(),
            targets: BTreeMap::new(),
            loops: Vec::new(),
            next_loop: 0,
            groups: BTreeMap::new(),
            state: BTreeMap::new(),
            log: Vec::new(),
        });
    });
    dir
}

/// Ends this thread's world.
pub(crate) fn end() {
    WORLD.with(|w| *w.borrow_mut() = None);
}

/// Runs `f` on this thread's world. A capability used with no
/// [`FakeHost`](super::FakeHost) running panics, naming the fix.
pub(crate) fn with<T>(f: impl FnOnce(&mut World) -> T) -> T {
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        f(w.as_mut()
            .expect("a capability was used with no fake host: start one with FakeHost::new()"))
    })
}
