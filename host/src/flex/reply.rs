//! FlexVolume answers: exactly one JSON object, and the exit code kubelet expects.

use serde::Serialize;

/// `Success`, `Failure` or `Not supported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    Success,
    Failure,
    #[serde(rename = "Not supported")]
    NotSupported,
}

/// What `init` reports; kubelet's defaults apply to absent keys, so all are sent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub attach: bool,
    pub selinux_relabel: bool,
    pub supports_metrics: bool,
    pub fs_group: bool,
    #[serde(rename = "requiresFSResize")]
    pub requires_fs_resize: bool,
}

/// One answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_new_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

impl Reply {
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

    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            status: Status::Failure,
            message: Some(message.into()),
            ..Self::success()
        }
    }

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
