//! CSI list paging for drivers: the token is the index of the next entry.

use crate::{DriverError, Result};

/// One page of `items` (keep them in a stable order) from `token` ("" = start), at most `max` (0 = all),
/// and the token of the next page ("" when none).
pub fn page<'a, T>(items: &'a [T], max: u32, token: &str) -> Result<(&'a [T], String)> {
    let start = if token.is_empty() {
        0
    } else {
        token
            .parse::<usize>()
            .ok()
            .filter(|&i| i <= items.len())
            .ok_or_else(|| DriverError::Aborted(format!("invalid starting token `{token}`")))?
    };
    let end = match max {
        0 => items.len(),
        n => (start + n as usize).min(items.len()),
    };
    let next = if end < items.len() {
        end.to_string()
    } else {
        String::new()
    };
    Ok((&items[start..end], next))
}
