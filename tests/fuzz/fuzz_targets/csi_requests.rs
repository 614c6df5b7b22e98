//! Arbitrary bytes as each CSI request the host converts, then the host's
//! conversion and validation of its fields: decoded or refused, converted
//! or answered with a status, never a panic.
#![no_main]
use prost::Message;
use wasmvol::csi::convert;
use wasmvol::csi::proto::*;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            if let Ok(r) = CreateVolumeRequest::decode(bytes) {
                let _ = convert::capabilities(r.volume_capabilities, "volume_capabilities");
                let _ = convert::capacity_range(r.capacity_range);
                let _ = convert::content_source(r.volume_content_source);
                let _ = convert::topology_requirement(r.accessibility_requirements);
                let _ = convert::key_values(r.parameters);
            }
        }
        1 => {
            if let Ok(r) = NodePublishVolumeRequest::decode(bytes) {
                let _ = convert::required(&r.volume_id, "volume_id");
                let _ = convert::required_path(&r.target_path, "target_path");
                let _ = convert::required_path(&r.staging_target_path, "staging_target_path");
                let _ = convert::required_capability(r.volume_capability, "volume_capability");
            }
        }
        2 => {
            if let Ok(r) = ListVolumesRequest::decode(bytes) {
                let _ = convert::max_entries(r.max_entries);
            }
        }
        _ => {
            if let Ok(r) = ValidateVolumeCapabilitiesRequest::decode(bytes) {
                let _ = convert::capabilities(r.volume_capabilities, "volume_capabilities");
            }
        }
    }
});
