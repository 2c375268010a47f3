//! End-to-end tests of the state store under `--root`: its files are private whatever the umask,
//! hako never signals a process it cannot prove is the container's, unreadable backend data is
//! reported instead of read as "nothing", and `delete --force` of it cleans what it safely can.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

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
