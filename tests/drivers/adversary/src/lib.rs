//! adversary: a test-only driver that tries to break out of its sandbox.
//!
//! Each attack is selected by name (the volume name of create-volume, or the
//! volume id of publish / delete-volume). An attack that is stopped returns
//! the host's error; one that gets through returns Ok, which the tests treat
//! as a failure. Never ship this.

use wasmvol_driver_sdk::*;

struct Adversary;

const HANDLE_KEY: &str = "stashed-handle";
/// Once set (by a create named `arm-probe-trap`), identity calls trap: a
/// driver that loaded fine and stopped answering its probe.
const PROBE_TRAP_KEY: &str = "probe-trap";

/// Calls this instance has served: more than one means memory outlived a call.
static CALLS_SERVED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

fn root() -> Result<Root> {
    volumes::open_root()
}

/// Waits (by polling the storage root) until the test creates `name`.
fn wait_for(root: &Root, name: &str) -> Result<()> {
    for _ in 0..200_000 {
        if root.exists(name)? {
            return Ok(());
        }
    }
    Err(DriverError::Aborted(format!("{name} never appeared")))
}

impl Driver for Adversary {
    fn info() -> DriverInfo {
        if matches!(state::get(PROBE_TRAP_KEY), Ok(Some(_))) {
            panic!("the adversary's probe traps, as armed");
        }
        DriverInfo::named(
            "adversary.test.wasmvol.io",
            "0.0.0",
            // Stages without attaching: over FlexVolume the host stages for it.
            &[Feature::CreateDeleteVolume, Feature::StageUnstageVolume],
        )
    }

