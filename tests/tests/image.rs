//! The OCI image `scripts/build-image.sh` writes (scripts/test.sh builds it
//! first): its layout and digests check out, and from its unpacked root
//! filesystem the host runs (`--version`, `inspect` of a bundled component)
//! and so do the tools it execs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn image_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/image")
}

fn sha256(bytes: &[u8]) -> String {
    wasmvol::digest::Sha256Digest::of(bytes).to_hex()
}

/// A blob of the layout, checked against its digest and size.
fn blob(oci: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = std::fs::read(oci.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        sha256(&bytes),
        hex,
        "blob {digest} does not match its digest"
    );
    assert_eq!(bytes.len() as u64, descriptor["size"].as_u64().unwrap());
    bytes
}

#[test]
fn the_image_unpacks_and_the_host_runs_from_its_root_filesystem() {
    wasmvol_tests::require_privileged();
    let tar = image_dir().join("wasmvol.oci.tar");
    assert!(
        tar.exists(),
        "{} is missing: scripts/build-image.sh builds it (scripts/test.sh runs it)",
        tar.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let oci = dir.path().join("oci");
    std::fs::create_dir(&oci).unwrap();
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&oci)
        .status()
        .unwrap()
        .success());
    let layout: Value =
        serde_json::from_slice(&std::fs::read(oci.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let manifest: Value = serde_json::from_slice(&blob(&oci, &index["manifests"][0])).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&oci, &manifest["config"])).unwrap();
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/wasmvol");
    let layer = blob(&oci, &manifest["layers"][0]);
    assert!(
        layer.len() < 40 << 20,
        "the layer is {} bytes compressed",
        layer.len()
    );

    // The layer's uncompressed digest is the config's diff id.
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let gz = dir.path().join("layer.tar.gz");
    std::fs::write(&gz, &layer).unwrap();
    let raw = Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
    assert!(raw.status.success());
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256(&raw.stdout))
    );
    let layer_tar = dir.path().join("layer.tar");
    std::fs::write(&layer_tar, &raw.stdout).unwrap();
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(&layer_tar)
        .arg("-C")
        .arg(&rootfs)
        .status()
        .unwrap()
        .success());

    let run = |args: &[&str]| {
        let out = Command::new("chroot")
            .arg(&rootfs)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(&["/usr/local/bin/wasmvol", "--version"]).starts_with("wasmvol "));
    let inspected = run(&[
        "/usr/local/bin/wasmvol",
        "inspect",
        "/opt/wasmvol/components/hostpath.wasm",
    ]);
    assert!(inspected.contains("wasmvol:driver/mount"), "{inspected}");
    for component in ["hostpath", "loopfs", "nfs", "scratch", "lvm"] {
        let inside = rootfs.join(format!("opt/wasmvol/components/{component}.wasm"));
        assert_eq!(
            wasmvol_tests::sha256_file(&inside),
            wasmvol_tests::sha256_file(&wasmvol_tests::component(component)),
            "{component} in the image is not the one built here"
        );
    }
    assert!(
        rootfs.join("usr/local/bin/wasmvol-flex").exists(),
        "the Flex shim ships too"
    );
    // The tools the host execs run there too.
    for tool in ["mkfs.ext4", "mkfs.xfs", "blkid", "lvm"] {
        let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| format!("{d}/{tool}"))
            .find(|p| rootfs.join(&p[1..]).exists())
            .unwrap_or_else(|| panic!("{tool} is not in the image"));
        let version_flag = if tool == "lvm" { "version" } else { "-V" };
        let out = Command::new("chroot")
            .arg(&rootfs)
            .args([path.as_str(), version_flag])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
