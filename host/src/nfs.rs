//! The NFS vocabulary the host speaks for `netfs`: versions, the mount
//! options it accepts, granted servers (names and address ranges), export
//! paths. Each is parsed from text once, at its edge (the policy file, or a
//! driver's request), and carried as a checked type; the mount is then
//! built from these types only, never from a driver's text.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

/// NFS protocol versions the host mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NfsVersion {
    /// NFSv3 (fs type `nfs`).
    V3,
    /// NFSv4.0.
    V4_0,
    /// NFSv4.1.
    V4_1,
    /// NFSv4.2.
    V4_2,
}

impl NfsVersion {
    /// Parses a policy's spelling: `3`, `4` (4.0), `4.0`, `4.1`, `4.2`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "3" => Ok(Self::V3),
            "4" | "4.0" => Ok(Self::V4_0),
            "4.1" => Ok(Self::V4_1),
            "4.2" => Ok(Self::V4_2),
            other => Err(format!(
                "`{other}` is not an NFS version the host mounts (3, 4.0, 4.1, 4.2)"
            )),
        }
    }

    /// The `vers=` value.
    pub fn vers(self) -> &'static str {
        match self {
            Self::V3 => "3",
            Self::V4_0 => "4.0",
            Self::V4_1 => "4.1",
            Self::V4_2 => "4.2",
        }
    }

    /// The kernel filesystem type that mounts it.
    pub fn fs_type(self) -> &'static str {
        match self {
            Self::V3 => "nfs",
            _ => "nfs4",
        }
    }
}

impl fmt::Display for NfsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.vers())
    }
}

/// One mount option from the host's fixed vocabulary, with its value
/// checked. Everything else (`vers=`, which the version field sets;
/// `sec=` other than `sys`; `bind`, `suid`, `addr=`...) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NfsOption {
    /// `hard`: retry forever.
    Hard,
    /// `soft`: fail after `retrans` retries.
    Soft,
    /// `timeo=N`, deciseconds, 1 to 6000.
    Timeo(u32),
    /// `retrans=N`, 0 to 10.
    Retrans(u32),
    /// `rsize=N`, 1024 to 1048576.
    Rsize(u32),
    /// `wsize=N`, 1024 to 1048576.
    Wsize(u32),
    /// `nconnect=N`, 1 to 16.
    Nconnect(u32),
    /// `actimeo=N`, seconds, 0 to 3600.
    Actimeo(u32),
    /// `noac`: no attribute caching.
    Noac,
    /// `nolock`: no NLM locking (NFSv3).
    Nolock,
    /// `sec=sys`, the only flavour the host mounts.
    SecSys,
    /// `noatime` (a per-mount flag).
    Noatime,
    /// `nodiratime` (a per-mount flag).
    Nodiratime,
}

/// Every option name of the vocabulary, as a policy grants them.
pub const OPTION_NAMES: &[&str] = &[
    "hard",
    "soft",
    "timeo",
    "retrans",
    "rsize",
    "wsize",
    "nconnect",
    "actimeo",
    "noac",
    "nolock",
    "sec",
    "noatime",
    "nodiratime",
];

impl NfsOption {
    /// Parses `name` or `name=value`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, value) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        let number = |lo: u32, hi: u32| -> Result<u32, String> {
            let v = value.ok_or_else(|| format!("`{name}` needs a value"))?;
            v.parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| format!("`{text}`: {name} must be a number from {lo} to {hi}"))
        };
        let flag = |o: NfsOption| match value {
            None => Ok(o),
            Some(_) => Err(format!("`{text}`: {name} takes no value")),
        };
        match name {
            "hard" => flag(Self::Hard),
            "soft" => flag(Self::Soft),
            "noac" => flag(Self::Noac),
            "nolock" => flag(Self::Nolock),
            "noatime" => flag(Self::Noatime),
            "nodiratime" => flag(Self::Nodiratime),
            "timeo" => number(1, 6000).map(Self::Timeo),
            "retrans" => number(0, 10).map(Self::Retrans),
            "rsize" => number(1024, 1 << 20).map(Self::Rsize),
            "wsize" => number(1024, 1 << 20).map(Self::Wsize),
            "nconnect" => number(1, 16).map(Self::Nconnect),
            "actimeo" => number(0, 3600).map(Self::Actimeo),
            "sec" => match value {
                Some("sys") => Ok(Self::SecSys),
                _ => Err(format!("`{text}`: only sec=sys is mounted")),
            },
            "vers" | "nfsvers" => Err(format!(
                "`{text}`: the version is the share's `version` field, not an option"
            )),
            _ => Err(format!(
                "`{text}` is not an NFS option the host passes (one of: {})",
                OPTION_NAMES.join(", ")
            )),
        }
    }

    /// The option's name, as a policy grants it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hard => "hard",
            Self::Soft => "soft",
            Self::Timeo(_) => "timeo",
            Self::Retrans(_) => "retrans",
            Self::Rsize(_) => "rsize",
            Self::Wsize(_) => "wsize",
            Self::Nconnect(_) => "nconnect",
            Self::Actimeo(_) => "actimeo",
            Self::Noac => "noac",
            Self::Nolock => "nolock",
            Self::SecSys => "sec",
            Self::Noatime => "noatime",
            Self::Nodiratime => "nodiratime",
        }
    }

    /// The filesystem parameter it sets (`None` for per-mount flags).
    pub fn parameter(self) -> Option<(&'static str, Option<String>)> {
        let n = |v: u32| Some(v.to_string());
        Some(match self {
            Self::Hard => ("hard", None),
            Self::Soft => ("soft", None),
            Self::Noac => ("noac", None),
            Self::Nolock => ("nolock", None),
            Self::SecSys => ("sec", Some("sys".into())),
            Self::Timeo(v) => ("timeo", n(v)),
            Self::Retrans(v) => ("retrans", n(v)),
            Self::Rsize(v) => ("rsize", n(v)),
            Self::Wsize(v) => ("wsize", n(v)),
            Self::Nconnect(v) => ("nconnect", n(v)),
            Self::Actimeo(v) => ("actimeo", n(v)),
            Self::Noatime | Self::Nodiratime => return None,
        })
    }
}

