//! `ComputeSystem`, the document given to `HcsCreateComputeSystem`, and `HostedSystem`, the
//! container document for a container inside a utility VM.
//!
//! A ComputeSystem carries exactly one of `Container` (process isolation), `VirtualMachine` (a
//! utility VM) or `HostedSystem` plus `HostingSystemId` (a container in that VM); HCS rejects
//! more than one (`HcsCreateComputeSystem.md`).

use serde::{Deserialize, Serialize};

use super::{is_default, Container, LinuxHostedSystem, SchemaVersion, VirtualMachine};

/// The top-level document of `HcsCreateComputeSystem`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ComputeSystem {
    /// The owner shown by HCS (hcsshim uses its executable name; runhcs `--owner`).
    #[serde(skip_serializing_if = "is_default")]
    pub owner: String,
    /// The schema version of this document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<SchemaVersion>,
    /// The utility VM that hosts `hosted_system`.
    #[serde(skip_serializing_if = "is_default")]
    pub hosting_system_id: String,
    /// The container to create inside `hosting_system_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosted_system: Option<HostedSystemDocument>,
    /// A process-isolated container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// A utility VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_machine: Option<VirtualMachine>,
    /// Terminate the system when its last `HCS_SYSTEM` handle is closed.
    #[serde(skip_serializing_if = "is_default")]
    pub should_terminate_on_last_handle_closed: bool,
}

impl ComputeSystem {
    /// Which of the mutually exclusive payloads are set, for the "exactly one" check.
    pub fn payload_count(&self) -> usize {
        usize::from(self.container.is_some())
            + usize::from(self.virtual_machine.is_some())
            + usize::from(self.hosted_system.is_some())
    }
}

/// A Windows container inside a utility VM (`HostedSystem{SchemaVersion, Container}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostedSystem {
    /// The schema version of the hosted document (2.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<SchemaVersion>,
    /// The container, with guest paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
}

/// The `HostedSystem` member: a Windows container (WCOW Hyper-V) or a Linux container (LCOW,
/// the OCI spec forwarded to the guest). HCS types it as "any".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HostedSystemDocument {
    /// LCOW: `{SchemaVersion, OciBundlePath, OciSpecification, ScratchDirPath}`.
    Linux(LinuxHostedSystem),
    /// WCOW Hyper-V: `{SchemaVersion, Container}`.
    Windows(Box<HostedSystem>),
}
