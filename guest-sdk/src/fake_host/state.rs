//! `state`: the driver's durable key-value store, in memory.

use super::world;
use crate::DriverError;

/// The value of `key`, if any.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, DriverError> {
    Ok(world::with(|w| w.state.get(key).cloned()))
}

/// Set `key` to `value`.
pub fn put(key: &str, value: &[u8]) -> Result<(), DriverError> {
    world::with(|w| w.state.insert(key.to_owned(), value.to_vec()));
    Ok(())
}

/// Remove `key`; an absent key is success.
pub fn delete(key: &str) -> Result<(), DriverError> {
    world::with(|w| w.state.remove(key));
    Ok(())
}

/// Every key starting with `prefix`, with its value, in key order.
pub fn list_prefix(prefix: &str) -> Result<Vec<(String, Vec<u8>)>, DriverError> {
    Ok(world::with(|w| {
        w.state
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }))
}

/// Set `key` to `new` (none: remove it) only if it holds `expected`
/// (none: absent); whether it did.
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<bool, DriverError> {
    Ok(world::with(|w| {
        if w.state.get(key).map(Vec::as_slice) != expected {
            return false;
        }
        match new {
            Some(v) => w.state.insert(key.to_owned(), v.to_vec()),
            None => w.state.remove(key),
        };
        true
    }))
}
