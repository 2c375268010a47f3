//! The verdict for one host and one image: [`decide`].

use serde::{Deserialize, Serialize};

use crate::arch;
use crate::date::Date;
use crate::osversion::{builds, OsVersion};
use crate::policy::{Policy, Trust, Untrusted};
use crate::table::{self, Channel};
use crate::windows::{self, HostInfo, Rule, Verdict};

/// A Windows host's edition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Edition {
    /// Windows Server (Core or Desktop Experience).
    Server,
    /// Windows 10/11.
    Client,
    /// Nano Server: no win32k.
    NanoServer,
}

/// The machine that would run the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    /// `linux` or `windows`.
    pub os: String,
    /// CPU architecture in Go's names (`amd64`).
    pub architecture: String,
    /// CPU variant (`v7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Linux: the kernel release (`uname -r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Windows: the version, revision = UBR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<OsVersion>,
    /// Windows: the edition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edition: Option<Edition>,
}

impl Host {
    /// This Linux machine: its architecture and kernel release (from `/proc/sys/kernel/osrelease`).
    pub fn this_linux() -> Host {
        let (architecture, variant) = arch::this_host();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|k| k.trim().to_string());
        Host { os: "linux".into(), architecture, variant, kernel, os_version: None, edition: None }
    }

    /// A Windows host of `version` on `architecture`.
    pub fn windows(version: OsVersion, architecture: &str, edition: Edition) -> Host {
        let (architecture, variant) = arch::normalize(architecture, None);
        Host {
            os: "windows".into(),
            architecture,
            variant,
            kernel: None,
            os_version: Some(version),
            edition: Some(edition),
        }
    }
}

/// An image's platform (from its index entry or config) and where it comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePlatform {
    /// `linux`, `windows`.
    pub os: String,
    /// CPU architecture.
    pub architecture: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Windows: `os.version` (`10.0.20348.1487`), as the image states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// `os.features` (`win32k`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// The registry it comes from (`registry.example.com:5000`); `None` when unknown (a local layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Its repository in that registry (`team/app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// An isolation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Process isolation: the host's kernel (on Windows: a server silo).
    Process,
    /// VM isolation: a micro-VM on Linux, Hyper-V isolation (or LCOW) on Windows.
    Vm,
}

impl Isolation {
    /// `process` or `vm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::Vm => "vm",
        }
    }
}

/// One reason, machine-readable (`code`) and for people (`message`, which names the fix where there is
/// one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// A stable kebab-case code (`newer-image`, `policy-untrusted`, `arch-mismatch`, ...).
    pub code: String,
    /// The explanation.
    pub message: String,
}

impl Reason {
    fn new(code: &str, message: String) -> Reason {
        Reason { code: code.to_string(), message }
    }
}

/// Whether one isolation mode can run the image, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mode {
    /// Whether it can.
    pub possible: bool,
    /// Why (or why not).
    pub reasons: Vec<Reason>,
}

impl Mode {
    fn yes(code: &str, message: String) -> Mode {
        Mode { possible: true, reasons: vec![Reason::new(code, message)] }
    }

    fn no(code: &str, message: String) -> Mode {
        Mode { possible: false, reasons: vec![Reason::new(code, message)] }
    }

    fn deny(&mut self, code: &str, message: String) {
        if self.possible {
            self.possible = false;
            self.reasons.clear();
        }
        self.reasons.push(Reason::new(code, message));
    }
}

/// The image's Windows release as the table knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseInfo {
    /// Build number.
    pub build: u32,
    /// Name (`ltsc2022`).
    pub name: String,
    /// Channel.
    pub channel: Channel,
    /// The base image, when the image is one of Microsoft's (`servercore`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    /// Last day of support of its container images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_of_support: Option<Date>,
}

/// The verdict for one host and one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The host judged.
    pub host: Host,
    /// The image judged.
    pub image: ImagePlatform,
    /// Process isolation.
    pub process: Mode,
    /// VM isolation.
    pub vm: Mode,
    /// What `--isolation auto` picks; `None` when nothing runs the image.
    pub auto: Option<Isolation>,
    /// Why `auto` picks it.
    pub auto_reasons: Vec<Reason>,
    /// Support warnings (out-of-support releases, unknown builds, images without `os.version`).
    pub warnings: Vec<Reason>,
    /// The image's Windows release, when it is one the table knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseInfo>,
}

