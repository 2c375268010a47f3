//! `info` (what this host offers hako) and `hcs-doc` (the Windows documents for a bundle).

use anyhow::Result;

use crate::cli::HcsDocArgs;

pub(crate) fn info() -> Result<()> {
    let layout = hako_cgroups::Cgroup::layout()
        .map(|l| format!("{l:?}").to_lowercase())
        .unwrap_or_else(|e| format!("unavailable: {e}"));
    let controllers = hako_cgroups::Cgroup::host_controllers().unwrap_or_default();
    let v = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "isolation": {
            "default": super::isolation::default_mode().unwrap_or("process"),
            "annotation": hako_vm::ISOLATION_ANNOTATION,
            "modes": {
                "process": {"available": true, "why": "namespaces and cgroups of the host kernel"},
                "vm": hako_vm::info(),
            },
        },
        "cgroups": {"layout": layout, "controllers": controllers},
        "seccomp": {"libseccomp": libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default()},
        "apparmor": hako_linux::lsm::apparmor_enabled(),
        "selinux": hako_linux::lsm::selinux_enabled(),
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub(crate) fn hcs_doc(a: &HcsDocArgs) -> Result<()> {
    let opts = hako_hcs::HcsDocOptions {
        format: a.format.parse().map_err(|e| anyhow::anyhow!("--format {}: {e}", a.format))?,
        container_id: a.id.clone(),
        owner: a.owner.clone(),
        host_build: a.host_build,
        host_revision: a.host_revision,
        host_processors: a.host_processors,
        isolation: a
            .isolation
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--isolation: {e}"))?,
        image_os_version: a
            .image_os_version
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--image-os-version: {e}"))?,
        lcow_boot_files: a.lcow_boot_files.clone(),
        // This binary runs on Linux, where hcs-doc never inspects the host.
        assume_host: true,
    };
    let out = hako_hcs::hcs_doc(&a.bundle, &opts)?;
    println!("{}", out.trim_end());
    Ok(())
}
