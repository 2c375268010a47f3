//! End-to-end tests of the guest agent, run standalone on this host (`--port -`, as root): each test starts
//! its own agent with a private `--state`, drives it through hako-proto frames on its stdin/stdout, and runs
//! real containers from a busybox rootfs (a copy of Debian's static /bin/busybox) with process isolation.
//! `HAKO_AGENT_BIN=$(scripts/agent-build) cargo test -p hako-agent --test agent` runs them against the static
//! release build. Each container's cgroup is `/<id>` in every hierarchy, with ids that start with `hako-agent-test-`.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio as PStdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hako_proto::{Event, Frame, Message, Op, Reply, Share, Stdio};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The agent under test: `HAKO_AGENT_BIN` (e.g. the static build of `scripts/agent-build`), else this
/// package's debug binary.
fn agent_binary() -> PathBuf {
    match std::env::var_os("HAKO_AGENT_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_hako-agent")),
    }
}

/// Everything the agent sent, with the position of each frame in the stream.
#[derive(Default, Debug)]
struct Inbox {
    seq: u64,
    hello: Option<Message>,
    responses: HashMap<u64, (u64, Result<Reply, String>)>,
    data: HashMap<u32, Vec<u8>>,
    last_data: HashMap<u32, u64>,
    eof: HashMap<u32, u64>,
    events: Vec<(u64, Event)>,
    closed: bool,
}

