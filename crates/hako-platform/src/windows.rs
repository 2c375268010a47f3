//! The Windows version-compatibility engine: can an image of build X run on a host of build Y,
//! with process isolation, only with Hyper-V isolation, or not at all?
//!
//! Rules (reference §3.3, §4.1):
//! - A newer image never runs on an older host, not even with Hyper-V isolation.
//! - Hyper-V isolation runs any image whose build is not newer than the host's.
//! - Process isolation (containerd/platforms `checkWindowsHostAndContainerCompat`, hcsshim
//!   `osversion.CheckHostAndContainerCompat`): major and minor equal; on a host older than
//!   20348 the build must match exactly; otherwise the image build must lie in
//!   [latest LTSC strictly below the host build (20348 if none) .. host build].
//! - ltsc2016 (14393) images under process isolation also need the same revision (UBR); the
//!   rule does not apply from 1809 on.
//! - Client hosts (Windows 10/11) older than 1809 only run Hyper-V containers.
//! - An image without `os.version` matches (containerd does the same).
//!
//! [`assess`] also names the [`Rule`] that decided, so callers can explain a verdict in structured form;
//! [`check`] is the verdict alone (what the Windows backend enforces before HCS sees a container).

use serde::{Deserialize, Serialize};

use crate::osversion::{builds, OsVersion};

/// The host side of a compatibility check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The host version, revision = UBR.
    pub version: OsVersion,
    /// A client edition (Windows 10/11) rather than Windows Server.
    pub is_client: bool,
}

/// What an image can do on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Process isolation works (and so does Hyper-V isolation).
    ProcessOk,
    /// Only Hyper-V isolation works; `reason` says why and names the fix.
    NeedsHyperV {
        /// Why process isolation does not work, with the fix.
        reason: String,
    },
    /// Nothing works; `reason` says why and names the fix.
    CannotRun {
        /// Why, with the fix.
        reason: String,
    },
}

impl Verdict {
    /// Whether process isolation is possible.
    pub fn allows_process(&self) -> bool {
        matches!(self, Verdict::ProcessOk)
    }

    /// Whether Hyper-V isolation is possible.
    pub fn allows_hyperv(&self) -> bool {
        !matches!(self, Verdict::CannotRun { .. })
    }
}

/// The rule that decided a [`Verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The image states no `os.version`: taken as matching, as containerd does.
    NoOsVersion,
    /// Image and host differ in major.minor.
    MajorMinor,
    /// The image is newer than the host: nothing runs it.
    NewerImage,
    /// A Windows client older than 1809 runs Hyper-V containers only.
    ClientBefore1809,
    /// A host older than 20348 needs the same build for process isolation.
    BuildMismatch,
    /// The image build lies outside [latest LTSC below the host .. host] for process isolation.
    OutsideLtscRange,
    /// ltsc2016 process isolation needs the same revision (UBR).
    Ltsc2016Revision,
    /// Same build (and, for ltsc2016, same revision).
    SameBuild,
    /// Windows 11 (21H2, 22H2) runs ltsc2022 images with process isolation.
    Windows11Ltsc2022,
    /// Windows Server 23H2 (Annual Channel) runs ltsc2022 images with process isolation.
    AnnualChannelLtsc2022,
    /// A newer host runs images of the latest LTSC below it (or ltsc2022) with process isolation.
    LtscPortability,
}

/// A verdict and the rule that gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    /// The verdict.
    pub verdict: Verdict,
    /// The rule that decided it.
    pub rule: Rule,
}

/// The image builds a host accepts under process isolation, as an inclusive range.
pub fn process_isolation_range(host_build: u32) -> (u32, u32) {
    if host_build < builds::LTSC2022 {
        return (host_build, host_build);
    }
    let floor = builds::COMPAT_LTSC_RELEASES
        .iter()
        .copied()
        .filter(|&ltsc| ltsc < host_build)
        .max()
        .unwrap_or(builds::LTSC2022);
    (floor, host_build)
}

fn describe_range((low, high): (u32, u32)) -> String {
    if low == high {
        format!("an image of build {}", builds::describe(low))
    } else {
        format!("an image of build {} to {}", builds::describe(low), builds::describe(high))
    }
}

/// The verdict for an image of version `image` (its `os.version`; `None` when the image does not
/// say) on `host`.
pub fn check(host: &HostInfo, image: Option<&OsVersion>) -> Verdict {
    assess(host, image).verdict
}

