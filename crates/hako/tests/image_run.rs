//! `hako image load` and `hako image run` end to end: a busybox image written as an OCI layout archive by the
//! test itself (no registry), loaded into a private store, run with Docker's flags under process isolation.
//! After every run the container's state, bundle and rootfs snapshot must be gone (or stay exactly as long
//! as the container does). Also: completions and man pages name the real subcommands.

mod common;
#[path = "common/image.rs"]
#[allow(dead_code, unreachable_pub)]
mod image;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{run_captured, CmdOut, Runtime, DEFAULT_TIMEOUT};
use serde_json::json;

const IMAGE: &str = "localhost/hako-run-test:latest";

/// Writes the test image as an OCI layout archive in `dir` and returns its path.
fn archive(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    common::busybox_rootfs(&rootfs);
    let tar = dir.join("layer.tar");
    image::tar_rootfs(&rootfs, &tar);
    let archive = dir.join("image.tar");
    image::write_oci_archive(
        &tar,
        &dir.join("layout"),
        &archive,
        &[image::ImageSpec {
            name: IMAGE,
            config: json!({
                "Env": ["FROM_IMAGE=yes", "PATH=/bin"],
                "Cmd": ["echo", "default-cmd"],
                "WorkingDir": "/srv/app",
                "Volumes": {"/data": {}},
                "ExposedPorts": {"80/tcp": {}},
            }),
        }],
    );
    archive
}

/// A state root and an image store of its own, with the test image loaded.
struct Env {
    rt: Runtime,
    store: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env::empty();
        let dir = tempfile::tempdir().unwrap();
        let out = env.image(&["load", archive(dir.path()).to_str().unwrap()]).expect_ok();
        assert!(out.stdout.contains(IMAGE), "{out}");
        env
    }

    fn empty() -> Env {
        Env { rt: Runtime::new(), store: tempfile::Builder::new().prefix("hako-run-store-").tempdir().unwrap() }
    }

    fn image(&self, args: &[&str]) -> CmdOut {
        let mut a = vec!["image", "--store", self.store.path().to_str().unwrap()];
        a.extend_from_slice(args);
        self.rt.cmd(&a)
    }

    fn run(&self, args: &[&str]) -> CmdOut {
        let mut a = vec!["run"];
        a.extend_from_slice(args);
        self.image(&a)
    }

    fn bundles(&self) -> Vec<String> {
        match fs::read_dir(self.store.path().join("containers")) {
            Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn containers(&self) -> Vec<String> {
        let out = self.rt.cmd(&["list", "-q"]).expect_ok();
        out.stdout.lines().map(str::to_string).collect()
    }

    #[track_caller]
    fn assert_clean(&self) {
        assert_eq!(self.containers(), Vec::<String>::new(), "containers left");
        assert_eq!(self.bundles(), Vec::<String>::new(), "bundles left");
        assert_eq!(self.mounts(), Vec::<String>::new(), "mounts left");
    }
}

#[test]
fn rm_runs_the_command_and_leaves_nothing() {
    let env = Env::new();
    let out = env.run(&["--rm", IMAGE, "echo", "hi"]).expect_ok();
    assert_eq!(out.stdout, "hi\n", "{out}");
    let auto: Vec<&str> = out.stderr.lines().filter(|l| l.contains("isolation auto")).collect();
    assert_eq!(auto.len(), 1, "auto says its choice in one line: {out}");
    assert!(auto[0].contains("process"), "{out}");
    env.assert_clean();
    // The image's Cmd runs when no command is given.
    let out = env.run(&["--rm", "--isolation", "process", IMAGE]).expect_ok();
    assert_eq!(out.stdout, "default-cmd\n", "{out}");
    assert!(!out.stderr.contains("isolation auto"), "{out}");
    env.assert_clean();
}

#[test]
fn stdin_reaches_the_container_only_with_interactive() {
    let env = Env::new();
    let args = ["run", "--rm", "-i", IMAGE, "cat"];
    let mut a = vec!["image", "--store", env.store.path().to_str().unwrap()];
    a.extend_from_slice(&args);
    let out = env.rt.cmd_stdin(&a, b"typed\n").expect_ok();
    assert_eq!(out.stdout, "typed\n", "{out}");
    a.retain(|x| *x != "-i");
    let out = env.rt.cmd_stdin(&a, b"typed\n").expect_ok();
    assert_eq!(out.stdout, "", "without -i the process reads /dev/null: {out}");
    env.assert_clean();
}

#[test]
fn exit_status_passes_through() {
    let env = Env::new();
    let out = env.run(&["--rm", IMAGE, "sh", "-c", "exit 7"]);
    assert_eq!(out.code, Some(7), "{out}");
    env.assert_clean();
}

#[test]
fn env_workdir_and_image_config_take_effect() {
    let env = Env::new();
    let mut cmd = env.rt.command(&[
        "image",
        "--store",
        env.store.path().to_str().unwrap(),
        "run",
        "--rm",
        "-e",
        "A=1",
        "-e",
        "HAKO_TEST_FROM_HOST",
        "-e",
        "HAKO_TEST_UNSET",
        "-e",
        "FROM_IMAGE=overridden",
        IMAGE,
        "sh",
        "-c",
        "echo $A $HAKO_TEST_FROM_HOST ${HAKO_TEST_UNSET-unset} $FROM_IMAGE; pwd; hostname",
    ]);
    cmd.env("HAKO_TEST_FROM_HOST", "host-value").env_remove("HAKO_TEST_UNSET");
    let out = run_captured(cmd, None, DEFAULT_TIMEOUT).expect_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "1 host-value unset overridden", "{out}");
    assert_eq!(lines[1], "/srv/app", "the image's WorkingDir, created: {out}");
    let out = env
        .run(&["--rm", "-w", "/tmp", "--name", "named-1", IMAGE, "sh", "-c", "pwd; hostname; echo $FROM_IMAGE"])
        .expect_ok();
    assert_eq!(out.stdout, "/tmp\nnamed-1\nyes\n", "{out}");
    env.assert_clean();
}

