//! Windows version numbers: `major.minor.build.revision` (`10.0.17763.437`), the build numbers
//! of the releases (hcsshim `osversion/windowsbuilds.go`, the same as containerd/platforms) and
//! their names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Build numbers of Windows releases.
pub mod builds {
    /// 1607 / RS1 / ltsc2016.
    pub const RS1: u32 = 14393;
    /// 1703 / RS2.
    pub const RS2: u32 = 15063;
    /// 1709 / RS3: named pipe mounts need it.
    pub const RS3: u32 = 16299;
    /// 1803 / RS4.
    pub const RS4: u32 = 17134;
    /// 1809 / RS5 / ltsc2019: HCS v2 and process isolation on client hosts.
    pub const RS5: u32 = 17763;
    /// 1903 / 19H1.
    pub const V19H1: u32 = 18362;
    /// 1909 / 19H2.
    pub const V19H2: u32 = 18363;
    /// 2004 / 20H1.
    pub const V20H1: u32 = 19041;
    /// 20H2.
    pub const V20H2: u32 = 19042;
    /// 21H1 (no server images were made).
    pub const V21H1: u32 = 19043;
    /// Windows 10 21H2.
    pub const V21H2_WIN10: u32 = 19044;
    /// Windows 10 22H2.
    pub const V22H2_WIN10: u32 = 19045;
    /// ltsc2022 / Windows Server 2022 (21H2 server).
    pub const LTSC2022: u32 = 20348;
    /// Windows 11 21H2.
    pub const V21H2_WIN11: u32 = 22000;
    /// Windows 11 22H2.
    pub const V22H2_WIN11: u32 = 22621;
    /// Windows Server 23H2 Annual Channel.
    pub const V23H2: u32 = 25398;
    /// ltsc2025 / Windows Server 2025 / Windows 11 24H2.
    pub const LTSC2025: u32 = 26100;
    /// Windows 11 25H2.
    pub const V25H2_WIN11: u32 = 26200;

    /// The LTSC builds after which newer hosts keep accepting older images under process
    /// isolation (containerd/platforms `compatLTSCReleases`).
    pub const COMPAT_LTSC_RELEASES: [u32; 2] = [LTSC2022, LTSC2025];

    /// A short name for a build, e.g. `ltsc2022`.
    pub fn name(build: u32) -> Option<&'static str> {
        Some(match build {
            RS1 => "ltsc2016 (1607)",
            RS2 => "1703",
            RS3 => "1709",
            RS4 => "1803",
            RS5 => "ltsc2019 (1809)",
            V19H1 => "1903",
            V19H2 => "1909",
            V20H1 => "2004",
            V20H2 => "20H2",
            V21H1 => "21H1",
            V21H2_WIN10 => "Windows 10 21H2",
            V22H2_WIN10 => "Windows 10 22H2",
            LTSC2022 => "ltsc2022",
            V21H2_WIN11 => "Windows 11 21H2",
            V22H2_WIN11 => "Windows 11 22H2",
            V23H2 => "Windows Server 23H2",
            LTSC2025 => "ltsc2025 (Windows 11 24H2)",
            V25H2_WIN11 => "Windows 11 25H2",
            _ => return None,
        })
    }

    /// `build` followed by its name when known: `20348 (ltsc2022)`.
    pub fn describe(build: u32) -> String {
        match name(build) {
            Some(n) => format!("{} ({})", build, n),
            None => build.to_string(),
        }
    }
}

/// A Windows version `major.minor.build[.revision]`; the revision is the UBR. Serialized as
/// its text form, `"10.0.20348.1487"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct OsVersion {
    /// 10 for every supported release.
    pub major: u32,
    /// 0 for every supported release.
    pub minor: u32,
    /// The build number.
    pub build: u32,
    /// The update build revision (UBR); 0 when unknown.
    pub revision: u32,
}

/// A version string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Windows version {value:?} is not of the form MAJOR.MINOR.BUILD[.REVISION] (e.g. 10.0.20348 or 10.0.20348.1487)"
)]
pub struct OsVersionParseError {
    /// The text given.
    pub value: String,
}

impl OsVersion {
    /// `10.0.<build>.<revision>`.
    pub const fn windows10(build: u32, revision: u32) -> Self {
        OsVersion { major: 10, minor: 0, build, revision }
    }
}

impl FromStr for OsVersion {
    type Err = OsVersionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || OsVersionParseError { value: s.to_string() };
        let parts: Vec<&str> = s.trim().split('.').collect();
        if parts.len() < 3 || parts.len() > 4 {
            return Err(err());
        }
        let mut nums = [0u32; 4];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            nums[i] = p.parse().map_err(|_| err())?;
        }
        Ok(OsVersion { major: nums[0], minor: nums[1], build: nums[2], revision: nums[3] })
    }
}

impl From<OsVersion> for String {
    fn from(v: OsVersion) -> String {
        v.to_string()
    }
}

impl TryFrom<String> for OsVersion {
    type Error = OsVersionParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for OsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}.{}", self.major, self.minor, self.build, self.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_three_and_four_part_versions() {
        assert_eq!("10.0.17763".parse(), Ok(OsVersion::windows10(17763, 0)));
        assert_eq!("10.0.20348.1487".parse(), Ok(OsVersion::windows10(20348, 1487)));
        assert_eq!(OsVersion::windows10(26100, 2).to_string(), "10.0.26100.2");
        for bad in ["", "10", "10.0", "10.0.x", "10.0.1.2.3", "10..17763", "-1.0.1"] {
            assert!(bad.parse::<OsVersion>().is_err(), "{:?} parsed", bad);
        }
    }

    #[test]
    fn serializes_as_text() {
        let v = OsVersion::windows10(20348, 1487);
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"10.0.20348.1487\"");
        assert_eq!(serde_json::from_str::<OsVersion>("\"10.0.17763\"").unwrap(), OsVersion::windows10(17763, 0));
        assert!(serde_json::from_str::<OsVersion>("\"ltsc2022\"").is_err());
    }

    #[test]
    fn names_the_releases_users_know() {
        assert_eq!(builds::describe(20348), "20348 (ltsc2022)");
        assert_eq!(builds::describe(17763), "17763 (ltsc2019 (1809))");
        assert_eq!(builds::describe(12345), "12345");
    }
}
