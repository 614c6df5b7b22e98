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

/// A ListVolumes answer: one page of `volumes` (in a stable order).
pub fn list_volumes(
    volumes: Vec<crate::Volume>,
    r: &crate::ListVolumesRequest,
) -> Result<crate::ListVolumesResponse> {
    let (items, next_token) = page(&volumes, r.max_entries, &r.starting_token)?;
    Ok(crate::ListVolumesResponse {
        entries: items
            .iter()
            .map(|v| crate::ListedVolume {
                volume: v.clone(),
                published_node_ids: Vec::new(),
                abnormal_message: None,
            })
            .collect(),
        next_token,
    })
}

/// A ListVolumes answer as [`list_volumes`] makes it, each listed volume
/// with its condition: `condition` says what is wrong with a volume, if
/// anything (for a driver with feature `volume-condition`).
pub fn list_volumes_with_condition(
    volumes: Vec<crate::Volume>,
    r: &crate::ListVolumesRequest,
    mut condition: impl FnMut(&crate::Volume) -> Result<Option<String>>,
) -> Result<crate::ListVolumesResponse> {
    let mut page = list_volumes(volumes, r)?;
    for e in &mut page.entries {
        e.abnormal_message = condition(&e.volume)?;
    }
    Ok(page)
}

/// A ListSnapshots answer: `snapshots` filtered by the request's snapshot
/// and source volume ids (when set), then one page of them.
pub fn list_snapshots(
    snapshots: Vec<crate::Snapshot>,
    r: &crate::ListSnapshotsRequest,
) -> Result<crate::ListSnapshotsResponse> {
    let matching: Vec<crate::Snapshot> = snapshots
        .into_iter()
        .filter(|s| r.snapshot_id.is_empty() || s.snapshot_id == r.snapshot_id)
        .filter(|s| r.source_volume_id.is_empty() || s.source_volume_id == r.source_volume_id)
        .collect();
    let (items, next_token) = page(&matching, r.max_entries, &r.starting_token)?;
    Ok(crate::ListSnapshotsResponse {
        entries: items.to_vec(),
        next_token,
    })
}