#[test]
fn user_is_resolved_in_the_images_passwd() {
    let env = Env::new();
    let out = env.run(&["--rm", "-u", "user", IMAGE, "sh", "-c", "id -u; id -g; echo $HOME"]).expect_ok();
    assert_eq!(out.stdout, "1000\n1000\n/home/user\n", "{out}");
    let out = env.run(&["--rm", "-u", "4242:7", IMAGE, "sh", "-c", "id -u; id -g"]).expect_ok();
    assert_eq!(out.stdout, "4242\n7\n", "{out}");
    let out = env.run(&["--rm", "-u", "ghost", IMAGE, "true"]).expect_fail();
    out.expect_msg(&["\"ghost\"", "/etc/passwd"]);
    env.assert_clean();
}

#[test]
fn volumes_bind_read_write_and_read_only() {
    let env = Env::new();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("in"), "from-host\n").unwrap();
    let rw = format!("{}:/mnt", host.path().display());
    let out = env.run(&["--rm", "-v", &rw, IMAGE, "sh", "-c", "cat /mnt/in; echo written > /mnt/out"]).expect_ok();
    assert_eq!(out.stdout, "from-host\n", "{out}");
    assert_eq!(fs::read_to_string(host.path().join("out")).unwrap(), "written\n");
    let ro = format!("{}:/mnt:ro", host.path().display());
    let out = env.run(&["--rm", "-v", &ro, IMAGE, "sh", "-c", "cat /mnt/in; echo x > /mnt/ro-write"]);
    assert_eq!(out.code, Some(1), "writing to a read-only volume fails: {out}");
    assert!(out.stdout.contains("from-host"), "{out}");
    assert!(!host.path().join("ro-write").exists());
    let out = env.run(&["--rm", "-v", "relative:/mnt", IMAGE, "true"]).expect_fail();
    out.expect_msg(&["relative", "absolute host path"]);
    env.assert_clean();
}

