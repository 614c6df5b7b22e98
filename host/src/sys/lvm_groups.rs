//! What the host last learnt of each volume group from `lvs`, kept between
//! calls and trusted only while the group's commit counter on disk says
//! nothing has changed since.
//!
//! An `lvs` costs a process and a device scan (in the real-kernel VM as
//! much as the `lvcreate` it guards), and every lvm call needs the group's
//! volumes to decide existence, ownership and the size cap. So each call
//! first reads the group's `seqno` from a physical volume's metadata area
//! ([`MetadataArea`]): equal to the listing's, the listing is current;
//! otherwise (another tool, driver or host changed the group) the group is
//! listed again. A change the host makes itself is folded into the listing
//! only when the counter moved by exactly the commits that change takes, so
//! any other commit in between still forces a fresh listing.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use super::lvm::{self, LogicalVolume, VgName};
use super::lvm_metadata::MetadataArea;

/// Every group a driver uses, each behind its own lock: one call at a time
/// decides and changes a group (LVM serialises them anyway).
#[derive(Debug, Default)]
pub struct GroupCache {
    groups: Mutex<HashMap<VgName, Arc<Mutex<Known>>>>,
}

impl GroupCache {
    /// Runs `f` holding `vg`'s lock, with what is known of it.
    pub fn with<R>(&self, vg: &VgName, f: impl FnOnce(&mut Known) -> R) -> R {
        let known = self
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(vg.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Known {
                    vg: vg.clone(),
                    listing: None,
                    area: None,
                }))
            })
            .clone();
        let mut known = known.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut known)
    }
}

/// What the host knows of one group.
#[derive(Debug)]
pub struct Known {
    vg: VgName,
    listing: Option<lvm::Listing>,
    area: Option<MetadataArea>,
}

impl Known {
    /// The group's volumes, current as of this moment.
    pub fn volumes(&mut self) -> io::Result<&[LogicalVolume]> {
        if !self.is_current() {
            self.relist()?;
        }
        Ok(&self.listing.as_ref().expect("listed above").volumes)
    }

    /// After a change this host made that takes `commits` LVM commits:
    /// `apply` it to the listing if nothing else committed meanwhile
    /// (`apply` returning `false` means it could not tell), else forget the
    /// listing so the next use lists again.
    pub fn changed(&mut self, commits: u64, apply: impl FnOnce(&mut Vec<LogicalVolume>) -> bool) {
        let now = self.commit();
        let kept = match (&mut self.listing, now) {
            (Some(l), Some(c)) if c.id == l.vg_id && c.seqno == l.seqno + commits => {
                l.seqno = c.seqno;
                apply(&mut l.volumes)
            }
            _ => false,
        };
        if !kept {
            self.forget();
        }
    }

    /// Drops the listing (after a failed change, whose effect is unknown).
    pub fn forget(&mut self) {
        self.listing = None;
    }

    fn commit(&self) -> Option<super::lvm_metadata::Commit> {
        self.area.as_ref()?.commit(&self.vg).ok()
    }

    fn is_current(&self) -> bool {
        match (&self.listing, self.commit()) {
            (Some(l), Some(c)) => c.id == l.vg_id && c.seqno == l.seqno,
            _ => false,
        }
    }

    fn relist(&mut self) -> io::Result<()> {
        let listing = lvm::list_group(&self.vg)?;
        if self.area.is_none() {
            // Once per group: where its counter can be read. A group whose
            // metadata cannot be read this way is simply listed every time.
            self.area = lvm::physical_volumes(&self.vg)?
                .iter()
                .find_map(|pv| MetadataArea::find(pv).ok());
        }
        self.listing = Some(listing);
        Ok(())
    }
}
