//! CSI capacity ranges, resolved the same way by every driver.

use crate::{CapacityRange, DriverError, Result, Timestamp};

/// The size to make for `range`: its required bytes; else its limit, capped
/// at `default`; else `default`. `OutOfRange` when required exceeds limit.
pub fn resolve(range: &Option<CapacityRange>, default: u64) -> Result<u64> {
    let Some(r) = range else {
        return Ok(default);
    };
    if r.limit_bytes != 0 && r.required_bytes > r.limit_bytes {
        return Err(DriverError::OutOfRange(format!(
            "required {} bytes exceeds limit {} bytes",
            r.required_bytes, r.limit_bytes
        )));
    }
    Ok(match (r.required_bytes, r.limit_bytes) {
        (0, 0) => default,
        (0, limit) => limit.min(default),
        (required, _) => required,
    })
}

/// Whether an existing volume of `capacity` bytes satisfies `range` (a
/// repeated create must find the same volume, or answer `AlreadyExists`).
pub fn fits(range: &Option<CapacityRange>, capacity: u64) -> bool {
    range.as_ref().is_none_or(|r| {
        r.required_bytes <= capacity && (r.limit_bytes == 0 || capacity <= r.limit_bytes)
    })
}

/// Now, as a CSI timestamp (snapshot creation times).
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(required_bytes: u64, limit_bytes: u64) -> Option<CapacityRange> {
        Some(CapacityRange {
            required_bytes,
            limit_bytes,
        })
    }

    #[test]
    fn ranges_resolve_to_required_then_capped_limit_then_default() {
        assert_eq!(resolve(&None, 10).unwrap(), 10);
        assert_eq!(resolve(&range(0, 0), 10).unwrap(), 10);
        assert_eq!(resolve(&range(0, 4), 10).unwrap(), 4);
        assert_eq!(resolve(&range(0, 40), 10).unwrap(), 10);
        assert_eq!(resolve(&range(7, 9), 10).unwrap(), 7);
        assert!(matches!(
            resolve(&range(9, 7), 10),
            Err(DriverError::OutOfRange(_))
        ));
        assert!(fits(&None, 1) && fits(&range(5, 0), 5) && fits(&range(5, 6), 6));
        assert!(!fits(&range(5, 0), 4) && !fits(&range(0, 6), 7));
    }
}
