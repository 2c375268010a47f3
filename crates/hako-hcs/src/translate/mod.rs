//! OCI bundle to HCS documents, for the three ways a container runs on Windows:
//!
//! - **process** isolation (Argon): one ComputeSystem with a `Container` (`wcow.rs`);
//! - **Hyper-V** isolation (Xenon): a utility VM ComputeSystem (`uvm_wcow.rs`), then the
//!   container as a `HostedSystem` inside it, with guest paths;
//! - **LCOW**: a Linux utility VM (`lcow.rs`) and the OCI spec forwarded to its GCS.
//!
//! The translation is pure: it reads no Windows state, so `hako hcs-doc` works on every host.
//! What depends on the host (build, processor count, layer ids, whether a folder exists) comes
//! in through [`TranslateOptions`]. Every rule of the runtime spec's Windows sections and of
//! hcsshim is checked here; a violation is a [`SpecError`] naming the field, the problem and
//! the fix.

pub mod annotations;
mod layerid;
mod lcow;
mod mounts;
pub(crate) mod paths;
mod plan;
mod process;
mod resources;
mod uvm_wcow;
mod wcow;

use std::fmt;

pub use layerid::{placeholder_layer_id, LayerIdFn};
pub use plan::{ContainerPlan, HcsPlan, HostSummary, InitProcess, ScratchCopy, UtilityVmPlan};
pub use process::{escape_arg, escape_args, StdioPipes};

use crate::compat::{self, HostInfo, Verdict};
use crate::oci::Bundle;
use crate::osversion::{builds, OsVersion};
use crate::schema::SchemaVersion;

use annotations::Annotations;

/// How a container is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A server silo on the host (Argon).
    Process,
    /// A Windows container in a utility VM (Xenon).
    Hyperv,
    /// A Linux container in a Linux utility VM.
    Lcow,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isolation::Process => "process",
            Isolation::Hyperv => "hyperv",
            Isolation::Lcow => "lcow",
        })
    }
}

impl std::str::FromStr for Isolation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "process" => Ok(Isolation::Process),
            "hyperv" | "hyper-v" | "vm" => Ok(Isolation::Hyperv),
            "lcow" => Ok(Isolation::Lcow),
            _ => Err(format!("isolation {:?} is not one of process, hyperv, lcow", s)),
        }
    }
}

/// The rule a [`SpecError`] enforces (for matching in tests and callers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `windows` is required.
    WindowsMissing,
    /// `windows.layerFolders` is required and well-formed.
    LayerFolders,
    /// `root` is required for process isolation.
    RootMissing,
    /// `root.path` must be a volume GUID path.
    RootNotVolumeGuid,
    /// `root.readonly` must be false.
    RootReadonly,
    /// `root` must not be set for Hyper-V isolation.
    RootWithHyperV,
    /// cpu count, shares and maximum are mutually exclusive.
    CpuExclusive,
    /// A cpu value is out of range.
    CpuRange,
    /// cpu affinity is not supported.
    CpuAffinity,
    /// A memory value is unusable.
    Memory,
    /// A storage value is unusable.
    Storage,
    /// networkNamespace excludes the other network members.
    NetworkExclusive,
    /// endpointList is HCS v1 only.
    NetworkEndpointList,
    /// networkNamespace must be a GUID.
    NetworkNamespace,
    /// A mount destination is not absolute.
    MountDestination,
    /// Mount destinations must not nest.
    MountNested,
    /// A mount source is unusable.
    MountSource,
    /// A mount type is not supported.
    MountType,
    /// A named-pipe mount is wrong.
    NamedPipe,
    /// The credential spec is unusable.
    CredentialSpec,
    /// A device is unusable.
    Device,
    /// An annotation is unusable.
    Annotation,
    /// The process is unusable.
    Process,
    /// The isolation asked for contradicts the spec.
    Isolation,
    /// The host build cannot run this.
    HostBuild,
    /// No utility VM image was found.
    UtilityVm,
    /// The image build cannot run on the host as asked.
    Compatibility,
    /// The container id is unusable.
    ContainerId,
}

