//! Shared end-to-end harness for hako's integration tests: it builds busybox bundles, runs the
//! runtime under test (`HAKO_TEST_RUNTIME` or the `hako` binary of this crate) with a private
//! `--root`, captures what commands print, and checks that nothing leaks (state directories,
//! cgroups, mounts, processes).
//!
//! Dev-dependencies used by this harness and the tests: `serde_json`, `libc`, `nix`, `tempfile`.
//!
//! Everything here is runtime-agnostic: the same tests run against runc
//! (`HAKO_TEST_RUNTIME=/usr/sbin/runc cargo test -p hako`) so the suite can be validated before
//! hako works. Checks of hako's own contract (error messages, hako-only commands) sit in the
//! test files, after the runtime-agnostic checks of the same test.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod host;
#[allow(unused_imports)]
pub use host::skip;

/// How long one runtime command may take before the harness kills it and fails the test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The cgroup parent under which every test container's cgroup lives (`/hako-e2e/<id>`).
pub const CGROUP_PARENT: &str = "hako-e2e";

/// The runtime under test: `HAKO_TEST_RUNTIME` when set, else this crate's `hako` binary.
pub fn runtime() -> PathBuf {
    match std::env::var_os("HAKO_TEST_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_hako")),
    }
}

/// True when the runtime under test is hako itself (no `HAKO_TEST_RUNTIME` override).
pub fn testing_hako() -> bool {
    !matches!(std::env::var_os("HAKO_TEST_RUNTIME"), Some(p) if !p.is_empty())
}

/// The reference runtime of the differential tests: `HAKO_TEST_REFERENCE`, else /usr/sbin/runc.
pub fn reference_runtime() -> PathBuf {
    match std::env::var_os("HAKO_TEST_REFERENCE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/usr/sbin/runc"),
    }
}

/// A container id unique in this test process and across parallel test binaries.
pub fn unique_id(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("e2e-{tag}-{}-{n}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// rootfs and bundle
// ---------------------------------------------------------------------------------------------

fn busybox_applets() -> &'static Vec<String> {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let out = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("run /bin/busybox --list (install busybox-static)");
        assert!(out.status.success(), "/bin/busybox --list failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
            .map(String::from)
            .collect()
    })
}

/// Builds a busybox rootfs in `dir`: bin/busybox (a copy of Debian's static busybox) with a
/// symlink per applet, /etc/passwd and /etc/group with root, a user 1000 and nobody, and empty
/// /proc /sys /dev /tmp /root /home/user.
pub fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user"] {
        fs::create_dir_all(dir.join(d)).expect("create rootfs dir");
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod rootfs");
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    std::os::unix::fs::chown(dir.join("home/user"), Some(1000), Some(1000)).expect("chown home");
    let bb = dir.join("bin/busybox");
    fs::copy("/bin/busybox", &bb).expect("copy /bin/busybox into the rootfs");
    fs::set_permissions(&bb, fs::Permissions::from_mode(0o755)).expect("chmod busybox");
    for applet in busybox_applets() {
        let link = dir.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).expect("symlink applet");
        }
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         user:x:1000:1000:user:/home/user:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("write passwd");
    fs::write(dir.join("etc/group"), "root:x:0:\nwheel:x:10:\nuser:x:1000:\nnogroup:x:65534:\n").expect("write group");
}

/// The default config: what `runc spec` writes, with `terminal: false` and args `["true"]`.
pub fn default_spec() -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["true"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

fn bundle_registry() -> &'static Mutex<HashMap<String, PathBuf>> {
    static REG: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Remembers which bundle a container id was created from, for [`assert_no_leftovers`].
pub fn register_bundle(id: &str, bundle: &Path) {
    bundle_registry().lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), bundle.to_path_buf());
}

fn registered_bundle(id: &str) -> Option<PathBuf> {
    bundle_registry().lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
}

