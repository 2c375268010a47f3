//! The data tables, versioned files in `crates/hako-platform/data/` embedded at build time, each citing its
//! public sources: Windows releases with their channel and container-image lifecycle
//! (`windows-builds.json`) and Microsoft's base images with win32k and typical sizes
//! (`windows-base-images.json`). They are parsed once and checked by the unit tests.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::date::Date;

/// The Windows release table as shipped.
pub const WINDOWS_BUILDS_JSON: &str = include_str!("../data/windows-builds.json");
/// The base image table as shipped.
pub const WINDOWS_BASE_IMAGES_JSON: &str = include_str!("../data/windows-base-images.json");

/// The servicing channel of a Windows release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// Long-Term Servicing Channel: 5 years mainstream plus 5 extended.
    Ltsc,
    /// Semi-Annual Channel (until 2023): 18 months.
    Sac,
    /// Annual Channel (since 2023; no container images of its own).
    Annual,
    /// A Windows 10/11 client release: a container host, never an image.
    Client,
}

impl Channel {
    /// Its name in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Channel::Ltsc => "LTSC",
            Channel::Sac => "Semi-Annual Channel",
            Channel::Annual => "Annual Channel",
            Channel::Client => "Windows client",
        }
    }
}

/// A different lifecycle for one base image of a release (Nano Server 1607).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageException {
    /// The base image's short name (`nanoserver`).
    pub image: String,
    /// Why it differs.
    pub note: String,
    /// End of mainstream support.
    pub mainstream_end: Option<Date>,
    /// End of extended support.
    pub extended_end: Option<Date>,
}

/// One Windows release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Release {
    /// The build number.
    pub build: u32,
    /// The name users know (`ltsc2022`, `1809` releases are `ltsc2019`).
    pub name: String,
    /// The version (`21H2`, `1809`).
    pub version: String,
    /// Its channel.
    pub channel: Channel,
    /// When its container images became available.
    pub released: Option<Date>,
    /// End of mainstream support of its container images (the end of support for SAC).
    pub mainstream_end: Option<Date>,
    /// End of extended support of its container images (LTSC only).
    pub extended_end: Option<Date>,
    /// Base images with another lifecycle.
    #[serde(default)]
    pub image_exceptions: Vec<ImageException>,
}

impl Release {
    /// The last day of support of its container images: the extended end, else the mainstream end, for
    /// the base image `base` when the table has an exception for it.
    pub fn end_of_support(&self, base: Option<&str>) -> Option<Date> {
        if let Some(ex) = base.and_then(|b| self.image_exceptions.iter().find(|e| e.image == b)) {
            return ex.extended_end.or(ex.mainstream_end);
        }
        self.extended_end.or(self.mainstream_end)
    }
}

/// A typical size of a base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSize {
    /// The release measured.
    pub build: u32,
    /// Pulled (compressed) bytes.
    #[serde(default)]
    pub compressed_bytes: Option<u64>,
    /// Unpacked bytes.
    #[serde(default)]
    pub unpacked_bytes: Option<u64>,
    /// Where the number comes from.
    pub source: String,
}

/// One of Microsoft's base images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaseImage {
    /// Short name (`servercore`).
    pub name: String,
    /// Repository (`mcr.microsoft.com/windows/servercore`).
    pub repository: String,
    /// Whether it has win32k (and states `os.features: ["win32k"]`).
    pub win32k: bool,
    /// What it is for.
    pub description: String,
    /// The builds it exists for.
    pub builds: Vec<u32>,
    /// Typical sizes.
    pub sizes: Vec<ImageSize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseFile {
    #[allow(dead_code)]
    about: String,
    #[allow(dead_code)]
    version: u32,
    sources: Vec<String>,
    releases: Vec<Release>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseImageFile {
    #[allow(dead_code)]
    about: String,
    #[allow(dead_code)]
    version: u32,
    sources: Vec<String>,
    images: Vec<BaseImage>,
}

/// Both tables.
#[derive(Debug)]
pub struct Tables {
    /// Windows releases, by build.
    pub releases: Vec<Release>,
    /// Sources of the release table.
    pub release_sources: Vec<String>,
    /// Base images.
    pub base_images: Vec<BaseImage>,
    /// Sources of the base image table.
    pub base_image_sources: Vec<String>,
}

fn load() -> Tables {
    // The files are part of the build and checked by the tests: a parse failure is a build defect.
    let r: ReleaseFile = serde_json::from_str(WINDOWS_BUILDS_JSON).expect("data/windows-builds.json is valid");
    let b: BaseImageFile =
        serde_json::from_str(WINDOWS_BASE_IMAGES_JSON).expect("data/windows-base-images.json is valid");
    let mut releases = r.releases;
    releases.sort_by_key(|x| x.build);
    Tables { releases, release_sources: r.sources, base_images: b.images, base_image_sources: b.sources }
}

/// The tables, parsed on first use.
pub fn tables() -> &'static Tables {
    static CELL: Mutex<Option<&'static Tables>> = Mutex::new(None);
    let mut guard = CELL.lock().unwrap_or_else(|e| e.into_inner());
    match *guard {
        Some(t) => t,
        None => {
            let t: &'static Tables = Box::leak(Box::new(load()));
            *guard = Some(t);
            t
        }
    }
}

