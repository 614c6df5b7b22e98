//! Where a volume lives: a share (server, export, NFS version) and its
//! directory beneath the export, written into the volume id so that the
//! driver needs no state: any node (or a controller restarted elsewhere)
//! reads the share back from the id.

use wasmvol_driver_sdk::{DriverError, KeyValues, NfsShare, NfsVersion, Result};

/// What DeleteVolume does with a volume's directory (csi-driver-nfs's `onDelete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// Remove the directory and everything in it.
    Delete,
    /// Leave it as it is.
    Retain,
    /// Rename it to `archived-<name>` beside itself.
    Archive,
}

impl OnDelete {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "delete" => Ok(Self::Delete),
            "retain" => Ok(Self::Retain),
            "archive" => Ok(Self::Archive),
            other => Err(invalid(format!(
                "onDelete `{other}`: one of delete, retain, archive"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Retain => "retain",
            Self::Archive => "archive",
        }
    }
}

fn invalid(m: String) -> DriverError {
    DriverError::InvalidArgument(m)
}

fn version(s: &str) -> Result<NfsVersion> {
    match s {
        "" | "4.2" => Ok(NfsVersion::V42),
        "4.1" => Ok(NfsVersion::V41),
        "4" | "4.0" => Ok(NfsVersion::V40),
        "3" => Ok(NfsVersion::V3),
        other => Err(invalid(format!(
            "nfsvers `{other}`: one of 3, 4.0, 4.1, 4.2"
        ))),
    }
}

fn version_name(v: NfsVersion) -> &'static str {
    match v {
        NfsVersion::V3 => "3",
        NfsVersion::V40 => "4.0",
        NfsVersion::V41 => "4.1",
        NfsVersion::V42 => "4.2",
    }
}

/// A key's value in a StorageClass's parameters, a volume context or Flex options.
pub fn get<'a>(kv: &'a KeyValues, key: &str) -> &'a str {
    kv.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map_or("", |(_, v)| v.as_str())
}

/// A volume's (or snapshot's) place on a share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Server name or address.
    pub server: String,
    /// The export path.
    pub share: String,
    /// The directory beneath the export ("" for the export itself).
    pub path: String,
    /// What deleting it does.
    pub on_delete: OnDelete,
    /// The NFS version to mount with.
    pub version: NfsVersion,
}

impl Location {
    /// The share a StorageClass's parameters (or Flex options, or a volume
    /// context) name: `server`, `share`, optional `subDir`, `onDelete`, `nfsvers`.
    pub fn from_parameters(kv: &KeyValues) -> Result<Self> {
        let (server, share) = (get(kv, "server"), get(kv, "share"));
        if server.is_empty() || share.is_empty() {
            return Err(invalid(
                "parameters `server` and `share` are required".into(),
            ));
        }
        let loc = Self {
            server: server.into(),
            share: share.into(),
            path: get(kv, "subDir").trim_matches('/').into(),
            on_delete: OnDelete::parse(get(kv, "onDelete"))?,
            version: version(get(kv, "nfsvers"))?,
        };
        loc.check()?;
        Ok(loc)
    }

    /// The same share, at `name` beneath this location's path.
    pub fn child(&self, name: &str) -> Self {
        let path = if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.path)
        };
        Self {
            path,
            ..self.clone()
        }
    }

    fn check(&self) -> Result<()> {
        for (what, v) in [
            ("server", &self.server),
            ("share", &self.share),
            ("subDir", &self.path),
        ] {
            if v.contains('#') {
                return Err(invalid(format!("{what} must not contain `#`")));
            }
        }
        Ok(())
    }

    /// The volume id: `server#share#path#onDelete#version`.
    pub fn id(&self) -> String {
        format!(
            "{}#{}#{}#{}#{}",
            self.server,
            self.share,
            self.path,
            self.on_delete.name(),
            version_name(self.version)
        )
    }

    /// Reads a volume id back (`None`: not one of ours).
    pub fn parse(id: &str) -> Option<Self> {
        let parts: Vec<&str> = id.split('#').collect();
        let [server, share, path, on_delete, vers] = parts[..] else {
            return None;
        };
        if server.is_empty() || share.is_empty() {
            return None;
        }
        Some(Self {
            server: server.into(),
            share: share.into(),
            path: path.into(),
            on_delete: OnDelete::parse(on_delete).ok()?,
            version: version(vers).ok()?,
        })
    }

    /// The share as the host's `netfs` interface takes it.
    pub fn share(&self, options: Vec<String>) -> NfsShare {
        NfsShare {
            server: self.server.clone(),
            export_path: self.share.clone(),
            version: self.version,
            options,
        }
    }

    /// The volume context CreateVolume answers: the share, in the keys
    /// `from_parameters` reads, so publish needs nothing else.
    pub fn context(&self) -> KeyValues {
        vec![
            ("server".into(), self.server.clone()),
            ("share".into(), self.share.clone()),
            ("subDir".into(), self.path.clone()),
            ("nfsvers".into(), version_name(self.version).into()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> KeyValues {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ids_carry_the_share_and_read_back() {
        let base = Location::from_parameters(&kv(&[
            ("server", "10.10.0.25"),
            ("share", "/export"),
            ("subDir", "/k8s/"),
            ("onDelete", "archive"),
        ]))
        .unwrap();
        let v = base.child("pvc-1");
        assert_eq!(v.path, "k8s/pvc-1");
        assert_eq!(v.id(), "10.10.0.25#/export#k8s/pvc-1#archive#4.2");
        assert_eq!(Location::parse(&v.id()), Some(v.clone()));
        assert_eq!(
            Location::from_parameters(&v.context()).unwrap().path,
            "k8s/pvc-1"
        );
        assert_eq!(Location::parse("hp-123"), None);
        assert_eq!(Location::parse("a#b#c#shred#4.2"), None);
        assert!(Location::from_parameters(&kv(&[("server", "s")])).is_err());
        assert!(Location::from_parameters(&kv(&[("server", "s#x"), ("share", "/e")])).is_err());
        assert!(Location::from_parameters(&kv(&[
            ("server", "s"),
            ("share", "/e"),
            ("nfsvers", "2")
        ]))
        .is_err());
    }
}
