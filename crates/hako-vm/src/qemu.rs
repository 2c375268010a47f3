//! The QEMU command line of a hako micro-VM: `-M microvm` (no firmware, no PCI, virtio-mmio), the guest
//! kernel booted directly through its PVH entry, hako's agent as the initramfs's /init, one virtio-serial
//! port for the protocol, one 9p share per host directory, the serial console to a log file.

use std::path::PathBuf;
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
        let mut c = String::from("console=ttyS0 quiet panic=-1 reboot=t pci=off");
        if self.accel.name == "tcg" {
            c.push_str(&format!(" tsc_early_khz={} clocksource=tsc tsc=reliable", tsc_khz()));
        }
        c
    }

    /// The QEMU command, ready to spawn (stdio closed; the console goes to the log file).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.assets.qemu);
        // TCG keeps QEMU's default translation cache (up to 1 GiB, touched as code is translated): capping it
        // (tb-size) saves host memory but costs start time, 8 MiB adding 0.6 s to a run (docs/performance.md).
        let accel = if self.accel.name == "kvm" { "kvm" } else { "tcg,thread=single" };
        cmd.args(["-accel", accel])
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
