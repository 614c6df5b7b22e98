//! Every host path the host makes, mounts on or removes for a driver comes
//! from one of two places, and this module is both:
//!
//! - [`RequestPath`]: a path kubelet passed in a request (a CSI target or
//!   staging path, a Flex mount dir or device mount dir), parsed at the edge:
//!   absolute, normalised, no `..`, no NUL.
//! - [`derived_dir`]: a directory the host names itself beneath a root it
//!   owns, from a digest of an id. A volume id, a parameter, an option or
//!   anything a driver returned is never joined onto a host path.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::digest::Sha256Digest;

/// Longest request path accepted (Linux's `PATH_MAX`).
const MAX_PATH_BYTES: usize = 4096;

/// A host path from a request: absolute, normalised (no `.`, `..`, empty
/// or trailing components), without NUL, at most 4096 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestPath(PathBuf);

impl RequestPath {
    /// Parses a path from a request; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("is empty".into());
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(format!("is longer than {MAX_PATH_BYTES} bytes"));
        }
        if raw.contains('\0') {
            return Err("contains NUL".into());
        }
        if !raw.starts_with('/') {
            return Err(format!("must be an absolute path, got `{raw}`"));
        }
        // Byte-level check: `Path::components` would silently normalise `a//b` and `a/./b`.
        let trimmed = raw.strip_suffix('/').unwrap_or(raw);
        if trimmed.is_empty() {
            return Err("must not be `/`".into());
        }
        for part in trimmed[1..].split('/') {
            match part {
                "" | "." => return Err(format!("must be normalised, got `{raw}`")),
                ".." => return Err(format!("must not contain `..`, got `{raw}`")),
                _ => {}
            }
        }
        let path = PathBuf::from(trimmed);
        debug_assert!(path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
        Ok(Self(path))
    }

    /// The path.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for RequestPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl fmt::Display for RequestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

/// The directory the host keeps for `id` beneath `root`, a root the host
/// owns: `root/<first 32 hex digits of sha256(id)>`. Whatever the id holds
/// (`/etc`, `../..`, a NUL, 4 KiB of text), the result is one plain
/// component beneath `root`, and the same id always maps to the same place.
pub fn derived_dir(root: &Path, id: &str) -> PathBuf {
    let hex = Sha256Digest::of(id.as_bytes()).to_hex();
    root.join(&hex[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_are_absolute_and_normalised() {
        for good in ["/var/lib/kubelet/pods/x/vol", "/a", "/a/b/"] {
            let p = RequestPath::parse(good).unwrap();
            assert!(p.as_path().is_absolute());
            assert!(!p.to_string().ends_with('/'), "{p}");
        }
        for bad in [
            "",
            "/",
            "relative/dir",
            "/a/../etc",
            "/a/..",
            "/a/./b",
            "/a//b",
            "/a\0b",
            &format!("/{}", "x".repeat(4096)),
        ] {
            assert!(RequestPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derived_dirs_stay_one_component_beneath_the_root() {
        let root = Path::new("/run/wasmvol/staging");
        for id in [
            "/etc",
            "../../../../x",
            "a/b",
            "a\0b",
            "a\nb",
            &"x".repeat(4096),
            ".",
            "",
        ] {
            let d = derived_dir(root, id);
            assert_eq!(d.parent(), Some(root), "{id:?}");
            let name = d.file_name().unwrap().to_str().unwrap();
            assert_eq!(name.len(), 32);
            assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_eq!(derived_dir(root, "v1"), derived_dir(root, "v1"));
        assert_ne!(derived_dir(root, "v1"), derived_dir(root, "v2"));
    }
}
