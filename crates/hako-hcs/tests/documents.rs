//! Document generation for representative bundles (process isolation, Hyper-V, LCOW), compared
//! field by field with what the reference (`shared/reference/windows-containers.md`) says
//! hcsshim produces, plus the compatibility verdicts as seen through a translation.

use std::path::Path;

use hako_hcs::compat::Verdict;
use hako_hcs::oci::Bundle;
use hako_hcs::schema::{ComputeSystem, HostedSystemDocument, SCSI_CONTROLLER_GUIDS};
use hako_hcs::translate::{translate, HcsPlan, InitProcess, Isolation, TranslateOptions};
use serde_json::{json, Value};

const VOL: &str = r"\\?\Volume{2c2b6b0c-7d43-4c0a-8d8c-0123456789ab}";
const NS: &str = "8e9b6f2c-1111-2222-3333-444455556666";

fn bundle(config: Value) -> Bundle {
    Bundle::from_json(Path::new("/bundles/web"), &config.to_string()).expect("valid config")
}

fn opts() -> TranslateOptions {
    TranslateOptions::for_host_build("web", 20348)
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serializable")
}

fn wcow_process() -> Value {
    json!({
        "ociVersion": "1.1.0",
        "hostname": "web",
        "process": {
            "user": {"username": "ContainerUser"},
            "commandLine": "cmd /c ping -t localhost",
            "args": ["ignored"],
            "env": ["PATH=C:\\Windows", "EMPTY="],
            "cwd": "C:\\"
        },
        "root": {"path": VOL},
        "mounts": [{"destination": "C:\\data", "source": "C:\\data", "options": ["ro"]}],
        "windows": {
            "layerFolders": ["C:\\layers\\l2", "C:\\layers\\l1", "C:\\layers\\scratch"],
            "resources": {"memory": {"limit": 1073741824u64}, "cpu": {"count": 2}},
            "network": {"networkNamespace": NS}
        }
    })
}

fn layer_id(name: &str) -> String {
    hako_hcs::translate::placeholder_layer_id(name).expect("id")
}

/// The reference's process-isolated (Argon v2) document, field by field.
#[test]
fn process_isolated_document_matches_hcsshim() {
    let plan = translate(&bundle(wcow_process()), &opts()).expect("translates");
    assert_eq!(plan.isolation, Isolation::Process);
    assert!(plan.utility_vm.is_none());
    assert_eq!(plan.container.id, "web");
    let doc = to_json(&plan.container.document);
    let expected = json!({
        "Owner": "hako",
        "SchemaVersion": {"Major": 2, "Minor": 1},
        "ShouldTerminateOnLastHandleClosed": true,
        "Container": {
            "GuestOs": {"HostName": "web"},
            "Storage": {
                "Layers": [
                    {"Id": layer_id("l2"), "Path": "C:\\layers\\l2"},
                    {"Id": layer_id("l1"), "Path": "C:\\layers\\l1"}
                ],
                "Path": format!("{}\\", VOL)
            },
            "MappedDirectories": [{"HostPath": "C:\\data", "ContainerPath": "C:\\data", "ReadOnly": true}],
            "Processor": {"Count": 2},
            "Memory": {"SizeInMB": 1024},
            "Networking": {"Namespace": NS},
            "RegistryChanges": {"AddValues": [{
                "Key": {"Hive": "System", "Name": "ControlSet001\\Control"},
                "Name": "WaitToKillServiceTimeout",
                "Type": "String",
                "StringValue": "2147483647"
            }]}
        }
    });
    assert_eq!(doc, expected);
}

