//! Guest requests: modifications forwarded to the guest compute service (GCS) inside a utility
//! VM through `ModifySettingRequest.GuestRequest` (hcsshim `internal/protocol/guestresource`).
//! hako uses them to mount the container scratch and layers in the guest and combine them.

use serde::{Deserialize, Serialize};

use super::{is_default, Layer, ModifyRequestType};

/// `{ResourceType, RequestType, Settings}` sent as `GuestRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GuestModificationRequest {
    /// `MappedVirtualDisk`, `CombinedLayers`, `MappedDirectory`, ...
    pub resource_type: String,
    /// `Add`, `Remove`, ...
    pub request_type: ModifyRequestType,
    /// The resource.
    pub settings: serde_json::Value,
}

/// `WCOWMappedVirtualDisk{ContainerPath, Lun}`: mount a SCSI disk (controller 0) in a Windows guest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WcowMappedVirtualDisk {
    /// Where the volume is mounted in the guest.
    #[serde(skip_serializing_if = "is_default")]
    pub container_path: String,
    /// The LUN on controller 0.
    #[serde(skip_serializing_if = "is_default")]
    pub lun: u32,
}

/// `WCOWCombinedLayers{ContainerRootPath, Layers, ScratchPath}`: set up the layer filter in a
/// Windows guest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WcowCombinedLayers {
    /// The container root (the mounted scratch).
    #[serde(skip_serializing_if = "is_default")]
    pub container_root_path: String,
    /// The read-only layers as guest paths.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
    /// The scratch path, when it differs from the root.
    #[serde(skip_serializing_if = "is_default")]
    pub scratch_path: String,
}

/// `LCOWMappedVirtualDisk`: mount a SCSI disk in a Linux guest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LcowMappedVirtualDisk {
    /// The guest mount point.
    #[serde(skip_serializing_if = "is_default")]
    pub mount_path: String,
    /// The LUN.
    #[serde(skip_serializing_if = "is_default")]
    pub lun: u32,
    /// The controller index.
    #[serde(skip_serializing_if = "is_default")]
    pub controller: u32,
    /// Mount read-only.
    #[serde(skip_serializing_if = "is_default")]
    pub read_only: bool,
}

/// `LCOWMappedDirectory{MountPath, Port, ShareName, ReadOnly}`: mount a Plan 9 share in a Linux guest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LcowMappedDirectory {
    /// The guest mount point.
    #[serde(skip_serializing_if = "is_default")]
    pub mount_path: String,
    /// The vsock port of the Plan 9 server (564).
    #[serde(skip_serializing_if = "is_default")]
    pub port: u32,
    /// The share name (aname).
    #[serde(skip_serializing_if = "is_default")]
    pub share_name: String,
    /// Mount read-only.
    #[serde(skip_serializing_if = "is_default")]
    pub read_only: bool,
}

/// `LCOWCombinedLayers{ContainerID, ContainerRootPath, Layers, ScratchPath}`: overlay the
/// layers in a Linux guest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LcowCombinedLayers {
    /// The container id.
    #[serde(rename = "ContainerID", skip_serializing_if = "is_default")]
    pub container_id: String,
    /// The overlay mount point (the container rootfs).
    #[serde(rename = "ContainerRootPath", skip_serializing_if = "is_default")]
    pub container_root_path: String,
    /// The read-only layers as guest paths.
    #[serde(rename = "Layers", skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
    /// upper and work directories live here.
    #[serde(rename = "ScratchPath", skip_serializing_if = "is_default")]
    pub scratch_path: String,
}
