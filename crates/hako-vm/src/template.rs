//! VM templates: a VM that booted once and was saved, so that later VMs of the same shape start from it
//! instead of booting the kernel (as Kata Containers' VM templating and Firecracker's snapshots do).
//!
//! **Making one.** The first VM of a shape (accelerator, vCPUs, RAM, number of shares, kernel command line,
//! and the QEMU, kernel and initramfs files) boots with its guest RAM in a file that QEMU maps shared
//! (`memory-backend-file,share=on`) and its shares pointing at an empty directory. Once the agent says hello
//! the maker sends it [`Op::Seal`], stops the VM and has QEMU save the devices' state with the
//! `x-ignore-shared` migration capability: the RAM stays in its file and only the devices' state (about
//! 60 KB) goes to `state`. Both are synced and the directory appears under its final name in one rename,
//! so a template is complete or absent.
//!
//! **Starting from one** ([`crate::qemu::Boot::Restore`]): QEMU maps the RAM file *privately*, so the guest
//! reads the template's pages from the page cache (shared by every VM of the template) and copies only the
//! pages it writes; the devices' state comes in with `-incoming defer` + `migrate-incoming`. The guest
//! resumes where the template stopped, inside the agent's read of the protocol port: no kernel boot, no
//! agent start, and no translated code for either under TCG. The agent refuses everything until the host
//! sends [`Op::Restore`] with the time and fresh entropy, so no two VMs share the template's random state.
//!
//! **Invariants.** A template's files are never written after the rename (a private mapping of a file that
//! changes would change the guest); a stale template is unlinked, never truncated, so VMs still running from
//! it keep their mapping. No container ever existed in a template's guest (the agent refuses to seal then).

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hako_proto::Op;
use serde_json::json;

use crate::client::{call_port, hello};
use crate::qemu::{listen, Boot, Launched, ShareDir, VmConfig};
use crate::qmp::Qmp;
use crate::VmError;

/// Where templates live: `HAKO_VM_TEMPLATES`, else `templates` in the assets directory.
pub fn root() -> PathBuf {
    std::env::var_os("HAKO_VM_TEMPLATES").map(PathBuf::from).unwrap_or_else(|| crate::assets::dir().join("templates"))
}

/// Bumped when what a template holds changes meaning.
const FORMAT: u32 = 1;
/// The file holding a template's description; written last. Its mtime says when the template was last used.
const DESCRIPTION: &str = "template";
/// At most this many templates are kept (about 33 MB each): making one more removes the least recently used.
pub const KEEP: usize = 16;

/// A complete template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Its directory.
    pub dir: PathBuf,
}

impl Template {
    /// The guest RAM file.
    pub fn memory(&self) -> PathBuf {
        self.dir.join("memory")
    }

    /// The devices' state, as QEMU's migration stream.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
}

