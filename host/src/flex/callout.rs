//! FlexVolume call-outs, parsed from kubelet's argv exactly as kubelet builds it.

use std::path::PathBuf;

use super::options::FlexOptions;

/// One call-out with its arguments, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOut {
    /// `init`: report capabilities.
    Init,
    /// `getvolumename <json>`.
    GetVolumeName(FlexOptions),
    /// `attach <json> <node>`.
    Attach {
        /// Kubelet's options.
        options: FlexOptions,
        /// The node to attach to.
        node: String,
    },
    /// `waitforattach <device> <json>`.
    WaitForAttach {
        /// The device attach reported.
        device: String,
        /// Kubelet's options.
        options: FlexOptions,
    },
    /// `isattached <json> <node>`.
    IsAttached {
        /// Kubelet's options.
        options: FlexOptions,
        /// The node asked about.
        node: String,
    },
    /// `detach <volume name> <node>`.
    Detach {
        /// The volume name (getvolumename's, or the PV name).
        volume: String,
        /// The node to detach from.
        node: String,
    },
    /// `mountdevice <dir> <device> <json>`.
    MountDevice {
        /// The device mount (staging) dir.
        dir: PathBuf,
        /// The attached device.
        device: String,
        /// Kubelet's options.
        options: FlexOptions,
    },
    /// `unmountdevice <dir>`.
    UnmountDevice {
        /// The device mount (staging) dir.
        dir: PathBuf,
    },
    /// `mount <dir> <json>`.
    Mount {
        /// The pod's volume dir.
        dir: PathBuf,
        /// Kubelet's options.
        options: FlexOptions,
    },
    /// `unmount <dir>`.
    Unmount {
        /// The pod's volume dir.
        dir: PathBuf,
    },
    /// `expandvolume <json> <device mount dir> <new> <old>`.
    ExpandVolume {
        /// Kubelet's options.
        options: FlexOptions,
        /// The device mount dir.
        device_mount_dir: PathBuf,
        /// Requested size in bytes.
        new_size: u64,
        /// Current size in bytes.
        old_size: u64,
    },
    /// `expandfs <json> <device> <device mount dir> <new> <old>`.
    ExpandFs {
        /// Kubelet's options.
        options: FlexOptions,
        /// The device.
        device: String,
        /// The device mount dir.
        device_mount_dir: PathBuf,
        /// Requested size in bytes.
        new_size: u64,
        /// Current size in bytes.
        old_size: u64,
    },
}

/// Why argv is not a call-out we can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadCall {
    /// A call-out name we do not know: answered `Not supported`.
    Unknown(String),
    /// Known call-out, wrong arguments: answered `Failure`.
    Invalid(String),
}

fn path(arg: &str, what: &str) -> Result<PathBuf, BadCall> {
    crate::host_path::RequestPath::parse(arg)
        .map(|p| p.as_path().to_owned())
        .map_err(|why| BadCall::Invalid(format!("{what} {why}")))
}

fn size(arg: &str, what: &str) -> Result<u64, BadCall> {
    arg.parse()
        .map_err(|_| BadCall::Invalid(format!("{what} must be a size in bytes, got `{arg}`")))
}