/// Sets `value` at the JSON pointer `pointer` (e.g. `/process/user/uid`), creating objects on
/// the way; `-` as the last segment appends to an array.
pub fn json_set(doc: &mut Value, pointer: &str, value: Value) {
    let mut cur = doc;
    let segs: Vec<String> = pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    assert!(!segs.is_empty(), "empty json pointer");
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if let Value::Array(arr) = cur {
            if seg == "-" {
                assert!(last, "'-' must be the last segment of {pointer}");
                arr.push(value);
                return;
            }
            let idx: usize = seg.parse().expect("array index in json pointer");
            if last {
                arr[idx] = value;
                return;
            }
            cur = &mut arr[idx];
            continue;
        }
        if !cur.is_object() {
            *cur = json!({});
        }
        let obj = cur.as_object_mut().expect("object");
        if last {
            if seg == "-" {
                panic!("'-' used on an object in {pointer}");
            }
            obj.insert(seg.clone(), value);
            return;
        }
        let next_is_append = segs.get(i + 1).is_some_and(|s| s == "-");
        cur = obj.entry(seg.clone()).or_insert_with(|| if next_is_append { json!([]) } else { json!({}) });
    }
}

/// A bundle in its own temporary directory: `rootfs/` (busybox), `config.json` (from
/// [`default_spec`]), and a default container id whose cgroupsPath is `/hako-e2e/<id>`.
/// Every edit rewrites config.json at once.
pub struct Bundle {
    dir: tempfile::TempDir,
    id: String,
    config: Value,
}

impl Default for Bundle {
    fn default() -> Self {
        Self::new()
    }
}

impl Bundle {
    /// A fresh bundle with a busybox rootfs and the default config.
    pub fn new() -> Bundle {
        Self::with_tag("c")
    }

    /// Like [`Bundle::new`], with `tag` in the container id (helps reading failures).
    pub fn with_tag(tag: &str) -> Bundle {
        let dir = tempfile::Builder::new().prefix("hako-e2e-bundle-").tempdir().expect("create bundle tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod bundle");
        busybox_rootfs(&dir.path().join("rootfs"));
        let id = unique_id(tag);
        let mut config = default_spec();
        json_set(&mut config, "/linux/cgroupsPath", json!(format!("/{CGROUP_PARENT}/{id}")));
        let b = Bundle { dir, id, config };
        register_bundle(&b.id, b.path());
        b.write();
        b
    }

    /// The bundle directory (absolute).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs directory.
    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    /// The config.json path.
    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    /// The container id tests use for this bundle.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The config as it is on disk.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// `linux.cgroupsPath` as written in the config (e.g. `/hako-e2e/<id>`).
    pub fn cgroup_path(&self) -> String {
        self.config.pointer("/linux/cgroupsPath").and_then(Value::as_str).unwrap_or_default().to_string()
    }

    /// `cgroupsPath` without its leading slash, as [`assert_no_leftovers`] takes it.
    pub fn cgroup_rel(&self) -> String {
        self.cgroup_path().trim_start_matches('/').to_string()
    }

    /// Writes config.json from the in-memory config.
    pub fn write(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("serialize config");
        fs::write(self.config_path(), text).expect("write config.json");
    }

    /// Edits the config in place.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.write();
        self
    }

    /// Builder form of [`Bundle::edit`].
    pub fn with(mut self, f: impl FnOnce(&mut Value)) -> Self {
        self.edit(f);
        self
    }

    /// Sets a value at a JSON pointer (see [`json_set`]).
    pub fn set(mut self, pointer: &str, value: Value) -> Self {
        self.edit(|c| json_set(c, pointer, value));
        self
    }

    /// Appends to the array at `pointer` (created when missing).
    pub fn push(self, pointer: &str, value: Value) -> Self {
        self.set(&format!("{pointer}/-"), value)
    }

    /// Sets `process.args`.
    pub fn args(self, args: &[&str]) -> Self {
        self.set("/process/args", json!(args))
    }

    /// Sets `process.args` to `["/bin/sh", "-c", script]`.
    pub fn sh(self, script: &str) -> Self {
        self.args(&["/bin/sh", "-c", script])
    }

    /// Makes the root filesystem writable (`root.readonly: false`).
    pub fn writable(self) -> Self {
        self.set("/root/readonly", json!(false))
    }

    /// Adds a namespace entry (`{"type": ty}`) unless one of that type is already there.
    pub fn namespace(self, ty: &str) -> Self {
        self.with(|c| {
            let list = c["linux"]["namespaces"].as_array_mut().expect("namespaces array");
            if !list.iter().any(|n| n["type"] == ty) {
                list.push(json!({"type": ty}));
            }
        })
    }

    /// Removes every namespace entry of type `ty`.
    pub fn without_namespace(self, ty: &str) -> Self {
        self.with(|c| {
            if let Some(list) = c["linux"]["namespaces"].as_array_mut() {
                list.retain(|n| n["type"] != ty);
            }
        })
    }

    /// Adds a mount.
    pub fn mount(self, destination: &str, ty: &str, source: &str, options: &[&str]) -> Self {
        self.push("/mounts", json!({"destination": destination, "type": ty, "source": source, "options": options}))
    }

    /// The host side of the `/out` bind mount added by [`Bundle::with_out_dir`].
    pub fn out_dir(&self) -> PathBuf {
        self.path().join("out")
    }

    /// Adds a writable directory shared with the host: `<bundle>/out` bind-mounted at `/out`.
    pub fn with_out_dir(self) -> Self {
        let out = self.out_dir();
        fs::create_dir_all(&out).expect("create out dir");
        fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).expect("chmod out dir");
        let src = out.to_string_lossy().into_owned();
        self.mount("/out", "bind", &src, &["rbind", "rw"])
    }

    /// Reads `<bundle>/out/<name>` (what the container wrote to `/out/<name>`).
    pub fn read_out(&self, name: &str) -> String {
        fs::read_to_string(self.out_dir().join(name))
            .unwrap_or_else(|e| panic!("read {}/out/{name}: {e}", self.path().display()))
    }
}

