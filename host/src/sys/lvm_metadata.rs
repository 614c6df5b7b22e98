//! A volume group's commit counter, read straight from a physical volume.
//!
//! Every LVM metadata commit writes the group's text metadata, with a
//! `seqno` one or more above the last, into each physical volume's metadata
//! area. Reading that counter takes two small reads where an `lvs` takes a
//! process and a device scan, so the host can tell whether the group
//! changed since it last listed it ([`super::lvm_groups`]). Only the
//! counter and the group's name and id are read; what is in the group is
//! always learnt from LVM itself.
//!
//! On-disk layout (LVM2 text format): a label `LABELONE` in one of the
//! first four sectors points to the PV header, which lists the data areas
//! and then the metadata areas (offset, size), each list ending in a zero
//! offset. A metadata area starts with a header (magic ` LVM2 x[5A%r0N*>`)
//! whose first raw location gives the offset of the committed text within
//! the area's circular buffer (which begins after the 512-byte header).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::lvm::VgName;

const SECTOR: u64 = 512;
const LABEL_ID: &[u8; 8] = b"LABELONE";
const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// Flag of a raw location LVM ignores (`pvchange --metadataignore`).
const RAW_LOCN_IGNORED: u32 = 1;
/// Bytes of metadata text read: the group's name, id and seqno come first.
const TEXT_HEAD: u64 = 1024;

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("LVM metadata: {what}"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Where a group's metadata lives on one of its physical volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataArea {
    pv: PathBuf,
    /// Byte offset of the metadata area on the device.
    start: u64,
}

/// What the committed metadata says of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The group's id, as LVM prints it (`vg_uuid`).
    pub id: String,
    /// The commit counter.
    pub seqno: u64,
}

impl MetadataArea {
    /// Finds the first metadata area on the physical volume `pv` (a path
    /// LVM reported, never one a driver named).
    pub fn find(pv: &Path) -> io::Result<Self> {
        let file = File::open(pv)?;
        let mut head = vec![0u8; 4 * SECTOR as usize];
        file.read_exact_at(&mut head, 0)?;
        let label = (0..4)
            .map(|s| s * SECTOR as usize)
            .find(|&at| &head[at..at + 8] == LABEL_ID && &head[at + 24..at + 32] == LABEL_TYPE)
            .ok_or_else(|| bad("no LVM2 label in the first four sectors"))?;
        let pv_header = label + u32_at(&head, label + 20) as usize;
        // PV header: uuid (32), device size (8), then the two location lists.
        let mut at = pv_header + 40;
        let mut next = |head: &[u8]| -> io::Result<(u64, u64)> {
            if at + 16 > head.len() {
                return Err(bad("PV header runs past its sector"));
            }
            let l = (u64_at(head, at), u64_at(head, at + 8));
            at += 16;
            Ok(l)
        };
        while next(&head)?.0 != 0 {} // data areas
        let (start, _) = next(&head)?;
        if start == 0 {
            return Err(bad("the PV has no metadata area"));
        }
        Ok(Self {
            pv: pv.to_owned(),
            start,
        })
    }

    /// Reads the committed metadata's group name, id and seqno; fails when
    /// the area holds no committed metadata of group `vg`.
    pub fn commit(&self, vg: &VgName) -> io::Result<Commit> {
        let file = File::open(&self.pv)?;
        let mut header = vec![0u8; SECTOR as usize];
        file.read_exact_at(&mut header, self.start)?;
        if &header[4..20] != MDA_MAGIC {
            return Err(bad("no metadata area header"));
        }
        let area_size = u64_at(&header, 32);
        let (offset, size, flags) = (
            u64_at(&header, 40),
            u64_at(&header, 48),
            u32_at(&header, 60),
        );
        if offset == 0 || size == 0 || flags & RAW_LOCN_IGNORED != 0 {
            return Err(bad("no committed metadata in this area"));
        }
        if offset < SECTOR || offset >= area_size {
            return Err(bad("metadata offset outside its area"));
        }
        // The text may wrap around the end of the circular buffer.
        let len = size.min(TEXT_HEAD);
        let first = len.min(area_size - offset);
        let mut text = vec![0u8; len as usize];
        file.read_exact_at(&mut text[..first as usize], self.start + offset)?;
        if first < len {
            file.read_exact_at(&mut text[first as usize..], self.start + SECTOR)?;
        }
        parse_head(&String::from_utf8_lossy(&text), vg)
    }
}

