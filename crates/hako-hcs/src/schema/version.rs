//! The HCS schema version (`SchemaVersion{Major,Minor}`) and which version hako sends on which
//! host build.
//!
//! Facts (reference §1.4, `SchemaReference.md` "Schema Version Map"): 2.0 and 2.1 arrived with
//! 1809 (17763), 2.2 with 1903 (18362), 2.3 with 2004 (19041), 2.4 and 2.5 with Windows Server
//! 2022 (20348), 2.6 with Windows 11 21H2 (22000). hcsshim's policy, which hako follows: v1 before
//! RS5 (hako does not speak v1) and v2.1 on every build from 17763; 2.5 only from 20348.

use serde::{Deserialize, Serialize};

/// The first build with the HCS v2 API (computecore.dll): Windows 10 1809 / Windows Server 2019.
pub const RS5_BUILD: u32 = 17763;

/// An HCS schema version, e.g. `{"Major":2,"Minor":1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SchemaVersion {
    /// Major version (2 for everything hako sends).
    pub major: u32,
    /// Minor version; hcsshim omits 0 on the wire and so does hako.
    #[serde(skip_serializing_if = "super::is_default")]
    pub minor: u32,
}

/// The host cannot take the schema version asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaVersionError {
    /// The host predates HCS v2.
    #[error(
        "host build {build} predates HCS schema v2 (Windows 10 1809 / Windows Server 2019, build {RS5_BUILD}): \
         hako only speaks schema v2; update the host to build {RS5_BUILD} or newer"
    )]
    HostTooOld {
        /// The host's build number.
        build: u32,
    },
    /// A schema version newer than the host knows.
    #[error(
        "HCS schema {version} needs host build {needed} or newer but the host is build {build}: \
         use schema {fallback} or update the host"
    )]
    TooNewForHost {
        /// The version asked for.
        version: SchemaVersion,
        /// The first build that has it.
        needed: u32,
        /// The host's build number.
        build: u32,
        /// What the host supports (hcsshim's choice for it).
        fallback: SchemaVersion,
    },
    /// A version that does not exist.
    #[error("HCS schema {version} is not a known schema version: known versions are 2.0 to 2.6")]
    Unknown {
        /// The version asked for.
        version: SchemaVersion,
    },
}

impl SchemaVersion {
    /// Schema 2.1, what hcsshim (and hako) send on every build from 17763.
    pub const V2_1: SchemaVersion = SchemaVersion { major: 2, minor: 1 };
    /// Schema 2.5, Windows Server 2022 (20348) and newer; used by hcsshim for confidential WCOW UVMs.
    pub const V2_5: SchemaVersion = SchemaVersion { major: 2, minor: 5 };

    /// A version from its parts.
    pub const fn new(major: u32, minor: u32) -> Self {
        SchemaVersion { major, minor }
    }

    /// The first host build that accepts this version (the SDK's schema version map), or
    /// `None` for a version that does not exist.
    pub fn first_build(self) -> Option<u32> {
        match (self.major, self.minor) {
            (2, 0) | (2, 1) => Some(RS5_BUILD),
            (2, 2) => Some(18362),
            (2, 3) => Some(19041),
            (2, 4) | (2, 5) => Some(20348),
            (2, 6) => Some(22000),
            _ => None,
        }
    }

    /// The version hako sends to a host of build `build`: hcsshim's policy, v2.1 from 17763.
    pub fn for_host_build(build: u32) -> Result<SchemaVersion, SchemaVersionError> {
        if build < RS5_BUILD {
            return Err(SchemaVersionError::HostTooOld { build });
        }
        Ok(SchemaVersion::V2_1)
    }

    /// The newest version a host of build `build` accepts (the SDK map), `None` before 17763.
    pub fn newest_for_host_build(build: u32) -> Option<SchemaVersion> {
        const ALL: [SchemaVersion; 7] = [
            SchemaVersion::new(2, 6),
            SchemaVersion::new(2, 5),
            SchemaVersion::new(2, 4),
            SchemaVersion::new(2, 3),
            SchemaVersion::new(2, 2),
            SchemaVersion::new(2, 1),
            SchemaVersion::new(2, 0),
        ];
        ALL.iter().copied().find(|v| v.first_build().map_or(false, |first| build >= first))
    }

    /// Checks that a host of build `build` accepts this version.
    pub fn check_host_build(self, build: u32) -> Result<(), SchemaVersionError> {
        let needed = self.first_build().ok_or(SchemaVersionError::Unknown { version: self })?;
        let fallback = SchemaVersion::for_host_build(build)?;
        if build < needed {
            return Err(SchemaVersionError::TooNewForHost { version: self, needed, build, fallback });
        }
        Ok(())
    }
}

impl std::fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hako_sends_2_1_from_rs5_and_refuses_older_hosts() {
        assert_eq!(SchemaVersion::for_host_build(17763), Ok(SchemaVersion::V2_1));
        assert_eq!(SchemaVersion::for_host_build(26100), Ok(SchemaVersion::V2_1));
        let err = SchemaVersion::for_host_build(17134).unwrap_err();
        assert_eq!(err, SchemaVersionError::HostTooOld { build: 17134 });
        assert!(err.to_string().contains("update the host to build 17763"));
    }

    #[test]
    fn schema_version_map_matches_the_sdk_table() {
        assert_eq!(SchemaVersion::new(2, 0).first_build(), Some(17763));
        assert_eq!(SchemaVersion::new(2, 2).first_build(), Some(18362));
        assert_eq!(SchemaVersion::new(2, 3).first_build(), Some(19041));
        assert_eq!(SchemaVersion::new(2, 4).first_build(), Some(20348));
        assert_eq!(SchemaVersion::V2_5.first_build(), Some(20348));
        assert_eq!(SchemaVersion::new(2, 6).first_build(), Some(22000));
        assert_eq!(SchemaVersion::new(3, 0).first_build(), None);
        assert_eq!(SchemaVersion::newest_for_host_build(17763), Some(SchemaVersion::V2_1));
        assert_eq!(SchemaVersion::newest_for_host_build(19041), Some(SchemaVersion::new(2, 3)));
        assert_eq!(SchemaVersion::newest_for_host_build(20348), Some(SchemaVersion::V2_5));
        assert_eq!(SchemaVersion::newest_for_host_build(26100), Some(SchemaVersion::new(2, 6)));
        assert_eq!(SchemaVersion::newest_for_host_build(14393), None);
    }

    #[test]
    fn v2_5_needs_ltsc2022() {
        assert!(SchemaVersion::V2_5.check_host_build(20348).is_ok());
        let err = SchemaVersion::V2_5.check_host_build(19041).unwrap_err();
        assert!(matches!(err, SchemaVersionError::TooNewForHost { needed: 20348, .. }));
        assert!(err.to_string().contains("use schema 2.1"));
    }

    #[test]
    fn wire_form_omits_zero_minor_like_hcsshim() {
        let json = serde_json::to_string(&SchemaVersion::V2_1).unwrap();
        assert_eq!(json, r#"{"Major":2,"Minor":1}"#);
        let json = serde_json::to_string(&SchemaVersion::new(2, 0)).unwrap();
        assert_eq!(json, r#"{"Major":2}"#);
        let back: SchemaVersion = serde_json::from_str(r#"{"Major":2}"#).unwrap();
        assert_eq!(back, SchemaVersion::new(2, 0));
    }
}