struct Agent {
    child: Child,
    port: Option<ChildStdin>,
    inbox: Arc<(Mutex<Inbox>, Condvar)>,
    next_req: AtomicU64,
    dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(agent_binary())
            .arg("--port")
            .arg("-")
            .arg("--state")
            .arg(dir.path().join("root"))
            .stdin(PStdio::piped())
            .stdout(PStdio::piped())
            .stderr(PStdio::inherit())
            .spawn()
            .expect("start hako-agent");
        let mut out = child.stdout.take().expect("stdout");
        let inbox: Arc<(Mutex<Inbox>, Condvar)> = Arc::default();
        let ib = inbox.clone();
        std::thread::spawn(move || loop {
            let frame = hako_proto::read_frame(&mut out);
            let (lock, cv) = &*ib;
            let mut b = lock.lock().unwrap();
            b.seq += 1;
            let seq = b.seq;
            match frame {
                Ok(Some(Frame::Msg(m @ Message::Hello { .. }))) => b.hello = Some(m),
                Ok(Some(Frame::Msg(Message::Response { req, result }))) => {
                    b.responses.insert(req, (seq, result));
                }
                Ok(Some(Frame::Msg(Message::Event { event }))) => b.events.push((seq, event)),
                Ok(Some(Frame::Msg(m))) => panic!("unexpected message from the agent: {m:?}"),
                Ok(Some(Frame::Data { stream, data })) => {
                    b.data.entry(stream).or_default().extend_from_slice(&data);
                    b.last_data.insert(stream, seq);
                }
                Ok(Some(Frame::Eof { stream })) => {
                    assert!(b.eof.insert(stream, seq).is_none(), "two Eof frames for stream {stream}");
                }
                Ok(None) | Err(_) => {
                    b.closed = true;
                    cv.notify_all();
                    return;
                }
            }
            cv.notify_all();
        });
        busybox_rootfs(&dir.path().join("rootfs"));
        let a = Agent { child, port: None, inbox, next_req: AtomicU64::new(1), dir };
        let hello = a.until("hello", |b| b.hello.clone());
        hako_proto::check_hello(&hello).expect("hello with this build's version");
        a
    }

    /// Waits until `f` returns something (or the agent closes the link, or TIMEOUT).
    fn until<T>(&self, what: &str, mut f: impl FnMut(&Inbox) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        let (lock, cv) = &*self.inbox;
        let mut b = lock.lock().unwrap();
        loop {
            if let Some(t) = f(&b) {
                return t;
            }
            let now = Instant::now();
            assert!(!b.closed, "the agent closed the link while waiting for {what}: {b:?}");
            assert!(now < deadline, "timed out waiting for {what}: {b:?}");
            b = cv.wait_timeout(b, deadline - now).unwrap().0;
        }
    }

    fn bundle(&self, tag: &str, args: &[&str]) -> Bundle {
        Bundle::new(&self.dir.path().join("rootfs"), tag, args)
    }

    fn write(&mut self, frame: Frame) {
        let port = match &mut self.port {
            Some(p) => p,
            None => self.port.insert(self.child.stdin.take().expect("stdin")),
        };
        port.write_all(&hako_proto::encode(&frame).unwrap()).expect("write to the agent");
    }

    fn send(&mut self, op: Op) -> u64 {
        let req = self.next_req.fetch_add(1, Ordering::SeqCst);
        self.write(Frame::Msg(Message::Request { req, op }));
        req
    }

    fn response(&self, req: u64) -> (u64, Result<Reply, String>) {
        self.until(&format!("response {req}"), |b| b.responses.get(&req).cloned())
    }

    fn call(&mut self, op: Op) -> Result<Reply, String> {
        let req = self.send(op);
        self.response(req).1
    }

    fn ok(&mut self, op: Op) -> Reply {
        let what = format!("{op:?}");
        self.call(op).unwrap_or_else(|e| panic!("{what} failed: {e}"))
    }

    fn create(&mut self, b: &Bundle, stdio: Stdio) -> i32 {
        match self.ok(Op::Create {
            id: b.id.clone(),
            config: b.config.clone(),
            shares: vec![],
            stdio,
            net: vec![],
            sandbox: None,
        }) {
            Reply::Created { pid } => {
                assert!(pid > 0);
                pid
            }
            r => panic!("create answered {r:?}"),
        }
    }

    fn exited(&self, req: u64) -> (u64, i32) {
        match self.response(req) {
            (seq, Ok(Reply::Exited { status })) => (seq, status),
            r => panic!("wait answered {r:?}"),
        }
    }

    fn output(&self, stream: u32) -> String {
        let b = self.inbox.0.lock().unwrap();
        String::from_utf8_lossy(b.data.get(&stream).map(|v| &v[..]).unwrap_or(b"")).into_owned()
    }

    fn wait_output(&self, stream: u32, needle: &str) {
        self.until(&format!("{needle:?} on stream {stream}"), |b| {
            b.data.get(&stream).filter(|d| String::from_utf8_lossy(d).contains(needle)).map(|_| ())
        });
    }

    fn eof_seq(&self, stream: u32) -> Option<u64> {
        self.inbox.0.lock().unwrap().eof.get(&stream).copied()
    }

    /// Closes the port and waits for the agent to exit; returns its exit code.
    fn close(mut self) -> i32 {
        self.port = None;
        drop(self.child.stdin.take());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the agent did not exit after its port closed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.port = None;
        drop(self.child.stdin.take());
        let deadline = Instant::now() + TIMEOUT;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds a busybox rootfs in `dir` (read-only in the containers).
fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy /bin/busybox (install busybox-static)");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = dir.join("bin").join(applet.trim());
        if !applet.is_empty() && applet != "busybox" && !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

struct Bundle {
    id: String,
    config: Value,
}

impl Bundle {
    fn new(rootfs: &Path, tag: &str, args: &[&str]) -> Bundle {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!("hako-agent-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/bin", "TERM=xterm"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
                },
                "noNewPrivileges": true
            },
            "root": {"path": rootfs, "readonly": true},
            "hostname": "agent",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
            ],
            "linux": {
                "cgroupsPath": format!("/{id}"),
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}]
            }
        });
        Bundle { id, config }
    }

    fn terminal(mut self) -> Bundle {
        self.config["process"]["terminal"] = json!(true);
        self
    }

    fn without_pid_namespace(mut self) -> Bundle {
        let ns = self.config["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
        self
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let cg = hako_cgroups::Cgroup::resolve(Some(Path::new(&format!("/{}", self.id))), &self.id).unwrap();
        cg.hierarchies().iter().map(|h| h.dir.clone()).collect()
    }
}

fn pipes(stdin: Option<u32>, stdout: Option<u32>, stderr: Option<u32>) -> Stdio {
    Stdio { terminal: false, stdin, stdout, stderr }
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(s.rsplit(')').next().and_then(|r| r.split_whitespace().next()), Some("Z" | "X")),
        Err(_) => false,
    }
}

fn assert_gone(agent: &Agent, b: &Bundle, pids: &[i32]) {
    for d in b.cgroup_dirs() {
        assert!(!d.exists(), "cgroup {} is left behind", d.display());
    }
    for pid in pids {
        assert!(!alive(*pid), "process {pid} of {} is still alive", b.id);
    }
    let root = agent.dir.path().join("root");
    assert!(!root.join("state").join(&b.id).exists(), "state directory of {} is left", b.id);
    assert!(!root.join("bundles").join(&b.id).exists(), "bundle of {} is left", b.id);
}