fn image_desc(image: &ImagePlatform) -> String {
    let mut s = format!("{}/{}", image.os, arch::describe(&image.architecture, image.variant.as_deref()));
    if let Some(v) = &image.os_version {
        s.push(' ');
        s.push_str(v);
    }
    s
}

/// The advice for a Windows image on a host that cannot be Windows: which Windows host runs it.
fn windows_host_advice(version: Option<&OsVersion>) -> String {
    match version {
        None => "it states no os.version: a Windows host of its architecture runs it".to_string(),
        Some(v) => {
            let b = v.build;
            let process_hosts = if b < builds::LTSC2022 {
                format!("a Windows host of build {} runs it with process isolation", builds::describe(b))
            } else {
                let mut hosts: Vec<u32> = table::tables()
                    .releases
                    .iter()
                    .map(|r| r.build)
                    .filter(|&h| h >= b && windows::process_isolation_range(h).0 <= b)
                    .collect();
                hosts.dedup();
                let names: Vec<String> = hosts.iter().map(|&h| builds::describe(h)).collect();
                format!("Windows hosts of build {} run it with process isolation", names.join(", "))
            };
            format!("{}, and any Windows host of build {} or newer with Hyper-V isolation", process_hosts, b)
        }
    }
}

/// Decides, for `host` and an image of `image`'s platform, whether process isolation can run it,
/// whether VM isolation can, and which one `--isolation auto` uses, each with structured reasons;
/// `policy` is the isolation policy (see [`Policy::load_default`]) and `today` the date the lifecycle
/// warnings are judged on (normally [`Date::today`]).
///
/// This is the one call `hako compat` and `hako run --isolation auto` make: load the policy, build the
/// host ([`Host::this_linux`], or [`Host::windows`]), describe the image (its index entry's or config's
/// platform, plus the registry and repository it comes from), then run `decision.auto` when it is
/// `Some`, or fail with the reasons of `decision.process` and `decision.vm` when it is `None`. Print
/// `decision.warnings` either way. Pure: it reads nothing but the embedded tables.
pub fn decide(host: &Host, image: &ImagePlatform, policy: &Policy, today: Date) -> Decision {
    let mut warnings = Vec::new();
    let mut release = None;
    let host_os = host.os.to_ascii_lowercase();
    let image_os = image.os.to_ascii_lowercase();
    let host_arch = arch::describe(&host.architecture, host.variant.as_deref());

    // The image's Windows version, when it states one.
    let mut bad_version = None;
    let image_version = match (&image_os[..], &image.os_version) {
        ("windows", Some(text)) => match text.parse::<OsVersion>() {
            Ok(v) => Some(v),
            Err(e) => {
                bad_version = Some(e.to_string());
                None
            }
        },
        _ => None,
    };
    let base = match (&image.registry, &image.repository) {
        (Some(r), Some(p)) => table::base_image(&format!("{}/{}", r, p)),
        _ => None,
    };
    if let Some(v) = &image_version {
        release = lifecycle(v, base.map(|b| b.name.as_str()), today, &mut warnings);
    }
    if image_os == "windows" && image.os_version.is_none() {
        warnings.push(Reason::new(
            "no-os-version",
            "the image states no os.version: hako takes it as matching any Windows build (as containerd does); \
             a mismatch then shows only when the container starts"
                .to_string(),
        ));
    }

    if let (Some(h), Some(i)) = (host.os_version.filter(|_| host_os == "windows"), image_version.as_ref()) {
        known_issues(h.build, i.build, &mut warnings);
    }

    let arch_ok =
        arch::score((&image.architecture, image.variant.as_deref()), (&host.architecture, host.variant.as_deref()))
            .is_some();
    let (mut process, mut vm) = if let Some(e) = bad_version {
        let m = format!("{}: the image's os.version is malformed; rebuild or re-tag it with a valid os.version", e);
        (Mode::no("bad-os-version", m.clone()), Mode::no("bad-os-version", m))
    } else if !arch_ok {
        let m = format!(
            "the image is for {}, the host is {}: pick the {} image with --platform, or use a {} host",
            arch::describe(&image.architecture, image.variant.as_deref()),
            host_arch,
            host_arch,
            arch::describe(&image.architecture, image.variant.as_deref())
        );
        (Mode::no("arch-mismatch", m.clone()), Mode::no("arch-mismatch", m))
    } else {
        match (&host_os[..], &image_os[..]) {
            ("linux", "linux") => linux_on_linux(host),
            ("linux", "windows") => {
                let m = format!(
                    "a Windows image needs a Windows host, this host runs Linux: {}",
                    windows_host_advice(image_version.as_ref())
                );
                (Mode::no("windows-image-on-linux", m.clone()), Mode::no("windows-image-on-linux", m))
            }
            ("windows", "windows") => windows_on_windows(host, image, image_version.as_ref()),
            ("windows", "linux") => (
                Mode::no(
                    "linux-image-on-windows",
                    "a Linux image cannot share a Windows kernel: run it with VM isolation (LCOW)".to_string(),
                ),
                Mode::yes("lcow", "a Linux utility VM (LCOW) runs Linux images on Windows".to_string()),
            ),
            (h, i) => {
                let m = format!("hako runs {} images only on a {} host, and this host is {}", i, i, h);
                (Mode::no("os-mismatch", m.clone()), Mode::no("os-mismatch", m))
            }
        }
    };

    // The isolation policy.
    let origin = match (&image.registry, &image.repository) {
        (Some(r), Some(p)) => Some((r.as_str(), p.as_str())),
        _ => None,
    };
    let from = match origin {
        Some((r, p)) => format!("{}/{}", r, p),
        None => "an image of unknown origin".to_string(),
    };
    let policy_file = policy
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| crate::policy::DEFAULT_CONFIG_PATH.to_string());
    match policy.trusts(origin) {
        Trust::NoPolicy => {}
        Trust::Trusted(entry) => {
            if process.possible {
                process.reasons.push(Reason::new(
                    "policy-trusted",
                    format!(
                        "{} is trusted by the entry {:?} of isolation.trustedRegistries in {}",
                        from, entry, policy_file
                    ),
                ));
            }
        }
        Trust::Untrusted(Untrusted::Vm) => process.deny(
            "policy-untrusted",
            format!(
                "{} is not covered by isolation.trustedRegistries in {}, so it always gets VM isolation: \
                 add its registry or namespace there to allow process isolation",
                from, policy_file
            ),
        ),
        Trust::Untrusted(Untrusted::Refuse) => {
            let m = format!(
                "{} is not covered by isolation.trustedRegistries in {}, and isolation.untrusted is \"refuse\": \
                 add its registry or namespace there to run it",
                from, policy_file
            );
            process.deny("policy-refused", m.clone());
            vm.deny("policy-refused", m);
        }
    }

    let (auto, auto_reasons) = if process.possible {
        (
            Some(Isolation::Process),
            vec![Reason::new(
                "process-possible",
                "process isolation can run it, and it starts fastest and uses the least memory".to_string(),
            )],
        )
    } else if vm.possible {
        let mut r = vec![Reason::new(
            "process-impossible",
            "process isolation cannot run it (see process), VM isolation can".to_string(),
        )];
        r.extend(process.reasons.iter().cloned());
        (Some(Isolation::Vm), r)
    } else {
        let mut r = vec![Reason::new(
            "nothing-runs-it",
            format!("neither process nor VM isolation can run {} on this host", image_desc(image)),
        )];
        r.extend(vm.reasons.iter().cloned());
        (None, r)
    };
    Decision { host: host.clone(), image: image.clone(), process, vm, auto, auto_reasons, warnings, release }
}

