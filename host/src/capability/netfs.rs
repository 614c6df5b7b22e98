//! `wasmvol:driver/netfs`: NFS exports mounted by the host within
//! `grants.netfs`, onto a request's target or as a detached share root.
//!
//! Order of checks: the gate refuses a driver without the grant before
//! anything else happens; a server the grant does not name (an address
//! literal outside its ranges, an unlisted host name) is refused *before*
//! any lookup, so a driver cannot make the host send DNS queries of its
//! choosing; a granted name is resolved by the host and the address it
//! resolved to must lie in the granted ranges; export, subdirectory,
//! version and every option are parsed and checked; the mount is then made
//! by that address (`addr=`), parameter by parameter, with no helper binary
//! and no option string. The audit record names server, export, address,
//! version, options and flags.

use std::net::IpAddr;
use std::os::fd::OwnedFd;

use serde_json::json;
use wasmtime::component::Resource;

use crate::bindings::netfs::{Host, NfsShare, NfsVersion as WitVersion};
use crate::bindings::DriverError;
use crate::capability::context::{io_error, CallContext, CapError};
use crate::capability::mount::TargetHandle;
use crate::capability::table::CapOp;
use crate::capability::volumes::{ShareRoot, StorageRoot};
use crate::nfs::{resolve, ExportPath, NetfsGrant, NfsOption, NfsVersion};
use crate::policy::StorageAccess;
use crate::sys::fs_context::{open_root, AtimeFlags, FsContext};
use crate::sys::mount::MountFlags;

/// A share mount the grant allows, built from checked types only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsMount {
    /// The protocol version.
    pub version: NfsVersion,
    /// The address the host resolved and checked.
    pub address: IpAddr,
    /// The server-side path: the export plus any subdirectory.
    pub path: ExportPath,
    /// The options, each in the vocabulary and granted.
    pub options: Vec<NfsOption>,
    /// Mounted read-only.
    pub read_only: bool,
}

impl From<WitVersion> for NfsVersion {
    fn from(v: WitVersion) -> Self {
        match v {
            WitVersion::V3 => NfsVersion::V3,
            WitVersion::V40 => NfsVersion::V4_0,
            WitVersion::V41 => NfsVersion::V4_1,
            WitVersion::V42 => NfsVersion::V4_2,
        }
    }
}

/// Where the server's name led, decided before the gate runs: a checked
/// address, or why there is none.
type Resolved = Result<IpAddr, String>;

