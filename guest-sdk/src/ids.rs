//! Ids are names, never paths.
//!
//! A volume or snapshot id reaches a driver from a request (anyone who can
//! reach the CSI socket, or a pod spec through FlexVolume), so before a
//! driver turns one into a path beneath its storage root it must be one
//! plain name: `volumes/{id}` with an id of `.` or `..` or `a/b` names
//! something else than one volume (an id of `.` in a delete would remove
//! every volume). [`path_under`] is the one way to build such a path.

use crate::DriverError;

/// Longest id CSI allows, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// `id` if it is one plain path component: 1 to [`MAX_ID_BYTES`] bytes of
/// `[A-Za-z0-9._-]`, and not `.` or `..`; an `InvalidArgument` naming what
/// is wrong otherwise.
pub fn path_name(id: &str) -> Result<&str, DriverError> {
    let bad = |why: &str| {
        let shown: String = id.chars().take(64).flat_map(char::escape_default).collect();
        Err(DriverError::InvalidArgument(format!(
            "id `{shown}` is not a plain name: {why}"
        )))
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > MAX_ID_BYTES {
        return bad("it is longer than 128 bytes");
    }
    if id == "." || id == ".." {
        return bad("it names a directory, not an entry");
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!("it holds {:?}", c));
    }
    Ok(id)
}

/// `dir/<id><suffix>`, once `id` passed [`path_name`].
pub fn path_under(dir: &str, id: &str, suffix: &str) -> Result<String, DriverError> {
    Ok(format!("{dir}/{}{suffix}", path_name(id)?))
}

/// The `NotFound` error every driver answers for an unknown volume or snapshot.
pub fn not_found(what: &str, id: &str) -> DriverError {
    let shown: String = id
        .chars()
        .take(MAX_ID_BYTES)
        .flat_map(char::escape_default)
        .collect();
    DriverError::NotFound(format!("{what} `{shown}` not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_pass() {
        for good in ["hp-0123abcd", "a", "a.b", "x_y-z", &"n".repeat(128)] {
            assert_eq!(path_name(good).unwrap(), good);
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/etc",
            "../x",
            "a\0b",
            "a\nb",
            "é",
            &"n".repeat(129),
        ] {
            assert!(path_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            path_under("volumes", "v1", ".img").unwrap(),
            "volumes/v1.img"
        );
        assert!(path_under("volumes", "..", "").is_err());
    }
}
