//! VM isolation end to end: the same bundles as the process-isolation tests, run inside hako's micro-VM
//! (selected with the `org.hako.isolation` annotation), through the CLI, with the guest's own kernel.
//!
//! These tests need the VM assets (`scripts/vm-assets`). Without them they print a note and pass, unless
//! `HAKO_REQUIRE_ALL=1` (set by scripts/test, so CI cannot silently skip them).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

const BOOT: Duration = Duration::from_secs(120);

/// VMs under TCG are CPU-heavy: one test at a time keeps each within its timeouts on 2 cores.
static ONE_VM_TEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM_TEST.lock().unwrap_or_else(|p| p.into_inner())
}

fn vm_bundle(tag: &str) -> Bundle {
    Bundle::with_tag(tag).set("/annotations", json!({"org.hako.isolation": "vm"}))
}

/// Processes that belong to container `id` of `root` (QEMU, the supervisor, shadows all name the state dir).
fn vm_processes(root: &Path, id: &str) -> Vec<String> {
    let dir = root.join(id);
    let needle = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().parse::<i32>().is_err() {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&needle) {
            out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    out
}

#[track_caller]
fn assert_vm_gone(rt: &Runtime, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = vm_processes(rt.root(), id);
        if p.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "VM processes of {id} are still running: {p:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!rt.root().join(id).exists(), "state dir of {id} still exists");
}

fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string()
}

#[test]
fn vm_run_has_its_own_kernel_and_exact_exit_code() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let b = vm_bundle("vmrun").sh("uname -r; hostname; id -u; cat /proc/self/status | grep ^NoNewPrivs; exit 7");
    let rt = Runtime::new();
    let out = rt.run(&b);
    assert_eq!(out.code, Some(7), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.len() >= 3, "{out}");
    assert_ne!(lines[0], host_kernel(), "uname -r in the VM is the host's kernel: {out}");
    let b2 = Bundle::with_tag("procrun").sh("uname -r");
    let host = rt.run(&b2).expect_ok();
    assert_eq!(host.stdout.trim(), host_kernel());
    assert_vm_gone(&rt, b.id());
}

#[test]
fn vm_lifecycle_exec_ps_stats_pause_kill_delete() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    // pid 1 of a pid namespace ignores signals it has no handler for: trap TERM.
    let b = vm_bundle("vmlife").sh("trap 'exit 42' TERM; while true; do sleep 0.1; done");
    let rt = Runtime::new();
    let id = b.id();
    rt.create(&b).expect_ok();
    assert_eq!(rt.status(id), "created");
    rt.start(id).expect_ok();
    assert_eq!(rt.status(id), "running");
    let out = rt.exec(id, &["sh", "-c", "echo from-exec; exit 3"]);
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stdout.contains("from-exec"), "{out}");
    // ps prints host pids (runc's callers signal and inspect them): the shadows that stand for the guest's
    // processes, never guest pids.
    let ps = rt.cmd(&["ps", "--format", "json", id]).expect_ok();
    let pids: Vec<i32> = serde_json::from_str(ps.stdout.trim()).unwrap_or_else(|e| panic!("ps json: {e}: {ps}"));
    assert!(pids.contains(&rt.pid(id)), "{ps}");
    for pid in &pids {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(cmd.contains(" vm-shadow ") && cmd.contains(id), "pid {pid} is not a shadow of {id}: {cmd:?}");
    }
    let table = rt.cmd(&["ps", id]).expect_ok();
    assert!(table.stdout.lines().any(|l| l.contains("vm-shadow") && l.contains(&rt.pid(id).to_string())), "{table}");
    let ev = rt.cmd(&["events", "--stats", id]).expect_ok();
    let v: serde_json::Value = serde_json::from_str(ev.stdout.trim()).unwrap_or_else(|e| panic!("events: {e}: {ev}"));
    assert_eq!(v["type"], "stats", "{ev}");
    assert!(v["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1, "{ev}");
    rt.cmd(&["pause", id]).expect_ok();
    assert_eq!(rt.status(id), "paused");
    rt.cmd(&["resume", id]).expect_ok();
    assert_eq!(rt.status(id), "running");
    rt.delete(id).expect_fail().expect_msg(&["--force"]);
    rt.kill(id, "TERM").expect_ok();
    rt.wait_status(id, "stopped", Duration::from_secs(30));
    // What containerd's shim sends after every exit.
    rt.cmd(&["kill", "--all", id, "9"]).expect_ok();
    rt.delete(id).expect_ok();
    assert_vm_gone(&rt, id);
}

#[test]
fn vm_same_semantics_as_process_isolation() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let script = "hostname; id; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; ulimit -n; \
                  touch /ro-test 2>&1 | sed 's/.*: //'; cat /sys/fs/cgroup/memory.max 2>/dev/null || \
                  cat /sys/fs/cgroup/memory/memory.limit_in_bytes";
    let mk = |tag: &str| {
        Bundle::with_tag(tag)
            .set("/hostname", json!("semantics"))
            .set("/process/user", json!({"uid": 1000, "gid": 1000, "additionalGids": [10]}))
            .set("/linux/resources/memory", json!({"limit": 64u64 << 20}))
            .sh(script)
    };
    let rt = Runtime::new();
    let host = rt.run(&mk("semproc")).expect_ok();
    let vm = rt.run(&mk("semvm").set("/annotations", json!({"org.hako.isolation": "vm"}))).expect_ok();
    let h: Vec<&str> = host.stdout.lines().collect();
    let v: Vec<&str> = vm.stdout.lines().collect();
    assert_eq!(h[..h.len() - 1], v[..v.len() - 1], "process:\n{}\nvm:\n{}", host.stdout, vm.stdout);
    // The memory limit: 67108864 in both (v1 or v2 file).
    assert_eq!(h.last(), Some(&"67108864"), "{host}");
    assert_eq!(v.last(), Some(&"67108864"), "{vm}");
}

