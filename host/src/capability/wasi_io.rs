//! `wasi:io/poll` and `wasi:io/streams` as a driver call sees them.
//!
//! wasmtime-wasi's synchronous bindings wait on tokio with
//! `Handle::block_on`, which panics on a tokio worker, and CSI calls run in
//! place on one (see `sync_calls`): a driver printing a line, or the panic
//! message of a driver that traps, would take the request down with a host
//! panic. And a guest waiting in a host call never reaches an epoch check, so
//! a `sleep` would outlive its call's deadline and hold the call forever.
//!
//! These bindings replace wasmtime-wasi's for the two interfaces. They
//! delegate every operation to wasmtime-wasi, but one that may wait first
//! leaves the worker (`block_in_place`, only when on one), and a wait on a
//! pollable ends at the call's deadline, where the call is interrupted as a
//! loop would be. `wasi:sockets/udp-create-socket` goes through here too:
//! wasmtime-wasi's waits on tokio even to refuse (policy grants no network).
//! A driver granted a WASI preopen runs its whole call through
//! [`off_worker`], since every filesystem operation waits on tokio.

use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime::Trap;
use wasmtime_wasi::p2::bindings::sockets::network;
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::bindings::sync::sockets::udp_create_socket;
use wasmtime_wasi::p2::{DynPollable, Pollable, SocketError, StreamResult};
use wasmtime_wasi::sockets::{WasiSocketsCtxView, WasiSocketsView};

use crate::capability::context::CallContext;

/// The io view of one call: its resource table and its deadline.
pub struct CallIo<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
}

impl<'a> CallIo<'a> {
    /// The io view of the call whose table and deadline these are.
    pub fn new(table: &'a mut ResourceTable, deadline: Instant) -> Self {
        Self { table, deadline }
    }
}

/// Marks [`CallIo`] as the host data of the bindings added by [`add_to_linker`].
struct CallIoData;

impl HasData for CallIoData {
    type Data<'a> = CallIo<'a>;
}

/// Replaces wasmtime-wasi's `wasi:io/poll`, `wasi:io/streams` and
/// `wasi:sockets/udp-create-socket` in `linker` (added before) with these.
pub fn add_to_linker(linker: &mut Linker<CallContext>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    poll::add_to_linker::<CallContext, CallIoData>(linker, CallContext::io)?;
    streams::add_to_linker::<CallContext, CallIoData>(linker, CallContext::io)?;
    udp_create_socket::add_to_linker::<CallContext, CallSocketsData>(linker, |c| {
        CallSockets(c.sockets())
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs `wait`, which may block on tokio, where blocking is allowed: off
/// the tokio worker this thread is, if it is one.
pub fn off_worker<R>(wait: impl FnOnce() -> R) -> R {
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_worker {
        crate::runtime::sync_calls::may_block();
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}

/// A pollable that is ready at the call's deadline.
struct CallDeadline(Instant);

#[wasmtime_wasi::async_trait]
impl Pollable for CallDeadline {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0.into()).await;
    }
}

impl CallIo<'_> {
    /// `poll` that returns no later than the call's deadline: past it, with
    /// nothing ready, the call is interrupted.
    fn poll_within_deadline(
        &mut self,
        mut pollables: Vec<Resource<DynPollable>>,
    ) -> wasmtime::Result<Vec<u32>> {
        let timer = self.table.push(CallDeadline(self.deadline))?;
        let timer = wasmtime_wasi::p2::subscribe(self.table, timer)?;
        let timer_index = u32::try_from(pollables.len())?;
        pollables.push(Resource::new_borrow(timer.rep()));
        let ready = off_worker(|| poll::Host::poll(self.table, pollables));
        poll::HostPollable::drop(self.table, timer)?;
        let mut ready = ready?;
        ready.retain(|&i| i != timer_index);
        if ready.is_empty() {
            return Err(Trap::Interrupt.into());
        }
        Ok(ready)
    }
}

impl poll::Host for CallIo<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        self.poll_within_deadline(pollables)
    }
}

