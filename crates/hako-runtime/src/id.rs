//! Container ids: what the CLI accepts before any file is touched.

use std::fmt;

/// A validated container id: 1..=1024 characters from `[A-Za-z0-9_+.-]`, not `.` or `..`.
///
/// The id names the state directory `<root>/<id>`, so a separator or a dot-dot would let it escape the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId(String);

/// Why an id was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid container id {id:?}: {why}; use 1 to 1024 characters from letters, digits, '_', '+', '-' and '.'")]
pub struct InvalidId {
    id: String,
    why: &'static str,
}

impl ContainerId {
    /// Checks `id` and wraps it.
    pub fn parse(id: &str) -> Result<Self, InvalidId> {
        let bad = |why| Err(InvalidId { id: id.to_owned(), why });
        if id.is_empty() {
            return bad("it is empty");
        }
        if id.len() > 1024 {
            return bad("it is longer than 1024 characters");
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
        for id in ["a", "abc-123", "x.y_z+1", &"a".repeat(1024)] {
            assert_eq!(ContainerId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn refuses_escapes_and_odd_characters() {
        for id in ["", ".", "..", "a/b", "../x", "a\\b", "a b", "a\0b", &"a".repeat(1025)] {
            let err = ContainerId::parse(id).unwrap_err().to_string();
            assert!(err.contains("invalid container id"), "{err}");
        }
    }
}