#[test]
fn output_arrives_before_the_exact_exit_status() {
    let mut a = Agent::start();
    let b = a.bundle(
        "exit",
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done; exit 3",
        ],
    );
    let pid = a.create(&b, pipes(None, Some(1), Some(2)));
    // A wait sent before start is answered when the process is done.
    let wait = a.send(Op::Wait { id: b.id.clone(), exec_id: None });
    assert_eq!(a.ok(Op::Start { id: b.id.clone() }), Reply::Done);
    let (exit_seq, status) = a.exited(wait);
    assert_eq!(status, 3);
    let out = a.output(1);
    assert!(out.starts_with("hello\nline0\n") && out.ends_with("line1999\n"), "stdout: {out:?}");
    assert_eq!(a.output(2), "oops\n");
    for s in [1, 2] {
        let eof = a.eof_seq(s).expect("Eof before the exit status");
        assert!(eof < exit_seq, "stream {s} ended after the exit status was sent");
    }
    // The event, and a later wait, carry the same status.
    let ev = a.until("exit event", |ib| {
        ib.events.iter().find_map(|(_, e)| match e {
            Event::Exited { id, exec_id: None, status } if *id == b.id => Some(*status),
            _ => None,
        })
    });
    assert_eq!(ev, 3);
    assert_eq!(a.ok(Op::Wait { id: b.id.clone(), exec_id: None }), Reply::Exited { status: 3 });
    assert_eq!(a.ok(Op::Delete { id: b.id.clone() }), Reply::Done);
    assert_gone(&a, &b, &[pid]);
    assert_eq!(a.close(), 0);
}

#[test]
fn stdin_reaches_the_process_and_eof_closes_it() {
    let mut a = Agent::start();
    let b = a.bundle("stdin", &["sh", "-c", "cat; echo end"]);
    a.create(&b, pipes(Some(10), Some(11), None));
    a.ok(Op::Start { id: b.id.clone() });
    a.write(Frame::Data { stream: 10, data: b"one\n".to_vec() });
    a.wait_output(11, "one\n");
    a.write(Frame::Data { stream: 10, data: b"two\n".to_vec() });
    a.write(Frame::Eof { stream: 10 });
    let wait = a.send(Op::Wait { id: b.id.clone(), exec_id: None });
    assert_eq!(a.exited(wait).1, 0);
    assert_eq!(a.output(11), "one\ntwo\nend\n");
    a.ok(Op::Delete { id: b.id.clone() });
}

#[test]
fn terminal_process_gets_a_pty_and_its_size() {
    let mut a = Agent::start();
    let b = a.bundle("tty", &["sh"]).terminal();
    let stdio = Stdio { terminal: true, stdin: Some(1), stdout: Some(2), stderr: Some(3) };
    // Disagreeing terminal flags are refused.
    let mut bad = a.bundle("tty-bad", &["sh"]);
    bad.config["process"]["terminal"] = json!(false);
    let e = a
        .call(Op::Create {
            id: bad.id.clone(),
            config: bad.config.clone(),
            shares: vec![],
            stdio: stdio.clone(),
            net: vec![],
            sandbox: None,
        })
        .unwrap_err();
    assert!(e.contains(&bad.id) && e.contains("terminal"), "{e}");

    a.create(&b, stdio);
    // A terminal has no separate stderr: that stream ends at once.
    a.until("stderr Eof", |ib| ib.eof.get(&3).copied());
    a.ok(Op::Resize { id: b.id.clone(), exec_id: None, rows: 33, cols: 101 });
    a.ok(Op::Start { id: b.id.clone() });
    a.write(Frame::Data { stream: 1, data: b"[ -t 0 ] && echo IS-A-TTY; stty size; exit 7\n".to_vec() });
    let wait = a.send(Op::Wait { id: b.id.clone(), exec_id: None });
    assert_eq!(a.exited(wait).1, 7);
    let out = a.output(2);
    assert!(out.contains("IS-A-TTY") && out.contains("33 101"), "terminal output: {out:?}");
    // Resizing a process without a terminal is an error naming it.
    let p = a.bundle("notty", &["true"]);
    a.create(&p, pipes(None, None, None));
    let e = a.call(Op::Resize { id: p.id.clone(), exec_id: None, rows: 1, cols: 1 }).unwrap_err();
    assert!(e.contains(&p.id) && e.contains("no terminal"), "{e}");
    a.ok(Op::Delete { id: b.id.clone() });
    a.ok(Op::Delete { id: p.id.clone() });
}

