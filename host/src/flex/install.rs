//! `wasmvol flex install|uninstall`: put the shim where kubelet looks.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::policy::FlexName;

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
) -> anyhow::Result<PathBuf> {
    let dir = plugin_dir.join(driver.dir_name());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join(&driver.name);
    let tmp = dir.join(format!(
        ".{}.wasmvol-tmp-{}",
        driver.name,
        std::process::id()
    ));
    let write = || -> anyhow::Result<()> {
        let mut bytes =
            std::fs::read(shim).with_context(|| format!("reading shim {}", shim.display()))?;
        bytes.extend(wasmvol_flex::trailer(socket.as_os_str().as_bytes()));
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("renaming into {}", dest.display()))?;
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(dest)
}

/// Removes an installed shim and its directory (when empty).
pub fn uninstall(plugin_dir: &Path, driver: &FlexName) -> anyhow::Result<()> {
    let dir = plugin_dir.join(driver.dir_name());
    match std::fs::remove_file(dir.join(&driver.name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => {}
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}