impl CallOut {
    /// Parses `<call-out> <args...>`.
    pub fn parse(args: &[String]) -> Result<Self, BadCall> {
        let Some((name, rest)) = args.split_first() else {
            return Err(BadCall::Invalid("no call-out given".into()));
        };
        let usage: &str = match name.as_str() {
            "init" => "",
            "getvolumename" => "<json options>",
            "attach" | "isattached" => "<json options> <node name>",
            "waitforattach" => "<device path> <json options>",
            "detach" => "<volume name> <node name>",
            "mountdevice" => "<device mount dir> <device path> <json options>",
            "unmountdevice" | "unmount" => "<mount dir>",
            "mount" => "<mount dir> <json options>",
            "expandvolume" => "<json options> <device mount dir> <new size> <old size>",
            "expandfs" => "<json options> <device path> <device mount dir> <new size> <old size>",
            other => return Err(BadCall::Unknown(other.to_owned())),
        };
        let want = usage.matches('<').count();
        if rest.len() != want {
            return Err(BadCall::Invalid(format!(
                "{name} takes {want} argument(s) ({}), got {}",
                if usage.is_empty() { "none" } else { usage },
                rest.len()
            )));
        }
        let opts =
            |s: &str| FlexOptions::parse(s).map_err(|e| BadCall::Invalid(format!("{name}: {e}")));
        let a = |i: usize| rest[i].as_str();
        Ok(match name.as_str() {
            "init" => CallOut::Init,
            "getvolumename" => CallOut::GetVolumeName(opts(a(0))?),
            "attach" => CallOut::Attach {
                options: opts(a(0))?,
                node: a(1).to_owned(),
            },
            "isattached" => CallOut::IsAttached {
                options: opts(a(0))?,
                node: a(1).to_owned(),
            },
            "waitforattach" => CallOut::WaitForAttach {
                device: a(0).to_owned(),
                options: opts(a(1))?,
            },
            "detach" => CallOut::Detach {
                volume: a(0).to_owned(),
                node: a(1).to_owned(),
            },
            "mountdevice" => CallOut::MountDevice {
                dir: path(a(0), "device mount dir")?,
                device: a(1).to_owned(),
                options: opts(a(2))?,
            },
            "unmountdevice" => CallOut::UnmountDevice {
                dir: path(a(0), "device mount dir")?,
            },
            "mount" => CallOut::Mount {
                dir: path(a(0), "mount dir")?,
                options: opts(a(1))?,
            },
            "unmount" => CallOut::Unmount {
                dir: path(a(0), "mount dir")?,
            },
            "expandvolume" => CallOut::ExpandVolume {
                options: opts(a(0))?,
                device_mount_dir: path(a(1), "device mount dir")?,
                new_size: size(a(2), "new size")?,
                old_size: size(a(3), "old size")?,
            },
            "expandfs" => CallOut::ExpandFs {
                options: opts(a(0))?,
                device: a(1).to_owned(),
                device_mount_dir: path(a(2), "device mount dir")?,
                new_size: size(a(3), "new size")?,
                old_size: size(a(4), "old size")?,
            },
            _ => unreachable!("matched above"),
        })
    }

    /// The call-out's name, for messages and audit.
    pub fn name(&self) -> &'static str {
        match self {
            CallOut::Init => "init",
            CallOut::GetVolumeName(_) => "getvolumename",
            CallOut::Attach { .. } => "attach",
            CallOut::WaitForAttach { .. } => "waitforattach",
            CallOut::IsAttached { .. } => "isattached",
            CallOut::Detach { .. } => "detach",
            CallOut::MountDevice { .. } => "mountdevice",
            CallOut::UnmountDevice { .. } => "unmountdevice",
            CallOut::Mount { .. } => "mount",
            CallOut::Unmount { .. } => "unmount",
            CallOut::ExpandVolume { .. } => "expandvolume",
            CallOut::ExpandFs { .. } => "expandfs",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubelets_argv_parses() {
        assert_eq!(CallOut::parse(&args(&["init"])).unwrap(), CallOut::Init);
        let m = CallOut::parse(&args(&["mount", "/var/lib/kubelet/pods/x", "{}"])).unwrap();
        assert!(matches!(m, CallOut::Mount { .. }));
        let e = CallOut::parse(&args(&[
            "expandfs",
            "{}",
            "/dev/loop3",
            "/mnt/d",
            "2048",
            "1024",
        ]))
        .unwrap();
        assert!(matches!(
            e,
            CallOut::ExpandFs {
                new_size: 2048,
                old_size: 1024,
                ..
            }
        ));
    }

    #[test]
    fn wrong_input_is_named() {
        assert_eq!(
            CallOut::parse(&args(&["frobnicate"])).unwrap_err(),
            BadCall::Unknown("frobnicate".into())
        );
        let BadCall::Invalid(m) = CallOut::parse(&args(&["mount", "/x"])).unwrap_err() else {
            panic!()
        };
        assert_eq!(
            m,
            "mount takes 2 argument(s) (<mount dir> <json options>), got 1"
        );
        let BadCall::Invalid(m) = CallOut::parse(&args(&["mount", "/x", "{oops"])).unwrap_err()
        else {
            panic!()
        };
        assert!(m.starts_with("mount: options are not JSON"), "{m}");
        let BadCall::Invalid(m) = CallOut::parse(&args(&["unmount", "rel"])).unwrap_err() else {
            panic!()
        };
        assert!(m.contains("absolute path"), "{m}");
    }
}
