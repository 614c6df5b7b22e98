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

/// Binds `path` for serving. The socket is bound beside it, given `mode`,
/// then renamed into place, so no client ever finds it with another mode.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() || std::fs::symlink_metadata(path).is_ok() {
        ensure_not_served(path)?;
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let mut staged = path.as_os_str().to_owned();
    staged.push(format!(".{}.new", std::process::id()));
    let staged = std::path::PathBuf::from(staged);
    let _ = std::fs::remove_file(&staged);
    let listener =
        UnixListener::bind(&staged).with_context(|| format!("binding {}", staged.display()))?;
    let placed = std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {:o} {}", mode, staged.display()))
        .and_then(|()| {
            std::fs::rename(&staged, path)
                .with_context(|| format!("moving the socket to {}", path.display()))
        });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    Ok(listener)
}
