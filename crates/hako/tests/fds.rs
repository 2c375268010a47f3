//! File descriptors: what reaches the container's init before it execs the container's program (issue 9
//! item 9; the VM helpers are checked in vm.rs, `vm_helpers_hold_no_stray_fds`).

mod common;

use common::*;

/// The container's init while created (before it execs the program): only stdio stays open across the
/// exec; everything else hako or its caller opened is close-on-exec.
#[test]
fn init_before_exec_passes_only_stdio() {
    let rt = Runtime::new();
    let b = Bundle::with_tag("fdinit").args(&["sleep", "1000"]);
    let id = b.id();
    rt.track(id);
    let marker = b.path().join("leaked-fd");
    let mut cmd = rt.command(&["create", "--bundle", &b.path().to_string_lossy(), id]);
    leak_marker(&mut cmd, &marker);
    let out = run_captured(cmd, None, std::time::Duration::from_secs(30));
    assert!(out.ok(), "{out}");
    let fds = fds_of(rt.pid(id));
    let open_across_exec: Vec<_> = fds.iter().filter(|(fd, _, cloexec)| *fd > 2 && !cloexec).collect();
    assert!(open_across_exec.is_empty(), "fds that would reach the container's program: {open_across_exec:?}");
    rt.delete_force(id).expect_ok();
}
