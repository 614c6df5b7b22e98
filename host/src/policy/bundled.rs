//! The policy of the bundled example drivers (hostpath, loopfs, scratch), built in
//! code: `wasmvol policy bundled` writes it for `scripts/run.sh`, so the
//! script pins digests and names sockets without writing policy text.

use std::path::{Path, PathBuf};

use super::file::{
    CsiEntry, DeviceEntry, DriverEntry, FlexEntry, GrantsEntry, HostEntry, LimitsEntry, PolicyFile,
    StorageEntry, TmpfsEntry,
};
use super::StorageAccess;
use crate::digest::Sha256Digest;

/// Where the bundled drivers' files live on this node.
#[derive(Debug, Clone)]
pub struct BundledPaths {
    /// The directory holding `hostpath.wasm` and `loopfs.wasm`.
    pub components: PathBuf,
    /// The host's home: state under `state/`, storage roots `hostpath/` and `loopfs/`.
    pub home: PathBuf,
    /// hostpath's CSI socket.
    pub hostpath_socket: PathBuf,
    /// loopfs's CSI socket.
    pub loopfs_socket: PathBuf,
    /// scratch's CSI socket.
    pub scratch_socket: PathBuf,
}

/// Builds the bundled drivers' policy, pinning each component by the digest
/// it has now (so the file must be rewritten after a rebuild).
pub fn bundled(paths: &BundledPaths) -> std::io::Result<PolicyFile> {
    // A policy's relative paths are read against its own directory, which is
    // not where a caller's relative paths start: write them absolute.
    let paths = &BundledPaths {
        components: std::path::absolute(&paths.components)?,
        home: std::path::absolute(&paths.home)?,
        hostpath_socket: std::path::absolute(&paths.hostpath_socket)?,
        loopfs_socket: std::path::absolute(&paths.loopfs_socket)?,
        scratch_socket: std::path::absolute(&paths.scratch_socket)?,
    };
    let driver = |name: &str, socket: &Path, deadline_ms: u64| -> std::io::Result<DriverEntry> {
        let component = paths.components.join(format!("{name}.wasm"));
        let sha256 = Sha256Digest::of(&std::fs::read(&component)?).to_hex();
        Ok(DriverEntry {
            name: name.into(),
            component,
            sha256: Some(sha256),
            signed_by: Vec::new(),
            grants: GrantsEntry {
                mount: true,
                state_quota_bytes: Some(4 << 20),
                storage: Some(StorageEntry {
                    root: paths.home.join(name),
                    access: StorageAccess::ReadWrite,
                    wasi_preopen: false,
                }),
                ..GrantsEntry::default()
            },
            limits: LimitsEntry {
                memory_bytes: Some(64 << 20),
                deadline_ms: Some(deadline_ms),
                concurrency: Some(16),
            },
            csi: Some(CsiEntry {
                name: format!("{name}.csi.wasmvol.io"),
                socket: Some(socket.to_owned()),
                ..CsiEntry::default()
            }),
            flex: Some(FlexEntry {
                name: format!("wasmvol/{name}"),
            }),
        })
    };
    let hostpath = driver("hostpath", &paths.hostpath_socket, 10_000)?;
    let mut loopfs = driver("loopfs", &paths.loopfs_socket, 120_000)?;
    // loopfs makes filesystems on loop devices over files in its root.
    loopfs.grants.device = Some(DeviceEntry {
        max_file_bytes: 100 << 30,
        max_devices: None,
    });
    loopfs.grants.fs_types = vec!["ext4".into(), "xfs".into()];
    loopfs.grants.mount_options = ["noatime", "nodiratime", "discard"].map(Into::into).into();
    // scratch mounts tmpfs for ephemeral inline volumes: no storage root, no state.
    let mut scratch = driver("scratch", &paths.scratch_socket, 10_000)?;
    scratch.grants.storage = None;
    scratch.grants.state_quota_bytes = None;
    scratch.grants.tmpfs = Some(TmpfsEntry { max_bytes: 1 << 30 });
    Ok(PolicyFile {
        host: HostEntry {
            state_dir: paths.home.join("state"),
            ..HostEntry::default()
        },
        drivers: vec![hostpath, loopfs, scratch],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_policy_parses_and_pins_what_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let components = dir.path().join("components");
        std::fs::create_dir(&components).unwrap();
        for name in ["hostpath", "loopfs", "scratch"] {
            std::fs::write(components.join(format!("{name}.wasm")), name).unwrap();
        }
        let paths = BundledPaths {
            components,
            home: dir.path().join("home"),
            hostpath_socket: dir.path().join("h.sock"),
            loopfs_socket: dir.path().join("l.sock"),
            scratch_socket: dir.path().join("s.sock"),
        };
        let text = bundled(&paths).unwrap().to_toml();
        let policy = crate::policy::Policy::parse(Path::new("bundled.toml"), &text).unwrap();
        let loopfs = &policy.drivers[1];
        assert_eq!(loopfs.pin.sha256, Some(Sha256Digest::of(b"loopfs")));
        assert!(loopfs.grants.device.is_some());
        assert!(policy.drivers[0].grants.device.is_none());
        let scratch = &policy.drivers[2].grants;
        assert!(scratch.tmpfs.is_some() && scratch.storage.is_none());
        assert_eq!(
            policy.drivers[0].csi.as_ref().unwrap().socket,
            dir.path().join("h.sock")
        );
    }
}
