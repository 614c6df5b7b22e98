//! `wasmvol new NAME`: a driver crate to start from, which builds with
//! `wasmvol build`, passes `wasmvol conformance` as written and has a
//! native unit test: Cargo.toml, src/lib.rs, a policy entry.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The SDK this wasmvol was built from, when its source is still there.
fn built_from_sdk() -> Option<PathBuf> {
    std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk")).ok()
}

/// A crate name cargo and the CSI driver name both accept.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("`{name}`: a driver name is lowercase letters, digits and `-`, starting with a letter (at most 40)");
    }
    Ok(())
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# A component is a cdylib; `cargo test` runs the unit tests natively.
crate-type = ["cdylib"]

[dependencies]
wasmvol-driver-sdk = {{ path = {sdk:?} }}

[profile.release]
# A panic traps the call; the host reports its message to the caller.
panic = "abort"
opt-level = "s"
lto = true
codegen-units = 1

# A crate of its own, not a member of any workspace above it.
[workspace]
"#,
        sdk = sdk.display().to_string()
    )
}

fn lib_rs(name: &str) -> String {
    let ty: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!(
        r#"//! {name}: a wasmvol storage driver. Volumes are directories under the
//! storage root the operator grants (`grants.storage`); NodePublishVolume
//! bind-mounts one onto the target kubelet hands over (`grants.mount`).
//! The host checks every request before it gets here and every
//! capability use after; what is left is the driver's own logic.

use wasmvol_driver_sdk::ids::{{self, not_found}};
use wasmvol_driver_sdk::*;

struct {ty};

/// Where volume `id` lives under the storage root. An id is a name, never
/// a path: one that is not a single plain name is INVALID_ARGUMENT.
fn volume_dir(id: &str) -> Result<String> {{
    ids::path_under("volumes", id, "")
}}

impl Driver for {ty} {{
    fn info() -> DriverInfo {{
        DriverInfo::named(
            "{name}.example.com",
            env!("CARGO_PKG_VERSION"),
            &[Feature::CreateDeleteVolume],
        )
    }}

    fn create_volume(r: CreateVolumeRequest) -> Result<Volume> {{
        let dir = volume_dir(&r.name)?;
        // Idempotent: a repeat finds the directory it made and answers the same.
        volumes::open_root()?.create_dir(&dir)?;
        Ok(Volume {{
            volume_id: r.name,
            // A directory has no size of its own: 0 is "unknown" to CSI.
            capacity_bytes: 0,
            volume_context: vec![],
            content_source: None,
            accessible_topology: vec![],
        }})
    }}

    fn delete_volume(r: DeleteVolumeRequest) -> Result<()> {{
        // Removing what is not there succeeds: kubelet's retries rely on it.
        volumes::open_root()?.remove_tree(&volume_dir(&r.volume_id)?)
    }}

    fn validate_volume_capabilities(r: ValidateRequest) -> Result<ValidateResponse> {{
        if !volumes::open_root()?.exists(&volume_dir(&r.volume_id)?)? {{
            return Err(not_found("volume", &r.volume_id));
        }}
        let block = r
            .volume_capabilities
            .iter()
            .any(|c| matches!(c.access_type, AccessType::Block));
        let check = if block {{
            Err(DriverError::InvalidArgument(
                "volumes are directories: no block access".into(),
            ))
        }} else {{
            Ok(())
        }};
        Ok(ValidateResponse::checked(r.volume_capabilities, check))
    }}

    fn publish(target: Target, _staging: Option<Target>, r: PublishRequest) -> Result<()> {{
        let root = volumes::open_root()?;
        let dir = volume_dir(&r.volume_id)?;
        if !root.exists(&dir)? {{
            return Err(not_found("volume", &r.volume_id));
        }}
        if target.is_mounted()? {{
            return Ok(());
        }}
        target.bind_from_root(&root, &dir, r.readonly)
    }}

    fn unpublish(target: Target, _r: UnpublishRequest) -> Result<()> {{
        target.unmount()
    }}
}}

export_driver!({ty});

#[cfg(test)]
mod tests {{
    use super::*;
    use wasmvol_driver_sdk::fake_host::requests::{{self, filesystem}};
    use wasmvol_driver_sdk::fake_host::{{FakeHost, MountSource}};

    // Native: `cargo test` needs no wasm and no root. The SDK's fake host
    // stands in for the real one: a temporary storage root, and a record
    // of what was mounted where. (The operator's policy is the real host's:
    // check the component against it with `wasmvol conformance`.)
    #[test]
    fn ids_are_names_never_paths() {{
        assert_eq!(volume_dir("pvc-1").unwrap(), "volumes/pvc-1");
        for bad in ["", "..", "a/b", "/etc"] {{
            assert!(volume_dir(bad).is_err(), "{{bad}}");
        }}
    }}

    #[test]
    fn a_volume_is_made_published_unpublished_and_deleted() {{
        let host = FakeHost::new();
        let v = {ty}::create_volume(requests::create("pvc-1", None, filesystem(""), &[])).unwrap();
        assert!(host.root().join("volumes/pvc-1").is_dir());

        let pod = || host.target("pod", TargetRole::Publish, TargetShape::Directory);
        {ty}::publish(pod(), None, requests::publish(&v, filesystem(""), false)).unwrap();
        {ty}::publish(pod(), None, requests::publish(&v, filesystem(""), false)).unwrap();
        let mounts = host.mounts("pod");
        assert_eq!(mounts.len(), 1, "a retried publish mounts once: {{mounts:?}}");
        assert_eq!(mounts[0].source, MountSource::Root("volumes/pvc-1".into()));

        {ty}::unpublish(pod(), requests::unpublish("pvc-1")).unwrap();
        assert!(host.mounted().is_empty());
        {ty}::delete_volume(requests::delete("pvc-1")).unwrap();
        assert!(!host.root().join("volumes/pvc-1").exists());
    }}
}}
"#
    )
}