#[test]
fn detached_container_runs_until_kill_and_delete_removes_its_bundle() {
    let env = Env::new();
    let out = env.run(&["-d", "--name", "detached-1", IMAGE, "sh", "-c", "echo logged; exec sleep 1000"]).expect_ok();
    env.rt.track("detached-1");
    assert_eq!(out.stdout, "detached-1\n", "{out}");
    let state = env.rt.state_json("detached-1");
    assert_eq!(state["status"], "running");
    // What the image declares and hako does not act on is kept as annotations.
    assert_eq!(state["annotations"]["org.hako.image.exposed-ports"], "80/tcp", "{state}");
    assert_eq!(state["annotations"]["org.hako.image.volumes"], "/data", "{state}");
    assert_eq!(state["annotations"]["org.hako.isolation"], "process", "{state}");
    let bundle = env.store.path().join("containers/detached-1");
    for (path, mode) in
        [(bundle.clone(), 0o700), (bundle.join("config.json"), 0o600), (bundle.join("hako-image-run.json"), 0o600)]
    {
        let m = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions()) & 0o777;
        assert_eq!(m, mode, "{} is {m:o}", path.display());
    }
    assert_eq!(env.bundles(), vec!["detached-1".to_string()]);
    env.rt.kill("detached-1", "KILL").expect_ok();
    env.rt.wait_status("detached-1", "stopped", Duration::from_secs(10));
    let log = fs::read_to_string(env.store.path().join("containers/detached-1/container.log")).unwrap();
    assert_eq!(log, "logged\n");
    env.rt.delete("detached-1").expect_ok();
    env.assert_clean();
    env.run(&["-d", "--rm", IMAGE, "true"]).expect_fail().expect_msg(&["--rm", "--detach", "hako delete"]);
    env.assert_clean();
}

#[test]
fn foreground_without_rm_keeps_the_container_until_delete() {
    let env = Env::new();
    let out = env.run(&["--name", "kept-1", IMAGE, "sh", "-c", "exit 3"]);
    env.rt.track("kept-1");
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(env.rt.status("kept-1"), "stopped");
    assert_eq!(env.bundles(), vec!["kept-1".to_string()]);
    env.run(&["--name", "kept-1", IMAGE, "true"]).expect_fail().expect_msg(&["kept-1", "exists"]);
    env.rt.delete("kept-1").expect_ok();
    env.assert_clean();
}

#[test]
fn missing_image_with_pull_never_is_a_clear_error_and_leaves_nothing() {
    let env = Env::empty();
    let out = env.run(&["--rm", "--pull", "never", "localhost/nothing-here:1", "true"]).expect_fail();
    out.expect_msg(&["localhost/nothing-here:1", "--pull never", "hako image load"]);
    env.assert_clean();
    assert_eq!(env.image(&["ls", "-q"]).expect_ok().stdout, "");
}

#[test]
fn a_bundle_without_the_marker_survives_delete() {
    // A runc-style bundle (podman's, containerd's) is never removed by delete.
    let env = Env::new();
    let b = common::Bundle::new().args(&["true"]);
    env.rt.run(&b).expect_ok();
    assert!(b.config_path().exists(), "delete removed a bundle hako image run did not write");
    // A marker that names another container does not make it removable either.
    let marker = b.path().join("hako-image-run.json");
    fs::write(&marker, r#"{"id": "someone-else"}"#).unwrap();
    fs::set_permissions(&marker, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.rt.run(&b).expect_ok();
    assert!(b.config_path().exists(), "delete removed a bundle whose marker names another container");
}

#[test]
fn load_refuses_a_forged_blob_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    common::busybox_rootfs(&rootfs);
    let tar = dir.path().join("layer.tar");
    image::tar_rootfs(&rootfs, &tar);
    let layout = dir.path().join("layout");
    let good = dir.path().join("good.tar");
    image::write_oci_archive(&tar, &layout, &good, &[image::ImageSpec { name: IMAGE, config: json!({}) }]);
    // Change the biggest blob (the layer) after its name was computed.
    let blobs = layout.join("blobs/sha256");
    let layer = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = fs::read(&layer).unwrap();
    data[600] ^= 1;
    fs::write(&layer, data).unwrap();
    let forged = dir.path().join("forged.tar");
    tar_layout(&layout, &forged);
    let env = Env::empty();
    env.image(&["load", forged.to_str().unwrap()]).expect_fail().expect_msg(&["does not match its digest", "forged"]);
    assert_eq!(env.image(&["ls", "-q"]).expect_ok().stdout, "");
    let left: Vec<_> = fs::read_dir(env.store.path().join("blobs/sha256")).unwrap().collect();
    assert!(left.is_empty(), "a failed load left blobs: {left:?}");
    let out = env.image(&["load", dir.path().join("missing.tar").to_str().unwrap()]).expect_fail();
    out.expect_msg(&["missing.tar"]);
}

#[test]
fn completions_and_man_pages_name_real_subcommands() {
    let rt = Runtime::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = rt.cmd(&["completion", shell]).expect_ok();
        for sub in ["create", "delete", "image", "pull", "load"] {
            assert!(out.stdout.contains(sub), "{shell} completion lacks {sub}: {out}");
        }
    }
    let man = rt.cmd(&["man"]).expect_ok();
    assert!(man.stdout.starts_with(".ie") || man.stdout.contains(".TH hako"), "{man}");
    for sub in ["create", "exec", "image", "completion"] {
        assert!(man.stdout.contains(sub), "man page lacks {sub}: {man}");
    }
    let run = rt.cmd(&["man", "image", "run"]).expect_ok();
    assert!(run.stdout.contains(".TH hako-image-run") && run.stdout.contains("\\-\\-isolation"), "{run}");
    rt.cmd(&["man", "nope"]).expect_fail().expect_msg(&["\"nope\""]);
    rt.cmd(&["completion", "tcsh"]).expect_fail();
}

