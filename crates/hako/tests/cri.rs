//! containerd's CRI plugin drives the runtime under test as Kubernetes does: a client on the CRI
//! gRPC API does what the kubelet does (RunPodSandbox, CreateContainer, StartContainer,
//! ContainerStatus, the container's log, ExecSync, StopContainer, StopPodSandbox,
//! RemovePodSandbox), and containerd starts the runtime through its runc shim
//! (`io.containerd.runc.v2` with `BinaryName`) as the `hako` handler (process isolation) and as the
//! `hako-vm` handler (its `BinaryName` a link named `hako-vm`: a pod is one VM).
//!
//! The `hako-vm` pods boot VMs from the assets `HAKO_VM_ASSETS` names (default /var/lib/hako/vm);
//! containerd and its shims inherit this test's environment, so the variable reaches hako.
//!
//! Everything runs in a scratch directory of this test process: containerd is started in private
//! mount and network namespaces (tmpfs on /run and /var/lib, so the shims' sockets and libcni's
//! cache never reach the host, and a bridge CNI network that exists only there), with its own
//! config, local images imported from an OCI archive written here, and a private cgroup parent.
//! The guard's drop removes the pods, stops containerd and its shims by PID and removes the cgroups.
//!
//! Needs root and the Debian packages containerd, containernetworking-plugins, iproute2,
//! busybox-static (and protobuf-compiler to build the CRI client).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec as CriImage, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, Mount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PodSandboxState, PodSandboxStatusRequest,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
    StopPodSandboxRequest, UpdateContainerResourcesRequest, VersionRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

#[path = "common/host.rs"]
#[allow(dead_code, unreachable_pub)]
mod host;
#[path = "common/image.rs"]
#[allow(dead_code, unreachable_pub)]
mod image;

/// The sandbox (pause) image: a shell that leaves on SIGTERM and otherwise waits forever.
const PAUSE: &str = "localhost/hako-cri-pause:1";
/// The workload image: busybox.
const BUSYBOX: &str = "localhost/hako-cri-busybox:1";
/// How long one CRI call may take before the test fails (StopPodSandbox hung forever when the
/// runtime refused containerd's `kill --all`).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The runtime under test, as an absolute path (containerd needs one for `BinaryName`).
fn runtime() -> PathBuf {
    let path = match std::env::var_os("HAKO_TEST_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_hako")),
    };
    fs::canonicalize(&path).unwrap_or_else(|e| panic!("runtime under test {}: {e}", path.display()))
}

/// A containerd with its CRI plugin, in private namespaces, and a CRI client connected to it.
struct Cri {
    dir: PathBuf,
    containerd: Child,
    client: RuntimeServiceClient<Channel>,
    tokio: tokio::runtime::Runtime,
    /// The cgroup under which every pod's cgroups live (`/<cgroup_root>/pod<uid>/<id>`).
    cgroup_root: String,
    /// containerd's mount namespace (`mnt:[inode]`): every process in it is this test's.
    mnt_ns: String,
}

