//! The driver's exported functions: found and typechecked once at load, then
//! reached by index on every fresh instance.
//!
//! Looking up and typechecking every export of the world on each
//! instantiation (what the generated `VolumeDriver::instantiate` does) costs
//! more than the instantiation itself; a call needs one function. So the
//! host resolves each export's index once, proves at load that every
//! function has the type the host calls it at, and per call only fetches
//! the one function it needs by index.
//!
//! Everything here is generated from the driver-call table
//! ([`crate::call::driver_calls!`]): the export each [`Operation`] calls,
//! the type it is checked and called at, and how its request becomes the
//! export's parameters.

use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, Instance, InstancePre, Lift, Lower,
    Resource, TypedFunc,
};
use wasmtime::Store;

use crate::bindings::mount::TargetRole;
use crate::bindings::{controller, node, types, DriverError};
use crate::call::{Answer, IntoOutcome, Operation, Outcome, WithPaths};
use crate::capability::context::CallContext;
use crate::capability::mount::TargetHandle;

const IDENTITY: &str = "wasmvol:driver/identity@0.1.0";
const CONTROLLER: &str = "wasmvol:driver/controller@0.1.0";
const NODE: &str = "wasmvol:driver/node@0.1.0";

/// A target handle as a node export takes it.
type Target = Resource<TargetHandle>;

