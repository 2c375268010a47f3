//! Real container engines drive the runtime under test: podman (through conmon) and containerd
//! (through `ctr` and the `io.containerd.runc.v2` shim), issue 2 item 5.
//!
//! The runtime under test is `HAKO_TEST_RUNTIME` when set (so the suite can be checked against
//! runc), else this package's `hako`. The engines keep their state under one scratch directory
//! per test process (`$TMPDIR/hako-engines-<pid>`):
//! - podman: its own `CONTAINERS_CONF` (cgroupfs, file events, rlimits under this host's hard
//!   limits) and `CONTAINERS_STORAGE_CONF` (vfs driver, private graph/run roots), a private tmp
//!   dir, `--network none` and a private cgroup parent `/hako-engines-podman-<pid>`;
//! - containerd: started by the suite with its own config (root, state, sockets, CRI plugin
//!   disabled), namespace `hako-engines-<pid>` (so cgroups `/hako-engines-<pid>/<id>`), FIFO dir
//!   and runtime `--root`.
//!
//! Each engine and its image (a busybox rootfs, imported with `podman import` and, as an OCI
//! archive written here, with `ctr images import`) is set up once per process behind a `OnceLock`.
//! Tests remove their containers through drop guards; an `atexit` handler ([`teardown`]) then
//! stops containerd by PID, kills shims it left, removes the private cgroup trees (killing what
//! still runs there), detaches mounts under the scratch directory, removes it, and removes the
//! few host directories the engines insist on creating if they were not there before.
//!
//! Needs root and the Debian packages podman, containerd, busybox-static, bsdutils (`script`).

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

#[path = "common/image.rs"]
#[allow(dead_code, unreachable_pub)]
mod image;
use image::{busybox_rootfs, digest, tar_rootfs, write_oci_archive, ImageSpec};
#[path = "common/host.rs"]
#[allow(dead_code, unreachable_pub)]
mod host;
use host::{cgroup_exists, detach_mounts_under, kill_shims_of, remove_cgroup_tree, wait_for};

/// How long one engine command may take before the test fails.
const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// The image both engines run.
const IMAGE: &str = "localhost/hako-engines:latest";

// ---------------------------------------------------------------------------------------------
// Runtime under test, scratch space and command execution
// ---------------------------------------------------------------------------------------------

/// The runtime binary under test, as an absolute path (podman and ctr need one).
fn runtime() -> PathBuf {
    let path = match std::env::var_os("HAKO_TEST_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_hako")),
    };
    fs::canonicalize(&path).unwrap_or_else(|e| panic!("runtime under test {}: {e}", path.display()))
}

/// The scratch directory of this test process; the teardown handler is registered with it.
static BASE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Host directories the engines create even with private roots (podman's netavark run directory
/// and blob-info cache, the containerd shims' socket directory), children before parents.
const ENGINE_HOST_DIRS: &[&str] = &[
    "/run/containers/networks",
    "/run/containers",
    "/var/lib/containers/cache",
    "/var/lib/containers",
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/run/containerd",
];

/// The subset of [`ENGINE_HOST_DIRS`] that did not exist before this process started the
/// engines: the teardown removes them again when they are empty.
static HOST_DIRS_TO_REMOVE: OnceLock<Vec<&'static str>> = OnceLock::new();

/// When this process set up its scratch space (to tell its own stale files from others').
static STARTED: OnceLock<std::time::SystemTime> = OnceLock::new();

fn base_dir() -> &'static Path {
    BASE_DIR.get_or_init(|| {
        assert_eq!(
            // SAFETY: geteuid has no preconditions and cannot fail.
            unsafe { libc::geteuid() },
            0,
            "the engine tests drive podman and containerd as root: run them as root"
        );
        let dir = std::env::temp_dir().join(format!("hako-engines-{}", std::process::id()));
        if dir.exists() {
            detach_mounts_under(&dir);
            fs::remove_dir_all(&dir).expect("remove stale scratch directory");
        }
        fs::create_dir_all(&dir).expect("create scratch directory");
        let missing: Vec<&'static str> = ENGINE_HOST_DIRS.iter().copied().filter(|d| !Path::new(d).exists()).collect();
        HOST_DIRS_TO_REMOVE.get_or_init(|| missing);
        STARTED.get_or_init(std::time::SystemTime::now);
        register_teardown();
        dir
    })
}

/// A name unique within this test process, for containers and exec ids.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What a finished command left behind.
struct Out {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with the whole output unless the command exited 0.
    fn ok(self) -> Self {
        assert!(self.status.success(), "command failed: {self}");
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n  status: {}\n  stdout: {}\n  stderr: {}", self.what, self.status, self.stdout, self.stderr)
    }
}

