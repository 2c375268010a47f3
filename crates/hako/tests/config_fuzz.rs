//! Property tests of what hako does with a config.json before it creates anything: parsing and the bundle's
//! checks ([`Bundle::parse_config`]), process isolation's checks ([`ProcessIsolation::check`]: namespaces,
//! capabilities, LSM labels, seccomp, cgroup path, id maps), VM isolation's ([`VmIsolation::check`]: what
//! crosses the VM boundary, the VM's size, its annotations), and what init later parses from the same config
//! (mount options, the seccomp filter, built but never loaded). Input: arbitrary bytes, arbitrary JSON, and
//! above all valid configs (`hako spec`'s and a richer one) with fields replaced by hostile values: huge and
//! negative numbers, long strings, `..` paths, NUL bytes, deep nesting, wrong types. Every input must give a
//! spec or an error with a message: never a panic. Only pure functions run: no container, cgroup or file is
//! created (the bundle is a temporary directory made once).
//!
//! The case count and the seed are fixed, so a run is bounded and reproducible (`PROPTEST_CASES` raises the
//! count for a longer local run); failures are not persisted to files: a failing case found here becomes a
//! plain `#[test]` below.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hako_linux::ProcessIsolation;
use hako_runtime::bundle::Bundle;
use hako_runtime::isolation::CreateOptions;
use hako_vm::VmIsolation;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{json, Value};

/// 256 cases per property (`PROPTEST_CASES` overrides), a fixed seed, no failure files.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    Config { cases, rng_seed: RngSeed::Fixed(0x6861_6b6f), failure_persistence: None, ..Config::default() }
}

/// A bundle directory with a rootfs and a file to bind, made once per test binary.
fn bundle_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("rootfs")).expect("rootfs");
        std::fs::write(d.path().join("hostfile"), "x").expect("hostfile");
        d
    })
    .path()
}

/// `hako spec`'s config (with terminal false, so that the checks go past the console).
fn spec_default() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "hako",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// A config that reaches more of the checks: a user namespace with id maps, resources, devices, seccomp,
/// sysctl, hooks, a bind mount, VM annotations, a cgroups path and a joined namespace.
fn spec_rich() -> Value {
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [5, 10], "umask": 18},
            "args": ["/bin/sh", "-c", "true"],
            "env": ["PATH=/bin", "A=b"],
            "cwd": "/tmp",
            "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}],
            "oomScoreAdj": 100,
            "apparmorProfile": "unconfined",
            "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
            "scheduler": {"policy": "SCHED_OTHER", "nice": 5}
        },
        "root": {"path": "rootfs"},
        "hostname": "h",
        "domainname": "d",
        "annotations": {
            "org.hako.vm.memory_mib": "256",
            "org.hako.vm.cpus": "2",
            "org.hako.vm.tcg_cache_mib": "16",
            "org.hako.vm.template": "on"
        },
        "hooks": {
            "prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}],
            "poststop": [{"path": "/bin/true"}]
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "hostfile", "options": ["rbind", "ro", "nosuid"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=1777"]}
        ],
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "sysctl": {"kernel.shmmax": "4096", "fs.mqueue.msg_max": "10"},
            "cgroupsPath": "/hako-fuzz/c",
            "resources": {
                "memory": {"limit": 134217728, "reservation": 67108864, "swap": 268435456},
                "cpu": {"shares": 512, "quota": 200000, "period": 100000, "cpus": "0-1", "mems": "0"},
                "pids": {"limit": 64},
                "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
            },
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}],
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"},
                {"type": "network", "path": "/proc/self/ns/net"}
            ],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls": [
                    {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
                ]
            },
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "mountLabel": "",
            "rootfsPropagation": "private"
        }
    })
}