impl Cri {
    fn start(tag: &str) -> Cri {
        // SAFETY: geteuid has no preconditions and cannot fail.
        assert_eq!(unsafe { libc::geteuid() }, 0, "the CRI test starts containerd and containers: run it as root");
        for tool in ["/usr/bin/containerd", "/usr/bin/ctr", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local"] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: apt-get install containerd containernetworking-plugins"
            );
        }
        let dir = std::env::temp_dir().join(format!("hako-cri-{tag}-{}", std::process::id()));
        if dir.exists() {
            host::detach_mounts_under(&dir);
            fs::remove_dir_all(&dir).expect("remove stale scratch directory");
        }
        for sub in ["net.d", "logs", "images", "bin"] {
            fs::create_dir_all(dir.join(sub)).expect("create scratch directory");
        }
        let archive = Self::images(&dir.join("images"));
        let cgroup_root = format!("hakocri-{tag}-{}", std::process::id());
        std::os::unix::fs::symlink(runtime(), dir.join("bin/hako-vm")).expect("link bin/hako-vm to the runtime");
        Self::write_config(&dir);
        let log = fs::File::create(dir.join("containerd.log")).expect("create containerd log");
        // The host's /var/lib/hako (VM assets) stays visible under the tmpfs on /var/lib.
        let script = r#"
            set -e
            ip link set lo up
            mkdir -p "$2/host-var-lib-hako"
            if [ -d /var/lib/hako ]; then mount --bind /var/lib/hako "$2/host-var-lib-hako"; fi
            mount -t tmpfs -o mode=755 tmpfs /run
            mount -t tmpfs -o mode=755 tmpfs /var/lib
            mkdir /var/lib/hako
            mount --bind "$2/host-var-lib-hako" /var/lib/hako
            exec containerd --config "$1""#;
        let containerd = Command::new("unshare")
            .args(["-m", "-n", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(dir.join("config.toml"))
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start containerd in private namespaces (unshare)");
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        // The socket file appears before containerd serves on it: retry the connection until it answers.
        let sock = dir.join("containerd.sock");
        let mut last_error = String::from("no socket yet");
        let mut client = None;
        host::wait_for(Duration::from_secs(30), || {
            if sock.exists() {
                match tokio.block_on(connect(sock.clone())) {
                    Ok(c) => client = Some(c),
                    Err(e) => last_error = e,
                }
            }
            client.is_some()
        });
        let cri = match client {
            Some(client) => {
                let mnt_ns = fs::read_link(format!("/proc/{}/ns/mnt", containerd.id()))
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Cri { dir, containerd, client, tokio, cgroup_root, mnt_ns }
            }
            None => {
                let mut containerd = containerd;
                let _ = containerd.kill();
                let _ = containerd.wait();
                let log = fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
                panic!("containerd did not answer on {} ({last_error}); its log:\n{log}", sock.display());
            }
        };
        let import = Command::new("ctr")
            .arg("--address")
            .arg(cri.dir.join("containerd.sock"))
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(&archive)
            .output()
            .expect("run ctr");
        if !import.status.success() {
            cri.fail(&format!("ctr images import: {}", String::from_utf8_lossy(&import.stderr)));
        }
        cri
    }

    /// Writes the pause and busybox images into one OCI archive.
    fn images(dir: &Path) -> PathBuf {
        let rootfs = dir.join("rootfs");
        image::busybox_rootfs(&rootfs);
        let tar = dir.join("rootfs.tar");
        image::tar_rootfs(&rootfs, &tar);
        let archive = dir.join("images.tar");
        let pause = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";
        image::write_oci_archive(
            &tar,
            &dir.join("layout"),
            &archive,
            &[
                image::ImageSpec {
                    name: PAUSE,
                    config: serde_json::json!({ "Env": ["PATH=/bin"], "Entrypoint": ["/bin/sh", "-c", pause] }),
                },
                image::ImageSpec {
                    name: BUSYBOX,
                    config: serde_json::json!({ "Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/" }),
                },
            ],
        );
        archive
    }

    fn write_config(dir: &Path) {
        let d = dir.display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  netns_mounts_under_state_dir = true
  # this machine kind has no CAP_SYS_RESOURCE: the pause container's -998 cannot be set
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "hako"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hako]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hako.options]
        BinaryName = "{runtime}"
        Root = "{d}/hako-root"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "{d}/runc-root"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hako-vm]
      runtime_type = "io.containerd.runc.v2"
      pod_annotations = ["org.hako.*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hako-vm.options]
        BinaryName = "{d}/bin/hako-vm"
        # short: a VM's sockets live in <Root>/k8s.io/<64-character id>/ (a tmpfs of containerd's namespace)
        Root = "/run/hako-vm"
"#,
            runtime = runtime().display(),
        );
        fs::write(dir.join("config.toml"), config).expect("write containerd config");
        let net = serde_json::json!({
            "cniVersion": "1.0.0", "name": "hako-cri", "plugins": [{
                "type": "bridge", "bridge": "cni-hako0", "isGateway": true, "ipMasq": false,
                "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.88.0.0/24" }]],
                          "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": format!("{d}/cni-ipam") },
            }],
        });
        fs::write(dir.join("net.d/10-hako-cri.conflist"), net.to_string()).expect("write CNI config");
    }

    /// One CRI call that must fail, bounded by [`CALL_TIMEOUT`]: its error message; panics with containerd's log
    /// when it succeeds or does not answer.
    #[track_caller]
    fn call_refused<T: std::fmt::Debug, F>(
        &mut self,
        what: &str,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> String
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let fut = f(self.client.clone());
        match self.tokio.block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await }) {
            Ok(Err(status)) => status.message().to_owned(),
            other => self.fail(&format!("{what} was expected to fail: {other:?}")),
        }
    }

    /// Panics with `what` and the end of containerd's log.
    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        let log = fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!("{what}\ncontainerd's log ends with:\n{}", tail.join("\n"));
    }

    /// One CRI call, bounded by [`CALL_TIMEOUT`]; panics with containerd's log when it fails.
    #[track_caller]
    fn call<T, F>(&mut self, what: &str, f: impl FnOnce(RuntimeServiceClient<Channel>) -> F) -> T
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let fut = f(self.client.clone());
        match self.tokio.block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await }) {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => self.fail(&format!("{what}: {}", status.message())),
            Err(_) => self.fail(&format!("{what}: no answer in {CALL_TIMEOUT:?}")),
        }
    }

    fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let uid = format!("{name}-uid-{}", std::process::id());
        let log_directory = self.dir.join("logs").join(&uid);
        fs::create_dir_all(&log_directory).expect("create pod log directory");
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_directory.to_string_lossy().into_owned(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/pod{uid}", self.cgroup_root),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn run_pod(&mut self, config: &PodSandboxConfig, handler: &str) -> String {
        let req = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: handler.into() };
        self.call("RunPodSandbox", |mut c| async move { c.run_pod_sandbox(req).await }).pod_sandbox_id
    }

    /// CreateContainer and StartContainer of `sh -c script` in the pod; returns the container id.
    fn start_container(&mut self, pod: &str, pod_config: &PodSandboxConfig, name: &str, script: &str) -> String {
        self.start_container_with(pod, pod_config, name, script, None)
    }

    /// [`Cri::start_container`] with resources.
    fn start_container_with(
        &mut self,
        pod: &str,
        pod_config: &PodSandboxConfig,
        name: &str,
        script: &str,
        resources: Option<LinuxContainerResources>,
    ) -> String {
        let security = LinuxContainerSecurityContext { namespace_options: Some(namespaces()), ..Default::default() };
        self.start_container_as(pod, pod_config, name, script, resources, security, Vec::new())
    }

    /// CreateContainer of `config` in pod `pod`; returns the container's id.
    fn create_container(&mut self, pod: &str, pod_config: &PodSandboxConfig, config: ContainerConfig) -> String {
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        };
        self.call("CreateContainer", |mut c| async move { c.create_container(req).await }).container_id
    }

    /// [`Cri::start_container_with`] with a security context and volumes.
    #[allow(clippy::too_many_arguments)]
    fn start_container_as(
        &mut self,
        pod: &str,
        pod_config: &PodSandboxConfig,
        name: &str,
        script: &str,
        resources: Option<LinuxContainerResources>,
        security: LinuxContainerSecurityContext,
        mounts: Vec<Mount>,
    ) -> String {
        let config = ContainerConfig {
            mounts,
            linux: Some(LinuxContainerConfig { security_context: Some(security), resources }),
            ..container_config(name, &["/bin/sh", "-c", script])
        };
        self.create_and_start(pod, pod_config, config)
    }

    /// CreateContainer and StartContainer of `config` in pod `pod`; returns the container's id.
    fn create_and_start(&mut self, pod: &str, pod_config: &PodSandboxConfig, config: ContainerConfig) -> String {
        let id = self.create_container(pod, pod_config, config);
        let req = StartContainerRequest { container_id: id.clone() };
        self.call("StartContainer", |mut c| async move { c.start_container(req).await });
        id
    }

    fn status(&mut self, id: &str) -> ContainerStatus {
        let req = ContainerStatusRequest { container_id: id.into(), verbose: false };
        let status = self.call("ContainerStatus", |mut c| async move { c.container_status(req).await }).status;
        status.unwrap_or_else(|| self.fail(&format!("ContainerStatus of {id}: no status")))
    }

    /// Polls ContainerStatus until the container is reported exited.
    #[track_caller]
    fn wait_exited(&mut self, id: &str, timeout: Duration) -> ContainerStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let s = self.status(id);
            if s.state == ContainerState::ContainerExited as i32 {
                return s;
            }
            if std::time::Instant::now() > deadline {
                self.fail(&format!(
                    "container {id} was never reported exited (state {}, reason {:?})",
                    s.state, s.reason
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// ExecSync of `sh -c script` in container `id`: (exit code, stdout, stderr).
    #[track_caller]
    fn exec(&mut self, id: &str, script: &str) -> (i32, String, String) {
        let req = ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 60,
        };
        let out = self.call("ExecSync", |mut c| async move { c.exec_sync(req).await });
        (
            out.exit_code,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// UpdateContainerResources: the container's memory limit, in bytes.
    fn update_memory(&mut self, id: &str, bytes: i64) {
        let req = UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(memory(bytes)),
            ..Default::default()
        };
        self.call("UpdateContainerResources", |mut c| async move { c.update_container_resources(req).await });
    }

    fn pod_state(&mut self, pod: &str) -> i32 {
        let req = PodSandboxStatusRequest { pod_sandbox_id: pod.into(), verbose: false };
        let status = self.call("PodSandboxStatus", |mut c| async move { c.pod_sandbox_status(req).await }).status;
        status.map_or(-1, |s| s.state)
    }

    fn stop_and_remove_pod(&mut self, pod: &str) {
        let req = StopPodSandboxRequest { pod_sandbox_id: pod.into() };
        self.call("StopPodSandbox", |mut c| async move { c.stop_pod_sandbox(req).await });
        let req = RemovePodSandboxRequest { pod_sandbox_id: pod.into() };
        self.call("RemovePodSandbox", |mut c| async move { c.remove_pod_sandbox(req).await });
    }

    /// The containerd process's pid (its namespaces are the pods' host side).
    fn containerd_pid(&self) -> u32 {
        self.containerd.id()
    }

    /// The `hako-vm` handler's root (/run/hako-vm in containerd's mount namespace), seen from here.
    fn vm_root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/run/hako-vm", self.containerd_pid()))
    }

    /// Stops and removes every pod left (a failed test's), then stops containerd and its shims.
    fn teardown(&mut self) {
        let mut c = self.client.clone();
        let pods = self.tokio.block_on(async move {
            tokio::time::timeout(CALL_TIMEOUT, c.list_pod_sandbox(ListPodSandboxRequest { filter: None })).await
        });
        if let Ok(Ok(pods)) = pods {
            for pod in pods.into_inner().items {
                let mut c = self.client.clone();
                let _ = self.tokio.block_on(async move {
                    let stop_and_remove = async {
                        let _ = c.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() }).await;
                        c.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.id }).await
                    };
                    tokio::time::timeout(Duration::from_secs(20), stop_and_remove).await
                });
            }
        }
        let pid = self.containerd.id() as libc::pid_t;
        // SAFETY: kill takes two integers; `pid` is our unreaped child, so it cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let exited = host::wait_for(Duration::from_secs(5), || matches!(self.containerd.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = self.containerd.kill();
            let _ = self.containerd.wait();
        }
        host::kill_shims_of(&self.dir.join("containerd.sock").to_string_lossy());
        // What a failed test left in containerd's namespaces (a VM's supervisor and shadows; QEMU dies with
        // its supervisor): killed by PID.
        let host_ns = fs::read_link("/proc/self/ns/mnt").map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
        if !self.mnt_ns.is_empty() && self.mnt_ns != host_ns {
            for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<libc::pid_t>() else { continue };
                if fs::read_link(e.path().join("ns/mnt")).is_ok_and(|l| l.to_string_lossy() == self.mnt_ns) {
                    // SAFETY: kill takes two integers; the process is in this test's private mount namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        host::remove_cgroup_tree(&self.cgroup_root);
        host::detach_mounts_under(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Linux resources with a memory limit.
fn memory(bytes: i64) -> LinuxContainerResources {
    LinuxContainerResources {
        memory_limit_in_bytes: bytes,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        ..Default::default()
    }
}

/// The host's memory limit of cgroup `rel` (cgroup v2's memory.max or v1's memory.limit_in_bytes).
fn host_memory_limit(rel: &str) -> Option<String> {
    let rel = rel.trim_start_matches('/');
    host::cgroup_mounts()
        .iter()
        .find_map(|m| {
            ["memory.max", "memory.limit_in_bytes"].iter().find_map(|f| fs::read_to_string(m.join(rel).join(f)).ok())
        })
        .map(|v| v.trim().to_string())
}

/// Pod network, own pid namespace, pod IPC: what the kubelet asks for by default.
fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A busybox container `name` running `command` in the pod's default namespaces, logging to `<name>.log`.
fn container_config(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(CriImage { image: BUSYBOX.into(), ..Default::default() }),
        command: command.iter().map(|c| c.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            resources: None,
        }),
        ..Default::default()
    }
}

/// The namespace options of a pod made by [`Cri::pod_config`], to ask for other than the defaults.
fn pod_namespaces(config: &mut PodSandboxConfig) -> &mut NamespaceOption {
    config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("pod_config sets the pod's namespace options")
}

/// Connects to the CRI service and checks that it answers (its Version call).
async fn connect(sock: PathBuf) -> Result<RuntimeServiceClient<Channel>, String> {
    let channel = Endpoint::try_from("http://[::]:50051")
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(sock).await?)) }
        }))
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut client = RuntimeServiceClient::new(channel);
    client.version(VersionRequest { version: "v1".into() }).await.map_err(|s| s.message().to_string())?;
    Ok(client)
}