    fn create_volume(r: CreateVolumeRequest) -> Result<Volume> {
        // Volume ids chosen to make the host build a path out of them.
        let hostile_id: Option<String> = match r.name.as_str() {
            "flex-id-etc" => Some("/etc".into()),
            "flex-id-dotdot" => Some("../../../../x".into()),
            "flex-id-slash" => Some("a/b".into()),
            "flex-id-nul" => Some("a\0b".into()),
            "flex-id-newline" => Some("a\nb".into()),
            "flex-id-long" => Some("x".repeat(4096)),
            _ => None,
        };
        if let Some(volume_id) = hostile_id {
            return Ok(named(volume_id));
        }
        // Serialisation probe: fails if another create runs at the same time.
        if r.name.starts_with("flex-serial") {
            let root = root()?;
            if root.exists("busy")? {
                return Err(DriverError::Aborted(
                    "two calls on one volume interleaved".into(),
                ));
            }
            root.write_file("busy", b"")?;
            std::thread::sleep(std::time::Duration::from_millis(300));
            root.remove_file("busy")?;
            return Ok(named(r.name));
        }
        if r.name == "arm-probe-trap" {
            state::put(PROBE_TRAP_KEY, b"1")?;
            return Ok(named(r.name));
        }
        // A slow call: answers after this many milliseconds (shutdown drains it).
        if let Some(ms) = r.name.strip_prefix("slow-").and_then(|m| m.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            return Ok(named(r.name));
        }
        // Overlap probe: succeeds only if another `overlap-*` create runs at the same time.
        if let Some(n) = r.name.strip_prefix("overlap-") {
            let root = root()?;
            root.create_dir("overlap")?;
            root.write_file(&format!("overlap/{n}"), b"")?;
            for _ in 0..400 {
                if root.list_dir("overlap")?.len() >= 2 {
                    return Ok(named(r.name));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            return Err(DriverError::Aborted(format!("{} ran alone", r.name)));
        }
        match r.name.as_str() {
            "escape-dotdot" => root()?.create_dir("volumes/../../escaped")?,
            "escape-absolute" => root()?.write_file("/etc/wasmvol-escaped", b"pwned")?,
            "escape-symlink-read" => {
                let bytes = root()?.read_file("link/passwd")?;
                return Err(DriverError::Internal(format!(
                    "read {} bytes outside",
                    bytes.len()
                )));
            }
            "escape-symlink-write" => root()?.write_file("link/wasmvol-escaped", b"pwned")?,
            "wasi-read" => {
                let read = std::fs::read("/etc/passwd")
                    .or_else(|_| std::fs::read("/storage/../../etc/passwd"));
                return match read {
                    Ok(b) => Ok(Volume {
                        volume_id: format!("read {} bytes of /etc/passwd", b.len()),
                        capacity_bytes: 0,
                        volume_context: Vec::new(),
                        content_source: None,
                        accessible_topology: Vec::new(),
                    }),
                    Err(e) => Err(DriverError::PermissionDenied(format!("wasi: {e}"))),
                };
            }
            "loop" => loop {
                core::hint::black_box(0u64);
            },
            "sleep" => {
                // Blocks in a host call (WASI poll), where no epoch check runs.
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
            "sleep-then-loop" => {
                // Spends most of its deadline waiting, then spins: the time
                // waited counts against the deadline.
                std::thread::sleep(std::time::Duration::from_millis(2000));
                loop {
                    core::hint::black_box(0u64);
                }
            }
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7u8; 1 << 20]);
                    core::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("adversary panics on purpose"),
            "reuse-handle" => {
                let raw = state::get(HANDLE_KEY)?
                    .ok_or_else(|| DriverError::FailedPrecondition("no handle stashed".into()))?;
                let raw = u32::from_le_bytes(raw.try_into().expect("4 bytes"));
                // SAFETY: not sound on purpose: a forged handle the host must contain.
                let forged = unsafe { Target::from_handle(raw) };
                forged.bind_from_root(&root()?, "volumes/loot", false)?;
            }
            "remember" => {
                // Gets through only if this instance served a call before.
                if CALLS_SERVED.fetch_add(1, core::sync::atomic::Ordering::Relaxed) == 0 {
                    return Err(DriverError::FailedPrecondition(
                        "fresh instance: nothing remembered".into(),
                    ));
                }
            }
            "legit" => root()?.create_dir("volumes/legit")?,
            "device-attach-outside" => {
                device::attach(&root()?, "../outside/disk.img")?;
            }
            "device-attach-symlink" => {
                device::attach(&root()?, "link/disk.img")?;
            }
            "device-foreign" => {
                // A loop device someone else attached to a file in our root:
                // the host must not hand it to us.
                return match device::find_attached(&root()?, "foreign.img")? {
                    Some(d) => {
                        d.make_filesystem(FsType::Ext4, &MkfsOptions { label: None })?;
                        Ok(Volume {
                            volume_id: format!("formatted {}", d.node()),
                            capacity_bytes: 0,
                            volume_context: Vec::new(),
                            content_source: None,
                            accessible_topology: Vec::new(),
                        })
                    }
                    None => Err(DriverError::NotFound(
                        "no handle to the foreign device".into(),
                    )),
                };
            }
            "device-forged" => {
                // SAFETY: not sound on purpose: a made-up handle the host must contain.
                let forged = unsafe { BlockDevice::from_handle(1) };
                forged.make_filesystem(FsType::Ext4, &MkfsOptions { label: None })?;
            }
            "device-mkfs-label-inject" => {
                let root = root()?;
                if !root.exists("own.img")? {
                    device::create_backing_file(&root, "own.img", 16 << 20)?;
                }
                let d = device::attach(&root, "own.img")?;
                let r = d.make_filesystem(
                    FsType::Ext4,
                    &MkfsOptions {
                        label: Some("x -O ^has_journal".into()),
                    },
                );
                d.detach()?;
                r?;
            }
            "device-fs-not-granted" => {
                let root = root()?;
                if !root.exists("own.img")? {
                    device::create_backing_file(&root, "own.img", 16 << 20)?;
                }
                let d = device::attach(&root, "own.img")?;
                let r = d.make_filesystem(FsType::Xfs, &MkfsOptions { label: None });
                d.detach()?;
                r?;
            }
            "device-too-big" => device::create_backing_file(&root()?, "huge.img", 1 << 40)?,
            other => {
                return Err(DriverError::InvalidArgument(format!(
                    "unknown attack {other}"
                )))
            }
        }
        Ok(Volume {
            volume_id: format!("{} succeeded", r.name),
            capacity_bytes: 0,
            volume_context: Vec::new(),
            content_source: None,
            accessible_topology: Vec::new(),
        })
    }

    fn stage(staging: Target, _r: StageRequest) -> Result<()> {
        let root = root()?;
        root.create_dir("volumes/flex")?;
        staging.bind_from_root(&root, "volumes/flex", false)
    }

    fn unstage(staging: Target, _r: UnstageRequest) -> Result<()> {
        staging.unmount()
    }

    fn publish(target: Target, staging: Option<Target>, r: PublishRequest) -> Result<()> {
        let root = root()?;
        // Staged (over FlexVolume, the host's staging dir): publish from it.
        if let Some(staging) = staging {
            return target.bind_from_target(&staging, false);
        }
        match r.volume_id.as_str() {
            "bind-slash" => target.bind_from_root(&root, "/", false),
            "bind-etc" => target.bind_from_root(&root, "/etc", false),
            "bind-dotdot" => target.bind_from_root(&root, "volumes/../../../..", false),
            "bind-symlink" => target.bind_from_root(&root, "link", false),
            "bind-swapped" => {
                // Check that `vol` is an honest directory, then let the test
                // swap it for a symlink, then mount it.
                let listed = root.list_dir("")?;
                if !listed.iter().any(|e| e.name == "vol") {
                    return Err(DriverError::FailedPrecondition("no vol".into()));
                }
                root.write_file("ready", b"")?;
                wait_for(&root, "swapped")?;
                target.bind_from_root(&root, "vol", false)
            }
            "stash-handle" => {
                let raw = target.take_handle();
                state::put(HANDLE_KEY, &raw.to_le_bytes())?;
                Ok(())
            }
            "legit" => target.bind_from_root(&root, "volumes/legit", false),
            "device-mount-option-inject" => {
                if !root.exists("own.img")? {
                    device::create_backing_file(&root, "own.img", 16 << 20)?;
                }
                let d = device::attach(&root, "own.img")?;
                if d.probe_filesystem()?.is_none() {
                    d.make_filesystem(FsType::Ext4, &MkfsOptions { label: None })?;
                }
                let r = d.mount_onto(
                    &target,
                    FsType::Ext4,
                    &["noatime,exec,suid".to_string(), "dev".to_string()],
                    false,
                );
                d.detach()?;
                r
            }
            other => Err(DriverError::InvalidArgument(format!(
                "unknown attack {other}"
            ))),
        }
    }

    fn unpublish(target: Target, _r: UnpublishRequest) -> Result<()> {
        target.unmount()
    }
}

/// A volume answer with nothing but its id.
fn named(volume_id: String) -> Volume {
    Volume {
        volume_id,
        capacity_bytes: 0,
        volume_context: Vec::new(),
        content_source: None,
        accessible_topology: Vec::new(),
    }
}

export_driver!(Adversary);
