//! `Devices` of a utility VM: SCSI controllers and attachments, VirtualSmb shares, HvSocket,
//! Plan9 shares, COM ports, network adapters and VPMem.
//!
//! SCSI controllers are keyed by fixed GUIDs, not indexes: hcsshim's
//! `guestrequest.ScsiControllerGuids` (the guest finds its disks through them), reproduced in
//! [`SCSI_CONTROLLER_GUIDS`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::is_default;

/// The keys of SCSI controllers 0..3 in `Devices.Scsi` (hcsshim `guestrequest.ScsiControllerGuids`).
pub const SCSI_CONTROLLER_GUIDS: [&str; 4] = [
    "df6d0690-79e5-55b6-a5ec-c1e2f77f580a",
    "0110f83b-de10-5172-a266-78bca56bf50a",
    "b5d2d8d4-3a75-51bf-945b-3444dc6b8579",
    "305891a9-b251-5dfe-91a2-c25d9212275b",
];

/// `Devices` of a VirtualMachine.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Devices {
    /// Serial ports keyed by index ("0", "1").
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub com_ports: BTreeMap<String, ComPort>,
    /// SCSI controllers keyed by controller GUID.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scsi: BTreeMap<String, Scsi>,
    /// Virtual persistent memory devices (LCOW layers and rootfs.vhd).
    #[serde(rename = "VirtualPMem", skip_serializing_if = "Option::is_none")]
    pub virtual_pmem: Option<VirtualPMemController>,
    /// Network adapters keyed by adapter id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub network_adapters: BTreeMap<String, NetworkAdapter>,
    /// Hyper-V sockets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hv_socket: Option<HvSocket2>,
    /// SMB shares over VMBus (WCOW).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_smb: Option<VirtualSmb>,
    /// Plan 9 shares (LCOW).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan9: Option<Plan9>,
}

/// A SCSI controller: attachments keyed by LUN ("0", "1").
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Scsi {
    /// Disks keyed by LUN. hcsshim always sends the member, possibly empty.
    pub attachments: BTreeMap<String, Attachment>,
}

/// `Attachment.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachmentType {
    /// A VHD or VHDX file.
    VirtualDisk,
    /// An ISO image.
    Iso,
    /// A physical disk.
    PassThru,
}

/// A SCSI attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachment {
    /// The kind of disk.
    #[serde(rename = "Type")]
    pub attachment_type: AttachmentType,
    /// Host path of the disk.
    pub path: String,
    /// Ignore flushes (OCI `windows.ignoreFlushesDuringBoot` on the scratch).
    #[serde(default, skip_serializing_if = "is_default")]
    pub ignore_flushes: bool,
    /// Attach read-only.
    #[serde(default, skip_serializing_if = "is_default")]
    pub read_only: bool,
}

/// `VirtualSmb{Shares, DirectFileMappingInMB}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VirtualSmb {
    /// The shares.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<VirtualSmbShare>,
    /// Direct file mapping window in MiB (hcsshim: 1024).
    #[serde(rename = "DirectFileMappingInMB", skip_serializing_if = "is_default")]
    pub direct_file_mapping_in_mb: u64,
}

/// A VSMB share; the guest sees it as `\\?\VMSMB\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VirtualSmbShare {
    /// The share name.
    #[serde(skip_serializing_if = "is_default")]
    pub name: String,
    /// The host folder.
    #[serde(skip_serializing_if = "is_default")]
    pub path: String,
    /// Only these files of the folder (single-file shares).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_files: Vec<String>,
    /// Share options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<VirtualSmbShareOptions>,
}

/// `VirtualSmbShareOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VirtualSmbShareOptions {
    /// Read-only share.
    #[serde(skip_serializing_if = "is_default")]
    pub read_only: bool,
    /// Share read access.
    #[serde(skip_serializing_if = "is_default")]
    pub share_read: bool,
    /// Cache IO.
    #[serde(skip_serializing_if = "is_default")]
    pub cache_io: bool,
    /// No oplocks.
    #[serde(skip_serializing_if = "is_default")]
    pub no_oplocks: bool,
    /// Open files with the backup privilege (the UVM "os" share).
    #[serde(skip_serializing_if = "is_default")]
    pub take_backup_privilege: bool,
    /// Use the share root identity.
    #[serde(skip_serializing_if = "is_default")]
    pub use_share_root_identity: bool,
    /// No direct mapping.
    #[serde(skip_serializing_if = "is_default")]
    pub no_directmap: bool,
    /// No byte-range locks.
    #[serde(skip_serializing_if = "is_default")]
    pub no_locks: bool,
    /// No directory change notifications.
    #[serde(skip_serializing_if = "is_default")]
    pub no_dirnotify: bool,
    /// Restrict access to `AllowedFiles`.
    #[serde(skip_serializing_if = "is_default")]
    pub restrict_file_access: bool,
    /// Pseudo oplocks.
    #[serde(skip_serializing_if = "is_default")]
    pub pseudo_oplocks: bool,
    /// Single file mapping.
    #[serde(skip_serializing_if = "is_default")]
    pub single_file_mapping: bool,
}