/// The pod's life as the kubelet drives it, on the `hako` handler: a container that exits is
/// reported exited with its code and log (containerd's shim sends `kill --all ID 9` after every
/// exit, which the runtime must accept on a stopped container), ExecSync, StopContainer of a
/// container that ignores SIGTERM, StopPodSandbox and RemovePodSandbox, and nothing left behind.
#[test]
fn cri_pod_lifecycle_on_the_hako_handler() {
    let mut cri = Cri::start("proc");
    let pod_config = cri.pod_config("lifecycle");
    let pod = cri.run_pod(&pod_config, "hako");

    let short = cri.start_container(&pod, &pod_config, "short", "echo hello-from-cri; echo to-stderr >&2; exit 3");
    let s = cri.wait_exited(&short, Duration::from_secs(30));
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"), "{s:?}");
    let log = fs::read_to_string(Path::new(&pod_config.log_directory).join("short.log")).unwrap_or_default();
    assert!(log.contains(" stdout F hello-from-cri"), "container log: {log:?}");
    assert!(log.contains(" stderr F to-stderr"), "container log: {log:?}");
    let req = RemoveContainerRequest { container_id: short.clone() };
    cri.call("RemoveContainer", |mut c| async move { c.remove_container(req).await });

    let long = cri.start_container(&pod, &pod_config, "long", "exec sleep 3600");
    let req = ExecSyncRequest {
        container_id: long.clone(),
        cmd: vec!["sh".into(), "-c".into(), r#"echo exec-out; tr '\0' ' ' < /proc/1/cmdline; echo; exit 7"#.into()],
        timeout: 20,
    };
    let out = cri.call("ExecSync", |mut c| async move { c.exec_sync(req).await });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.exit_code, 7, "ExecSync: {stdout}");
    assert!(stdout.contains("exec-out") && stdout.contains("sleep 3600"), "ExecSync stdout: {stdout:?}");
    // UpdateContainerResources reaches the container's cgroup (`hako update --resources -`).
    let pod_cgroup = format!("{}/pod{}", cri.cgroup_root, pod_config.metadata.as_ref().map_or("", |m| m.uid.as_str()));
    cri.update_memory(&long, 96 << 20);
    assert_eq!(host_memory_limit(&format!("{pod_cgroup}/{long}")).as_deref(), Some("100663296"));
    // pid 1 has no SIGTERM handler, so StopContainer ends with SIGKILL after its timeout.
    let req = StopContainerRequest { container_id: long.clone(), timeout: 1 };
    cri.call("StopContainer", |mut c| async move { c.stop_container(req).await });
    let s = cri.wait_exited(&long, Duration::from_secs(30));
    assert_eq!(s.exit_code, 137, "{s:?}");

    let req = StopPodSandboxRequest { pod_sandbox_id: pod.clone() };
    cri.call("StopPodSandbox", |mut c| async move { c.stop_pod_sandbox(req).await });
    let req = RemovePodSandboxRequest { pod_sandbox_id: pod.clone() };
    cri.call("RemovePodSandbox", |mut c| async move { c.remove_pod_sandbox(req).await });
    let pods =
        cri.call(
            "ListPodSandbox",
            |mut c| async move { c.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await },
        );
    assert!(pods.items.is_empty(), "pods left: {:?}", pods.items);

    let log = fs::read_to_string(cri.dir.join("containerd.log")).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("level=error")) {
        assert!(!line.contains("TaskExit") && !line.contains("failed to stop"), "containerd logged: {line}");
    }
    // The runtime's state of every container is gone, and so are their cgroups.
    let root = cri.dir.join("hako-root/k8s.io");
    let left: Vec<String> = fs::read_dir(&root)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime state left in {}: {left:?}", root.display());
    for id in [&pod, &short, &long] {
        assert!(!host::cgroup_exists(&format!("{pod_cgroup}/{id}")), "cgroup of {id} left behind");
    }
}