#[test]
fn exec_ps_stats_kill_and_delete() {
    let mut a = Agent::start();
    let b = a.bundle("exec", &["sleep", "1000"]);
    let pid = a.create(&b, pipes(None, None, None));
    a.ok(Op::Start { id: b.id.clone() });

    let process = json!({"args": ["sh", "-c", "echo $((6*7)); exit 5"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}});
    let r = a.ok(Op::Exec { id: b.id.clone(), exec_id: "e1".into(), process, stdio: pipes(None, Some(5), None) });
    assert!(matches!(r, Reply::Created { pid } if pid > 0), "{r:?}");
    assert_eq!(a.ok(Op::Wait { id: b.id.clone(), exec_id: Some("e1".into()) }), Reply::Exited { status: 5 });
    assert_eq!(a.output(5), "42\n");

    // An exec'd process with a terminal.
    let process = json!({"terminal": true, "args": ["sh", "-c", "read x; stty size; [ -t 1 ] && echo TTY"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}});
    a.ok(Op::Exec {
        id: b.id.clone(),
        exec_id: "t".into(),
        process,
        stdio: Stdio { terminal: true, stdin: Some(6), stdout: Some(7), stderr: None },
    });
    a.ok(Op::Resize { id: b.id.clone(), exec_id: Some("t".into()), rows: 20, cols: 60 });
    a.write(Frame::Data { stream: 6, data: b"go\n".to_vec() });
    assert_eq!(a.ok(Op::Wait { id: b.id.clone(), exec_id: Some("t".into()) }), Reply::Exited { status: 0 });
    let out = a.output(7);
    assert!(out.contains("20 60") && out.contains("TTY"), "{out:?}");

    // A long-running exec'd process: ps sees it, SIGTERM ends it with 143.
    let process = json!({"args": ["sleep", "1000"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}});
    let epid = match a.ok(Op::Exec {
        id: b.id.clone(),
        exec_id: "s".into(),
        process: process.clone(),
        stdio: pipes(None, None, None),
    }) {
        Reply::Created { pid } => pid,
        r => panic!("{r:?}"),
    };
    let e = a
        .call(Op::Exec { id: b.id.clone(), exec_id: "s".into(), process, stdio: pipes(None, None, None) })
        .unwrap_err();
    assert!(e.contains("process s") && e.contains("still running"), "{e}");
    match a.ok(Op::Ps { id: b.id.clone() }) {
        Reply::Pids { pids } => {
            assert!(pids.contains(&pid) && pids.contains(&epid), "ps {pids:?} lacks {pid} or {epid}")
        }
        r => panic!("{r:?}"),
    }
    match a.ok(Op::Stats { id: b.id.clone() }) {
        Reply::Stats { data } => {
            assert!(data["pids"]["current"].as_u64().unwrap_or(0) >= 2, "stats: {data}");
            assert!(data["memory"].is_object(), "stats: {data}");
        }
        r => panic!("{r:?}"),
    }
    a.ok(Op::Update { id: b.id.clone(), resources: json!({"pids": {"limit": 77}}) });
    let pids_dir = b.cgroup_dirs().into_iter().find(|d| d.join("pids.max").exists()).expect("a pids cgroup");
    assert_eq!(std::fs::read_to_string(pids_dir.join("pids.max")).unwrap().trim(), "77");
    let wait = a.send(Op::Wait { id: b.id.clone(), exec_id: Some("s".into()) });
    a.ok(Op::Kill { id: b.id.clone(), exec_id: Some("s".into()), signal: 15, all: false });
    assert_eq!(a.exited(wait).1, 143);
    let e = a.call(Op::Kill { id: b.id.clone(), exec_id: Some("s".into()), signal: 15, all: false }).unwrap_err();
    assert!(e.contains(&b.id) && e.contains("exited with status 143"), "{e}");

    // Pause and resume through the freezer.
    a.ok(Op::Pause { id: b.id.clone() });
    let e = a
        .call(Op::Exec {
            id: b.id.clone(),
            exec_id: "p".into(),
            process: json!({"args": ["true"], "cwd": "/"}),
            stdio: pipes(None, None, None),
        })
        .unwrap_err();
    assert!(e.contains("paused"), "{e}");
    a.ok(Op::Resume { id: b.id.clone() });

    // Delete a running container: its pending wait gets the SIGKILL status, nothing is left.
    let wait = a.send(Op::Wait { id: b.id.clone(), exec_id: None });
    let dirs = b.cgroup_dirs();
    assert!(dirs.iter().all(|d| d.exists()), "cgroups exist while it runs");
    assert_eq!(a.ok(Op::Delete { id: b.id.clone() }), Reply::Done);
    assert_eq!(a.exited(wait).1, 137);
    assert_gone(&a, &b, &[pid, epid]);
    let e = a.call(Op::Wait { id: b.id.clone(), exec_id: None }).unwrap_err();
    assert!(e.contains(&b.id), "{e}");
}

