//! Shared fixtures for wasmvol's end-to-end and adversarial tests.
//!
//! The tests are privileged: they mount for real. They must run as root;
//! each test thread enters a private mount namespace of its own; anywhere
//! they cannot, they fail loudly instead of skipping. Every fixture unmounts whatever was
//! mounted beneath it when dropped, even when the test panics.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmvol::policy::Policy;
use wasmvol::runtime::Runtime;

/// The built component of a driver (see `scripts/build-plugins.sh`).
pub fn component(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/components")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Path of the `wasmvol` binary built for these tests.
pub fn wasmvol_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("wasmvol");
    assert!(
        bin.exists(),
        "{} is missing: build it first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Moves the calling test thread into a mount namespace of its own, with
/// no propagation to the host, or fails the test. Mounts made by the test
/// (and by processes it spawns) live and die with that namespace, so even a
/// panicking test leaves no mount behind on the machine.
pub fn require_privileged() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "privileged test: run as root (scripts/test.sh); it must not be skipped"
    );
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .expect("privileged test: cannot create a private mount namespace");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("privileged test: cannot make the mount namespace private");
}

/// Mount points currently at or beneath `dir`, as the calling thread sees them.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Sha-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read component")))
}

/// Grants of a fixture's driver, written into its policy.
#[derive(Clone, Debug)]
pub struct FixtureGrants {
    pub mount: bool,
    pub storage: Option<&'static str>,
    pub wasi_preopen: bool,
    pub state_quota: Option<u64>,
    pub secrets: bool,
    pub deadline_ms: u64,
    pub memory_bytes: u64,
}

impl Default for FixtureGrants {
    fn default() -> Self {
        Self {
            mount: true,
            storage: Some("read-write"),
            wasi_preopen: false,
            state_quota: Some(1 << 20),
            secrets: false,
            deadline_ms: 5_000,
            memory_bytes: 64 << 20,
        }
    }
}

/// A private directory with a storage root, a targets folder, host state and
/// a policy for one driver. Unmounts everything beneath it on drop.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub driver: String,
    pub policy_path: PathBuf,
}

impl Fixture {
    /// A fixture for the driver built as `component_name`, with `grants`.
    pub fn new(component_name: &str, grants: FixtureGrants) -> Self {
        require_privileged();
        let dir = tempfile::Builder::new()
            .prefix("wasmvol-test-")
            .tempdir()
            .expect("tempdir");
        for sub in ["root", "targets", "state", "outside"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let component = component(component_name);
        let policy_path = dir.path().join("policy.toml");
        let f = Self {
            dir,
            driver: component_name.to_owned(),
            policy_path,
        };
        f.write_policy(&component, &sha256_file(&component), &grants);
        f
    }

    /// Rewrites the policy (e.g. with another digest or grants).
    pub fn write_policy(&self, component: &Path, sha256: &str, g: &FixtureGrants) {
        let mut grants = format!("mount = {}\nsecrets = {}\n", g.mount, g.secrets);
        if let Some(q) = g.state_quota {
            grants += &format!("state_quota_bytes = {q}\n");
        }
        if let Some(access) = g.storage {
            grants += &format!(
                "storage = {{ root = \"{}\", access = \"{access}\", wasi_preopen = {} }}\n",
                self.root().display(),
                g.wasi_preopen
            );
        }
        let text = format!(
            "[host]\nstate_dir = \"{}\"\n\n[[driver]]\nname = \"{}\"\ncomponent = \"{}\"\nsha256 = \"{sha256}\"\n[driver.grants]\n{grants}[driver.limits]\ndeadline_ms = {}\nmemory_bytes = {}\nconcurrency = 8\n",
            self.dir.path().join("state").display(),
            self.driver,
            component.display(),
            g.deadline_ms,
            g.memory_bytes,
        );
        std::fs::write(&self.policy_path, text).unwrap();
    }

    pub fn policy(&self) -> Policy {
        Policy::load(&self.policy_path).expect("policy")
    }

    /// Starts a runtime with this fixture's driver.
    pub fn runtime(&self) -> Runtime {
        Runtime::start(&self.policy(), None).expect("runtime starts")
    }

    /// The driver's storage root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A directory outside the root, for escape attempts to aim at.
    pub fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    /// A fresh target directory, as kubelet would create for NodePublish.
    pub fn target(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("targets").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// The audit log, one JSON value per line.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let path = self.dir.path().join("state/audit.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// Mounts beneath the fixture right now.
    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(self.dir.path())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Innermost first; lazy detach so a busy mount cannot keep us from cleaning up.
        let mut mounts = self.mounts();
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