// ---------------------------------------------------------------------------------------------
// running commands
// ---------------------------------------------------------------------------------------------

/// What a finished command did: exit code or signal, and what it printed.
#[derive(Debug, Clone)]
pub struct CmdOut {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Signal that killed it.
    pub signal: Option<i32>,
    /// Stdout at the moment the command exited.
    pub stdout: String,
    /// Stderr at the moment the command exited.
    pub stderr: String,
    stdout_file: Option<Arc<File>>,
}

impl CmdOut {
    /// Exit code 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the command's output unless it exited 0.
    #[track_caller]
    pub fn expect_ok(self) -> Self {
        assert!(self.ok(), "command failed: {self}");
        self
    }

    /// Panics unless the command exited with a non-zero code (a crash by signal also panics).
    #[track_caller]
    pub fn expect_fail(self) -> Self {
        assert!(self.code.is_some_and(|c| c != 0), "command was expected to fail with an error: {self}");
        self
    }

    /// Panics unless stderr (or stdout) contains every one of `needles`.
    #[track_caller]
    pub fn expect_msg(&self, needles: &[&str]) -> &Self {
        let all = format!("{}\n{}", self.stderr, self.stdout);
        for n in needles {
            assert!(all.contains(n), "expected the message to contain {n:?}: {self}");
        }
        self
    }

    /// stdout + stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Re-reads the stdout file from the start: for `create`, what the container printed since.
    pub fn stdout_now(&self) -> String {
        match &self.stdout_file {
            Some(f) => read_file_from_start(f),
            None => self.stdout.clone(),
        }
    }