fn identity(p: &Path) -> Result<String, VmError> {
    let m = fs::metadata(p).map_err(|e| VmError::Setup(format!("{}: {e}", p.display())))?;
    Ok(format!(
        "{} dev={} ino={} size={} mtime={}.{:09}",
        p.display(),
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// Everything a VM started from a template must share with it, one `name value` per line; the first six
/// lines are the shape, the rest what it boots with: the protocol (a VM from a template says no hello, so
/// the maker's hello check stands for it), the kernel's command line and the files.
pub fn describe(vm: &VmConfig) -> Result<String, VmError> {
    Ok(format!(
        "format {FORMAT}\naccel {}\ncpus {}\nmemory_mib {}\nshares {}\nnics {}\nprotocol {}\ncmdline {}\nqemu {}\n\
         kernel {}\ninitramfs {}\n",
        vm.accel.name,
        vm.cpus,
        vm.memory_mib,
        vm.shares.len(),
        vm.taps.len(),
        hako_proto::VERSION,
        vm.cmdline(),
        identity(&vm.assets.qemu)?,
        identity(&vm.assets.kernel)?,
        identity(&vm.assets.initramfs)?,
    ))
}

fn shape(description: &str) -> Vec<&str> {
    description.lines().take(6).collect()
}

/// 64-bit FNV-1a: a stable name for a description (which is stored and compared in full).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The template in `dir` if it is complete and made for `description`.
fn complete(dir: &Path, description: &str) -> Option<Template> {
    let t = Template { dir: dir.to_owned() };
    let found = fs::read_to_string(dir.join(DESCRIPTION)).ok()?;
    (found == description && t.memory().is_file() && t.state().is_file()).then_some(t)
}

/// Records that `t` was used now (its description's mtime), for [`sweep`]'s least-recently-used order.
fn mark_used(t: &Template) {
    if let Ok(f) = fs::File::open(t.dir.join(DESCRIPTION)) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> VmError {
    move |e| VmError::Setup(format!("VM template: {what}: {e}"))
}

/// The template for `vm`, made first if there is none (that boots a VM once, under the boot `deadline`).
/// Returns it and whether it was made now.
pub fn get_or_make(vm: &VmConfig, deadline: Instant) -> Result<(Template, bool), VmError> {
    let description = describe(vm)?;
    let root = root();
    let key = format!("{:016x}", fnv1a(&description));
    let dir = root.join(&key);
    // A maker killed with its supervisor leaves its temporary directory: the next VM removes it.
    sweep_dead_makers(&root);
    let found = || {
        complete(&dir, &description).map(|t| {
            mark_used(&t);
            (t, false)
        })
    };
    if let Some(found) = found() {
        return Ok(found);
    }
    fs::create_dir_all(&root).map_err(io_err(format_args!("creating {}", root.display())))?;
    // A template's RAM holds the state of a guest before it was reseeded: for root's eyes only.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format_args!("making {} private", root.display())))?;
    let lock_path = root.join(format!("{key}.lock"));
    let lock = fs::File::create(&lock_path).map_err(io_err(format_args!("creating {}", lock_path.display())))?;
    // Released when `_lock` is dropped.
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err(format_args!("locking {}", lock_path.display()))(e.into()))?;
    // Another VM of the shape may have made it while we waited.
    if let Some(found) = found() {
        return Ok(found);
    }
    sweep(&root, &description);
    let tmp = root.join(format!(".tmp-{key}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(io_err(format_args!("creating {}", tmp.display())))?;
    let made = make(vm, &root, &tmp, &description, deadline).and_then(|()| {
        if dir.exists() {
            // Not complete (or another description with the same name): never reuse it in place.
            fs::remove_dir_all(&dir).map_err(io_err(format_args!("removing {}", dir.display())))?;
        }
        fs::rename(&tmp, &dir).map_err(io_err(format_args!("renaming {} to {}", tmp.display(), dir.display())))?;
        if let Ok(d) = fs::File::open(&root) {
            let _ = d.sync_all();
        }
        Ok(())
    });
    match made {
        Ok(()) => Ok((Template { dir }, true)),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Removes what is left of makers that died (`.tmp-KEY-PID` of a dead pid), templates that a new one of the
/// same shape replaces (their kernel, initramfs or QEMU changed), and the least recently used templates
/// beyond [`KEEP`] - 1, making room for the one about to be made. Files are unlinked, never truncated: VMs
/// running from an old template keep their mapping.
fn sweep(root: &Path, description: &str) {
    sweep_dead_makers(root);
    let Ok(entries) = fs::read_dir(root) else { return };
    let mut kept = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with(".tmp-") {
            continue;
        }
        if let Ok(other) = fs::read_to_string(path.join(DESCRIPTION)) {
            if other != description && shape(&other) == shape(description) {
                let _ = fs::remove_dir_all(&path);
            } else {
                let used = fs::metadata(path.join(DESCRIPTION)).and_then(|m| m.modified()).ok();
                kept.push((used, path));
            }
        }
    }
    kept.sort_by_key(|k| std::cmp::Reverse(k.0));
    for (_, path) in kept.iter().skip(KEEP.saturating_sub(1)) {
        let _ = fs::remove_dir_all(path);
    }
}

/// Removes the temporary directories (`.tmp-KEY-PID`) of makers whose process is gone.
fn sweep_dead_makers(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".tmp-") else { continue };
        let pid = rest.rsplit('-').next().and_then(|p| p.parse::<i32>().ok()).unwrap_or(0);
        // A killed maker may linger as a zombie until something reaps it: that is dead too.
        let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with(['Z', 'X'])))
            .unwrap_or(false);
        if pid > 0 && !alive {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Boots `vm`'s shape into `tmp` and saves it there.
fn make(vm: &VmConfig, root: &Path, tmp: &Path, description: &str, deadline: Instant) -> Result<(), VmError> {
    let empty = root.join("empty");
    fs::create_dir_all(&empty).map_err(io_err(format_args!("creating {}", empty.display())))?;
    let mut t = vm.clone();
    t.boot = Boot::Template { memory: tmp.join("memory"), qmp: tmp.join("qmp.sock") };
    t.ctl_socket = tmp.join("ctl.sock");
    t.console_log = tmp.join("console.log");
    t.shares = vm
        .shares
        .iter()
        .map(|s| ShareDir { tag: s.tag.clone(), host: empty.clone(), readonly: true, files: Vec::new() })
        .collect();
    // Taps of its own, in a namespace of its own: the template's network devices are never connected.
    let taps = crate::net::scratch_taps(vm.taps.len())?;
    t.taps = taps.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    let ctl = listen(&t.ctl_socket)?;
    let mon = listen(&tmp.join("qmp.sock"))?;
    let mut qemu = Launched::spawn(&t, None)?;
    let saved = (|| -> Result<(), String> {
        let mut agent = qemu.accept(&ctl, deadline, "the protocol port")?;
        let mon = qemu.accept(&mon, deadline, "its monitor")?;
        let mut qmp = Qmp::new(mon, deadline).map_err(|e| e.to_string())?;
        hello(&mut agent, deadline).map_err(|e| e.to_string())?;
        call_port(&mut agent, Op::Seal, deadline)?;
        qmp.ignore_shared_memory().map_err(|e| e.to_string())?;
        qmp.execute("stop", None).map_err(|e| e.to_string())?;
        let state = fs::File::create(tmp.join("state")).map_err(|e| format!("creating the state file: {e}"))?;
        qmp.pass_fd("hako-state", state.as_fd()).map_err(|e| e.to_string())?;
        qmp.execute("migrate", Some(json!({"uri": "fd:hako-state"}))).map_err(|e| e.to_string())?;
        qmp.poll("query-migrate", |v| match v["status"].as_str() {
            Some("completed") => Ok(true),
            Some("failed" | "cancelled") => Err(VmError::Boot(format!(
                "saving the VM failed: {}",
                v["error-desc"].as_str().unwrap_or("QEMU gave no reason")
            ))),
            _ => Ok(false),
        })
        .map_err(|e| e.to_string())?;
        // QEMU may close the monitor before it answers quit.
        let _ = qmp.execute("quit", None);
        drop(agent);
        let until = Instant::now() + Duration::from_secs(10);
        while qemu.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > until {
                return Err("QEMU did not quit after saving the VM".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        state.sync_all().map_err(|e| format!("syncing the state file: {e}"))?;
        Ok(())
    })();
    if let Err(e) = saved {
        return Err(qemu.fail(format!("making a VM template in {}: {e}", tmp.display())));
    }
    let memory = fs::File::open(tmp.join("memory")).map_err(io_err("opening the saved guest RAM"))?;
    memory.sync_all().map_err(io_err("syncing the saved guest RAM"))?;
    for f in ["ctl.sock", "qmp.sock"] {
        let _ = fs::remove_file(tmp.join(f));
    }
    let desc = tmp.join(DESCRIPTION);
    fs::write(&desc, description).map_err(io_err(format_args!("writing {}", desc.display())))?;
    fs::File::open(&desc).and_then(|f| f.sync_all()).map_err(io_err(format_args!("syncing {}", desc.display())))?;
    Ok(())
}

/// Fresh random bytes for a restored VM's kernel.
pub fn entropy() -> Result<Vec<u8>, VmError> {
    let mut buf = vec![0u8; 64];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| VmError::Setup(format!("reading /dev/urandom for a restored VM: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::Accel;
    use crate::assets::Assets;

    fn vm(dir: &Path) -> VmConfig {
        for f in ["q", "k", "i"] {
            fs::write(dir.join(f), f).unwrap();
        }
        VmConfig {
            assets: Assets { qemu: dir.join("q"), kernel: dir.join("k"), initramfs: dir.join("i") },
            accel: Accel { name: "tcg".into(), why: String::new() },
            cpus: 1,
            memory_mib: 128,
            ctl_socket: "/s".into(),
            shares: vec![ShareDir { tag: "rootfs".into(), host: "/r".into(), readonly: false, files: Vec::new() }],
            console_log: "/c".into(),
            tcg_cache_mib: None,
            boot: Boot::Cold,
            taps: Vec::new(),
        }
    }

    #[test]
    fn the_description_holds_the_shape_and_the_files_but_no_container_paths() {
        let d = tempfile::tempdir().unwrap();
        let a = vm(d.path());
        let base = describe(&a).unwrap();
        let mut b = a.clone();
        b.shares[0].host = "/elsewhere".into();
        b.ctl_socket = "/other".into();
        b.tcg_cache_mib = Some(16);
        assert_eq!(describe(&b).unwrap(), base, "per-container paths must not matter");
        for change in [
            |v: &mut VmConfig| v.memory_mib = 256,
            |v: &mut VmConfig| v.cpus = 2,
            |v: &mut VmConfig| {
                v.shares.push(ShareDir { tag: "m1".into(), host: "/x".into(), readonly: false, files: Vec::new() })
            },
            |v: &mut VmConfig| v.taps.push(3),
        ] {
            let mut c = a.clone();
            change(&mut c);
            let other = describe(&c).unwrap();
            assert_ne!(other, base);
            assert_ne!(shape(&other), shape(&base));
        }
        // A rebuilt kernel changes the description but not the shape: the old template gets swept.
        std::thread::sleep(Duration::from_millis(10));
        fs::write(d.path().join("k"), "new kernel").unwrap();
        let rebuilt = describe(&a).unwrap();
        assert_ne!(rebuilt, base);
        assert_eq!(shape(&rebuilt), shape(&base));
        assert_ne!(fnv1a(&rebuilt), fnv1a(&base));
    }

    #[test]
    fn only_a_complete_matching_template_is_used_and_sweeping_keeps_other_shapes() {
        let d = tempfile::tempdir().unwrap();
        let a = vm(d.path());
        let desc = describe(&a).unwrap();
        let root = d.path().join("templates");
        let t = root.join("t1");
        fs::create_dir_all(&t).unwrap();
        fs::write(t.join("memory"), "").unwrap();
        assert!(complete(&t, &desc).is_none(), "no description yet: incomplete");
        fs::write(t.join(DESCRIPTION), &desc).unwrap();
        assert!(complete(&t, &desc).is_none(), "no state yet: incomplete");
        fs::write(t.join("state"), "").unwrap();
        assert!(complete(&t, &desc).is_some());

        let mut bigger = a.clone();
        bigger.memory_mib = 512;
        let other_shape = root.join("t2");
        fs::create_dir_all(&other_shape).unwrap();
        fs::write(other_shape.join(DESCRIPTION), describe(&bigger).unwrap()).unwrap();
        let dead_maker = root.join(".tmp-abc-999999999");
        fs::create_dir_all(&dead_maker).unwrap();
        let live_maker = root.join(format!(".tmp-abc-{}", std::process::id()));
        fs::create_dir_all(&live_maker).unwrap();
        // A new kernel: the template of the same shape goes, the other shape and a live maker stay.
        std::thread::sleep(Duration::from_millis(10));
        fs::write(d.path().join("k"), "new kernel").unwrap();
        sweep(&root, &describe(&a).unwrap());
        assert!(!t.exists() && !dead_maker.exists());
        assert!(other_shape.exists() && live_maker.exists());
    }

    #[test]
    fn sweeping_keeps_the_most_recently_used_templates() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("templates");
        let base = std::time::SystemTime::now() - Duration::from_secs(3600);
        for i in 0..KEEP + 2 {
            let t = Template { dir: root.join(format!("t{i:02}")) };
            fs::create_dir_all(&t.dir).unwrap();
            fs::write(t.dir.join(DESCRIPTION), format!("format 1\naccel tcg\ncpus 1\nmemory_mib {i}\nshares 1\n"))
                .unwrap();
            let f = fs::File::open(t.dir.join(DESCRIPTION)).unwrap();
            f.set_modified(base + Duration::from_secs(i as u64)).unwrap();
        }
        // The oldest one is used now: it becomes the most recent.
        mark_used(&Template { dir: root.join("t00") });
        sweep(&root, "format 1\naccel tcg\ncpus 1\nmemory_mib 999\nshares 1\n");
        let mut left: Vec<String> =
            fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left.len(), KEEP - 1, "{left:?}");
        assert!(left.contains(&"t00".to_string()), "the template used last must stay: {left:?}");
        assert!(!left.contains(&"t01".to_string()) && !left.contains(&"t02".to_string()), "{left:?}");
    }
}
