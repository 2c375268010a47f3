//! The result of a translation: the compute systems to create, in order, with their documents,
//! the guest requests and file preparations a utility VM needs, the init process, the
//! compatibility verdict and warnings. This is what `hako hcs-doc --format json` prints and
//! what the Windows backend executes.

use serde::Serialize;

use crate::compat::Verdict;
use crate::osversion::OsVersion;
use crate::schema::{ComputeSystem, LcowProcessParameters, ModifySettingRequest, ProcessParameters, SchemaVersion};

use super::Isolation;

/// Everything hako would submit for one container.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HcsPlan {
    /// How the container is isolated.
    pub isolation: Isolation,
    /// The schema version of every document.
    pub schema_version: SchemaVersion,
    /// The host the documents are for.
    pub host: HostSummary,
    /// The utility VM, created and started first (Hyper-V and LCOW).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utility_vm: Option<UtilityVmPlan>,
    /// The container's compute system.
    pub container: ContainerPlan,
    /// The init process, created at `start`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<InitProcess>,
    /// The image's `os.version`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_os_version: Option<OsVersion>,
    /// What the compatibility engine says about image and host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<Verdict>,
    /// Things the user should know: assumptions, ignored settings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The host the plan was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostSummary {
    /// The build number.
    pub build: u32,
    /// The UBR.
    pub revision: u32,
    /// False when assumed rather than read from the host.
    pub measured: bool,
}

/// A utility VM and what it needs before and after it starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UtilityVmPlan {
    /// Its compute system id (`<container id>@vm`).
    pub id: String,
    /// Its document (`VirtualMachine`).
    pub document: ComputeSystem,
    /// Files the VM must be granted access to (`HcsGrantVmAccess`) before it is created.
    pub grant_vm_access: Vec<String>,
    /// The VM's scratch disk, copied from the image's template when it does not exist yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch_from_template: Option<ScratchCopy>,
    /// Requests to the guest compute service once the VM runs, in order (`HcsModifyComputeSystem`).
    pub guest_requests: Vec<ModifySettingRequest>,
}

/// A disk copied from a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScratchCopy {
    /// The template (`<UtilityVM>\SystemTemplate.vhdx`).
    pub template: String,
    /// The copy the VM boots with.
    pub path: String,
}

/// The container's compute system.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPlan {
    /// Its compute system id.
    pub id: String,
    /// Its document (`Container`, or `HostingSystemId` + `HostedSystem`).
    pub document: ComputeSystem,
}

/// The init process's parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum InitProcess {
    /// A Windows process.
    Windows(ProcessParameters),
    /// A Linux process (OCI process forwarded).
    Linux(LcowProcessParameters),
}
