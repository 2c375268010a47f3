//! Linux containers on Windows: the Linux utility VM (hcsshim `create_lcow.go` `MakeLCOWDoc`)
//! and the hosted container, whose document is the OCI spec forwarded to the guest compute
//! service (hcsshim `hcsdoc_lcow.go`).
//!
//! The VM boots `vmlinux` + `initrd.img` by Linux kernel direct boot (builds from 18286), or
//! `kernel` through UEFI from a VmbFs share of the boot files folder. Read-only layers are the
//! `layer.vhd` files of the layer folders, attached read-only on SCSI controller 0 from LUN 1;
//! the container scratch `sandbox.vhdx` is LUN 0. After start, guest requests mount them under
//! `/run/mounts/scsi/m<N>`, share host directories over Plan 9 at `/mounts/m<N>` and overlay the
//! layers at `/run/gcs/c/<id>/rootfs`.

use crate::oci::Bundle;
use crate::schema::{
    Attachment, AttachmentType, Chipset, ComputeSystem, Devices, HostedSystemDocument, HvSocket2, HvSocketSystemConfig,
    Layer, LcowCombinedLayers, LcowMappedDirectory, LcowMappedVirtualDisk, LinuxHostedSystem, LinuxKernelDirect, Plan9,
    Plan9Share, SchemaVersion, Scsi, Uefi, UefiBootEntry, VirtualMachine, VirtualPMemController, VirtualPMemDevice,
    SCSI_CONTROLLER_GUIDS,
};

use super::annotations::{self as ann, Annotations};
use super::mounts::{self, LcowMount};
use super::paths;
use super::plan::{ContainerPlan, HcsPlan, HostSummary, InitProcess, UtilityVmPlan};
use super::process;
use super::resources;
use super::uvm_wcow::{guest_request, utility_vm_id, vm_topology, HVSOCKET_BIND_SDDL};
use super::wcow;
use super::{Isolation, Rule, SpecError, TranslateOptions};

/// The first build with Linux kernel direct boot.
pub(crate) const KERNEL_DIRECT_MIN_BUILD: u32 = 18286;
/// The Plan 9 server's vsock port.
pub(crate) const PLAN9_PORT: u32 = 564;
/// The guest's init arguments: entropy on vsock port 1, GCS stderr to vsock port 109.
pub(crate) const LCOW_INIT_ARGS: &str = "-e 1 /bin/vsockexec -e 109 /bin/gcs -v4 -log-format json -loglevel info";

/// Where a container's bundle lives in the guest (hcsshim `LCOWRootPrefixInUVM`).
fn guest_bundle(id: &str) -> String {
    format!("/run/gcs/c/{}", id)
}

fn scsi_mount(n: usize) -> String {
    format!("/run/mounts/scsi/m{}", n)
}

/// The kernel command line (hcsshim `MakeLCOWDoc` without the console and debugging variants).
pub(crate) fn kernel_cmdline(
    kernel_direct: bool,
    vhd_rootfs: bool,
    extra: &str,
    vpci: bool,
    processors: u32,
) -> String {
    let mut args = String::new();
    if vhd_rootfs {
        args.push_str("root=/dev/pmem0 ro rootwait init=/init");
    } else if !kernel_direct {
        args.push_str("initrd=/initrd.img");
    }
    args.push_str(" 8250_core.nr_uarts=0");
    args.push_str(" panic=-1 quiet");
    if !extra.is_empty() {
        args.push(' ');
        args.push_str(extra);
    }
    if !vpci {
        args.push_str(" pci=off");
    }
    args.push_str(" nr_cpus=");
    args.push_str(&processors.to_string());
    args.push_str(" brd.rd_nr=0 pmtmr=0 -- ");
    args.push_str(LCOW_INIT_ARGS);
    args
}