impl fmt::Display for NfsOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parameter() {
            Some((k, Some(v))) => write!(f, "{k}={v}"),
            _ => f.write_str(self.name()),
        }
    }
}

/// An address range: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    addr: IpAddr,
    prefix: u8,
}

impl AddressRange {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a single address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an address or address range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `addr` lies in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v4) => u32::from(v4) as u128,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        let width = match (self.addr, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) => 32,
            (IpAddr::V6(_), IpAddr::V6(_)) => 128,
            _ => return false,
        };
        if self.prefix == 0 {
            return true;
        }
        let shift = width - u32::from(self.prefix);
        (bits(self.addr) >> shift) == (bits(addr) >> shift)
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Checks a host name: letters, digits, `-` and `.`, 1 to 253 bytes.
pub fn check_host_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not a host name", s.escape_default()))
    }
}

/// An absolute server-side path (an export, or an export plus a volume's
/// subdirectory): normalised, no `..`, no NUL, no `,` or `:` (which the
/// mount source would read as separators). It names a path on the server,
/// never one on this host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExportPath(PathBuf);

impl ExportPath {
    /// Parses an absolute export path.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("export `{}` is not absolute", s.escape_default()));
        }
        Self::check_text(s)?;
        let mut p = PathBuf::from("/");
        for c in Path::new(s).components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) => p.push(n),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(format!("export `{s}` must not contain `..`"))
                }
            }
        }
        Ok(Self(p))
    }

    fn check_text(s: &str) -> Result<(), String> {
        if s.len() > 1024 {
            return Err("a path longer than 1024 bytes".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| c.is_control() || matches!(c, ',' | ':' | '\\'))
        {
            return Err(format!(
                "path `{}` holds `{}`, which the host does not pass",
                s.escape_default(),
                c.escape_default()
            ));
        }
        Ok(())
    }

    /// This path with `subdir` (relative, no `..`; "" for none) beneath it.
    pub fn join(&self, subdir: &str) -> Result<Self, String> {
        Self::check_text(subdir)?;
        let mut p = self.0.clone();
        for c in Path::new(subdir).components() {
            match c {
                Component::CurDir => {}
                Component::Normal(n) => p.push(n),
                _ => {
                    return Err(format!(
                        "subdir `{}` must be relative and free of `..`",
                        subdir.escape_default()
                    ))
                }
            }
        }
        Ok(Self(p))
    }

    /// Whether this path is `other` or beneath it.
    pub fn is_within(&self, other: &ExportPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The path as text (UTF-8 by construction).
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("parsed from UTF-8")
    }
}

/// What `grants.netfs` gives a driver: the servers it may name and the
/// addresses they may resolve to, the exports (and paths beneath them) it
/// may mount, the versions and the option names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetfsGrant {
    /// Host names the driver may name (each must still resolve into `addresses`).
    pub names: BTreeSet<String>,
    /// Address ranges a server may be reached at; an address literal the
    /// driver names must lie in one too.
    pub addresses: Vec<AddressRange>,
    /// Exports that may be mounted, with any path beneath them.
    pub exports: Vec<ExportPath>,
    /// Versions that may be mounted.
    pub versions: BTreeSet<NfsVersion>,
    /// Option names that may be passed.
    pub options: BTreeSet<&'static str>,
    /// Whether a share may be written (`read-only` mounts everything read-only).
    pub access: crate::policy::StorageAccess,
}

impl NetfsGrant {
    /// Whether the driver may name `server` at all (a granted name, or an
    /// address literal within the granted ranges). Checked before any
    /// resolution, so a driver cannot make the host look up a name of its
    /// choosing (a DNS query is a channel out).
    pub fn may_name(&self, server: &str) -> Result<(), String> {
        if let Ok(addr) = server.parse::<IpAddr>() {
            return self.may_reach(addr);
        }
        if self.names.contains(server) {
            Ok(())
        } else {
            Err(format!(
                "server `{}` is not in grants.netfs.servers",
                server.escape_default()
            ))
        }
    }

