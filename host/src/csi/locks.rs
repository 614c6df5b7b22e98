//! One operation at a time per volume (or snapshot, or name).
//!
//! CSI lets a plugin answer ABORTED when an operation on the same volume is
//! already in flight; the CO retries. Different volumes never wait on each other.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tonic::Status;

/// Keys with an operation in flight.
#[derive(Debug, Default, Clone)]
pub struct InFlight(Arc<Mutex<HashSet<String>>>);

/// Held while an operation runs; frees its key on drop.
#[derive(Debug)]
pub struct Held {
    set: InFlight,
    key: String,
}

impl InFlight {
    /// Claims `key`, or answers ABORTED if it is taken.
    pub fn claim(&self, key: String) -> Result<Held, Status> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(key.clone()) {
            return Err(Status::aborted(format!(
                "an operation on `{key}` is already in progress"
            )));
        }
        Ok(Held {
            set: self.clone(),
            key,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_aborted_until_the_first_ends() {
        let f = InFlight::default();
        let a = f.claim("v1".into()).unwrap();
        assert_eq!(
            f.claim("v1".into()).unwrap_err().code(),
            tonic::Code::Aborted
        );
        let _b = f.claim("v2".into()).unwrap();
        drop(a);
        f.claim("v1".into()).unwrap();
    }
}