    /// Waits until [`CmdOut::stdout_now`] contains `needle`.
    #[track_caller]
    pub fn wait_stdout(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stdout_now();
            if s.contains(needle) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {needle:?} on stdout: {s:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl std::fmt::Display for CmdOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> code {:?} signal {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.signal, self.stdout, self.stderr
        )
    }
}

fn read_file_from_start(f: &File) -> String {
    let mut f = f;
    let mut buf = Vec::new();
    f.seek(SeekFrom::Start(0)).expect("seek capture file");
    f.read_to_end(&mut buf).expect("read capture file");
    String::from_utf8_lossy(&buf).into_owned()
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with stdin from `stdin` (or /dev/null), stdout and stderr captured in anonymous
/// files (not pipes: a created container inherits them and keeps them open), killing it after
/// `timeout`.
pub fn run_captured(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> CmdOut {
    let out = tempfile::tempfile().expect("stdout capture file");
    let err = tempfile::tempfile().expect("stderr capture file");
    cmd.stdout(out.try_clone().expect("dup")).stderr(err.try_clone().expect("dup"));
    match stdin {
        Some(data) => {
            let mut f = tempfile::tempfile().expect("stdin file");
            f.write_all(data).expect("write stdin file");
            f.seek(SeekFrom::Start(0)).expect("seek stdin file");
            cmd.stdin(f);
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    let cmdline = describe(&cmd);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn `{cmdline}`: {e}"));
    let status = wait_timeout(child, timeout).unwrap_or_else(|| {
        panic!(
            "`{cmdline}` did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            read_file_from_start(&out),
            read_file_from_start(&err)
        )
    });
    CmdOut {
        cmdline,
        code: status.code(),
        signal: status.signal(),
        stdout: read_file_from_start(&out),
        stderr: read_file_from_start(&err),
        stdout_file: Some(Arc::new(out)),
    }
}

/// Waits for `child` up to `timeout`; on timeout kills it (SIGKILL), reaps it and returns None.
pub fn wait_timeout(mut child: std::process::Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let st = child.wait();
        let _ = tx.send(());
        st
    });
    let timed_out = rx.recv_timeout(timeout).is_err();
    if timed_out {
        // SAFETY: kill(2) on the pid of our own unreaped child; it cannot be recycled before
        // the waiter thread reaps it.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let status = waiter.join().expect("waiter thread").expect("wait for child");
    if timed_out {
        None
    } else {
        Some(status)
    }
}

/// One runtime binary with its own `--root` (a temporary directory). Containers created
/// through it are `delete --force`d when it is dropped.
pub struct Runtime {
    bin: PathBuf,
    root: tempfile::TempDir,
    tracked: Mutex<Vec<String>>,
    extra_global: Vec<String>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    /// The runtime under test ([`runtime`]) with a fresh root.
    pub fn new() -> Runtime {
        Self::with_binary(runtime())
    }

    /// Another runtime binary (e.g. runc for differential tests) with a fresh root.
    pub fn with_binary(bin: impl Into<PathBuf>) -> Runtime {
        *live_runtimes().lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let root = tempfile::Builder::new().prefix("hako-e2e-root-").tempdir().expect("create root tempdir");
        Runtime { bin: bin.into(), root, tracked: Mutex::new(Vec::new()), extra_global: Vec::new() }
    }

    /// Adds global flags (before the command), e.g. `--log`, `--log-format json`.
    pub fn with_global(mut self, flags: &[&str]) -> Self {
        self.extra_global.extend(flags.iter().map(|s| s.to_string()));
        self
    }

    /// The runtime binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The `--root` directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Remembers `id` for `delete --force` on drop.
    pub fn track(&self, id: &str) {
        let mut t = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        if !t.iter().any(|x| x == id) {
            t.push(id.to_string());
        }
    }

    /// `bin --root ROOT [global flags] args...` as a Command (stdio not set).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path());
        c.args(&self.extra_global);
        c.args(args);
        c
    }

    /// Runs `bin --root ROOT args...` and captures its output.
    pub fn cmd(&self, args: &[&str]) -> CmdOut {
        run_captured(self.command(args), None, DEFAULT_TIMEOUT)
    }

    /// Like [`Runtime::cmd`] with `stdin` fed to the command.
    pub fn cmd_stdin(&self, args: &[&str], stdin: &[u8]) -> CmdOut {
        run_captured(self.command(args), Some(stdin), DEFAULT_TIMEOUT)
    }

    /// `create --bundle B ID` with the bundle's id.
    pub fn create(&self, b: &Bundle) -> CmdOut {
        self.create_id(b.id(), b, &[])
    }

    /// `create --bundle B [extra...] ID`.
    pub fn create_id(&self, id: &str, b: &Bundle, extra: &[&str]) -> CmdOut {
        self.track(id);
        register_bundle(id, b.path());
        let bundle = b.path().to_string_lossy().into_owned();
        let mut args = vec!["create", "--bundle", bundle.as_str()];
        args.extend_from_slice(extra);
        args.push(id);
        self.cmd(&args)
    }

    /// `run --bundle B ID` in the foreground (waits for the container, which is then deleted).
    pub fn run(&self, b: &Bundle) -> CmdOut {
        self.run_id(b.id(), b, &[])
    }

    /// `run --bundle B [extra...] ID`.
    pub fn run_id(&self, id: &str, b: &Bundle, extra: &[&str]) -> CmdOut {
        self.track(id);
        register_bundle(id, b.path());
        let bundle = b.path().to_string_lossy().into_owned();
        let mut args = vec!["run", "--bundle", bundle.as_str()];
        args.extend_from_slice(extra);
        args.push(id);
        self.cmd(&args)
    }

    /// Creates and starts the bundle's container, panicking on failure; returns create's output
    /// (whose [`CmdOut::stdout_now`] shows what the container prints).
    #[track_caller]
    pub fn create_start(&self, b: &Bundle) -> CmdOut {
        let out = self.create(b).expect_ok();
        self.start(b.id()).expect_ok();
        out
    }

    /// `start ID`.
    pub fn start(&self, id: &str) -> CmdOut {
        self.cmd(&["start", id])
    }

    /// `state ID`.
    pub fn state(&self, id: &str) -> CmdOut {
        self.cmd(&["state", id])
    }

    /// `state ID` parsed; panics when the command fails.
    #[track_caller]
    pub fn state_json(&self, id: &str) -> Value {
        let out = self.state(id).expect_ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("state JSON: {e}: {out}"))
    }

    /// The `status` field of `state ID`.
    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state_json(id)["status"].as_str().unwrap_or_default().to_string()
    }

    /// The container's init pid from `state ID`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        let st = self.state_json(id);
        st["pid"].as_i64().unwrap_or_else(|| panic!("no pid in state {st}")) as i32
    }

