//! A Kubernetes pod as one VM (containerd's CRI plugin with hako as the `hako-vm` handler's binary), as Kata
//! Containers and runhcs do it.
//!
//! containerd marks each container it creates for CRI with [`CONTAINER_TYPE_ANNOTATION`] (`sandbox` for the
//! pod's pause container, `container` for the others) and [`SANDBOX_ID_ANNOTATION`] (the sandbox's id).
//!
//! - The **sandbox** boots the pod's VM: it takes the pod's network namespace over, as any VM container does,
//!   and its VM gets one more 9p share, the **pod share** (under `<root>/.pod@<sandbox id>`, outside every
//!   state directory so that removing one never reaches through a bind; tag `pod`, at `/run/hako/shares/pod`
//!   in the guest). On the host the share QEMU exports is a read-only bind mount (made shared, so that what
//!   hako mounts below it later propagates into QEMU's own mount namespace) of a directory only hako writes:
//!   the guest cannot change the paths hako mounts on ([`make_pod_share`]). The VM is
//!   sized for the pod ([`pod_sizing`]).
//! - A **container of the pod** boots nothing: its rootfs and bind-mount sources are bind-mounted on the
//!   host below the pod share's `<id>/` (read-only binds made read-only on the host, so the host kernel refuses the
//!   guest's writes), and the sandbox's supervisor creates it in the same guest, from
//!   `/run/hako/shares/pod/<id>/...`, with its own mount and pid namespaces. The namespaces its config joins
//!   by path (containerd names the sandbox's: `/proc/<sandbox pid>/ns/ipc`, `uts`, `net`) are the sandbox
//!   container's in the guest ([`hako_proto::Op::Create`]'s `sandbox`); the network is the VM's, which the
//!   sandbox shares. Its cgroup limits apply inside the guest (the agent builds it with hako-linux's code).
//! - The VM goes away with the sandbox: deleting the sandbox stops the VM even if containers are left in it,
//!   and those containers are then stopped (their shadows exit when the VM does).

use std::path::{Path, PathBuf};

use hako_runtime::bundle::Bundle;
use hako_runtime::state::Store;
use hako_runtime::ContainerId;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;

use crate::VmError;

/// containerd's annotation that says what a CRI container is: `sandbox` or `container`.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// containerd's annotation that names a CRI container's pod sandbox.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// containerd ≥ 1.7's annotations with the pod's resources (on the sandbox).
pub const SANDBOX_MEMORY_ANNOTATION: &str = "io.kubernetes.cri.sandbox-memory";
/// See [`SANDBOX_MEMORY_ANNOTATION`].
pub const SANDBOX_CPU_QUOTA_ANNOTATION: &str = "io.kubernetes.cri.sandbox-cpu-quota";
/// See [`SANDBOX_MEMORY_ANNOTATION`].
pub const SANDBOX_CPU_PERIOD_ANNOTATION: &str = "io.kubernetes.cri.sandbox-cpu-period";

/// The pod share's 9p mount tag.
pub const POD_SHARE: &str = "pod";
/// Where the pod share appears in the guest.
pub const GUEST_POD_SHARE: &str = "/run/hako/shares/pod";
/// Guest RAM a pod's VM gets on top of what its containers are promised: the kernel, the agent and one
/// hako init per container.
pub const POD_OVERHEAD_MIB: u64 = 64;
/// The containers' memory of a pod whose size nobody states (no pod resources, no annotation).
pub const DEFAULT_POD_MEMORY_MIB: u64 = 256;

/// What a container is to the pod machinery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not a CRI container, or one whose type containerd did not state: a VM of its own.
    Alone,
    /// A pod's sandbox: boots the pod's VM.
    Sandbox,
    /// A container of the pod whose sandbox is named.
    Member(String),
}

/// The role `spec`'s annotations give a container.
pub fn role(spec: &Spec) -> Role {
    let ann = spec.annotations().as_ref();
    let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
    match (get(CONTAINER_TYPE_ANNOTATION), get(SANDBOX_ID_ANNOTATION)) {
        (Some("sandbox"), _) => Role::Sandbox,
        (Some("container"), Some(s)) if !s.is_empty() => Role::Member(s.to_owned()),
        _ => Role::Alone,
    }
}