/// Runs every check hako makes at create (and what init parses later) on `text`. Panics only if hako does.
fn check_all(text: &[u8]) {
    let dir = bundle_dir();
    let raw: Option<Value> = serde_json::from_slice(text).ok();
    if let Some(v) = &raw {
        if let Some(s) = v.pointer("/linux/seccomp") {
            let _ = hako_linux::seccomp::validate_json(s);
        }
        if let Some(c) = v.pointer("/process/capabilities") {
            let _ = hako_linux::capabilities::validate_json(c);
        }
    }
    let spec = match Bundle::parse_config(&dir.join("config.json"), text) {
        Ok(spec) => spec,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error without a message");
            return;
        }
    };
    let rootfs = match spec.root().as_ref().map(|r| r.path()) {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => dir.join(p),
        None => PathBuf::new(),
    };
    let bundle = Bundle { path: dir.to_owned(), spec, rootfs };
    for opts in [
        CreateOptions::default(),
        CreateOptions { foreground: true, preserve_fds: 2, no_pivot: true, ..CreateOptions::default() },
    ] {
        if let Err(e) = ProcessIsolation::check(&bundle.spec, "fuzz", &opts) {
            assert!(!e.to_string().is_empty(), "an error without a message");
        }
        if let Err(e) = VmIsolation::check(&bundle, std::path::Path::new("/nonexistent/file-shares"), &opts) {
            assert!(!e.to_string().is_empty(), "an error without a message");
        }
    }
    for m in bundle.spec.mounts().iter().flatten() {
        let _ = hako_linux::mountopts::parse(m.options().as_deref().unwrap_or_default());
    }
    if let Some(s) = bundle.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        // Built, never loaded.
        let _ = hako_linux::seccomp::build(s);
    }
}

/// Every JSON pointer in `v` (the root is "").
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                pointers(x, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, i| if i % 2 == 0 { json!([v]) } else { json!({"a": v}) })
}

/// Strings that have broken parsers: paths out of the root, NUL bytes, numbers out of range, long ones.
fn hostile_strings() -> Vec<String> {
    vec![
        String::new(),
        "../../../../etc/passwd".to_owned(),
        "/../../../../proc/self/root".to_owned(),
        "rootfs/../..".to_owned(),
        "a\0b".to_owned(),
        "/proc/self/fd/0".to_owned(),
        ".proc.self.oom_score_adj".to_owned(),
        "../../x".to_owned(),
        "-1".to_owned(),
        "4294967295".to_owned(),
        "18446744073709551616".to_owned(),
        "0-4294967295".to_owned(),
        "4294967295-0,0-4000000000,0-4000000000".to_owned(),
        "x".repeat(5000),
        "/".repeat(5000),
        "\u{202e}\u{feff}é".to_owned(),
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(hostile_strings()),
        2 => any::<String>(),
        2 => "[a-z_.=/0-9-]{0,40}",
        1 => Just("x".repeat(64 << 10)),
    ]
}

/// Numbers at and past the edges of the types hako reads them into.
fn hostile_numbers() -> Vec<Value> {
    vec![
        json!(u64::MAX),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(-1),
        json!(0),
        json!(4294967295u64),
        json!(4294967296u64),
        json!(2147483648u64),
        json!(-2147483649i64),
        json!(9007199254740993u64),
        json!(1e308),
        json!(-0.5),
    ]
}

fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(hostile_numbers()),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        hostile_number(),
        hostile_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys of config.json, so that generated objects land on fields hako reads.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "ociVersion",
            "process",
            "root",
            "path",
            "readonly",
            "mounts",
            "destination",
            "source",
            "type",
            "options",
            "hostname",
            "linux",
            "namespaces",
            "uidMappings",
            "gidMappings",
            "containerID",
            "hostID",
            "size",
            "user",
            "uid",
            "gid",
            "args",
            "cwd",
            "env",
            "capabilities",
            "bounding",
            "sysctl",
            "resources",
            "memory",
            "limit",
            "cpu",
            "quota",
            "period",
            "cpus",
            "devices",
            "seccomp",
            "defaultAction",
            "syscalls",
            "names",
            "action",
            "hooks",
            "prestart",
            "annotations",
            "cgroupsPath",
            "terminal",
            "rlimits",
            "timeOffsets",
            "maskedPaths",
            "readonlyPaths",
            "org.hako.isolation",
            "org.hako.vm.cpus",
            "org.hako.vm.memory_mib",
            "org.hako.vm.tcg_cache_mib",
            "org.hako.vm.template",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z.]{0,12}",
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => hostile_number(),
        4 => hostile_string().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(json!({})),
        1 => Just(json!([])),
        1 => (1..300usize).prop_map(nested),
        2 => any_json(),
        1 => prop::collection::vec(hostile_string().prop_map(Value::from), 0..4).prop_map(Value::Array),
    ]
}

