//! `wasmvol:driver/state`: the driver's durable key-value store.
//!
//! Keys live in the host's [`StateStore`](crate::store::state::StateStore)
//! under the driver's name, so drivers never see each other's state.

use serde_json::json;

use crate::bindings::state::Host;
use crate::bindings::DriverError;
use crate::capability::context::{CallContext, CapError};
use crate::capability::table::CapOp;
use crate::store::state::StateError;

fn state_err(e: StateError) -> CapError {
    CapError::Failed(match e {
        StateError::Quota { .. } => DriverError::ResourceExhausted(e.to_string()),
        StateError::BadKey => DriverError::InvalidArgument(e.to_string()),
        StateError::Store(_) => DriverError::Unavailable(e.to_string()),
    })
}

impl CallContext {
    fn quota(&self) -> u64 {
        self.env.policy.grants.state_quota_bytes.unwrap_or(0)
    }
}

impl Host for CallContext {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, DriverError>> {
        Ok(self.gate(CapOp::StateGet, &[], json!({"key": key}), |ctx| {
            ctx.env.state.get(ctx.driver(), &key).map_err(state_err)
        }))
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), DriverError>> {
        let args = json!({"key": key, "bytes": value.len()});
        Ok(self.gate(CapOp::StatePut, &[], args, |ctx| {
            let quota = ctx.quota();
            ctx.env
                .state
                .put(ctx.driver(), &key, Some(&value), quota)
                .map_err(state_err)
        }))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), DriverError>> {
        Ok(
            self.gate(CapOp::StateDelete, &[], json!({"key": key}), |ctx| {
                let quota = ctx.quota();
                ctx.env
                    .state
                    .put(ctx.driver(), &key, None, quota)
                    .map_err(state_err)
            }),
        )
    }

    fn list_prefix(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<(String, Vec<u8>)>, DriverError>> {
        Ok(self.gate(
            CapOp::StateListPrefix,
            &[],
            json!({"prefix": prefix}),
            |ctx| ctx.env.state.list(ctx.driver(), &prefix).map_err(state_err),
        ))
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> wasmtime::Result<Result<bool, DriverError>> {
        let args = json!({"key": key, "expected_present": expected.is_some(), "new_present": new.is_some()});
        Ok(self.gate(CapOp::StateCompareAndSwap, &[], args, |ctx| {
            let quota = ctx.quota();
            ctx.env
                .state
                .swap(
                    ctx.driver(),
                    &key,
                    Some(expected.as_deref()),
                    new.as_deref(),
                    quota,
                )
                .map_err(state_err)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::context::testing::TestCall;
    use crate::policy::Grants;

    #[test]
    fn state_needs_its_grant_keeps_to_its_quota_and_never_logs_values() {
        let mut none = TestCall::new(None, Grants::default());
        let denied = Host::put(&mut none.ctx, "k".into(), b"v".to_vec()).unwrap();
        assert!(
            matches!(denied, Err(DriverError::PermissionDenied(_))),
            "{denied:?}"
        );
        assert_eq!(none.audit()[0]["decision"], "deny");

        let mut t = TestCall::new(
            None,
            Grants {
                state_quota_bytes: Some(64),
                ..Grants::default()
            },
        );
        Host::put(&mut t.ctx, "k".into(), b"s3cret-value".to_vec())
            .unwrap()
            .unwrap();
        assert_eq!(
            Host::get(&mut t.ctx, "k".into())
                .unwrap()
                .unwrap()
                .as_deref(),
            Some(&b"s3cret-value"[..])
        );
        let over = Host::put(&mut t.ctx, "big".into(), vec![0; 100]).unwrap();
        assert!(
            matches!(over, Err(DriverError::ResourceExhausted(_))),
            "{over:?}"
        );
        assert_eq!(Host::get(&mut t.ctx, "big".into()).unwrap().unwrap(), None);
        let records = t.audit();
        assert_eq!(records.len(), 4, "{records:#?}");
        assert!(
            !serde_json::to_string(&records).unwrap().contains("s3cret"),
            "a value reached the audit log"
        );
    }
}
