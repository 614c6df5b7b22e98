//! Serving unix sockets (CSI, Flex): created with a given mode, a stale
//! file replaced, one a live process serves refused.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Why a socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// A live process answers on the path.
    #[error("{}: another process is serving this socket", .0.display())]
    Served(PathBuf),
    /// A file step failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// The step.
        what: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SocketError {
    let path = path.to_owned();
    move |source| SocketError::Io { what, path, source }
}

/// Fails if a live process answers on `path`.
pub fn ensure_not_served(path: &Path) -> Result<(), SocketError> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(SocketError::Served(path.to_owned()));
    }
    Ok(())
}

/// Binds `path` for serving. The socket is bound beside it, given `mode`,
/// then renamed into place, so no client ever finds it with another mode.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        ensure_not_served(path)?;
    }
    take_over(path, mode)
}

/// Binds `path` whoever serves it now: new clients reach the new socket at
/// once, while the old listener (this host's, at a reload) keeps the
/// connections it has until it ends them.
pub fn take_over(path: &Path, mode: u32) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    // Staged as a dot-file: kubelet's plugin watcher skips those, so it
    // never tries a socket that is about to be renamed.
    let file_name = path
        .file_name()
        .ok_or_else(|| SocketError::Io {
            what: "naming",
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?
        .to_string_lossy();
    let staged = path.with_file_name(format!(".{file_name}.{}.new", std::process::id()));
    let _ = std::fs::remove_file(&staged);
    let listener = UnixListener::bind(&staged).map_err(io("binding", &staged))?;
    let placed = std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode of", &staged))
        .and_then(|()| std::fs::rename(&staged, path).map_err(io("moving the socket to", path)));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    Ok(listener)
}