/// A pod's VM size (vCPUs, MiB): the pod's resources when containerd passes them (≥ 1.7), else the
/// `org.hako.vm.memory_mib` / `org.hako.vm.cpus` pod annotations, else [`DEFAULT_POD_MEMORY_MIB`] and one
/// vCPU; plus [`POD_OVERHEAD_MIB`] of memory. vCPUs never exceed the host's.
pub fn pod_sizing(spec: &Spec) -> (u32, u64) {
    let host_cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let ann = spec.annotations().as_ref();
    let num = |k: &str| ann.and_then(|a| a.get(k)).and_then(|v| v.trim().parse::<i64>().ok()).filter(|n| *n > 0);
    let mut mem = num(SANDBOX_MEMORY_ANNOTATION).map(|b| (b as u64).div_ceil(1 << 20));
    if let Some(m) = num(crate::MEMORY_ANNOTATION) {
        mem = Some(mem.unwrap_or(0).max(m as u64));
    }
    let mem = mem.unwrap_or(DEFAULT_POD_MEMORY_MIB).saturating_add(POD_OVERHEAD_MIB);
    let mut cpus = match (num(SANDBOX_CPU_QUOTA_ANNOTATION), num(SANDBOX_CPU_PERIOD_ANNOTATION)) {
        (Some(q), Some(p)) => u32::try_from((q as u64).div_ceil(p as u64)).unwrap_or(u32::MAX),
        _ => 1,
    };
    if let Some(n) = num(crate::CPUS_ANNOTATION) {
        cpus = cpus.max(u32::try_from(n).unwrap_or(u32::MAX));
    }
    (cpus.clamp(1, host_cpus.max(1)), mem)
}

/// The running sandbox of a pod, as its containers find it in the state store.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Its id.
    pub id: String,
    /// Its host pid (its shadow's), which containerd names in the namespace paths of the pod's containers.
    pub pid: i32,
    /// Its state directory: the supervisor's socket is there.
    pub vm_dir: PathBuf,
    /// The pod share on the host.
    pub share: PathBuf,
    /// The VM's supervisor.
    pub supervisor_pid: i32,
    /// The supervisor's start time.
    pub supervisor_start: u64,
}

/// The isolation of sandbox `id` in the state store at `root`, if it exists there.
pub fn sandbox_isolation(root: &Path, id: &str) -> Option<String> {
    let id = ContainerId::parse(id).ok()?;
    Store::open(root).ok()?.peek(&id).ok().map(|s| s.isolation)
}

/// Refuses a pod sandbox that stays in the host's network namespace (a `hostNetwork: true` pod: its config
/// has no network namespace at all). A VM cannot take the host's own network stack over, and a pod VM without
/// it would leave the pod with no network instead of the host's, so the pod goes to the process-isolated
/// handler instead.
pub fn refuse_host_network(spec: &Spec, id: &str) -> Result<(), VmError> {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    let has_network =
        namespaces.into_iter().flatten().any(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network);
    if has_network {
        return Ok(());
    }
    Err(VmError::Config(format!(
        "pod sandbox {id} uses the host's network (hostNetwork: true, no network namespace in \
         linux.namespaces): a pod VM cannot share the host's network stack; run this pod with the `hako` \
         handler (process isolation), or drop hostNetwork"
    )))
}