#[test]
fn memory_and_cpus_limit_the_container() {
    let env = Env::new();
    let script = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
                  cat /sys/fs/cgroup/cpu.max 2>/dev/null || \
                  echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)";
    let out = env.run(&["--rm", "--memory", "64M", "--cpus", "1.5", IMAGE, "sh", "-c", script]).expect_ok();
    assert_eq!(out.stdout, "67108864\n150000 100000\n", "{out}");
    env.run(&["--rm", "--cpus", "0", IMAGE, "true"]).expect_fail().expect_msg(&["--cpus"]);
    env.assert_clean();
}

#[test]
fn sigterm_to_hako_reaches_the_container_and_its_status_comes_back() {
    let env = Env::new();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = env.rt.command(&[
        "image",
        "--store",
        env.store.path().to_str().unwrap(),
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got-term; exit 5' TERM; echo ready; while true; do sleep 0.05; done",
    ]);
    cmd.stdout(out.reopen().unwrap()).stderr(Stdio::null()).stdin(Stdio::null());
    let child = cmd.spawn().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // A bound on waiting, not a timing under test: the container says when its trap is set.
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    while !fs::read_to_string(out.path()).unwrap().contains("ready") {
        assert!(Instant::now() < deadline, "the container never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = common::wait_timeout(child, DEFAULT_TIMEOUT).expect("hako exits after the container");
    assert_eq!(status.code(), Some(5));
    assert_eq!(fs::read_to_string(out.path()).unwrap(), "ready\ngot-term\n");
    env.assert_clean();
}

#[test]
fn tty_without_a_terminal_is_refused_before_anything_is_written() {
    let env = Env::new();
    env.run(&["--rm", "-t", IMAGE, "true"]).expect_fail().expect_msg(&["--tty", "not a terminal"]);
    env.assert_clean();
}

#[test]
fn bundles_left_by_a_killed_run_are_reclaimed_and_no_other() {
    let env = Env::new();
    let root = fs::canonicalize(env.rt.root()).unwrap();
    let containers = env.store.path().join("containers");
    let stale = |id: &str, root: &Path| {
        let dir = containers.join(id);
        fs::create_dir_all(dir.join("rootfs/bin")).unwrap();
        fs::write(dir.join("hako-image-run.json"), json!({"id": id, "root": root}).to_string()).unwrap();
    };
    stale("killed-1", &root);
    stale("other-root-1", Path::new("/nonexistent/hako-root"));
    // A live container's bundle stays.
    env.run(&["-d", "--name", "live-1", IMAGE, "sleep", "1000"]).expect_ok();
    env.rt.track("live-1");
    env.run(&["--rm", IMAGE, "true"]).expect_ok();
    let mut left = env.bundles();
    left.sort();
    assert_eq!(left, vec!["live-1".to_string(), "other-root-1".to_string()]);
    env.rt.cmd(&["delete", "--force", "live-1"]).expect_ok();
    assert_eq!(env.bundles(), vec!["other-root-1".to_string()]);
}

// ---- Layer snapshots, overlayfs root filesystems and the copy path ----

const LAYERED: &str = "localhost/hako-layers-test:1";

/// `cap_net_raw=ep` as a VFS capability (revision 2) xattr value.
const CAP_NET_RAW_EP: [u8; 20] = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    if let Some(l) = link {
        h.set_link_name(l).unwrap();
    }
    b.append_data(&mut h, path, data).unwrap();
}

/// A three-layer image: busybox with files to delete; a layer that deletes, makes a directory opaque,
/// adds a file with a file capability (PAX SCHILY.xattr.security.capability) and hard-links a file of
/// the first layer; a layer that adds one file. Returns the OCI layout archive.
fn layered_archive(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    common::busybox_rootfs(&rootfs);
    fs::write(rootfs.join("etc/deleted"), "must be hidden\n").unwrap();
    fs::create_dir_all(rootfs.join("opq")).unwrap();
    fs::write(rootfs.join("opq/old"), "must be hidden\n").unwrap();
    fs::create_dir_all(rootfs.join("keep")).unwrap();
    fs::write(rootfs.join("keep/a"), "linked\n").unwrap();
    let base = dir.join("base.tar");
    image::tar_rootfs(&rootfs, &base);

    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, "etc/.wh.deleted", tar::EntryType::Regular, b"", None);
    append(&mut b, "opq", tar::EntryType::Directory, b"", None);
    append(&mut b, "opq/.wh..wh..opq", tar::EntryType::Regular, b"", None);
    append(&mut b, "opq/new", tar::EntryType::Regular, b"in the opaque dir\n", None);
    b.append_pax_extensions([("SCHILY.xattr.security.capability", &CAP_NET_RAW_EP[..])]).unwrap();
    append(&mut b, "bin/capped", tar::EntryType::Regular, b"#!/bin/sh\n", None);
    append(&mut b, "etc/hardlinked", tar::EntryType::Link, b"", Some("keep/a"));
    let second = b.into_inner().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, "etc/added", tar::EntryType::Regular, b"top layer\n", None);
    let third = b.into_inner().unwrap();

    let layout = dir.join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let add = |data: &[u8]| {
        let tmp = layout.join("tmp");
        fs::write(&tmp, data).unwrap();
        let (digest, size) = image::digest(&tmp);
        fs::rename(&tmp, layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap();
        (digest, size)
    };
    let layers: Vec<(String, u64)> = [fs::read(&base).unwrap(), second, third].iter().map(|l| add(l)).collect();
    let arch = std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64");
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.0).collect::<Vec<_>>()},
    });
    let (config, config_size) = add(config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": layers.iter().map(|(d, s)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s,
        })).collect::<Vec<_>>(),
    });
    let (manifest, manifest_size) = add(manifest.to_string().as_bytes());
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest, "size": manifest_size,
        "annotations": {"io.containerd.image.name": LAYERED, "org.opencontainers.image.ref.name": "1"},
    }]});
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let archive = dir.join("layered.tar");
    tar_layout(&layout, &archive);
    archive
}