#[test]
fn process_parameters_follow_hcsshim_cmd_go() {
    let plan = translate(&bundle(wcow_process()), &opts()).expect("translates");
    let p = match plan.process {
        Some(InitProcess::Windows(p)) => p,
        other => panic!("unexpected {:?}", other),
    };
    assert_eq!(
        to_json(&p),
        json!({
            "CommandLine": "cmd /c ping -t localhost",
            "User": "ContainerUser",
            "WorkingDirectory": "C:\\",
            "Environment": {"PATH": "C:\\Windows"},
            "CreateStdInPipe": true,
            "CreateStdOutPipe": true,
            "CreateStdErrPipe": true
        })
    );

    let mut cfg = wcow_process();
    cfg["process"] = json!({
        "terminal": true,
        "consoleSize": {"height": 30, "width": 100},
        "args": ["C:\\Program Files\\app.exe", "a b", "say \"hi\""],
        "cwd": "C:\\app"
    });
    let plan = translate(&bundle(cfg), &opts()).expect("translates");
    let p = match plan.process {
        Some(InitProcess::Windows(p)) => p,
        other => panic!("unexpected {:?}", other),
    };
    assert_eq!(p.command_line, r#""C:\Program Files\app.exe" "a b" "say \"hi\"""#);
    assert!(p.emulate_console);
    assert_eq!(p.console_size, vec![30, 100]);
    assert!(!p.create_std_err_pipe, "a console merges stderr");
}

#[test]
fn networking_resources_storage_and_annotations() {
    let mut cfg = wcow_process();
    cfg["windows"]["network"] = json!({
        "allowUnqualifiedDNSQuery": true,
        "DNSSearchList": ["a.com", "b.com"],
        "networkSharedContainerName": "pause"
    });
    cfg["windows"]["resources"] = json!({
        "memory": {"limit": 536870912u64},
        "cpu": {"maximum": 5000},
        "storage": {"iops": 300, "bps": 1000000}
    });
    cfg["annotations"] = json!({
        "io.microsoft.container.memory.sizeinmb": "768",
        "io.microsoft.container.storage.qos.iopsmaximum": "400"
    });
    let plan = translate(&bundle(cfg), &opts()).expect("translates");
    let c = plan.container.document.container.expect("container");
    assert_eq!(
        to_json(&c.networking),
        json!({"AllowUnqualifiedDnsQuery": true, "DnsSearchList": "a.com,b.com", "NetworkSharedContainerName": "pause"})
    );
    assert_eq!(to_json(&c.processor), json!({"Maximum": 5000}));
    assert_eq!(to_json(&c.memory), json!({"SizeInMB": 768}), "annotation overrides the spec limit");
    assert_eq!(to_json(&c.storage.expect("storage").qos), json!({"IopsMaximum": 400, "BandwidthMaximum": 1000000}));

    // Annotation count replaces the spec's shares: still one setting, so no conflict.
    let mut cfg = wcow_process();
    cfg["windows"]["resources"] = json!({"cpu": {"shares": 100}});
    cfg["annotations"] = json!({"io.microsoft.virtualmachine.unknown.thing": "1"});
    let plan = translate(&bundle(cfg), &opts()).expect("translates");
    let c = plan.container.document.container.expect("container");
    assert_eq!(to_json(&c.processor), json!({"Weight": 100}));
    assert!(plan.warnings.iter().any(|w| w.contains("io.microsoft.virtualmachine.unknown.thing")));
}

#[test]
fn processor_count_is_lowered_to_the_host() {
    let mut o = opts();
    o.host_processors = Some(1);
    let plan = translate(&bundle(wcow_process()), &o).expect("translates");
    let c = plan.container.document.container.expect("container");
    assert_eq!(to_json(&c.processor), json!({"Count": 1}));
    assert!(plan.warnings.iter().any(|w| w.contains("processor count 2 lowered to 1")));
}

#[test]
fn named_pipes_devices_and_credential_spec() {
    let mut cfg = wcow_process();
    cfg["mounts"] = json!([
        {"destination": "\\\\.\\pipe\\docker_engine", "source": "\\\\.\\pipe\\docker_engine_host"}
    ]);
    cfg["windows"]["devices"] = json!([
        {"id": "5B45201D-F2F2-4F3B-85BB-30FF1F953599", "idType": "class"},
        {"id": "PCIROOT(0)#PCI(0100)", "idType": "vpci-location-path"}
    ]);
    cfg["windows"]["credentialSpec"] =
        json!("{\"CmsPlugins\":[\"ActiveDirectory\"],\"DomainJoinConfig\":{\"DnsName\":\"contoso.com\"}}");
    let plan = translate(&bundle(cfg), &opts()).expect("translates");
    let c = plan.container.document.container.expect("container");
    assert_eq!(
        to_json(&c.mapped_pipes),
        json!([{"ContainerPipeName": "docker_engine", "HostPath": "\\\\.\\pipe\\docker_engine_host"}])
    );
    assert_eq!(
        to_json(&c.assigned_devices),
        json!([
            {"InterfaceClassGuid": "5B45201D-F2F2-4F3B-85BB-30FF1F953599"},
            {"Type": "DeviceInstance", "LocationPath": "PCIROOT(0)#PCI(0100)"}
        ])
    );
    let ccg = c.container_credential_guard.expect("ccg");
    assert_eq!(ccg.transport, "LRPC");
    assert!(ccg.credential_spec.contains("contoso.com"));
}

fn hyperv_config() -> Value {
    let mut cfg = wcow_process();
    cfg.as_object_mut().expect("object").remove("root");
    cfg["windows"]["hyperv"] = json!({});
    cfg["windows"]["resources"] = json!({});
    cfg["windows"]["network"] = Value::Null;
    cfg
}

/// The reference's WCOW utility VM (`prepareCommonConfigDoc` + `prepareConfigDoc`).
#[test]
fn hyperv_utility_vm_document_matches_hcsshim() {
    let plan = translate(&bundle(hyperv_config()), &opts()).expect("translates");
    assert_eq!(plan.isolation, Isolation::Hyperv);
    let uvm = plan.utility_vm.as_ref().expect("uvm");
    assert_eq!(uvm.id, "web@vm");
    let doc = to_json(&uvm.document);
    assert_eq!(doc["SchemaVersion"], json!({"Major": 2, "Minor": 1}));
    assert_eq!(doc["ShouldTerminateOnLastHandleClosed"], json!(true));
    assert_eq!(doc["Owner"], json!("hako"));
    let vm = &doc["VirtualMachine"];
    assert_eq!(vm["StopOnReset"], json!(true));
    assert_eq!(
        vm["Chipset"],
        json!({"Uefi": {"BootThis": {"DeviceType": "VmbFs", "DevicePath": "\\EFI\\Microsoft\\Boot\\bootmgfw.efi"}}})
    );
    assert_eq!(
        vm["ComputeTopology"],
        json!({"Memory": {"SizeInMB": 1024, "AllowOvercommit": true, "EnableHotHint": true}, "Processor": {"Count": 2}})
    );
    let devices = &vm["Devices"];
    assert_eq!(
        devices["HvSocket"],
        json!({"HvSocketConfig": {"DefaultBindSecurityDescriptor": "D:P(A;;FA;;;SY)(A;;FA;;;BA)"}})
    );
    assert_eq!(devices["VirtualSmb"]["DirectFileMappingInMB"], json!(1024));
    assert_eq!(
        devices["VirtualSmb"]["Shares"][0],
        json!({
            "Name": "os",
            "Path": "C:\\layers\\l1\\UtilityVM\\Files",
            "Options": {"ReadOnly": true, "ShareRead": true, "CacheIo": true, "TakeBackupPrivilege": true, "PseudoOplocks": true}
        })
    );
    assert_eq!(devices["VirtualSmb"]["Shares"][1]["Name"], json!("s1"));
    assert_eq!(devices["VirtualSmb"]["Shares"][1]["Path"], json!("C:\\layers\\l2"));
    assert_eq!(devices["VirtualSmb"]["Shares"][3]["Path"], json!("C:\\data"), "mapped directory share");
    let ctrl0 = &devices["Scsi"][SCSI_CONTROLLER_GUIDS[0]]["Attachments"];
    assert_eq!(ctrl0["0"], json!({"Type": "VirtualDisk", "Path": "C:\\layers\\scratch\\vm\\sandbox.vhdx"}));
    assert_eq!(ctrl0["1"], json!({"Type": "VirtualDisk", "Path": "C:\\layers\\scratch\\sandbox.vhdx"}));
    assert_eq!(
        vm["RegistryChanges"]["AddValues"][0],
        json!({"Key": {"Hive": "System", "Name": "CurrentControlSet\\Services\\gns"}, "Name": "EnableCompartmentNamespace", "Type": "DWord", "DWordValue": 1})
    );
    assert_eq!(uvm.grant_vm_access, vec!["C:\\layers\\scratch\\vm\\sandbox.vhdx", "C:\\layers\\scratch\\sandbox.vhdx"]);
    let copy = uvm.scratch_from_template.as_ref().expect("template copy");
    assert_eq!(copy.template, "C:\\layers\\l1\\UtilityVM\\SystemTemplate.vhdx");
    assert!(plan.warnings.iter().any(|w| w.contains("utility VM image assumed in the base layer")));
}

#[test]
fn hyperv_hosted_container_uses_guest_paths() {
    let plan = translate(&bundle(hyperv_config()), &opts()).expect("translates");
    let doc = to_json(&plan.container.document);
    assert_eq!(doc["HostingSystemId"], json!("web@vm"));
    assert_eq!(doc["ShouldTerminateOnLastHandleClosed"], json!(true));
    assert!(doc.get("Container").is_none());
    let hosted = &doc["HostedSystem"];
    assert_eq!(hosted["SchemaVersion"], json!({"Major": 2, "Minor": 1}));
    let c = &hosted["Container"];
    let vsmb = "\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\\";
    assert_eq!(c["Storage"]["Path"], json!("C:\\c\\web"));
    assert_eq!(c["Storage"]["Layers"][0], json!({"Id": layer_id("l2"), "Path": format!("{}s1", vsmb)}));
    assert_eq!(c["Storage"]["Layers"][1], json!({"Id": layer_id("l1"), "Path": format!("{}s2", vsmb)}));
    assert_eq!(
        c["MappedDirectories"],
        json!([{"HostPath": format!("{}s3", vsmb), "ContainerPath": "C:\\data", "ReadOnly": true}])
    );
    let requests = &plan.utility_vm.as_ref().expect("uvm").guest_requests;
    assert_eq!(
        to_json(&requests[0]),
        json!({"GuestRequest": {"ResourceType": "MappedVirtualDisk", "RequestType": "Add", "Settings": {"ContainerPath": "C:\\c\\web", "Lun": 1}}})
    );
    assert_eq!(requests[1].guest_request.as_ref().expect("request")["ResourceType"], json!("CombinedLayers"));
}

#[test]
fn hyperv_sizing_annotations_probe_and_override() {
    let mut cfg = hyperv_config();
    cfg["windows"]["hyperv"] = json!({"utilityVMPath": "D:\\uvm\\UtilityVM"});
    cfg["windows"]["resources"] = json!({"memory": {"limit": 2147483648u64}});
    cfg["annotations"] = json!({
        "io.microsoft.virtualmachine.computetopology.memory.sizeinmb": "2047",
        "io.microsoft.virtualmachine.computetopology.processor.count": "8",
        "io.microsoft.virtualmachine.computetopology.memory.allowovercommit": "false"
    });
    let mut o = opts();
    o.host_processors = Some(4);
    let plan = translate(&bundle(cfg), &o).expect("translates");
    let uvm = to_json(&plan.utility_vm.as_ref().expect("uvm").document);
    assert_eq!(
        uvm["VirtualMachine"]["ComputeTopology"],
        json!({"Memory": {"SizeInMB": 2048}, "Processor": {"Count": 4}})
    );
    assert_eq!(uvm["VirtualMachine"]["Devices"]["VirtualSmb"]["Shares"][0]["Path"], json!("D:\\uvm\\UtilityVM\\Files"));
    assert!(plan.warnings.iter().any(|w| w.contains("aligned up to 2048")));
    assert!(plan.warnings.iter().any(|w| w.contains("lowered to the host's 4")));
    assert!(plan.warnings.iter().any(|w| w.contains("leaving nothing for the guest OS")));

    // With a probe, the layers are searched bottom-up for UtilityVM.
    fn only_top(p: &str) -> bool {
        p == "C:\\layers\\l2\\UtilityVM"
    }
    let mut o = opts();
    o.probe = Some(only_top);
    let plan = translate(&bundle(hyperv_config()), &o).expect("translates");
    let uvm = to_json(&plan.utility_vm.as_ref().expect("uvm").document);
    assert_eq!(
        uvm["VirtualMachine"]["Devices"]["VirtualSmb"]["Shares"][0]["Path"],
        json!("C:\\layers\\l2\\UtilityVM\\Files")
    );

    // A process-isolation bundle run with --isolation hyperv: root is ignored with a warning.
    let mut o = opts();
    o.isolation = Some(Isolation::Hyperv);
    let plan = translate(&bundle(wcow_process()), &o).expect("translates");
    assert_eq!(plan.isolation, Isolation::Hyperv);
    assert!(plan.warnings.iter().any(|w| w.starts_with("root was ignored")));
}

fn lcow_config() -> Value {
    json!({
        "ociVersion": "1.1.0",
        "hostname": "alpine",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "echo hi"], "env": ["PATH=/bin"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "C:\\hostdata", "options": ["rbind", "ro"]}
        ],
        "hooks": {"prestart": [{"path": "/bin/true"}]},
        "linux": {
            "cgroupsPath": "/hako/web",
            "resources": {"pids": {"limit": 10}, "memory": {"limit": 1000000}, "cpu": {"period": 0, "quota": 0}},
            "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}
        },
        "windows": {
            "layerFolders": ["C:\\lcow\\l1", "C:\\lcow\\l0", "C:\\lcow\\scratch"],
            "network": {"networkNamespace": NS}
        }
    })
}

