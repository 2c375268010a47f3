//! Hyper-V isolation (Xenon): the Windows utility VM document (hcsshim `create_wcow.go`
//! `prepareCommonConfigDoc` + `prepareConfigDoc`) and the container hosted in it.
//!
//! The VM boots `\EFI\Microsoft\Boot\bootmgfw.efi` from the VSMB share "os" (the image's
//! `UtilityVM\Files`), with its own scratch at SCSI 0:0. Where hcsshim hot-adds the container's
//! layers and scratch after the VM starts, hako puts them in the VM document from the start:
//! each read-only layer is a read-only VSMB share, the container scratch (`sandbox.vhdx` in the
//! scratch folder) is SCSI 0:1, mapped directories are further shares. After start, two guest
//! requests mount the scratch at `C:\c\<id>` and combine the layers there; then the container is
//! created with `HostingSystemId` and a `HostedSystem{SchemaVersion 2.1, Container}` whose paths
//! are guest paths.

use crate::oci::Bundle;
use crate::schema::{
    Attachment, AttachmentType, Chipset, ComputeSystem, Devices, GuestModificationRequest, HostedSystem,
    HostedSystemDocument, HvSocket2, HvSocketSystemConfig, Layer, MappedDirectory, MappedPipe, ModifyRequestType,
    ModifySettingRequest, RegistryChanges, RegistryHive, RegistryKey, RegistryValue, RegistryValueType, SchemaVersion,
    Scsi, Topology, Uefi, UefiBootEntry, VirtualMachine, VirtualMachineMemory, VirtualMachineProcessor, VirtualSmb,
    VirtualSmbShare, VirtualSmbShareOptions, WcowCombinedLayers, WcowMappedVirtualDisk, SCSI_CONTROLLER_GUIDS,
};

use super::annotations::{self as ann, Annotations};
use super::mounts::{self, WcowMount};
use super::paths;
use super::plan::{ContainerPlan, HcsPlan, HostSummary, InitProcess, ScratchCopy, UtilityVmPlan};
use super::process;
use super::resources::{self, VmSizing};
use super::wcow;
use super::{Isolation, Rule, SpecError, TranslateOptions};

/// SDDL allowing SYSTEM and Administrators to bind Hyper-V sockets (hcsshim's default).
pub(crate) const HVSOCKET_BIND_SDDL: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)";
/// Where the UEFI boot manager lives on the "os" share.
pub(crate) const WCOW_BOOT_PATH: &str = r"\EFI\Microsoft\Boot\bootmgfw.efi";
/// Where a hosted Windows container's root lives in the guest (hcsshim `WCOWRootPrefixInUVM`).
pub(crate) const WCOW_GUEST_ROOT_PREFIX: &str = r"C:\c";

/// VSMB options of a read-only share (hcsshim `DefaultVSMBOptions(true)`).
pub(crate) fn vsmb_read_only() -> VirtualSmbShareOptions {
    VirtualSmbShareOptions {
        read_only: true,
        share_read: true,
        cache_io: true,
        pseudo_oplocks: true,
        ..VirtualSmbShareOptions::default()
    }
}

/// The utility VM id of a container (runhcs's `<id>@vm`).
pub fn utility_vm_id(container_id: &str) -> String {
    format!("{}@vm", container_id)
}

