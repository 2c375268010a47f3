//! The `VirtualMachine` document of a utility VM: chipset (UEFI or Linux kernel direct boot),
//! compute topology (memory, processors), guest state and guest connection. Devices live in
//! `devices.rs`.

use serde::{Deserialize, Serialize};

use super::{is_default, Devices, RegistryChanges, SchemaVersion, StorageQos};

/// A utility VM: the `VirtualMachine` member of a ComputeSystem.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VirtualMachine {
    /// VM configuration version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<SchemaVersion>,
    /// Stop the VM when the guest resets.
    #[serde(skip_serializing_if = "is_default")]
    pub stop_on_reset: bool,
    /// Firmware and boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chipset: Option<Chipset>,
    /// Memory and processors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_topology: Option<Topology>,
    /// Virtual devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Devices>,
    /// Guest state files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_state: Option<GuestState>,
    /// Registry values set in the guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_changes: Option<RegistryChanges>,
    /// Storage QoS of the whole VM.
    #[serde(rename = "StorageQoS", skip_serializing_if = "Option::is_none")]
    pub storage_qos: Option<StorageQos>,
    /// How the host talks to the guest compute service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_connection: Option<GuestConnection>,
}

/// `Chipset`: UEFI boot or Linux kernel direct boot.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Chipset {
    /// UEFI firmware settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uefi: Option<Uefi>,
    /// Keep the RTC in UTC.
    #[serde(skip_serializing_if = "is_default")]
    pub use_utc: bool,
    /// Boot a Linux kernel directly (no firmware).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linux_kernel_direct: Option<LinuxKernelDirect>,
}

/// `Uefi` firmware settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Uefi {
    /// `Apply` or `Skip` the secure boot template.
    #[serde(skip_serializing_if = "is_default")]
    pub apply_secure_boot_template: String,
    /// The secure boot template GUID.
    #[serde(skip_serializing_if = "is_default")]
    pub secure_boot_template_id: String,
    /// The boot entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_this: Option<UefiBootEntry>,
    /// `Default`, `ComPort1`, ...
    #[serde(skip_serializing_if = "is_default")]
    pub console: String,
}

/// `UefiBootEntry{DeviceType, DevicePath, DiskNumber, OptionalData, VmbFsRootPath}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UefiBootEntry {
    /// `VmbFs`, `ScsiDrive`, `Network` or `Default`.
    #[serde(skip_serializing_if = "is_default")]
    pub device_type: String,
    /// The boot loader inside the device.
    #[serde(skip_serializing_if = "is_default")]
    pub device_path: String,
    /// The SCSI disk number.
    #[serde(skip_serializing_if = "is_default")]
    pub disk_number: u32,
    /// Arguments for the boot loader (the kernel command line for LCOW UEFI boot).
    #[serde(skip_serializing_if = "is_default")]
    pub optional_data: String,
    /// Host folder exposed as the VmbFs boot device.
    #[serde(skip_serializing_if = "is_default")]
    pub vmb_fs_root_path: String,
}

/// `LinuxKernelDirect{KernelFilePath, InitRdPath, KernelCmdLine}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LinuxKernelDirect {
    /// Host path of the uncompressed kernel (`vmlinux`).
    #[serde(skip_serializing_if = "is_default")]
    pub kernel_file_path: String,
    /// Host path of the initrd.
    #[serde(skip_serializing_if = "is_default")]
    pub init_rd_path: String,
    /// The kernel command line.
    #[serde(skip_serializing_if = "is_default")]
    pub kernel_cmd_line: String,
}

/// `ComputeTopology{Memory, Processor}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Topology {
    /// VM memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<VirtualMachineMemory>,
    /// VM processors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor: Option<VirtualMachineProcessor>,
}

/// `MemoryBackingType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemoryBackingType {
    /// Physically backed.
    Physical,
    /// Virtually backed (overcommit).
    Virtual,
    /// Both.
    Hybrid,
}

/// `VirtualMachineMemory`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VirtualMachineMemory {
    /// Memory in MiB (hcsshim aligns it up to an even number).
    #[serde(rename = "SizeInMB", skip_serializing_if = "is_default")]
    pub size_in_mb: u64,
    /// Backing type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing: Option<MemoryBackingType>,
    /// Virtually backed memory that may be overcommitted.
    #[serde(skip_serializing_if = "is_default")]
    pub allow_overcommit: bool,
    /// Hot hints (hcsshim sets it with AllowOvercommit for WCOW).
    #[serde(skip_serializing_if = "is_default")]
    pub enable_hot_hint: bool,
    /// Cold hints.
    #[serde(skip_serializing_if = "is_default")]
    pub enable_cold_hint: bool,
    /// Cold discard hints.
    #[serde(skip_serializing_if = "is_default")]
    pub enable_cold_discard_hint: bool,
    /// Commit memory lazily.
    #[serde(skip_serializing_if = "is_default")]
    pub enable_deferred_commit: bool,
    /// Low MMIO gap in MiB.
    #[serde(rename = "LowMmioGapInMB", skip_serializing_if = "is_default")]
    pub low_mmio_gap_in_mb: u64,
    /// High MMIO base in MiB.
    #[serde(rename = "HighMmioBaseInMB", skip_serializing_if = "is_default")]
    pub high_mmio_base_in_mb: u64,
    /// High MMIO gap in MiB.
    #[serde(rename = "HighMmioGapInMB", skip_serializing_if = "is_default")]
    pub high_mmio_gap_in_mb: u64,
}

/// `VirtualMachineProcessor{Count, Limit, Weight, Reservation, CpuGroup}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VirtualMachineProcessor {
    /// Virtual processors.
    #[serde(skip_serializing_if = "is_default")]
    pub count: u32,
    /// Limit, out of 100,000.
    #[serde(skip_serializing_if = "is_default")]
    pub limit: u64,
    /// Weight.
    #[serde(skip_serializing_if = "is_default")]
    pub weight: u64,
    /// Reservation.
    #[serde(skip_serializing_if = "is_default")]
    pub reservation: u64,
    /// CPU group `{Id}`; kept opaque.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_group: Option<serde_json::Value>,
}

/// `GuestState{GuestStateFilePath, GuestStateFileType, RuntimeStateFilePath, ForceTransientState}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GuestState {
    /// The .vmgs file.
    #[serde(skip_serializing_if = "is_default")]
    pub guest_state_file_path: String,
    /// `FileMode` or `BlockStorage`.
    #[serde(skip_serializing_if = "is_default")]
    pub guest_state_file_type: String,
    /// The .vmrs file.
    #[serde(skip_serializing_if = "is_default")]
    pub runtime_state_file_path: String,
    /// Do not persist state.
    #[serde(skip_serializing_if = "is_default")]
    pub force_transient_state: bool,
}

/// `GuestConnection{UseVsock, UseConnectedSuspend}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GuestConnection {
    /// Use vsock instead of HvSocket for the guest connection.
    #[serde(skip_serializing_if = "is_default")]
    pub use_vsock: bool,
    /// Keep the connection across suspend.
    #[serde(skip_serializing_if = "is_default")]
    pub use_connected_suspend: bool,
}
