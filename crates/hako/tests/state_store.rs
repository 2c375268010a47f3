//! End-to-end tests of the state store under `--root`: its files are private whatever the umask,
//! hako never signals a process it cannot prove is the container's, unreadable backend data is
//! reported instead of read as "nothing", and `delete --force` of it cleans what it safely can.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

/// `hako --root ROOT args...` run under `umask MASK`.
fn hako_umask(root: &Path, mask: &str, args: &[&str]) -> CmdOut {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(format!("umask {mask}; exec \"$0\" \"$@\"")).arg(runtime()).arg("--root").arg(root).args(args);
    run_captured(c, None, DEFAULT_TIMEOUT)
}

/// Force-deletes `id` under `root` when dropped, so a failed assertion leaves nothing running.
struct Cleanup(PathBuf, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = hako_umask(&self.0, "022", &["delete", "--force", &self.1]);
    }
}

/// Every path under `root` whose mode lets another user read or write it: the root must be
/// 0700, directories may grant search (x) only, files (and fifos, sockets) nothing at all.
fn loose_modes(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mode = fs::symlink_metadata(root).expect("stat root").mode() & 0o7777;
    if mode != 0o700 {
        bad.push(format!("{} {mode:o}", root.display()));
    }
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).expect("read_dir").flatten() {
            let m = fs::symlink_metadata(e.path()).expect("stat");
            let mode = m.mode() & 0o7777;
            let ok = if m.is_dir() {
                todo.push(e.path());
                mode & 0o066 == 0
            } else {
                mode & 0o077 == 0
            };
            if !ok {
                let kind = if m.file_type().is_fifo() { "fifo " } else { "" };
                bad.push(format!("{kind}{} {mode:o}", e.path().display()));
            }
        }
    }
    bad
}

/// state.json, the saved config.json (with process.env) and everything else hako writes under a
/// root it creates are private, whatever the umask, after create, exec, update and start; a
/// umask of 077 does not keep a non-root init from its exec.fifo.
#[test]
fn state_tree_is_private_whatever_the_umask() {
    for mask in ["000", "077"] {
        let b = Bundle::with_tag("private")
            .set("/process/user", json!({"uid": 1000, "gid": 1000}))
            .set("/process/env/-", json!("SECRET=hunter2"))
            .args(&["sleep", "1000"]);
        let base = tempfile::tempdir().expect("tempdir");
        let root = base.path().join("root");
        let id = b.id().to_string();
        register_bundle(&id, b.path());
        let _cleanup = Cleanup(root.clone(), id.clone());
        let bundle = b.path().display().to_string();
        hako_umask(&root, mask, &["create", "--bundle", &bundle, &id]).expect_ok();
        assert!(root.join(&id).join("config.json").exists(), "the config copy is where this test looks");
        assert_eq!(loose_modes(&root), Vec::<String>::new(), "umask {mask}, after create");
        hako_umask(&root, mask, &["exec", &id, "true"]).expect_ok();
        hako_umask(&root, mask, &["update", "--pids-limit", "100", &id]).expect_ok();
        assert_eq!(loose_modes(&root), Vec::<String>::new(), "umask {mask}, after exec and update");
        hako_umask(&root, mask, &["start", &id]).expect_ok();
        let st = hako_umask(&root, mask, &["state", &id]).expect_ok();
        assert!(st.stdout.contains("\"running\""), "umask {mask}: the uid 1000 process did not start: {st}");
        assert_eq!(loose_modes(&root), Vec::<String>::new(), "umask {mask}, after start");
        hako_umask(&root, mask, &["delete", "--force", &id]).expect_ok();
        assert_no_leftovers(&root, &id, &b.cgroup_rel());
    }
}

/// Start time of `pid` (field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    rest.split(' ').nth(19).expect("field 22").parse().expect("start time")
}

fn edit_state(root: &Path, id: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let path = root.join(id).join("state.json");
    let mut st: serde_json::Value = serde_json::from_slice(&fs::read(&path).expect("read state.json")).expect("JSON");
    f(&mut st);
    fs::write(&path, st.to_string()).expect("write state.json");
}

/// An unrelated process the test owns; killed when dropped.
struct Bystander(std::process::Child);

