//! The hcsshim annotations hako honours, and typed reading of them. A value that does not parse
//! is an error naming the annotation (hcsshim logs a warning and ignores it; hako refuses so a
//! typo does not silently drop a limit). An annotation set to `0` counts as unset, as in hcsshim.

use std::collections::BTreeMap;

use super::{Rule, SpecError};

/// Container memory limit in MiB (overrides `windows.resources.memory.limit`).
pub const CONTAINER_MEMORY_SIZE_MB: &str = "io.microsoft.container.memory.sizeinmb";
/// Container processor count (overrides `windows.resources.cpu.count`).
pub const CONTAINER_PROCESSOR_COUNT: &str = "io.microsoft.container.processor.count";
/// Container processor limit, cycles per 10,000 (overrides `windows.resources.cpu.maximum`).
pub const CONTAINER_PROCESSOR_LIMIT: &str = "io.microsoft.container.processor.limit";
/// Container processor weight (overrides `windows.resources.cpu.shares`).
pub const CONTAINER_PROCESSOR_WEIGHT: &str = "io.microsoft.container.processor.weight";
/// Container storage bandwidth maximum, bytes/s (overrides `windows.resources.storage.bps`).
pub const CONTAINER_STORAGE_BANDWIDTH_MAX: &str = "io.microsoft.container.storage.qos.bandwidthmaximum";
/// Container storage IOPS maximum (overrides `windows.resources.storage.iops`).
pub const CONTAINER_STORAGE_IOPS_MAX: &str = "io.microsoft.container.storage.qos.iopsmaximum";
/// Utility VM memory in MiB.
pub const VM_MEMORY_SIZE_MB: &str = "io.microsoft.virtualmachine.computetopology.memory.sizeinmb";
/// Utility VM memory may be overcommitted (virtually backed); default true.
pub const VM_ALLOW_OVERCOMMIT: &str = "io.microsoft.virtualmachine.computetopology.memory.allowovercommit";
/// Utility VM memory committed lazily; default false.
pub const VM_ENABLE_DEFERRED_COMMIT: &str = "io.microsoft.virtualmachine.computetopology.memory.enabledeferredcommit";
/// Utility VM memory cold discard hint (LCOW); default false.
pub const VM_ENABLE_COLD_DISCARD_HINT: &str =
    "io.microsoft.virtualmachine.computetopology.memory.enablecolddiscardhint";
/// Utility VM memory fully physically backed (turns overcommit off).
pub const VM_FULLY_PHYSICALLY_BACKED: &str = "io.microsoft.virtualmachine.fullyphysicallybacked";
/// Utility VM processor count.
pub const VM_PROCESSOR_COUNT: &str = "io.microsoft.virtualmachine.computetopology.processor.count";
/// Utility VM processor limit.
pub const VM_PROCESSOR_LIMIT: &str = "io.microsoft.virtualmachine.computetopology.processor.limit";
/// Utility VM processor weight.
pub const VM_PROCESSOR_WEIGHT: &str = "io.microsoft.virtualmachine.computetopology.processor.weight";
/// Utility VM storage bandwidth maximum.
pub const VM_STORAGE_BANDWIDTH_MAX: &str = "io.microsoft.virtualmachine.storageqos.bandwidthmaximum";
/// Utility VM storage IOPS maximum.
pub const VM_STORAGE_IOPS_MAX: &str = "io.microsoft.virtualmachine.storageqos.iopsmaximum";
/// Skip the gns `EnableCompartmentNamespace` registry value in a WCOW utility VM.
pub const VM_DISABLE_COMPARTMENT_NAMESPACE: &str = "io.microsoft.virtualmachine.disablecompartmentnamespace";
/// Folder with the LCOW boot files (kernel, initrd.img, rootfs.vhd).
pub const BOOT_FILES_ROOT_PATH: &str = "io.microsoft.virtualmachine.bootfilesrootpath";
/// LCOW: boot the kernel directly (default on builds from 18286).
pub const LCOW_KERNEL_DIRECT_BOOT: &str = "io.microsoft.virtualmachine.lcow.kerneldirectboot";
/// LCOW: `initrd` or `vhd` root filesystem.
pub const LCOW_PREFERRED_ROOTFS_TYPE: &str = "io.microsoft.virtualmachine.lcow.preferredrootfstype";
/// LCOW: extra kernel command line options.
pub const LCOW_KERNEL_BOOT_OPTIONS: &str = "io.microsoft.virtualmachine.lcow.kernelbootoptions";
/// LCOW: VPCI devices enabled (drops `pci=off`).
pub const LCOW_VPCI_ENABLED: &str = "io.microsoft.virtualmachine.lcow.vpcienabled";
/// LCOW: privileged container (seccomp is dropped from the forwarded spec).
pub const LCOW_PRIVILEGED: &str = "io.microsoft.virtualmachine.lcow.privileged";
/// LCOW: VPMem device count.
pub const LCOW_VPMEM_COUNT: &str = "io.microsoft.virtualmachine.devices.virtualpmem.maximumcount";
/// LCOW: VPMem device size in bytes.
pub const LCOW_VPMEM_SIZE: &str = "io.microsoft.virtualmachine.devices.virtualpmem.maximumsizebytes";
/// A HostProcess (job object) container: not supported by hako.
pub const HOST_PROCESS_CONTAINER: &str = "microsoft.com/hostprocess-container";
/// The image's `os.version`, stamped by hako's image code so the compatibility engine can run.
pub const HAKO_IMAGE_OS_VERSION: &str = "hako.image.os.version";

