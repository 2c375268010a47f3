//! `PropertyQuery`, the query of `HcsGetComputeSystemProperties`, and the subset of the
//! `Properties` answer hako reads (state, process list).

use serde::{Deserialize, Serialize};

use super::is_default;

/// A property type to query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PropertyType {
    /// Memory information.
    Memory,
    /// Guest memory.
    GuestMemory,
    /// Statistics (CPU, memory, storage).
    Statistics,
    /// Processes in the system.
    ProcessList,
    /// Whether the system terminates on last handle close.
    TerminateOnLastHandleClosed,
    /// Shared memory regions.
    SharedMemoryRegion,
    /// Credential guard state.
    ContainerCredentialGuard,
    /// Guest connection information.
    GuestConnection,
    /// Integration component heartbeat.
    #[serde(rename = "ICHeartbeatStatus")]
    IcHeartbeatStatus,
    /// Processor topology of the host.
    ProcessorTopology,
    /// CPU group.
    CpuGroup,
    /// The system GUID.
    #[serde(rename = "SystemGUID")]
    SystemGuid,
}

/// `PropertyQuery{PropertyTypes, Queries}`; `Queries` arrived in 2.5.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PropertyQuery {
    /// What to return.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub property_types: Vec<PropertyType>,
    /// Per-type queries (schema 2.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queries: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The part of the `Properties` answer hako reads; unknown members are ignored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Properties {
    /// The system id.
    #[serde(skip_serializing_if = "is_default")]
    pub id: String,
    /// `Container` or `VirtualMachine`.
    #[serde(skip_serializing_if = "is_default")]
    pub system_type: String,
    /// `windows` or `linux`.
    #[serde(skip_serializing_if = "is_default")]
    pub runtime_os_type: String,
    /// The owner.
    #[serde(skip_serializing_if = "is_default")]
    pub owner: String,
    /// `Created`, `Running`, `Paused`, `Stopped`, ...
    #[serde(skip_serializing_if = "is_default")]
    pub state: String,
    /// Whether the system stopped.
    #[serde(skip_serializing_if = "is_default")]
    pub stopped: bool,
    /// How it stopped.
    #[serde(skip_serializing_if = "is_default")]
    pub exit_type: String,
    /// The processes (when `ProcessList` was asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub process_list: Vec<ProcessDetails>,
    /// The hosting utility VM.
    #[serde(skip_serializing_if = "is_default")]
    pub hosting_system_id: String,
}

/// One process of `Properties.ProcessList`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProcessDetails {
    /// The process id.
    #[serde(skip_serializing_if = "is_default")]
    pub process_id: u32,
    /// The image name.
    #[serde(skip_serializing_if = "is_default")]
    pub image_name: String,
    /// Creation time (RFC 3339).
    #[serde(skip_serializing_if = "is_default")]
    pub create_timestamp: String,
    /// User time in 100 ns units.
    #[serde(rename = "UserTime100ns", skip_serializing_if = "is_default")]
    pub user_time_100ns: u64,
    /// Kernel time in 100 ns units.
    #[serde(rename = "KernelTime100ns", skip_serializing_if = "is_default")]
    pub kernel_time_100ns: u64,
    /// Committed bytes.
    #[serde(skip_serializing_if = "is_default")]
    pub memory_commit_bytes: u64,
}
