//! Every rule the translation enforces, violated once: the error names the rule, the field,
//! the problem and the fix (`FIELD: PROBLEM: FIX`).

use std::path::Path;

use hako_hcs::oci::Bundle;
use hako_hcs::translate::{translate, Isolation, Rule, SpecError, TranslateOptions};
use serde_json::{json, Value};

const VOL: &str = r"\\?\Volume{2c2b6b0c-7d43-4c0a-8d8c-0123456789ab}\";
const NS: &str = "8e9b6f2c-1111-2222-3333-444455556666";

fn base() -> Value {
    json!({
        "ociVersion": "1.1.0",
        "process": {"args": ["cmd"], "cwd": "C:\\"},
        "root": {"path": VOL},
        "windows": {"layerFolders": ["C:\\l\\base", "C:\\l\\scratch"]}
    })
}

fn lcow() -> Value {
    json!({
        "process": {"args": ["sh"], "cwd": "/"},
        "linux": {},
        "windows": {"layerFolders": ["C:\\l\\base", "C:\\l\\scratch"]}
    })
}

fn hyperv() -> Value {
    let mut v = base();
    v.as_object_mut().expect("object").remove("root");
    v["windows"]["hyperv"] = json!({});
    v
}

fn run_with(cfg: Value, o: &TranslateOptions) -> Result<(), SpecError> {
    let bundle = Bundle::from_json(Path::new("/b"), &cfg.to_string()).expect("valid json");
    translate(&bundle, o).map(|_| ())
}

fn opts() -> TranslateOptions {
    TranslateOptions::for_host_build("web", 20348)
}

/// Asserts that `cfg` breaks `rule` on `field`, and that the message has all three parts.
#[track_caller]
fn violates(cfg: Value, rule: Rule, field: &str, problem_has: &str) {
    violates_with(cfg, &opts(), rule, field, problem_has)
}

#[track_caller]
fn violates_with(cfg: Value, o: &TranslateOptions, rule: Rule, field: &str, problem_has: &str) {
    let err = run_with(cfg, o).expect_err("should be rejected");
    assert_eq!(err.rule, rule, "{}", err);
    assert_eq!(err.field, field, "{}", err);
    assert!(err.problem.contains(problem_has), "problem {:?} lacks {:?}", err.problem, problem_has);
    assert!(!err.fix.is_empty());
    assert_eq!(err.to_string(), format!("{}: {}: {}", err.field, err.problem, err.fix));
}

fn with(mut v: Value, path: &[&str], value: Value) -> Value {
    let mut cur = &mut v;
    for p in &path[..path.len() - 1] {
        cur = &mut cur[*p];
    }
    cur[path[path.len() - 1]] = value;
    v
}

#[test]
fn the_base_bundles_are_valid() {
    run_with(base(), &opts()).expect("process");
    run_with(hyperv(), &opts()).expect("hyperv");
    run_with(lcow(), &opts()).expect("lcow");
}

#[test]
fn windows_section_and_layer_folders() {
    let mut v = base();
    v.as_object_mut().expect("object").remove("windows");
    violates(v, Rule::WindowsMissing, "windows", "is missing");
    violates(
        with(base(), &["windows", "layerFolders"], json!(["C:\\l\\scratch"])),
        Rule::LayerFolders,
        "windows.layerFolders",
        "has 1 entries",
    );
    violates(
        with(base(), &["windows", "layerFolders"], json!([])),
        Rule::LayerFolders,
        "windows.layerFolders",
        "has 0 entries",
    );
    violates(
        with(base(), &["windows", "layerFolders"], json!(["layers\\base", "C:\\s"])),
        Rule::LayerFolders,
        "windows.layerFolders[0]",
        "not an absolute Windows path",
    );
    violates(
        with(base(), &["windows", "layerFolders"], json!(["\\\\server\\share\\base", "C:\\s"])),
        Rule::LayerFolders,
        "windows.layerFolders[0]",
        "network path",
    );
    violates(
        with(base(), &["windows", "layerFolders"], json!(["C:\\l\\base", "c:\\L\\BASE\\"])),
        Rule::LayerFolders,
        "windows.layerFolders[1]",
        "listed twice",
    );
    violates(
        with(lcow(), &["windows", "layerFolders"], json!(["C:\\s"])),
        Rule::LayerFolders,
        "windows.layerFolders",
        "has 1 entries",
    );
}