    /// Polls `state ID` until its status is `status`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.state(id);
            if out.ok() {
                if let Ok(v) = serde_json::from_str::<Value>(&out.stdout) {
                    if v["status"] == status {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "container {id} never reached {status:?}: {out}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill ID SIGNAL`.
    pub fn kill(&self, id: &str, signal: &str) -> CmdOut {
        self.cmd(&["kill", id, signal])
    }

    /// `delete ID`.
    pub fn delete(&self, id: &str) -> CmdOut {
        self.cmd(&["delete", id])
    }

    /// `delete --force ID`.
    pub fn delete_force(&self, id: &str) -> CmdOut {
        self.cmd(&["delete", "--force", id])
    }

    /// `exec ID args...`.
    pub fn exec(&self, id: &str, args: &[&str]) -> CmdOut {
        let mut a = vec!["exec", id];
        a.extend_from_slice(args);
        self.cmd(&a)
    }

    /// `exec ID /bin/sh -c script`, panicking unless it succeeds; returns stdout.
    #[track_caller]
    pub fn exec_sh(&self, id: &str, script: &str) -> String {
        self.exec(id, &["/bin/sh", "-c", script]).expect_ok().stdout
    }
}

/// How many [`Runtime`]s of this process are alive; when the last one goes, the shared
/// parent cgroup `/hako-e2e` is removed if empty (no runtime command is in flight then).
fn live_runtimes() -> &'static Mutex<usize> {
    static LIVE: Mutex<usize> = Mutex::new(0);
    &LIVE
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.delete_tracked();
        let mut live = live_runtimes().lock().unwrap_or_else(|e| e.into_inner());
        *live = live.saturating_sub(1);
        if *live == 0 {
            cleanup_cgroup_parent();
        }
    }
}

impl Runtime {
    fn delete_tracked(&mut self) {
        let ids = std::mem::take(&mut *self.tracked.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            if self.root.path().join(&id).exists() {
                let mut c = self.command(&["delete", "--force", &id]);
                c.stdout(Stdio::null()).stderr(Stdio::null()).stdin(Stdio::null());
                if let Ok(child) = c.spawn() {
                    let _ = wait_timeout(child, DEFAULT_TIMEOUT);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// host inspection and leak checks
// ---------------------------------------------------------------------------------------------

/// One line of /proc/<pid>/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    /// Path of the mounted directory inside the filesystem (field 4).
    pub root: String,
    /// Mount point (field 5), unescaped.
    pub target: String,
    /// Per-mount options (field 6), e.g. `rw,nosuid`.
    pub options: Vec<String>,
    /// Optional fields (e.g. `shared:1`, `master:2`).
    pub optional: Vec<String>,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Super-block options.
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// True when `opt` is a per-mount option (e.g. `ro`, `nosuid`).
    pub fn has(&self, opt: &str) -> bool {
        self.options.iter().any(|o| o == opt)
    }
    /// True when `opt` is a super-block option (e.g. `size=1024k`).
    pub fn has_super(&self, opt: &str) -> bool {
        self.super_options.iter().any(|o| o == opt)
    }
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text (as printed by /proc/<pid>/mountinfo).
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    let mut v = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < sep + 3 || sep < 6 {
            continue;
        }
        v.push(MountInfo {
            root: unescape_mount(fields[3]),
            target: unescape_mount(fields[4]),
            options: fields[5].split(',').map(String::from).collect(),
            optional: fields[6..sep].iter().map(|s| s.to_string()).collect(),
            fstype: fields[sep + 1].to_string(),
            source: unescape_mount(fields[sep + 2]),
            super_options: fields.get(sep + 3).map(|s| s.split(',').map(String::from).collect()).unwrap_or_default(),
        });
    }
    v
}

/// The mounts of this (the host's) mount namespace.
pub fn host_mounts() -> Vec<MountInfo> {
    parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo"))
}

/// Mount points of every cgroup (v1) and cgroup2 hierarchy on the host.
pub fn cgroup_mountpoints() -> Vec<PathBuf> {
    host_mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.target))
        .collect()
}

/// Where the v1 hierarchy holding `controller` is mounted (e.g. `memory`, `name=systemd`).
pub fn cgroup_v1_mount(controller: &str) -> Option<PathBuf> {
    host_mounts()
        .into_iter()
        .find(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == controller))
        .map(|m| PathBuf::from(m.target))
}

/// Where cgroup2 is mounted (/sys/fs/cgroup/unified on hybrid hosts, /sys/fs/cgroup on v2).
pub fn cgroup_v2_mount() -> Option<PathBuf> {
    host_mounts().into_iter().find(|m| m.fstype == "cgroup2").map(|m| PathBuf::from(m.target))
}

/// Reads a file of a container's v1 cgroup from the host, e.g. ("memory", "hako-e2e/x",
/// "memory.limit_in_bytes"); None when the controller or file is missing.
pub fn read_cgroup_v1(controller: &str, rel: &str, file: &str) -> Option<String> {
    let mnt = cgroup_v1_mount(controller)?;
    fs::read_to_string(mnt.join(rel.trim_start_matches('/')).join(file)).ok().map(|s| s.trim().to_string())
}

fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Pids of host processes whose root directory is `rootfs` (or lies under it).
pub fn processes_rooted_in(rootfs: &Path) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(target) = fs::metadata(rootfs) else {
        return found;
    };
    let canon = fs::canonicalize(rootfs).unwrap_or_else(|_| rootfs.to_path_buf());
    let me = std::process::id() as i32;
    let Ok(rd) = fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let root = e.path().join("root");
        let by_inode = fs::metadata(&root).is_ok_and(|m| same_file(&m, &target));
        let by_path = fs::read_link(&root).is_ok_and(|p| p.starts_with(&canon));
        if by_inode || by_path {
            let cmd = fs::read(e.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            found.push((pid, cmd));
        }
    }
    found
}