/// The reference's LCOW utility VM example (`create_lcow.go` ~L506).
#[test]
fn lcow_utility_vm_matches_the_hcsshim_example() {
    let plan = translate(&bundle(lcow_config()), &opts()).expect("translates");
    assert_eq!(plan.isolation, Isolation::Lcow);
    let uvm = plan.utility_vm.as_ref().expect("uvm");
    let doc = to_json(&uvm.document);
    assert_eq!(doc["SchemaVersion"], json!({"Major": 2, "Minor": 1}));
    assert_eq!(doc["ShouldTerminateOnLastHandleClosed"], json!(true));
    let vm = &doc["VirtualMachine"];
    assert_eq!(vm["StopOnReset"], json!(true));
    let direct = &vm["Chipset"]["LinuxKernelDirect"];
    assert_eq!(direct["KernelFilePath"], json!("C:\\Program Files\\Linux Containers\\vmlinux"));
    assert_eq!(direct["InitRdPath"], json!("C:\\Program Files\\Linux Containers\\initrd.img"));
    // The example's command line, with hako's GCS log level (info, not debug).
    let example = " 8250_core.nr_uarts=0 panic=-1 quiet pci=off nr_cpus=2 brd.rd_nr=0 pmtmr=0 -- -e 1 /bin/vsockexec -e 109 /bin/gcs -v4 -log-format json -loglevel debug";
    assert_eq!(direct["KernelCmdLine"], json!(example.replace("-loglevel debug", "-loglevel info")));
    assert_eq!(
        vm["ComputeTopology"],
        json!({"Memory": {"SizeInMB": 1024, "AllowOvercommit": true}, "Processor": {"Count": 2}})
    );
    assert_eq!(
        vm["Devices"]["HvSocket"],
        json!({"HvSocketConfig": {"DefaultBindSecurityDescriptor": "D:P(A;;FA;;;SY)(A;;FA;;;BA)"}})
    );
    assert_eq!(
        vm["Devices"]["Plan9"]["Shares"][0],
        json!({"Name": "1", "AccessName": "1", "Path": "C:\\hostdata", "Port": 564, "Flags": 1})
    );
    let scsi = vm["Devices"]["Scsi"].as_object().expect("scsi");
    assert_eq!(scsi.len(), 4, "LCOW gets 4 SCSI controllers");
    let ctrl0 = &scsi[SCSI_CONTROLLER_GUIDS[0]]["Attachments"];
    assert_eq!(ctrl0["0"], json!({"Type": "VirtualDisk", "Path": "C:\\lcow\\scratch\\sandbox.vhdx"}));
    assert_eq!(ctrl0["1"], json!({"Type": "VirtualDisk", "Path": "C:\\lcow\\l1\\layer.vhd", "ReadOnly": true}));
    assert_eq!(ctrl0["2"], json!({"Type": "VirtualDisk", "Path": "C:\\lcow\\l0\\layer.vhd", "ReadOnly": true}));
    assert_eq!(scsi[SCSI_CONTROLLER_GUIDS[3]], json!({"Attachments": {}}));
    assert_eq!(vm["Devices"]["VirtualPMem"], json!({"MaximumCount": 64, "MaximumSizeBytes": 4294967296u64}));
}