impl poll::HostPollable for CallIo<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        off_worker(|| poll::HostPollable::ready(self.table, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.poll_within_deadline(vec![pollable]).map(drop)
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.table, pollable)
    }
}

impl streams::Host for CallIo<'_> {
    fn convert_stream_error(
        &mut self,
        err: wasmtime_wasi::p2::StreamError,
    ) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table, err)
    }
}

impl streams::HostOutputStream for CallIo<'_> {
    fn drop(&mut self, s: Resource<streams::OutputStream>) -> wasmtime::Result<()> {
        off_worker(|| streams::HostOutputStream::drop(self.table, s))
    }

    fn check_write(&mut self, s: Resource<streams::OutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.table, s)
    }

    fn write(&mut self, s: Resource<streams::OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.table, s, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        s: Resource<streams::OutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        off_worker(|| streams::HostOutputStream::blocking_write_and_flush(self.table, s, bytes))
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        s: Resource<streams::OutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        off_worker(|| {
            streams::HostOutputStream::blocking_write_zeroes_and_flush(self.table, s, len)
        })
    }

    fn subscribe(
        &mut self,
        s: Resource<streams::OutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.table, s)
    }

    fn write_zeroes(&mut self, s: Resource<streams::OutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.table, s, len)
    }

    fn flush(&mut self, s: Resource<streams::OutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table, s)
    }

    fn blocking_flush(&mut self, s: Resource<streams::OutputStream>) -> StreamResult<()> {
        off_worker(|| streams::HostOutputStream::blocking_flush(self.table, s))
    }

    fn splice(
        &mut self,
        dst: Resource<streams::OutputStream>,
        src: Resource<streams::InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<streams::OutputStream>,
        src: Resource<streams::InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        off_worker(|| streams::HostOutputStream::blocking_splice(self.table, dst, src, len))
    }
}

impl streams::HostInputStream for CallIo<'_> {
    fn drop(&mut self, s: Resource<streams::InputStream>) -> wasmtime::Result<()> {
        off_worker(|| streams::HostInputStream::drop(self.table, s))
    }

    fn read(&mut self, s: Resource<streams::InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, s, len)
    }

    fn blocking_read(
        &mut self,
        s: Resource<streams::InputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        off_worker(|| streams::HostInputStream::blocking_read(self.table, s, len))
    }

    fn skip(&mut self, s: Resource<streams::InputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, s, len)
    }

    fn blocking_skip(&mut self, s: Resource<streams::InputStream>, len: u64) -> StreamResult<u64> {
        off_worker(|| streams::HostInputStream::blocking_skip(self.table, s, len))
    }

    fn subscribe(
        &mut self,
        s: Resource<streams::InputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.table, s)
    }
}

/// wasmtime-wasi's sockets view, with UDP socket creation off the worker.
struct CallSockets<'a>(WasiSocketsCtxView<'a>);

/// Marks [`CallSockets`] as the host data of `udp-create-socket`.
struct CallSocketsData;

impl HasData for CallSocketsData {
    type Data<'a> = CallSockets<'a>;
}

impl udp_create_socket::Host for CallSockets<'_> {
    fn create_udp_socket(
        &mut self,
        family: network::IpAddressFamily,
    ) -> Result<Resource<udp_create_socket::UdpSocket>, SocketError> {
        off_worker(|| udp_create_socket::Host::create_udp_socket(&mut self.0, family))
    }
}

impl network::Host for CallSockets<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<network::ErrorCode> {
        network::Host::convert_error_code(&mut self.0, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<network::Error>,
    ) -> wasmtime::Result<Option<network::ErrorCode>> {
        network::Host::network_error_code(&mut self.0, err)
    }
}

impl network::HostNetwork for CallSockets<'_> {
    fn drop(&mut self, n: Resource<network::Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.0, n)
    }
}
