//! The contract between hako.exe and the Host Compute Service, against a test double of
//! computecore.dll (`tests/double/computecore_double.c`, and `vmcompute_double.c` for
//! `NameToGuid`) that records every `Hcs*` call with its arguments and answers from a script.
//! Run by `scripts/check-windows` under Wine, which builds the doubles with MinGW and puts them
//! in the throwaway prefix's System32 (`HAKO_TEST_HCS_DOUBLE` says so); nowhere else.
//!
//! Each test drives the real `hako-windows.exe` (create, start, exec, kill, delete, through its
//! supervisor and named pipes) and checks the whole call sequence, that every operation is
//! waited for before it is closed, that every handle is closed, that the documents HCS receives
//! are the ones `hako hcs-doc` prints for the same bundle, and that each failure HCS can return
//! reaches the user as a message that names the fix and leaves nothing behind.
#![cfg(windows)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

const HAKO: &str = env!("CARGO_BIN_EXE_hako-windows");

/// Whether the doubles are installed: under Wine, in scripts/check-windows's prefix.
fn double_installed(test: &str) -> bool {
    let flag = std::env::var_os("HAKO_TEST_HCS_DOUBLE").is_some();
    let wine =
        Command::new("reg").args(["query", r"HKCU\Software\Wine"]).output().map_or(false, |o| o.status.success());
    if !(flag && wine) {
        eprintln!(
            "{}: not run: needs the computecore.dll test double that scripts/check-windows installs in its Wine prefix \
             (HAKO_TEST_HCS_DOUBLE set: {}, Wine: {})",
            test, flag, wine
        );
    }
    flag && wine
}

/// One container's world: a state root, a bundle, the double's log and script.
struct Case {
    dir: PathBuf,
}