/// A static program that maps `/out/db` shared and writable, reads what the host wrote at its start, writes
/// after it and syncs: what SQLite or LMDB do with a database on a volume.
const MMAP_PROGRAM: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
int main(void) {
    int fd = open("/out/db", O_RDWR);
    if (fd < 0) { perror("open /out/db"); return 1; }
    char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap shared writable"); return 2; }
    char seen[6] = {0};
    memcpy(seen, p, 5);
    memcpy(p + 100, "from the container", 18);
    if (msync(p, 4096, MS_SYNC)) { perror("msync"); return 3; }
    printf("seen=%s\n", seen);
    return 0;
}
"#;

/// docs/vm-isolation.md, "Rootfs sharing: why 9p": a file on a share (the rootfs or a bind mount) can be mapped shared and
/// writable in the guest as on the host, and what the container writes through the mapping reaches the
/// host's file (9p with `cache=mmap`; the default `cache=none` refuses such a mapping with EINVAL).
#[test]
fn vm_shared_writable_mmap_on_a_bind_mount_reaches_the_host() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    for (tag, vm) in [("mmapproc", false), ("mmapvm", true)] {
        let b = if vm { vm_bundle(tag) } else { Bundle::with_tag(tag) }.with_out_dir().args(&["/mmap-db"]);
        let src = b.path().join("mmap-db.c");
        std::fs::write(&src, MMAP_PROGRAM).unwrap();
        let cc = std::process::Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(b.rootfs().join("mmap-db"))
            .arg(&src)
            .output()
            .expect("run cc");
        assert!(cc.status.success(), "cc: {}", String::from_utf8_lossy(&cc.stderr));
        let mut db = b"hello".to_vec();
        db.resize(4096, 0);
        std::fs::write(b.out_dir().join("db"), &db).unwrap();
        std::fs::set_permissions(b.out_dir().join("db"), std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        let out = rt.run(&b);
        assert!(out.stdout.contains("seen=hello"), "vm={vm}: {out}");
        let after = std::fs::read(b.out_dir().join("db")).unwrap();
        assert_eq!(&after[100..118], b"from the container", "vm={vm}: the write did not reach the host: {out}");
        assert_eq!(after.len(), 4096, "vm={vm}");
    }
}

#[test]
fn vm_selection_errors_and_hyperv() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    let bad = Bundle::with_tag("vmbad").set("/annotations", json!({"org.hako.isolation": "hyperv"}));
    let out = rt.run(&bad).expect_fail();
    out.expect_msg(&["hyperv", "process", "vm"]);
    assert_no_leftovers(rt.root(), bad.id(), &bad.cgroup_rel());
    // runtime-spec's windows.hyperv is the request for Hyper-V isolation: hako runs a VM.
    let hv = Bundle::with_tag("vmhyperv").set("/windows", json!({"hyperv": {}})).sh("uname -r");
    let out = rt.run(&hv).expect_ok();
    assert_ne!(out.stdout.trim(), host_kernel(), "{out}");
    // Joining a host namespace cannot cross into a VM; a network namespace can (its interfaces are taken
    // over), but not the host's own.
    let ns = vm_bundle("vmns").with(|c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "ipc", "path": "/proc/self/ns/ipc"}]);
    });
    rt.run(&ns).expect_fail().expect_msg(&["not possible with VM isolation"]);
    assert_vm_gone(&rt, ns.id());
    let host_net = vm_bundle("vmhostnet").with(|c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "network", "path": "/proc/self/ns/net"}]);
    });
    rt.run(&host_net).expect_fail().expect_msg(&["is the host's", "/proc/self/ns/net"]);
    assert_no_leftovers(rt.root(), host_net.id(), &host_net.cgroup_rel());
}