/// Finds the utility VM image folder (`...\UtilityVM`): `windows.hyperv.utilityVMPath`, else the
/// layers from the bottom-most upwards; without a probe, the base layer is assumed.
fn utility_vm_folder(
    ro_layers: &[String],
    utility_vm_path: &str,
    opts: &TranslateOptions,
    warnings: &mut Vec<String>,
) -> Result<String, SpecError> {
    if !utility_vm_path.is_empty() {
        if !paths::is_absolute_drive_path(utility_vm_path) {
            return Err(SpecError::new(
                Rule::UtilityVm,
                "windows.hyperv.utilityVMPath",
                format!("{:?} is not an absolute Windows path", utility_vm_path),
                r"give the image's UtilityVM folder, e.g. C:\layers\<base>\UtilityVM",
            ));
        }
        return Ok(utility_vm_path.trim_end_matches('\\').to_string());
    }
    match opts.probe {
        Some(exists) => ro_layers
            .iter()
            .rev()
            .map(|l| paths::join(l, "UtilityVM"))
            .find(|candidate| exists(candidate))
            .ok_or_else(|| {
                SpecError::new(
                    Rule::UtilityVm,
                    "windows.layerFolders",
                    "no layer has a UtilityVM folder, so there is no utility VM image to boot",
                    "use an image whose base layer carries one (servercore, nanoserver) or set windows.hyperv.utilityVMPath",
                )
            }),
        None => {
            let base = ro_layers.last().map(|s| s.as_str()).unwrap_or_default();
            warnings.push(format!(
                "utility VM image assumed in the base layer ({}\\UtilityVM); on Windows hako searches the layers bottom-up",
                base.trim_end_matches('\\')
            ));
            Ok(paths::join(base, "UtilityVM"))
        }
    }
}

/// The VirtualMachine parts shared by the WCOW and LCOW utility VMs.
pub(crate) fn vm_topology(size: &VmSizing, hot_hint: bool) -> Topology {
    Topology {
        memory: Some(VirtualMachineMemory {
            size_in_mb: size.memory_mb,
            allow_overcommit: size.allow_overcommit,
            enable_hot_hint: hot_hint && size.allow_overcommit,
            enable_deferred_commit: size.deferred_commit,
            enable_cold_discard_hint: size.cold_discard_hint,
            ..VirtualMachineMemory::default()
        }),
        processor: Some(VirtualMachineProcessor {
            count: size.processors,
            limit: size.processor_limit,
            weight: size.processor_weight,
            ..VirtualMachineProcessor::default()
        }),
    }
}

/// A guest request as the `ModifySettingRequest` that carries it.
pub(crate) fn guest_request(resource_type: &str, settings: serde_json::Value) -> ModifySettingRequest {
    let request = GuestModificationRequest {
        resource_type: resource_type.to_string(),
        request_type: ModifyRequestType::Add,
        settings,
    };
    ModifySettingRequest {
        guest_request: Some(serde_json::to_value(request).unwrap_or(serde_json::Value::Null)),
        ..ModifySettingRequest::default()
    }
}