#[test]
fn root_rules() {
    let mut v = base();
    v.as_object_mut().expect("object").remove("root");
    violates(v, Rule::RootMissing, "root", "is missing");
    violates(
        with(base(), &["root", "path"], json!("C:\\rootfs")),
        Rule::RootNotVolumeGuid,
        "root.path",
        "not a volume GUID path",
    );
    violates(
        with(base(), &["root", "path"], json!("\\\\?\\Volume{zz}\\")),
        Rule::RootNotVolumeGuid,
        "root.path",
        "not a volume GUID path",
    );
    violates(
        with(base(), &["root", "readonly"], json!(true)),
        Rule::RootReadonly,
        "root.readonly",
        "readonly is not supported for Windows containers",
    );
    violates(with(hyperv(), &["root"], json!({"path": VOL})), Rule::RootWithHyperV, "root", "must not be");
}

#[test]
fn cpu_rules() {
    let cpu = |c: Value| with(base(), &["windows", "resources"], json!({ "cpu": c }));
    violates(cpu(json!({"count": 2, "shares": 5})), Rule::CpuExclusive, "windows.resources.cpu", "count and shares");
    violates(
        cpu(json!({"shares": 5, "maximum": 100})),
        Rule::CpuExclusive,
        "windows.resources.cpu",
        "shares and maximum",
    );
    violates(cpu(json!({"shares": 20000})), Rule::CpuRange, "windows.resources.cpu.shares", "above 10000");
    violates(cpu(json!({"maximum": 0})), Rule::CpuRange, "windows.resources.cpu.maximum", "outside 1-10000");
    violates(cpu(json!({"maximum": 10001})), Rule::CpuRange, "windows.resources.cpu.maximum", "outside 1-10000");
    violates(cpu(json!({"count": 0})), Rule::CpuRange, "windows.resources.cpu.count", "is 0");
    violates(
        cpu(json!({"affinity": [{"mask": 3, "group": 0}]})),
        Rule::CpuAffinity,
        "windows.resources.cpu.affinity",
        "not supported",
    );
    // An annotation plus a different spec setting is two settings.
    let mut v = cpu(json!({"count": 2}));
    v["annotations"] = json!({"io.microsoft.container.processor.weight": "50"});
    violates(
        v,
        Rule::CpuExclusive,
        "windows.resources.cpu and io.microsoft.container.processor.* annotations",
        "count 2, weight (shares) 50",
    );
    let mut v = base();
    v["annotations"] = json!({"io.microsoft.container.processor.limit": "20000"});
    violates(v, Rule::CpuRange, "annotations[\"io.microsoft.container.processor.limit\"]", "above 10000");
    // The same rules hold for the utility VM's sizing.
    violates(
        with(hyperv(), &["windows", "resources"], json!({"cpu": {"count": 1, "maximum": 5}})),
        Rule::CpuExclusive,
        "windows.resources.cpu",
        "count and maximum",
    );
}

#[test]
fn memory_and_storage_rules() {
    violates(
        with(base(), &["windows", "resources"], json!({"memory": {"limit": 1000}})),
        Rule::Memory,
        "windows.resources.memory.limit",
        "less than 1 MiB",
    );
    violates(
        with(base(), &["windows", "resources"], json!({"storage": {"bps": 3000000000u64}})),
        Rule::Storage,
        "windows.resources.storage.bps",
        "32-bit",
    );
    let mut v = base();
    v["annotations"] = json!({"io.microsoft.container.storage.qos.iopsmaximum": "99999999999"});
    violates(v, Rule::Storage, "annotations[\"io.microsoft.container.storage.qos.iopsmaximum\"]", "32-bit");
}

