//! Container ids: what the CLI accepts before any file is touched.

use std::fmt;

/// A validated container id: 1..=[`ContainerId::MAX_LEN`] characters from `[A-Za-z0-9_+.-]`, not `.` or `..`.
///
/// The id names the state directory `<root>/<id>`, so a separator or a dot-dot would let it escape the root,
/// and it must fit in one file name (NAME_MAX, 255 bytes; also the cgroup directory's name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId(String);

/// Why an id was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid container id {id:?}: {why}; use 1 to 255 characters from letters, digits, '_', '+', '-' and '.'")]
pub struct InvalidId {
    id: String,
    why: String,
}

impl ContainerId {
    /// The longest id: the longest file name (NAME_MAX), since the id names the state directory.
    pub const MAX_LEN: usize = 255;

    /// Checks `id` and wraps it.
    pub fn parse(id: &str) -> Result<Self, InvalidId> {
        let bad = |why: &str| Err(InvalidId { id: id.to_owned(), why: why.to_owned() });
        if id.is_empty() {
            return bad("it is empty");
        }
        if id.len() > Self::MAX_LEN {
            return bad(&format!(
                "it is {} characters long, longer than a file name may be ({} characters)",
                id.len(),
                Self::MAX_LEN
            ));
        }
        if id == "." || id == ".." {
            return bad("it is a path component");
        }
        if id.contains('/') || id.contains('\\') {
            return bad("it contains a path separator");
        }
        if !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')) {
            return bad("it contains a character that is not allowed");
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_style_ids() {
        for id in ["a", "abc-123", "x.y_z+1", &"a".repeat(ContainerId::MAX_LEN)] {
            assert_eq!(ContainerId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn refuses_escapes_and_odd_characters() {
        for id in ["", ".", "..", "a/b", "../x", "a\\b", "a b", "a\0b", &"a".repeat(256), &"a".repeat(1025)] {
            let err = ContainerId::parse(id).unwrap_err().to_string();
            assert!(err.contains("invalid container id"), "{err}");
        }
        let err = ContainerId::parse(&"a".repeat(256)).unwrap_err().to_string();
        assert!(err.contains("256 characters long") && err.contains("(255 characters)"), "{err}");
    }
}