/// Every annotation above, to warn about `io.microsoft.*` ones hako does not know.
pub const KNOWN: &[&str] = &[
    CONTAINER_MEMORY_SIZE_MB,
    CONTAINER_PROCESSOR_COUNT,
    CONTAINER_PROCESSOR_LIMIT,
    CONTAINER_PROCESSOR_WEIGHT,
    CONTAINER_STORAGE_BANDWIDTH_MAX,
    CONTAINER_STORAGE_IOPS_MAX,
    VM_MEMORY_SIZE_MB,
    VM_ALLOW_OVERCOMMIT,
    VM_ENABLE_DEFERRED_COMMIT,
    VM_ENABLE_COLD_DISCARD_HINT,
    VM_FULLY_PHYSICALLY_BACKED,
    VM_PROCESSOR_COUNT,
    VM_PROCESSOR_LIMIT,
    VM_PROCESSOR_WEIGHT,
    VM_STORAGE_BANDWIDTH_MAX,
    VM_STORAGE_IOPS_MAX,
    VM_DISABLE_COMPARTMENT_NAMESPACE,
    BOOT_FILES_ROOT_PATH,
    LCOW_KERNEL_DIRECT_BOOT,
    LCOW_PREFERRED_ROOTFS_TYPE,
    LCOW_KERNEL_BOOT_OPTIONS,
    LCOW_VPCI_ENABLED,
    LCOW_PRIVILEGED,
    LCOW_VPMEM_COUNT,
    LCOW_VPMEM_SIZE,
    HOST_PROCESS_CONTAINER,
];

/// Typed access to a spec's annotations.
pub(crate) struct Annotations<'a>(pub(crate) &'a BTreeMap<String, String>);

impl<'a> Annotations<'a> {
    /// The raw value.
    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.0.get(key).map(|s| s.trim())
    }

    /// An unsigned number; `None` when absent or 0.
    pub(crate) fn u64(&self, key: &str) -> Result<Option<u64>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(n)),
                Err(_) => Err(SpecError::new(
                    Rule::Annotation,
                    format!("annotations[{:?}]", key),
                    format!("{:?} is not an unsigned number", v),
                    "use a decimal number, e.g. \"2\"",
                )),
            },
        }
    }

    /// An unsigned 32-bit number; `None` when absent or 0.
    pub(crate) fn u32(&self, key: &str) -> Result<Option<u32>, SpecError> {
        match self.u64(key)? {
            None => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                SpecError::new(
                    Rule::Annotation,
                    format!("annotations[{:?}]", key),
                    format!("{} does not fit in 32 bits", n),
                    "use a smaller value",
                )
            }),
        }
    }

    /// A boolean (`true`/`false`, `1`/`0`, as Go's strconv.ParseBool); `default` when absent.
    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, SpecError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "t" | "1" => Ok(true),
                "false" | "f" | "0" => Ok(false),
                _ => Err(SpecError::new(
                    Rule::Annotation,
                    format!("annotations[{:?}]", key),
                    format!("{:?} is not a boolean", v),
                    "use \"true\" or \"false\"",
                )),
            },
        }
    }

    /// Unknown `io.microsoft.*` annotations, for a warning.
    pub(crate) fn unknown_microsoft(&self) -> Vec<&'a str> {
        self.0
            .keys()
            .filter(|k| k.starts_with("io.microsoft.") && !KNOWN.contains(&k.as_str()))
            .map(|k| k.as_str())
            .collect()
    }
}