fn linux_on_linux(host: &Host) -> (Mode, Mode) {
    let kernel = host.kernel.as_deref().unwrap_or("unknown");
    (
        Mode::yes(
            "same-os-and-arch",
            format!("a Linux image of the host's architecture runs on the host's kernel ({})", kernel),
        ),
        Mode::yes(
            "same-arch-vm",
            "a micro-VM of the host's architecture runs it on hako's guest kernel (needs QEMU and the VM assets: `hako info`)"
                .to_string(),
        ),
    )
}

fn windows_on_windows(host: &Host, image: &ImagePlatform, image_version: Option<&OsVersion>) -> (Mode, Mode) {
    let version = match host.os_version {
        Some(v) => v,
        None => {
            let m =
                "the Windows host's version is unknown: give it with --host-os-version 10.0.BUILD[.UBR]".to_string();
            return (Mode::no("host-version-unknown", m.clone()), Mode::no("host-version-unknown", m));
        }
    };
    let edition = host.edition.unwrap_or(Edition::Server);
    let info = HostInfo { version, is_client: edition == Edition::Client };
    let a = windows::assess(&info, image_version);
    let code = rule_code(a.rule);
    let (mut process, vm) = match a.verdict {
        Verdict::ProcessOk => {
            let why = match (a.rule, image_version) {
                (Rule::NoOsVersion, _) => "the image states no os.version, which matches any host build".to_string(),
                (Rule::SameBuild, Some(v)) => format!("the image's build {} is the host's", builds::describe(v.build)),
                (Rule::Windows11Ltsc2022, _) => format!(
                    "Windows 11 (host build {}) runs ltsc2022 images with process isolation (an exception to the same-build rule)",
                    builds::describe(version.build)
                ),
                (Rule::AnnualChannelLtsc2022, _) => {
                    "Windows Server 23H2 (Annual Channel) runs ltsc2022 images with process isolation".to_string()
                }
                (_, Some(v)) => {
                    let (lo, hi) = windows::process_isolation_range(version.build);
                    format!(
                        "host build {} runs images of builds {} to {} with process isolation, and the image is {}",
                        builds::describe(version.build),
                        lo,
                        hi,
                        builds::describe(v.build)
                    )
                }
                (_, None) => "the image matches".to_string(),
            };
            (
                Mode::yes(code, why),
                Mode::yes(
                    "hyperv-not-newer",
                    "Hyper-V isolation runs any image whose build is not newer than the host's".to_string(),
                ),
            )
        }
        Verdict::NeedsHyperV { reason } => (
            Mode::no(code, reason),
            Mode::yes(
                "hyperv-not-newer",
                "Hyper-V isolation runs any image whose build is not newer than the host's".to_string(),
            ),
        ),
        Verdict::CannotRun { reason } => (Mode::no(code, reason.clone()), Mode::no(code, reason)),
    };
    let needs_win32k = image.os_features.iter().any(|f| f.eq_ignore_ascii_case("win32k"));
    if needs_win32k && edition == Edition::NanoServer {
        process.deny(
            "win32k-missing",
            "the image needs win32k (os.features), which Nano Server hosts lack: use Hyper-V isolation, \
             a Server Core host, or a nanoserver-based image"
                .to_string(),
        );
    }
    (process, vm)
}

