//! Serving unix sockets (CSI, Flex): created with a given mode, a stale
//! file replaced, one a live process serves refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use tokio::net::UnixListener;

/// Fails if a live process answers on `path`.
pub fn ensure_not_served(path: &Path) -> anyhow::Result<()> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("{}: another process is serving this socket", path.display());
    }
    Ok(())
}

/// Binds `path` for serving.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() || std::fs::symlink_metadata(path).is_ok() {
        ensure_not_served(path)?;
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {:o} {}", mode, path.display()))?;
    Ok(listener)
}