/// Everything `id` left behind: state dir, cgroup dirs, mounts under the bundle, processes
/// rooted in its rootfs. Empty when clean.
pub fn leftovers(root: &Path, id: &str, cgroup_rel_path: &str, bundle: Option<&Path>) -> Vec<String> {
    let mut v = Vec::new();
    let state = root.join(id);
    if fs::symlink_metadata(&state).is_ok() {
        v.push(format!("state dir {} still exists", state.display()));
    }
    let rel = cgroup_rel_path.trim_start_matches('/');
    if !rel.is_empty() {
        for mnt in cgroup_mountpoints() {
            let d = mnt.join(rel);
            if d.exists() {
                v.push(format!("cgroup {} still exists", d.display()));
            }
        }
    }
    if let Some(b) = bundle {
        let canon = fs::canonicalize(b).unwrap_or_else(|_| b.to_path_buf());
        for m in host_mounts() {
            if Path::new(&m.target).starts_with(&canon) || Path::new(&m.target).starts_with(b) {
                v.push(format!("mount {} ({}) still exists", m.target, m.fstype));
            }
        }
        for (pid, cmd) in processes_rooted_in(&b.join("rootfs")) {
            v.push(format!("process {pid} ({cmd}) still runs in the rootfs"));
        }
    }
    v
}

