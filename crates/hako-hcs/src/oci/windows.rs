//! The runtime spec's `windows` object (`config-windows.md`): layer folders, Hyper-V,
//! resources, network, credential spec, devices.

use serde::{Deserialize, Serialize};

/// `windows`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Windows {
    /// Layer folders, topmost layer first, base layer next to last, the scratch last.
    pub layer_folders: Vec<String>,
    /// Devices to assign.
    pub devices: Vec<WindowsDevice>,
    /// Resource limits.
    pub resources: Option<WindowsResources>,
    /// The gMSA credential spec (implementation-defined; a JSON string for hcsshim).
    pub credential_spec: Option<serde_json::Value>,
    /// A servicing container.
    pub servicing: bool,
    /// Ignore flushes on the scratch during boot.
    pub ignore_flushes_during_boot: bool,
    /// Present: run with Hyper-V isolation.
    pub hyperv: Option<HyperV>,
    /// Networking.
    pub network: Option<WindowsNetwork>,
}

/// `windows.devices[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WindowsDevice {
    /// The device id.
    pub id: String,
    /// `class` (a device interface class GUID); hcsshim also knows `vpci-location-path`
    /// and the legacy `vpci-class-guid`.
    pub id_type: String,
}

/// `windows.hyperv`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HyperV {
    /// The folder holding the utility VM image; searched in the layers when absent.
    #[serde(rename = "utilityVMPath")]
    pub utility_vm_path: String,
}

/// `windows.resources`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowsResources {
    /// Memory.
    pub memory: Option<WindowsMemoryResources>,
    /// CPU.
    pub cpu: Option<WindowsCpuResources>,
    /// Storage.
    pub storage: Option<WindowsStorageResources>,
}

/// `windows.resources.memory`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowsMemoryResources {
    /// Limit in bytes.
    pub limit: Option<u64>,
}

/// `windows.resources.cpu`: count, shares and maximum are mutually exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowsCpuResources {
    /// Number of CPUs.
    pub count: Option<u64>,
    /// Relative weight, 0-10000.
    pub shares: Option<u16>,
    /// Cycles per 10,000, 1-10000.
    pub maximum: Option<u16>,
    /// Processor affinity (added to the spec 2024-06).
    pub affinity: Vec<WindowsCpuAffinity>,
}

/// `windows.resources.cpu.affinity[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowsCpuAffinity {
    /// The processor mask.
    pub mask: u64,
    /// The processor group.
    pub group: u32,
}

/// `windows.resources.storage`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WindowsStorageResources {
    /// Maximum IO operations per second.
    pub iops: Option<u64>,
    /// Maximum bytes per second.
    pub bps: Option<u64>,
    /// Minimum scratch size in bytes.
    pub sandbox_size: Option<u64>,
}

/// `windows.network`. With `networkNamespace` set no other member may be.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowsNetwork {
    /// HNS endpoint ids (HCS v1 only).
    #[serde(rename = "endpointList")]
    pub endpoint_list: Vec<String>,
    /// Allow unqualified DNS names.
    #[serde(rename = "allowUnqualifiedDNSQuery")]
    pub allow_unqualified_dns_query: bool,
    /// DNS suffixes.
    #[serde(rename = "DNSSearchList")]
    pub dns_search_list: Vec<String>,
    /// Share the network of this container.
    #[serde(rename = "networkSharedContainerName")]
    pub network_shared_container_name: String,
    /// The HNS namespace GUID.
    #[serde(rename = "networkNamespace")]
    pub network_namespace: String,
}