/// Parses `<vg> {`, `id = "..."` and `seqno = N` from the head of the text.
fn parse_head(text: &str, vg: &VgName) -> io::Result<Commit> {
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some(&format!("{} {{", vg.as_str())) {
        return Err(bad(&format!(
            "the metadata is not volume group {}'s",
            vg.as_str()
        )));
    }
    let (mut id, mut seqno) = (None, None);
    for line in lines.take_while(|l| !l.ends_with('{')) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.trim() {
            "id" => id = Some(value.trim().trim_matches('"').to_owned()),
            "seqno" => seqno = value.trim().parse().ok(),
            _ => {}
        }
    }
    match (id, seqno) {
        (Some(id), Some(seqno)) => Ok(Commit { id, seqno }),
        _ => Err(bad("no id and seqno at the head of the metadata")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device image laid out as LVM2 writes a PV, with `text` committed at
    /// `offset` in the metadata area (4 KiB, of `area` bytes).
    fn image(text: &str, offset: u64, area: u64) -> tempfile::NamedTempFile {
        let mut b = vec![0u8; (4096 + area) as usize];
        let l = 512;
        b[l..l + 8].copy_from_slice(LABEL_ID);
        b[l + 8..l + 16].copy_from_slice(&1u64.to_le_bytes());
        b[l + 20..l + 24].copy_from_slice(&32u32.to_le_bytes());
        b[l + 24..l + 32].copy_from_slice(LABEL_TYPE);
        let h = l + 32 + 40;
        b[h..h + 8].copy_from_slice(&(1u64 << 20).to_le_bytes()); // data area, size 0
        b[h + 32..h + 40].copy_from_slice(&4096u64.to_le_bytes()); // metadata area
        b[h + 40..h + 48].copy_from_slice(&area.to_le_bytes());
        let m = 4096;
        b[m + 4..m + 20].copy_from_slice(MDA_MAGIC);
        b[m + 24..m + 32].copy_from_slice(&4096u64.to_le_bytes());
        b[m + 32..m + 40].copy_from_slice(&area.to_le_bytes());
        b[m + 40..m + 48].copy_from_slice(&offset.to_le_bytes());
        b[m + 48..m + 56].copy_from_slice(&(text.len() as u64).to_le_bytes());
        let bytes = text.as_bytes();
        for (i, c) in bytes.iter().enumerate() {
            let mut at = offset + i as u64;
            if at >= area {
                at = at - area + 512; // the circular buffer wraps after the header
            }
            b[m + at as usize] = *c;
        }
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &b).unwrap();
        f
    }

    const TEXT: &str = "kube_vg {\nid = \"dKyZIC-iHhc\"\nseqno = 21\nformat = \"lvm2\"\nphysical_volumes {\npv0 {\nid = \"other\"\n}\n}\n}\n";

    #[test]
    fn the_commit_counter_is_read_where_the_label_points_even_across_the_wrap() {
        let vg = VgName::parse("kube_vg").unwrap();
        for offset in [1024, 8192 - 20] {
            let img = image(TEXT, offset, 8192);
            let area = MetadataArea::find(img.path()).unwrap();
            assert_eq!(area.start, 4096);
            assert_eq!(
                area.commit(&vg).unwrap(),
                Commit {
                    id: "dKyZIC-iHhc".into(),
                    seqno: 21
                },
                "at {offset}"
            );
        }
    }

    #[test]
    fn another_groups_metadata_or_no_label_is_an_error_not_a_counter() {
        let img = image(TEXT, 1024, 8192);
        let area = MetadataArea::find(img.path()).unwrap();
        assert!(area.commit(&VgName::parse("other_vg").unwrap()).is_err());
        let blank = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(blank.path(), vec![0u8; 8192]).unwrap();
        assert!(MetadataArea::find(blank.path()).is_err());
        assert!(parse_head("kube_vg {\nseqno = x\n", &VgName::parse("kube_vg").unwrap()).is_err());
    }
}
