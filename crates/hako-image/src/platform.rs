//! Platforms (os/architecture/variant) and the choice of one manifest from an index.
//!
//! [`select`] takes the candidates and the wanted platform; for Windows it applies the `os.version` rules of
//! the shared compatibility engine (`hako-platform`): the host's build first, then the newest compatible.

use std::fmt;

use hako_platform::windows::{self, Verdict};
use hako_platform::{arch, OsVersion};
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
#[error("platform {0:?} is not os/architecture[/variant][:os.version] (for example linux/amd64, linux/arm/v7 or windows/amd64:10.0.20348)")]
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
        let (architecture, variant) = hako_platform::arch::this_host();
        Platform { os: std::env::consts::OS.to_string(), architecture, variant, ..Platform::default() }
    }

    /// Parses `os/architecture[/variant][:os.version]` (`linux/arm/v7`, `windows/amd64:10.0.20348`): the
    /// version, for Windows, is the host build that selection prefers.
    pub fn parse(s: &str) -> Result<Platform, BadPlatform> {
        let (path, version) = match s.split_once(':') {
            Some((p, v)) => (p, Some(v)),
            None => (s, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(BadPlatform(s.to_string()));
        }
        let os = parts[0].to_lowercase();
        let os_version = match version {
            None => None,
            Some(v) if os == "windows" && v.parse::<OsVersion>().is_ok() => Some(v.to_string()),
            Some(_) => return Err(BadPlatform(s.to_string())),
        };
        let (architecture, variant) = arch::normalize(parts[1], parts.get(2).copied());
        Ok(Platform { os, architecture, variant, os_version, ..Platform::default() })
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

/// How well `candidate` suits `wanted`: `None` when it cannot run, larger is better. The order: for
/// Windows with a wanted `os.version` (the host's), the host's own build first, then any build process
/// isolation accepts, then an image that states no version (containerd takes it as matching), then one
/// only Hyper-V isolation runs; then the closer architecture variant; then the newer `os.version`.
fn score(candidate: &Platform, wanted: &Platform) -> Option<(u32, u32, OsVersion)> {
    if !candidate.os.eq_ignore_ascii_case(&wanted.os) {
        return None;
    }
    let arch_score = arch::score(
        (&candidate.architecture, candidate.variant.as_deref()),
        (&wanted.architecture, wanted.variant.as_deref()),
    )?;
    if !candidate.os.eq_ignore_ascii_case("windows") {
        return Some((0, arch_score, OsVersion::default()));
    }
    let version = match &candidate.os_version {
        Some(text) => Some(text.parse::<OsVersion>().ok()?),
        None => None,
    };
    let host = match wanted.os_version.as_deref().map(str::parse::<OsVersion>) {
        Some(Ok(h)) => h,
        // No host build to match: the newest image wins.
        _ => return Some((0, arch_score, version.unwrap_or_default())),
    };
    let v = match version {
        Some(v) => v,
        None => return Some((2, arch_score, OsVersion::default())),
    };
    let tier = match windows::check(&windows::HostInfo { version: host, is_client: false }, Some(&v)) {
        Verdict::ProcessOk if v.build == host.build => 4,
        Verdict::ProcessOk => 3,
        Verdict::NeedsHyperV { .. } => 1,
        Verdict::CannotRun { .. } => return None,
    };
    Some((tier, arch_score, v))
}

/// Picks the candidate that best suits `wanted` (see [`score`] for the order; for Windows the rules of
/// `hako_platform::windows`), the first among equals (an index lists its preferred manifest first).
/// Candidates without a platform (attestations, artifacts) are never picked.
pub fn select(candidates: &[Option<Platform>], wanted: &Platform) -> Result<usize, NoMatch> {
    let mut best: Option<(usize, (u32, u32, OsVersion))> = None;
    for (i, c) in candidates.iter().enumerate() {
        let Some(c) = c else { continue };
        if c.os == "unknown" {
            continue;
        }
        if let Some(s) = score(c, wanted) {
            if best.as_ref().is_none_or(|(_, b)| s > *b) {
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

    fn win(version: Option<&str>) -> Option<Platform> {
        Some(Platform {
            os: "windows".into(),
            architecture: "amd64".into(),
            os_version: version.map(str::to_string),
            os_features: vec!["win32k".into()],
            ..Default::default()
        })
    }

    #[test]
    fn windows_prefers_the_host_build_then_the_newest_compatible() {
        let c = vec![
            win(Some("10.0.17763.5000")),
            win(Some("10.0.20348.1487")),
            win(Some("10.0.20348.2000")),
            win(Some("10.0.26100.100")),
            p("linux/amd64"),
        ];
        let want = |v: &str| Platform::parse(&format!("windows/amd64:{v}")).unwrap();
        // The host's build, newest revision.
        assert_eq!(select(&c, &want("10.0.20348.100")).unwrap(), 2);
        assert_eq!(select(&c, &want("10.0.17763")).unwrap(), 0);
        assert_eq!(select(&c, &want("10.0.26100.1")).unwrap(), 3);
        // Windows 11 22H2: ltsc2022 runs with process isolation; 26100 is newer than the host.
        assert_eq!(select(&c, &want("10.0.22621.1")).unwrap(), 2);
        // Win11 25H2 takes ltsc2025 (process) over ltsc2022 (Hyper-V only).
        assert_eq!(select(&c, &want("10.0.26200.1")).unwrap(), 3);
        // A host newer than everything but outside the process ranges: the newest Hyper-V-able.
        assert_eq!(select(&c[..3], &want("10.0.26200.1")).unwrap(), 2);
        // Nothing older than an ltsc2016 host.
        let e = select(&c, &want("10.0.14393")).unwrap_err().to_string();
        assert!(e.contains("windows/amd64 10.0.14393") && e.contains("10.0.17763.5000"), "{e}");
        // Without a host build, the newest; an image without os.version matches, below explicit ones.
        assert_eq!(select(&c, &Platform::parse("windows/amd64").unwrap()).unwrap(), 3);
        let c2 = vec![win(Some("10.0.17763.1")), win(None), win(Some("10.0.20348.1"))];
        assert_eq!(select(&c2, &want("10.0.20348.5")).unwrap(), 2);
        assert_eq!(select(&c2, &want("10.0.26200.5")).unwrap(), 1);
        assert!(Platform::parse("linux/amd64:10.0.20348").is_err());
        assert!(Platform::parse("windows/amd64:ltsc2022").is_err());
    }
}
