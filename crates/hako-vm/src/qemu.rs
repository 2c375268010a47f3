//! The QEMU command line of a hako micro-VM: `-M microvm` (no firmware, no PCI, virtio-mmio), the guest
//! kernel booted directly through its PVH entry, hako's agent as the initramfs's /init, one virtio-serial
//! port for the protocol, one 9p share per host directory, the serial console to a log file. A VM either boots
//! the kernel ([`Boot::Cold`]) or starts from a template ([`Boot::Template`] makes one, [`Boot::Restore`]
//! starts from it; see [`crate::template`]).

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use crate::accel::Accel;
use crate::assets::Assets;
use crate::VmError;

/// One host directory shared into the guest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShareDir {
    /// Mount tag.
    pub tag: String,
    /// Host directory.
    pub host: PathBuf,
    /// Read-only for the guest: QEMU refuses every write (`readonly=on`), whatever the guest kernel does.
    pub readonly: bool,
    /// Host files (of one directory) shared without their siblings: `host` is then a private directory
    /// holding an empty placeholder `host/<file name>` for each, on which QEMU's own mount namespace binds
    /// the file.
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

/// The capabilities QEMU keeps (its bounding set; everything else is dropped before exec): what 9p's
/// `passthrough` model needs to give guest files their owner and mode. No CAP_MKNOD (the guest cannot make
/// device nodes in a share), no CAP_SYS_ADMIN, CAP_SETUID, CAP_NET_ADMIN, CAP_SYS_PTRACE, ...
/// (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID: numbers 0 to 4.)
pub const QEMU_CAPS: [u32; 5] = [0, 1, 2, 3, 4];

/// QEMU's seccomp sandbox: no obsolete system calls, no setuid/setgid/capset, no fork or exec, no
/// scheduler or resource-limit changes.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// How a VM gets its memory and its first state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Boot the kernel into anonymous memory.
    Cold,
    /// Boot the kernel into guest RAM that is the file `memory` (a shared mapping, so the file holds the
    /// guest's memory when QEMU stops), with QEMU's monitor (QMP) connecting to `qmp`: a VM to save as a
    /// template.
    Template {
        /// The guest RAM file.
        memory: PathBuf,
        /// Where QEMU's monitor connects.
        qmp: PathBuf,
    },
    /// Start from a template: guest RAM is a private (copy-on-write) mapping of the template's `memory`, no
    /// kernel is loaded, and QEMU waits (`-incoming defer`) for the devices' state through the monitor.
    Restore {
        /// The template's guest RAM file.
        memory: PathBuf,
        /// Where QEMU's monitor connects.
        qmp: PathBuf,
    },
}

/// Everything that decides a VM's command line.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The boot parts.
    pub assets: Assets,
    /// KVM or TCG.
    pub accel: Accel,
    /// vCPUs.
    pub cpus: u32,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// The unix socket QEMU connects the protocol port to (hako listens there).
    pub ctl_socket: PathBuf,
    /// Directories to share.
    pub shares: Vec<ShareDir>,
    /// Where the guest console goes.
    pub console_log: PathBuf,
    /// QEMU's TCG translation cache in MiB (None: QEMU's default).
    pub tcg_cache_mib: Option<u64>,
    /// Boot the kernel, or make or use a template.
    pub boot: Boot,
    /// Open tap devices, one virtio-net device each (descriptors of the spawning process, inherited).
    pub taps: Vec<RawFd>,
}

/// A path as a value in QEMU's option syntax, where a comma is written twice.
fn opt_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// The host TSC frequency in kHz, which a TCG microvm guest needs on its command line: without a PIT
/// calibration source it otherwise hangs in about half the boots (see docs/vm-isolation.md).
fn tsc_khz() -> u64 {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|mhz| (mhz * 1000.0) as u64)
        .unwrap_or(2_000_000)
}

impl VmConfig {
    /// The kernel command line.
    pub fn cmdline(&self) -> String {
        // Every word without "=" that the kernel does not know becomes an argument of /init: keep them all known.
        // virtio_mmio.max_queue_size: QEMU offers 1024-entry queues on virtio-mmio, and the serial port's
        // receive buffers then take 10 MiB of guest memory (vm/guest-kernel-patches/).
        let mut c = String::from("console=ttyS0 quiet panic=-1 reboot=t pci=off virtio_mmio.max_queue_size=128");
        if self.accel.name == "tcg" {
            c.push_str(&format!(" tsc_early_khz={} clocksource=tsc tsc=reliable", tsc_khz()));
        }
        c
    }