/// What a container of the layered image must see: whiteouts and the opaque directory applied, every layer
/// present, the cross-layer hard link resolved.
const LAYERED_CHECK: &str = "test ! -e /etc/deleted && test ! -e /opq/old && cat /opq/new /etc/added /etc/hardlinked";
const LAYERED_SEES: &str = "in the opaque dir\ntop layer\nlinked\n";

impl Env {
    fn layered() -> Env {
        let env = Env::empty();
        let dir = tempfile::tempdir().unwrap();
        env.image(&["load", layered_archive(dir.path()).to_str().unwrap()]).expect_ok();
        env
    }

    /// `hako image run ARGS` with environment variables set.
    fn run_env(&self, vars: &[(&str, &str)], args: &[&str]) -> CmdOut {
        let mut a = vec!["image", "--store", self.store.path().to_str().unwrap(), "run"];
        a.extend_from_slice(args);
        let mut cmd = self.rt.command(&a);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        run_captured(cmd, None, DEFAULT_TIMEOUT)
    }

    fn snapshots(&self) -> Vec<String> {
        match fs::read_dir(self.store.path().join("snapshots")) {
            Ok(d) => {
                let mut v: Vec<String> = d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
                v.sort();
                v
            }
            Err(_) => Vec::new(),
        }
    }