/// Finds the running VM sandbox `id` for container `member` in the state store at `root`.
pub fn find_sandbox(root: &Path, id: &str, member: &str) -> Result<Sandbox, VmError> {
    let missing = |why: String| {
        VmError::Config(format!(
            "container {member} belongs to pod sandbox {id} ({SANDBOX_ID_ANNOTATION}), which {why}: create \
             the sandbox first (RunPodSandbox) with the same runtime and --root"
        ))
    };
    let cid = ContainerId::parse(id).map_err(|e| missing(format!("is not a valid id ({e})")))?;
    let store = Store::open(root).map_err(|e| missing(format!("cannot be read ({e})")))?;
    let state = store.peek(&cid).map_err(|e| missing(format!("is not known here ({e})")))?;
    if state.isolation != "vm" {
        return Err(missing(format!("runs with {} isolation, not in a VM", state.isolation)));
    }
    let d: crate::Data = state.backend().map_err(|e| missing(format!("has unreadable state ({e})")))?;
    if d.vm_dir.is_some() {
        return Err(missing("is itself a container of another pod".into()));
    }
    let Some(share) = d.pod_share.clone() else {
        return Err(missing("was not created as a pod sandbox (io.kubernetes.cri.container-type=sandbox)".into()));
    };
    if state.pid <= 0
        || !crate::alive(state.pid, state.pid_start_time)
        || !crate::alive(d.supervisor_pid, d.supervisor_start)
    {
        return Err(VmError::Config(format!(
            "container {member}: the VM of its pod sandbox {id} is not running (it was stopped or killed): \
             remove the pod and create it again"
        )));
    }
    Ok(Sandbox {
        id: id.to_owned(),
        pid: state.pid,
        vm_dir: d.state_dir,
        share,
        supervisor_pid: d.supervisor_pid,
        supervisor_start: d.supervisor_start,
    })
}

fn setup_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> VmError {
    VmError::Setup(format!("{what}: {e}"))
}

/// Where sandbox `id`'s pod share lives in the state store at `root` (not a valid container id, so no
/// container's directory).
pub fn pod_share_path(root: &Path, id: &str) -> PathBuf {
    root.join(format!(".pod@{id}"))
}

/// The pod share's layout under its base directory: `d/` holds the containers' directories and mount points,
/// `s/` is a read-only bind of `d/` (a shared mount) that QEMU exports. The guest can write only inside the
/// binds below `s/<id>/` (each with its own read-only flag), never create, rename or remove an entry of the
/// share or of a container's directory: nothing it does can redirect a path hako mounts on or unmounts.
const STRUCTURE: &str = "d";
/// See [`STRUCTURE`].
const EXPORTED: &str = "s";
/// A private mount (a bind of itself) where a container's bind is made and made read-only before it is moved
/// below the export: a remount does not propagate, so a bind made read-only in place would stay writable in
/// QEMU's mount namespace; a mount moved in propagates with its flags.
const STAGING: &str = "t";

/// Makes the pod share at `base` (0700) and returns the directory QEMU exports: a read-only bind mount of the
/// structure, made shared, so that the binds of the pod's containers made later propagate into QEMU's mount
/// namespace (a slave of this one).
pub fn make_pod_share(base: &Path) -> Result<PathBuf, VmError> {
    use std::os::unix::fs::DirBuilderExt;
    let (d, s, t) = (base.join(STRUCTURE), base.join(EXPORTED), base.join(STAGING));
    for dir in [base, d.as_path(), s.as_path(), t.as_path()] {
        std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(|e| setup_err(dir.display(), e))?;
    }
    mount(Some(&t), &t, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| setup_err(format_args!("bind-mounting the pod share's staging {}", t.display()), e))?;
    mount(None::<&str>, &t, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| setup_err(format_args!("making the pod share's staging {} private", t.display()), e))?;
    let what = |step: &str| format!("{step} the pod share {}", s.display());
    mount(Some(&d), &s, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| setup_err(what("bind-mounting"), e))?;
    mount(None::<&str>, &s, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>)
        .map_err(|e| setup_err(what("making read-only"), e))?;
    mount(None::<&str>, &s, None::<&str>, MsFlags::MS_SHARED, None::<&str>)
        .map_err(|e| setup_err(what("making shared"), e))?;
    Ok(s)
}

