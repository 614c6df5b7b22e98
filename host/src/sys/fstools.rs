//! Filesystem tools (mkfs, fsck, grow, probe), run by the host with an argv
//! it builds itself: absolute program paths, no shell, an empty environment,
//! and nothing from a driver but validated, typed values.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Filesystems the host knows how to make, check and grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fs {
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
}

impl Fs {
    /// Every filesystem the host manages.
    pub const ALL: [Fs; 2] = [Fs::Ext4, Fs::Xfs];

    /// The kernel's name, as in /proc/filesystems and blkid.
    pub fn name(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Xfs => "xfs",
        }
    }

    /// The filesystem of a kernel name, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ext4" => Some(Fs::Ext4),
            "xfs" => Some(Fs::Xfs),
            _ => None,
        }
    }
}

/// A volume label a tool may be given: `[A-Za-z0-9][A-Za-z0-9_-]{0,11}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    /// Validates a label.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty()
            || s.len() > 12
            || !s.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "label `{s}` must be 1 to 12 letters, digits, `-` or `_`"
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// How long a tool may run before it is killed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

fn program(name: &str) -> io::Result<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name} is not installed")))
}

/// Runs a tool to completion (bounded), capturing its output.
fn run(name: &str, args: &[&std::ffi::OsStr]) -> io::Result<Output> {
    run_with_env(name, args, &[])
}

/// [`run`] with these variables added to the otherwise empty environment.
pub(crate) fn run_with_env(
    name: &str,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> io::Result<Output> {
    run_within(name, args, env, TOOL_TIMEOUT)
}

/// Tools run by this process so far (every mkfs, fsck, grow, blkid, lvm).
static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many tools this process has run: what a capability costs in
/// processes (benchmarks, metrics).
pub fn runs() -> u64 {
    RUNS.load(std::sync::atomic::Ordering::Relaxed)
}

fn run_within(
    name: &str,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<Output> {
    RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(tool = name, args = ?args, "running");
    let child = Command::new(program(name)?)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // The output is read while the tool runs (an `lvs` of a large group
    // writes more than a pipe holds), on a thread of its own so the wait
    // is bounded. The pid stays the child's until that thread reaps it.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match finished.recv_timeout(timeout) {
        Ok(output) => output,
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = finished.recv();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{name} timed out"),
            ))
        }
    }
}

/// The output of a tool that succeeded, or an error with its first words.
pub(crate) fn checked(name: &str, out: Output) -> io::Result<Output> {
    if out.status.success() {
        return Ok(out);
    }
    let text = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(format!(
        "{name} failed ({}): {}",
        out.status,
        text.lines().take(3).collect::<Vec<_>>().join(" / ")
    )))
}

/// Makes a filesystem on `device`.
pub fn mkfs(device: &Path, fs: Fs, label: Option<&Label>) -> io::Result<()> {
    let mut args: Vec<&std::ffi::OsStr> = Vec::new();
    let tool = match fs {
        Fs::Ext4 => {
            args.extend([os("-F"), os("-q")]);
            "mkfs.ext4"
        }
        Fs::Xfs => {
            args.extend([os("-f"), os("-q")]);
            "mkfs.xfs"
        }
    };
    if let Some(l) = label {
        args.extend([os("-L"), os(&l.0)]);
    }
    args.push(device.as_os_str());
    checked(tool, run(tool, &args)?).map(|_| ())
}

/// The filesystem on `device`, if any (by name). Our own two are read
/// straight from the superblock; anything else is left to blkid, which
/// knows every signature, so a device holding data is never taken as blank.
pub fn probe(device: &Path) -> io::Result<Option<String>> {
    if let Some(fs) = superblock_fs(device)? {
        return Ok(Some(fs.name().to_owned()));
    }
    probe_with_blkid(device)
}

/// ext4 or xfs from the superblock's magic, without running anything.
fn superblock_fs(device: &Path) -> io::Result<Option<Fs>> {
    use std::io::Read;
    let mut head = [0u8; 2048];
    let mut f = std::fs::File::open(device)?;
    if f.read_exact(&mut head).is_err() {
        return Ok(None);
    }
    if &head[0..4] == b"XFSB" {
        return Ok(Some(Fs::Xfs));
    }
    // ext2/3/4: magic 0xEF53 at 1024 + 0x38; ext4 has extents (incompat 0x40) at 1024 + 0x60.
    let incompat = u32::from_le_bytes([head[1120], head[1121], head[1122], head[1123]]);
    if head[1080..1082] == [0x53, 0xEF] && incompat & 0x40 != 0 {
        return Ok(Some(Fs::Ext4));
    }
    Ok(None)
}

fn probe_with_blkid(device: &Path) -> io::Result<Option<String>> {
    let out = run(
        "blkid",
        &[
            os("-p"),
            os("-o"),
            os("value"),
            os("-s"),
            os("TYPE"),
            device.as_os_str(),
        ],
    )?;
    match out.status.code() {
        Some(0) => Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())),
        // blkid: 2 means nothing was found.
        Some(2) => Ok(None),
        _ => checked("blkid", out).map(|_| None),
    }
}

/// Checks a filesystem without changing it: (clean, report).
pub fn check(device: &Path, fs: Fs) -> io::Result<(bool, String)> {
    let out = match fs {
        Fs::Ext4 => run("e2fsck", &[os("-n"), os("-f"), device.as_os_str()])?,
        Fs::Xfs => run("xfs_repair", &[os("-n"), device.as_os_str()])?,
    };
    let report: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .take(20)
        .collect::<Vec<_>>()
        .join("\n");
    Ok((out.status.success(), report))
}

/// Grows a filesystem to its device: ext4 by device (online when mounted),
/// xfs by its mount point (xfs grows only mounted).
pub fn grow(device: &Path, fs: Fs, mounted_at: Option<&Path>) -> io::Result<()> {
    match fs {
        Fs::Ext4 => checked("resize2fs", run("resize2fs", &[device.as_os_str()])?).map(|_| ()),
        Fs::Xfs => {
            let at = mounted_at.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "xfs grows only while mounted")
            })?;
            checked("xfs_growfs", run("xfs_growfs", &[at.as_os_str()])?).map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cannot_smuggle_arguments() {
        assert!(Label::parse("data-1").is_ok());
        for bad in [
            "",
            "-O ^has_journal",
            "a b",
            "x;rm",
            "toolonglabel13",
            "--force",
        ] {
            assert!(Label::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tool_may_write_more_than_a_pipe_holds_and_one_that_hangs_is_killed() {
        let big = run("head", &[os("-c"), os("1000000"), os("/dev/zero")]).unwrap();
        assert!(big.status.success());
        assert_eq!(big.stdout.len(), 1_000_000);

        let started = std::time::Instant::now();
        let err = run_within("sleep", &[os("30")], &[], Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