    /// The QEMU command, ready to spawn (stdio closed; the console goes to the log file).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.assets.qemu);
        // TCG keeps QEMU's default translation cache (up to 1 GiB, touched as code is translated) unless the
        // container asks for less: capping it (tb-size) saves host memory but costs start time
        // (docs/performance.md).
        let accel = match (self.accel.name.as_str(), self.tcg_cache_mib) {
            ("kvm", _) => "kvm".to_string(),
            (_, Some(mib)) => format!("tcg,thread=single,tb-size={mib}"),
            (_, None) => "tcg,thread=single".to_string(),
        };
        let machine = "microvm,x-option-roms=off,rtc=on,isa-serial=on,pit=off,pic=off";
        let (memory, share) = match &self.boot {
            Boot::Cold => (None, ""),
            Boot::Template { memory, .. } => (Some(memory), "on"),
            Boot::Restore { memory, .. } => (Some(memory), "off"),
        };
        cmd.args(["-accel", &accel]);
        match memory {
            None => cmd.args(["-M", machine]),
            Some(m) => cmd.args(["-M", &format!("{machine},memory-backend=ram")]).args([
                "-object",
                &format!("memory-backend-file,id=ram,size={}M,mem-path={},share={share}", self.memory_mib, opt_path(m)),
            ]),
        };
        cmd.args(["-cpu", if self.accel.name == "kvm" { "host" } else { "max" }])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-m", &format!("{}M", self.memory_mib)])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .args(["-sandbox", SANDBOX])
            .args(["-serial", &format!("file:{}", self.console_log.display())]);
        match &self.boot {
            Boot::Restore { .. } => {
                cmd.args(["-incoming", "defer"]);
            }
            _ => {
                cmd.arg("-kernel")
                    .arg(&self.assets.kernel)
                    .arg("-initrd")
                    .arg(&self.assets.initramfs)
                    .args(["-append", &self.cmdline()]);
            }
        }
        if let Boot::Template { qmp, .. } | Boot::Restore { qmp, .. } = &self.boot {
            cmd.args(["-chardev", &format!("socket,id=qmp,path={}", opt_path(qmp))])
                .args(["-mon", "chardev=qmp,mode=control"]);
        }
        cmd.args(["-device", "virtio-serial-device"])
            .args(["-chardev", &format!("socket,id=ctl,path={}", opt_path(&self.ctl_socket))])
            .args(["-device", &format!("virtserialport,chardev=ctl,name={}", hako_proto::PORT_NAME)]);
        for (i, s) in self.shares.iter().enumerate() {
            let ro = if s.readonly { ",readonly=on" } else { "" };
            // A shared file lives on another device than its private directory: keep inode numbers apart.
            // So does a pod share, where the pod's containers' rootfs and volumes are bind-mounted ([`crate::pod`]).
            let devs = if !s.files.is_empty() || s.tag == crate::pod::POD_SHARE { ",multidevs=remap" } else { "" };
            cmd.args([
                "-fsdev",
                &format!("local,id=fs{i},path={},security_model=passthrough{ro}{devs}", opt_path(&s.host)),
            ])
            .args(["-device", &format!("virtio-9p-device,fsdev=fs{i},mount_tag={}", s.tag)]);
        }
        for (i, fd) in self.taps.iter().enumerate() {
            cmd.args(["-netdev", &format!("tap,id=net{i},fd={fd}")])
                .args(["-device", &format!("virtio-net-device,netdev=net{i},mac={}", hako_proto::device_mac(i))]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }
}

/// In a child before exec: marks every fd from 3 upwards close-on-exec, so that only stdio and the fds the
/// caller then names (clearing the flag) reach the program, whatever the calling process holds (a pty
/// master, another child's pipe, an fd the engine leaked to hako). Async-signal-safe.
pub(crate) fn cloexec_from_3() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r != 0 {
        // Kernels before 5.11: every possible fd below the limit (EBADF is ignored).
        let max = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |l| l.0);
        for fd in 3..max.min(1 << 20) as i32 {
            let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
        }
    }
}

/// The (source, placeholder) pairs of the file shares, checked before the fork so that a failure names them.
fn file_binds(shares: &[ShareDir]) -> Result<Vec<(std::ffi::CString, std::ffi::CString)>, VmError> {
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| VmError::Config(format!("{} holds a NUL byte", p.display())))
    };
    let mut out = Vec::new();
    for s in shares {
        for file in &s.files {
            let Some(name) = file.file_name() else {
                return Err(VmError::Config(format!("bind mount source {} names no file", file.display())));
            };
            let target = s.host.join(name);
            for p in [file, &target] {
                match std::fs::metadata(p) {
                    Ok(m) if !m.is_dir() => {}
                    Ok(_) => return Err(VmError::Setup(format!("sharing {}: it is a directory now", p.display()))),
                    Err(e) => return Err(VmError::Setup(format!("sharing {}: {e}", p.display()))),
                }
            }
            out.push((c(file)?, c(&target)?));
        }
    }
    Ok(out)
}