/// Removes the pod share at `base`, with every bind still below it. Never deletes through a mount: only
/// empty directories and placeholders are removed.
pub fn remove_pod_share(base: &Path) {
    if !base.exists() {
        return;
    }
    // Detaches the export and every container's bind below it.
    let _ = umount2(&base.join(EXPORTED), MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
    let _ = umount2(&base.join(STAGING), MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
    for e in std::fs::read_dir(base.join(STRUCTURE)).into_iter().flatten().flatten() {
        unbind_member(base, &e.file_name().to_string_lossy());
    }
    for e in std::fs::read_dir(base.join(STAGING)).into_iter().flatten().flatten() {
        remove_placeholder(&e.path());
    }
    for dir in [base.join(STRUCTURE), base.join(EXPORTED), base.join(STAGING), base.to_path_buf()] {
        let _ = std::fs::remove_dir(dir);
    }
}

/// One host path bound below `pod/<id>/` for a container of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The host path (the bundle's rootfs, or a bind mount's source).
    pub host: PathBuf,
    /// Its name below `pod/<id>/`.
    pub name: String,
    /// A file (bound on an empty placeholder file) rather than a directory.
    pub file: bool,
    /// Made read-only on the host.
    pub readonly: bool,
}

/// A pod container's config as the guest sees it, and the host binds it needs.
#[derive(Debug)]
pub struct MemberView {
    /// The config for the guest.
    pub config: serde_json::Value,
    /// What to bind below `pod/<id>/`.
    pub binds: Vec<Bind>,
}

/// Turns a pod container's bundle into the guest's view: its rootfs and bind sources below
/// `/run/hako/shares/pod/<id>/`, its network namespace the VM's, and its other namespace paths checked to
/// name `sandbox`'s (they are joined in the guest). Refuses what cannot cross the VM boundary.
pub fn member_view(spec: &Spec, bundle: &Bundle, id: &str, sandbox: &Sandbox) -> Result<MemberView, VmError> {
    let prefix = format!("/proc/{}/ns/", sandbox.pid);
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        if let Some(p) = ns.path() {
            if !p.to_string_lossy().starts_with(&prefix) {
                return Err(VmError::Config(format!(
                    "linux.namespaces: the {:?} namespace {} is not one of pod sandbox {}'s ({prefix}...): a \
                     container of a VM pod can only join its sandbox's namespaces",
                    ns.typ(),
                    p.display(),
                    sandbox.id
                )));
            }
        }
    }
    crate::refuse_hooks(spec)?;
    let guest_dir = Path::new(GUEST_POD_SHARE).join(id);
    let root_ro = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
    let mut binds = vec![Bind { host: bundle.rootfs.clone(), name: "rootfs".into(), file: false, readonly: root_ro }];
    let mut config = serde_json::to_value(spec).map_err(|e| VmError::Config(e.to_string()))?;
    config["root"]["path"] = serde_json::json!(guest_dir.join("rootfs"));
    if let Some(obj) = config.as_object_mut() {
        obj.remove("hooks");
    }
    if let Some(list) = config.pointer_mut("/linux/namespaces").and_then(|n| n.as_array_mut()) {
        // The VM's network is the pod's: the container stays in the guest's network namespace, the sandbox's.
        list.retain(|n| n.get("type").and_then(|t| t.as_str()) != Some("network"));
    }
    crate::for_each_bind(&mut config, bundle, |m, src, meta, readonly| {
        let name = format!("m{}", binds.len());
        m["source"] = serde_json::json!(guest_dir.join(&name));
        binds.push(Bind { host: src, name, file: !meta.is_dir(), readonly });
        Ok(())
    })?;
    Ok(MemberView { config, binds })
}

