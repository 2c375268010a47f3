//! Choosing the accelerator: KVM when a start-up probe shows that /dev/kvm really runs a guest, TCG (QEMU's
//! software emulation) otherwise. The probe result is cached per boot in the assets directory's parent state.
//!
//! Why a probe and not just "does /dev/kvm open": on nested-virtualisation hosts such as this project's CI
//! machines, /dev/kvm exists but is PVM, which cannot run a stock guest kernel (it dies in the instruction
//! emulator after a minute). The probe runs a few instructions in a KVM vCPU via QEMU's `-M none`, which
//! fails fast there.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The accelerator a VM will use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accel {
    /// "kvm" or "tcg".
    pub name: String,
    /// Why it was chosen, for `hako info`.
    pub why: String,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The accelerator for this host: `HAKO_VM_ACCEL=kvm|tcg` forces one; else the cached probe result, else a probe.
pub fn choose(qemu: &Path, cache: &Path) -> Accel {
    if let Ok(forced) = std::env::var("HAKO_VM_ACCEL") {
        return Accel { name: forced.clone(), why: format!("forced by HAKO_VM_ACCEL={forced}") };
    }
    let key = boot_id();
    if let Ok(text) = std::fs::read_to_string(cache) {
        if let Ok((k, a)) = serde_json::from_str::<(String, Accel)>(&text) {
            if k == key {
                return a;
            }
        }
    }
    let a = probe(qemu);
    // The cache lives in the state root: create it as the state store does (0700), and the file private.
    if let Some(dir) = cache.parent() {
        let _ = std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(dir);
    }
    let _ = hako_runtime::state::write_private(cache, serde_json::to_string(&(key, &a)).unwrap_or_default().as_bytes());
    a
}

fn probe(qemu: &Path) -> Accel {
    let tcg = |why: String| Accel { name: "tcg".into(), why };
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return tcg("/dev/kvm cannot be opened: QEMU emulates the CPU in software (slow start, same semantics)".into());
    }
    // A machine without firmware or devices: QEMU starts the vCPU on a halt loop of zeroed memory and quits
    // through the monitor. Under a working KVM this takes a few hundred ms; under PVM or broken nesting, KVM
    // refuses or the vCPU faults immediately.
    let start = Instant::now();
    let mut child = match Command::new(qemu)
        .args([
            "-accel",
            "kvm",
            "-M",
            "microvm,x-option-roms=off,rtc=off,isa-serial=off",
            "-cpu",
            "host",
            "-m",
            "16",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-S",
            "-monitor",
            "stdio",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return tcg(format!("cannot run {} for the KVM probe: {e}", qemu.display())),
    };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(b"cont\ninfo kvm\nquit\n");
    }
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => break,
            Ok(Some(st)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return tcg(format!(
                    "/dev/kvm does not run a guest here (QEMU {st}: {}): using TCG",
                    err.lines().last().unwrap_or("").trim()
                ));
            }
            Ok(None) if start.elapsed() > Duration::from_secs(5) => {
                let _ = child.kill();
                let _ = child.wait();
                return tcg(
                    "/dev/kvm did not answer a probe in 5 s (nested virtualisation without VMX?): using TCG".into()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return tcg(format!("KVM probe: {e}")),
        }
    }
    if is_pvm() {
        return tcg("/dev/kvm is PVM (nested paravirtual KVM), which cannot run a stock guest kernel: using TCG".into());
    }
    Accel { name: "kvm".into(), why: "/dev/kvm runs a guest".into() }
}

/// PVM hosts load `kvm-pvm`; their KVM runs only PVM-enabled guest kernels.
fn is_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
        || std::fs::read_to_string("/proc/cmdline").map(|c| c.contains("nested_pvm")).unwrap_or(false)
}