/// The fields of [`spec_rich`] that hako turns into numbers, ids and paths.
const FIELDS: &[&str] = &[
    "/process/user/uid",
    "/process/user/gid",
    "/process/cwd",
    "/process/oomScoreAdj",
    "/process/rlimits/0/hard",
    "/root/path",
    "/mounts/1/source",
    "/mounts/1/destination",
    "/mounts/2/options/0",
    "/linux/uidMappings/0/hostID",
    "/linux/uidMappings/0/size",
    "/linux/uidMappings/0/containerID",
    "/linux/gidMappings/0/hostID",
    "/linux/cgroupsPath",
    "/linux/resources/memory/limit",
    "/linux/resources/cpu/quota",
    "/linux/resources/cpu/period",
    "/linux/resources/cpu/cpus",
    "/linux/resources/pids/limit",
    "/linux/resources/blockIO/weight",
    "/linux/devices/0/major",
    "/linux/devices/0/path",
    "/linux/seccomp/defaultErrnoRet",
    "/linux/seccomp/syscalls/1/args/0/index",
    "/linux/seccomp/syscalls/1/args/0/value",
    "/linux/sysctl/kernel.shmmax",
    "/linux/namespaces/5/path",
    "/hooks/prestart/0/timeout",
    "/annotations/org.hako.vm.memory_mib",
    "/annotations/org.hako.vm.cpus",
    "/annotations/org.hako.vm.tcg_cache_mib",
    "/annotations/org.hako.vm.template",
];

/// A change to a valid config.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value at the n-th pointer (modulo their number).
    Replace(usize, Value),
    /// Remove the value at the n-th pointer.
    Remove(usize),
    /// Add `key: value` to the n-th pointer if it is an object, append `value` if it is an array.
    Add(usize, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), hostile_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        2 => (any::<usize>(), key(), hostile_value()).prop_map(|(i, k, v)| Mutation::Add(i, k, v)),
    ]
}