/// Binds `binds` below the pod share at `base`, in `<id>/` (0700): the directory and placeholders are made in
/// the structure; each bind is made (and, if read-only, made so) in the private staging mount and then moved
/// onto its place below the export, whence it propagates to QEMU with its flags. On failure what was bound
/// stays for [`unbind_member`] (cleanup) to undo.
pub fn bind_member(base: &Path, id: &str, binds: &[Bind]) -> Result<(), VmError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = base.join(STRUCTURE).join(id);
    std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| setup_err(dir.display(), e))?;
    for b in binds {
        make_placeholder(&dir.join(&b.name), b.file)?;
        // Bound (and made read-only) in the private staging mount, then moved below the export.
        let staged = base.join(STAGING).join(format!("{id}.{}", b.name));
        make_placeholder(&staged, b.file)?;
        let at = base.join(EXPORTED).join(id).join(&b.name);
        let what = || format!("binding {} on {} for the pod's VM", b.host.display(), at.display());
        let result = (|| {
            mount(Some(&b.host), &staged, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(|e| setup_err(what(), e))?;
            if b.readonly {
                mount(
                    None::<&str>,
                    &staged,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .map_err(|e| setup_err(format_args!("{}: read-only", what()), e))?;
            }
            mount(Some(&staged), &at, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .map_err(|e| setup_err(format_args!("{}: moving it in place", what()), e))
        })();
        if result.is_err() {
            let _ = umount2(&staged, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
        }
        remove_placeholder(&staged);
        result?;
    }
    Ok(())
}

/// An empty directory, or an empty file (0600, not following a link), to mount on.
fn make_placeholder(path: &Path, file: bool) -> Result<(), VmError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let made = if file {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map(drop)
    } else {
        std::fs::DirBuilder::new().mode(0o700).create(path)
    };
    made.map_err(|e| setup_err(path.display(), e))
}

/// Removes an empty directory or an empty file; nothing else (a mount point fails with EBUSY and stays).
fn remove_placeholder(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir(path);
        }
        Ok(m) if m.is_file() && m.len() == 0 => {
            let _ = std::fs::remove_file(path);
        }
        _ => {}
    }
}