/// The verdict for an image of version `image` on `host`, with the rule that decided it.
pub fn assess(host: &HostInfo, image: Option<&OsVersion>) -> Assessment {
    let image = match image {
        Some(v) => v,
        None => return Assessment { verdict: Verdict::ProcessOk, rule: Rule::NoOsVersion },
    };
    let (verdict, rule) = decide(host, image);
    Assessment { verdict, rule }
}

fn decide(host: &HostInfo, image: &OsVersion) -> (Verdict, Rule) {
    let h = host.version;
    if image.major != h.major || image.minor != h.minor {
        return (
            Verdict::CannotRun {
                reason: format!(
                    "image version {} and host version {} differ in major.minor: use an image built for Windows {}.{}",
                    image, h, h.major, h.minor
                ),
            },
            Rule::MajorMinor,
        );
    }
    if image.build > h.build {
        return (
            Verdict::CannotRun {
                reason: format!(
                    "image build {} is newer than host build {}: a newer image never runs on an older host, \
                 not even with Hyper-V isolation: use an image of build {} or older, or update the host",
                    builds::describe(image.build),
                    builds::describe(h.build),
                    h.build
                ),
            },
            Rule::NewerImage,
        );
    }
    let range = process_isolation_range(h.build);
    let hyperv_fix = format!(
        "use Hyper-V isolation (hako --isolation hyperv, or windows.hyperv in config.json) or {}",
        describe_range(range)
    );
    if host.is_client && h.build < builds::RS5 {
        return (
            Verdict::NeedsHyperV {
                reason: format!(
                    "host build {} is a Windows client older than 1809, which only runs Hyper-V containers: {}",
                    h.build, hyperv_fix
                ),
            },
            Rule::ClientBefore1809,
        );
    }
    if image.build < range.0 || image.build > range.1 {
        let rule = if h.build < builds::LTSC2022 { Rule::BuildMismatch } else { Rule::OutsideLtscRange };
        return (
            Verdict::NeedsHyperV {
                reason: format!(
                    "image build {} does not match host build {} for process isolation: {}",
                    builds::describe(image.build),
                    builds::describe(h.build),
                    hyperv_fix
                ),
            },
            rule,
        );
    }
    if image.build == builds::RS1
        && h.build == builds::RS1
        && image.revision != 0
        && h.revision != 0
        && image.revision != h.revision
    {
        return (Verdict::NeedsHyperV {
            reason: format!(
                "ltsc2016 image revision {} differs from host revision {}; ltsc2016 process isolation needs equal revisions: \
                 use Hyper-V isolation or an image of version {}",
                image.revision, h.revision, h
            ),
        }, Rule::Ltsc2016Revision);
    }
    let rule = if image.build == h.build {
        Rule::SameBuild
    } else if image.build == builds::LTSC2022 && (h.build == builds::V21H2_WIN11 || h.build == builds::V22H2_WIN11) {
        Rule::Windows11Ltsc2022
    } else if image.build == builds::LTSC2022 && h.build == builds::V23H2 {
        Rule::AnnualChannelLtsc2022
    } else {
        Rule::LtscPortability
    };
    (Verdict::ProcessOk, rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(build: u32) -> HostInfo {
        HostInfo { version: OsVersion::windows10(build, 0), is_client: false }
    }

    fn image(build: u32) -> OsVersion {
        OsVersion::windows10(build, 0)
    }

    fn verdict_kind(v: &Verdict) -> &'static str {
        match v {
            Verdict::ProcessOk => "process",
            Verdict::NeedsHyperV { .. } => "hyperv",
            Verdict::CannotRun { .. } => "none",
        }
    }

    /// The Microsoft matrix (reference §4.1): (host, image) -> (Hyper-V, process).
    #[test]
    fn matches_the_version_compatibility_matrix() {
        let ws2025 = 26100;
        let ws2022 = 20348;
        let ws2019 = 17763;
        let (i2025, i2022, i2019, i2016) = (26100, 20348, 17763, 14393);
        let cases: &[(u32, u32, &str)] = &[
            (ws2025, i2025, "process"),
            (ws2025, i2022, "process"),
            (ws2025, i2019, "hyperv"),
            (ws2025, i2016, "hyperv"),
            (ws2022, i2022, "process"),
            (ws2022, i2019, "hyperv"),
            (ws2022, i2016, "hyperv"),
            (ws2022, i2025, "none"),
            (ws2019, i2022, "none"),
            (ws2019, i2019, "process"),
            (ws2019, i2016, "hyperv"),
            // Windows 11 (22000, 22621): 2022 both, 2019 and 2016 Hyper-V only.
            (22000, i2022, "process"),
            (22621, i2022, "process"),
            (22621, i2019, "hyperv"),
            (22621, i2016, "hyperv"),
            (22621, i2025, "none"),
            // Windows 11 24H2 runs 2025 images both ways.
            (26100, i2025, "process"),
            // Windows 10 2004..22H2: 2019 and 2016 Hyper-V only, 2022 not at all.
            (19045, i2019, "hyperv"),
            (19045, i2016, "hyperv"),
            (19045, i2022, "none"),
        ];
        for &(host, img, want) in cases {
            let v = check(&server(host), Some(&image(img)));
            assert_eq!(verdict_kind(&v), want, "host {} image {}: {:?}", host, img, v);
        }
    }

    /// containerd/platforms ranges (reference §3.3, derived results).
    #[test]
    fn process_isolation_ranges_follow_containerd() {
        assert_eq!(process_isolation_range(17763), (17763, 17763));
        assert_eq!(process_isolation_range(19041), (19041, 19041));
        assert_eq!(process_isolation_range(20348), (20348, 20348));
        assert_eq!(process_isolation_range(22000), (20348, 22000));
        assert_eq!(process_isolation_range(22621), (20348, 22621));
        assert_eq!(process_isolation_range(25398), (20348, 25398));
        assert_eq!(process_isolation_range(26100), (20348, 26100));
        assert_eq!(process_isolation_range(26200), (26100, 26200));
        // Win11 25H2 no longer runs ltsc2022 images with process isolation.
        let v = check(&server(26200), Some(&image(20348)));
        assert_eq!(verdict_kind(&v), "hyperv");
        // 23H2 hosts run ltsc2022 images.
        assert!(check(&server(25398), Some(&image(20348))).allows_process());
    }

    #[test]
    fn messages_name_the_fix() {
        let v = check(&server(20348), Some(&image(17763)));
        match v {
            Verdict::NeedsHyperV { reason } => {
                assert!(reason.contains("use Hyper-V isolation"), "{}", reason);
                assert!(reason.contains("an image of build 20348 (ltsc2022)"), "{}", reason);
            }
            other => panic!("unexpected {:?}", other),
        }
        let v = check(&server(22621), Some(&image(17763)));
        match v {
            Verdict::NeedsHyperV { reason } => {
                assert!(reason.contains("an image of build 20348 (ltsc2022) to 22621"), "{}", reason)
            }
            other => panic!("unexpected {:?}", other),
        }
        let v = check(&server(17763), Some(&image(20348)));
        match v {
            Verdict::CannotRun { reason } => {
                assert!(reason.contains("not even with Hyper-V"), "{}", reason);
                assert!(reason.contains("build 17763 or older"), "{}", reason);
            }
            other => panic!("unexpected {:?}", other),
        }
    }

    #[test]
    fn revision_is_ignored_from_1809_and_checked_for_ltsc2016() {
        let host = HostInfo { version: OsVersion::windows10(17763, 5000), is_client: false };
        assert!(check(&host, Some(&OsVersion::windows10(17763, 437))).allows_process());
        let host = HostInfo { version: OsVersion::windows10(14393, 1066), is_client: false };
        let v = check(&host, Some(&OsVersion::windows10(14393, 2000)));
        assert_eq!(verdict_kind(&v), "hyperv");
        assert!(check(&host, Some(&OsVersion::windows10(14393, 1066))).allows_process());
    }

    #[test]
    fn old_clients_are_hyperv_only_and_unknown_images_match() {
        let client = HostInfo { version: OsVersion::windows10(17134, 0), is_client: true };
        let v = check(&client, Some(&image(17134)));
        assert_eq!(verdict_kind(&v), "hyperv");
        let client = HostInfo { version: OsVersion::windows10(17763, 0), is_client: true };
        assert!(check(&client, Some(&image(17763))).allows_process());
        assert!(check(&server(20348), None).allows_process());
        let v = check(&server(20348), Some(&OsVersion { major: 6, minor: 3, build: 9600, revision: 0 }));
        assert_eq!(verdict_kind(&v), "none");
    }
}
