//! Mutable parameters (CSI `mutable_parameters`, Kubernetes
//! VolumeAttributesClass): set at create, changed by modify-volume.
//!
//! The spec's rules are the same for every driver: only the keys given
//! change, an unknown key or a bad value is `invalid-argument` and changes
//! nothing. [`read_only`] is the one parameter both bundled drivers offer.

use crate::{DriverError, Result};

/// The key of the read-only parameter: `true` makes every later publish of
/// the volume read-only, `false` lifts it.
pub const READ_ONLY: &str = "readOnly";

/// The volume's read-only setting after `params` (`current` when they do
/// not name it). Any key but [`READ_ONLY`], or a value other than `true` or
/// `false`, is `invalid-argument`.
pub fn read_only(current: bool, params: &[(String, String)]) -> Result<bool> {
    let mut read_only = current;
    for (key, value) in params {
        if key != READ_ONLY {
            return Err(DriverError::InvalidArgument(format!(
                "mutable parameter `{key}` is not supported (this driver knows {READ_ONLY})"
            )));
        }
        read_only = match value.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(DriverError::InvalidArgument(format!(
                    "mutable parameter {READ_ONLY}: `{other}` is not true or false"
                )))
            }
        };
    }
    Ok(read_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_named_keys_change_and_anything_unknown_is_refused() {
        assert!(!read_only(false, &[]).unwrap());
        assert!(read_only(true, &[]).unwrap());
        assert!(read_only(false, &kv(&[("readOnly", "true")])).unwrap());
        assert!(!read_only(true, &kv(&[("readOnly", "false")])).unwrap());
        for bad in [kv(&[("iops", "1")]), kv(&[("readOnly", "yes")])] {
            assert!(matches!(
                read_only(false, &bad),
                Err(DriverError::InvalidArgument(_))
            ));
        }
    }
}