/// Makes [`Exports`] from the driver-call table.
macro_rules! exports {
    ($($(#[doc = $doc:literal])* $op:ident $(($req:ty))? => $name:literal,
        $iface:ident . $export:literal ($($param:ty),*) -> $ret:ty
        $(, secrets at $($path:ident).+)?;)*) => {
        /// Indices of the world's exported functions in one component, one
        /// per [`Operation`] variant.
        #[derive(Debug, Clone)]
        #[allow(non_snake_case)]
        pub struct Exports {
            $($op: ComponentExportIndex,)*
        }

        impl Exports {
            /// Finds every export of the world in `component`, naming the first one missing.
            pub fn find(component: &Component) -> Result<Self, String> {
                let iface = |name: &str| {
                    component
                        .get_export_index(None, name)
                        .ok_or_else(|| format!("no export `{name}`"))
                };
                let (identity, controller, node) = (iface(IDENTITY)?, iface(CONTROLLER)?, iface(NODE)?);
                let ifaces = [(IDENTITY, &identity), (CONTROLLER, &controller), (NODE, &node)];
                let func = |iface: &str, name: &str| {
                    let (_, index) = ifaces.iter().find(|(n, _)| *n == iface).expect("known interface");
                    component
                        .get_export_index(Some(index), name)
                        .ok_or_else(|| format!("`{iface}` exports no function `{name}`"))
                };
                Ok(Self {
                    $($op: func($iface, $export)?,)*
                })
            }

            /// Checks, on a live instance, that every export has the type the
            /// host calls it at. Run once at load; [`Self::dispatch`] relies on it.
            pub fn typecheck(
                &self,
                store: &mut Store<CallContext>,
                instance: &Instance,
            ) -> wasmtime::Result<()> {
                $(
                    instance
                        .get_typed_func::<($($param,)*), ($ret,)>(&mut *store, &self.$op)
                        .map_err(|e| e.context(concat!("export `", $export, "`")))?;
                )*
                Ok(())
            }

            /// Runs `op` in a fresh instance of `pre`: makes its target
            /// handles from the request's host paths (a bad path never
            /// reaches the driver and costs no instance), then calls its export.
            pub fn dispatch(
                &self,
                store: &mut Store<CallContext>,
                pre: &InstancePre<CallContext>,
                op: Operation,
            ) -> wasmtime::Result<Answer<Outcome>> {
                match op {
                    $(op @ Operation::$op { .. } => {
                        let params: ($($param,)*) =
                            match exports!(@params store, op, $op $(, $req)?) {
                                Ok(params) => params,
                                Err(e) => return Ok(Err(e)),
                            };
                        let instance = pre.instantiate(&mut *store)?;
                        // SAFETY: `typecheck` proved at load that this export
                        // has exactly these parameter and result types (both
                        // written once, in this row of the table), and a
                        // component's types do not change between instances.
                        let answer = unsafe {
                            call::<($($param,)*), $ret>(store, &instance, &self.$op, params)?
                        };
                        Ok(IntoOutcome::into_outcome(answer))
                    })*
                }
            }
        }
    };
    (@params $store:ident, $o:ident, $op:ident) => {{
        let _ = $o;
        Ok(())
    }};
    (@params $store:ident, $o:ident, $op:ident, $req:ty) => {{
        let Operation::$op(request) = $o else { unreachable!("matched by variant") };
        IntoParams::into_params(request, $store)?
    }};
}

crate::call::driver_calls!(exports);

/// Calls the export at `index` of `instance` with `params`.
///
/// # Safety
/// The export must have been typechecked as `(P) -> (R,)` on an instance of
/// the same component.
unsafe fn call<P, R>(
    store: &mut Store<CallContext>,
    instance: &Instance,
    index: &ComponentExportIndex,
    params: P,
) -> wasmtime::Result<R>
where
    P: ComponentNamedList + Lower + Send + Sync,
    (R,): ComponentNamedList + Lift + Send + Sync,
{
    let func = instance
        .get_func(&mut *store, index)
        .expect("exports are found at load, in the same component");
    // SAFETY: the caller guarantees the export was typechecked at `(P) -> (R,)`.
    let typed = unsafe { TypedFunc::<P, (R,)>::new_unchecked(func) };
    Ok(typed.call(store, params)?.0)
}

/// How an operation's request becomes its export's parameters: controller
/// requests pass as they are; node requests first turn their host paths
/// into target handles for this call.
trait IntoParams<P> {
    /// The parameters, or why the request cannot reach the driver.
    fn into_params(self, store: &mut Store<CallContext>) -> wasmtime::Result<Answer<P>>;
}

impl<R> IntoParams<(R,)> for R {
    fn into_params(self, _: &mut Store<CallContext>) -> wasmtime::Result<Answer<(R,)>> {
        Ok(Ok((self,)))
    }
}

impl<R: NodeRequest> IntoParams<(Target, R)> for WithPaths<R> {
    fn into_params(self, store: &mut Store<CallContext>) -> wasmtime::Result<Answer<(Target, R)>> {
        let target = match target_handle(store, &self.target_path, R::ROLE)? {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok((target, self.request)))
    }
}

impl IntoParams<(Target, Option<Target>, node::PublishRequest)>
    for WithPaths<node::PublishRequest>
{
    fn into_params(
        self,
        store: &mut Store<CallContext>,
    ) -> wasmtime::Result<Answer<(Target, Option<Target>, node::PublishRequest)>> {
        let target = match target_handle(store, &self.target_path, TargetRole::Publish)? {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let staging = match &self.staging_path {
            Some(path) => match target_handle(store, path, TargetRole::Staging)? {
                Ok(t) => Some(t),
                Err(e) => return Ok(Err(e)),
            },
            None => None,
        };
        Ok(Ok((target, staging, self.request)))
    }
}

/// A node request that acts at one host path, in one role.
trait NodeRequest {
    /// What the path is to kubelet: a staging path or a publish target.
    const ROLE: TargetRole;
}

impl NodeRequest for node::StageRequest {
    const ROLE: TargetRole = TargetRole::Staging;
}
impl NodeRequest for node::UnstageRequest {
    const ROLE: TargetRole = TargetRole::Staging;
}
impl NodeRequest for node::UnpublishRequest {
    const ROLE: TargetRole = TargetRole::Publish;
}
impl NodeRequest for node::VolumeStatsRequest {
    const ROLE: TargetRole = TargetRole::Publish;
}
impl NodeRequest for node::NodeExpandRequest {
    const ROLE: TargetRole = TargetRole::Publish;
}

/// Makes a target handle for this call from a request path.
fn target_handle(
    store: &mut Store<CallContext>,
    path: &std::path::Path,
    role: TargetRole,
) -> wasmtime::Result<Answer<Target>> {
    match TargetHandle::open(path, role) {
        Ok(handle) => Ok(Ok(store.data_mut().table.push(handle)?)),
        Err(e) => Ok(Err(DriverError::InvalidArgument(format!(
            "{}: {e}",
            path.display()
        )))),
    }
}