fn policy_entry(name: &str, dir: &Path) -> String {
    format!(
        r#"# The policy entry that runs this driver (append to the host's policy).
# `wasmvol build` prints the component's path and sha256.
[[driver]]
name = "{name}"
component = "{component}"
sha256 = "<sha256 printed by wasmvol build>"

[driver.grants]
mount = true

[driver.grants.storage]
root = "/var/lib/{name}"
access = "read-write"

[driver.csi]
name = "{name}.example.com"
"#,
        component = dir
            .join("target/components")
            .join(format!("{name}.wasm"))
            .display()
    )
}

/// Writes the crate into `./NAME`.
pub(crate) fn new(name: &str, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    check_name(name)?;
    let sdk = match sdk.or_else(built_from_sdk) {
        Some(p) => std::fs::canonicalize(&p).with_context(|| format!("--sdk {}", p.display()))?,
        None => bail!("where is wasmvol's guest-sdk? give --sdk PATH (the repository's guest-sdk)"),
    };
    if !sdk.join("Cargo.toml").exists() {
        bail!("{}: not the SDK crate (no Cargo.toml)", sdk.display());
    }
    let dir = std::path::absolute(name)?;
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), cargo_toml(name, &sdk))?;
    std::fs::write(dir.join("src/lib.rs"), lib_rs(name))?;
    std::fs::write(dir.join("policy-entry.toml"), policy_entry(name, &dir))?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    println!(
        "new: {} (SDK {})\nnext: cd {name} && wasmvol build && cargo test && wasmvol conformance target/components/{name}.wasm --unsized-volumes",
        dir.display(),
        sdk.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_crate_and_csi_names() {
        for ok in ["demo", "my-driver", "nfs2"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "Demo", "-x", "a_b", "../x", "a/b", "1x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_template_names_its_type_after_the_crate() {
        let src = lib_rs("my-driver");
        assert!(src.contains("struct MyDriver;"));
        assert!(src.contains("export_driver!(MyDriver);"));
        assert!(src.contains("\"my-driver.example.com\""));
    }
}
