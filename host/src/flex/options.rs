//! The JSON options kubelet passes to a FlexVolume call, parsed into typed
//! fields. Every `kubernetes.io/*` key kubelet sets has a field; every other
//! key is one of the volume's parameters.

use base64::Engine as _;
use serde_json::Value;

use crate::bindings::types::{AccessMode, AccessType, KeyValues, MountAccess, VolumeCapability};

/// The pod a `mount` call is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// `kubernetes.io/pod.name`.
    pub name: String,
    /// `kubernetes.io/pod.namespace`.
    pub namespace: String,
    /// `kubernetes.io/pod.uid`.
    pub uid: String,
    /// `kubernetes.io/serviceAccount.name`.
    pub service_account: String,
}

/// Kubelet's options, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlexOptions {
    /// `kubernetes.io/fsType` ("" when unset).
    pub fs_type: String,
    /// `kubernetes.io/readwrite` was `ro`.
    pub read_only: bool,
    /// `kubernetes.io/pvOrVolumeName`.
    pub pv_or_volume_name: String,
    /// `kubernetes.io/mounterArgs.FsGroup`.
    pub fs_group: Option<u32>,
    /// The pod, for `mount`.
    pub pod: Option<PodInfo>,
    /// `kubernetes.io/secret/<key>`, base64-decoded.
    pub secrets: KeyValues,
    /// Every other key, verbatim, sorted.
    pub parameters: KeyValues,
}

impl FlexOptions {
    /// Parses the options argument; the error names what is wrong.
    pub fn parse(json: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| format!("options are not JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err("options must be a JSON object".into());
        };
        let mut o = FlexOptions::default();
        let mut pod = PodInfo::default();
        for (key, value) in map {
            let Value::String(v) = value else {
                return Err(format!("option `{key}` must be a string"));
            };
            match key.as_str() {
                "kubernetes.io/fsType" => o.fs_type = v,
                "kubernetes.io/readwrite" => {
                    o.read_only = match v.as_str() {
                        "ro" => true,
                        "rw" => false,
                        other => {
                            return Err(format!(
                            "option `kubernetes.io/readwrite` must be `ro` or `rw`, not `{other}`"
                        ))
                        }
                    }
                }
                "kubernetes.io/pvOrVolumeName" => o.pv_or_volume_name = v,
                "kubernetes.io/mounterArgs.FsGroup" => {
                    o.fs_group = Some(v.parse().map_err(|_| {
                        format!(
                            "option `kubernetes.io/mounterArgs.FsGroup` is not a group id: `{v}`"
                        )
                    })?)
                }
                "kubernetes.io/pod.name" => pod.name = v,
                "kubernetes.io/pod.namespace" => pod.namespace = v,
                "kubernetes.io/pod.uid" => pod.uid = v,
                "kubernetes.io/serviceAccount.name" => pod.service_account = v,
                k => match k.strip_prefix("kubernetes.io/secret/") {
                    Some(name) => {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(v.trim())
                            .map_err(|_| format!("secret `{name}` is not base64"))?;
                        let text = String::from_utf8(bytes)
                            .map_err(|_| format!("secret `{name}` is not UTF-8"))?;
                        o.secrets.push((name.to_owned(), text));
                    }
                    None => o.parameters.push((key, v)),
                },
            }
        }
        if pod != PodInfo::default() {
            o.pod = Some(pod);
        }
        o.secrets.sort();
        o.parameters.sort();
        Ok(o)
    }

    /// The volume's name: the `volumeID` option when given, else the PV or volume name.
    pub fn volume_name(&self) -> Result<String, String> {
        let id = self
            .parameters
            .iter()
            .find(|(k, _)| k == "volumeID")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| self.pv_or_volume_name.clone());
        if id.is_empty() {
            return Err(
                "options name no volume (`volumeID` or `kubernetes.io/pvOrVolumeName`)".into(),
            );
        }
        Ok(id)
    }

    /// The capability Flex implies: a filesystem, read-write once or read-only many.
    pub fn capability(&self) -> VolumeCapability {
        VolumeCapability {
            access_type: AccessType::Mount(MountAccess {
                fs_type: self.fs_type.clone(),
                mount_flags: Vec::new(),
                volume_mount_group: self.fs_group.map(|g| g.to_string()).unwrap_or_default(),
            }),
            access_mode: if self.read_only {
                AccessMode::MultiNodeReaderOnly
            } else {
                AccessMode::SingleNodeWriter
            },
        }
    }

    /// Volume context for node calls: the parameters plus the pod, under the
    /// keys CSI uses for pod info, so drivers read both front ends alike.
    pub fn volume_context(&self) -> KeyValues {
        let mut kv = self.parameters.clone();
        if let Some(p) = &self.pod {
            kv.extend([
                ("csi.storage.k8s.io/pod.name".to_owned(), p.name.clone()),
                (
                    "csi.storage.k8s.io/pod.namespace".to_owned(),
                    p.namespace.clone(),
                ),
                ("csi.storage.k8s.io/pod.uid".to_owned(), p.uid.clone()),
                (
                    "csi.storage.k8s.io/serviceAccount.name".to_owned(),
                    p.service_account.clone(),
                ),
            ]);
        }
        kv.sort();
        kv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nfs_seed_parses_into_fields_and_parameters() {
        let o = FlexOptions::parse(
            r#"{"kubernetes.io/fsType":"nfs","kubernetes.io/readwrite":"rw","kubernetes.io/pvOrVolumeName":"pv-flex-nfs","server":"10.10.0.25","share":"export"}"#,
        )
        .unwrap();
        assert_eq!(o.fs_type, "nfs");
        assert!(!o.read_only);
        assert_eq!(o.volume_name().unwrap(), "pv-flex-nfs");
        assert_eq!(
            o.parameters,
            [
                ("server".into(), "10.10.0.25".into()),
                ("share".into(), "export".into())
            ]
        );
    }

    #[test]
    fn mount_extras_secrets_and_pod_are_typed() {
        let o = FlexOptions::parse(
            r#"{"kubernetes.io/readwrite":"ro","kubernetes.io/pvOrVolumeName":"v","volumeID":"vol1",
                "kubernetes.io/mounterArgs.FsGroup":"2000","kubernetes.io/pod.name":"p","kubernetes.io/pod.namespace":"ns",
                "kubernetes.io/pod.uid":"u-1","kubernetes.io/serviceAccount.name":"sa","kubernetes.io/secret/password":"aHVudGVyMg=="}"#,
        )
        .unwrap();
        assert!(o.read_only);
        assert_eq!(o.volume_name().unwrap(), "vol1");
        assert_eq!(o.fs_group, Some(2000));
        assert_eq!(o.pod.as_ref().unwrap().uid, "u-1");
        assert_eq!(o.secrets, [("password".into(), "hunter2".into())]);
        assert_eq!(o.capability().access_mode, AccessMode::MultiNodeReaderOnly);
        assert!(o
            .volume_context()
            .iter()
            .any(|(k, v)| k == "csi.storage.k8s.io/pod.name" && v == "p"));
    }

    #[test]
    fn bad_options_name_the_problem() {
        for (json, want) in [
            ("{", "not JSON"),
            ("[]", "JSON object"),
            (r#"{"a":1}"#, "option `a` must be a string"),
            (r#"{"kubernetes.io/readwrite":"maybe"}"#, "`ro` or `rw`"),
            (
                r#"{"kubernetes.io/secret/x":"***"}"#,
                "secret `x` is not base64",
            ),
        ] {
            let err = FlexOptions::parse(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
