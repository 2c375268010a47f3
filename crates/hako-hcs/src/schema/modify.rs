//! `ModifySettingRequest`, the document of `HcsModifyComputeSystem`, and the resource paths it
//! addresses (hcsshim `internal/hcs/resourcepaths`).

use serde::{Deserialize, Serialize};

use super::is_default;

/// `RequestType` of a modify request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModifyRequestType {
    /// Add a resource.
    Add,
    /// Remove a resource.
    Remove,
    /// Update a resource.
    Update,
    /// Pre-add (networking).
    PreAdd,
}

/// `ModifySettingRequest{ResourcePath, RequestType, Settings, GuestRequest}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ModifySettingRequest {
    /// What to modify, e.g. `Container/Memory/SizeInMB`.
    #[serde(skip_serializing_if = "is_default")]
    pub resource_path: String,
    /// How.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_type: Option<ModifyRequestType>,
    /// The new settings (any schema type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    /// A request forwarded to the guest compute service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_request: Option<serde_json::Value>,
}

/// Resource paths of `ModifySettingRequest.ResourcePath`.
pub mod resource_paths {
    /// Mapped directories of a process-isolated container.
    pub const CONTAINER_MAPPED_DIRECTORIES: &str = "Container/MappedDirectories";
    /// Mapped pipes of a process-isolated container.
    pub const CONTAINER_MAPPED_PIPES: &str = "Container/MappedPipes";
    /// Memory limit of a process-isolated container.
    pub const CONTAINER_MEMORY_SIZE: &str = "Container/Memory/SizeInMB";
    /// Processor settings of a process-isolated container.
    pub const CONTAINER_PROCESSOR: &str = "Container/Processor";
    /// VSMB shares of a utility VM.
    pub const VSMB_SHARES: &str = "VirtualMachine/Devices/VirtualSmb/Shares";
    /// Memory of a utility VM.
    pub const VM_MEMORY_SIZE: &str = "VirtualMachine/ComputeTopology/Memory/SizeInMB";

    /// A SCSI attachment of a utility VM: `VirtualMachine/Devices/Scsi/<controller>/Attachments/<lun>`.
    pub fn scsi_attachment(controller: &str, lun: u32) -> String {
        format!("VirtualMachine/Devices/Scsi/{}/Attachments/{}", controller, lun)
    }

    /// A network adapter of a utility VM: `VirtualMachine/Devices/NetworkAdapters/<id>`.
    pub fn network_adapter(id: &str) -> String {
        format!("VirtualMachine/Devices/NetworkAdapters/{}", id)
    }
}
