//! Host implementations of the capability interfaces, one file per WIT interface.
//! Every use that touches the host passes through [`CallContext::gate`](crate::capability::context::CallContext::gate).

pub mod context;
pub mod device;
pub mod imports;
pub mod log;
pub mod lvm;
pub mod mount;
pub mod netfs;
pub mod state;
pub mod table;
pub mod tmpfs;
pub mod volumes;
pub mod wasi_io;

use crate::bindings::types::Host as TypesHost;
use crate::capability::context::CallContext;

impl TypesHost for CallContext {}
