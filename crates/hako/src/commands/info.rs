//! `info` (what this host offers hako) and `hcs-doc` (the Windows documents for a bundle).

use anyhow::Result;

use crate::cli::HcsDocArgs;

pub(crate) fn info() -> Result<()> {
    let layout = hako_cgroups::Cgroup::layout().map(|l| format!("{l:?}").to_lowercase()).unwrap_or_else(|e| format!("unavailable: {e}"));
    let controllers = hako_cgroups::Cgroup::host_controllers().unwrap_or_default();
    let v = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "isolation": {
            "default": "process",
            "modes": {"process": {"available": true, "why": "namespaces and cgroups of the host kernel"}},
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
    let _ = a;
    anyhow::bail!("hcs-doc is not wired yet")
}