#[test]
fn network_rules() {
    let net = |n: Value| with(base(), &["windows", "network"], n);
    violates(
        net(json!({"networkNamespace": NS, "DNSSearchList": ["a"]})),
        Rule::NetworkExclusive,
        "windows.network",
        "DNSSearchList",
    );
    violates(
        net(json!({"networkNamespace": NS, "allowUnqualifiedDNSQuery": true, "endpointList": ["e"]})),
        Rule::NetworkExclusive,
        "windows.network",
        "endpointList, allowUnqualifiedDNSQuery",
    );
    violates(
        net(json!({"endpointList": ["e1"]})),
        Rule::NetworkEndpointList,
        "windows.network.endpointList",
        "schema v1",
    );
    violates(
        net(json!({"networkNamespace": "default"})),
        Rule::NetworkNamespace,
        "windows.network.networkNamespace",
        "not a GUID",
    );
    violates(
        with(lcow(), &["windows", "network"], json!({"networkNamespace": NS, "DNSSearchList": ["a"]})),
        Rule::NetworkExclusive,
        "windows.network",
        "DNSSearchList",
    );
}

#[test]
fn mount_rules() {
    let mounts = |m: Value| with(base(), &["mounts"], m);
    violates(
        mounts(json!([{"destination": "data", "source": "C:\\d"}])),
        Rule::MountDestination,
        "mounts[0].destination",
        "not an absolute Windows path",
    );
    violates(
        mounts(json!([{"destination": "/data", "source": "C:\\d"}])),
        Rule::MountDestination,
        "mounts[0].destination",
        "not an absolute Windows path",
    );
    violates(
        mounts(json!([{"destination": "C:\\", "source": "C:\\d"}])),
        Rule::MountDestination,
        "mounts[0].destination",
        "drive root",
    );
    violates(
        mounts(json!([{"destination": "", "source": "C:\\d"}])),
        Rule::MountDestination,
        "mounts[0].destination",
        "is empty",
    );
    violates(
        mounts(json!([{"destination": "C:\\a", "source": "C:\\x"}, {"destination": "C:\\a\\b", "source": "C:\\y"}])),
        Rule::MountNested,
        "mounts[1].destination",
        "nested",
    );
    violates(
        mounts(json!([{"destination": "C:\\a\\b", "source": "C:\\x"}, {"destination": "c:\\A", "source": "C:\\y"}])),
        Rule::MountNested,
        "mounts[1].destination",
        "nested",
    );
    violates(
        mounts(json!([{"destination": "C:\\a", "source": "C:\\x"}, {"destination": "C:\\A\\", "source": "C:\\y"}])),
        Rule::MountNested,
        "mounts[1].destination",
        "also the destination of mounts[0]",
    );
    violates(
        mounts(json!([{"destination": "C:\\a", "source": "\\\\server\\share"}])),
        Rule::MountSource,
        "mounts[0].source",
        "UNC",
    );
    violates(
        mounts(json!([{"destination": "C:\\a", "source": "data"}])),
        Rule::MountSource,
        "mounts[0].source",
        "not an absolute local Windows path",
    );
    violates(
        mounts(json!([{"destination": "C:\\a", "source": ""}])),
        Rule::MountSource,
        "mounts[0].source",
        "is empty",
    );
    violates(
        mounts(json!([{"destination": "C:\\a", "source": "sandbox:///tmp"}])),
        Rule::MountSource,
        "mounts[0].source",
        "not supported by hako",
    );
    violates(
        mounts(json!([{"destination": "C:\\a", "source": "C:\\x", "type": "virtual-disk"}])),
        Rule::MountType,
        "mounts[0].type",
        "disk mount",
    );
    violates(
        mounts(json!([{"destination": "C:\\a", "source": "C:\\x", "type": "tmpfs"}])),
        Rule::MountType,
        "mounts[0].type",
        "not a Windows mount type",
    );
    violates(
        mounts(json!([{"destination": "\\\\.\\pipe\\p", "source": "C:\\x"}])),
        Rule::NamedPipe,
        "mounts[0].source",
        "not a named pipe",
    );
    violates(
        mounts(json!([{"destination": "C:\\p", "source": "\\\\.\\pipe\\p"}])),
        Rule::NamedPipe,
        "mounts[0].destination",
        "not a named pipe",
    );
    let mut o = opts();
    o.host.version.build = 17763;
    run_with(mounts(json!([{"destination": "\\\\.\\pipe\\p", "source": "\\\\.\\pipe\\q"}])), &o)
        .expect("pipes work on RS5");
    // Nothing odd is silently dropped: unknown options produce a warning.
    let b = Bundle::from_json(
        Path::new("/b"),
        &mounts(json!([{"destination": "C:\\a", "source": "C:\\x", "options": ["ro", "nosuid"]}])).to_string(),
    )
    .expect("json");
    let plan = translate(&b, &opts()).expect("translates");
    assert!(plan.warnings.iter().any(|w| w.contains("\"nosuid\"")));
    // LCOW: Linux destinations, local sources.
    let lm = |m: Value| with(lcow(), &["mounts"], m);
    violates(
        lm(json!([{"destination": "data", "source": "C:\\d", "type": "bind"}])),
        Rule::MountDestination,
        "mounts[0].destination",
        "not an absolute Linux path",
    );
    violates(
        lm(json!([{"destination": "/d", "source": "\\\\srv\\s", "type": "bind"}])),
        Rule::MountSource,
        "mounts[0].source",
        "UNC",
    );
    violates(
        lm(json!([{"destination": "/d", "source": "relative", "type": "bind"}])),
        Rule::MountSource,
        "mounts[0].source",
        "neither a Windows host directory",
    );
}