fn apply(doc: &mut Value, m: &Mutation) {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let (Mutation::Replace(i, _) | Mutation::Remove(i) | Mutation::Add(i, _, _)) = m;
    let at = all[i % all.len()].clone();
    match m {
        Mutation::Replace(_, v) => {
            if let Some(x) = doc.pointer_mut(&at) {
                *x = v.clone();
            }
        }
        Mutation::Remove(_) => {
            let Some((parent, last)) = at.rsplit_once('/') else { return };
            let last = last.replace("~1", "/").replace("~0", "~");
            match doc.pointer_mut(parent) {
                Some(Value::Object(o)) => {
                    o.remove(&last);
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
        Mutation::Add(_, k, v) => match doc.pointer_mut(&at) {
            Some(Value::Object(o)) => {
                o.insert(k.clone(), v.clone());
            }
            Some(Value::Array(a)) => a.push(v.clone()),
            _ => {}
        },
    }
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes as config.json.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_all(&bytes);
    }

    /// Arbitrary JSON, as an object with config.json's keys.
    #[test]
    fn arbitrary_json_never_panics(v in prop::collection::btree_map(key(), any_json(), 0..8)) {
        let v = Value::Object(v.into_iter().collect());
        check_all(&serde_json::to_vec(&v).unwrap());
    }

    /// `hako spec`'s config with up to four hostile changes.
    #[test]
    fn mutated_default_config_never_panics(mutations in prop::collection::vec(mutation(), 1..5)) {
        let mut doc = spec_default();
        for m in &mutations {
            apply(&mut doc, m);
        }
        check_all(&serde_json::to_vec(&doc).unwrap());
    }

    /// A config that reaches every check, with up to four hostile changes.
    #[test]
    fn mutated_rich_config_never_panics(mutations in prop::collection::vec(mutation(), 1..5)) {
        let mut doc = spec_rich();
        for m in &mutations {
            apply(&mut doc, m);
        }
        check_all(&serde_json::to_vec(&doc).unwrap());
    }

    /// Hostile values at the fields that hako turns into numbers, ids and paths.
    #[test]
    fn hostile_values_at_known_fields_never_panic(
        at in prop::sample::select(FIELDS),
        v in prop_oneof![hostile_number(), hostile_string().prop_map(Value::from)],
    ) {
        let mut doc = spec_rich();
        *doc.pointer_mut(at).expect("the pointer is in spec_rich") = v;
        check_all(&serde_json::to_vec(&doc).unwrap());
    }
}

/// The two base configs pass every check, so that mutations of them reach every check.
#[test]
fn the_base_configs_pass_every_check() {
    let dir = bundle_dir();
    for doc in [spec_default(), spec_rich()] {
        let spec = Bundle::parse_config(&dir.join("config.json"), &serde_json::to_vec(&doc).unwrap()).expect("parses");
        let bundle = Bundle { path: dir.to_owned(), rootfs: dir.join("rootfs"), spec };
        ProcessIsolation::check(&bundle.spec, "fuzz", &CreateOptions::default()).expect("process isolation");
        VmIsolation::check(&bundle, std::path::Path::new("/nonexistent/file-shares"), &CreateOptions::default())
            .expect("vm isolation");
    }
}

/// Every fixed hostile value at every field of [`FIELDS`]: the cross product, not a sample.
#[test]
fn every_hostile_value_at_every_known_field() {
    for at in FIELDS {
        for v in hostile_numbers().into_iter().chain(hostile_strings().into_iter().map(Value::from)) {
            let mut doc = spec_rich();
            *doc.pointer_mut(at).expect("the pointer is in spec_rich") = v;
            check_all(&serde_json::to_vec(&doc).unwrap());
        }
    }
}

/// Found by `every_hostile_value_at_every_known_field`: an id map whose hostID range ends past the last id made
/// the host id of the container's user overflow (a panic in debug builds, a wrong owner of exec.fifo in
/// release ones). The kernel refuses such a map; hako now refuses it first, naming it.
#[test]
fn an_id_map_past_the_last_id_is_refused() {
    let dir = bundle_dir();
    for (field, m) in [
        ("uidMappings", json!({"containerID": 0, "hostID": 4294967295u64, "size": 65536})),
        ("gidMappings", json!({"containerID": 0, "hostID": 4294967295u64, "size": 65536})),
        ("uidMappings", json!({"containerID": 4294967295u64, "hostID": 0, "size": 1})),
        ("gidMappings", json!({"containerID": 0, "hostID": 100000, "size": 0})),
    ] {
        let mut doc = spec_rich();
        doc["linux"][field] = json!([m]);
        let spec = Bundle::parse_config(&dir.join("config.json"), &serde_json::to_vec(&doc).unwrap()).unwrap();
        let e = ProcessIsolation::check(&spec, "fuzz", &CreateOptions::default()).unwrap_err().to_string();
        assert!(e.contains(&format!("linux.{field}[0]")) && e.contains("kernel refuses"), "{m}: {e}");
    }
}

/// Found by `every_hostile_value_at_every_known_field`: a cpuset such as `0-4294967295` overflowed the VM's vCPU
/// count (a panic in debug builds); a CPU quota of 2^32 periods wrapped to 0 vCPUs. Both now mean "as many
/// as the host has".
#[test]
fn a_huge_cpuset_or_quota_sizes_the_vm_to_the_host() {
    let host = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    for cpu in [
        json!({"cpus": "0-4294967295"}),
        json!({"cpus": "4294967295-0,0-4000000000,0-4000000000"}),
        json!({"quota": 4294967296u64, "period": 1}),
    ] {
        let mut doc = spec_rich();
        doc["linux"]["resources"]["cpu"] = cpu.clone();
        doc["annotations"] = json!({});
        let spec = Bundle::parse_config(Path::new("config.json"), &serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(hako_vm::sizing(&spec).0, host, "{cpu}");
    }
}
