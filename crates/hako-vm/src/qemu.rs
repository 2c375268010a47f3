//! The QEMU command line of a hako micro-VM: `-M microvm` (no firmware, no PCI, virtio-mmio), the guest
//! kernel booted directly through its PVH entry, hako's agent as the initramfs's /init, one virtio-serial
//! port for the protocol, one 9p share per host directory, the serial console to a log file.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::accel::Accel;
use crate::assets::Assets;

/// One host directory shared into the guest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShareDir {
    /// Mount tag.
    pub tag: String,
    /// Host directory.
    pub host: PathBuf,
    /// Read-only in the guest.
    pub readonly: bool,
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
        cmd.args(["-accel", &accel])
            .args(["-M", "microvm,x-option-roms=off,rtc=on,isa-serial=on,pit=off,pic=off"])
            .args(["-cpu", if self.accel.name == "kvm" { "host" } else { "max" }])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-m", &format!("{}M", self.memory_mib)])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .args(["-serial", &format!("file:{}", self.console_log.display())])
            .arg("-kernel")
            .arg(&self.assets.kernel)
            .arg("-initrd")
            .arg(&self.assets.initramfs)
            .args(["-append", &self.cmdline()])
            .args(["-device", "virtio-serial-device"])
            .args(["-chardev", &format!("socket,id=ctl,path={}", self.ctl_socket.display())])
            .args(["-device", &format!("virtserialport,chardev=ctl,name={}", hako_proto::PORT_NAME)]);
        for (i, s) in self.shares.iter().enumerate() {
            let ro = if s.readonly { ",readonly=on" } else { "" };
            cmd.args(["-fsdev", &format!("local,id=fs{i},path={},security_model=passthrough{ro}", s.host.display())])
                .args(["-device", &format!("virtio-9p-device,fsdev=fs{i},mount_tag={}", s.tag)]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }
}

/// Gives back the host memory QEMU holds for the boot images once the guest has booted. QEMU keeps the
/// kernel and initramfs it loaded mapped from their files, as the ROM images it would copy into guest RAM
/// again on a system reset, which a VM run with -no-reboot never does: about 15 MiB of page cache charged
/// to every QEMU that is the only one mapping them. `MADV_PAGEOUT` through process_madvise(2) drops those
/// pages from QEMU's memory; they would fault back in from the files if QEMU ever read them. Returns the
/// bytes advised. Needs Linux 5.10 and CAP_SYS_NICE; callers treat an error as "nothing reclaimed".
pub fn page_out_boot_images(pid: i32, images: &[&Path]) -> std::io::Result<u64> {
    let wanted: Vec<PathBuf> = images.iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned to us and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
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
    // SAFETY: the iovecs name address ranges of the other process; the kernel only reads the array.
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
        }
    }

    fn accel_arg(c: &VmConfig) -> String {
        let cmd = c.command();
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        args[args.iter().position(|a| a == "-accel").unwrap() + 1].clone()
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