#[test]
fn credential_spec_and_device_rules() {
    violates(
        with(base(), &["windows", "credentialSpec"], json!(42)),
        Rule::CredentialSpec,
        "windows.credentialSpec",
        "a JSON number",
    );
    violates(
        with(base(), &["windows", "credentialSpec"], json!("not json")),
        Rule::CredentialSpec,
        "windows.credentialSpec",
        "not a gMSA credential spec",
    );
    violates(
        with(base(), &["windows", "credentialSpec"], json!({"foo": 1})),
        Rule::CredentialSpec,
        "windows.credentialSpec",
        "not a gMSA credential spec",
    );
    violates(
        with(base(), &["windows", "devices"], json!([{"id": "x", "idType": "class"}])),
        Rule::Device,
        "windows.devices[0].id",
        "not a device interface class GUID",
    );
    violates(
        with(base(), &["windows", "devices"], json!([{"id": "x", "idType": "usb"}])),
        Rule::Device,
        "windows.devices[0].idType",
        "\"usb\"",
    );
    violates(
        with(
            hyperv(),
            &["windows", "devices"],
            json!([{"id": "5B45201D-F2F2-4F3B-85BB-30FF1F953599", "idType": "class"}]),
        ),
        Rule::Device,
        "windows.devices",
        "Hyper-V",
    );
    violates(
        with(
            lcow(),
            &["windows", "devices"],
            json!([{"id": "5B45201D-F2F2-4F3B-85BB-30FF1F953599", "idType": "class"}]),
        ),
        Rule::Device,
        "windows.devices",
        "Linux container",
    );
}