/// Runs `cmd` with `input` on stdin (closed after writing), failing the test after [`CMD_TIMEOUT`]
/// or when a descendant keeps the output pipes open after the command exited.
fn run_input(cmd: &mut Command, input: &[u8]) -> Out {
    try_run_input(cmd, input).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `cmd` with stdin from /dev/null; see [`run_input`].
fn run(cmd: &mut Command) -> Out {
    run_input(cmd, b"")
}

/// [`run`] for cleanup paths (drop guards, the exit handler), which must not panic.
fn try_run(cmd: &mut Command) -> Result<Out, String> {
    try_run_input(cmd, b"")
}

/// Runs `cmd` in its own process group with `input` on stdin; on timeout kills the group.
fn try_run_input(cmd: &mut Command, input: &[u8]) -> Result<Out, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {what}: {e}"))?;
    let deadline = Instant::now() + CMD_TIMEOUT;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    if let Some(mut stdin) = child.stdin.take() {
        // The command may exit without reading its input; that is not an error here.
        let _ = stdin.write_all(input);
    }
    let status = wait_until(&mut child, deadline).map_err(|e| format!("{what}: {e}"))?;
    let collect = |rx: mpsc::Receiver<Vec<u8>>, name: &str| {
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5);
        rx.recv_timeout(left)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|_| format!("{what}: exited ({status}) but a descendant holds its {name} open"))
    };
    let stdout = collect(stdout, "stdout")?;
    let stderr = collect(stderr, "stderr")?;
    Ok(Out { what, status, stdout, stderr })
}

/// Reads a pipe to its end on a thread and hands the bytes over a channel.
fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// Waits for `child`; at `deadline` kills its process group and reports the timeout.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<ExitStatus, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                // SAFETY: the child leads its own process group (`process_group(0)`) and is not
                // reaped yet, so the group id is still ours.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                return Err(format!("still running after {CMD_TIMEOUT:?}, killed"));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    }
}

