//! `wasmvol flex install|uninstall`: put the shim where kubelet looks.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::policy::FlexName;

/// A step of installing or removing a shim that failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct InstallError {
    /// The step, with the path it acted on.
    what: String,
    /// Why.
    source: std::io::Error,
}

fn step(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InstallError {
    let what = what.into();
    move |source| InstallError { what, source }
}

/// Kubelet's default FlexVolume plugin dir.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec";

/// Installs `shim` as `<plugin_dir>/vendor~name/name`, stamped with `socket`.
/// Written beside its final name and renamed into place, so kubelet's plugin
/// watcher never sees a half-written file.
pub fn install(
    shim: &Path,
    plugin_dir: &Path,
    driver: &FlexName,
    socket: &Path,
) -> Result<PathBuf, InstallError> {
    let dir = plugin_dir.join(driver.dir_name());
    std::fs::create_dir_all(&dir).map_err(step(format!("creating {}", dir.display())))?;
    let dest = dir.join(&driver.name);
    let tmp = dir.join(format!(
        ".{}.wasmvol-tmp-{}",
        driver.name,
        std::process::id()
    ));
    let write = || -> Result<(), InstallError> {
        let mut bytes =
            std::fs::read(shim).map_err(step(format!("reading shim {}", shim.display())))?;
        bytes.extend(wasmvol_flex::trailer(socket.as_os_str().as_bytes()));
        let writing = || format!("writing {}", tmp.display());
        let mut f = std::fs::File::create(&tmp).map_err(step(writing()))?;
        f.write_all(&bytes).map_err(step(writing()))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(step(writing()))?;
        f.sync_all().map_err(step(writing()))?;
        std::fs::rename(&tmp, &dest).map_err(step(format!("renaming into {}", dest.display())))
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(dest)
}

/// Removes an installed shim and its directory (when empty).
pub fn uninstall(plugin_dir: &Path, driver: &FlexName) -> Result<(), InstallError> {
    let dir = plugin_dir.join(driver.dir_name());
    match std::fs::remove_file(dir.join(&driver.name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(step(format!("removing {}", dir.display()))(e))
        }
        _ => {}
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}