/// In QEMU's child before exec: drops every capability outside [`QEMU_CAPS`] from the bounding set (which
/// is what root gets at exec), and clears the inheritable and ambient sets.
fn drop_capabilities(last_cap: u32) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    for cap in 0..=last_cap {
        // SAFETY: prctl with integer arguments. EINVAL: a capability this kernel does not know.
        if !QEMU_CAPS.contains(&cap) && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    let mut header = Header { version: 0x2008_0522, pid: 0 };
    let mut data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capget/capset of version 3 read and write one header and two data structs.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        data[0].inheritable = 0;
        data[1].inheritable = 0;
        if libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Binds a socket for QEMU to connect to (its protocol port or its monitor), replacing a stale one.
pub fn listen(path: &Path) -> Result<UnixListener, VmError> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|e| VmError::Supervisor(format!("listening on {}: {e}", path.display())))
}

/// Why QEMU did not connect to a socket of ours.
#[derive(Debug)]
pub enum NoConnection {
    /// The deadline passed first; the text names the socket.
    Late(String),
    /// QEMU exited, or accepting failed.
    Failed(String),
}

impl std::fmt::Display for NoConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoConnection::Late(what) => write!(f, "QEMU did not connect {what} in time"),
            NoConnection::Failed(e) => f.write_str(e),
        }
    }
}

impl From<NoConnection> for String {
    fn from(e: NoConnection) -> String {
        e.to_string()
    }
}

/// A QEMU process and what tells why it failed.
pub struct Launched {
    /// The process.
    pub child: Child,
    stderr: Option<ChildStderr>,
    console: PathBuf,
}

