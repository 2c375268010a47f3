//! Differential tests: the same bundle runs under the reference runtime (runc by default,
//! `HAKO_TEST_REFERENCE` to change it) and under the runtime under test, and what the
//! container observes (ids, capabilities, limits, mounts, devices, cgroup values, sysctls,
//! masked and read-only paths, seccomp, environment) must match, after normalising what may
//! legitimately differ (mount and device numbers, propagation peer ids, the order of mounts,
//! the optional cgroup2 mount of hybrid hosts).

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(10);

/// Prints what the process sees, in `==section==` blocks.
const PROBE: &str = r#"#!/bin/sh
# First, while the shell holds no pipe: its open fds (10 is the script itself).
ls /proc/$$/fd > /dev/shm/.probe-fds
echo "==ids=="; id -u; id -g; id -G | tr ' ' '\n' | sort -n | tr '\n' ' '; echo
echo "==status=="; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Groups|Umask):' /proc/self/status
echo "==hostname=="; hostname
echo "==limits=="; cat /proc/self/limits
echo "==oom=="; cat /proc/self/oom_score_adj
echo "==env=="; env | sort
echo "==cwd=="; pwd
echo "==fds=="; sort -n /dev/shm/.probe-fds | tr '\n' ' '; echo
echo "==mounts=="
awk '{ sep = 0; for (i = 7; i <= NF; i++) if ($i == "-") { sep = i; break }
       prop = ""; for (i = 7; i < sep; i++) { split($i, p, ":"); prop = prop p[1] "," }
       print $5, $6, prop, $(sep + 1), $(sep + 3) }' /proc/self/mountinfo | sort