/// The release of `build`, if the table knows it.
pub fn release(build: u32) -> Option<&'static Release> {
    tables().releases.iter().find(|r| r.build == build)
}

/// The base image stored in `repository` (`mcr.microsoft.com/windows/servercore`, an insider repository
/// under it too), if it is one of Microsoft's.
pub fn base_image(repository: &str) -> Option<&'static BaseImage> {
    let repo = repository.trim_end_matches('/');
    tables().base_images.iter().find(|b| repo == b.repository || repo == format!("{}/insider", b.repository))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osversion::builds;

    #[test]
    fn tables_parse_cite_sources_and_agree_with_the_build_constants() {
        let t = tables();
        assert!(t.release_sources.iter().all(|s| s.starts_with("https://")));
        assert!(t.base_image_sources.iter().all(|s| s.starts_with("https://")));
        assert!(!t.release_sources.is_empty() && !t.base_image_sources.is_empty());
        for b in [
            builds::RS1,
            builds::RS3,
            builds::RS4,
            builds::RS5,
            builds::V19H1,
            builds::V19H2,
            builds::V20H1,
            builds::V20H2,
            builds::LTSC2022,
            builds::V21H2_WIN11,
            builds::V22H2_WIN11,
            builds::V23H2,
            builds::LTSC2025,
            builds::V25H2_WIN11,
        ] {
            assert!(release(b).is_some(), "build {} missing from windows-builds.json", b);
        }
        for r in &t.releases {
            if r.channel == Channel::Ltsc {
                assert!(r.extended_end.is_some() && r.mainstream_end.is_some(), "{:?}", r);
                assert!(r.released < r.mainstream_end && r.mainstream_end < r.extended_end, "{:?}", r);
            }
            if r.channel == Channel::Sac {
                assert!(r.mainstream_end.is_some() && r.extended_end.is_none(), "{:?}", r);
            }
        }
        let ltsc: Vec<u32> = t.releases.iter().filter(|r| r.channel == Channel::Ltsc).map(|r| r.build).collect();
        assert_eq!(ltsc, [builds::RS1, builds::RS5, builds::LTSC2022, builds::LTSC2025]);
        assert_eq!(release(20348).unwrap().end_of_support(None), "2031-10-14".parse().ok());
        let nano_1607 = release(14393).unwrap().end_of_support(Some("nanoserver"));
        assert_eq!(nano_1607, "2018-10-09".parse().ok());
    }

    #[test]
    fn base_images_know_win32k() {
        assert!(!base_image("mcr.microsoft.com/windows/nanoserver").unwrap().win32k);
        assert!(base_image("mcr.microsoft.com/windows/servercore/insider").unwrap().win32k);
        assert!(base_image("mcr.microsoft.com/windows/server").unwrap().win32k);
        assert_eq!(base_image("mcr.microsoft.com/windows").unwrap().name, "windows");
        assert!(base_image("docker.io/library/busybox").is_none());
        for b in &tables().base_images {
            assert!(!b.sizes.is_empty(), "{} has no size", b.name);
            for s in &b.sizes {
                assert!(b.builds.contains(&s.build), "{} size for a build it lacks", b.name);
                assert!(s.compressed_bytes.is_some() || s.unpacked_bytes.is_some());
            }
        }
    }
}