/// Known failures of combinations the rules allow (reference: top pain points, issue evidence).
fn known_issues(host_build: u32, image_build: u32, warnings: &mut Vec<Reason>) {
    if host_build == builds::V25H2_WIN11 && image_build == builds::LTSC2025 {
        warnings.push(Reason::new(
            "known-issue",
            "ltsc2025 images have failed on Windows 11 25H2 hosts with \"PrepareLayer ... unrecognized format \
             (0xc0370112)\" (microsoft/hcsshim#2566): if the container does not start, update the host or use Hyper-V isolation"
                .to_string(),
        ));
    }
    if (host_build == builds::V21H2_WIN11 || host_build == builds::V22H2_WIN11) && image_build == builds::LTSC2022 {
        warnings.push(Reason::new(
            "known-issue",
            "ltsc2022 images under process isolation have failed on some Windows 11 hosts with 0xc0370106 or \
             \"RPC failed\" (docker/for-win#14287, microsoft/Windows-Containers#525): if the container does not start, use Hyper-V isolation"
                .to_string(),
        ));
    }
}

fn rule_code(rule: Rule) -> &'static str {
    match rule {
        Rule::NoOsVersion => "no-os-version",
        Rule::MajorMinor => "major-minor",
        Rule::NewerImage => "newer-image",
        Rule::ClientBefore1809 => "client-before-1809",
        Rule::BuildMismatch => "build-mismatch",
        Rule::OutsideLtscRange => "outside-ltsc-range",
        Rule::Ltsc2016Revision => "ltsc2016-revision",
        Rule::SameBuild => "same-build",
        Rule::Windows11Ltsc2022 => "windows11-ltsc2022",
        Rule::AnnualChannelLtsc2022 => "annual-channel-ltsc2022",
        Rule::LtscPortability => "ltsc-portability",
    }
}