echo "==dev=="
for f in /dev/* /dev/pts/* /dev/mqueue /dev/shm; do
  if [ -L "$f" ]; then echo "$f -> $(readlink $f)"; else stat -c '%n %F %a %u %g %t %T' "$f"; fi
done | sort
echo "==cgroup=="; cat /proc/self/cgroup
echo "==cgroupfiles=="
for f in memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes pids/pids.max cpu/cpu.shares \
         cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpuset/cpuset.cpus; do
  echo "$f=$(cat /sys/fs/cgroup/$f 2>/dev/null)"
done
echo "==sysctl=="
for s in net/ipv4/ip_forward kernel/shm_rmid_forced net/core/somaxconn; do echo "$s=$(cat /proc/sys/$s)"; done
echo "==masked=="
for p in /proc/keys /proc/timer_list /proc/acpi /sys/firmware /proc/scsi /secret; do
  if [ -d "$p" ]; then echo "$p dir $(ls -A $p | wc -l)"; elif [ -e "$p" ]; then echo "$p file $(cat $p 2>/dev/null | wc -c)"; else echo "$p absent"; fi
done
echo "==readonly=="
for p in /proc/sys/kernel/domainname /proc/sysrq-trigger /etc/passwd /tmp/probe-w /scratch/w; do
  (echo x >> $p) 2>&1 | sed 's/^.*: //' | head -1 | sed "s|^|$p: |"
done
echo "==userns=="; cat /proc/self/uid_map /proc/self/gid_map | tr -s ' '
echo "==seccomp=="; mkdir /tmp/probe-dir 2>&1 | sed 's/^.*: //'; rmdir /tmp/probe-dir 2>/dev/null
echo "==end=="
"#;

const SECTIONS: &[&str] = &[
    "ids",
    "status",
    "hostname",
    "limits",
    "oom",
    "env",
    "cwd",
    "fds",
    "mounts",
    "dev",
    "cgroup",
    "cgroupfiles",
    "sysctl",
    "masked",
    "readonly",
    "userns",
    "seccomp",
];

fn probe_bundle(tag: &str) -> Bundle {
    let b = Bundle::with_tag(tag).args(&["/bin/sh", "/probe.sh"]);
    fs::write(b.rootfs().join("probe.sh"), PROBE).expect("write probe");
    b
}

/// What a comparison may ignore.
struct Norm {
    /// maskedPaths of the config (file targets are binds of a null device).
    masked: Vec<String>,
    /// A user namespace: the default device nodes are bind mounts of the host's, and their
    /// owners (overflow ids or root) depend on how the runtime made them.
    userns: bool,
}

const DEFAULT_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];

/// Removes what may legitimately differ between runtimes from one section.
fn normalise(section: &str, text: &str, norm: &Norm) -> String {
    let masked = &norm.masked;
    let lines = text.lines().filter_map(|l| {
        let l = l.trim_end();
        match section {
            "mounts" => {
                let target = l.split(' ').next().unwrap_or_default();
                // A hybrid host's cgroup2 mount may or may not be mounted in the container.
                if target.starts_with("/sys/fs/cgroup/unified") {
                    return None;
                }
                // Masked files are bind mounts of a null device, from wherever it lives.
                if masked.iter().any(|m| m == target) {
                    return Some(format!("{target} <masked>"));
                }
                if norm.userns && DEFAULT_DEVICES.contains(&target) {
                    return Some(format!("{target} <host device>"));
                }
                // "target opts prop fstype superopts": the per-mount options decide whether a
                // mount is read-only; whether the super block is (runc mounts sysfs ro, crun
                // remounts it) is the runtime's business. The tmpfs under the cgroup mounts
                // is the runtime's own scaffolding.
                let mut f: Vec<String> = l.split(' ').map(String::from).collect();
                // The config asks for the cgroup mount read-only; whether the runtime also makes
                // that scaffolding tmpfs read-only (hako, crun) or not (runc 1.1) is its choice.
                if target == "/sys/fs/cgroup" {
                    if let Some(opts) = f.get_mut(1) {
                        *opts = opts.split(',').filter(|o| *o != "ro" && *o != "rw").collect::<Vec<_>>().join(",");
                    }
                }
                if let Some(sup) = f.get_mut(4) {
                    let kept: Vec<&str> = sup.split(',').filter(|o| *o != "ro" && *o != "rw").collect();
                    *sup = if target == "/sys/fs/cgroup" { String::new() } else { kept.join(",") };
                }
                Some(f.join(" "))
            }
            // crun adds /dev/core -> /proc/kcore; runc does not. Neither is required.
            "dev" if l.starts_with("/dev/core ") => None,
            // "%n %F %a %u %g %t %T" with the file type in words: drop the owner.
            "dev" if norm.userns && !l.contains(" -> ") => {
                let f: Vec<&str> = l.split(' ').collect();
                let n = f.len();
                if n >= 5 {
                    let mut g = f[..n - 4].to_vec();
                    g.extend_from_slice(&f[n - 2..]);
                    Some(g.join(" "))
                } else {
                    Some(l.to_string())
                }
            }
            "cgroup" if l.starts_with("0::") => None,
            _ => Some(l.to_string()),
        }
    });
    let mut v: Vec<String> = lines.collect();
    if section == "mounts" {
        v.sort();
    }
    v.join("\n")
}

fn norm_of(b: &Bundle) -> Norm {
    let masked = b.config()["linux"]["maskedPaths"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let userns = b.config()["linux"]["namespaces"].as_array().is_some_and(|a| a.iter().any(|n| n["type"] == "user"));
    Norm { masked, userns }
}

fn compare(what: &str, reference: &str, tested: &str, norm: &Norm) {
    assert!(reference.contains("==end=="), "{what}: the reference run did not finish its probe:\n{reference}");
    let mut diffs = Vec::new();
    for s in SECTIONS {
        let r = normalise(s, &section(reference, s), norm);
        let t = normalise(s, &section(tested, s), norm);
        if r != t {
            diffs.push(format!("--- section {s}\n reference:\n{r}\n tested:\n{t}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: the container sees something else than under the reference runtime:\n{}",
        diffs.join("\n")
    );
}

/// Runs `b` in the foreground under the reference runtime, then under the runtime under test,
/// with the same id; returns both stdouts.
fn run_both(b: &Bundle, extra: &[&str]) -> (String, String) {
    let reference = Runtime::with_binary(reference_runtime());
    let r = reference.run_id(b.id(), b, extra);
    assert!(r.ok(), "the reference runtime failed on this bundle: {r}");
    assert_no_leftovers(reference.root(), b.id(), &b.cgroup_rel());
    drop(reference);
    let tested = Runtime::new();
    let t = tested.run_id(b.id(), b, extra);
    assert!(t.ok(), "the runtime under test failed on a bundle the reference runs: {t}");
    assert_no_leftovers(tested.root(), b.id(), &b.cgroup_rel());
    (r.stdout, t.stdout)
}

#[test]
fn differential_default_config() {
    let b = probe_bundle("diffdefault");
    let (r, t) = run_both(&b, &[]);
    compare("default config", &r, &t, &norm_of(&b));
}

#[test]
fn differential_default_config_no_pivot() {
    let b = probe_bundle("diffnopivot");
    let (r, t) = run_both(&b, &["--no-pivot"]);
    compare("default config, --no-pivot", &r, &t, &norm_of(&b));
}

#[test]
fn differential_rich_config() {
    let host = tempfile::tempdir().expect("tempdir");
    fs::write(host.path().join("data"), "host data\n").expect("write");
    let src = host.path().to_string_lossy().into_owned();
    let b = probe_bundle("diffrich")
        .set("/hostname", json!("diff-host"))
        .set("/process/user", json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 2000], "umask": 0o027}))
        .set("/process/cwd", json!("/tmp"))
        .push("/process/env", json!("FOO=bar"))
        .set("/process/noNewPrivileges", json!(false))
        .set("/process/oomScoreAdj", json!(300))
        .set(
            "/process/capabilities",
            json!({
                "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETUID"],
                "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_NET_BIND_SERVICE"]
            }),
        )
        .set(
            "/process/rlimits",
            json!([
                {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
                {"type": "RLIMIT_NPROC", "soft": 2000, "hard": 3000},
                {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608}
            ]),
        )
        .set(
            "/linux/sysctl",
            json!({"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "net.core.somaxconn": "1000"}),
        )
        .push("/linux/maskedPaths", json!("/secret"))
        .push("/linux/readonlyPaths", json!("/etc"))
        .mount("/scratch", "tmpfs", "tmpfs", &["size=2m", "mode=1770", "nosuid", "nodev", "noexec"])
        .mount("/data", "bind", &src, &["rbind", "ro", "nosuid"])
        .set(
            "/linux/resources",
            json!({
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": 67108864, "reservation": 33554432},
                "pids": {"limit": 50},
                "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0"}
            }),
        )
        .set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}]
            }),
        )
        .writable();
    fs::write(b.rootfs().join("secret"), "top secret\n").expect("write secret");
    let (r, t) = run_both(&b, &[]);
    compare("rich config", &r, &t, &norm_of(&b));
}

#[test]
fn differential_user_namespace() {
    let b = probe_bundle("diffuserns")
        .namespace("user")
        .namespace("cgroup")
        .set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]))
        .set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    let (r, t) = run_both(&b, &[]);
    compare("user namespace", &r, &t, &norm_of(&b));
}

#[test]
fn differential_sysctl_acceptance() {
    // Which linux.sysctl keys are accepted, with and without the namespace they belong to: hako must accept and
    // refuse exactly what the reference does (the `/` spelling, which runc 1.1 refuses, is left out).
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("kernel.msgmax", "8192", None),
        ("kernel.msgmax", "8192", Some("ipc")),
        ("kernel.shm_rmid_forced", "1", None),
        ("kernel.shm_rmid_forced", "1", Some("ipc")),
        ("fs.mqueue.queues_max", "256", None),
        ("fs.mqueue.queues_max", "256", Some("ipc")),
        ("net.ipv4.ip_forward", "1", None),
        ("net.ipv4.ip_forward", "1", Some("network")),
        ("net.ipv4.conf.all.forwarding", "1", None),
        ("net.core.somaxconn", "1024", None),
        ("kernel.domainname", "example.org", None),
        ("kernel.domainname", "example.org", Some("uts")),
        ("kernel.hostname", "other", None),
        ("kernel.printk_ratelimit_burst", "10", None),
        ("vm.swappiness", "60", None),
        ("kernel.pid_max", "65536", None),
        ("../../x", "1", None),
        (".proc.self.oom_score_adj", "500", None),
    ];
    let reference = Runtime::with_binary(reference_runtime());
    let tested = Runtime::new();
    let mut diffs = Vec::new();
    for (i, (key, value, without)) in cases.iter().enumerate() {
        let mut b = Bundle::with_tag(&format!("diffsysctl{i}")).set("/linux/sysctl", json!({ *key: *value }));
        if let Some(ns) = without {
            b = b.without_namespace(ns);
            if *ns == "uts" {
                b.edit(|v| {
                    v.as_object_mut().expect("config object").remove("hostname");
                });
            }
        }
        let r = reference.run(&b);
        assert_no_leftovers(reference.root(), b.id(), &b.cgroup_rel());
        let t = tested.run(&b);
        assert_no_leftovers(tested.root(), b.id(), &b.cgroup_rel());
        if r.ok() != t.ok() {
            diffs.push(format!(
                "{key} without {without:?}: reference ok={} ({}), tested ok={} ({})",
                r.ok(),
                r.all().trim(),
                t.ok(),
                t.all().trim()
            ));
        }
    }
    assert!(diffs.is_empty(), "sysctl acceptance differs:\n{}", diffs.join("\n"));
}

#[test]
fn differential_devices() {
    let b = probe_bundle("diffdevices")
        .push(
            "/linux/devices",
            json!({"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1000, "gid": 10}),
        )
        .push("/linux/devices", json!({"path": "/dev/sub/myzero", "type": "c", "major": 1, "minor": 5}))
        .push("/linux/resources/devices", json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}));
    let (r, t) = run_both(&b, &[]);
    compare("devices", &r, &t, &norm_of(&b));
    assert!(section(&t, "dev").contains("/dev/mynull character special file 640 1000 10 1 3"), "{t}");
}

#[test]
fn differential_exec() {
    // The same exec flags into the same kind of running container.
    let observe = |rt: &Runtime| {
        let b = probe_bundle("diffexec").args(&["sleep", "1000"]);
        rt.create_start(&b);
        let out = rt
            .cmd(&[
                "exec",
                "--user",
                "1000:1000",
                "--env",
                "EXTRA=1",
                "--cwd",
                "/tmp",
                "--cap",
                "CAP_NET_RAW",
                b.id(),
                "/bin/sh",
                "/probe.sh",
            ])
            .expect_ok();
        rt.delete_force(b.id()).expect_ok();
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
        // The cgroup path holds the bundle's own id: make it comparable.
        (out.stdout.replace(b.id(), "<id>"), norm_of(&b))
    };
    let (r, norm) = observe(&Runtime::with_binary(reference_runtime()));
    let (t, _) = observe(&Runtime::new());
    compare("exec", &r, &t, &norm);
}

#[test]
fn differential_lifecycle_outputs() {
    // state/list/ps of a running container agree in shape with the reference.
    let shape = |rt: &Runtime| {
        let b = Bundle::with_tag("diffstate").args(&["sleep", "1000"]);
        rt.create_start(&b);
        let st = rt.state_json(b.id());
        let mut keys: Vec<String> = st.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        keys.retain(|k| k != "owner" && k != "annotations");
        keys.sort();
        let list: serde_json::Value =
            serde_json::from_str(&rt.cmd(&["list", "--format", "json"]).expect_ok().stdout).expect("list json");
        let mut lkeys: Vec<String> = list[0].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        lkeys.retain(|k| k != "owner" && k != "annotations");
        lkeys.sort();
        let ps = rt.cmd(&["ps", "--format", "json", b.id()]).expect_ok();
        let ps: serde_json::Value = serde_json::from_str(&ps.stdout).expect("ps json");
        rt.wait_status(b.id(), "running", T);
        rt.delete_force(b.id()).expect_ok();
        (keys, lkeys, ps.as_array().map(Vec::len))
    };
    let r = shape(&Runtime::with_binary(reference_runtime()));
    let t = shape(&Runtime::new());
    // The runtime under test may add keys, not lose any.
    for k in &r.0 {
        assert!(t.0.contains(k), "state lacks {k:?}: reference {:?}, tested {:?}", r.0, t.0);
    }
    for k in &r.1 {
        assert!(t.1.contains(k), "list --format json lacks {k:?}: reference {:?}, tested {:?}", r.1, t.1);
    }
    assert_eq!(r.2, t.2, "ps --format json lists another number of processes");
}
