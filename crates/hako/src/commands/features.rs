//! `features`: what this build supports, as runtime-spec features.md defines it. Every entry is something hako
//! really honours; anything it refuses (seccomp notify, id-mapped mounts, systemd cgroups) is absent or false.

use std::collections::HashMap;

use anyhow::Result;
use oci_spec::runtime::{FeaturesBuilder, VERSION};

const HOOKS: &[&str] = &["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];

pub(crate) fn features() -> Result<()> {
    let annotations: HashMap<String, String> = [
        ("org.hako.version", env!("CARGO_PKG_VERSION").to_string()),
        ("org.hako.isolation.modes", super::isolation::MODES.join(",")),
        (
            hako_vm::ISOLATION_ANNOTATION,
            "process|vm: the isolation of this container (default: hako's configuration)".to_string(),
        ),
        (
            hako_vm::MEMORY_ANNOTATION,
            "VM isolation: guest RAM in MiB (at least the memory limit plus the guest's needs)".to_string(),
        ),
        (hako_vm::CPUS_ANNOTATION, "VM isolation: vCPUs (at least what the CPU quota or cpuset needs)".to_string()),
        (
            hako_vm::TCG_CACHE_ANNOTATION,
            "VM isolation under TCG: QEMU's translation cache in MiB (default: QEMU's; less memory, slower start)"
                .to_string(),
        ),
        (
            hako_vm::TEMPLATE_ANNOTATION,
            "VM isolation: on|off: start from a saved VM of the same shape (default: on) or boot the kernel"
                .to_string(),
        ),
        ("io.github.seccomp.libseccomp.version", libseccomp_version()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let f = FeaturesBuilder::default()
        .oci_version_min("1.0.0")
        .oci_version_max(VERSION)
        .hooks(HOOKS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .mount_options(hako_linux::mountopts::KNOWN.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .linux(hako_linux::features::linux_features())
        .annotations(annotations)
        .build()?;
    println!("{}", serde_json::to_string_pretty(&f)?);
    Ok(())
}

fn libseccomp_version() -> String {
    match libseccomp::ScmpVersion::current() {
        Ok(v) => format!("{}.{}.{}", v.major, v.minor, v.micro),
        Err(_) => "unknown".into(),
    }
}