impl Bystander {
    fn start() -> Bystander {
        Bystander(Command::new("/bin/sleep").arg("1000").spawn().expect("start sleep"))
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    #[track_caller]
    fn assert_alive(&mut self, what: &str) {
        assert!(self.0.try_wait().expect("try_wait").is_none(), "{what} signalled an unrelated process");
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A state.json whose pid is now an unrelated live process (a reused pid), recorded with no start
/// time or a wrong one, reads stopped, and neither kill nor delete --force signals that process.
#[test]
fn a_reused_pid_is_never_signalled() {
    let b = Bundle::with_tag("pidreuse").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = b.id();
    rt.create_start(&b);
    rt.kill(id, "KILL").expect_ok();
    rt.wait_status(id, "stopped", Duration::from_secs(10));
    let mut other = Bystander::start();
    let real = start_time(other.pid());
    for start in [0, real + 1] {
        edit_state(rt.root(), id, |st| {
            st["pid"] = json!(other.pid());
            st["pidStartTime"] = json!(start);
        });
        assert_eq!(rt.status(id), "stopped", "start time {start}");
        let _ = rt.kill(id, "KILL");
        other.assert_alive(&format!("kill (start time {start})"));
    }
    rt.delete_force(id).expect_ok();
    other.assert_alive("delete --force");
    assert_no_leftovers(rt.root(), id, &b.cgroup_rel());
}

/// Backend data in state.json that does not parse is reported, never read as "no cgroup, state
/// directory ''": `delete --force` run from a directory holding files named like the state
/// files leaves them alone, signals no unproven pid, kills the proven init, removes the state
/// directory (nothing could ever read it again) and names the problem. Both backends.
#[test]
fn unreadable_backend_data_is_reported_and_touches_nothing_else() {
    let b = Bundle::with_tag("badbackend").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = b.id();
    rt.create(&b).expect_ok();
    let init = rt.pid(id);
    let orig = fs::read(rt.root().join(id).join("state.json")).expect("state.json");
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut other = Bystander::start();
    let canaries = ["exec.fifo", "state.json", "config.json", "vm.json", "vm.sock", "console.log", "qemu.pid"];
    for name in canaries {
        let text = if name == "qemu.pid" { other.pid().to_string() } else { "canary".into() };
        fs::write(cwd.path().join(name), text).expect("canary");
    }
    let delete_force = || {
        let mut c = rt.command(&["delete", "--force", id]);
        c.current_dir(cwd.path());
        run_captured(c, None, DEFAULT_TIMEOUT)
    };
    // Process isolation: the init is proven by its start time and killed; the cgroup is unknown.
    edit_state(rt.root(), id, |st| st["backend"] = json!("not what hako wrote"));
    let out = delete_force();
    assert!(!out.ok(), "{out}");
    out.expect_msg(&[id, "process isolation data", "cannot be read", "state directory was removed"]);
    assert!(!rt.root().join(id).exists(), "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_to_string(format!("/proc/{init}/stat"))
            .map_or(true, |s| s.contains(") Z "))),
        "the proven init {init} still runs"
    );
    // VM isolation: no supervisor, no state directory, and a qemu.pid in the cwd naming a live process.
    fs::create_dir(rt.root().join(id)).expect("mkdir");
    fs::write(rt.root().join(id).join("state.json"), &orig).expect("state.json");
    edit_state(rt.root(), id, |st| {
        st["isolation"] = json!("vm");
        st["backend"] = json!({"state_dir": 5});
        st["pid"] = json!(other.pid());
        st["pidStartTime"] = json!(0);
    });
    let out = delete_force();
    assert!(!out.ok(), "{out}");
    out.expect_msg(&[id, "vm isolation data", "cannot be read", "state directory was removed"]);
    other.assert_alive("delete --force of unreadable VM state");
    for name in canaries {
        assert!(cwd.path().join(name).exists(), "delete --force removed {name} from its working directory: {out}");
    }
    // What the unreadable data named (the cgroup) is cleaned once the data is readable again.
    fs::create_dir(rt.root().join(id)).expect("mkdir");
    fs::write(rt.root().join(id).join("state.json"), &orig).expect("state.json");
    rt.delete_force(id).expect_ok();
    assert_no_leftovers(rt.root(), id, &b.cgroup_rel());
}

/// A state.json that does not parse at all: `delete --force` says so, signals nothing and removes
/// the directory (its own error message tells the user to run exactly that); plain `delete` keeps it.
#[test]
fn corrupt_state_json_is_removed_by_delete_force() {
    let rt = Runtime::new();
    let id = unique_id("corrupt");
    rt.track(&id);
    let dir = rt.root().join(&id);
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("state.json"), "{\"pid\": 1, not json").expect("write");
    rt.delete(&id).expect_fail().expect_msg(&[&id, "corrupt state file", "delete --force"]);
    assert!(dir.exists(), "plain delete removed the state");
    let out = rt.delete_force(&id);
    assert!(!out.ok(), "{out}");
    out.expect_msg(&[&id, "corrupt state file", "state directory was removed"]);
    assert!(!dir.exists(), "{out}");
    rt.delete_force(&id).expect_ok();
}

/// Whether the VM assets are installed (as crates/hako/tests/vm.rs decides; `HAKO_REQUIRE_VM=1`
/// makes their absence a failure).
fn vm_ready() -> bool {
    let dir = std::env::var("HAKO_VM_ASSETS").unwrap_or_else(|_| "/var/lib/hako/vm".into());
    let ok = Path::new(&dir).join("vmlinux").is_file() && Path::new(&dir).join("initramfs.cpio.gz").is_file();
    if !ok {
        assert!(
            std::env::var("HAKO_REQUIRE_VM").as_deref() != Ok("1"),
            "HAKO_REQUIRE_VM=1 but the VM assets are missing in {dir}: run scripts/vm-assets"
        );
        eprintln!("VM assets missing in {dir} (scripts/vm-assets): skipping");
    }
    ok && testing_hako()
}

/// The same for a VM-isolated container: the supervisor's plan, log, sockets and QEMU's console
/// log and pid file, the shadow's op files and the accelerator cache are private too.
#[test]
fn vm_state_tree_is_private_whatever_the_umask() {
    if !vm_ready() {
        return;
    }
    let b = Bundle::with_tag("vmprivate")
        .set("/annotations", json!({"org.hako.isolation": "vm"}))
        .set("/process/env/-", json!("SECRET=hunter2"))
        .args(&["sleep", "1000"]);
    let base = tempfile::tempdir().expect("tempdir");
    let root = base.path().join("root");
    let id = b.id().to_string();
    register_bundle(&id, b.path());
    let _cleanup = Cleanup(root.clone(), id.clone());
    let bundle = b.path().display().to_string();
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(runtime()).arg("--root").arg(&root);
    c.args(["create", "--bundle", &bundle, &id]);
    run_captured(c, None, Duration::from_secs(120)).expect_ok();
    assert_eq!(loose_modes(&root), Vec::<String>::new(), "after create");
    hako_umask(&root, "000", &["exec", &id, "true"]).expect_ok();
    hako_umask(&root, "000", &["start", &id]).expect_ok();
    assert_eq!(loose_modes(&root), Vec::<String>::new(), "after exec and start");
    hako_umask(&root, "000", &["delete", "--force", &id]).expect_ok();
}