/// The spec forwarded to the guest: Windows-only parts removed (except the network namespace
/// and devices), no hooks, no cgroups path, unsupported Linux resources dropped, CPU period 0
/// and quota 0 defaulted, seccomp dropped for privileged containers; root and host-directory
/// mounts point at guest paths.
fn forwarded_spec(
    bundle: &Bundle,
    container_id: &str,
    plan9_targets: &[(usize, String)],
    privileged: bool,
) -> serde_json::Value {
    let mut spec = bundle.raw.clone();
    if let Some(obj) = spec.as_object_mut() {
        let windows = obj.remove("windows");
        let mut kept = serde_json::Map::new();
        if let Some(w) = windows.as_ref().and_then(|w| w.as_object()) {
            if let Some(ns) = w.get("network").and_then(|n| n.get("networkNamespace")).and_then(|v| v.as_str()) {
                if !ns.is_empty() {
                    kept.insert("network".to_string(), serde_json::json!({ "networkNamespace": ns }));
                }
            }
            if let Some(devices) = w.get("devices") {
                kept.insert("devices".to_string(), devices.clone());
            }
        }
        if !kept.is_empty() {
            obj.insert("windows".to_string(), serde_json::Value::Object(kept));
        }
        obj.remove("hooks");
        let readonly = obj.get("root").and_then(|r| r.get("readonly")).and_then(|v| v.as_bool()).unwrap_or(false);
        obj.insert(
            "root".to_string(),
            serde_json::json!({ "path": format!("{}/rootfs", guest_bundle(container_id)), "readonly": readonly }),
        );
        if let Some(mounts) = obj.get_mut("mounts").and_then(|m| m.as_array_mut()) {
            for (index, target) in plan9_targets {
                if let Some(m) = mounts.get_mut(*index).and_then(|m| m.as_object_mut()) {
                    m.insert("source".to_string(), serde_json::Value::String(target.clone()));
                    m.insert("type".to_string(), serde_json::Value::String("bind".to_string()));
                    let opts = m.entry("options").or_insert_with(|| serde_json::json!([]));
                    if let Some(arr) = opts.as_array_mut() {
                        if !arr.iter().any(|o| o == "bind" || o == "rbind") {
                            arr.push(serde_json::Value::String("rbind".to_string()));
                        }
                    }
                }
            }
        }
        if let Some(linux) = obj.get_mut("linux").and_then(|l| l.as_object_mut()) {
            linux.insert("cgroupsPath".to_string(), serde_json::Value::String(String::new()));
            if let Some(res) = linux.get_mut("resources").and_then(|r| r.as_object_mut()) {
                for key in ["devices", "pids", "blockIO", "hugepageLimits", "network"] {
                    res.remove(key);
                }
                if let Some(cpu) = res.get_mut("cpu").and_then(|c| c.as_object_mut()) {
                    if cpu.get("period").and_then(|v| v.as_u64()) == Some(0) {
                        cpu.insert("period".to_string(), serde_json::json!(100000));
                    }
                    if cpu.get("quota").and_then(|v| v.as_i64()) == Some(0) {
                        cpu.insert("quota".to_string(), serde_json::json!(-1));
                    }
                }
            }
            if privileged {
                linux.remove("seccomp");
            }
        }
    }
    spec
}