impl Case {
    fn new(name: &str, config: Value, script: &str) -> Case {
        let dir = std::env::temp_dir().join(format!("hako-contract-{}-{}", name, std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bundle")).expect("bundle dir");
        let text = config.to_string().replace("@DIR@", &dir.to_string_lossy().replace('\\', "\\\\"));
        fs::write(dir.join("bundle").join("config.json"), text).expect("config.json");
        fs::write(dir.join("script"), script).expect("script");
        Case { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// Runs hako with stdout and stderr in files: `create` leaves a supervisor running that
    /// inherits them (as runc's container process does), so pipes would never see their end.
    fn hako(&self, args: &[&str]) -> Output {
        let (out, err) = (self.dir.join("stdout"), self.dir.join("stderr"));
        let status = Command::new(HAKO)
            .arg("--root")
            .arg(self.path("root"))
            .args(args)
            .env("HAKO_HCS_DOUBLE_LOG", self.path("calls.jsonl"))
            .env("HAKO_HCS_DOUBLE_SCRIPT", self.path("script"))
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .status()
            .expect("run hako-windows.exe");
        Output { status, stdout: fs::read(&out).unwrap_or_default(), stderr: fs::read(&err).unwrap_or_default() }
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.hako(args);
        assert!(out.status.success(), "hako {:?}: {:?}: {}", args, out.status, text(&out.stderr));
        text(&out.stdout)
    }

    /// hako's error for `args`, which must fail with exit status 1.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.hako(args);
        assert_eq!(out.status.code(), Some(1), "hako {:?} should fail: {}", args, text(&out.stdout));
        text(&out.stderr)
    }

    /// Every call the double recorded, in order.
    fn calls(&self) -> Vec<Value> {
        let log = fs::read_to_string(self.dir.join("calls.jsonl")).unwrap_or_default();
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {:?}: {}", l, e))).collect()
    }

    /// What `hako hcs-doc` prints for the bundle.
    fn hcs_doc(&self) -> Value {
        let out = self.ok(&["hcs-doc", &self.path("bundle"), "--id", "web"]);
        serde_json::from_str(&out).expect("hcs-doc json")
    }

    /// The containers hako still knows.
    fn listed(&self) -> String {
        self.ok(&["list", "--quiet"])
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        // A test that failed halfway leaves a supervisor: stop it (a no-op after a delete).
        if self.dir.join("root").join("web").exists() {
            let _ = self.hako(&["delete", "--force", "web"]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn name(call: &Value) -> &str {
    call["call"].as_str().unwrap_or_default()
}

/// The calls that do something, without the operation bookkeeping around each of them.
fn sequence(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .map(|c| name(c).to_string())
        .filter(|n| {
            !matches!(
                n.as_str(),
                "HcsCreateOperation"
                    | "HcsCloseOperation"
                    | "HcsWaitForOperationResult"
                    | "HcsWaitForOperationResultAndProcessInfo"
            )
        })
        .collect()
}

/// Every operation is waited for after its call started and before it is closed, and closed
/// once; every compute system and process handle is closed once, after its last use.
fn assert_handles_closed(calls: &[Value]) {
    let mut operations: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    let mut open: BTreeMap<(&str, i64), i32> = BTreeMap::new();
    for c in calls {
        let n = name(c);
        let id = |key: &str| c[key].as_i64().unwrap_or(0);
        match n {
            "HcsCreateOperation" => {
                assert_eq!(operations.insert(id("operation"), vec![]), None, "operation reused: {}", c);
            }
            "HcsCloseOperation" => {
                let events =
                    operations.remove(&id("operation")).unwrap_or_else(|| panic!("unknown or double close: {}", c));
                if let Some(started) = events.iter().position(|e| *e == "call") {
                    assert!(
                        events[started..].iter().any(|e| *e == "wait"),
                        "operation {} closed without waiting for its call: {:?}",
                        id("operation"),
                        events
                    );
                }
            }
            "HcsWaitForOperationResult" | "HcsWaitForOperationResultAndProcessInfo" | "HcsCancelOperation" => {
                operations
                    .get_mut(&id("operation"))
                    .unwrap_or_else(|| panic!("operation not open: {}", c))
                    .push("wait");
            }
            "HcsCloseComputeSystem" => {
                assert_eq!(
                    open.remove(&("system", id("system"))),
                    Some(1),
                    "system closed twice or never opened: {}",
                    c
                )
            }
            "HcsCloseProcess" => {
                assert_eq!(
                    open.remove(&("process", id("process"))),
                    Some(1),
                    "process closed twice or never opened: {}",
                    c
                )
            }
            _ => {
                let failed = c["answer"].as_str().map_or(false, |a| a.starts_with("0x8") || a.starts_with("0xc"));
                // The double says whether an operation's call started (a synchronous failure
                // does not); a handle exists when the call started, or did not fail.
                let started = c["started"].as_i64().map_or(!failed, |s| s != 0);
                if let (Some(op), true) = (c["operation"].as_i64(), started) {
                    operations.get_mut(&op).unwrap_or_else(|| panic!("operation not open: {}", c)).push("call");
                }
                let made = matches!(
                    n,
                    "HcsCreateComputeSystem" | "HcsOpenComputeSystem" | "HcsCreateProcess" | "HcsOpenProcess"
                );
                if made && started {
                    let (kind, key) = if n.contains("Process") { ("process", "process") } else { ("system", "system") };
                    open.insert((kind, id(key)), 1);
                }
                for (kind, key) in [("system", "system"), ("process", "process")] {
                    if !made && c[key].is_i64() {
                        assert!(
                            open.contains_key(&(kind, id(key))),
                            "{} used after close or never opened: {}",
                            kind,
                            c
                        );
                    }
                }
            }
        }
    }
    assert!(operations.is_empty(), "operations never closed: {:?}", operations.keys().collect::<Vec<_>>());
    assert!(open.is_empty(), "handles never closed: {:?}", open.keys().collect::<Vec<_>>());
}

/// The document the double received in the first `call` for compute system `id`.
fn document<'a>(calls: &'a [Value], call: &str, id: Option<&str>) -> Value {
    let c = calls
        .iter()
        .find(|c| name(c) == call && id.map_or(true, |id| c["id"] == json!(id)))
        .unwrap_or_else(|| panic!("no {} {:?} in {:?}", call, id, sequence(calls)));
    serde_json::from_str(c["document"].as_str().unwrap_or_default()).expect("document is JSON")
}

fn process_config() -> Value {
    json!({
        "ociVersion": "1.1.0",
        "hostname": "web",
        // The double keeps a process with wait-for-signal in its command line running until
        // it is signalled; the one exec starts ends by itself.
        "process": {"args": ["cmd", "/c", "wait-for-signal"], "cwd": "C:\\"},
        "root": {"path": "\\\\?\\Volume{2c2b6b0c-7d43-4c0a-8d8c-0123456789ab}\\"},
        "windows": {"layerFolders": ["@DIR@\\base", "@DIR@\\scratch"]}
    })
}

fn hyperv_config() -> Value {
    let mut c = process_config();
    c["windows"]["hyperv"] = json!({});
    // The root of a Hyper-V isolated container lives in the utility VM.
    c.as_object_mut().expect("object").remove("root");
    c
}

fn lcow_config() -> Value {
    json!({
        "ociVersion": "1.1.0",
        "hostname": "alpine",
        "process": {"args": ["sh", "-c", "wait-for-signal"], "env": ["PATH=/bin"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "linux": {},
        "windows": {"layerFolders": ["@DIR@\\l0", "@DIR@\\scratch"]}
    })
}

/// The layer folders the bundles name, the base layer with a utility VM image.
fn make_layers(case: &Case) {
    for d in ["base\\UtilityVM", "scratch", "l0"] {
        fs::create_dir_all(case.dir.join(d)).expect("layer dir");
    }
    // What hako copies for a utility VM's scratch disk (a stand-in: nothing boots it).
    fs::write(case.dir.join("base\\UtilityVM\\SystemTemplate.vhdx"), b"not a disk").expect("template");
}

/// create, start, exec, kill, delete; returns the calls.
fn lifecycle(case: &Case) -> Vec<Value> {
    make_layers(case);
    case.ok(&["create", "--bundle", &case.path("bundle"), "web"]);
    let state: Value = serde_json::from_str(&case.ok(&["state", "web"])).expect("state json");
    assert_eq!(state["status"], json!("created"));
    case.ok(&["start", "web"]);
    case.ok(&["exec", "web", "cmd", "/c", "ver"]);
    case.ok(&["kill", "web", "SIGKILL"]);
    case.ok(&["delete", "--force", "web"]);
    assert_eq!(case.listed(), "");
    case.calls()
}

#[test]
fn process_isolated_container() {
    if !double_installed("process_isolated_container") {
        return;
    }
    let case = Case::new("process", process_config(), "");
    let calls = lifecycle(&case);
    let seq = sequence(&calls);
    assert_eq!(&seq[..3], ["HcsCreateComputeSystem", "HcsStartComputeSystem", "HcsCreateProcess"], "{:?}", seq);
    assert!(seq.iter().filter(|n| *n == "HcsCreateProcess").count() >= 2, "exec made no process: {:?}", seq);
    assert!(
        seq.contains(&"HcsShutDownComputeSystem".to_string()) || seq.contains(&"HcsTerminateComputeSystem".to_string()),
        "{:?}",
        seq
    );
    assert_eq!(seq.last().map(String::as_str), Some("HcsCloseComputeSystem"), "{:?}", seq);
    assert_handles_closed(&calls);

    let doc = case.hcs_doc();
    assert_eq!(document(&calls, "HcsCreateComputeSystem", Some("web")), doc["container"]["document"]);
    let created = document(&calls, "HcsCreateProcess", None);
    assert_eq!(created["CommandLine"], doc["process"]["CommandLine"], "{}", created);
    assert_eq!(created["WorkingDirectory"], doc["process"]["WorkingDirectory"], "{}", created);
}

#[test]
fn hyperv_isolated_container() {
    if !double_installed("hyperv_isolated_container") {
        return;
    }
    let case = Case::new("hyperv", hyperv_config(), "");
    let calls = lifecycle(&case);
    let seq = sequence(&calls);
    // The utility VM's files are granted to it, the VM made and started, the container's
    // layers added to it, then the container made inside it and started.
    let grants = seq.iter().take_while(|n| *n == "HcsGrantVmAccess").count();
    assert!(grants >= 1, "{:?}", seq);
    assert_eq!(
        &seq[grants..grants + 6],
        [
            "HcsCreateComputeSystem",
            "HcsStartComputeSystem",
            "HcsModifyComputeSystem",
            "HcsModifyComputeSystem",
            "HcsCreateComputeSystem",
            "HcsStartComputeSystem"
        ],
        "{:?}",
        seq
    );
    assert_eq!(seq.iter().filter(|n| *n == "HcsRevokeVmAccess").count(), grants, "{:?}", seq);
    // Two systems made, one opened (by exec), each handle closed.
    let count = |name: &str| seq.iter().filter(|n| *n == name).count();
    assert_eq!((count("HcsCreateComputeSystem"), count("HcsOpenComputeSystem")), (2, 1), "{:?}", seq);
    assert_eq!(count("HcsCloseComputeSystem"), 3, "{:?}", seq);
    assert_handles_closed(&calls);

    let doc = case.hcs_doc();
    assert_eq!(document(&calls, "HcsCreateComputeSystem", Some("web@vm")), doc["utilityVm"]["document"]);
    assert_eq!(document(&calls, "HcsCreateComputeSystem", Some("web")), doc["container"]["document"]);
}

#[test]
fn lcow_container() {
    if !double_installed("lcow_container") {
        return;
    }
    let case = Case::new("lcow", lcow_config(), "");
    let calls = lifecycle(&case);
    let seq = sequence(&calls);
    let uvm = seq.iter().position(|n| n == "HcsCreateComputeSystem").expect("a compute system");
    assert_eq!(&seq[uvm..uvm + 2], ["HcsCreateComputeSystem", "HcsStartComputeSystem"], "{:?}", seq);
    assert_handles_closed(&calls);

    let doc = case.hcs_doc();
    let vm_id = doc["utilityVm"]["id"].as_str().expect("an LCOW utility VM").to_string();
    assert_eq!(document(&calls, "HcsCreateComputeSystem", Some(&vm_id)), doc["utilityVm"]["document"]);
}

/// A failure scripted into the double, and what the user must read.
struct Failure {
    bundle: fn() -> Value,
    script: &'static str,
    /// Every part of hako's message.
    says: &'static [&'static str],
}

const FAILURES: &[Failure] = &[
    Failure {
        bundle: process_config,
        script: "HcsCreateComputeSystem async 0xC0370101 {\"Error\":-1070137087,\"ErrorMessage\":\"The container operating system does not match the host operating system.\"}",
        says: &["HCS_E_IMAGE_MISMATCH", "hcs says: The container operating system does not match", "use VM isolation"],
    },
    Failure {
        bundle: process_config,
        script: "HcsCreateComputeSystem sync 0x80070005",
        says: &["HcsCreateComputeSystem web: E_ACCESSDENIED", "run hako from an elevated (Administrator) prompt"],
    },
    Failure {
        bundle: process_config,
        script: "HcsCreateComputeSystem async 0x80070002 {\"Error\":-2147024894,\"ErrorMessage\":\"The system cannot find the file specified.\"}",
        says: &["ERROR_FILE_NOT_FOUND", "The system cannot find the file specified", "check windows.layerFolders"],
    },
    Failure {
        bundle: hyperv_config,
        script: "HcsStartComputeSystem async 0x80370108",
        says: &["HcsStartComputeSystem web@vm: HCS_E_CONNECT_FAILED", "utility VM image"],
    },
    Failure {
        bundle: process_config,
        script: "HcsStartComputeSystem async 0x80370100",
        says: &[
            "HcsStartComputeSystem web: HCS_E_TERMINATED_DURING_START",
            "Hyper-V-Compute-Operational event log",
            "for a process-isolated container the usual causes",
        ],
    },
];

#[test]
fn failures_name_the_fix_and_leave_nothing_behind() {
    if !double_installed("failures_name_the_fix_and_leave_nothing_behind") {
        return;
    }
    for (i, f) in FAILURES.iter().enumerate() {
        let case = Case::new(&format!("fail{}", i), (f.bundle)(), f.script);
        make_layers(&case);
        let err = case.fails(&["create", "--bundle", &case.path("bundle"), "web"]);
        for part in f.says {
            assert!(err.contains(part), "script {:?}: {:?} not in: {}", f.script, part, err);
        }
        assert_eq!(case.listed(), "", "script {:?} left a container behind", f.script);
        assert_handles_closed(&case.calls());
    }
}

/// The container's state file, as the supervisor and hako see it.
fn state_file(case: &Case) -> Value {
    let text = fs::read_to_string(case.dir.join("root").join("web").join("state.json")).expect("state.json");
    serde_json::from_str(&text).expect("state json")
}

/// Opens the supervisor's pipe as a client. Like `WaitNamedPipe`, a busy pipe (the supervisor
/// is between two instances) is tried again; a pipe that stays busy fails the test.
fn connect(pipe: &str) -> File {
    const ERROR_PIPE_BUSY: i32 = 231;
    for _ in 0..200 {
        match fs::OpenOptions::new().read(true).write(true).open(pipe) {
            Ok(f) => return f,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(e) => panic!("connect to {}: {}", pipe, e),
        }
    }
    panic!("{} stayed busy", pipe)
}

#[test]
fn a_client_that_disconnects_mid_call_does_not_stop_the_supervisor() {
    if !double_installed("a_client_that_disconnects_mid_call_does_not_stop_the_supervisor") {
        return;
    }
    let case = Case::new("disconnect", process_config(), "");
    make_layers(&case);
    case.ok(&["create", "--bundle", &case.path("bundle"), "web"]);
    let pipe = state_file(&case)["pipe"].as_str().expect("pipe name").to_string();
    // Clients of the supervisor's named pipe that go away: one without a word, one halfway
    // through a request, one right after a whole request without reading the answer.
    for message in [&b""[..], &b"{\"op\":\"sta"[..], &b"{\"op\":\"ping\"}"[..]] {
        let mut client = connect(&pipe);
        if !message.is_empty() {
            std::io::Write::write_all(&mut client, message).expect("write to the pipe");
        }
        drop(client);
    }
    // The supervisor still serves.
    case.ok(&["start", "web"]);
    let state: Value = serde_json::from_str(&case.ok(&["state", "web"])).expect("state json");
    assert_eq!(state["status"], json!("running"), "{}", state);
    case.ok(&["kill", "web", "SIGKILL"]);
    case.ok(&["delete", "--force", "web"]);
    assert_eq!(case.listed(), "");
    assert_handles_closed(&case.calls());
}

#[test]
fn a_supervisor_that_dies_leaves_a_container_delete_force_cleans_up() {
    if !double_installed("a_supervisor_that_dies_leaves_a_container_delete_force_cleans_up") {
        return;
    }
    let case = Case::new("orphan", process_config(), "");
    make_layers(&case);
    case.ok(&["create", "--bundle", &case.path("bundle"), "web"]);
    case.ok(&["start", "web"]);
    let pid = state_file(&case)["supervisorPid"].as_u64().expect("supervisor pid").to_string();
    let out = Command::new("taskkill").args(["/F", "/PID", &pid]).output().expect("run taskkill");
    assert!(out.status.success(), "taskkill {}: {}", pid, text(&out.stderr));
    let before = case.calls().len();

    let state: Value = serde_json::from_str(&case.ok(&["state", "web"])).expect("state json");
    assert_eq!(state["status"], json!("stopped"), "a dead supervisor's container is reported stopped: {}", state);
    let err = case.fails(&["kill", "web", "SIGKILL"]);
    assert!(err.contains("container web") && err.contains("hako delete --force"), "{}", err);
    // HCS still has the container: a plain delete refuses and names --force.
    let err = case.fails(&["delete", "web"]);
    assert!(err.contains("orphaned") && err.contains("use hako delete --force"), "{}", err);
    assert_eq!(case.listed(), "web\n");
    case.ok(&["delete", "--force", "web"]);
    assert_eq!(case.listed(), "");

    // What hako did without its supervisor: opened the container by id, terminated it, closed it.
    let after = &case.calls()[before..];
    let seq = sequence(after);
    assert!(
        seq.ends_with(&[
            "HcsOpenComputeSystem".to_string(),
            "HcsTerminateComputeSystem".to_string(),
            "HcsCloseComputeSystem".to_string()
        ]),
        "{:?}",
        seq
    );
    let opened = after.iter().rev().find(|c| name(c) == "HcsOpenComputeSystem").expect("open");
    assert_eq!(opened["id"], json!("web"));
}
