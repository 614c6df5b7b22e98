//! sloppy: a test-only driver that works on a happy path and breaks two
//! of the spec's sentences the way a first driver often does, for the
//! conformance sweep to find (`tests/tests/cli.rs`):
//!
//! - CreateVolume is not idempotent: a repeat of a name answers
//!   ALREADY_EXISTS instead of the volume it made;
//! - ValidateVolumeCapabilities confirms any id, also one it never made,
//!   where the spec says NOT_FOUND.
//!
//! Volumes are directories of its storage root, published by bind mount.

use wasmvol_driver_sdk::ids::{self, not_found};
use wasmvol_driver_sdk::*;

struct Sloppy;

fn dir(id: &str) -> Result<String> {
    ids::path_under("volumes", id, "")
}

impl Driver for Sloppy {
    fn info() -> DriverInfo {
        DriverInfo::named(
            "sloppy.test.wasmvol.io",
            "0.0.0",
            &[Feature::CreateDeleteVolume],
        )
    }

    fn create_volume(r: CreateVolumeRequest) -> Result<Volume> {
        let root = volumes::open_root()?;
        let path = dir(&r.name)?;
        // The mistake: a volume that exists is an error, even when it is this one.
        if root.exists(&path)? {
            return Err(DriverError::AlreadyExists(format!(
                "volume {} exists",
                r.name
            )));
        }
        root.create_dir("volumes")?;
        root.create_dir(&path)?;
        Ok(Volume {
            volume_id: r.name,
            capacity_bytes: r.capacity_range.map_or(0, |c| c.required_bytes),
            volume_context: Vec::new(),
            content_source: None,
            accessible_topology: Vec::new(),
        })
    }

    fn delete_volume(r: DeleteVolumeRequest) -> Result<()> {
        volumes::open_root()?.remove_tree(&dir(&r.volume_id)?)
    }

    fn validate_volume_capabilities(r: ValidateRequest) -> Result<ValidateResponse> {
        // The mistake: whatever the id, confirmed.
        Ok(ValidateResponse {
            confirmed: Some(r.volume_capabilities),
            message: String::new(),
        })
    }

    fn publish(target: Target, _staging: Option<Target>, r: PublishRequest) -> Result<()> {
        let root = volumes::open_root()?;
        let path = dir(&r.volume_id)?;
        if !root.exists(&path)? {
            return Err(not_found("volume", &r.volume_id));
        }
        if target.is_mounted()? {
            return Ok(());
        }
        target.bind_from_root(&root, &path, r.readonly)
    }

    fn unpublish(target: Target, _r: UnpublishRequest) -> Result<()> {
        target.unmount()
    }

    fn node_info() -> Result<NodeInfo> {
        Ok(NodeInfo {
            node_id: String::new(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        })
    }
}

export_driver!(Sloppy);