/// Undoes [`bind_member`] (any prefix of it): detaches each bind and removes what is left, placeholders and
/// empty directories only (never through a mount: a bind that could not be detached keeps its files).
pub fn unbind_member(base: &Path, id: &str) {
    let dir = base.join(STRUCTURE).join(id);
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let _ = umount2(&base.join(EXPORTED).join(id).join(&name), MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
        remove_placeholder(&e.path());
    }
    let _ = std::fs::remove_dir(&dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ann: &[(&str, &str)]) -> Spec {
        let mut s = Spec::default();
        s.set_annotations(Some(ann.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
        s
    }

    #[test]
    fn roles_come_from_containerds_annotations() {
        assert_eq!(role(&spec(&[])), Role::Alone);
        assert_eq!(role(&spec(&[(CONTAINER_TYPE_ANNOTATION, "sandbox"), (SANDBOX_ID_ANNOTATION, "p")])), Role::Sandbox);
        assert_eq!(
            role(&spec(&[(CONTAINER_TYPE_ANNOTATION, "container"), (SANDBOX_ID_ANNOTATION, "p")])),
            Role::Member("p".into())
        );
        assert_eq!(role(&spec(&[(CONTAINER_TYPE_ANNOTATION, "container")])), Role::Alone);
    }

    #[test]
    fn a_host_network_sandbox_is_refused_and_names_the_fix() {
        let with = |namespaces: serde_json::Value| -> Spec {
            serde_json::from_value(serde_json::json!({"ociVersion": "1.0.2", "linux": {"namespaces": namespaces}}))
                .unwrap()
        };
        let e = refuse_host_network(&with(serde_json::json!([{"type": "pid"}, {"type": "ipc"}])), "sb")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pod sandbox sb uses the host's network (hostNetwork: true"), "{e}");
        assert!(e.contains("run this pod with the `hako` handler"), "{e}");
        assert!(refuse_host_network(&with(serde_json::json!([{"type": "network"}])), "sb").is_ok());
        let path = serde_json::json!([{"type": "network", "path": "/var/run/netns/cni-1"}]);
        assert!(refuse_host_network(&with(path), "sb").is_ok());
    }

    fn sandbox() -> Sandbox {
        Sandbox {
            id: "sb".into(),
            pid: 4242,
            vm_dir: "/run/hako/sb".into(),
            share: "/run/hako/.pod@sb".into(),
            supervisor_pid: 1,
            supervisor_start: 1,
        }
    }

    fn member(namespaces: serde_json::Value) -> (tempfile::TempDir, Bundle) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        std::fs::create_dir(d.path().join("data")).unwrap();
        std::fs::write(d.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let config = serde_json::json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs", "readonly": true},
            "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": d.path().join("data"), "options": ["rbind", "ro"]},
                {"destination": "/etc/hosts", "type": "bind", "source": d.path().join("hosts"), "options": ["rbind", "rw"]}
            ],
            "linux": {"namespaces": namespaces}
        });
        std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
        let b = Bundle::load(d.path()).unwrap();
        (d, b)
    }

    #[test]
    fn a_pod_containers_paths_move_below_the_pod_share_and_its_namespaces_are_the_sandboxs() {
        let (d, b) = member(serde_json::json!([
            {"type": "mount"}, {"type": "pid"},
            {"type": "network", "path": "/proc/4242/ns/net"},
            {"type": "ipc", "path": "/proc/4242/ns/ipc"},
            {"type": "uts", "path": "/proc/4242/ns/uts"}
        ]));
        let v = member_view(&b.spec, &b, "c1", &sandbox()).unwrap();
        assert_eq!(v.config["root"]["path"], "/run/hako/shares/pod/c1/rootfs");
        let types: Vec<&str> =
            v.config["linux"]["namespaces"].as_array().unwrap().iter().filter_map(|n| n["type"].as_str()).collect();
        assert_eq!(types, ["mount", "pid", "ipc", "uts"], "the network is the VM's: {}", v.config);
        assert_eq!(v.config["mounts"][0]["source"], "proc");
        assert_eq!(v.config["mounts"][1]["source"], "/run/hako/shares/pod/c1/m1");
        assert_eq!(v.config["mounts"][2]["source"], "/run/hako/shares/pod/c1/m2");
        assert_eq!(
            v.binds,
            [
                Bind { host: d.path().join("rootfs"), name: "rootfs".into(), file: false, readonly: true },
                Bind { host: d.path().join("data"), name: "m1".into(), file: false, readonly: true },
                Bind { host: d.path().join("hosts"), name: "m2".into(), file: true, readonly: false },
            ]
        );
    }

    #[test]
    fn a_pod_container_may_join_only_its_sandboxs_namespaces() {
        let (_d, b) = member(serde_json::json!([{"type": "ipc", "path": "/proc/1/ns/ipc"}]));
        let e = member_view(&b.spec, &b, "c1", &sandbox()).unwrap_err().to_string();
        assert!(e.contains("/proc/1/ns/ipc") && e.contains("pod sandbox sb"), "{e}");
        let (_d, b) = member(serde_json::json!([{"type": "ipc", "path": "/proc/42424/ns/ipc"}]));
        assert!(member_view(&b.spec, &b, "c1", &sandbox()).is_err(), "/proc/42424 is not /proc/4242");
    }

    #[test]
    fn a_pod_vm_is_sized_from_the_pod_plus_the_overhead() {
        assert_eq!(pod_sizing(&spec(&[])), (1, DEFAULT_POD_MEMORY_MIB + POD_OVERHEAD_MIB));
        assert_eq!(pod_sizing(&spec(&[(SANDBOX_MEMORY_ANNOTATION, "104857600")])).1, 100 + POD_OVERHEAD_MIB);
        assert_eq!(pod_sizing(&spec(&[(crate::MEMORY_ANNOTATION, "512")])).1, 512 + POD_OVERHEAD_MIB);
        assert_eq!(
            pod_sizing(&spec(&[(SANDBOX_MEMORY_ANNOTATION, "-5"), (crate::MEMORY_ANNOTATION, "x")])).1,
            DEFAULT_POD_MEMORY_MIB + POD_OVERHEAD_MIB
        );
        let (cpus, _) =
            pod_sizing(&spec(&[(SANDBOX_CPU_QUOTA_ANNOTATION, "150000"), (SANDBOX_CPU_PERIOD_ANNOTATION, "100000")]));
        let host = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        assert_eq!(cpus, 2.min(host));
    }
}