impl Launched {
    /// Starts QEMU for `vm`, dying with its parent; its taps and `keep_fd` stay open across the exec. QEMU
    /// gets a mount namespace of its own where it shares single files ([`ShareDir::files`]) and keeps only
    /// the capabilities in [`QEMU_CAPS`].
    pub fn spawn(vm: &VmConfig, keep_fd: Option<RawFd>) -> Result<Launched, VmError> {
        let keep: Vec<RawFd> = vm.taps.iter().copied().chain(keep_fd).collect();
        let binds = file_binds(&vm.shares)?;
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(63);
        let mut cmd = vm.command();
        // Under TCG the guest's memory is touched through QEMU's software MMU, where huge pages buy nothing,
        // and QEMU asks for transparent huge pages on guest RAM and its translation cache: one touched byte
        // then holds 2 MiB. Under KVM huge pages speed the guest up, so they stay.
        let no_thp = vm.accel.name == "tcg";
        // SAFETY: prctl, fcntl, unshare, mount (nix wrappers that do not allocate on C strings) and
        // capget/capset are async-signal-safe system calls on memory prepared before the fork; QEMU must not outlive its parent.
        // PR_SET_THP_DISABLE is kept across execve.
        unsafe {
            cmd.pre_exec(move || {
                cloexec_from_3();
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                if no_thp {
                    let _ = nix::sys::prctl::set_thp_disable(true);
                }
                for fd in &keep {
                    nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
                }
                if !binds.is_empty() {
                    // A private mount namespace: the binds exist for QEMU only and vanish with it.
                    use nix::mount::{mount, MsFlags};
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
                    mount(None::<&str>, c"/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)?;
                    for (src, dst) in &binds {
                        mount(Some(src.as_c_str()), dst.as_c_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
                    }
                }
                drop_capabilities(last_cap)
            });
        }
        let mut child =
            cmd.spawn().map_err(|e| VmError::Setup(format!("starting {}: {e}", vm.assets.qemu.display())))?;
        let stderr = child.stderr.take();
        Ok(Launched { child, stderr, console: vm.console_log.clone() })
    }

    /// Waits until `deadline` for QEMU to connect to `listener` (`what` names the socket in errors).
    pub fn accept(
        &mut self,
        listener: &UnixListener,
        deadline: Instant,
        what: &str,
    ) -> Result<UnixStream, NoConnection> {
        listener.set_nonblocking(true).ok();
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).ok();
                    return Ok(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(NoConnection::Failed(format!("accepting QEMU's connection to {what}: {e}"))),
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(NoConnection::Failed("QEMU exited before the VM started".into()));
            }
            if Instant::now() > deadline {
                return Err(NoConnection::Late(what.to_string()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills QEMU and says why the VM failed to come up, with what QEMU printed and the guest console.
    pub fn fail(&mut self, what: impl std::fmt::Display) -> VmError {
        let _ = self.child.kill();
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        let mut err = String::new();
        if let Some(e) = self.stderr.as_mut() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        VmError::Boot(format!(
            "VM boot failed: {what} (qemu {status}{}){}",
            if err.trim().is_empty() { String::new() } else { format!(": {}", err.trim()) },
            tail_of(&self.console, 5)
        ))
    }
}

/// What the guest console says about a failure, as a suffix for error messages: the agent's own lines and
/// kernel panics first, else the last `n` lines.
pub fn tail_of(console: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return format!("; guest console {} is empty", console.display());
    }
    let telling: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("hako") || l.contains("Kernel panic") || l.contains("not syncing"))
        .collect();
    let pick = if telling.is_empty() {
        &lines[lines.len().saturating_sub(n)..]
    } else {
        &telling[telling.len().saturating_sub(n)..]
    };
    format!("; guest console {}: {}", console.display(), pick.join(" | "))
}

/// Gives back the host memory QEMU holds for the boot images once the guest has booted. QEMU keeps the
/// kernel and initramfs it loaded mapped from their files, as the ROM images it would copy into guest RAM
/// again on a system reset, which a VM run with -no-reboot never does: about 15 MiB of page cache charged
/// to every QEMU that is the only one mapping them. `MADV_PAGEOUT` through process_madvise(2) drops those
/// pages from QEMU's memory; they would fault back in from the files if QEMU ever read them. Returns the
/// bytes advised. Needs Linux 5.10 and CAP_SYS_NICE; callers treat an error as "nothing reclaimed".
pub fn page_out_boot_images(pid: i32, images: &[&Path]) -> std::io::Result<u64> {
    let wanted: Vec<PathBuf> = images.iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
    let pidfd = hako_runtime::procfs::pidfd_open(pid)?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut ranges: Vec<libc::iovec> = Vec::new();
    for line in maps.lines() {
        // start-end perms offset dev inode path (the path may hold spaces)
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(path)) = (fields.next(), fields.nth(4)) else { continue };
        if !wanted.iter().any(|w| w.as_os_str() == path.trim_start()) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        ranges.push(libc::iovec { iov_base: start as *mut libc::c_void, iov_len: end - start });
    }
    if ranges.is_empty() {
        return Ok(0);
    }
    // SAFETY: the iovecs name address ranges of the other process; the kernel only reads the array (nix does
    // not wrap process_madvise).
    let done = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd.as_raw_fd(),
            ranges.as_ptr(),
            ranges.len(),
            libc::MADV_PAGEOUT,
            0,
        )
    };
    if done < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(done as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(accel: &str, tcg_cache_mib: Option<u64>) -> VmConfig {
        VmConfig {
            assets: Assets { qemu: "/q".into(), kernel: "/k".into(), initramfs: "/i".into() },
            accel: Accel { name: accel.into(), why: String::new() },
            cpus: 1,
            memory_mib: 128,
            ctl_socket: "/s".into(),
            shares: Vec::new(),
            console_log: "/c".into(),
            tcg_cache_mib,
            boot: Boot::Cold,
            taps: Vec::new(),
        }
    }

    fn args(c: &VmConfig) -> Vec<String> {
        c.command().get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    fn accel_arg(c: &VmConfig) -> String {
        let args = args(c);
        args[args.iter().position(|a| a == "-accel").unwrap() + 1].clone()
    }

    #[test]
    fn a_cold_boot_loads_the_kernel_into_anonymous_memory() {
        let a = args(&config("tcg", None)).join(" ");
        assert!(a.contains("-kernel /k -initrd /i -append console=ttyS0"), "{a}");
        assert!(!a.contains("memory-backend") && !a.contains("-incoming") && !a.contains("-mon"), "{a}");
    }

    #[test]
    fn a_template_boots_into_a_shared_file_and_a_restore_maps_it_privately_without_a_kernel() {
        let mut c = config("tcg", None);
        c.boot = Boot::Template { memory: "/t/mem,1".into(), qmp: "/t/qmp".into() };
        let t = args(&c).join(" ");
        assert!(
            t.contains("-M microvm,x-option-roms=off,rtc=on,isa-serial=on,pit=off,pic=off,memory-backend=ram"),
            "{t}"
        );
        assert!(t.contains("-object memory-backend-file,id=ram,size=128M,mem-path=/t/mem,,1,share=on"), "{t}");
        assert!(t.contains("-kernel /k") && !t.contains("-incoming"), "{t}");
        assert!(t.contains("-chardev socket,id=qmp,path=/t/qmp -mon chardev=qmp,mode=control"), "{t}");
        c.boot = Boot::Restore { memory: "/t/mem".into(), qmp: "/v/qmp".into() };
        let r = args(&c).join(" ");
        assert!(r.contains("mem-path=/t/mem,share=off") && r.contains("-incoming defer"), "{r}");
        assert!(!r.contains("-kernel") && !r.contains("-initrd") && !r.contains("-append"), "{r}");
        assert!(r.contains("-chardev socket,id=qmp,path=/v/qmp"), "{r}");
    }

    #[test]
    fn each_tap_is_a_virtio_net_device_after_the_shares() {
        let mut c = config("tcg", None);
        c.shares.push(ShareDir { tag: "rootfs".into(), host: "/r".into(), readonly: false, files: Vec::new() });
        c.taps = vec![7, 9];
        let a = args(&c).join(" ");
        assert!(
            a.ends_with(
                "mount_tag=rootfs -netdev tap,id=net0,fd=7 -device virtio-net-device,netdev=net0,mac=52:54:00:68:6b:00 \
                 -netdev tap,id=net1,fd=9 -device virtio-net-device,netdev=net1,mac=52:54:00:68:6b:01"
            ),
            "{a}"
        );
    }

    #[test]
    fn qemu_runs_sandboxed_and_read_only_shares_are_read_only_to_qemu() {
        let mut c = config("tcg", None);
        c.shares.push(ShareDir { tag: "rootfs".into(), host: "/r".into(), readonly: true, files: Vec::new() });
        c.shares.push(ShareDir { tag: "m1".into(), host: "/d".into(), readonly: false, files: Vec::new() });
        c.shares.push(ShareDir {
            tag: "m2".into(),
            host: "/f/m2".into(),
            readonly: true,
            files: vec!["/etc/h".into()],
        });
        let a = args(&c).join(" ");
        assert!(a.contains(&format!("-sandbox {SANDBOX}")), "{a}");
        assert!(a.contains("local,id=fs0,path=/r,security_model=passthrough,readonly=on -device"), "{a}");
        assert!(a.contains("local,id=fs1,path=/d,security_model=passthrough -device"), "{a}");
        assert!(a.contains("local,id=fs2,path=/f/m2,security_model=passthrough,readonly=on,multidevs=remap"), "{a}");
    }

    #[test]
    fn the_translation_cache_is_capped_only_when_asked_and_only_under_tcg() {
        assert_eq!(accel_arg(&config("tcg", None)), "tcg,thread=single");
        assert_eq!(accel_arg(&config("tcg", Some(16))), "tcg,thread=single,tb-size=16");
        assert_eq!(accel_arg(&config("kvm", Some(16))), "kvm");
    }

    #[test]
    fn the_guest_caps_virtio_queues_and_gets_the_tsc_rate_only_under_tcg() {
        let tcg = config("tcg", None).cmdline();
        assert!(tcg.contains("virtio_mmio.max_queue_size=128") && tcg.contains("tsc_early_khz="), "{tcg}");
        let kvm = config("kvm", None).cmdline();
        assert!(kvm.contains("virtio_mmio.max_queue_size=128") && !kvm.contains("tsc_early_khz"), "{kvm}");
    }

    #[test]
    fn paging_out_covers_every_mapping_of_the_images() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("vmlinux");
        std::fs::write(&image, vec![7u8; 64 << 10]).unwrap();
        let file = std::fs::File::open(&image).unwrap();
        // SAFETY: a fresh private read-only mapping of a file we own, unmapped below.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), 64 << 10, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0)
        };
        assert_ne!(addr, libc::MAP_FAILED);
        // SAFETY: the mapping is 64 KiB long and readable.
        assert_eq!(unsafe { *(addr as *const u8).add(4096) }, 7);
        let advised = page_out_boot_images(std::process::id() as i32, &[&image]);
        // SAFETY: unmapping what we mapped.
        unsafe { libc::munmap(addr, 64 << 10) };
        assert_eq!(advised.unwrap(), 64 << 10);
    }

    #[test]
    fn paging_out_a_process_without_the_images_advises_nothing() {
        let me = std::process::id() as i32;
        assert_eq!(page_out_boot_images(me, &[Path::new("/nonexistent/vmlinux")]).unwrap(), 0);
    }
}