    /// Whether a resolved address lies in a granted range.
    pub fn may_reach(&self, addr: IpAddr) -> Result<(), String> {
        if self.addresses.iter().any(|r| r.contains(addr)) {
            Ok(())
        } else {
            Err(format!(
                "address {addr} is outside grants.netfs.servers ({})",
                self.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    /// Whether `path` (an export, maybe plus a subdir) is a granted export or beneath one.
    pub fn may_mount(&self, path: &ExportPath) -> Result<(), String> {
        if self.exports.iter().any(|e| path.is_within(e)) {
            Ok(())
        } else {
            Err(format!(
                "export {} is not within grants.netfs.exports",
                path.as_str()
            ))
        }
    }
}

/// Resolves `server` (already allowed by [`NetfsGrant::may_name`]) to its
/// addresses, literals as they are.
pub fn resolve(server: &str) -> std::io::Result<Vec<IpAddr>> {
    if let Ok(addr) = server.parse::<IpAddr>() {
        return Ok(vec![addr]);
    }
    use std::net::ToSocketAddrs;
    let mut out: Vec<IpAddr> = (server, 2049).to_socket_addrs()?.map(|a| a.ip()).collect();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_the_vocabulary_with_checked_values_and_nothing_else() {
        assert_eq!(
            NfsOption::parse("timeo=600").unwrap(),
            NfsOption::Timeo(600)
        );
        assert_eq!(NfsOption::parse("sec=sys").unwrap(), NfsOption::SecSys);
        assert_eq!(
            NfsOption::parse("nconnect=4").unwrap().to_string(),
            "nconnect=4"
        );
        for smuggled in [
            "timeo=600,bind",
            "vers=2",
            "nfsvers=4",
            "sec=none",
            "sec=krb5",
            "bind",
            "suid",
            "addr=10.0.0.1",
            "hard=1",
            "timeo",
            "timeo=0",
            "rsize=99999999",
            "nconnect=64",
            "",
        ] {
            assert!(NfsOption::parse(smuggled).is_err(), "{smuggled}");
        }
        let sample = |name: &str| match name {
            "sec" => "sec=sys".to_string(),
            "timeo" => "timeo=10".into(),
            "retrans" => "retrans=2".into(),
            "rsize" | "wsize" => format!("{name}=65536"),
            "nconnect" => "nconnect=2".into(),
            "actimeo" => "actimeo=30".into(),
            flag => flag.into(),
        };
        for name in OPTION_NAMES {
            assert_eq!(NfsOption::parse(&sample(name)).unwrap().name(), *name);
        }
    }

    #[test]
    fn address_ranges_hold_what_they_say() {
        let net = AddressRange::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!net.contains("fd00::1".parse().unwrap()));
        let one = AddressRange::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(AddressRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nfs.example", "10.0.0/8", "::/129"] {
            assert!(AddressRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn export_paths_are_absolute_normal_and_cannot_smuggle_separators() {
        let e = ExportPath::parse("/srv//nfs/").unwrap();
        assert_eq!(e.as_str(), "/srv/nfs");
        assert_eq!(e.join("pvc-1").unwrap().as_str(), "/srv/nfs/pvc-1");
        assert_eq!(e.join("").unwrap(), e);
        assert!(e.join("a/b").unwrap().is_within(&e));
        assert!(!ExportPath::parse("/srv/nfsx").unwrap().is_within(&e));
        for bad in ["srv", "/srv/../etc", "/a,b", "/a:b", "/a\nb"] {
            assert!(ExportPath::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["../x", "/abs", "a/../../b", "a,b"] {
            assert!(e.join(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_server_is_named_only_when_granted_and_reached_only_in_range() {
        let g = NetfsGrant {
            names: ["nfs.test".to_string()].into(),
            addresses: vec![AddressRange::parse("127.0.0.1/32").unwrap()],
            exports: vec![ExportPath::parse("/srv/nfs").unwrap()],
            versions: [NfsVersion::V4_2].into(),
            options: ["hard"].into(),
            access: crate::policy::StorageAccess::ReadWrite,
        };
        assert!(g.may_name("nfs.test").is_ok());
        assert!(g.may_name("127.0.0.1").is_ok());
        assert!(g.may_name("127.0.0.2").is_err());
        assert!(g.may_name("evil.example").is_err());
        assert!(g.may_reach("127.0.0.2".parse().unwrap()).is_err());
        assert!(g
            .may_mount(&ExportPath::parse("/srv/nfs/pvc").unwrap())
            .is_ok());
        assert!(g.may_mount(&ExportPath::parse("/srv").unwrap()).is_err());
        assert!(check_host_name("nfs-1.example.com").is_ok());
        for bad in ["", "-a", "a..b", "a b", "a/b", "x:y"] {
            assert!(check_host_name(bad).is_err(), "{bad}");
        }
    }
}