/// Quotes `s` for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command line for `script -c`, with every word quoted.
fn shell_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| sh_quote(&w.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` on a pseudo-terminal (util-linux `script`), typing `input` into it.
fn run_on_pty(cmd: &Command, input: &[u8]) -> Out {
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c"]).arg(shell_line(cmd)).arg("/dev/null");
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => script.env(key, v),
            None => script.env_remove(key),
        };
    }
    run_input(&mut script, input)
}

// ---------------------------------------------------------------------------------------------
// The image: a busybox rootfs, as a plain tarball (podman import) and as an OCI archive (ctr)
// ---------------------------------------------------------------------------------------------

struct Images {
    rootfs_tar: PathBuf,
    oci_archive: PathBuf,
}

fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = base_dir().join("image");
        let rootfs = dir.join("rootfs");
        busybox_rootfs(&rootfs);
        let rootfs_tar = dir.join("rootfs.tar");
        tar_rootfs(&rootfs, &rootfs_tar);
        let oci_archive = dir.join("oci.tar");
        let config = serde_json::json!({ "Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/" });
        write_oci_archive(&rootfs_tar, &dir.join("oci"), &oci_archive, &[ImageSpec { name: IMAGE, config }]);
        Images { rootfs_tar, oci_archive }
    })
}

// ---------------------------------------------------------------------------------------------
// Cgroup and freezer inspection
// ---------------------------------------------------------------------------------------------

/// The cgroup path of `pid` in the v1 hierarchy that holds `controller`, if any.
fn v1_cgroup_of(pid: u32, controller: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == controller).then(|| path.to_string())
    })
}

/// What the kernel says about the freezing of `pid`'s cgroup: the v1 `freezer.state`, or the v2
/// `cgroup.events` frozen line (a runtime may freeze either way on a hybrid host).
fn freezer_state(pid: u32) -> String {
    let mut states = Vec::new();
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "freezer") {
            if let Ok(s) = fs::read_to_string(Path::new("/sys/fs/cgroup/freezer").join(rel).join("freezer.state")) {
                states.push(s.trim().to_string());
            }
        } else if controllers.is_empty() && !rel.is_empty() {
            let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                Path::new("/sys/fs/cgroup")
            } else {
                Path::new("/sys/fs/cgroup/unified")
            };
            if let Ok(events) = fs::read_to_string(root.join(rel).join("cgroup.events")) {
                states.extend(events.lines().filter(|l| l.starts_with("frozen")).map(String::from));
            }
        }
    }
    states.join(", ")
}

fn is_frozen(pid: u32) -> bool {
    let state = freezer_state(pid);
    state.split(", ").any(|s| s == "FROZEN" || s == "frozen 1")
}

fn is_thawed(pid: u32) -> bool {
    let state = freezer_state(pid);
    !state.is_empty() && !state.split(", ").any(|s| s == "FROZEN" || s == "FREEZING" || s == "frozen 1")
}

/// Asserts that an `exec`ed process shares the pid and mount namespaces of the container's init.
fn assert_same_namespaces(out: &Out) {
    let links: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(links.len(), 4, "expected four namespace links: {out}");
    assert!(links[0].starts_with("pid:["), "{out}");
    assert_eq!(links[0], links[1], "exec'd process is not in the container's pid namespace: {out}");
    assert!(links[2].starts_with("mnt:["), "{out}");
    assert_eq!(links[2], links[3], "exec'd process is not in the container's mount namespace: {out}");
}

const NS_PROBE: &str = "for p in self/ns/pid 1/ns/pid self/ns/mnt 1/ns/mnt; do readlink /proc/$p; done";

/// A container init that exits 42 on SIGTERM (as PID 1 it has no default handler for it).
const TRAP_TERM: &str = "trap 'exit 42' TERM; while true; do sleep 0.05; done";

// ---------------------------------------------------------------------------------------------
// Podman
// ---------------------------------------------------------------------------------------------

struct Podman {
    dir: PathBuf,
    cgroup_parent: String,
    runtime: PathBuf,
}

static PODMAN: OnceLock<Podman> = OnceLock::new();

/// Podman with private configuration and storage, and the busybox image imported.
fn podman() -> &'static Podman {
    PODMAN.get_or_init(|| {
        let dir = base_dir().join("podman");
        fs::create_dir_all(dir.join("tmp")).expect("create podman directory");
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{tmp}"

[network]
network_config_dir = "{net}"
"#,
            tmp = dir.join("tmp").display(),
            net = dir.join("networks").display(),
        );
        fs::write(dir.join("containers.conf"), conf).expect("write containers.conf");
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("root").display(),
            dir.join("runroot").display(),
        );
        fs::write(dir.join("storage.conf"), storage).expect("write storage.conf");
        let podman =
            Podman { dir, cgroup_parent: format!("/hako-engines-podman-{}", std::process::id()), runtime: runtime() };
        run(podman.cmd().arg("import").arg(&images().rootfs_tar).arg(IMAGE)).ok();
        podman
    })
}

impl Podman {
    /// `podman` with the private configuration and the runtime under test.
    fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env_remove("CONTAINER_HOST")
            .env_remove("XDG_RUNTIME_DIR")
            .arg("--runtime")
            .arg(&self.runtime);
        cmd
    }

    /// `podman run` with the private cgroup parent and no network, then `extra` before the image.
    fn run_cmd(&self, extra: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.args(["run", "--network", "none", "--cgroup-parent", &self.cgroup_parent]);
        cmd.args(extra).arg(IMAGE);
        cmd
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        run(self.cmd().args(["inspect", "--format", format, name])).ok().stdout.trim().to_string()
    }

    /// Starts a detached container running `script` under `sh -c`.
    fn start(&self, script: &str) -> PodmanContainer<'_> {
        let name = unique("hako-pd");
        let guard = PodmanContainer { podman: self, name };
        run(self.run_cmd(&["-d", "--name", &guard.name]).args(["/bin/sh", "-c", script])).ok();
        guard
    }
}

/// A podman container removed (forcibly) when the test ends, even on failure.
struct PodmanContainer<'a> {
    podman: &'a Podman,
    name: String,
}

impl PodmanContainer<'_> {
    fn pid(&self) -> u32 {
        let pid = self.podman.inspect(&self.name, "{{.State.Pid}}");
        pid.parse().unwrap_or_else(|_| panic!("podman pid of {}: {pid:?}", self.name))
    }

    fn status(&self) -> String {
        self.podman.inspect(&self.name, "{{.State.Status}}")
    }

    fn exec(&self, args: &[&str]) -> Out {
        run(self.podman.cmd().arg("exec").args(args))
    }
}

impl Drop for PodmanContainer<'_> {
    fn drop(&mut self) {
        let _ = try_run(self.podman.cmd().args(["rm", "--force", "--time", "0", &self.name]));
    }
}

#[test]
fn podman_run_rm() {
    let p = podman();
    let name = unique("hako-pd");
    let out = run(p.run_cmd(&["--rm", "--name", &name]).args([
        "/bin/sh",
        "-c",
        "echo hello-from-podman; ulimit -n; cat /proc/self/cgroup; exit 7",
    ]));
    assert_eq!(out.code(), Some(7), "exit status must come through: {out}");
    assert!(out.stdout.starts_with("hello-from-podman\n"), "{out}");
    assert_eq!(out.stdout.lines().nth(1), Some("1024"), "nofile rlimit from podman's config: {out}");
    let memory = v1_memory_line(&out.stdout).unwrap_or_else(|| panic!("no memory cgroup line: {out}"));
    let expected = format!("{}/libpod-", p.cgroup_parent);
    assert!(memory.contains(&expected), "cgroupsPath from podman not honoured: {out}");
    let cgroup = memory.splitn(3, ':').nth(2).unwrap_or_default().to_string();

    let ps = run(p.cmd().args(["ps", "--all", "--quiet", "--filter"]).arg(format!("name={name}"))).ok();
    assert_eq!(ps.stdout.trim(), "", "--rm left the container behind: {ps}");
    assert!(wait_for(Duration::from_secs(5), || !cgroup_exists(&cgroup)), "container cgroup {cgroup} left behind");
}

#[test]
fn podman_run_tty() {
    let p = podman();
    // `-t` with stdin not a terminal: conmon asks for the pty over --console-socket.
    let out = run(p.run_cmd(&["--rm", "-t"]).args(["/bin/sh", "-c", "tty; echo line"])).ok();
    assert!(out.stdout.starts_with("/dev/pts/"), "stdout is not a pty: {out}");
    assert!(out.stdout.contains("line\r\n"), "no terminal line discipline (onlcr): {out}");

    // `-it` on a real terminal: what is typed reaches the container through the pty.
    let out =
        run_on_pty(p.run_cmd(&["--rm", "-i", "-t"]).args(["/bin/sh", "-c", "read x; echo got:$x; tty"]), b"typed-in\n");
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("got:typed-in\r"), "input did not reach the container: {out}");
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
}

#[test]
fn podman_exec() {
    let p = podman();
    let c = p.start("exec sleep 1000");
    let out = c.exec(&[&c.name, "/bin/sh", "-c", "echo exec-ok; cat /proc/1/cmdline"]).ok();
    assert_eq!(out.stdout, "exec-ok\nsleep\u{0}1000\u{0}", "{out}");
    assert_same_namespaces(&c.exec(&[&c.name, "/bin/sh", "-c", NS_PROBE]).ok());

    let out = c.exec(&[&c.name, "/bin/sh", "-c", "exit 5"]);
    assert_eq!(out.code(), Some(5), "exec exit status must come through: {out}");

    let out = c
        .exec(&[
            "--user",
            "1000:1001",
            "--env",
            "HAKO_X=y z",
            "--workdir",
            "/tmp",
            &c.name,
            "/bin/sh",
            "-c",
            "id -u; id -g; echo \"$HAKO_X\"; pwd",
        ])
        .ok();
    assert_eq!(out.stdout, "1000\n1001\ny z\n/tmp\n", "exec process settings: {out}");

    let out = c.exec(&["-t", &c.name, "/bin/sh", "-c", "tty"]).ok();
    assert!(out.stdout.starts_with("/dev/pts/"), "exec -t gives no pty: {out}");
}

#[test]
fn podman_pause_unpause() {
    let p = podman();
    let c = p.start("exec sleep 1000");
    let pid = c.pid();
    assert!(is_thawed(pid), "fresh container: {}", freezer_state(pid));

    run(p.cmd().args(["pause", &c.name])).ok();
    assert_eq!(c.status(), "paused");
    assert!(is_frozen(pid), "after pause the container is not frozen: {}", freezer_state(pid));

    run(p.cmd().args(["unpause", &c.name])).ok();
    assert_eq!(c.status(), "running");
    assert!(is_thawed(pid), "after unpause: {}", freezer_state(pid));
    assert_eq!(c.exec(&[&c.name, "echo", "alive"]).ok().stdout, "alive\n");
}

#[test]
fn podman_stop() {
    let p = podman();
    let c = p.start(TRAP_TERM);
    let started = Instant::now();
    run(p.cmd().args(["stop", "--time", "20", &c.name])).ok();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stop fell back to SIGKILL: SIGTERM did not reach the container ({:?})",
        started.elapsed()
    );
    assert_eq!(c.status(), "exited");
    assert_eq!(p.inspect(&c.name, "{{.State.ExitCode}}"), "42", "the TERM trap did not run");
}

#[test]
fn podman_top() {
    let p = podman();
    let c = p.start("exec sleep 1000");
    let out = run(p.cmd().args(["top", &c.name, "pid", "hpid", "args"])).ok();
    let row = out
        .stdout
        .lines()
        .find(|l| l.contains("sleep 1000"))
        .unwrap_or_else(|| panic!("container process missing from top: {out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.first(), Some(&"1"), "init is not PID 1 in its namespace: {out}");
    assert_eq!(cols.get(1).copied(), Some(c.pid().to_string().as_str()), "host pid: {out}");
}

// ---------------------------------------------------------------------------------------------
// containerd
// ---------------------------------------------------------------------------------------------

struct Containerd {
    dir: PathBuf,
    address: PathBuf,
    namespace: String,
    pid: libc::pid_t,
    runtime: PathBuf,
}

static CONTAINERD: OnceLock<Containerd> = OnceLock::new();

/// A containerd of our own, booted with a private config and the busybox image imported.
fn containerd() -> &'static Containerd {
    CONTAINERD.get_or_init(|| {
        // Everything that may panic comes before the daemon starts.
        let archive = &images().oci_archive;
        let runtime = runtime();
        let dir = base_dir().join("containerd");
        for sub in ["fifo", "tmp"] {
            fs::create_dir_all(dir.join(sub)).expect("create containerd directory");
        }
        let address = dir.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = address.display(),
            opt = dir.join("opt").display(),
        );
        fs::write(dir.join("config.toml"), config).expect("write containerd config");
        let log = fs::File::create(dir.join("containerd.log")).expect("create containerd log");
        let mut child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            // The shims inherit it: their console-socket directories land in our scratch space.
            .env("TMPDIR", dir.join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start containerd (apt-get install containerd)");
        let pid = child.id() as libc::pid_t;
        let daemon =
            Containerd { dir, address, namespace: format!("hako-engines-{}", std::process::id()), pid, runtime };
        let booted = wait_for(Duration::from_secs(20), || {
            matches!(child.try_wait(), Ok(None))
                && daemon.address.exists()
                && try_run(daemon.ctr().arg("version")).is_ok_and(|o| o.status.success())
        });
        let imported =
            booted && try_run(daemon.ctr().args(["images", "import"]).arg(archive)).is_ok_and(|o| o.status.success());
        if !imported {
            stop_containerd(&daemon);
            let log = fs::read_to_string(daemon.dir.join("containerd.log")).unwrap_or_default();
            panic!("containerd did not boot or import the image; its log:\n{log}");
        }
        daemon
    })
}

impl Containerd {
    /// `ctr` talking to our daemon in our namespace.
    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.address).arg("--namespace").arg(&self.namespace);
        cmd
    }

    /// `ctr run` with the runtime under test (its state under our directory), then `extra`, the
    /// image and the container id; the caller appends the command.
    fn run_cmd(&self, extra: &[&str], id: &str) -> Command {
        let mut cmd = self.ctr();
        cmd.arg("run")
            .arg("--runc-binary")
            .arg(&self.runtime)
            .arg("--runc-root")
            .arg(self.dir.join("runtime-root"))
            .arg("--fifo-dir")
            .arg(self.dir.join("fifo"))
            .args(extra)
            .args([IMAGE, id]);
        cmd
    }

    /// Starts a detached task running `script` under `sh -c`.
    fn start(&self, script: &str) -> CtrContainer<'_> {
        let guard = CtrContainer { ctrd: self, id: unique("hako-ctr") };
        run(self.run_cmd(&["--detach"], &guard.id).args(["/bin/sh", "-c", script])).ok();
        guard
    }

    /// The status column of `ctr task ls` for `id` (RUNNING, PAUSED, STOPPED, …).
    fn task_status(&self, id: &str) -> Option<(u32, String)> {
        let out = run(self.ctr().args(["task", "ls"])).ok();
        out.stdout.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() == 3 && cols[0] == id).then(|| Some((cols[1].parse().ok()?, cols[2].to_string()))).flatten()
        })
    }
}

/// A containerd container whose task and container are removed when the test ends.
struct CtrContainer<'a> {
    ctrd: &'a Containerd,
    id: String,
}

impl CtrContainer<'_> {
    fn pid(&self) -> u32 {
        match self.ctrd.task_status(&self.id) {
            Some((pid, _)) => pid,
            None => panic!("task {} not listed by ctr task ls", self.id),
        }
    }

    fn status(&self) -> String {
        self.ctrd.task_status(&self.id).map(|(_, s)| s).unwrap_or_default()
    }

    fn exec(&self, extra: &[&str], args: &[&str]) -> Out {
        let exec_id = unique("exec");
        let mut cmd = self.ctrd.ctr();
        cmd.args(["task", "exec", "--exec-id", &exec_id, "--fifo-dir"])
            .arg(self.ctrd.dir.join("fifo"))
            .args(extra)
            .arg(&self.id)
            .args(args);
        run(&mut cmd)
    }

    fn wait_stopped(&self) {
        assert!(
            wait_for(Duration::from_secs(10), || self.status() == "STOPPED"),
            "task {} did not stop: {}",
            self.id,
            self.status()
        );
    }
}

impl Drop for CtrContainer<'_> {
    fn drop(&mut self) {
        remove_ctr_container(self.ctrd, &self.id);
    }
}

fn remove_ctr_container(ctrd: &Containerd, id: &str) {
    let _ = try_run(ctrd.ctr().args(["task", "kill", "--signal", "SIGKILL", id]));
    let _ = try_run(ctrd.ctr().args(["task", "delete", "--force", id]));
    let _ = try_run(ctrd.ctr().args(["container", "delete", id]));
}

#[test]
fn containerd_run() {
    let d = containerd();
    let id = unique("hako-ctr");
    let out = run(d.run_cmd(&["--rm"], &id).args([
        "/bin/sh",
        "-c",
        "echo hello-from-containerd; cat /proc/self/cgroup; exit 3",
    ]));
    assert_eq!(out.code(), Some(3), "exit status must come through: {out}");
    assert!(out.stdout.starts_with("hello-from-containerd\n"), "{out}");
    let expected = format!("/{}/{id}", d.namespace);
    let memory = v1_memory_line(&out.stdout).unwrap_or_else(|| panic!("no memory cgroup: {out}"));
    assert!(memory.ends_with(&expected), "cgroupsPath {expected} not honoured: {out}");

    let list = run(d.ctr().args(["container", "ls", "--quiet"])).ok();
    assert!(!list.stdout.lines().any(|l| l == id), "--rm left the container: {list}");
    assert!(wait_for(Duration::from_secs(5), || !cgroup_exists(&expected)), "container cgroup {expected} left behind");
    assert!(
        fs::read_dir(d.dir.join("runtime-root").join(&d.namespace))
            .map(|mut entries| entries.all(|e| e.map(|e| e.file_name() != OsStr::new(&id)).unwrap_or(true)))
            .unwrap_or(true),
        "the runtime's state directory for {id} is left behind"
    );
}

/// The README's way to give the engines a local image: `scripts/local-image` imports the embedded
/// busybox image into podman and containerd, and both run it with the runtime under test.
#[test]
fn readme_local_image_feeds_podman_and_containerd() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/local-image");
    let name = format!("localhost/hako-readme-{}:1", std::process::id());

    let p = podman();
    let mut import = Command::new(&script);
    import.arg("podman").arg(&name);
    for (k, v) in p.cmd().get_envs() {
        match v {
            Some(v) => import.env(k, v),
            None => import.env_remove(k),
        };
    }
    run(&mut import).ok();
    let out = run(p
        .cmd()
        .args(["run", "--rm", "--network", "none", "--cgroup-parent", &p.cgroup_parent, &name])
        .args(["sh", "-c", "echo from-podman-$(cat /etc/group | cut -d: -f1 | head -1)"]))
    .ok();
    assert_eq!(out.stdout.trim(), "from-podman-root", "{out}");
    let _ = try_run(p.cmd().args(["rmi", "--force", &name]));

    let d = containerd();
    run(Command::new(&script)
        .arg("containerd")
        .arg(&name)
        .env("CONTAINERD_ADDRESS", &d.address)
        .env("CONTAINERD_NAMESPACE", &d.namespace))
    .ok();
    let id = unique("hako-readme");
    let out = run(d
        .ctr()
        .arg("run")
        .arg("--runc-binary")
        .arg(&d.runtime)
        .arg("--runc-root")
        .arg(d.dir.join("runtime-root"))
        .arg("--fifo-dir")
        .arg(d.dir.join("fifo"))
        .args(["--rm", &name, &id, "echo", "from-containerd"]))
    .ok();
    assert_eq!(out.stdout.trim(), "from-containerd", "{out}");
    let _ = try_run(d.ctr().args(["images", "rm", &name]));
}

fn v1_memory_line(stdout: &str) -> Option<&str> {
    stdout.lines().find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory")))
}

#[test]
fn containerd_run_tty() {
    let d = containerd();
    let id = unique("hako-ctr");
    let _guard = CtrContainer { ctrd: d, id: id.clone() };
    let out = run_on_pty(
        d.run_cmd(&["--rm", "--tty"], &id).args(["/bin/sh", "-c", "read x; echo got:$x; tty"]),
        b"typed-in\n",
    );
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("got:typed-in\r"), "input did not reach the container: {out}");
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
}

#[test]
fn containerd_exec() {
    let d = containerd();
    let c = d.start("exec sleep 1000");
    let out = c.exec(&[], &["/bin/sh", "-c", "echo exec-ok; cat /proc/1/cmdline"]).ok();
    assert_eq!(out.stdout, "exec-ok\nsleep\u{0}1000\u{0}", "{out}");
    assert_same_namespaces(&c.exec(&[], &["/bin/sh", "-c", NS_PROBE]).ok());

    let out = c.exec(&[], &["/bin/sh", "-c", "exit 5"]);
    assert_eq!(out.code(), Some(5), "exec exit status must come through: {out}");

    let out = c.exec(&["--cwd", "/tmp", "--user", "1000:1001"], &["/bin/sh", "-c", "id -u; id -g; pwd"]).ok();
    assert_eq!(out.stdout, "1000\n1001\n/tmp\n", "exec process settings: {out}");

    // `ctr task ps` goes through the runtime's `ps --format json`.
    let out = run(d.ctr().args(["task", "ps", &c.id])).ok();
    let pid = c.pid().to_string();
    assert!(
        out.stdout.lines().any(|l| l.split_whitespace().next() == Some(pid.as_str())),
        "init pid {pid} missing from task ps: {out}"
    );
}

#[test]
fn containerd_pause_resume() {
    let d = containerd();
    let c = d.start("exec sleep 1000");
    let pid = c.pid();
    assert!(is_thawed(pid), "fresh container: {}", freezer_state(pid));

    run(d.ctr().args(["task", "pause", &c.id])).ok();
    assert_eq!(c.status(), "PAUSED");
    assert!(is_frozen(pid), "after pause the task is not frozen: {}", freezer_state(pid));

    run(d.ctr().args(["task", "resume", &c.id])).ok();
    assert_eq!(c.status(), "RUNNING");
    assert!(is_thawed(pid), "after resume: {}", freezer_state(pid));
    assert_eq!(c.exec(&[], &["echo", "alive"]).ok().stdout, "alive\n");
}

#[test]
fn containerd_kill() {
    let d = containerd();

    // SIGTERM reaches the init, whose trap exits 42.
    let c = d.start(TRAP_TERM);
    run(d.ctr().args(["task", "kill", "--signal", "SIGTERM", &c.id])).ok();
    c.wait_stopped();
    let out = run(d.ctr().args(["task", "delete", &c.id])).ok();
    assert!(out.stderr.contains("exit code 42"), "TERM trap did not run: {out}");

    // SIGKILL cannot be trapped: 128 + 9.
    let c = d.start(TRAP_TERM);
    let pid = c.pid();
    let cgroup = v1_cgroup_of(pid, "memory").unwrap_or_else(|| panic!("no memory cgroup for {pid}"));
    run(d.ctr().args(["task", "kill", "--signal", "SIGKILL", &c.id])).ok();
    c.wait_stopped();
    let out = run(d.ctr().args(["task", "delete", &c.id])).ok();
    assert!(out.stderr.contains("exit code 137"), "not killed by SIGKILL: {out}");
    assert!(
        wait_for(Duration::from_secs(5), || !cgroup_exists(&cgroup)),
        "cgroup {cgroup} left behind after task delete"
    );
}

#[test]
fn containerd_create_failure_shows_runtime_error() {
    let d = containerd();
    let id = unique("hako-ctr");
    let _guard = CtrContainer { ctrd: d, id: id.clone() };
    // containerd does not check bind sources; only the runtime finds this one missing, so the
    // path can only reach ctr's output through the runtime's own (JSON-logged) error message.
    let missing = format!("/hako-engines-missing-{}", unique("src"));
    let mount = format!("type=bind,src={missing},dst=/mnt,options=rbind:ro");
    let out = run(d.run_cmd(&["--rm", "--mount", &mount], &id).arg("/bin/true"));
    assert_ne!(out.code(), Some(0), "create with a missing bind source succeeded: {out}");
    assert!(out.stderr.contains("OCI runtime create failed"), "{out}");
    assert!(out.stderr.contains(&missing), "the runtime's error (last JSON line of --log) does not reach ctr: {out}");
    let tasks = run(d.ctr().args(["task", "ls", "--quiet"])).ok();
    assert!(!tasks.stdout.lines().any(|l| l == id), "failed create left a task: {tasks}");
    assert!(!cgroup_exists(&format!("/{}/{id}", d.namespace)), "failed create left its cgroup behind");
}

// ---------------------------------------------------------------------------------------------
// Teardown
// ---------------------------------------------------------------------------------------------

fn register_teardown() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: `teardown` is an `extern "C" fn()` that never unwinds (it catches panics), and
        // it only uses state that lives for the whole process (statics).
        let rc = unsafe { libc::atexit(teardown) };
        assert_eq!(rc, 0, "atexit failed: the suite could not clean up after itself");
    });
}

/// Runs at process exit: stops containerd and removes everything the suite created.
extern "C" fn teardown() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(d) = CONTAINERD.get() {
            // The tests delete their own containers; whatever a failed test left goes with the
            // daemon, its shims, its cgroups and the scratch directory.
            stop_containerd(d);
            kill_orphaned_shims(d);
            remove_cgroup_tree(&d.namespace);
        }
        if let Some(p) = PODMAN.get() {
            let _ = try_run(p.cmd().args(["rm", "--all", "--force", "--time", "0"]));
            remove_cgroup_tree(&p.cgroup_parent);
            remove_stale_console_sockets();
        }
        if let Some(dir) = BASE_DIR.get() {
            detach_mounts_under(dir);
            let _ = fs::remove_dir_all(dir);
        }
        for dir in HOST_DIRS_TO_REMOVE.get().into_iter().flatten() {
            if *dir == "/var/lib/containers/cache" {
                let _ = fs::remove_file(Path::new(dir).join("blob-info-cache-v1.boltdb"));
            }
            let _ = fs::remove_dir(dir);
        }
    });
}

/// Stops containerd by PID: SIGTERM, then SIGKILL after five seconds.
fn stop_containerd(d: &Containerd) {
    // SAFETY: `d.pid` is our own child, not yet reaped, so the PID cannot have been reused.
    unsafe { libc::kill(d.pid, libc::SIGTERM) };
    let reaped = wait_for(Duration::from_secs(5), || {
        // SAFETY: waitpid on our own child with a valid status pointer.
        unsafe { libc::waitpid(d.pid, std::ptr::null_mut(), libc::WNOHANG) == d.pid }
    });
    if !reaped {
        // SAFETY: as above; the child is still unreaped.
        unsafe {
            libc::kill(d.pid, libc::SIGKILL);
            libc::waitpid(d.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Kills (by PID) the shims our containerd left behind, which happens when a runtime hangs or a
/// task could not be deleted, and removes their sockets from /run/containerd/s.
fn kill_orphaned_shims(d: &Containerd) {
    let address = d.address.to_string_lossy().into_owned();
    for (ns, id) in kill_shims_of(&address) {
        // containerd 1.6 names a shim's socket sha256("<address>/<namespace>/<id>").
        let key = d.dir.join("shim-socket-key");
        if fs::write(&key, format!("{address}/{ns}/{id}")).is_ok() {
            let (hash, _) = digest(&key);
            let hex = hash.trim_start_matches("sha256:");
            let _ = fs::remove_file(Path::new("/run/containerd/s").join(hex));
        }
    }
}

/// Removes the console sockets conmon leaves in /tmp (it ignores TMPDIR) when a runtime never
/// connects to them: only ones created since this process started that nobody listens on.
fn remove_stale_console_sockets() {
    let Some(started) = STARTED.get() else {
        return;
    };
    let listening = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let fresh = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t >= *started);
        let name = entry.file_name();
        if fresh
            && name.to_string_lossy().starts_with("conmon-term.")
            && !listening.contains(path.to_string_lossy().as_ref())
        {
            let _ = fs::remove_file(&path);
        }
    }
}

/// VM isolation needs the guest assets (scripts/vm-assets); without them these tests are skipped,
/// unless HAKO_REQUIRE_ALL=1 (scripts/test sets it).
fn vm_assets_present() -> bool {
    let dir = std::env::var("HAKO_VM_ASSETS").unwrap_or_else(|_| "/var/lib/hako/vm".into());
    let ok = Path::new(&dir).join("vmlinux").is_file() && Path::new(&dir).join("initramfs.cpio.gz").is_file();
    if !ok {
        host::skip(&format!("the VM assets are missing in {dir}: run scripts/vm-assets"));
    }
    ok && std::env::var_os("HAKO_TEST_RUNTIME").is_none()
}

fn host_kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

#[test]
fn podman_runs_a_vm_isolated_container_by_annotation() {
    if !vm_assets_present() {
        return;
    }
    let p = podman();
    let name = unique("hako-pdvm");
    let out = run(p.run_cmd(&["--rm", "--name", &name, "--annotation", "org.hako.isolation=vm"]).args([
        "/bin/sh",
        "-c",
        "uname -r; echo in-vm; exit 5",
    ]));
    assert_eq!(out.code(), Some(5), "exit status must come through: {out}");
    let mut lines = out.stdout.lines();
    let kernel = lines.next().unwrap_or_default();
    assert_ne!(kernel, host_kernel(), "the container ran on the host kernel: {out}");
    assert_eq!(lines.next(), Some("in-vm"), "{out}");

    // exec into a running VM-isolated container.
    let name = unique("hako-pdvmx");
    run(p.run_cmd(&["-d", "--name", &name, "--annotation", "org.hako.isolation=vm"]).args(["sleep", "1000"])).ok();
    let ex = run(p.cmd().args(["exec", &name, "/bin/sh", "-c", "uname -r; exit 4"]));
    assert_eq!(ex.code(), Some(4), "{ex}");
    assert_ne!(ex.stdout.trim(), host_kernel(), "{ex}");
    run(p.cmd().args(["rm", "-f", "-t", "0", &name])).ok();
}

/// With podman's default bridge network the VM takes the container's interface over: the guest has the
/// address podman gave the container, and a port podman publishes on the host reaches a server in the VM.
#[test]
fn podman_vm_container_gets_the_engines_network_and_published_ports() {
    if !vm_assets_present() {
        return;
    }
    let p = podman();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let guard = PodmanContainer { podman: p, name: unique("hako-pdvmnet") };
    let script = "mkdir -p /tmp/www && echo hello-from-the-vm > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www";
    run(p.cmd().args(["run", "-d", "--name", &guard.name, "--cgroup-parent", &p.cgroup_parent]).args([
        "--annotation",
        "org.hako.isolation=vm",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        IMAGE,
        "/bin/sh",
        "-c",
        script,
    ]))
    .ok();
    let ip = p.inspect(&guard.name, "{{.NetworkSettings.IPAddress}}");
    assert!(!ip.is_empty(), "podman gave the container no address");
    let guest = run(p.cmd().args(["exec", &guard.name, "/bin/sh", "-c", "uname -r; ip -4 -o addr show eth0"])).ok();
    assert_ne!(guest.stdout.lines().next().unwrap_or_default(), host_kernel(), "{guest}");
    assert!(guest.stdout.contains(&format!("inet {ip}/")), "the guest's eth0 lacks podman's {ip}: {guest}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            c.read_to_string(&mut body)?;
            Ok(body)
        });
        match got {
            Ok(b) if b.contains("hello-from-the-vm") => break b,
            other => {
                assert!(std::time::Instant::now() < deadline, "no answer on the published port {port}: {other:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"), "{body}");
}

#[test]
fn containerd_runs_a_vm_isolated_container_by_annotation() {
    if !vm_assets_present() {
        return;
    }
    let d = containerd();
    let id = unique("hako-ctrvm");
    let out = run(d.run_cmd(&["--rm", "--annotation", "org.hako.isolation=vm"], &id).args([
        "/bin/sh",
        "-c",
        "uname -r; exit 6",
    ]));
    assert_eq!(out.code(), Some(6), "exit status must come through: {out}");
    assert_ne!(out.stdout.trim(), host_kernel(), "the container ran on the host kernel: {out}");
}