/// The LCOW container document: `{SchemaVersion, OciBundlePath, OciSpecification, ScratchDirPath}`.
#[test]
fn lcow_forwards_the_oci_spec() {
    let plan = translate(&bundle(lcow_config()), &opts()).expect("translates");
    let doc = to_json(&plan.container.document);
    assert_eq!(doc["HostingSystemId"], json!("web@vm"));
    let hosted = &doc["HostedSystem"];
    assert_eq!(hosted["SchemaVersion"], json!({"Major": 2, "Minor": 1}));
    assert_eq!(hosted["OciBundlePath"], json!("/run/gcs/c/web"));
    assert_eq!(hosted["ScratchDirPath"], json!("/run/mounts/scsi/m0/scratch/web"));
    let spec = &hosted["OciSpecification"];
    assert!(spec.get("hooks").is_none(), "hooks run on the host, not forwarded");
    assert_eq!(spec["windows"], json!({"network": {"networkNamespace": NS}}), "only the namespace stays");
    assert_eq!(spec["root"], json!({"path": "/run/gcs/c/web/rootfs", "readonly": true}));
    assert_eq!(spec["linux"]["cgroupsPath"], json!(""));
    assert!(spec["linux"]["resources"].get("pids").is_none());
    assert_eq!(spec["linux"]["resources"]["memory"], json!({"limit": 1000000}));
    assert_eq!(spec["linux"]["resources"]["cpu"], json!({"period": 100000, "quota": -1}));
    assert!(spec["linux"].get("seccomp").is_some());
    assert_eq!(spec["mounts"][0], json!({"destination": "/proc", "type": "proc", "source": "proc"}));
    assert_eq!(
        spec["mounts"][1],
        json!({"destination": "/data", "type": "bind", "source": "/mounts/m1", "options": ["rbind", "ro"]})
    );
    assert_eq!(spec["process"]["args"], json!(["sh", "-c", "echo hi"]));

    let kinds: Vec<String> = plan
        .utility_vm
        .as_ref()
        .expect("uvm")
        .guest_requests
        .iter()
        .map(|r| r.guest_request.as_ref().expect("guest")["ResourceType"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        kinds,
        vec!["MappedVirtualDisk", "MappedVirtualDisk", "MappedVirtualDisk", "MappedDirectory", "CombinedLayers"]
    );

    match plan.process {
        Some(InitProcess::Linux(p)) => {
            let v = to_json(&p);
            assert_eq!(v["CreateStdInPipe"], json!(true));
            assert_eq!(v["OciProcess"]["args"], json!(["sh", "-c", "echo hi"]));
            assert!(v.get("CommandLine").is_none());
        }
        other => panic!("unexpected {:?}", other),
    }
}

#[test]
fn lcow_boot_variants() {
    // Before 18286 there is no kernel direct boot: UEFI from a VmbFs share of the boot files.
    let mut o = opts();
    o.host.version.build = 17763;
    let plan = translate(&bundle(lcow_config()), &o).expect("translates");
    let vm = to_json(&plan.utility_vm.as_ref().expect("uvm").document)["VirtualMachine"].clone();
    let boot = &vm["Chipset"]["Uefi"]["BootThis"];
    assert_eq!(boot["DeviceType"], json!("VmbFs"));
    assert_eq!(boot["DevicePath"], json!("\\kernel"));
    assert_eq!(boot["VmbFsRootPath"], json!("C:\\Program Files\\Linux Containers"));
    assert!(boot["OptionalData"].as_str().unwrap_or_default().starts_with("initrd=/initrd.img 8250_core.nr_uarts=0"));

    // rootfs.vhd on VPMem, privileged drops seccomp, boot files and kernel options annotations.
    let mut cfg = lcow_config();
    cfg["annotations"] = json!({
        "io.microsoft.virtualmachine.lcow.preferredrootfstype": "vhd",
        "io.microsoft.virtualmachine.lcow.privileged": "true",
        "io.microsoft.virtualmachine.bootfilesrootpath": "D:\\boot",
        "io.microsoft.virtualmachine.lcow.kernelbootoptions": "debug",
        "io.microsoft.virtualmachine.lcow.vpcienabled": "true"
    });
    let plan = translate(&bundle(cfg), &opts()).expect("translates");
    let uvm = to_json(&plan.utility_vm.as_ref().expect("uvm").document);
    let direct = &uvm["VirtualMachine"]["Chipset"]["LinuxKernelDirect"];
    assert_eq!(direct["KernelFilePath"], json!("D:\\boot\\vmlinux"));
    assert!(direct.get("InitRdPath").is_none());
    let cmdline = direct["KernelCmdLine"].as_str().unwrap_or_default();
    assert!(
        cmdline
            .starts_with("root=/dev/pmem0 ro rootwait init=/init 8250_core.nr_uarts=0 panic=-1 quiet debug nr_cpus=2"),
        "{}",
        cmdline
    );
    assert!(!cmdline.contains("pci=off"));
    assert_eq!(
        uvm["VirtualMachine"]["Devices"]["VirtualPMem"]["Devices"]["0"],
        json!({"HostPath": "D:\\boot\\rootfs.vhd", "ReadOnly": true, "ImageFormat": "Vhd1"})
    );
    let spec = &to_json(&plan.container.document)["HostedSystem"]["OciSpecification"];
    assert!(spec["linux"].get("seccomp").is_none());
}

#[test]
fn documents_round_trip_through_the_schema_types() {
    for (cfg, isolation) in [
        (wcow_process(), None),
        (hyperv_config(), None),
        (lcow_config(), None),
        (wcow_process(), Some(Isolation::Hyperv)),
    ] {
        let mut o = opts();
        o.isolation = isolation;
        let plan: HcsPlan = translate(&bundle(cfg), &o).expect("translates");
        let mut docs = vec![plan.container.document.clone()];
        if let Some(u) = &plan.utility_vm {
            docs.push(u.document.clone());
        }
        for d in docs {
            let text = serde_json::to_string(&d).expect("json");
            let back: ComputeSystem = serde_json::from_str(&text).expect("parses back");
            assert_eq!(back, d);
            assert_eq!(d.payload_count(), 1, "exactly one of Container, VirtualMachine, HostedSystem");
        }
        if plan.isolation == Isolation::Lcow {
            assert!(matches!(plan.container.document.hosted_system, Some(HostedSystemDocument::Linux(_))));
        }
    }
}

#[test]
fn compatibility_verdicts_through_translation() {
    let mut cfg = wcow_process();
    cfg["annotations"] = json!({"hako.image.os.version": "10.0.17763.5000"});
    let plan = translate(&bundle(cfg.clone()), &opts()).expect("translates");
    assert!(matches!(plan.compatibility, Some(Verdict::NeedsHyperV { .. })));
    let err = plan.preflight().expect_err("process isolation of a 1809 image on ltsc2022");
    let text = err.to_string();
    assert!(text.starts_with("image: cannot run with process isolation on this host: "), "{}", text);
    assert!(text.contains("use Hyper-V isolation"), "{}", text);
    assert!(text.contains("an image of build 20348 (ltsc2022)"), "{}", text);

    let mut o = opts();
    o.isolation = Some(Isolation::Hyperv);
    let plan = translate(&bundle(cfg), &o).expect("translates");
    assert!(plan.preflight().is_ok(), "Hyper-V isolation runs older images");

    let mut o = opts();
    o.image_os_version = Some("10.0.26100.1".parse().expect("version"));
    let plan = translate(&bundle(hyperv_config()), &o).expect("translates");
    let err = plan.preflight().expect_err("newer image");
    assert!(err.to_string().contains("not even with Hyper-V"), "{}", err);

    let mut o = opts();
    o.image_os_version = Some("10.0.20348.1487".parse().expect("version"));
    let plan = translate(&bundle(wcow_process()), &o).expect("translates");
    assert_eq!(plan.compatibility, Some(Verdict::ProcessOk));
    assert!(plan.preflight().is_ok());
}
