//! Image references: `[registry[:port]/]repository[:tag][@sha256:...]`, with Docker Hub's defaults.

use std::fmt;

use crate::digest::Digest;

/// The registry a reference without one names.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, with its port when it has one (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/busybox`).
    pub repository: String,
    /// Tag, when given (or `latest` when neither tag nor digest is).
    pub tag: Option<String>,
    /// Digest, when given.
    pub digest: Option<Digest>,
}

/// A reference hako refuses.
#[derive(Debug, thiserror::Error)]
#[error("image reference {reference:?} is not valid: {why} (expected [registry/]repository[:tag][@sha256:digest], for example docker.io/library/busybox:1.36)")]
pub struct BadReference {
    /// The text given.
    pub reference: String,
    /// What is wrong with it.
    pub why: String,
}

impl Reference {
    /// Parses `s`, filling in Docker Hub, `library/` and `latest` as docker does.
    pub fn parse(s: &str) -> Result<Reference, BadReference> {
        let bad = |why: &str| BadReference { reference: s.to_string(), why: why.to_string() };
        if s.is_empty() || s.len() > 512 {
            return Err(bad("it is empty or longer than 512 characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|e| bad(&e.to_string()))?)),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad("the tag must be 1 to 128 letters, digits, '_', '.' or '-'"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" { DOCKER_HUB.to_string() } else { registry };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if repository.len() > 255 || !repository.split('/').all(component_ok) {
            return Err(bad(
                "the repository must be lowercase letters, digits and separators (., _, -) between slashes",
            ));
        }
        let host_ok = registry.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        if !host_ok {
            return Err(bad("the registry must be a host name or address with an optional port"));
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// The tag or digest to ask the registry for (the digest wins when both are given).
    pub fn target(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host the API is served from (Docker Hub's API lives on registry-1.docker.io).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// Whether the registry is on this machine's loopback (`localhost`, `127.0.0.0/8`, `[::1]`), where hako
    /// speaks plain HTTP as podman and containerd do for a local registry.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
            _ => self.registry.as_str(),
        };
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults_and_explicit_registries() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("127.0.0.1:5000/a/b:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "a/b", Some("v1"))
        );
        assert!(r.is_loopback());
        let d = crate::digest::Digest::of(b"x");
        let r = Reference::parse(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!((r.tag.clone(), r.target()), (None, d.to_string()));
        assert!(!Reference::parse("quay.io/x/y").unwrap().is_loopback());
        for bad in ["", "UPPER/x", "a/../b", "x:bad tag", "x@sha256:12"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
