//! Platforms (os/architecture/variant) and the choice of one manifest from an index.
//!
//! [`select`] takes the candidates and the wanted platform, so the Windows `os.version` rules can be added
//! to it without changing its callers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An image platform as the OCI image index states it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// Operating system (`linux`, `windows`).
    #[serde(default)]
    pub os: String,
    /// CPU architecture in Go's names (`amd64`, `arm64`, ...).
    #[serde(default)]
    pub architecture: String,
    /// CPU variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Windows build (`10.0.20348.2113`).
    #[serde(default, rename = "os.version", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// OS features (`win32k`).
    #[serde(default, rename = "os.features", skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
}

/// A `--platform` value hako refuses.
#[derive(Debug, thiserror::Error)]
#[error("platform {0:?} is not os/architecture[/variant] (for example linux/amd64 or linux/arm/v7)")]
pub struct BadPlatform(pub String);

/// No candidate of an index suits the wanted platform.
#[derive(Debug, thiserror::Error)]
#[error("no manifest for {wanted} in the image index: it offers {offered}; pick one of those with --platform")]
pub struct NoMatch {
    /// The wanted platform.
    pub wanted: String,
    /// The platforms on offer.
    pub offered: String,
}

impl Platform {
    /// The platform of this host, in the names registries use.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
            ..Platform::default()
        }
    }

    /// Parses `os/architecture[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, BadPlatform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(BadPlatform(s.to_string()));
        }
        let (architecture, variant) = normalize_arch(parts[1], parts.get(2).copied());
        Ok(Platform { os: parts[0].to_lowercase(), architecture, variant, ..Platform::default() })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        if let Some(v) = &self.os_version {
            write!(f, " {v}")?;
        }
        Ok(())
    }
}

/// Go's architecture names for the common aliases, and arm64's default variant folded away.
fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_lowercase();
    let arch = match arch.as_str() {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        "armhf" => return ("arm".into(), Some("v7".into())),
        "armel" => return ("arm".into(), Some("v6".into())),
        _ => arch,
    };
    let variant = variant.map(str::to_lowercase).filter(|v| !(arch == "arm64" && (v == "v8" || v.is_empty())));
    let variant = variant.filter(|v| !v.is_empty());
    (arch, variant)
}

/// How well `candidate` suits `wanted`: `None` when it cannot run, higher is better.
fn score(candidate: &Platform, wanted: &Platform) -> Option<u32> {
    if !candidate.os.eq_ignore_ascii_case(&wanted.os) {
        return None;
    }
    let (c_arch, c_var) = normalize_arch(&candidate.architecture, candidate.variant.as_deref());
    let (w_arch, w_var) = normalize_arch(&wanted.architecture, wanted.variant.as_deref());
    if c_arch != w_arch {
        return None;
    }
    match (&c_var, &w_var) {
        (None, None) => Some(2),
        (Some(c), Some(w)) if c == w => Some(3),
        // An image without a variant is taken for any variant of its architecture.
        (None, Some(_)) => Some(1),
        // A host of arm/v7 runs arm/v6 and arm/v5 images too, preferring the newest.
        (Some(c), Some(w)) if c_arch == "arm" => {
            let n = |v: &str| v.trim_start_matches('v').parse::<u32>().ok();
            match (n(c), n(w)) {
                (Some(c), Some(w)) if c < w => Some(1),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Picks the candidate that best suits `wanted`, the first among equals (an index lists its preferred
/// manifest first). Candidates without a platform (attestations, artifacts) are never picked.
pub fn select(candidates: &[Option<Platform>], wanted: &Platform) -> Result<usize, NoMatch> {
    let mut best: Option<(usize, u32)> = None;
    for (i, c) in candidates.iter().enumerate() {
        let Some(c) = c else { continue };
        if c.os == "unknown" {
            continue;
        }
        if let Some(s) = score(c, wanted) {
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((i, s));
            }
        }
    }
    best.map(|(i, _)| i).ok_or_else(|| {
        let offered: Vec<String> =
            candidates.iter().flatten().filter(|c| c.os != "unknown").map(|c| c.to_string()).collect();
        NoMatch {
            wanted: wanted.to_string(),
            offered: if offered.is_empty() { "no platform".to_string() } else { offered.join(", ") },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<Platform> {
        Some(Platform::parse(s).unwrap())
    }

    #[test]
    fn picks_os_arch_and_variant() {
        let c = vec![p("linux/amd64"), p("linux/arm/v6"), p("linux/arm/v7"), p("linux/arm64/v8"), p("windows/amd64")];
        assert_eq!(select(&c, &Platform::parse("linux/amd64").unwrap()).unwrap(), 0);
        assert_eq!(select(&c, &Platform::parse("linux/arm/v7").unwrap()).unwrap(), 2);
        assert_eq!(select(&c, &Platform::parse("linux/aarch64").unwrap()).unwrap(), 3);
        assert_eq!(select(&c, &Platform::parse("windows/amd64").unwrap()).unwrap(), 4);
        assert_eq!(select(&c[..2], &Platform::parse("linux/arm/v7").unwrap()).unwrap(), 1);
        let e = select(&c[1..], &Platform::parse("linux/s390x").unwrap()).unwrap_err().to_string();
        assert!(e.contains("no manifest for linux/s390x") && e.contains("linux/arm/v6"), "{e}");
        let unknown =
            vec![Some(Platform { os: "unknown".into(), architecture: "unknown".into(), ..Default::default() })];
        assert!(select(&unknown, &Platform::parse("linux/amd64").unwrap()).is_err());
        assert!(Platform::parse("linux").is_err() && Platform::parse("linux/amd64/v1/x").is_err());
    }
}
