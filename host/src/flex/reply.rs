//! FlexVolume answers: exactly one JSON object, and the exit code kubelet expects.

use serde::Serialize;

/// `Success`, `Failure` or `Not supported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// The call did what was asked.
    Success,
    /// It did not; `message` says why.
    Failure,
    /// Kubelet falls back to its own default (and caches this answer).
    #[serde(rename = "Not supported")]
    NotSupported,
}

/// What `init` reports; kubelet's defaults apply to absent keys, so all are sent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// The driver attaches (kubelet then drives attach/mountdevice).
    pub attach: bool,
    /// Kubelet may relabel the volume for SELinux.
    pub selinux_relabel: bool,
    /// Kubelet may statfs the volume for metrics.
    pub supports_metrics: bool,
    /// Kubelet may chown the volume to the pod's fsGroup.
    pub fs_group: bool,
    /// Expansion needs a filesystem resize on the node.
    #[serde(rename = "requiresFSResize")]
    pub requires_fs_resize: bool,
}

/// One answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    /// Success, Failure or Not supported.
    pub status: Status,
    /// Why (for Failure and Not supported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// attach/waitforattach: the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// getvolumename: the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// isattached: the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached: Option<bool>,
    /// expandvolume: the new size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_new_size: Option<u64>,
    /// init: what the driver supports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

impl Reply {
    /// A bare Success.
    pub fn success() -> Self {
        Self {
            status: Status::Success,
            message: None,
            device: None,
            volume_name: None,
            attached: None,
            volume_new_size: None,
            capabilities: None,
        }
    }

    /// A Failure with its reason.
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            status: Status::Failure,
            message: Some(message.into()),
            ..Self::success()
        }
    }

    /// A Not supported, with its reason.
    pub fn not_supported(message: impl Into<String>) -> Self {
        Self {
            status: Status::NotSupported,
            message: Some(message.into()),
            ..Self::success()
        }
    }

    /// The JSON kubelet reads and the shim's exit code (1 only for Failure).
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let code = u8::from(self.status == Status::Failure);
        (code, serde_json::to_vec(self).expect("replies serialize"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_encode_as_kubelet_reads_them() {
        assert_eq!(
            Reply::not_supported("x").encode(),
            (0, br#"{"status":"Not supported","message":"x"}"#.to_vec())
        );
        assert_eq!(Reply::failure("m").encode().0, 1);
        let mut init = Reply::success();
        init.capabilities = Some(Capabilities {
            attach: false,
            selinux_relabel: false,
            supports_metrics: true,
            fs_group: false,
            requires_fs_resize: false,
        });
        let text = String::from_utf8(init.encode().1).unwrap();
        assert_eq!(
            text,
            r#"{"status":"Success","capabilities":{"attach":false,"selinuxRelabel":false,"supportsMetrics":true,"fsGroup":false,"requiresFSResize":false}}"#
        );
    }
}