/// Resolves the server only when the grant lets the driver name it.
fn resolve_granted(grant: Option<&NetfsGrant>, server: &str) -> Resolved {
    let grant = grant.ok_or("no netfs grant")?;
    grant.may_name(server)?;
    let addresses =
        resolve(server).map_err(|e| format!("server `{server}` does not resolve: {e}"))?;
    match addresses.iter().find(|a| grant.may_reach(**a).is_ok()) {
        Some(a) => Ok(*a),
        None => Err(format!(
            "server `{server}` resolves to {}, outside grants.netfs.servers",
            addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Checks a driver's share request against the grant; `Denied` for what
/// the grant does not allow, `Failed(InvalidArgument)` for malformed values.
pub fn check(
    grant: &NetfsGrant,
    share: &NfsShare,
    subdir: &str,
    resolved: &Resolved,
    read_only: bool,
) -> Result<NfsMount, CapError> {
    let invalid = |m: String| CapError::Failed(DriverError::InvalidArgument(m));
    let address = *resolved
        .as_ref()
        .map_err(|why| CapError::Denied(why.clone()))?;
    let export = ExportPath::parse(&share.export_path).map_err(invalid)?;
    let path = export.join(subdir).map_err(invalid)?;
    grant.may_mount(&export).map_err(CapError::Denied)?;
    let version = NfsVersion::from(share.version);
    if !grant.versions.contains(&version) {
        return Err(CapError::Denied(format!(
            "NFS version {version} is not in grants.netfs.versions"
        )));
    }
    let mut options = Vec::new();
    for text in &share.options {
        let o = NfsOption::parse(text).map_err(CapError::Denied)?;
        if !grant.options.contains(o.name()) {
            return Err(CapError::Denied(format!(
                "NFS option `{}` is not in grants.netfs.options",
                o.name()
            )));
        }
        if options.iter().any(|x: &NfsOption| x.name() == o.name()) {
            return Err(invalid(format!("NFS option `{}` given twice", o.name())));
        }
        options.push(o);
    }
    let has = |n: &str| options.iter().any(|o| o.name() == n);
    if has("hard") && has("soft") {
        return Err(invalid("`hard` and `soft` exclude each other".into()));
    }
    if !read_only && grant.access == StorageAccess::ReadOnly {
        return Err(CapError::Denied(
            "NFS shares are granted read-only: mount read-only".into(),
        ));
    }
    Ok(NfsMount {
        version,
        address,
        path,
        options,
        read_only,
    })
}

impl NfsMount {
    /// The mount source, `address:/path` (`[v6]:/path`).
    pub fn source(&self) -> String {
        match self.address {
            IpAddr::V4(a) => format!("{a}:{}", self.path.as_str()),
            IpAddr::V6(a) => format!("[{a}]:{}", self.path.as_str()),
        }
    }

    /// Makes the mount, detached, with the driver's hardening `flags`.
    pub fn make(&self, flags: MountFlags) -> std::io::Result<OwnedFd> {
        let fs = FsContext::open(self.version.fs_type())?;
        fs.set_string("source", &self.source())?;
        fs.set_string("addr", &self.address.to_string())?;
        fs.set_string("vers", self.version.vers())?;
        if self.version == NfsVersion::V4_0 {
            // NFSv4.0 callbacks come back to the client's own address.
            fs.set_string(
                "clientaddr",
                &local_address_towards(self.address)?.to_string(),
            )?;
        }
        for o in &self.options {
            match o.parameter() {
                Some((key, Some(value))) => fs.set_string(key, &value)?,
                Some((key, None)) => fs.set_flag(key)?,
                None => {}
            }
        }
        let atime = AtimeFlags {
            noatime: self.options.contains(&NfsOption::Noatime),
            nodiratime: self.options.contains(&NfsOption::Nodiratime),
        };
        fs.mount(
            MountFlags {
                read_only: self.read_only,
                ..flags
            },
            atime,
        )
    }
}

/// The local address the kernel would use to reach `server` (no packet is sent).
fn local_address_towards(server: IpAddr) -> std::io::Result<IpAddr> {
    let any: IpAddr = match server {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = std::net::UdpSocket::bind((any, 0))?;
    socket.connect((server, 2049))?;
    Ok(socket.local_addr()?.ip())
}

impl CallContext {
    /// The request as audit records show it, before any check.
    fn share_args(&self, share: &NfsShare, subdir: &str, resolved: &Resolved) -> serde_json::Value {
        json!({
            "server": share.server,
            "export": share.export_path,
            "subdir": subdir,
            "version": NfsVersion::from(share.version).vers(),
            "options": share.options,
            "address": resolved.as_ref().ok().map(ToString::to_string),
        })
    }

    fn netfs_grant(&self) -> Result<&NetfsGrant, CapError> {
        self.env
            .policy
            .grants
            .netfs
            .as_ref()
            .ok_or_else(|| CapError::Denied("no netfs grant".into()))
    }
}

impl Host for CallContext {
    fn mount_onto(
        &mut self,
        at: Resource<TargetHandle>,
        share: NfsShare,
        subdir: String,
        read_only: bool,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        self.table.get(&at)?;
        let resolved = resolve_granted(self.env.policy.grants.netfs.as_ref(), &share.server);
        let mut args = self.target_args(&at);
        let share_args = self.share_args(&share, &subdir, &resolved);
        args.as_object_mut()
            .expect("an object")
            .extend(share_args.as_object().expect("an object").clone());
        args["read_only"] = json!(read_only);
        args["flags"] = self.hardening_names();
        Ok(self.gate(CapOp::NetfsMountOnto, &[], args, |ctx| {
            let m = check(ctx.netfs_grant()?, &share, &subdir, &resolved, read_only)?;
            let mount = m
                .make(ctx.mount_flags(read_only))
                .map_err(|e| io_error(&m.source(), e))?;
            ctx.attach_onto_dir(&at, &mount)
        }))
    }

    fn open_share(
        &mut self,
        share: NfsShare,
    ) -> wasmtime::Result<Result<Resource<StorageRoot>, DriverError>> {
        let resolved = resolve_granted(self.env.policy.grants.netfs.as_ref(), &share.server);
        let args = self.share_args(&share, "", &resolved);
        let read_only = self
            .env
            .policy
            .grants
            .netfs
            .as_ref()
            .is_some_and(|g| g.access == StorageAccess::ReadOnly);
        Ok(self.gate(CapOp::NetfsOpenShare, &[], args, |ctx| {
            let m = check(ctx.netfs_grant()?, &share, "", &resolved, read_only)?;
            let mount = m
                .make(ctx.mount_flags(read_only))
                .map_err(|e| io_error(&m.source(), e))?;
            let dir = open_root(&mount).map_err(|e| io_error(&m.source(), e))?;
            let root = StorageRoot::Share(ShareRoot {
                dir: cap_std::fs::Dir::from_std_file(dir),
                describe: m.source(),
            });
            ctx.table
                .push(root)
                .map_err(|e| CapError::Failed(DriverError::ResourceExhausted(e.to_string())))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nfs::AddressRange;

    fn grant(access: StorageAccess) -> NetfsGrant {
        NetfsGrant {
            names: ["localhost".to_string()].into(),
            addresses: vec![AddressRange::parse("127.0.0.1").unwrap()],
            exports: vec![ExportPath::parse("/srv/nfs").unwrap()],
            versions: [NfsVersion::V3, NfsVersion::V4_2].into(),
            options: ["hard", "soft", "timeo", "nconnect", "noatime"].into(),
            access,
        }
    }

    fn share(export: &str, version: WitVersion, options: &[&str]) -> NfsShare {
        NfsShare {
            server: "127.0.0.1".into(),
            export_path: export.into(),
            version,
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_share_is_checked_whole_before_anything_is_mounted() {
        let g = grant(StorageAccess::ReadWrite);
        let here: Resolved = Ok("127.0.0.1".parse().unwrap());
        let m = check(
            &g,
            &share(
                "/srv/nfs",
                WitVersion::V42,
                &["hard", "timeo=600", "noatime"],
            ),
            "pvc-1",
            &here,
            false,
        )
        .unwrap();
        assert_eq!(m.source(), "127.0.0.1:/srv/nfs/pvc-1");
        assert_eq!(m.options.len(), 3);

        let denied = |s: NfsShare, subdir: &str, ro: bool| {
            matches!(check(&g, &s, subdir, &here, ro), Err(CapError::Denied(_)))
        };
        assert!(denied(share("/srv", WitVersion::V42, &[]), "", false));
        assert!(denied(share("/etc", WitVersion::V42, &[]), "", false));
        assert!(denied(share("/srv/nfs", WitVersion::V41, &[]), "", false));
        for smuggled in ["timeo=600,bind", "vers=2", "sec=none", "bind", "retrans=3"] {
            assert!(
                denied(share("/srv/nfs", WitVersion::V42, &[smuggled]), "", false),
                "{smuggled}"
            );
        }
        let invalid = |s: NfsShare, subdir: &str| {
            matches!(
                check(&g, &s, subdir, &here, false),
                Err(CapError::Failed(DriverError::InvalidArgument(_)))
            )
        };
        assert!(invalid(
            share("/srv/nfs", WitVersion::V42, &[]),
            "../../etc"
        ));
        assert!(invalid(share("/srv/nfs/../x", WitVersion::V42, &[]), ""));
        assert!(invalid(
            share("/srv/nfs", WitVersion::V42, &["hard", "soft"]),
            ""
        ));
        assert!(invalid(
            share("/srv/nfs", WitVersion::V42, &["hard", "hard"]),
            ""
        ));
        let elsewhere: Resolved = Err("resolves to 10.9.9.9, outside".into());
        assert!(matches!(
            check(
                &g,
                &share("/srv/nfs", WitVersion::V42, &[]),
                "",
                &elsewhere,
                false
            ),
            Err(CapError::Denied(_))
        ));
        let ro = grant(StorageAccess::ReadOnly);
        assert!(matches!(
            check(
                &ro,
                &share("/srv/nfs", WitVersion::V42, &[]),
                "",
                &here,
                false
            ),
            Err(CapError::Denied(_))
        ));
        assert!(check(
            &ro,
            &share("/srv/nfs", WitVersion::V42, &[]),
            "",
            &here,
            true
        )
        .is_ok());
    }

    #[test]
    fn names_are_resolved_only_when_granted_and_their_address_must_be_too() {
        let g = grant(StorageAccess::ReadWrite);
        assert_eq!(
            resolve_granted(Some(&g), "localhost").unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert!(resolve_granted(Some(&g), "127.0.0.2").is_err());
        assert!(resolve_granted(None, "127.0.0.1").is_err());
        // Not granted: refused without a lookup (an unresolvable name says so).
        let e = resolve_granted(Some(&g), "no-such-host.invalid").unwrap_err();
        assert!(e.contains("not in grants.netfs.servers"), "{e}");
        let narrow = NetfsGrant {
            names: ["localhost".to_string()].into(),
            addresses: vec![AddressRange::parse("10.0.0.0/8").unwrap()],
            ..g
        };
        let e = resolve_granted(Some(&narrow), "localhost").unwrap_err();
        assert!(e.contains("outside grants.netfs.servers"), "{e}");
    }
}