    /// Lines of /proc/self/mountinfo whose mount point lies inside this store.
    fn mounts(&self) -> Vec<String> {
        let store = format!("{}/", fs::canonicalize(self.store.path()).unwrap().display());
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        info.lines()
            .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&store)))
            .map(str::to_string)
            .collect()
    }
}

fn getcap(path: &Path) -> String {
    let out = std::process::Command::new("getcap").arg(path).output().expect("getcap (libcap2-bin)");
    assert!(out.status.success(), "getcap {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn overlay_rootfs_shares_read_only_layer_snapshots_and_delete_unmounts_it() {
    let env = Env::layered();
    let overlay = [("HAKO_ROOTFS", "overlay")];
    env.run_env(&overlay, &["-d", "--name", "ov-1", LAYERED, "sleep", "1000"]).expect_ok();
    env.rt.track("ov-1");
    let bundle = env.store.path().join("containers/ov-1");
    let mounts = env.mounts();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert!(mounts[0].contains("containers/ov-1/rootfs") && mounts[0].contains(" - overlay "), "{mounts:?}");
    // One snapshot per layer, shared: a second container adds none.
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 3, "{snaps:?}");
    let out = env
        .run_env(&overlay, &["--rm", LAYERED, "sh", "-c", &format!("{LAYERED_CHECK} && echo w > /etc/written")])
        .expect_ok();
    assert_eq!(out.stdout, LAYERED_SEES, "{out}");
    assert_eq!(env.snapshots(), snaps);
    // Whiteouts are overlayfs whiteouts in the layer's snapshot; nothing a container writes reaches one.
    let whiteouts: Vec<PathBuf> = snaps
        .iter()
        .map(|s| env.store.path().join("snapshots").join(s).join("etc/deleted"))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    assert_eq!(whiteouts.len(), 2, "the base file and the whiteout: {whiteouts:?}");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(whiteouts.iter().any(|p| {
        let m = p.symlink_metadata().unwrap();
        m.file_type().is_char_device() && m.rdev() == 0
    }));
    for s in &snaps {
        assert!(!env.store.path().join("snapshots").join(s).join("etc/written").exists());
    }
    // The file capability survives, seen through the overlay.
    assert!(getcap(&bundle.join("rootfs/bin/capped")).contains("cap_net_raw=ep"));
    // Deleting the container unmounts its root filesystem and removes its upper directory.
    env.rt.kill("ov-1", "KILL").expect_ok();
    env.rt.wait_status("ov-1", "stopped", Duration::from_secs(10));
    env.rt.delete("ov-1").expect_ok();
    assert_eq!(env.mounts(), Vec::<String>::new());
    env.assert_clean();
    // The default (auto) takes overlayfs on this host too.
    env.run(&["-d", "--name", "ov-2", LAYERED, "sleep", "1000"]).expect_ok();
    env.rt.track("ov-2");
    assert_eq!(env.mounts().len(), 1, "{:?}", env.mounts());
    env.rt.cmd(&["delete", "--force", "ov-2"]).expect_ok();
    assert_eq!(env.mounts(), Vec::<String>::new());
    env.assert_clean();
}

#[test]
fn copy_rootfs_applies_whiteouts_and_keeps_file_capabilities() {
    let env = Env::layered();
    let copy = [("HAKO_ROOTFS", "copy")];
    let out = env.run_env(&copy, &["--name", "cp-1", LAYERED, "sh", "-c", LAYERED_CHECK]).expect_ok();
    env.rt.track("cp-1");
    assert_eq!(out.stdout, LAYERED_SEES, "{out}");
    assert_eq!(env.mounts(), Vec::<String>::new(), "the copy path mounts nothing");
    assert_eq!(env.snapshots(), Vec::<String>::new(), "the copy path makes no snapshot");
    let bundle = env.store.path().join("containers/cp-1");
    assert!(getcap(&bundle.join("rootfs/bin/capped")).contains("cap_net_raw=ep"));
    env.rt.delete("cp-1").expect_ok();
    env.assert_clean();
    let out = env.run_env(&[("HAKO_ROOTFS", "tmpfs")], &["--rm", LAYERED, "true"]).expect_fail();
    out.expect_msg(&["HAKO_ROOTFS", "\"tmpfs\"", "copy"]);
    env.assert_clean();
}