/// The host's boot id and kernel release.
fn host_identity() -> (String, String) {
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("host boot id");
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("host kernel release");
    (boot.trim().to_string(), release.trim().to_string())
}

/// What of the `hako-vm` pods is left: processes (supervisors, shadows, QEMU, shims: anything whose command
/// line names one of `ids`), mounts in containerd's mount namespace, taps and other links in its network
/// namespace, the runtime's state (pod shares included) and the pods' network namespaces.
fn vm_leftovers(cri: &Cri, ids: &[&String]) -> Vec<String> {
    let root = cri.vm_root();
    let mut left = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if ids.iter().any(|id| cmd.contains(id.as_str())) {
            left.push(format!("process {pid}: {cmd}"));
        }
    }
    let mountinfo = fs::read_to_string(format!("/proc/{}/mountinfo", cri.containerd_pid())).unwrap_or_default();
    left.extend(mountinfo.lines().filter(|l| l.contains("/run/hako-vm/")).map(|l| format!("mount: {l}")));
    let links = Command::new("nsenter")
        .args(["-t", &cri.containerd_pid().to_string(), "-n", "ip", "-o", "link"])
        .output()
        .expect("nsenter ip link");
    for l in String::from_utf8_lossy(&links.stdout).lines() {
        let name = l.split(':').nth(1).unwrap_or("").trim();
        if !["lo", "cni-hako0"].contains(&name) {
            left.push(format!("link in containerd's network namespace: {l}"));
        }
    }
    for dir in [root.join("k8s.io"), cri.dir.join("state/netns")] {
        // .vm-accel.json: the root's cache of the accelerator probe, kept on purpose.
        for e in fs::read_dir(&dir).into_iter().flatten().flatten().filter(|e| e.file_name() != ".vm-accel.json") {
            left.push(format!("{} left in {}", e.file_name().to_string_lossy(), dir.display()));
        }
    }
    left
}