#[test]
fn vm_faults_end_with_a_stopped_container_and_clean_delete() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    // QEMU dies under the container.
    let b = vm_bundle("vmqemu").args(&["sleep", "1000"]);
    let id = b.id();
    rt.create(&b).expect_ok();
    rt.start(id).expect_ok();
    let qemu: i32 = std::fs::read_to_string(rt.root().join(id).join("qemu.pid")).unwrap().trim().parse().unwrap();
    // SAFETY: kill takes two integers.
    unsafe { libc::kill(qemu, libc::SIGKILL) };
    rt.wait_status(id, "stopped", Duration::from_secs(30));
    rt.cmd(&["kill", "--all", id, "9"]).expect_ok();
    rt.delete(id).expect_ok();
    assert_vm_gone(&rt, id);

    // The supervisor is killed: the container stops and delete --force cleans everything.
    let b = vm_bundle("vmsup").args(&["sleep", "1000"]);
    let id = b.id();
    rt.create(&b).expect_ok();
    let sup: i32 = {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(rt.root().join(id).join("state.json")).unwrap()).unwrap();
        state["backend"]["supervisor_pid"].as_i64().unwrap() as i32
    };
    // SAFETY: kill takes two integers.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    rt.wait_status(id, "stopped", Duration::from_secs(30));
    rt.delete_force(id).expect_ok();
    assert_vm_gone(&rt, id);

    // The guest kernel panics (sysrq crash from a privileged container).
    let b = vm_bundle("vmpanic")
        .with(|c| {
            c["linux"]["readonlyPaths"] = json!([]);
            c["linux"]["maskedPaths"] = json!([]);
        })
        .sh("sleep 0.5; echo c > /proc/sysrq-trigger; sleep 100");
    let out = rt.run(&b);
    assert!(!out.ok(), "a guest kernel panic must not look like success: {out}");
    assert_vm_gone(&rt, b.id());
}

#[test]
fn vm_boot_timeout_and_missing_assets_are_clear() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let b = vm_bundle("vmtimeout").args(&["true"]);
    let mut c = Runtime::new().command(&["run", "--bundle", &b.path().to_string_lossy(), b.id()]);
    c.env("HAKO_VM_BOOT_TIMEOUT_MS", "1");
    let out = run_captured(c, None, BOOT);
    assert!(!out.ok(), "{out}");
    out.expect_msg(&["did not boot"]);
    let b = vm_bundle("vmnoassets").args(&["true"]);
    let root = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(runtime());
    c.args(["--root", &root.path().to_string_lossy(), "run", "--bundle", &b.path().to_string_lossy(), b.id()]);
    c.env("HAKO_VM_ASSETS", "/nonexistent/hako-vm");
    let out = run_captured(c, None, BOOT);
    out.expect_msg(&["guest kernel", "scripts/vm-assets"]);
    assert!(!root.path().join(b.id()).exists());
}