/// `HvSocket` of a VM (`HvSocket2{HvSocketConfig}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HvSocket2 {
    /// The VM-wide HvSocket settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hv_socket_config: Option<HvSocketSystemConfig>,
}

/// `HvSocketSystemConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HvSocketSystemConfig {
    /// SDDL of who may bind; hcsshim: `D:P(A;;FA;;;SY)(A;;FA;;;BA)` (SYSTEM and Administrators).
    #[serde(skip_serializing_if = "is_default")]
    pub default_bind_security_descriptor: String,
    /// SDDL of who may connect.
    #[serde(skip_serializing_if = "is_default")]
    pub default_connect_security_descriptor: String,
    /// Per-service settings keyed by service GUID.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_table: BTreeMap<String, HvSocketServiceConfig>,
}

/// `HvSocketServiceConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HvSocketServiceConfig {
    /// SDDL of who may bind.
    #[serde(skip_serializing_if = "is_default")]
    pub bind_security_descriptor: String,
    /// SDDL of who may connect.
    #[serde(skip_serializing_if = "is_default")]
    pub connect_security_descriptor: String,
    /// Allow wildcard binds.
    #[serde(skip_serializing_if = "is_default")]
    pub allow_wildcard_binds: bool,
    /// Disable the service.
    #[serde(skip_serializing_if = "is_default")]
    pub disabled: bool,
}

/// `Plan9{Shares}`. hcsshim always sends an empty `Plan9` for LCOW and hot-adds shares.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Plan9 {
    /// The shares.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Plan9Share>,
}

/// A Plan 9 share.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Plan9Share {
    /// The share name.
    #[serde(skip_serializing_if = "is_default")]
    pub name: String,
    /// The name the guest mounts (aname).
    #[serde(skip_serializing_if = "is_default")]
    pub access_name: String,
    /// The host folder.
    #[serde(skip_serializing_if = "is_default")]
    pub path: String,
    /// The vsock port (hcsshim: 564).
    #[serde(skip_serializing_if = "is_default")]
    pub port: u32,
    /// Flags: 1 read-only, 2 linux metadata, 4 case sensitive.
    #[serde(skip_serializing_if = "is_default")]
    pub flags: u32,
    /// Only these files of the folder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_files: Vec<String>,
}

/// A serial port backed by a named pipe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ComPort {
    /// The host pipe, `\\.\pipe\NAME`.
    #[serde(skip_serializing_if = "is_default")]
    pub named_pipe: String,
    /// Optimise for a kernel debugger.
    #[serde(skip_serializing_if = "is_default")]
    pub optimize_for_debugger: bool,
}

/// A network adapter of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkAdapter {
    /// The HNS endpoint GUID.
    #[serde(skip_serializing_if = "is_default")]
    pub endpoint_id: String,
    /// The MAC address.
    #[serde(skip_serializing_if = "is_default")]
    pub mac_address: String,
}

/// `VirtualPMemController{MaximumCount, MaximumSizeBytes}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VirtualPMemController {
    /// Maximum number of devices (hcsshim default 64).
    #[serde(skip_serializing_if = "is_default")]
    pub maximum_count: u32,
    /// Maximum size of a device (hcsshim default 4 GiB).
    #[serde(skip_serializing_if = "is_default")]
    pub maximum_size_bytes: u64,
    /// Devices present at boot keyed by slot ("0" holds rootfs.vhd when LCOW boots from it).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub devices: BTreeMap<String, VirtualPMemDevice>,
}

/// A VPMem device present at boot.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VirtualPMemDevice {
    /// The host VHD.
    #[serde(skip_serializing_if = "is_default")]
    pub host_path: String,
    /// Attach read-only.
    #[serde(skip_serializing_if = "is_default")]
    pub read_only: bool,
    /// `Vhd1` or `Vhdx`.
    #[serde(skip_serializing_if = "is_default")]
    pub image_format: String,
}