/// A Linux container in a Linux utility VM.
pub(crate) fn lcow(
    bundle: &Bundle,
    opts: &TranslateOptions,
    schema: SchemaVersion,
    warnings: &mut Vec<String>,
) -> Result<HcsPlan, SpecError> {
    let spec = &bundle.spec;
    let windows = wcow::windows_section(spec)?;
    let (ro, scratch) = wcow::layer_folders(windows)?;
    if !windows.devices.is_empty() {
        return Err(SpecError::new(
            Rule::Device,
            "windows.devices",
            "is set, but assigning devices to a Linux container is not supported by hako yet",
            "remove windows.devices",
        ));
    }
    if windows.network.as_ref().map_or(false, |n| {
        !n.endpoint_list.is_empty() || n.allow_unqualified_dns_query || !n.dns_search_list.is_empty()
    }) {
        resources::networking(windows)?;
    }
    let a = Annotations(&spec.annotations);
    let size = resources::vm_sizing(spec, &a, opts.host_processors, warnings)?;
    let uvm_id = utility_vm_id(&opts.container_id);
    let build = opts.host.version.build;

    let boot_files =
        a.get(ann::BOOT_FILES_ROOT_PATH).unwrap_or(&opts.lcow_boot_files).trim_end_matches('\\').to_string();
    if !paths::is_absolute_drive_path(&boot_files) {
        return Err(SpecError::new(
            Rule::Annotation,
            format!("annotations[{:?}]", ann::BOOT_FILES_ROOT_PATH),
            format!("{:?} is not an absolute Windows path", boot_files),
            r"give the folder with the LCOW kernel and initrd, e.g. C:\Program Files\Linux Containers",
        ));
    }
    let kernel_direct = a.bool(ann::LCOW_KERNEL_DIRECT_BOOT, build >= KERNEL_DIRECT_MIN_BUILD)?;
    if kernel_direct && build < KERNEL_DIRECT_MIN_BUILD {
        return Err(SpecError::new(
            Rule::HostBuild,
            format!("annotations[{:?}]", ann::LCOW_KERNEL_DIRECT_BOOT),
            format!("kernel direct boot needs build {} or newer; the host is {}", KERNEL_DIRECT_MIN_BUILD, build),
            "set the annotation to false",
        ));
    }
    let vhd_rootfs = match a.get(ann::LCOW_PREFERRED_ROOTFS_TYPE) {
        None | Some("initrd") => false,
        Some("vhd") => true,
        Some(other) => {
            return Err(SpecError::new(
                Rule::Annotation,
                format!("annotations[{:?}]", ann::LCOW_PREFERRED_ROOTFS_TYPE),
                format!("{:?} is neither initrd nor vhd", other),
                "use \"initrd\" or \"vhd\"",
            ))
        }
    };
    let vpmem_count = a.u32(ann::LCOW_VPMEM_COUNT)?.unwrap_or(64);
    let vpmem_size = a.u64(ann::LCOW_VPMEM_SIZE)?.unwrap_or(4 * 1024 * 1024 * 1024);
    if vpmem_count > 128 {
        return Err(SpecError::new(
            Rule::Annotation,
            format!("annotations[{:?}]", ann::LCOW_VPMEM_COUNT),
            format!("{} is above the limit of 128 devices", vpmem_count),
            "use at most 128",
        ));
    }
    let kernel_file = if kernel_direct {
        let vmlinux = paths::join(&boot_files, "vmlinux");
        match opts.probe {
            Some(exists) if !exists(&vmlinux) => paths::join(&boot_files, "kernel"),
            _ => vmlinux,
        }
    } else {
        paths::join(&boot_files, "kernel")
    };
    let extra = a.get(ann::LCOW_KERNEL_BOOT_OPTIONS).unwrap_or("");
    let vpci = a.bool(ann::LCOW_VPCI_ENABLED, false)?;
    let cmdline = kernel_cmdline(kernel_direct, vhd_rootfs, extra, vpci, size.processors);
    let mut chipset = Chipset::default();
    if kernel_direct {
        chipset.linux_kernel_direct = Some(LinuxKernelDirect {
            kernel_file_path: kernel_file,
            init_rd_path: if vhd_rootfs { String::new() } else { paths::join(&boot_files, "initrd.img") },
            kernel_cmd_line: cmdline,
        });
    } else {
        chipset.uefi = Some(Uefi {
            boot_this: Some(UefiBootEntry {
                device_type: "VmbFs".to_string(),
                device_path: r"\kernel".to_string(),
                vmb_fs_root_path: boot_files.clone(),
                optional_data: cmdline,
                ..UefiBootEntry::default()
            }),
            ..Uefi::default()
        });
    }
    let mut vpmem = VirtualPMemController {
        maximum_count: vpmem_count,
        maximum_size_bytes: vpmem_size,
        ..VirtualPMemController::default()
    };
    if vhd_rootfs {
        if vpmem_count == 0 {
            return Err(SpecError::new(
                Rule::Annotation,
                format!("annotations[{:?}]", ann::LCOW_VPMEM_COUNT),
                "is 0, but booting from rootfs.vhd needs a VPMem device in hako",
                "allow at least one VPMem device or boot from initrd",
            ));
        }
        vpmem.devices.insert(
            "0".to_string(),
            VirtualPMemDevice {
                host_path: paths::join(&boot_files, "rootfs.vhd"),
                read_only: true,
                image_format: "Vhd1".to_string(),
            },
        );
    }

    // SCSI controller 0: LUN 0 the container scratch, LUN 1.. the layers; 4 controllers as hcsshim.
    let mut scsi = std::collections::BTreeMap::new();
    for guid in SCSI_CONTROLLER_GUIDS.iter() {
        scsi.insert(guid.to_string(), Scsi::default());
    }
    let container_scratch = paths::join(&scratch, "sandbox.vhdx");
    let mut grant = vec![container_scratch.clone()];
    let mut guest_requests = Vec::new();
    let mut attachments = std::collections::BTreeMap::new();
    attachments.insert(
        "0".to_string(),
        Attachment {
            attachment_type: AttachmentType::VirtualDisk,
            path: container_scratch,
            ignore_flushes: windows.ignore_flushes_during_boot,
            read_only: false,
        },
    );
    guest_requests.push(guest_request(
        "MappedVirtualDisk",
        serde_json::to_value(LcowMappedVirtualDisk {
            mount_path: scsi_mount(0),
            lun: 0,
            controller: 0,
            read_only: false,
        })
        .unwrap_or_default(),
    ));
    let mut guest_layers = Vec::new();
    for (i, folder) in ro.iter().enumerate() {
        let lun = i as u32 + 1;
        let vhd = paths::join(folder, "layer.vhd");
        grant.push(vhd.clone());
        attachments.insert(
            lun.to_string(),
            Attachment {
                attachment_type: AttachmentType::VirtualDisk,
                path: vhd,
                ignore_flushes: false,
                read_only: true,
            },
        );
        let mount = scsi_mount(i + 1);
        guest_requests.push(guest_request(
            "MappedVirtualDisk",
            serde_json::to_value(LcowMappedVirtualDisk {
                mount_path: mount.clone(),
                lun,
                controller: 0,
                read_only: true,
            })
            .unwrap_or_default(),
        ));
        guest_layers.push(Layer { path: mount, ..Layer::default() });
    }
    if ro.len() + 1 > 64 {
        return Err(SpecError::new(
            Rule::LayerFolders,
            "windows.layerFolders",
            format!("has {} layers; SCSI controller 0 takes 64 disks", ro.len()),
            "squash the image to fewer layers",
        ));
    }
    if let Some(ctrl) = scsi.get_mut(SCSI_CONTROLLER_GUIDS[0]) {
        ctrl.attachments = attachments;
    }

    // Host directories over Plan 9.
    let mut plan9 = Plan9::default();
    let mut targets = Vec::new();
    for m in mounts::lcow_mounts(spec)? {
        if let LcowMount::HostDirectory { index, source, read_only } = m {
            let n = plan9.shares.len() + 1;
            let name = n.to_string();
            let guest = format!("/mounts/m{}", n);
            plan9.shares.push(Plan9Share {
                name: name.clone(),
                access_name: name.clone(),
                path: source,
                port: PLAN9_PORT,
                flags: if read_only { 1 } else { 0 },
                ..Plan9Share::default()
            });
            guest_requests.push(guest_request(
                "MappedDirectory",
                serde_json::to_value(LcowMappedDirectory {
                    mount_path: guest.clone(),
                    port: PLAN9_PORT,
                    share_name: name,
                    read_only,
                })
                .unwrap_or_default(),
            ));
            targets.push((index, guest));
        }
    }
    let scratch_dir = format!("{}/scratch/{}", scsi_mount(0), opts.container_id);
    let rootfs = format!("{}/rootfs", guest_bundle(&opts.container_id));
    guest_requests.push(guest_request(
        "CombinedLayers",
        serde_json::to_value(LcowCombinedLayers {
            container_id: opts.container_id.clone(),
            container_root_path: rootfs,
            layers: guest_layers,
            scratch_path: scratch_dir.clone(),
        })
        .unwrap_or_default(),
    ));
    if windows.network.as_ref().map_or(false, |n| !n.network_namespace.is_empty()) {
        warnings.push(
            "the network namespace's endpoints must be added to the utility VM as network adapters; hako does not do that yet, \
             so the container will have no network"
                .to_string(),
        );
    }

    let vm = VirtualMachine {
        stop_on_reset: true,
        chipset: Some(chipset),
        compute_topology: Some(vm_topology(&size, false)),
        devices: Some(Devices {
            scsi,
            virtual_pmem: if vpmem_count > 0 { Some(vpmem) } else { None },
            hv_socket: Some(HvSocket2 {
                hv_socket_config: Some(HvSocketSystemConfig {
                    default_bind_security_descriptor: HVSOCKET_BIND_SDDL.to_string(),
                    ..HvSocketSystemConfig::default()
                }),
            }),
            plan9: Some(plan9),
            ..Devices::default()
        }),
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
    let privileged = a.bool(ann::LCOW_PRIVILEGED, false)?;
    let hosted = LinuxHostedSystem {
        schema_version: Some(schema),
        oci_bundle_path: guest_bundle(&opts.container_id),
        oci_specification: forwarded_spec(bundle, &opts.container_id, &targets, privileged),
        scratch_dir_path: scratch_dir,
    };
    let container_doc = ComputeSystem {
        owner: opts.owner.clone(),
        schema_version: Some(schema),
        hosting_system_id: uvm_id.clone(),
        hosted_system: Some(HostedSystemDocument::Linux(hosted)),
        should_terminate_on_last_handle_closed: true,
        ..ComputeSystem::default()
    };
    let process = match &spec.process {
        Some(p) => Some(InitProcess::Linux(process::linux_process(p, bundle.raw.get("process"), opts.stdio)?)),
        None => None,
    };
    Ok(HcsPlan {
        isolation: Isolation::Lcow,
        schema_version: schema,
        host: HostSummary { build, revision: opts.host.version.revision, measured: opts.host_measured },
        utility_vm: Some(UtilityVmPlan {
            id: uvm_id,
            document: uvm_doc,
            grant_vm_access: grant,
            scratch_from_template: None,
            guest_requests,
        }),
        container: ContainerPlan { id: opts.container_id.clone(), document: container_doc },
        process,
        image_os_version: None,
        compatibility: None,
        warnings: Vec::new(),
    })
}