#[test]
fn prune_never_removes_a_snapshot_a_container_uses() {
    let env = Env::layered();
    env.run_env(&[("HAKO_ROOTFS", "overlay")], &["-d", "--name", "pr-1", LAYERED, "sleep", "1000"]).expect_ok();
    env.rt.track("pr-1");
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 3);
    // The image goes, its blobs with it; the snapshots the container uses stay, and it still works.
    env.image(&["rm", LAYERED]).expect_ok();
    env.image(&["prune"]).expect_ok();
    assert_eq!(env.image(&["ls", "-q"]).expect_ok().stdout, "");
    assert_eq!(env.snapshots(), snaps);
    assert_eq!(env.rt.exec("pr-1", &["sh", "-c", LAYERED_CHECK]).expect_ok().stdout, LAYERED_SEES);
    env.rt.cmd(&["delete", "--force", "pr-1"]).expect_ok();
    let out = env.image(&["prune"]).expect_ok();
    assert!(out.stdout.contains("3 layer snapshots"), "{out}");
    assert_eq!(env.snapshots(), Vec::<String>::new());
    assert_eq!(env.mounts(), Vec::<String>::new());
    env.assert_clean();
}

// ---- --isolation auto and the compatibility engine's policy ----

/// Writes a hako configuration with `isolation` and returns its path.
fn policy(dir: &Path, isolation: serde_json::Value) -> String {
    let p = dir.join("config.json");
    fs::write(&p, json!({ "isolation": isolation }).to_string()).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn isolation_policy_decides_auto_and_refuses_what_it_forbids() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let trusted = policy(dir.path(), json!({"trustedRegistries": ["localhost/hako-run-test"]}));
    let out = env.run_env(&[("HAKO_CONFIG", &trusted)], &["--rm", IMAGE, "echo", "hi"]).expect_ok();
    assert_eq!(out.stdout, "hi\n");
    let auto: Vec<&str> = out.stderr.lines().filter(|l| l.contains("isolation auto")).collect();
    assert!(auto.len() == 1 && auto[0].contains("process") && auto[0].contains("process-possible"), "{out}");
    // Untrusted and "refuse": no mode runs it, and nothing is left.
    let refuse = policy(dir.path(), json!({"trustedRegistries": ["registry.example"], "untrusted": "refuse"}));
    for mode in ["auto", "process", "vm"] {
        let out = env.run_env(&[("HAKO_CONFIG", &refuse)], &["--rm", "--isolation", mode, IMAGE, "true"]).expect_fail();
        out.expect_msg(&[IMAGE, "policy-refused", "trustedRegistries"]);
        env.assert_clean();
    }
    // Untrusted under "vm": an explicit process is refused with the engine's reason.
    let vm = policy(dir.path(), json!({"trustedRegistries": ["registry.example"]}));
    let out = env.run_env(&[("HAKO_CONFIG", &vm)], &["--rm", "--isolation", "process", IMAGE, "true"]).expect_fail();
    out.expect_msg(&[IMAGE, "process isolation", "policy-untrusted", "hako compat"]);
    env.assert_clean();
    // A configuration hako cannot read is an error, not a silent default.
    let bad = dir.path().join("bad.json");
    fs::write(&bad, "{\"isolation\": 3}").unwrap();
    let out = env.run_env(&[("HAKO_CONFIG", bad.to_str().unwrap())], &["--rm", IMAGE, "true"]).expect_fail();
    out.expect_msg(&[bad.to_str().unwrap()]);
    env.assert_clean();
}

