//! The `Container` document of a Windows container and its parts: GuestOs, Processor, Memory,
//! Networking, HvSocket, credential guard, assigned devices (hcsshim `schema2/container.go`).
//! Storage and mapped directories/pipes live in `storage.rs`, registry changes in `registry.rs`.

use serde::{Deserialize, Serialize};

use super::{is_default, HvSocketSystemConfig, MappedDirectory, MappedPipe, RegistryChanges, Storage};

/// A Windows container: the `Container` member of a ComputeSystem or HostedSystem.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Container {
    /// Guest OS settings (host name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_os: Option<GuestOs>,
    /// Layers, scratch volume and storage QoS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// Host directories mapped into the container (OCI mounts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mapped_directories: Vec<MappedDirectory>,
    /// Host named pipes mapped into the container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mapped_pipes: Vec<MappedPipe>,
    /// Job-object memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<ContainerMemory>,
    /// Job-object CPU count, limit or weight (mutually exclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor: Option<ContainerProcessor>,
    /// Network namespace and DNS settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networking: Option<Networking>,
    /// Hyper-V socket settings of the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hv_socket: Option<HvSocket>,
    /// gMSA (Container Credential Guard) instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_credential_guard: Option<ContainerCredentialGuardState>,
    /// Registry values set in the container at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_changes: Option<RegistryChanges>,
    /// Devices assigned to the container (OCI `windows.devices`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assigned_devices: Vec<Device>,
    /// Additional device namespace (device extensions); kept opaque.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_device_namespace: Option<serde_json::Value>,
    /// `HostProcess` for job-object containers; empty otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation_type: Option<IsolationType>,
}

/// `Container.IsolationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IsolationType {
    /// A HostProcess (job object) container.
    HostProcess,
}

/// `GuestOs{HostName}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GuestOs {
    /// The container's host name (OCI `hostname`).
    #[serde(skip_serializing_if = "is_default")]
    pub host_name: String,
}

/// `Processor{Count, Maximum, Weight}` of a container; at most one is non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerProcessor {
    /// Number of processors.
    #[serde(skip_serializing_if = "is_default")]
    pub count: u32,
    /// CPU cycles per 10,000 (1-10000).
    #[serde(skip_serializing_if = "is_default")]
    pub maximum: u32,
    /// Relative weight (1-10000).
    #[serde(skip_serializing_if = "is_default")]
    pub weight: u32,
}

/// `Memory{SizeInMB}` of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerMemory {
    /// Limit in MiB.
    #[serde(rename = "SizeInMB", skip_serializing_if = "is_default")]
    pub size_in_mb: u64,
}

/// `Networking` of a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Networking {
    /// Allow DNS queries for unqualified names.
    #[serde(skip_serializing_if = "is_default")]
    pub allow_unqualified_dns_query: bool,
    /// DNS suffixes, comma-joined.
    #[serde(skip_serializing_if = "is_default")]
    pub dns_search_list: String,
    /// Share the network stack of this container.
    #[serde(skip_serializing_if = "is_default")]
    pub network_shared_container_name: String,
    /// The HNS namespace GUID.
    #[serde(skip_serializing_if = "is_default")]
    pub namespace: String,
    /// Network adapter ids (HNS endpoints).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_adapters: Vec<String>,
}

/// `HvSocket` of a container (the container's HvSocket configuration).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HvSocket {
    /// Security descriptors and service table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<HvSocketSystemConfig>,
    /// Enable PowerShell Direct.
    #[serde(skip_serializing_if = "is_default")]
    pub enable_power_shell_direct: bool,
}

/// `ContainerCredentialGuardState`: the gMSA instance the container uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerCredentialGuardState {
    /// The instance cookie returned when the CCG instance was added.
    #[serde(skip_serializing_if = "is_default")]
    pub cookie: String,
    /// RPC endpoint of the instance.
    #[serde(skip_serializing_if = "is_default")]
    pub rpc_endpoint: String,
    /// `LRPC` or `HvSocket`.
    #[serde(skip_serializing_if = "is_default")]
    pub transport: String,
    /// The credential spec JSON (OCI `windows.credentialSpec`).
    #[serde(skip_serializing_if = "is_default")]
    pub credential_spec: String,
}

/// `Device.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceType {
    /// A device interface class GUID.
    #[serde(rename = "ClassGuid")]
    ClassGuid,
    /// A device instance location path.
    #[serde(rename = "DeviceInstance")]
    DeviceInstance,
    /// A GPU mirror.
    #[serde(rename = "GpuMirror")]
    GpuMirror,
}

/// An assigned device of a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Device {
    /// The kind of id; hcsshim leaves it empty for class GUIDs.
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub device_type: Option<DeviceType>,
    /// The device interface class GUID.
    #[serde(skip_serializing_if = "is_default")]
    pub interface_class_guid: String,
    /// The device instance location path.
    #[serde(skip_serializing_if = "is_default")]
    pub location_path: String,
}
