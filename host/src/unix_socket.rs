//! Serving unix sockets (CSI, Flex): created with a given mode, a stale
//! file replaced, one a live process serves refused.

use std::future::Future;
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

/// The first pause after an accept failed for want of resources, doubled
/// on each failure in a row up to [`ACCEPT_PAUSE_MAX`].
const ACCEPT_PAUSE_MIN: std::time::Duration = std::time::Duration::from_millis(5);
/// The longest pause between accepts while resources stay short.
const ACCEPT_PAUSE_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Accepts connections on one listener, backing off when accepting fails:
/// out of descriptors (EMFILE, ENFILE) or memory, `accept` fails at once
/// again and again while the pending connection stays queued, and a loop
/// that retried at once would spin a core. Each pause doubles, from 5 ms
/// to 1 s; the first success resets it. A connection aborted before it was
/// accepted is skipped without a pause.
pub struct Acceptor {
    listener: UnixListener,
    pause: std::time::Duration,
    sleeping: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Acceptor {
    /// Accepts on `listener`.
    pub fn new(listener: UnixListener) -> Self {
        Self {
            listener,
            pause: ACCEPT_PAUSE_MIN,
            sleeping: None,
        }
    }

    /// The next connection.
    pub async fn accept(&mut self) -> tokio::net::UnixStream {
        std::future::poll_fn(|cx| self.poll_next_connection(cx)).await
    }

    fn poll_next_connection(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<tokio::net::UnixStream> {
        use std::task::Poll;
        loop {
            if let Some(sleep) = &mut self.sleeping {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleeping = None;
            }
            match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, _))) => {
                    self.pause = ACCEPT_PAUSE_MIN;
                    return Poll::Ready(stream);
                }
                Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionAborted => {
                    continue
                }
                Poll::Ready(Err(e)) => {
                    if self.pause == ACCEPT_PAUSE_MIN {
                        tracing::warn!(error = %e, "accept failed; pausing between tries until it works");
                    }
                    self.sleeping = Some(Box::pin(tokio::time::sleep(self.pause)));
                    self.pause = (self.pause * 2).min(ACCEPT_PAUSE_MAX);
                }
            }
        }
    }
}

impl tokio_stream::Stream for Acceptor {
    type Item = std::io::Result<tokio::net::UnixStream>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.get_mut().poll_next_connection(cx).map(|s| Some(Ok(s)))
    }
}