/// A pod on the `hako-vm` handler is one VM: the sandbox boots it and takes the pod's network over, and
/// every container of the pod runs in that same guest (same boot id, a kernel that is not the host's) with
/// its own mount and pid namespaces, reaching the others on localhost; the VM is sized for the pod; each
/// container's memory limit holds inside the guest and follows UpdateContainerResources; a container that
/// fails reports its exit code and log; a pod whose VM is killed is reported NOTREADY and can still be
/// stopped and removed; a `tty: true` container gets a terminal and its output is logged; a
/// shareProcessNamespace pod's containers share the sandbox's pid namespace in the guest; a hostNetwork pod is
/// refused with the fix; and nothing is left behind.
#[test]
fn cri_pod_is_one_vm_on_the_hako_vm_handler() {
    // The VM assets (scripts/vm-assets), as crates/hako/tests/vm.rs needs them; a missing one skips the test,
    // which fails under HAKO_REQUIRE_ALL=1.
    let assets = PathBuf::from(std::env::var("HAKO_VM_ASSETS").unwrap_or_else(|_| "/var/lib/hako/vm".into()));
    if !assets.join("vmlinux").is_file() || !assets.join("initramfs.cpio.gz").is_file() {
        host::skip(&format!("the VM assets are missing in {}: run scripts/vm-assets", assets.display()));
        return;
    }
    let (host_boot, host_kernel) = host_identity();
    let mut cri = Cri::start("vm");
    let mut pod_config = cri.pod_config("vmpod");
    // Allowed through the handler's pod_annotations: the containers' memory, to which the overhead is added.
    pod_config.annotations.insert("org.hako.vm.memory_mib".into(), "320".into());
    let pod = cri.run_pod(&pod_config, "hako-vm");
    assert_eq!(cri.pod_state(&pod), PodSandboxState::SandboxReady as i32);

    let web = cri.start_container(
        &pod,
        &pod_config,
        "web",
        "echo hello-from-web > /tmp/index.html; echo web-up; exec httpd -f -p 8080 -h /tmp",
    );
    let client = cri.start_container_with(&pod, &pod_config, "client", "exec sleep 3600", Some(memory(64 << 20)));

    let identity = "cat /proc/sys/kernel/random/boot_id; uname -r";
    let (code, web_id, err) = cri.exec(&web, identity);
    assert_eq!(code, 0, "{web_id} {err}");
    let (code, client_id, err) = cri.exec(&client, identity);
    assert_eq!(code, 0, "{client_id} {err}");
    assert_eq!(web_id, client_id, "the pod's two containers run in different kernels");
    let mut lines = web_id.lines();
    assert_ne!(lines.next(), Some(host_boot.as_str()), "the pod runs in the host's kernel: {web_id}");
    assert_ne!(lines.next(), Some(host_kernel.as_str()), "the pod runs in the host's kernel: {web_id}");

    // localhost is the pod's: the client reaches the web container's server. Each has its own pid namespace.
    let (code, out, err) = cri.exec(
        &client,
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8080/index.html && break; sleep 1; done; \
         tr '\\0' ' ' < /proc/1/cmdline; echo; ip -o -4 addr show eth0",
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("hello-from-web"), "the client did not reach the web container on localhost: {out} {err}");
    assert!(out.contains("sleep 3600"), "the client's pid 1 is not its own process: {out}");
    assert!(out.contains("10.88.0."), "the pod's network is not the CNI's: {out}");

    // The VM is sized for the pod: 320 MiB for the containers plus the overhead.
    let (_, meminfo, _) = cri.exec(&client, "head -n1 /proc/meminfo");
    let kib: u64 = meminfo.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((300 << 10..=(320 + 64) << 10).contains(&kib), "the pod's VM has {meminfo}");

    // The container's cgroup limits hold inside the guest, and UpdateContainerResources changes them.
    // (cgroup v2 in the guest: the container's /sys/fs/cgroup is its own cgroup, as runc mounts it.)
    let limit = "grep -q ' /sys/fs/cgroup .* - cgroup2 ' /proc/self/mountinfo && cat /sys/fs/cgroup/memory.max";
    let (code, out, err) = cri.exec(&client, limit);
    assert_eq!((code, out.trim()), (0, "67108864"), "memory.max in the guest: {out} {err}");
    cri.update_memory(&client, 96 << 20);
    let (code, out, err) = cri.exec(&client, limit);
    assert_eq!((code, out.trim()), (0, "100663296"), "memory.max in the guest after the update: {out} {err}");

    // A container that fails reports it, with its log.
    let failing = cri.start_container(&pod, &pod_config, "failing", "echo about-to-fail >&2; exit 3");
    let s = cri.wait_exited(&failing, Duration::from_secs(60));
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"), "{s:?}");
    let log = fs::read_to_string(Path::new(&pod_config.log_directory).join("failing.log")).unwrap_or_default();
    assert!(log.contains(" stderr F about-to-fail"), "container log: {log:?}");
    let log = fs::read_to_string(Path::new(&pod_config.log_directory).join("web.log")).unwrap_or_default();
    assert!(log.contains(" stdout F web-up"), "container log: {log:?}");

    // A container with a terminal (`tty: true`, as `kubectl run -t` makes it): containerd's shim passes a
    // console socket, the process's stdio is a pty of the guest (`tty` names it /dev/pts/0, as under runc),
    // and what it writes reaches the log.
    let script = "tty; [ -t 0 ] && [ -t 1 ] && echo both-terminals";
    let config = ContainerConfig { tty: true, ..container_config("tty", &["/bin/sh", "-c", script]) };
    let tty = cri.create_and_start(&pod, &pod_config, config);
    let s = cri.wait_exited(&tty, Duration::from_secs(60));
    assert_eq!(s.exit_code, 0, "{s:?}");
    let log = fs::read_to_string(Path::new(&pod_config.log_directory).join("tty.log")).unwrap_or_default();
    assert!(log.contains(" stdout F /dev/pts/") && log.contains("both-terminals"), "container log: {log:?}");

    // A container that cannot start (its executable is missing in its image) fails StartContainer with the
    // guest's error, and leaves the pod's VM and its other containers as they were.
    let config = container_config("missing", &["/no/such/program"]);
    let missing = cri.create_container(&pod, &pod_config, config);
    let req = StartContainerRequest { container_id: missing.clone() };
    let m =
        cri.call_refused("StartContainer of a missing program", |mut c| async move { c.start_container(req).await });
    assert!(m.contains("/no/such/program"), "{m}");
    let (code, out, err) = cri.exec(&web, "echo still-serving");
    assert_eq!((code, out.trim()), (0, "still-serving"), "{err}");
    let req = RemoveContainerRequest { container_id: missing.clone() };
    cri.call("RemoveContainer", |mut c| async move { c.remove_container(req).await });

    let req = StopContainerRequest { container_id: client.clone(), timeout: 1 };
    cri.call("StopContainer", |mut c| async move { c.stop_container(req).await });
    let s = cri.wait_exited(&client, Duration::from_secs(60));
    assert_eq!(s.exit_code, 137, "{s:?}");
    cri.stop_and_remove_pod(&pod);

    // A pod whose VM dies is NOTREADY, and can be stopped and removed. It is a hostPID pod: its containers
    // run in the guest's own pid namespace, where the agent is pid 1.
    let mut doomed_config = cri.pod_config("doomed");
    pod_namespaces(&mut doomed_config).pid = NamespaceMode::Node as i32;
    let doomed = cri.run_pod(&doomed_config, "hako-vm");
    // The guest cannot change the pod share's layout on the host, only write inside a container's rootfs: a
    // root process in the guest's own mount namespace (a container of a hostPID pod, in the guest's own pid
    // namespace, with CAP_SYS_ADMIN: it stands for a hostile guest kernel) tries.
    let ro_volume = cri.dir.join("ro-volume");
    fs::create_dir_all(&ro_volume).expect("create the read-only volume");
    fs::write(ro_volume.join("keep"), "kept").expect("write into the read-only volume");
    let hostile = cri.start_container_as(
        &doomed,
        &doomed_config,
        "hostile",
        "exec sleep 3600",
        None,
        LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption { pid: NamespaceMode::Node as i32, ..namespaces() }),
            capabilities: Some(Capability {
                add_capabilities: vec!["SYS_ADMIN".into(), "SYS_PTRACE".into(), "SYS_CHROOT".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
        vec![Mount {
            container_path: "/ro-volume".into(),
            host_path: ro_volume.to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        }],
    );
    let share = "/run/hako/shares/pod";
    let (code, out, err) = cri.exec(
        &hostile,
        &format!(
            "nsenter -t 1 -m sh -c 'mkdir {share}/evil; mv {share}/{hostile} {share}/moved; \
             rmdir {share}/{hostile}/rootfs; ln -s / {share}/{hostile}/root-link; \
             echo from-the-guest > {share}/{hostile}/rootfs/tmp/written && echo rootfs-writable'"
        ),
    );
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(out.trim(), "rootfs-writable", "{out} {err}");
    assert_eq!(err.matches("Read-only file system").count(), 4, "the guest changed the pod share: {err}");
    let (_, out, _) = cri.exec(&hostile, "cat /tmp/written");
    assert_eq!(out.trim(), "from-the-guest");
    // A read-only volume stays read-only whatever the guest's mounts say: the host's bind refuses the write.
    let (_, out, err) = cri.exec(
        &hostile,
        &format!(
            "nsenter -t 1 -m sh -c 'for m in {share}/{hostile}/m*; do \
             if [ -f $m/keep ]; then echo found; mount -o remount,rw $m 2>/dev/null; echo x > $m/written; fi; done'"
        ),
    );
    assert_eq!(out.trim(), "found", "the read-only volume is not below the pod share: {out} {err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!ro_volume.join("written").exists(), "the guest wrote into a read-only volume");

    let sleeper = cri.start_container(&doomed, &doomed_config, "sleeper", "exec sleep 3600");
    let qemu_pid = fs::read_to_string(cri.vm_root().join("k8s.io").join(&doomed).join("qemu.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<libc::pid_t>().ok())
        .unwrap_or_else(|| cri.fail("the doomed pod's VM has no qemu.pid"));
    // SAFETY: kill takes two integers; the pid is QEMU's, which its supervisor holds as its unreaped child.
    assert_eq!(unsafe { libc::kill(qemu_pid, libc::SIGKILL) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while cri.pod_state(&doomed) != PodSandboxState::SandboxNotready as i32 {
        if std::time::Instant::now() > deadline {
            cri.fail("the pod whose VM was killed is still reported ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = cri.wait_exited(&sleeper, Duration::from_secs(60));
    assert_ne!(s.exit_code, 0, "{s:?}");
    cri.stop_and_remove_pod(&doomed);

    // shareProcessNamespace: the pod's containers share the sandbox's pid namespace in the guest, where pid 1
    // is the pause process, and see each other's processes, as under runc.
    let mut shared_config = cri.pod_config("shared");
    pod_namespaces(&mut shared_config).pid = NamespaceMode::Pod as i32;
    let shared = cri.run_pod(&shared_config, "hako-vm");
    let in_pod_pid = NamespaceOption { pid: NamespaceMode::Pod as i32, ..namespaces() };
    let security =
        || LinuxContainerSecurityContext { namespace_options: Some(in_pod_pid.clone()), ..Default::default() };
    let first =
        cri.start_container_as(&shared, &shared_config, "first", "exec sleep 3601", None, security(), Vec::new());
    let second =
        cri.start_container_as(&shared, &shared_config, "second", "exec sleep 3602", None, security(), Vec::new());
    let (code, out, err) = cri.exec(
        &second,
        "tr '\\0' ' ' < /proc/1/cmdline; echo; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done",
    );
    assert_eq!(code, 0, "{out} {err}");
    // The test's pause image is a shell loop (see Cri::start).
    let pause = out.lines().next().unwrap_or_default();
    assert!(pause.contains("trap 'exit 0' TERM INT"), "pid 1 is not the pod's pause: {out}");
    assert!(out.contains("sleep 3601") && out.contains("sleep 3602"), "the pod's processes are not shared: {out}");
    cri.stop_and_remove_pod(&shared);

    // hostNetwork: a VM cannot share the host's network, and RunPodSandbox says so instead of starting a pod
    // with no network.
    let mut host_net_config = cri.pod_config("hostnet");
    pod_namespaces(&mut host_net_config).network = NamespaceMode::Node as i32;
    let req = RunPodSandboxRequest { config: Some(host_net_config), runtime_handler: "hako-vm".into() };
    let m = cri.call_refused("RunPodSandbox of a hostNetwork pod on hako-vm", |mut c| async move {
        c.run_pod_sandbox(req).await
    });
    assert!(m.contains("hostNetwork") && m.contains("`hako` handler"), "{m}");

    let pods =
        cri.call(
            "ListPodSandbox",
            |mut c| async move { c.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await },
        );
    assert!(pods.items.is_empty(), "pods left: {:?}", pods.items);
    let ids = [&pod, &web, &client, &failing, &tty, &missing, &doomed, &hostile, &sleeper, &shared, &first, &second];
    let left = vm_leftovers(&cri, &ids);
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
    for config in [&pod_config, &doomed_config, &shared_config] {
        let uid = config.metadata.as_ref().map_or("", |m| m.uid.as_str());
        let cgroup = format!("{}/pod{uid}", cri.cgroup_root);
        for id in ids {
            assert!(!host::cgroup_exists(&format!("{cgroup}/{id}")), "cgroup of {id} left behind");
        }
    }
}

/// Median of `v` in milliseconds.
fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// The proportional set size (KiB) of every process whose command line contains `needle`.
fn pss_kib(needle: &str) -> u64 {
    let mut total = 0;
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let cmd = String::from_utf8_lossy(&fs::read(e.path().join("cmdline")).unwrap_or_default()).replace('\0', " ");
        if !cmd.contains(needle) {
            continue;
        }
        let rollup = fs::read_to_string(e.path().join("smaps_rollup")).unwrap_or_default();
        total += rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

impl Cri {
    /// One pod as the kubelet starts it, timed from RunPodSandbox to the container's exit (ContainerStatus
    /// polled every 5 ms), then stopped and removed (untimed). Returns the time.
    fn timed_pod(&mut self, handler: &str, round: usize) -> Duration {
        let config = self.pod_config(&format!("bench-{handler}-{round}"));
        let t = std::time::Instant::now();
        let pod = self.run_pod(&config, handler);
        let id = self.start_container(&pod, &config, "true", "true");
        let s = self.wait_exited_every(&id, Duration::from_millis(5));
        let elapsed = t.elapsed();
        assert_eq!(s.exit_code, 0, "{s:?}");
        self.stop_and_remove_pod(&pod);
        elapsed
    }

    /// CreateContainer + StartContainer + exit of `true` in the running pod `pod`.
    fn timed_second_container(&mut self, pod: &str, config: &PodSandboxConfig, round: usize) -> Duration {
        let t = std::time::Instant::now();
        let id = self.start_container(pod, config, &format!("second-{round}"), "true");
        let s = self.wait_exited_every(&id, Duration::from_millis(5));
        let elapsed = t.elapsed();
        assert_eq!(s.exit_code, 0, "{s:?}");
        let req = RemoveContainerRequest { container_id: id };
        self.call("RemoveContainer", |mut c| async move { c.remove_container(req).await });
        elapsed
    }

    fn wait_exited_every(&mut self, id: &str, every: Duration) -> ContainerStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.status(id);
            if s.state == ContainerState::ContainerExited as i32 {
                return s;
            }
            if std::time::Instant::now() > deadline {
                self.fail(&format!("container {id} never exited"));
            }
            std::thread::sleep(every);
        }
    }
}

/// The CRI benchmark (bench/cri runs it; not part of the suite: `--ignored`): pod start (RunPodSandbox +
/// CreateContainer + StartContainer of `true` to its exit) on the `hako` handler against runc's, interleaved
/// in one run; the same on `hako-vm`; a second container started in a running pod (hako-vm against hako);
/// and the idle memory (PSS of QEMU, supervisor and shadows) of 10 `hako-vm` pods at once. Rounds:
/// `HAKO_CRI_BENCH_ROUNDS` (default 10; VM rows use half); the markdown table goes to `HAKO_CRI_BENCH_OUT`
/// and stdout. Every pod's container must exit 0.
#[test]
#[ignore = "a benchmark: bench/cri runs it"]
fn cri_benchmark() {
    let rounds: usize = std::env::var("HAKO_CRI_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let vm_rounds = rounds.div_ceil(2);
    let mut cri = Cri::start("bench");
    // Warm-up: the first pod of each handler pays for first-time work (image snapshots, the VM template).
    for handler in ["runc", "hako", "hako-vm"] {
        cri.timed_pod(handler, 0);
    }
    let (mut runc, mut hako, mut vm) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        runc.push(cri.timed_pod("runc", round));
        hako.push(cri.timed_pod("hako", round));
        if round <= vm_rounds {
            vm.push(cri.timed_pod("hako-vm", round));
        }
    }
    let mut second = Vec::new();
    for handler in ["hako", "hako-vm"] {
        let config = cri.pod_config(&format!("second-{handler}"));
        let pod = cri.run_pod(&config, handler);
        cri.start_container(&pod, &config, "first", "exec sleep 3600");
        cri.timed_second_container(&pod, &config, 0);
        let n = if handler == "hako-vm" { vm_rounds } else { rounds };
        second.push((handler, (1..=n).map(|r| cri.timed_second_container(&pod, &config, r)).collect::<Vec<_>>()));
        cri.stop_and_remove_pod(&pod);
    }
    let mut pods = Vec::new();
    for i in 0..10 {
        let config = cri.pod_config(&format!("idle-{i}"));
        let pod = cri.run_pod(&config, "hako-vm");
        cri.start_container(&pod, &config, "sleeper", "exec sleep 3600");
        pods.push(pod);
    }
    // Let the guests settle (boot-time work done), then read each pod's PSS.
    std::thread::sleep(Duration::from_secs(5));
    let per_pod: Vec<u64> = pods.iter().map(|p| pss_kib(&format!("/run/hako-vm/k8s.io/{p}"))).collect();
    for pod in pods {
        cri.stop_and_remove_pod(&pod);
    }
    let total: u64 = per_pod.iter().sum();
    let mut table = String::from("| measurement | median | runs |\n|---|---|---|\n");
    for (what, v) in
        [("pod start, runc handler", runc), ("pod start, hako handler", hako), ("pod start, hako-vm handler", vm)]
    {
        let n = v.len();
        table.push_str(&format!("| {what} | {:.1} ms | {n} |\n", median_ms(v)));
    }
    for (handler, v) in second {
        let n = v.len();
        table.push_str(&format!("| second container in a running pod, {handler} | {:.1} ms | {n} |\n", median_ms(v)));
    }
    table.push_str(&format!(
        "| idle memory of 10 hako-vm pods (PSS of QEMU, supervisor, shadows) | {:.1} MiB per pod, {:.1} MiB in all | 10 pods |\n",
        total as f64 / 10.0 / 1024.0,
        total as f64 / 1024.0
    ));
    println!("{table}");
    if let Ok(out) = std::env::var("HAKO_CRI_BENCH_OUT") {
        fs::write(&out, &table).unwrap_or_else(|e| panic!("writing {out}: {e}"));
    }
    assert!(per_pod.iter().all(|k| *k > 0), "a pod's VM processes were not found: {per_pod:?}");
}