/// Asserts that container `id` left nothing behind: no `<root>/<id>`, no cgroup directory
/// `cgroup_rel_path` in any hierarchy (v1, hybrid unified, pure v2), and, when the id was run
/// from a [`Bundle`] of this process, no mount under the bundle and no process whose root is
/// its rootfs. Polls for up to 5 s (a killed process takes a moment to go away).
#[track_caller]
pub fn assert_no_leftovers(root: &Path, id: &str, cgroup_rel_path: &str) {
    let bundle = registered_bundle(id);
    assert_no_leftovers_at(root, id, cgroup_rel_path, bundle.as_deref());
}

/// [`assert_no_leftovers`] with an explicit bundle directory.
#[track_caller]
pub fn assert_no_leftovers_at(root: &Path, id: &str, cgroup_rel_path: &str, bundle: Option<&Path>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = leftovers(root, id, cgroup_rel_path, bundle);
        if l.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            force_cleanup(root, id, cgroup_rel_path, bundle);
            panic!("container {id} left things behind (the harness cleaned them up):\n  {}", l.join("\n  "));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Removes what a failing runtime left behind for `id`, so one failure does not litter the
/// host: kills processes in its cgroups or rooted in its rootfs, unmounts what is under the
/// bundle, removes the cgroup directories and the state directory.
pub fn force_cleanup(root: &Path, id: &str, cgroup_rel_path: &str, bundle: Option<&Path>) {
    let rel = cgroup_rel_path.trim_start_matches('/');
    let mut dirs = Vec::new();
    if !rel.is_empty() {
        for mnt in cgroup_mountpoints() {
            let d = mnt.join(rel);
            if d.is_dir() {
                dirs.push(d);
            }
        }
    }
    for d in &dirs {
        let _ = fs::write(d.join("freezer.state"), "THAWED");
        let _ = fs::write(d.join("cgroup.freeze"), "0");
    }
    for _ in 0..50 {
        let mut pids: Vec<i32> = Vec::new();
        for d in &dirs {
            if let Ok(text) = fs::read_to_string(d.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        if let Some(b) = bundle {
            pids.extend(processes_rooted_in(&b.join("rootfs")).into_iter().map(|(p, _)| p));
        }
        pids.retain(|p| *p != std::process::id() as i32 && *p > 1);
        if pids.is_empty() {
            break;
        }
        for p in pids {
            // SAFETY: kill(2) with a plain pid; these processes belong to the failed container.
            unsafe {
                libc::kill(p, libc::SIGKILL);
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    if let Some(b) = bundle {
        let canon = fs::canonicalize(b).unwrap_or_else(|_| b.to_path_buf());
        let mut targets: Vec<String> = host_mounts()
            .into_iter()
            .filter(|m| Path::new(&m.target).starts_with(&canon) || Path::new(&m.target).starts_with(b))
            .map(|m| m.target)
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = nix::mount::umount2(t.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    // Deepest first; a cgroup empties a moment after its last process dies.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
    for d in &dirs {
        for _ in 0..50 {
            if fs::remove_dir(d).is_ok() || !d.exists() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    if !id.is_empty() && !id.contains('/') && id != "." && id != ".." {
        let _ = fs::remove_dir_all(root.join(id));
    }
}

/// Removes the parent cgroup `/hako-e2e` from every hierarchy when it is empty (best effort,
/// ignored while other tests still use it).
pub fn cleanup_cgroup_parent() {
    for mnt in cgroup_mountpoints() {
        let _ = fs::remove_dir(mnt.join(CGROUP_PARENT));
    }
}

/// Polls `f` until it returns true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Parses the `Name:\tvalue` lines of /proc/<pid>/status text.
pub fn parse_status(text: &str) -> HashMap<String, String> {
    text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect()
}

/// Extracts the text between `==NAME==` and the next `==` marker line in probe output.
pub fn section(output: &str, name: &str) -> String {
    let marker = format!("=={name}==");
    let mut lines = output.lines().skip_while(|l| l.trim() != marker);
    if lines.next().is_none() {
        return String::new();
    }
    lines.take_while(|l| !(l.starts_with("==") && l.ends_with("=="))).collect::<Vec<_>>().join("\n")
}

/// Capability names and bit numbers (those the tests use).
pub fn cap_bit(name: &str) -> u32 {
    const CAPS: &[&str] = &[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];
    CAPS.iter().position(|c| *c == name).unwrap_or_else(|| panic!("unknown capability {name}")) as u32
}

/// The bit mask of a list of capability names.
pub fn cap_mask(names: &[&str]) -> u64 {
    names.iter().fold(0u64, |m, n| m | (1u64 << cap_bit(n)))
}

// ---------------------------------------------------------------------------------------------
// console socket (terminal: true)
// ---------------------------------------------------------------------------------------------

/// A `--console-socket` listener: receives the pty master the runtime sends with SCM_RIGHTS.
pub struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl Default for ConsoleSocket {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleSocket {
    /// Binds a listener in a fresh temporary directory.
    pub fn new() -> ConsoleSocket {
        let dir = tempfile::Builder::new().prefix("hako-e2e-console-").tempdir().expect("tempdir");
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).expect("bind console socket");
        listener.set_nonblocking(true).expect("nonblocking listener");
        ConsoleSocket { _dir: dir, path, listener }
    }

    /// The socket path to pass as `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a string.
    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Accepts one connection and receives the pty master fd.
    #[track_caller]
    pub fn recv_master(&self, timeout: Duration) -> OwnedFd {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection on the console socket");
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept on console socket: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking stream");
        stream.set_read_timeout(Some(timeout)).expect("read timeout");
        recv_fd(stream.as_raw_fd()).expect("receive the pty master over SCM_RIGHTS")
    }
}

/// Receives one fd sent with SCM_RIGHTS on a unix socket.
pub fn recv_fd(sock: RawFd) -> std::io::Result<OwnedFd> {
    let mut data = [0u8; 4096];
    // Room for one cmsghdr carrying up to 4 fds.
    let mut cbuf = [0u64; 16];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    // SAFETY: msghdr is plain data; every pointer field is set to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    // SAFETY: sock is an open socket; msg points at valid buffers that outlive the call.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: msg was filled by recvmsg; CMSG_* walk the control buffer it describes.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                return Ok(OwnedFd::from_raw_fd(fd));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no SCM_RIGHTS fd in the message"))
}

/// Reads from `fd` (e.g. a pty master) until the accumulated text contains `needle`.
#[track_caller]
pub fn read_until(fd: &OwnedFd, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut acc = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&acc).into_owned();
        if text.contains(needle) {
            return text;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {needle:?}; got {text:?}");
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: pfd is a valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
        if r <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: buf is writable for its length; fd is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            let text = String::from_utf8_lossy(&acc).into_owned();
            panic!("end of input before {needle:?}; got {text:?}");
        }
        acc.extend_from_slice(&buf[..n as usize]);
    }
}

/// Writes all of `data` to `fd`.
pub fn write_fd(fd: &OwnedFd, data: &[u8]) {
    let mut off = 0;
    while off < data.len() {
        // SAFETY: the slice is valid for reads of its length; fd is open.
        let n = unsafe { libc::write(fd.as_raw_fd(), data[off..].as_ptr().cast(), data.len() - off) };
        assert!(n > 0, "write to fd: {}", std::io::Error::last_os_error());
        off += n as usize;
    }
}

/// Spawns `cmd` with `fd` duplicated onto `target` in the child (not close-on-exec there).
pub fn pass_fd(cmd: &mut Command, fd: RawFd, target: RawFd) {
    // SAFETY: the closure only calls async-signal-safe dup2/fcntl in the forked child.
    unsafe {
        cmd.pre_exec(move || {
            if fd == target {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The fds of `pid` with their targets and whether they are close-on-exec.
pub fn fds_of(pid: i32) -> Vec<(i32, String, bool)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let target = std::fs::read_link(e.path()).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap_or(0);
        out.push((fd, target, flags & libc::O_CLOEXEC as u32 != 0));
    }
    out.sort();
    out
}

/// An fd that the caller of hako leaked (not close-on-exec), as engines sometimes do: a file named `marker`.
pub fn leak_marker(cmd: &mut std::process::Command, marker: &std::path::Path) {
    let f = std::fs::File::create(marker).unwrap();
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    // SAFETY: dup2 in the child before exec; the new fd 9 is not close-on-exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::dup2(fd, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