/// A bundle that breaks a rule: `FIELD: PROBLEM: FIX`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}: {fix}")]
pub struct SpecError {
    /// The rule.
    pub rule: Rule,
    /// The config.json field, e.g. `windows.resources.cpu`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

impl SpecError {
    pub(crate) fn new(
        rule: Rule,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        SpecError { rule, field: field.into(), problem: problem.into(), fix: fix.into() }
    }
}

/// A file-system probe: does this Windows path exist? Used to find the utility VM image and the
/// LCOW kernel; `None` off Windows, where hako assumes the usual layout and says so.
pub type ProbeFn = fn(path: &str) -> bool;

/// What the translation needs to know about the host and the caller.
#[derive(Clone)]
pub struct TranslateOptions {
    /// The container id (the HCS id of the container's compute system).
    pub container_id: String,
    /// The HCS owner (hcsshim uses its executable name; runhcs `--owner`).
    pub owner: String,
    /// The host.
    pub host: HostInfo,
    /// Whether `host` was measured (false: assumed, e.g. on Linux).
    pub host_measured: bool,
    /// Logical processors of the host, when known (counts above it are lowered, as hcsshim does).
    pub host_processors: Option<u32>,
    /// Isolation asked for on the command line (`None`: what the spec says).
    pub isolation: Option<Isolation>,
    /// The image's `os.version`, when known (also read from the `hako.image.os.version` annotation).
    pub image_os_version: Option<OsVersion>,
    /// Layer folder name to layer GUID.
    pub layer_id: LayerIdFn,
    /// Whether `layer_id` is the real `NameToGuid` (false: stand-in ids, flagged in the output).
    pub layer_id_is_real: bool,
    /// Probe for Windows paths (`None` off Windows).
    pub probe: Option<ProbeFn>,
    /// Folder with the LCOW boot files when the annotation does not name one.
    pub lcow_boot_files: String,
    /// Which stdio pipes the init process gets.
    pub stdio: StdioPipes,
}

impl fmt::Debug for TranslateOptions {
    // By hand: rustc 1.63 has no Debug for higher-ranked fn pointers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TranslateOptions")
            .field("container_id", &self.container_id)
            .field("owner", &self.owner)
            .field("host", &self.host)
            .field("host_measured", &self.host_measured)
            .field("host_processors", &self.host_processors)
            .field("isolation", &self.isolation)
            .field("image_os_version", &self.image_os_version)
            .field("layer_id_is_real", &self.layer_id_is_real)
            .field("probe", &self.probe.is_some())
            .field("lcow_boot_files", &self.lcow_boot_files)
            .field("stdio", &self.stdio)
            .finish()
    }
}

/// The LCOW boot files folder of a default install (hcsshim looks here too).
pub const DEFAULT_LCOW_BOOT_FILES: &str = r"C:\Program Files\Linux Containers";

impl TranslateOptions {
    /// Options for a host of build `build`, everything else at its default: owner `hako`,
    /// stand-in layer ids, no probe.
    pub fn for_host_build(container_id: &str, build: u32) -> Self {
        TranslateOptions {
            container_id: container_id.to_string(),
            owner: "hako".to_string(),
            host: HostInfo { version: OsVersion::windows10(build, 0), is_client: false },
            host_measured: false,
            host_processors: None,
            isolation: None,
            image_os_version: None,
            layer_id: placeholder_layer_id,
            layer_id_is_real: false,
            probe: None,
            lcow_boot_files: DEFAULT_LCOW_BOOT_FILES.to_string(),
            stdio: StdioPipes::default(),
        }
    }
}

/// The process parameters of a Windows process (for `exec`): `commandLine` or the escaped
/// `args`, user, cwd, environment, console.
pub fn windows_process_parameters(
    process: &crate::oci::Process,
    stdio: StdioPipes,
) -> Result<crate::schema::ProcessParameters, SpecError> {
    process::windows_process(process, stdio)
}

/// The process parameters of a Linux process (for `exec`): stdio flags plus the OCI process.
pub fn linux_process_parameters(
    process: &crate::oci::Process,
    raw: Option<&serde_json::Value>,
    stdio: StdioPipes,
) -> Result<crate::schema::LcowProcessParameters, SpecError> {
    process::linux_process(process, raw, stdio)
}

/// Decides the isolation from the spec and the caller's wish.
fn decide_isolation(
    bundle: &Bundle,
    wish: Option<Isolation>,
    warnings: &mut Vec<String>,
) -> Result<Isolation, SpecError> {
    let spec = &bundle.spec;
    let hyperv_in_spec = spec.windows.as_ref().map_or(false, |w| w.hyperv.is_some());
    if spec.linux.is_some() {
        return match wish {
            None | Some(Isolation::Lcow) | Some(Isolation::Hyperv) => Ok(Isolation::Lcow),
            Some(Isolation::Process) => Err(SpecError::new(
                Rule::Isolation,
                "linux",
                "is set, which makes this a Linux container, and those always run in a utility VM",
                "drop the process isolation request (or the linux section for a Windows container)",
            )),
        };
    }
    match (wish, hyperv_in_spec) {
        (Some(Isolation::Lcow), _) => Err(SpecError::new(
            Rule::Isolation,
            "linux",
            "is missing, so this is a Windows container and cannot run as LCOW",
            "add a linux section for a Linux container, or ask for process or hyperv isolation",
        )),
        (Some(Isolation::Process), true) => Err(SpecError::new(
            Rule::Isolation,
            "windows.hyperv",
            "is set, and then the runtime spec requires Hyper-V isolation",
            "remove windows.hyperv from config.json to run with process isolation",
        )),
        (Some(Isolation::Hyperv), false) => {
            warnings.push(
                "Hyper-V isolation was asked for on the command line although windows.hyperv is not set".to_string(),
            );
            Ok(Isolation::Hyperv)
        }
        (_, true) => Ok(Isolation::Hyperv),
        (_, false) => Ok(Isolation::Process),
    }
}

