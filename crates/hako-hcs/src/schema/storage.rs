//! Container storage: `Storage{Layers, Path, QoS}`, `Layer`, `MappedDirectory`, `MappedPipe`.

use serde::{Deserialize, Serialize};

use super::is_default;

/// `Storage` of a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Storage {
    /// Read-only layers, topmost first, base layer last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
    /// The mounted scratch volume (`\\?\Volume{GUID}\`) or, in a utility VM, its guest path.
    #[serde(skip_serializing_if = "is_default")]
    pub path: String,
    /// Storage QoS limits.
    #[serde(rename = "QoS", skip_serializing_if = "Option::is_none")]
    pub qos: Option<StorageQos>,
    /// Root of a HostProcess container.
    #[serde(skip_serializing_if = "is_default")]
    pub privileged_container_root_path: String,
}

/// `Layer{Id, Path, PathType, Cache}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Layer {
    /// The layer GUID (vmcompute `NameToGuid` of the folder name).
    #[serde(skip_serializing_if = "is_default")]
    pub id: String,
    /// The layer folder (host path, or guest path in a utility VM).
    #[serde(skip_serializing_if = "is_default")]
    pub path: String,
    /// `AbsolutePath` or `VirtualSmbShareName`.
    #[serde(skip_serializing_if = "is_default")]
    pub path_type: String,
    /// Cache mode.
    #[serde(skip_serializing_if = "is_default")]
    pub cache: String,
}

/// `StorageQoS{IopsMaximum, BandwidthMaximum}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StorageQos {
    /// Maximum IO operations per second.
    #[serde(skip_serializing_if = "is_default")]
    pub iops_maximum: u64,
    /// Maximum bytes per second.
    #[serde(skip_serializing_if = "is_default")]
    pub bandwidth_maximum: u64,
}

/// `MappedDirectory{HostPath, HostPathType, ContainerPath, ReadOnly}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MappedDirectory {
    /// The host directory (or the VSMB path of it inside a utility VM).
    #[serde(skip_serializing_if = "is_default")]
    pub host_path: String,
    /// `AbsolutePath` or `VirtualSmbShareName`.
    #[serde(skip_serializing_if = "is_default")]
    pub host_path_type: String,
    /// The path inside the container.
    #[serde(skip_serializing_if = "is_default")]
    pub container_path: String,
    /// Map read-only.
    #[serde(skip_serializing_if = "is_default")]
    pub read_only: bool,
}

/// `MappedPipe{ContainerPipeName, HostPath, HostPathType}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MappedPipe {
    /// The pipe name inside the container, without `\\.\pipe\`.
    #[serde(skip_serializing_if = "is_default")]
    pub container_pipe_name: String,
    /// The host pipe path, `\\.\pipe\NAME`.
    #[serde(skip_serializing_if = "is_default")]
    pub host_path: String,
    /// `AbsolutePath` or `VirtualSmbPipeName`.
    #[serde(skip_serializing_if = "is_default")]
    pub host_path_type: String,
}
