//! Typed HCS schema v2 documents: everything hako sends to or reads from the Host Compute Service.
//!
//! One file per concern; field names are PascalCase on the wire and every optional field is
//! skipped when empty, like hcsshim's `internal/hcs/schema2` Go structs (`omitempty`). Nothing
//! here talks to HCS: the documents are plain serde types, usable on every host (`hako hcs-doc`).

mod ccg;
mod compute_system;
mod container;
mod devices;
mod guest;
mod lcow;
mod modify;
mod process;
mod query;
mod registry;
mod result;
mod storage;
mod version;
mod virtual_machine;

pub use ccg::{
    CcgInstance, CcgInstanceRequest, CcgOperationRequest, CcgSystemInfo, ServiceModificationRequest, ServiceProperties,
};
pub use compute_system::{ComputeSystem, HostedSystem, HostedSystemDocument};
pub use container::{
    Container, ContainerCredentialGuardState, ContainerMemory, ContainerProcessor, Device, DeviceType, GuestOs,
    HvSocket, IsolationType, Networking,
};
pub use devices::{
    Attachment, AttachmentType, ComPort, Devices, HvSocket2, HvSocketServiceConfig, HvSocketSystemConfig,
    NetworkAdapter, Plan9, Plan9Share, Scsi, VirtualPMemController, VirtualPMemDevice, VirtualSmb, VirtualSmbShare,
    VirtualSmbShareOptions, SCSI_CONTROLLER_GUIDS,
};
pub use guest::{
    GuestModificationRequest, LcowCombinedLayers, LcowMappedDirectory, LcowMappedVirtualDisk, WcowCombinedLayers,
    WcowMappedVirtualDisk,
};
pub use lcow::{LcowProcessParameters, LinuxHostedSystem};
pub use modify::{resource_paths, ModifyRequestType, ModifySettingRequest};
pub use process::{
    CloseHandle, ConsoleSize, ProcessModifyRequest, ProcessParameters, ProcessSignal, ProcessStatus,
    SignalProcessOptions,
};
pub use query::{ProcessDetails, Properties, PropertyQuery, PropertyType};
pub use registry::{RegistryChanges, RegistryHive, RegistryKey, RegistryValue, RegistryValueType};
pub use result::{ErrorEvent, ResultDocument};
pub use storage::{Layer, MappedDirectory, MappedPipe, Storage, StorageQos};
pub use version::{SchemaVersion, SchemaVersionError};
pub use virtual_machine::{
    Chipset, GuestConnection, GuestState, LinuxKernelDirect, MemoryBackingType, Topology, Uefi, UefiBootEntry,
    VirtualMachine, VirtualMachineMemory, VirtualMachineProcessor,
};

/// True when `value` equals its type's default: the serde twin of Go's `omitempty`
/// (zero numbers, `false`, empty strings) used by every schema type here.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