fn check_container_id(id: &str) -> Result<(), SpecError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(
            Rule::ContainerId,
            "container id",
            format!("{:?} is empty, longer than 128 bytes or has characters other than letters, digits and -_.+", id),
            "choose an id such as web-1",
        ))
    }
}

/// Translates a bundle into the HCS documents hako would submit.
pub fn translate(bundle: &Bundle, opts: &TranslateOptions) -> Result<HcsPlan, SpecError> {
    check_container_id(&opts.container_id)?;
    let mut warnings = Vec::new();
    let schema = SchemaVersion::for_host_build(opts.host.version.build).map_err(|e| {
        SpecError::new(Rule::HostBuild, "host", e.to_string(), "run hako on Windows 10 1809 / Server 2019 or newer")
    })?;
    let ann = Annotations(&bundle.spec.annotations);
    if ann.bool(annotations::HOST_PROCESS_CONTAINER, false)? {
        return Err(SpecError::new(
            Rule::Annotation,
            format!("annotations[{:?}]", annotations::HOST_PROCESS_CONTAINER),
            "asks for a HostProcess (job object) container, which hako does not run",
            "remove the annotation, or run the pod with containerd and hcsshim",
        ));
    }
    for key in ann.unknown_microsoft() {
        warnings.push(format!("annotation {} is not honoured by hako and was ignored", key));
    }
    let isolation = decide_isolation(bundle, opts.isolation, &mut warnings)?;

    let image_version = match (&opts.image_os_version, ann.get(annotations::HAKO_IMAGE_OS_VERSION)) {
        (Some(v), _) => Some(*v),
        (None, Some(text)) => Some(text.parse::<OsVersion>().map_err(|e| {
            SpecError::new(
                Rule::Annotation,
                format!("annotations[{:?}]", annotations::HAKO_IMAGE_OS_VERSION),
                e.to_string(),
                "use the image's os.version, e.g. 10.0.20348.1487",
            )
        })?),
        (None, None) => None,
    };
    let verdict = match isolation {
        Isolation::Lcow => None,
        _ => image_version.map(|v| compat::check(&opts.host, Some(&v))),
    };

    let mut plan = match isolation {
        Isolation::Process => wcow::process_isolated(bundle, opts, schema, &mut warnings)?,
        Isolation::Hyperv => uvm_wcow::hyperv_isolated(bundle, opts, schema, &mut warnings)?,
        Isolation::Lcow => lcow::lcow(bundle, opts, schema, &mut warnings)?,
    };
    if !opts.layer_id_is_real && isolation != Isolation::Lcow {
        warnings.push(
            "layer ids are stand-ins (a v5 UUID of the folder name): on Windows hako uses vmcompute NameToGuid, \
             which gives different GUIDs"
                .to_string(),
        );
    }
    if !opts.host_measured {
        warnings.push(format!(
            "host assumed to be build {}: pass the real build to see what hako would send there",
            builds::describe(opts.host.version.build)
        ));
    }
    plan.image_os_version = image_version;
    plan.compatibility = verdict;
    plan.warnings.extend(warnings);
    Ok(plan)
}

impl HcsPlan {
    /// The checks to pass before anything is submitted: the image must be able to run with the
    /// chosen isolation on this host. A process-isolated image of the wrong build would fail
    /// in HCS with 0xc0370101; this says so first and names the fix.
    pub fn preflight(&self) -> Result<(), SpecError> {
        match (&self.compatibility, self.isolation) {
            (Some(Verdict::CannotRun { reason }), _) => {
                Err(SpecError::new(Rule::Compatibility, "image", reason.clone(), "pull an image built for this host"))
            }
            (Some(Verdict::NeedsHyperV { reason }), Isolation::Process) => Err(SpecError::new(
                Rule::Compatibility,
                "image",
                "cannot run with process isolation on this host",
                reason.clone(),
            )),
            _ => Ok(()),
        }
    }
}