#[test]
fn sigterm_to_the_container_gives_143_and_kill_all_137() {
    let mut a = Agent::start();
    // Without a pid namespace the process is not an init, so SIGTERM's default action applies.
    let b = a.bundle("term", &["sleep", "1000"]).without_pid_namespace();
    a.create(&b, pipes(None, None, None));
    a.ok(Op::Start { id: b.id.clone() });
    let wait = a.send(Op::Wait { id: b.id.clone(), exec_id: None });
    a.ok(Op::Kill { id: b.id.clone(), exec_id: None, signal: 15, all: false });
    assert_eq!(a.exited(wait).1, 143);
    let e = a.call(Op::Start { id: b.id.clone() }).unwrap_err();
    assert!(e.contains(&b.id) && e.contains("stopped"), "{e}");
    a.ok(Op::Delete { id: b.id.clone() });

    let c = a.bundle("killall", &["sh", "-c", "sleep 1000 & sleep 1000"]);
    let pid = a.create(&c, pipes(None, None, None));
    a.ok(Op::Start { id: c.id.clone() });
    let wait = a.send(Op::Wait { id: c.id.clone(), exec_id: None });
    a.ok(Op::Kill { id: c.id.clone(), exec_id: None, signal: 9, all: true });
    assert_eq!(a.exited(wait).1, 137);
    a.ok(Op::Delete { id: c.id.clone() });
    assert_gone(&a, &c, &[pid]);
}

#[test]
fn errors_name_the_container_and_leave_nothing() {
    let mut a = Agent::start();
    for op in [
        Op::Start { id: "nosuch".into() },
        Op::Kill { id: "nosuch".into(), exec_id: None, signal: 15, all: false },
        Op::Wait { id: "nosuch".into(), exec_id: None },
        Op::Ps { id: "nosuch".into() },
        Op::Stats { id: "nosuch".into() },
        Op::Delete { id: "nosuch".into() },
        Op::Pause { id: "nosuch".into() },
    ] {
        let e = a.call(op).unwrap_err();
        assert_eq!(e, "container nosuch does not exist in the guest");
    }
    let b = a.bundle("err", &["true"]);
    let pid = a.create(&b, pipes(None, None, None));
    let e = a.call(Op::Wait { id: b.id.clone(), exec_id: Some("nope".into()) }).unwrap_err();
    assert_eq!(e, format!("container {} has no process nope", b.id));
    let e = a
        .call(Op::Create {
            id: b.id.clone(),
            config: b.config.clone(),
            shares: vec![],
            stdio: Stdio::default(),
            net: vec![],
            sandbox: None,
        })
        .unwrap_err();
    assert!(e.contains(&b.id) && e.contains("already exists"), "{e}");
    let e = a.call(Op::Kill { id: b.id.clone(), exec_id: None, signal: 99, all: false }).unwrap_err();
    assert!(e.contains(&b.id) && e.contains("99"), "{e}");
    a.ok(Op::Delete { id: b.id.clone() });
    assert_gone(&a, &b, &[pid]);

    // A share the VM does not have: the error names it, nothing is left.
    let c = a.bundle("share", &["true"]);
    let mnt = a.dir.path().join("share-mnt");
    let share =
        Share { tag: "hako-no-such-tag".into(), guest_path: mnt.to_string_lossy().into_owned(), readonly: true };
    let e = a
        .call(Op::Create {
            id: c.id.clone(),
            config: c.config.clone(),
            shares: vec![share],
            stdio: Stdio::default(),
            net: vec![],
            sandbox: None,
        })
        .unwrap_err();
    assert!(e.starts_with(&format!("container {}: mounting a share: 9p tag hako-no-such-tag on ", c.id)), "{e}");
    assert_gone(&a, &c, &[]);
    // A config the process backend refuses: the error names the container and the problem.
    let mut d = a.bundle("bad", &["true"]);
    d.config["linux"]["namespaces"] = json!([{"type": "pid"}]);
    let e = a
        .call(Op::Create {
            id: d.id.clone(),
            config: d.config.clone(),
            shares: vec![],
            stdio: Stdio::default(),
            net: vec![],
            sandbox: None,
        })
        .unwrap_err();
    assert!(e.contains(&d.id) && e.contains("mount namespace"), "{e}");
    assert_gone(&a, &d, &[]);
    // An operation this agent does not know is answered, not ignored.
    let req = 999_999;
    let body = json!({"type": "request", "req": req, "op": "teleport", "id": "x"}).to_string();
    let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    frame.push(0);
    frame.extend_from_slice(body.as_bytes());
    a.port.get_or_insert_with(|| a.child.stdin.take().unwrap()).write_all(&frame).unwrap();
    let e = a.response(req).1.unwrap_err();
    assert!(e.contains("teleport"), "{e}");
}