/// The memory measures of docs/vm-isolation.md ("Host memory of a VM") are in effect on a cold boot: the
/// guest's virtio queues are capped (its unreclaimable slab stays small), QEMU runs without transparent huge
/// pages under TCG, its copies of the boot images are paged out, and `org.hako.vm.tcg_cache_mib` reaches QEMU
/// or is refused.
#[test]
fn vm_memory_measures_and_the_tcg_cache_annotation() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    let bad = Bundle::with_tag("vmtbbad")
        .set("/annotations", json!({"org.hako.isolation": "vm", "org.hako.vm.tcg_cache_mib": "lots"}));
    rt.run(&bad).expect_fail().expect_msg(&["org.hako.vm.tcg_cache_mib", "from 1 to 4096"]);
    assert_no_leftovers(rt.root(), bad.id(), &bad.cgroup_rel());

    // A cold boot (no template): the one that loads the kernel image and has a kernel command line.
    let b = Bundle::with_tag("vmtb")
        .set(
            "/annotations",
            json!({"org.hako.isolation": "vm", "org.hako.vm.tcg_cache_mib": "16", "org.hako.vm.template": "off"}),
        )
        .sh("while true; do sleep 1; done");
    let id = b.id();
    rt.create(&b).expect_ok();
    rt.start(id).expect_ok();
    let qemu = std::fs::read_to_string(rt.root().join(id).join("qemu.pid")).unwrap();
    let qemu = qemu.trim();
    let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap()).replace('\0', " ");
    assert!(cmdline.contains("virtio_mmio.max_queue_size=128"), "{cmdline}");
    if cmdline.contains("-accel tcg") {
        assert!(cmdline.contains("tb-size=16"), "{cmdline}");
        let status = std::fs::read_to_string(format!("/proc/{qemu}/status")).unwrap();
        assert!(status.contains("THP_enabled:\t0"), "QEMU under TCG should run without THP:\n{status}");
    }
    // Resident KiB of QEMU's mappings of the kernel image: paged out once the guest is up.
    let smaps = std::fs::read_to_string(format!("/proc/{qemu}/smaps")).unwrap();
    let mut in_kernel = false;
    let mut kernel_rss = 0u64;
    for line in smaps.lines() {
        if line.split_whitespace().next().is_some_and(|f| f.contains('-') && !f.ends_with(':')) {
            in_kernel = line.ends_with("/vmlinux");
        } else if in_kernel && line.starts_with("Rss:") {
            kernel_rss += line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    assert!(kernel_rss < 2048, "QEMU still holds {kernel_rss} KiB of the kernel image");
    // The guest's unreclaimable slab: 12.8 MiB with 1024-entry virtio queues, 3.7 MiB with the cap.
    let out = rt.exec(id, &["sh", "-c", "grep SUnreclaim /proc/meminfo"]).expect_ok();
    let kib: u64 = out.stdout.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    assert!(kib < 8192, "guest slab is {kib} KiB: are the virtio queues capped? {out}");
    rt.cmd(&["delete", "--force", id]).expect_ok();
    assert_vm_gone(&rt, id);
}

/// QEMU's command line of a running VM container.
fn qemu_cmdline(rt: &Runtime, id: &str) -> String {
    let qemu = std::fs::read_to_string(rt.root().join(id).join("qemu.pid")).unwrap();
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/cmdline", qemu.trim())).unwrap()).replace('\0', " ")
}

/// VM templates (docs/vm-isolation.md, "Starting from a template"): a VM starts from a saved VM of its shape
/// without booting the kernel, yet each has its own randomness and the host's time; `org.hako.vm.template`
/// turns it off or is refused; when no template can be made the VM boots its kernel and nothing is left
/// behind.
#[test]
fn vm_templates_start_reseeded_with_the_time_and_fall_back_to_a_boot() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    let templates = tempfile::tempdir().unwrap();
    let with_templates = |args: &[&str]| {
        let mut c = rt.command(args);
        c.env("HAKO_VM_TEMPLATES", templates.path());
        c
    };
    let script =
        "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s; cat /proc/sys/kernel/random/boot_id";
    // The first run makes the template, the others start from it; each prints 16 random bytes, the time and
    // its boot id.
    let mut seen = Vec::new();
    for tag in ["vmtpl1", "vmtpl2", "vmtpl3"] {
        let b = vm_bundle(tag).sh(script);
        let c = with_templates(&["run", "--bundle", &b.path().to_string_lossy(), b.id()]);
        let out = run_captured(c, None, BOOT).expect_ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        let host = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let guest: i64 = lines[1].trim().parse().unwrap_or_else(|e| panic!("date: {e}: {out}"));
        assert!((host - guest).abs() <= 5, "the guest's clock says {guest}, the host's {host}: {out}");
        seen.push(format!("{} {}", lines[0], lines[2]));
        assert_vm_gone(&rt, b.id());
    }
    for (i, a) in seen.iter().enumerate() {
        for b in &seen[i + 1..] {
            let (a, b): (Vec<&str>, Vec<&str>) = (a.split(' ').collect(), b.split(' ').collect());
            assert!(a[0] != b[0] && a[1] != b[1], "VMs from one template share random bytes or boot ids: {seen:?}");
        }
    }
    let made: Vec<String> = std::fs::read_dir(templates.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock") && n != "empty")
        .collect();
    assert_eq!(made.len(), 1, "one template for one shape, no leftovers of its making: {made:?}");

    // A running VM from the template maps its RAM privately and boots no kernel; with the annotation off it
    // boots one.
    let b = vm_bundle("vmtplidle").sh("while true; do sleep 1; done");
    let c = with_templates(&["create", "--bundle", &b.path().to_string_lossy(), b.id()]);
    run_captured(c, None, BOOT).expect_ok();
    let cmdline = qemu_cmdline(&rt, b.id());
    assert!(cmdline.contains("-incoming defer") && cmdline.contains("share=off"), "{cmdline}");
    assert!(!cmdline.contains("-kernel"), "{cmdline}");
    let log = std::fs::read_to_string(rt.root().join(b.id()).join("supervisor.log")).unwrap();
    assert!(log.contains("started from the VM template"), "{log}");
    rt.cmd(&["delete", "--force", b.id()]).expect_ok();
    assert_vm_gone(&rt, b.id());
    let off = Bundle::with_tag("vmtploff")
        .set("/annotations", json!({"org.hako.isolation": "vm", "org.hako.vm.template": "off"}))
        .sh("while true; do sleep 1; done");
    let c = with_templates(&["create", "--bundle", &off.path().to_string_lossy(), off.id()]);
    run_captured(c, None, BOOT).expect_ok();
    let cmdline = qemu_cmdline(&rt, off.id());
    assert!(cmdline.contains("-kernel") && !cmdline.contains("-incoming"), "{cmdline}");
    rt.cmd(&["delete", "--force", off.id()]).expect_ok();
    assert_vm_gone(&rt, off.id());

    let bad = Bundle::with_tag("vmtplbad")
        .set("/annotations", json!({"org.hako.isolation": "vm", "org.hako.vm.template": "sometimes"}));
    rt.run(&bad).expect_fail().expect_msg(&["org.hako.vm.template", "on", "off"]);
    assert_no_leftovers(rt.root(), bad.id(), &bad.cgroup_rel());

    // Two creates of a new shape at once: one makes the template while the other waits for it; both start
    // from it.
    let pair: Vec<Bundle> = ["vmtplpar1", "vmtplpar2"]
        .iter()
        .map(|tag| {
            Bundle::with_tag(tag)
                .set("/annotations", json!({"org.hako.isolation": "vm", "org.hako.vm.memory_mib": "160"}))
                .sh("true")
        })
        .collect();
    std::thread::scope(|scope| {
        let runs: Vec<_> = pair
            .iter()
            .map(|b| {
                let c = with_templates(&["create", "--bundle", &b.path().to_string_lossy(), b.id()]);
                scope.spawn(move || run_captured(c, None, BOOT))
            })
            .collect();
        for r in runs {
            r.join().unwrap().expect_ok();
        }
    });
    for b in &pair {
        let log = std::fs::read_to_string(rt.root().join(b.id()).join("supervisor.log")).unwrap();
        assert!(log.contains("started from the VM template"), "{log}");
        rt.cmd(&["delete", "--force", b.id()]).expect_ok();
        assert_vm_gone(&rt, b.id());
    }
    let count =
        std::fs::read_dir(templates.path()).unwrap().flatten().filter(|e| e.path().join("template").is_file()).count();
    assert_eq!(count, 2, "one template per shape (128 and 160 MiB)");

    // The supervisor is killed while it makes a template: the create fails and leaves no state; the half-made
    // template is removed by the next create, which makes it anew.
    let tmp_dirs = || -> Vec<String> {
        std::fs::read_dir(templates.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect()
    };
    let shape = json!({"org.hako.isolation": "vm", "org.hako.vm.memory_mib": "176"});
    let killed = Bundle::with_tag("vmtplkill").set("/annotations", shape.clone()).sh("true");
    let mut c = with_templates(&["create", "--bundle", &killed.path().to_string_lossy(), killed.id()]);
    let create = c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tmp_dirs().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no template was being made");
        std::thread::sleep(Duration::from_millis(5));
    }
    let maker: i32 = tmp_dirs()[0].rsplit('-').next().unwrap().parse().unwrap();
    // SAFETY: kill takes two integers.
    unsafe { libc::kill(maker, libc::SIGKILL) };
    let status = wait_timeout(create, BOOT).expect("create did not return after its supervisor died");
    assert!(!status.success(), "create must fail when its supervisor is killed");
    assert_no_leftovers(rt.root(), killed.id(), &killed.cgroup_rel());
    let after = Bundle::with_tag("vmtplafter").set("/annotations", shape).sh("true");
    let c = with_templates(&["run", "--bundle", &after.path().to_string_lossy(), after.id()]);
    run_captured(c, None, BOOT).expect_ok();
    assert!(tmp_dirs().is_empty(), "a half-made template outlived its maker: {:?}", tmp_dirs());

    // No template can be made (the templates directory is a file): the VM boots its kernel and says why.
    let blocked = templates.path().join("not-a-dir");
    std::fs::write(&blocked, "").unwrap();
    let b = vm_bundle("vmtplfallback").sh("while true; do sleep 1; done");
    let mut c = rt.command(&["create", "--bundle", &b.path().to_string_lossy(), b.id()]);
    c.env("HAKO_VM_TEMPLATES", &blocked);
    run_captured(c, None, BOOT).expect_ok();
    let cmdline = qemu_cmdline(&rt, b.id());
    assert!(cmdline.contains("-kernel"), "{cmdline}");
    let log = std::fs::read_to_string(rt.root().join(b.id()).join("supervisor.log")).unwrap();
    assert!(log.contains("not-a-dir") && log.contains("booting the kernel instead"), "{log}");
    rt.cmd(&["delete", "--force", b.id()]).expect_ok();
    assert_vm_gone(&rt, b.id());
}

/// A network namespace with two veth pairs to the host, removed when the test ends.
struct TestNetns {
    name: String,
    host_ifs: Vec<String>,
}

impl TestNetns {
    /// `eth0`: `10.<n>.0.2/24` + `fd<n>::2/64` and the default route; `eth1`: `10.<n+1>.0.2/24`; the host's
    /// ends have `.1` and `::1`.
    fn new(n: u8) -> TestNetns {
        let name = format!("hako-vmnet-{}", std::process::id());
        let host_ifs: Vec<String> = (0..2).map(|i| format!("hkh{i}{}", std::process::id() % 100_000)).collect();
        let t = TestNetns { name: name.clone(), host_ifs: host_ifs.clone() };
        let (host_if, host_if1, m) = (&host_ifs[0], &host_ifs[1], n + 1);
        let ns_if = "eth0";
        let steps = [
            format!("netns add {name}"),
            format!("link add {host_if} type veth peer name hkvmtmp{n}"),
            format!("link set hkvmtmp{n} netns {name}"),
            format!("-n {name} link set hkvmtmp{n} name {ns_if}"),
            format!("addr add 10.{n}.0.1/24 dev {host_if}"),
            format!("-6 addr add fd{n}::1/64 dev {host_if} nodad"),
            format!("link set {host_if} up"),
            format!("-n {name} addr add 10.{n}.0.2/24 dev {ns_if}"),
            format!("-n {name} -6 addr add fd{n}::2/64 dev {ns_if} nodad"),
            format!("-n {name} link set {ns_if} up"),
            format!("-n {name} link set lo up"),
            format!("-n {name} route add default via 10.{n}.0.1"),
            format!("link add {host_if1} type veth peer name hkvmtmq{n}"),
            format!("link set hkvmtmq{n} netns {name}"),
            format!("-n {name} link set hkvmtmq{n} name eth1"),
            format!("addr add 10.{m}.0.1/24 dev {host_if1}"),
            format!("link set {host_if1} up"),
            format!("-n {name} addr add 10.{m}.0.2/24 dev eth1"),
            format!("-n {name} link set eth1 up"),
        ];
        for s in steps {
            let ok = std::process::Command::new("ip").args(s.split(' ')).status().map(|s| s.success());
            assert_eq!(ok.ok(), Some(true), "ip {s}");
        }
        t
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        for i in &self.host_ifs {
            let _ = std::process::Command::new("ip").args(["link", "del", i]).status();
        }
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A network namespace named by path (as engines prepare them) becomes the VM's network: each guest
/// interface has its namespace interface's name, MAC address, IPv4 and IPv6 addresses and routes, traffic
/// flows both ways on the right one, and nothing is left in the namespace afterwards.
#[test]
fn vm_takes_over_the_engines_network_namespace() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let net = TestNetns::new(77);
    let mac = std::process::Command::new("ip")
        .args(["-n", &net.name, "-o", "link", "show", "eth0"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap();
    let mac = mac.split("link/ether ").nth(1).and_then(|r| r.split(' ').next()).unwrap().to_string();
    let to_host = std::net::TcpListener::bind("10.77.0.1:7777").unwrap();
    // The second interface: only reachable if the guest's eth1 is the device mirrored to the namespace's eth1.
    let to_host1 = std::net::TcpListener::bind("10.78.0.1:7780").unwrap();
    let b = vm_bundle("vmnet")
        .with(|c| {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "network");
            ns.push(json!({"type": "network", "path": net.path()}));
        })
        .sh("ip -o addr show eth0; ip -o addr show eth1; ip -o link show eth0; ip route; ip -6 route; \
             echo out1 | nc -w 5 10.78.0.1 7780; echo out | nc -w 5 10.77.0.1 7777; nc -l -p 7779 -w 20");
    let rt = Runtime::new();
    let out = std::thread::scope(|s| {
        let run = s.spawn(|| rt.run(&b));
        // What the guest sends to `listener` (busybox nc exits once this side has closed too).
        let receive = |listener: &std::net::TcpListener| {
            listener.set_nonblocking(true).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut conn = loop {
                match listener.accept() {
                    Ok((c, _)) => break c,
                    Err(e) => {
                        if run.is_finished() || std::time::Instant::now() > deadline {
                            panic!("the guest never connected to {:?} ({e})", listener.local_addr());
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            };
            conn.set_nonblocking(false).unwrap();
            let mut got = String::new();
            std::io::Read::read_to_string(&mut conn, &mut got).unwrap();
            got
        };
        assert_eq!(receive(&to_host1).trim(), "out1", "from the guest's eth1");
        assert_eq!(receive(&to_host).trim(), "out", "from the guest's eth0");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match std::net::TcpStream::connect(("10.77.0.2", 7779)) {
                Ok(mut c) => {
                    std::io::Write::write_all(&mut c, b"in\n").unwrap();
                    break;
                }
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "the guest never listened on 10.77.0.2:7779: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        run.join().unwrap()
    })
    .expect_ok();
    for want in [
        "inet 10.77.0.2/24",
        "inet6 fd77::2/64",
        &format!("link/ether {mac}"),
        "default via 10.77.0.1 dev eth0",
        "inet 10.78.0.2/24",
    ] {
        assert!(out.stdout.contains(want), "the guest lacks {want:?}: {out}");
    }
    assert_eq!(out.stdout.lines().last(), Some("in"), "to the guest: {out}");
    assert_vm_gone(&rt, b.id());
    let qdiscs = std::process::Command::new("ip")
        .args(["netns", "exec", &net.name, "tc", "qdisc", "show", "dev", "eth0"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap();
    assert!(!qdiscs.contains("ingress"), "the mirroring outlived the VM: {qdiscs}");
    let links = std::process::Command::new("ip").args(["-n", &net.name, "-o", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("hako0"), "the tap outlived the VM");
}

/// The pid in `<state dir>/qemu.pid`.
fn qemu_pid(rt: &Runtime, id: &str) -> i32 {
    std::fs::read_to_string(rt.root().join(id).join("qemu.pid")).unwrap().trim().parse().unwrap()
}

/// A container that may remount its mounts (CAP_SYS_ADMIN): what a compromised guest kernel could do at most.
fn privileged(b: Bundle) -> Bundle {
    let caps = json!(["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER", "CAP_MKNOD"]);
    b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}))
        .set("/process/noNewPrivileges", json!(false))
}

/// docs/vm-isolation.md, "The VM boundary": a read-only rootfs and a read-only bind mount are shared
/// read-only by QEMU itself, so a root process in the guest that remounts them read-write still cannot
/// write (it stands for a guest kernel that ignores its own read-only flags); a read-write bind mount stays
/// writable (but QEMU, without CAP_MKNOD, makes no device node there), and the missing mount point of a
/// read-only rootfs is made on the host, inside the rootfs.
#[test]
fn vm_read_only_shares_are_read_only_to_the_guest_kernel() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    let b = privileged(vm_bundle("vmroshare")).with_out_dir();
    std::fs::create_dir(b.path().join("ro-dir")).unwrap();
    let ro = b.path().join("ro-dir").to_string_lossy().into_owned();
    let b = b
        .mount("/ro", "bind", &ro, &["rbind", "ro"])
        .sh("mount -o remount,rw,bind / 2>&1; mount -o remount,rw / 2>&1; echo x > /escape; echo root=$?; \
         mount -o remount,rw,bind /ro 2>&1; mount -o remount,rw /ro 2>&1; echo x > /ro/escape; echo ro=$?; \
         echo x > /out/written; echo out=$?; mknod /out/null c 1 3; echo mknod=$?")
        // Only QEMU may refuse the device node: the guest's device cgroup allows it.
        .set("/linux/resources/devices", json!([{"allow": true, "access": "rwm"}]));
    let out = rt.run(&b);
    assert!(!b.rootfs().join("escape").exists(), "the guest wrote into the read-only rootfs: {out}");
    assert!(!b.path().join("ro-dir/escape").exists(), "the guest wrote into a read-only bind mount: {out}");
    assert!(out.stdout.contains("root=1") && out.stdout.contains("ro=1"), "{out}");
    assert!(out.stdout.contains("out=0"), "{out}");
    assert_eq!(b.read_out("written"), "x\n");
    assert!(!b.out_dir().join("null").exists(), "the guest made a device node on the host: {out}");
    assert!(out.stdout.contains("mknod=1"), "{out}");
    assert!(b.rootfs().join("ro").is_dir(), "the mount point /ro is made on the host");
    assert_vm_gone(&rt, b.id());
}

/// docs/vm-isolation.md, "The VM boundary": a bind-mounted file is shared without its siblings (QEMU exports
/// a private directory where its own mount namespace binds the bind-mounted files of that directory), QEMU runs under its seccomp sandbox with
/// only the capabilities 9p needs, and delete leaves nothing.
#[test]
fn vm_a_file_is_shared_without_its_siblings_and_qemu_is_confined() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    let b = vm_bundle("vmfileshare");
    let dir = b.path().join("secrets");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("visible"), "shared\n").unwrap();
    std::fs::write(dir.join("sibling"), "private\n").unwrap();
    std::fs::write(dir.join("also"), "also shared\n").unwrap();
    let src = dir.join("visible").to_string_lossy().into_owned();
    let also = dir.join("also").to_string_lossy().into_owned();
    let b = b
        .mount("/etc/visible", "bind", &src, &["bind", "ro"])
        .mount("/etc/also", "bind", &also, &["bind", "ro"])
        .args(&["sleep", "1000"]);
    let id = b.id();
    rt.create(&b).expect_ok();
    let qemu = qemu_pid(&rt, id);
    let cmdline = qemu_cmdline(&rt, id);
    assert!(!cmdline.contains(&format!("path={},", dir.display())), "the file's directory is shared: {cmdline}");
    // What QEMU can reach of the share: the file, in QEMU's own mount namespace, and nothing beside it.
    let share = rt.root().join(id).join("files/m1");
    let seen = format!("/proc/{qemu}/root{}", share.display());
    let mut names: Vec<String> = std::fs::read_dir(&seen)
        .unwrap_or_else(|e| panic!("{seen}: {e}; QEMU: {cmdline}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["also", "visible"], "{cmdline}");
    assert_eq!(std::fs::read_to_string(format!("{seen}/visible")).unwrap(), "shared\n");
    let meta = std::fs::metadata(rt.root().join(id).join("files")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o700);
    rt.start(id).expect_ok();
    let out = rt.exec(id, &["cat", "/etc/visible", "/etc/also"]).expect_ok();
    assert_eq!(out.stdout, "shared\nalso shared\n");
    // QEMU's confinement: seccomp filter mode, and CAP_CHOWN..CAP_FSETID only.
    let status = std::fs::read_to_string(format!("/proc/{qemu}/status")).unwrap();
    assert!(status.contains("\nSeccomp:\t2\n"), "QEMU runs without its seccomp sandbox:\n{status}");
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(status.contains(&format!("\n{field}:\t000000000000001f\n")), "{field}:\n{status}");
    }
    assert!(status.contains("\nCapInh:\t0000000000000000\n"), "{status}");
    rt.delete_force(id).expect_ok();
    assert_vm_gone(&rt, id);
}

/// Issue 9 item 19: a create that fails in the guest (a missing executable) reports the guest's error and
/// powers the VM off at once (the supervisor is not left for cleanup to kill), leaving nothing.
#[test]
fn vm_a_failed_create_reports_the_error_and_leaves_nothing() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    let b = vm_bundle("vmnoexe").args(&["/no/such/program"]);
    let out = rt.create(&b).expect_fail();
    out.expect_msg(&["/no/such/program"]);
    assert!(!out.all().contains("exited without a word"), "{out}");
    assert_vm_gone(&rt, b.id());
}

/// A VM has room for 23 virtio devices (hako_vm::MAX_VIRTIO_DEVICES): the control port, one share per host
/// directory (the rootfs, each bind-mounted directory, the files of one directory together) and one per network
/// interface. A config that needs more is refused at create, naming the count and the fix, and leaves nothing
/// (before, QEMU refused the 25th device and the guest hung at boot with 24); one that fits exactly runs.
#[test]
fn vm_a_config_with_more_shares_than_the_vm_has_slots_is_refused_up_front() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    let with_dirs = |tag: &str, n: usize| {
        let mut b = vm_bundle(tag).sh("ls -d /d[0-9]* | wc -l");
        for i in 0..n {
            let dir = b.path().join(format!("dir{i}"));
            std::fs::create_dir(&dir).unwrap();
            let src = dir.to_string_lossy().into_owned();
            b = b.mount(&format!("/d{i}"), "bind", &src, &["rbind", "ro"]);
        }
        b
    };
    // The control port, the rootfs and 21 directories: 23.
    let out = rt.run(&with_dirs("vmslotsfit", 21)).expect_ok();
    assert_eq!(out.stdout.trim(), "21", "{out}");
    // One directory more: 24.
    let b = with_dirs("vmslots", 22);
    let out = rt.create(&b).expect_fail();
    out.expect_msg(&["24 virtio devices", "23 shares", "more than the 23", "process isolation"]);
    assert_vm_gone(&rt, b.id());
}

/// Issue 9 item 17: a `create` killed while its VM boots takes the VM with it (the supervisor learns that
/// the create died before it finished), and `delete --force` then cleans the rest.
#[test]
fn vm_a_killed_create_takes_its_vm_with_it() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    let b = vm_bundle("vmkilled").set("/annotations/org.hako.vm.template", json!("off")).args(&["sleep", "1000"]);
    let id = b.id();
    rt.track(id);
    let mut cmd = rt.command(&["create", "--bundle", &b.path().to_string_lossy(), id]);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + BOOT;
    while !vm_processes(rt.root(), id).iter().any(|p| p.contains("qemu")) {
        assert!(std::time::Instant::now() < deadline, "no QEMU for {id}");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = wait_timeout(child, BOOT);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = vm_processes(rt.root(), id);
        if p.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the VM outlived its killed create: {p:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.delete_force(id).expect_ok();
    assert_vm_gone(&rt, id);
}

/// Issue 9 item 9: the helpers hako starts for a VM container (supervisor, shadow, QEMU) hold none of the
/// fds hako or its caller had open: no pty master or slave beyond the shadow's stdio, no readiness pipe,
/// no fd the engine leaked to hako.
#[test]
fn vm_helpers_hold_no_stray_fds() {
    if !vm_ready() {
        return;
    }
    let _one = serial();
    let rt = Runtime::new();
    let b = vm_bundle("vmfds").set("/process/terminal", json!(true)).args(&["sleep", "1000"]);
    let id = b.id();
    rt.track(id);
    let sock = ConsoleSocket::new();
    let marker = b.path().join("leaked-fd");
    let mut cmd =
        rt.command(&["create", "--bundle", &b.path().to_string_lossy(), "--console-socket", &sock.path_str(), id]);
    leak_marker(&mut cmd, &marker);
    let out = run_captured(cmd, None, BOOT);
    assert!(out.ok(), "{out}");
    let _master = sock.recv_master(BOOT);
    let state = rt.state_json(id);
    let sup = {
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(rt.root().join(id).join("state.json")).unwrap()).unwrap();
        raw["backend"]["supervisor_pid"].as_i64().unwrap() as i32
    };
    let helpers = [("supervisor", sup), ("shadow", state["pid"].as_i64().unwrap() as i32), ("QEMU", qemu_pid(&rt, id))];
    for (name, pid) in helpers {
        let fds = fds_of(pid);
        let stray: Vec<_> = fds
            .iter()
            .filter(|(fd, target, _)| {
                *fd > 2
                    && (target.contains("leaked-fd")
                        || target.starts_with("/dev/pts/")
                        || target == "/dev/ptmx"
                        // The supervisor reads QEMU's stderr from a pipe; nobody else holds one.
                        || (target.starts_with("pipe:") && name != "supervisor"))
            })
            .collect();
        assert!(stray.is_empty(), "{name} ({pid}) holds {stray:?}; all its fds: {fds:?}");
    }
    rt.delete_force(id).expect_ok();
    assert_vm_gone(&rt, id);
}
