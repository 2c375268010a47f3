//! Where the VM's parts come from: QEMU, the guest kernel and the initramfs holding hako's agent. A missing
//! part is an error that names the setup step providing it.

use std::path::PathBuf;

use crate::VmError;

/// Default directory of the guest assets (`vmlinux`, `initramfs.cpio.gz`), as `scripts/vm-assets` installs them.
pub const DEFAULT_DIR: &str = "/var/lib/hako/vm";

/// The parts a VM boots from.
#[derive(Debug, Clone)]
pub struct Assets {
    /// qemu-system-x86_64.
    pub qemu: PathBuf,
    /// Uncompressed guest kernel with a PVH entry point.
    pub kernel: PathBuf,
    /// The initramfs whose /init is hako's agent.
    pub initramfs: PathBuf,
}

/// The assets directory: `HAKO_VM_ASSETS`, else [`DEFAULT_DIR`].
pub fn dir() -> PathBuf {
    std::env::var_os("HAKO_VM_ASSETS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

fn find_qemu() -> Option<PathBuf> {
    if let Some(q) = std::env::var_os("HAKO_QEMU") {
        return Some(PathBuf::from(q));
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
}

impl Assets {
    /// Finds every part or says which setup step is missing.
    pub fn locate() -> Result<Assets, VmError> {
        let qemu = find_qemu().ok_or_else(|| {
            VmError::Setup(
                "qemu-system-x86_64 is not installed: run `scripts/vm-assets` (or `apt-get install qemu-system-x86`)"
                    .into(),
            )
        })?;
        let d = dir();
        let need = |name: &str, what: &str| -> Result<PathBuf, VmError> {
            let p = d.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(VmError::Setup(format!(
                    "VM isolation needs {what} at {}: run `scripts/vm-assets` to build and install it (or point HAKO_VM_ASSETS at a directory holding vmlinux and initramfs.cpio.gz)",
                    p.display()
                )))
            }
        };
        Ok(Assets {
            qemu,
            kernel: need("vmlinux", "the guest kernel")?,
            initramfs: need("initramfs.cpio.gz", "the initramfs with hako's agent")?,
        })
    }
}