/// The image's release and its support warnings.
fn lifecycle(v: &OsVersion, base: Option<&str>, today: Date, warnings: &mut Vec<Reason>) -> Option<ReleaseInfo> {
    let r = match table::release(v.build) {
        Some(r) => r,
        None => {
            warnings.push(Reason::new(
                "unknown-build",
                format!(
                    "Windows build {} is not in hako's release table (crates/hako-platform/data/windows-builds.json): \
                     its support status is unknown",
                    v.build
                ),
            ));
            return None;
        }
    };
    let end = r.end_of_support(base);
    let label = format!("{} (build {})", r.name, r.build);
    let supported: Vec<&str> = table::tables()
        .releases
        .iter()
        .filter(|x| x.channel == Channel::Ltsc && matches!(x.end_of_support(base), Some(e) if e >= today))
        .map(|x| x.name.as_str())
        .collect();
    let fix = if supported.is_empty() {
        "rebuild it on a supported base image".to_string()
    } else {
        format!("rebuild it on a supported base image ({})", supported.join(", "))
    };
    match r.channel {
        Channel::Client | Channel::Annual => warnings.push(Reason::new(
            "no-base-images",
            format!(
                "{} is a {} release: Microsoft publishes no container base images for it; {}",
                label,
                r.channel.describe(),
                fix
            ),
        )),
        _ => {}
    }
    if let Some(end) = end {
        if end < today {
            warnings.push(Reason::new(
                "out-of-support",
                format!(
                    "the image's Windows release {} left support on {}: it gets no security updates; {}",
                    label, end, fix
                ),
            ));
        } else if let (Some(m), Some(_)) = (r.mainstream_end, r.extended_end) {
            let excepted = match base {
                Some(b) => r.image_exceptions.iter().any(|e| e.image == b),
                None => false,
            };
            if m < today && !excepted {
                warnings.push(Reason::new(
                    "extended-support",
                    format!(
                        "the image's Windows release {} left mainstream support on {} and gets security updates only until {}",
                        label, m, end
                    ),
                ));
            }
        }
    }
    Some(ReleaseInfo {
        build: r.build,
        name: r.name.clone(),
        channel: r.channel,
        base_image: base.map(str::to_string),
        end_of_support: end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn today() -> Date {
        Date::new(2026, 12, 7).unwrap()
    }

    fn win_host(build: u32, edition: Edition) -> Host {
        Host::windows(OsVersion::windows10(build, 0), "amd64", edition)
    }

    fn linux_host(arch: &str) -> Host {
        Host {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
            kernel: Some("6.1.0".into()),
            os_version: None,
            edition: None,
        }
    }

    fn win_image(version: &str, features: &[&str]) -> ImagePlatform {
        ImagePlatform {
            os: "windows".into(),
            architecture: "amd64".into(),
            os_version: Some(version.into()),
            os_features: features.iter().map(|f| f.to_string()).collect(),
            registry: Some("registry.example.com".into()),
            repository: Some("team/app".into()),
            ..ImagePlatform::default()
        }
    }

    fn linux_image(arch: &str) -> ImagePlatform {
        ImagePlatform {
            os: "linux".into(),
            architecture: arch.into(),
            registry: Some("localhost:5000".into()),
            repository: Some("team/app".into()),
            ..ImagePlatform::default()
        }
    }

    fn codes(m: &Mode) -> Vec<&str> {
        m.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    /// (host build, host edition, image os.version, image features) -> (process, vm, auto, process code).
    #[test]
    fn windows_rules_table() {
        use Edition::*;
        type Case = (u32, Edition, &'static str, &'static [&'static str], bool, bool, Option<Isolation>, &'static str);
        let cases: &[Case] = &[
            // Same build: process.
            (20348, Server, "10.0.20348.1487", &["win32k"], true, true, Some(Isolation::Process), "same-build"),
            (17763, Server, "10.0.17763.437", &[], true, true, Some(Isolation::Process), "same-build"),
            // A newer image on an older host: nothing.
            (17763, Server, "10.0.20348.1", &[], false, false, None, "newer-image"),
            (20348, Server, "10.0.26100.1", &[], false, false, None, "newer-image"),
            // An older image on a newer host: VM only.
            (20348, Server, "10.0.17763.1", &[], false, true, Some(Isolation::Vm), "outside-ltsc-range"),
            (17763, Server, "10.0.14393.1", &[], false, true, Some(Isolation::Vm), "build-mismatch"),
            (26100, Server, "10.0.17763.1", &[], false, true, Some(Isolation::Vm), "outside-ltsc-range"),
            // LTSC portability: ltsc2022 images on ltsc2025.
            (26100, Server, "10.0.20348.1", &[], true, true, Some(Isolation::Process), "ltsc-portability"),
            // Windows 11's exception for ltsc2022 images; 25H2 no longer has it.
            (22621, Client, "10.0.20348.1", &[], true, true, Some(Isolation::Process), "windows11-ltsc2022"),
            (22000, Client, "10.0.20348.1", &[], true, true, Some(Isolation::Process), "windows11-ltsc2022"),
            (26200, Client, "10.0.20348.1", &[], false, true, Some(Isolation::Vm), "outside-ltsc-range"),
            (22621, Client, "10.0.17763.1", &[], false, true, Some(Isolation::Vm), "outside-ltsc-range"),
            // Annual Channel 23H2 runs ltsc2022 images.
            (25398, Server, "10.0.20348.1", &[], true, true, Some(Isolation::Process), "annual-channel-ltsc2022"),
            // Old clients: Hyper-V only.
            (17134, Client, "10.0.17134.1", &[], false, true, Some(Isolation::Vm), "client-before-1809"),
            // win32k against Nano Server.
            (20348, NanoServer, "10.0.20348.1", &["win32k"], false, true, Some(Isolation::Vm), "win32k-missing"),
            (20348, NanoServer, "10.0.20348.1", &[], true, true, Some(Isolation::Process), "same-build"),
            // Malformed os.version.
            (20348, Server, "ltsc2022", &[], false, false, None, "bad-os-version"),
        ];
        for &(host, edition, version, features, process, vm, auto, code) in cases {
            let d = decide(&win_host(host, edition), &win_image(version, features), &Policy::default(), today());
            let what = format!("host {} {:?}, image {} {:?}: {:#?}", host, edition, version, features, d);
            assert_eq!(d.process.possible, process, "process: {}", what);
            assert_eq!(d.vm.possible, vm, "vm: {}", what);
            assert_eq!(d.auto, auto, "auto: {}", what);
            assert!(codes(&d.process).contains(&code), "code {}: {}", code, what);
            assert!(!d.auto_reasons.is_empty(), "{}", what);
        }
    }

    #[test]
    fn windows_11_known_issues_warn() {
        let d = decide(&win_host(26200, Edition::Client), &win_image("10.0.26100.1", &[]), &Policy::default(), today());
        assert!(d.process.possible);
        assert!(
            d.warnings.iter().any(|r| r.code == "known-issue" && r.message.contains("0xc0370112")),
            "{:?}",
            d.warnings
        );
        let d = decide(&win_host(22621, Edition::Client), &win_image("10.0.20348.1", &[]), &Policy::default(), today());
        assert!(
            d.warnings.iter().any(|r| r.code == "known-issue" && r.message.contains("0xc0370106")),
            "{:?}",
            d.warnings
        );
        let d = decide(&win_host(26100, Edition::Server), &win_image("10.0.26100.1", &[]), &Policy::default(), today());
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn a_newer_image_names_the_fix_and_an_older_one_the_vm() {
        let d = decide(&win_host(17763, Edition::Server), &win_image("10.0.20348.1", &[]), &Policy::default(), today());
        assert!(d.vm.reasons[0].message.contains("not even with Hyper-V"), "{:?}", d.vm);
        assert_eq!(d.auto_reasons[0].code, "nothing-runs-it");
        let d = decide(&win_host(20348, Edition::Server), &win_image("10.0.17763.1", &[]), &Policy::default(), today());
        assert_eq!(d.auto_reasons[0].code, "process-impossible");
        assert!(d.auto_reasons.iter().any(|r| r.message.contains("use Hyper-V isolation")), "{:?}", d.auto_reasons);
    }

    #[test]
    fn lifecycle_warnings_follow_the_date() {
        // ltsc2016 servercore: extended support ends 2027-01-11.
        let host = win_host(14393, Edition::Server);
        let img = win_image("10.0.14393.1", &[]);
        let before = decide(&host, &img, &Policy::default(), Date::new(2026, 12, 7).unwrap());
        let w: Vec<&str> = before.warnings.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(w, ["extended-support"], "{:?}", before.warnings);
        let after = decide(&host, &img, &Policy::default(), Date::new(2027, 1, 12).unwrap());
        let out = after.warnings.iter().find(|r| r.code == "out-of-support").expect("out-of-support warning");
        assert!(out.message.contains("ltsc2016 (build 14393) left support on 2027-01-11"), "{}", out.message);
        assert!(out.message.contains("ltsc2022") && !out.message.contains("ltsc2016,"), "{}", out.message);
        assert_eq!(after.release.as_ref().unwrap().end_of_support, "2027-01-11".parse().ok());
        // The last day is still supported.
        let last = decide(&host, &img, &Policy::default(), Date::new(2027, 1, 11).unwrap());
        assert!(last.warnings.iter().all(|r| r.code != "out-of-support"));
        // Nano Server 1607 left support in 2018.
        let mut nano = img;
        nano.registry = Some("mcr.microsoft.com".into());
        nano.repository = Some("windows/nanoserver".into());
        let d = decide(&host, &nano, &Policy::default(), today());
        assert!(
            d.warnings.iter().any(|r| r.code == "out-of-support" && r.message.contains("2018-10-09")),
            "{:?}",
            d.warnings
        );
        assert_eq!(d.release.unwrap().base_image.as_deref(), Some("nanoserver"));
        // SAC 1709, a supported LTSC, an unknown build and a missing os.version.
        let d = decide(&win_host(16299, Edition::Server), &win_image("10.0.16299.1", &[]), &Policy::default(), today());
        assert!(d.warnings.iter().any(|r| r.code == "out-of-support" && r.message.contains("2019-04-09")));
        let d = decide(&win_host(20348, Edition::Server), &win_image("10.0.20348.1", &[]), &Policy::default(), today());
        assert_eq!(d.warnings.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(), ["extended-support"]);
        let d = decide(&win_host(26100, Edition::Server), &win_image("10.0.26100.1", &[]), &Policy::default(), today());
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        let d = decide(&win_host(30000, Edition::Server), &win_image("10.0.29999.1", &[]), &Policy::default(), today());
        assert_eq!(d.warnings[0].code, "unknown-build");
        let mut none = win_image("10.0.20348.1", &[]);
        none.os_version = None;
        let d = decide(&win_host(20348, Edition::Server), &none, &Policy::default(), today());
        assert!(d.process.possible && d.warnings[0].code == "no-os-version", "{:?}", d);
    }

    #[test]
    fn linux_images_need_the_host_architecture() {
        let d = decide(&linux_host("amd64"), &linux_image("amd64"), &Policy::default(), today());
        assert!(d.process.possible && d.vm.possible);
        assert_eq!(d.auto, Some(Isolation::Process));
        assert!(d.process.reasons[0].message.contains("6.1.0"));
        let d = decide(&linux_host("amd64"), &linux_image("arm64"), &Policy::default(), today());
        assert!(!d.process.possible && !d.vm.possible && d.auto.is_none());
        assert_eq!(codes(&d.process), ["arch-mismatch"]);
        assert!(d.process.reasons[0].message.contains("the image is for arm64, the host is amd64"));
        let d = decide(&linux_host("x86_64"), &linux_image("amd64"), &Policy::default(), today());
        assert!(d.process.possible);
    }

    #[test]
    fn windows_images_on_linux_say_which_windows_host_runs_them() {
        let d = decide(&linux_host("amd64"), &win_image("10.0.20348.1487", &["win32k"]), &Policy::default(), today());
        assert!(!d.process.possible && !d.vm.possible && d.auto.is_none());
        let m = &d.process.reasons[0].message;
        assert!(m.contains("20348 (ltsc2022)") && m.contains("22621") && m.contains("26100"), "{}", m);
        assert!(!m.contains("26200 (Windows 11 25H2), and") && m.contains("20348 or newer with Hyper-V"), "{}", m);
        let d = decide(&linux_host("amd64"), &win_image("10.0.17763.1", &[]), &Policy::default(), today());
        assert!(d.process.reasons[0].message.contains("a Windows host of build 17763 (ltsc2019 (1809)) runs it"));
        // A Linux image on a Windows host: LCOW.
        let d = decide(&win_host(20348, Edition::Server), &linux_image("amd64"), &Policy::default(), today());
        assert!(!d.process.possible && d.vm.possible && d.auto == Some(Isolation::Vm));
    }

    #[test]
    fn untrusted_images_get_vm_isolation_or_are_refused() {
        let path = Path::new("/etc/hako/config.json");
        let vm = Policy::parse(path, r#"{"isolation": {"trustedRegistries": ["localhost:5000/team"]}}"#).unwrap();
        let mut img = linux_image("amd64");
        let d = decide(&linux_host("amd64"), &img, &vm, today());
        assert_eq!(d.auto, Some(Isolation::Process));
        assert!(codes(&d.process).contains(&"policy-trusted"));
        img.repository = Some("other/app".into());
        let d = decide(&linux_host("amd64"), &img, &vm, today());
        assert!(!d.process.possible && d.vm.possible);
        assert_eq!(d.auto, Some(Isolation::Vm));
        assert_eq!(codes(&d.process), ["policy-untrusted"]);
        assert!(d.process.reasons[0].message.contains("localhost:5000/other/app"));
        // Unknown origin is untrusted too.
        img.registry = None;
        assert_eq!(decide(&linux_host("amd64"), &img, &vm, today()).auto, Some(Isolation::Vm));
        let refuse = Policy::parse(path, r#"{"isolation": {"trustedRegistries": [], "untrusted": "refuse"}}"#).unwrap();
        let d = decide(&linux_host("amd64"), &img, &refuse, today());
        assert!(!d.process.possible && !d.vm.possible && d.auto.is_none());
        assert_eq!(codes(&d.vm), ["policy-refused"]);
        // A policy never makes an impossible mode possible.
        let d = decide(&win_host(17763, Edition::Server), &win_image("10.0.20348.1", &[]), &vm, today());
        assert!(!d.vm.possible && d.auto.is_none());
    }

    #[test]
    fn decisions_serialize_with_codes() {
        let d = decide(&win_host(20348, Edition::Server), &win_image("10.0.17763.1", &[]), &Policy::default(), today());
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["process"]["possible"], false);
        assert_eq!(v["vm"]["possible"], true);
        assert_eq!(v["auto"], "vm");
        assert_eq!(v["host"]["osVersion"], "10.0.20348.0");
        assert_eq!(v["release"]["name"], "ltsc2019");
        assert_eq!(v["release"]["channel"], "ltsc");
    }
}