#[test]
fn annotation_rules() {
    let ann = |k: &str, v: &str| {
        let mut b = base();
        b["annotations"] = json!({ k: v });
        b
    };
    violates(
        ann("io.microsoft.container.memory.sizeinmb", "lots"),
        Rule::Annotation,
        "annotations[\"io.microsoft.container.memory.sizeinmb\"]",
        "not an unsigned number",
    );
    violates(
        ann("io.microsoft.container.processor.count", "99999999999"),
        Rule::Annotation,
        "annotations[\"io.microsoft.container.processor.count\"]",
        "32 bits",
    );
    violates(
        ann("microsoft.com/hostprocess-container", "true"),
        Rule::Annotation,
        "annotations[\"microsoft.com/hostprocess-container\"]",
        "HostProcess",
    );
    violates(
        ann("microsoft.com/hostprocess-container", "maybe"),
        Rule::Annotation,
        "annotations[\"microsoft.com/hostprocess-container\"]",
        "not a boolean",
    );
    violates(
        ann("hako.image.os.version", "ltsc2022"),
        Rule::Annotation,
        "annotations[\"hako.image.os.version\"]",
        "MAJOR.MINOR.BUILD",
    );
    let lann = |k: &str, v: &str| {
        let mut b = lcow();
        b["annotations"] = json!({ k: v });
        b
    };
    violates(
        lann("io.microsoft.virtualmachine.lcow.preferredrootfstype", "iso"),
        Rule::Annotation,
        "annotations[\"io.microsoft.virtualmachine.lcow.preferredrootfstype\"]",
        "neither initrd nor vhd",
    );
    violates(
        lann("io.microsoft.virtualmachine.devices.virtualpmem.maximumcount", "200"),
        Rule::Annotation,
        "annotations[\"io.microsoft.virtualmachine.devices.virtualpmem.maximumcount\"]",
        "128",
    );
    violates(
        lann("io.microsoft.virtualmachine.bootfilesrootpath", "boot"),
        Rule::Annotation,
        "annotations[\"io.microsoft.virtualmachine.bootfilesrootpath\"]",
        "not an absolute",
    );
    violates(
        lann("io.microsoft.virtualmachine.computetopology.memory.allowovercommit", "yes"),
        Rule::Annotation,
        "annotations[\"io.microsoft.virtualmachine.computetopology.memory.allowovercommit\"]",
        "not a boolean",
    );
    let mut o = opts();
    o.host.version.build = 17763;
    violates_with(
        lann("io.microsoft.virtualmachine.lcow.kerneldirectboot", "true"),
        &o,
        Rule::HostBuild,
        "annotations[\"io.microsoft.virtualmachine.lcow.kerneldirectboot\"]",
        "18286",
    );
}

#[test]
fn process_rules() {
    violates(
        with(base(), &["process"], json!({"cwd": "C:\\"})),
        Rule::Process,
        "process",
        "neither commandLine nor args",
    );
    violates(
        with(base(), &["process"], json!({"args": ["cmd"], "cwd": "app"})),
        Rule::Process,
        "process.cwd",
        "not an absolute Windows path",
    );
    violates(with(lcow(), &["process"], json!({"args": [], "cwd": "/"})), Rule::Process, "process.args", "is empty");
    violates(
        with(lcow(), &["process"], json!({"args": ["sh"], "cwd": "C:\\"})),
        Rule::Process,
        "process.cwd",
        "not an absolute Linux path",
    );
}

#[test]
fn isolation_host_and_id_rules() {
    let mut o = opts();
    o.isolation = Some(Isolation::Process);
    violates_with(lcow(), &o, Rule::Isolation, "linux", "always run in a utility VM");
    violates_with(hyperv(), &o, Rule::Isolation, "windows.hyperv", "requires Hyper-V isolation");
    let mut o = opts();
    o.isolation = Some(Isolation::Lcow);
    violates_with(base(), &o, Rule::Isolation, "linux", "is missing");
    let mut o = opts();
    o.host.version.build = 17134;
    violates_with(base(), &o, Rule::HostBuild, "host", "predates HCS schema v2");
    let mut o = opts();
    o.container_id = "bad id/x".to_string();
    violates_with(base(), &o, Rule::ContainerId, "container id", "\"bad id/x\"");
}

#[test]
fn utility_vm_rules() {
    violates(
        with(hyperv(), &["windows", "hyperv"], json!({"utilityVMPath": "uvm"})),
        Rule::UtilityVm,
        "windows.hyperv.utilityVMPath",
        "not an absolute Windows path",
    );
    fn nothing_exists(_: &str) -> bool {
        false
    }
    let mut o = opts();
    o.probe = Some(nothing_exists);
    violates_with(hyperv(), &o, Rule::UtilityVm, "windows.layerFolders", "no layer has a UtilityVM folder");
}