/// The one test that boots a VM: an untrusted image under `auto` gets VM isolation, says so, and records
/// it in the bundle's config (its root filesystem is the overlay, shared into the guest).
#[test]
fn untrusted_image_gets_vm_isolation_under_auto() {
    if !Path::new("/var/lib/hako/vm/vmlinux").exists() && std::env::var_os("HAKO_REQUIRE_ALL").is_none() {
        eprintln!("note: no VM assets (scripts/vm-assets): skipped");
        return;
    }
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let vm = policy(dir.path(), json!({"trustedRegistries": ["registry.example"]}));
    let out = env
        .run_env(&[("HAKO_CONFIG", &vm)], &["-d", "--name", "vm-auto-1", IMAGE, "sh", "-c", "echo from-vm; uname -r"])
        .expect_ok();
    env.rt.track("vm-auto-1");
    let auto: Vec<&str> = out.stderr.lines().filter(|l| l.contains("isolation auto")).collect();
    assert!(auto.len() == 1 && auto[0].contains("vm") && auto[0].contains("policy-untrusted"), "{out}");
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(env.store.path().join("containers/vm-auto-1/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["annotations"]["org.hako.isolation"], "vm", "{config}");
    env.rt.wait_status("vm-auto-1", "stopped", Duration::from_secs(120));
    let log = fs::read_to_string(env.store.path().join("containers/vm-auto-1/container.log")).unwrap();
    let host_kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(log.starts_with("from-vm\n") && !log.contains(host_kernel.trim()), "{log}");
    env.rt.delete("vm-auto-1").expect_ok();
    assert_eq!(env.mounts(), Vec::<String>::new());
    env.assert_clean();
}

/// Unmounts a mount the test made, when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Mounted {
    let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    let st = std::process::Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(target).status();
    assert!(st.unwrap().success(), "mount -t overlay on {}", target.display());
    Mounted(target.to_path_buf())
}

#[test]
fn where_overlayfs_fails_auto_copies_and_overlay_says_why() {
    // A store on an overlayfs: the kernel refuses it as an upper directory, so no container overlay.
    let env = Env::empty();
    let base = tempfile::tempdir().unwrap();
    for d in ["l", "u", "w"] {
        fs::create_dir(base.path().join(d)).unwrap();
    }
    let p = |d: &str| base.path().join(d);
    let _store_mount = mount_overlay(&p("l"), &p("u"), &p("w"), env.store.path());
    let dir = tempfile::tempdir().unwrap();
    env.image(&["load", layered_archive(dir.path()).to_str().unwrap()]).expect_ok();
    let mut a = vec!["--debug", "image", "--store", env.store.path().to_str().unwrap(), "run"];
    a.extend_from_slice(&["--rm", LAYERED, "sh", "-c", LAYERED_CHECK]);
    let out = run_captured(env.rt.command(&a), None, DEFAULT_TIMEOUT).expect_ok();
    assert_eq!(out.stdout, LAYERED_SEES, "{out}");
    assert!(out.stderr.contains("overlayfs root filesystem not possible, copying the image instead"), "{out}");
    assert_eq!(env.snapshots(), Vec::<String>::new(), "no snapshot is made when overlayfs cannot be used");
    env.assert_clean();
    let out = env.run_env(&[("HAKO_ROOTFS", "overlay")], &["--rm", LAYERED, "true"]).expect_fail();
    out.expect_msg(&["overlayfs cannot be used", "HAKO_ROOTFS=copy"]);
    env.assert_clean();
}

#[test]
fn a_killed_runs_mounted_rootfs_is_unmounted_when_reclaimed() {
    let env = Env::new();
    let root = fs::canonicalize(env.rt.root()).unwrap();
    let dir = env.store.path().join("containers/killed-ov-1");
    for d in ["rootfs", "upper", "work", "lower"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(dir.join("hako-image-run.json"), json!({"id": "killed-ov-1", "root": root}).to_string()).unwrap();
    let guard = mount_overlay(&dir.join("lower"), &dir.join("upper"), &dir.join("work"), &dir.join("rootfs"));
    assert_eq!(env.mounts().len(), 1);
    env.run(&["--rm", IMAGE, "true"]).expect_ok();
    assert_eq!(env.mounts(), Vec::<String>::new());
    env.assert_clean();
    std::mem::forget(guard);
}

/// Archives the OCI image layout `layout` as `archive` (what `hako image load` reads).
fn tar_layout(layout: &Path, archive: &Path) {
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(layout)
        .arg("-cf")
        .arg(archive)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .expect("run tar");
    assert!(st.success(), "tar of {} failed", layout.display());
}