#[test]
fn closing_the_port_removes_every_container() {
    let mut a = Agent::start();
    let b = a.bundle("close", &["sleep", "1000"]);
    let pid = a.create(&b, pipes(None, Some(1), None));
    a.ok(Op::Start { id: b.id.clone() });
    let c = a.bundle("close-created", &["true"]);
    let pid2 = a.create(&c, pipes(None, None, None));
    let root = a.dir.path().to_owned();
    assert_eq!(a.close(), 0);
    for (bundle, pid) in [(&b, pid), (&c, pid2)] {
        for d in bundle.cgroup_dirs() {
            assert!(!d.exists(), "cgroup {} is left behind", d.display());
        }
        assert!(!alive(pid), "process {pid} survived the agent");
        assert!(!root.join("root/state").join(&bundle.id).exists());
    }
}

#[test]
fn shutdown_answers_then_exits() {
    let mut a = Agent::start();
    let b = a.bundle("shutdown", &["sleep", "1000"]);
    let pid = a.create(&b, pipes(None, None, None));
    assert_eq!(a.ok(Op::Shutdown), Reply::Done);
    a.until("the agent to exit", |ib| ib.closed.then_some(()));
    assert!(!alive(pid));
    for d in b.cgroup_dirs() {
        assert!(!d.exists(), "cgroup {} is left behind", d.display());
    }
}

#[test]
fn seccomp_rlimits_and_user_apply_in_the_container() {
    let mut a = Agent::start();
    let mut b = a.bundle("seccomp", &["sh", "-c", "ulimit -n; id -u; mkdir /tmp/x 2>/dev/null || echo mkdir-denied"]);
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 123, "soft": 123}]);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    a.create(&b, pipes(None, Some(1), Some(2)));
    a.ok(Op::Start { id: b.id.clone() });
    assert_eq!(a.ok(Op::Wait { id: b.id.clone(), exec_id: None }), Reply::Exited { status: 0 });
    assert_eq!(a.output(1), "123\n1000\nmkdir-denied\n", "stderr: {}", a.output(2));
    a.ok(Op::Delete { id: b.id.clone() });
}

#[test]
fn serves_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("port.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut child = Command::new(agent_binary())
        .arg("--port")
        .arg(&path)
        .arg("--state")
        .arg(dir.path().join("root"))
        .stdin(PStdio::null())
        .spawn()
        .expect("start hako-agent");
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    let hello = match hako_proto::read_frame(&mut conn).unwrap() {
        Some(Frame::Msg(m)) => m,
        other => panic!("expected hello, got {other:?}"),
    };
    hako_proto::check_hello(&hello).unwrap();
    let req = Frame::Msg(Message::Request { req: 1, op: Op::Ps { id: "x".into() } });
    hako_proto::write_frame(&mut conn, &req).unwrap();
    match hako_proto::read_frame(&mut conn).unwrap() {
        Some(Frame::Msg(Message::Response { req: 1, result: Err(e) })) => {
            assert_eq!(e, "container x does not exist in the guest")
        }
        other => panic!("{other:?}"),
    }
    drop(conn);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the agent did not exit when the socket closed");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
}