/// A Hyper-V isolated Windows container.
pub(crate) fn hyperv_isolated(
    bundle: &Bundle,
    opts: &TranslateOptions,
    schema: SchemaVersion,
    warnings: &mut Vec<String>,
) -> Result<HcsPlan, SpecError> {
    let spec = &bundle.spec;
    let windows = wcow::windows_section(spec)?;
    let (ro, scratch) = wcow::layer_folders(windows)?;
    if spec.root.is_some() {
        if windows.hyperv.is_some() {
            return Err(SpecError::new(
                Rule::RootWithHyperV,
                "root",
                "is set, but it must not be for a Hyper-V isolated container (the root lives in the utility VM)",
                "remove root from config.json",
            ));
        }
        warnings.push("root was ignored: a Hyper-V isolated container's root lives in the utility VM".to_string());
    }
    if !windows.devices.is_empty() {
        return Err(SpecError::new(
            Rule::Device,
            "windows.devices",
            "is set, but assigning devices to a Hyper-V isolated container is not supported by hako yet",
            "remove windows.devices or use process isolation",
        ));
    }
    let a = Annotations(&spec.annotations);
    let size = resources::vm_sizing(spec, &a, opts.host_processors, warnings)?;
    let uvm_path = utility_vm_folder(
        &ro,
        windows.hyperv.as_ref().map(|h| h.utility_vm_path.as_str()).unwrap_or(""),
        opts,
        warnings,
    )?;
    let uvm_id = utility_vm_id(&opts.container_id);
    let guest_root = format!(r"{}\{}", WCOW_GUEST_ROOT_PREFIX, opts.container_id);

    // VSMB shares: the OS image, then the layers, then mapped directories.
    let mut os_options = vsmb_read_only();
    os_options.take_backup_privilege = true;
    let mut shares = vec![VirtualSmbShare {
        name: "os".to_string(),
        path: paths::join(&uvm_path, "Files"),
        options: Some(os_options),
        ..VirtualSmbShare::default()
    }];
    let mut counter = 0u32;
    let mut next_share = |shares: &mut Vec<VirtualSmbShare>, path: &str, options: VirtualSmbShareOptions| {
        counter += 1;
        let name = format!("s{:x}", counter);
        shares.push(VirtualSmbShare {
            name: name.clone(),
            path: path.to_string(),
            options: Some(options),
            ..VirtualSmbShare::default()
        });
        format!("{}{}", paths::VSMB_GUEST_PREFIX, name)
    };
    let host_layers = wcow::layers(&ro, opts)?;
    let mut guest_layers = Vec::new();
    for layer in &host_layers {
        let mut options = vsmb_read_only();
        options.take_backup_privilege = true;
        let guest_path = next_share(&mut shares, &layer.path, options);
        guest_layers.push(Layer { id: layer.id.clone(), path: guest_path, ..Layer::default() });
    }

    let mut c = wcow::container_common(spec, windows, true, Some(size.processors), warnings)?;
    if let Some(mem) = c.memory {
        if mem.size_in_mb >= size.memory_mb {
            warnings.push(format!(
                "the container may use {} MiB but the utility VM has only {} MiB, leaving nothing for the guest OS: \
                 raise annotation {}",
                mem.size_in_mb,
                size.memory_mb,
                ann::VM_MEMORY_SIZE_MB
            ));
        }
    }
    for m in mounts::wcow_mounts(spec, opts.host.version.build, warnings)? {
        match m {
            WcowMount::Directory { source, container_path, read_only } => {
                let options = if read_only { vsmb_read_only() } else { VirtualSmbShareOptions::default() };
                let guest_path = next_share(&mut shares, &source, options);
                c.mapped_directories.push(MappedDirectory {
                    host_path: guest_path,
                    container_path,
                    read_only,
                    ..MappedDirectory::default()
                });
            }
            WcowMount::Pipe { source, container_pipe_name } => c.mapped_pipes.push(MappedPipe {
                container_pipe_name,
                host_path: format!(r"{}IPC$\{}", paths::VSMB_GUEST_PREFIX, &source[paths::PIPE_PREFIX.len()..]),
                ..MappedPipe::default()
            }),
        }
    }
    if let Some(storage) = c.storage.as_mut() {
        storage.layers = guest_layers.clone();
        storage.path = guest_root.clone();
    }

    let uvm_scratch = paths::join(&scratch, r"vm\sandbox.vhdx");
    let container_scratch = paths::join(&scratch, "sandbox.vhdx");
    let mut attachments = std::collections::BTreeMap::new();
    attachments.insert(
        "0".to_string(),
        Attachment {
            attachment_type: AttachmentType::VirtualDisk,
            path: uvm_scratch.clone(),
            ignore_flushes: false,
            read_only: false,
        },
    );
    attachments.insert(
        "1".to_string(),
        Attachment {
            attachment_type: AttachmentType::VirtualDisk,
            path: container_scratch.clone(),
            ignore_flushes: windows.ignore_flushes_during_boot,
            read_only: false,
        },
    );
    let mut scsi = std::collections::BTreeMap::new();
    scsi.insert(SCSI_CONTROLLER_GUIDS[0].to_string(), Scsi { attachments });

    let mut registry = RegistryChanges::default();
    if !a.bool(ann::VM_DISABLE_COMPARTMENT_NAMESPACE, false)? {
        registry.add_values.push(RegistryValue {
            key: RegistryKey {
                hive: RegistryHive::System,
                name: r"CurrentControlSet\Services\gns".to_string(),
                volatile: false,
            },
            name: "EnableCompartmentNamespace".to_string(),
            value_type: RegistryValueType::DWord,
            string_value: String::new(),
            binary_value: String::new(),
            d_word_value: 1,
            q_word_value: 0,
        });
    }

    let vm = VirtualMachine {
        stop_on_reset: true,
        chipset: Some(Chipset {
            uefi: Some(Uefi {
                boot_this: Some(UefiBootEntry {
                    device_type: "VmbFs".to_string(),
                    device_path: WCOW_BOOT_PATH.to_string(),
                    ..UefiBootEntry::default()
                }),
                ..Uefi::default()
            }),
            ..Chipset::default()
        }),
        compute_topology: Some(vm_topology(&size, true)),
        devices: Some(Devices {
            scsi,
            hv_socket: Some(HvSocket2 {
                hv_socket_config: Some(HvSocketSystemConfig {
                    default_bind_security_descriptor: HVSOCKET_BIND_SDDL.to_string(),
                    ..HvSocketSystemConfig::default()
                }),
            }),
            virtual_smb: Some(VirtualSmb { shares, direct_file_mapping_in_mb: 1024 }),
            ..Devices::default()
        }),
        registry_changes: if registry.add_values.is_empty() { None } else { Some(registry) },
        storage_qos: size.qos,
        ..VirtualMachine::default()
    };
    let uvm_doc = ComputeSystem {
        owner: opts.owner.clone(),
        schema_version: Some(schema),
        virtual_machine: Some(vm),
        should_terminate_on_last_handle_closed: true,
        ..ComputeSystem::default()
    };
    let guest_requests = vec![
        guest_request(
            "MappedVirtualDisk",
            serde_json::to_value(WcowMappedVirtualDisk { container_path: guest_root.clone(), lun: 1 })
                .unwrap_or_default(),
        ),
        guest_request(
            "CombinedLayers",
            serde_json::to_value(WcowCombinedLayers {
                container_root_path: guest_root,
                layers: guest_layers,
                scratch_path: String::new(),
            })
            .unwrap_or_default(),
        ),
    ];
    if c.networking.as_ref().map_or(false, |n| !n.namespace.is_empty()) {
        warnings.push(
            "the network namespace's endpoints must be added to the utility VM as network adapters; hako does not do that yet, \
             so the container will have no network"
                .to_string(),
        );
    }
    let container_doc = ComputeSystem {
        owner: opts.owner.clone(),
        schema_version: Some(schema),
        hosting_system_id: uvm_id.clone(),
        hosted_system: Some(HostedSystemDocument::Windows(Box::new(HostedSystem {
            schema_version: Some(schema),
            container: Some(c),
        }))),
        should_terminate_on_last_handle_closed: true,
        ..ComputeSystem::default()
    };
    let process = match &spec.process {
        Some(p) => Some(InitProcess::Windows(process::windows_process(p, opts.stdio)?)),
        None => None,
    };
    Ok(HcsPlan {
        isolation: Isolation::Hyperv,
        schema_version: schema,
        host: HostSummary {
            build: opts.host.version.build,
            revision: opts.host.version.revision,
            measured: opts.host_measured,
        },
        utility_vm: Some(UtilityVmPlan {
            id: uvm_id,
            document: uvm_doc,
            grant_vm_access: vec![uvm_scratch.clone(), container_scratch],
            scratch_from_template: Some(ScratchCopy {
                template: paths::join(&uvm_path, "SystemTemplate.vhdx"),
                path: uvm_scratch,
            }),
            guest_requests,
        }),
        container: ContainerPlan { id: opts.container_id.clone(), document: container_doc },
        process,
        image_os_version: None,
        compatibility: None,
        warnings: Vec::new(),
    })
}
