//! Group snapshots (feature `json`): the bookkeeping every driver needs to
//! offer CSI's GroupController, around the driver's own way of taking one
//! snapshot.
//!
//! A group is a [`GroupSnapshotRecord`] naming its members, each an
//! ordinary [`SnapshotRecord`] with `group` set. [`create`] takes every
//! member in one driver call, so no other call of this driver changes its
//! state in between, and is idempotent by name: a member's name derives
//! from the group's name and its source, so a create retried after a crash
//! finds the members it made before. What a half-made group leaves behind
//! is removed before the error is answered.

use serde::{Deserialize, Serialize};

use crate::records::{id_for, Record, SnapshotRecord};
use crate::{
    CreateGroupSnapshotRequest, DriverError, GroupSnapshot, GroupSnapshotRequest, Result, Timestamp,
};

/// A group snapshot: its id, the CSI name it was made for, its source
/// volumes and member snapshots (in the same order), and when it was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupSnapshotRecord {
    /// The group snapshot id (the record key).
    pub id: String,
    /// The CSI name it was created for.
    pub name: String,
    /// Source volume ids, as the create request listed them.
    pub sources: Vec<String>,
    /// Member snapshot ids, one per source.
    pub members: Vec<String>,
    /// Creation time: seconds and nanoseconds since the epoch.
    pub created: (i64, u32),
}

impl Record for GroupSnapshotRecord {
    const PREFIX: &'static str = "group/";

    fn id(&self) -> &str {
        &self.id
    }
}

/// The name a member snapshot of group `group_name` for `source` is taken under.
pub fn member_name(group_name: &str, source: &str) -> String {
    format!("{group_name}\u{1f}{source}")
}

/// Creates (or finds again) group snapshot `r.name`: `take(source, name,
/// group)` makes one member snapshot of `source` under `name` and records
/// it with `group` set, or finds it again (the driver's own snapshot logic,
/// idempotent by name); `remove(member)` undoes one when a later member
/// fails. Same name with other sources is `already-exists`; no source or a
/// repeated one is `invalid-argument`.
pub fn create<X: Serialize + serde::de::DeserializeOwned>(
    r: &CreateGroupSnapshotRequest,
    mut take: impl FnMut(&str, &str, &str) -> Result<SnapshotRecord<X>>,
    mut remove: impl FnMut(&SnapshotRecord<X>) -> Result<()>,
) -> Result<GroupSnapshot> {
    if r.name.is_empty() {
        return Err(DriverError::InvalidArgument(
            "group snapshot name is required".into(),
        ));
    }
    if r.source_volume_ids.is_empty() {
        return Err(DriverError::InvalidArgument(
            "source_volume_ids: at least one volume is required".into(),
        ));
    }
    for (i, s) in r.source_volume_ids.iter().enumerate() {
        if r.source_volume_ids[..i].contains(s) {
            return Err(DriverError::InvalidArgument(format!(
                "source_volume_ids: volume {s} is listed twice"
            )));
        }
    }
    let id = id_for("group", &r.name);
    if let Some(existing) = GroupSnapshotRecord::load(&id)? {
        if existing.sources != r.source_volume_ids {
            return Err(DriverError::AlreadyExists(format!(
                "group snapshot `{}` exists for other volumes",
                r.name
            )));
        }
        return answer::<X>(&existing);
    }
    let mut made: Vec<SnapshotRecord<X>> = Vec::new();
    for source in &r.source_volume_ids {
        match take(source, &member_name(&r.name, source), &id) {
            Ok(member) => made.push(member),
            Err(e) => return Err(undo(made, &mut remove, e)),
        }
    }
    let t = crate::capacity::now();
    let record = GroupSnapshotRecord {
        id,
        name: r.name.clone(),
        sources: r.source_volume_ids.clone(),
        members: made.iter().map(|m| m.id.clone()).collect(),
        created: (t.seconds, t.nanos),
    };
    if let Err(e) = record.save() {
        return Err(undo(made, &mut remove, e));
    }
    answer::<X>(&record)
}

/// Removes the members made so far and answers the error that stopped the create.
fn undo<X: Serialize + serde::de::DeserializeOwned>(
    made: Vec<SnapshotRecord<X>>,
    remove: &mut impl FnMut(&SnapshotRecord<X>) -> Result<()>,
    e: DriverError,
) -> DriverError {
    for m in made.iter().rev() {
        if remove(m).is_ok() {
            let _ = SnapshotRecord::<X>::delete(&m.id);
        }
    }
    e
}

/// The group `r` names, after checking the caller's member list against it
/// (CSI: a mismatch is `invalid-argument`; an empty list checks nothing).
fn named(r: &GroupSnapshotRequest) -> Result<Option<GroupSnapshotRecord>> {
    if r.group_snapshot_id.is_empty() {
        return Err(DriverError::InvalidArgument(
            "group_snapshot_id is required".into(),
        ));
    }
    let Some(group) = GroupSnapshotRecord::load(&r.group_snapshot_id)? else {
        return Ok(None);
    };
    if !r.snapshot_ids.is_empty() {
        let mut asked = r.snapshot_ids.clone();
        let mut has = group.members.clone();
        asked.sort();
        has.sort();
        if asked != has {
            return Err(DriverError::InvalidArgument(format!(
                "snapshot_ids do not match group snapshot {}: it has {}",
                group.id,
                group.members.join(", ")
            )));
        }
    }
    Ok(Some(group))
}

/// The group snapshot `r` names; unknown is `not-found`.
pub fn get<X: Serialize + serde::de::DeserializeOwned>(
    r: &GroupSnapshotRequest,
) -> Result<GroupSnapshot> {
    let group =
        named(r)?.ok_or_else(|| crate::ids::not_found("group snapshot", &r.group_snapshot_id))?;
    answer::<X>(&group)
}

/// Deletes the group `r` names and every member, each with `remove`; an
/// unknown group is success.
pub fn delete<X: Serialize + serde::de::DeserializeOwned>(
    r: &GroupSnapshotRequest,
    mut remove: impl FnMut(&SnapshotRecord<X>) -> Result<()>,
) -> Result<()> {
    let Some(group) = named(r)? else {
        return Ok(());
    };
    for id in &group.members {
        if let Some(member) = SnapshotRecord::<X>::load(id)? {
            remove(&member)?;
            SnapshotRecord::<X>::delete(id)?;
        }
    }
    GroupSnapshotRecord::delete(&group.id)
}

/// The group as the WIT world answers it, from its member records.
fn answer<X: Serialize + serde::de::DeserializeOwned>(
    group: &GroupSnapshotRecord,
) -> Result<GroupSnapshot> {
    let snapshots = group
        .members
        .iter()
        .map(|id| {
            SnapshotRecord::<X>::load(id)?
                .map(|m| m.to_snapshot())
                .ok_or_else(|| {
                    DriverError::Internal(format!(
                        "group snapshot {}: member {id} is missing",
                        group.id
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(GroupSnapshot {
        group_snapshot_id: group.id.clone(),
        ready_to_use: snapshots.iter().all(|s| s.ready_to_use),
        snapshots,
        creation_time: Timestamp {
            seconds: group.created.0,
            nanos: group.created.1,
        },
    })
}
