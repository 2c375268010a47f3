//! Choosing a container's isolation: the `org.hako.isolation` annotation (`process` or `vm`), else, for a
//! container of a Kubernetes pod (containerd's `io.kubernetes.cri.container-type=container` with
//! `io.kubernetes.cri.sandbox-id`), its sandbox's isolation (a pod runs in one VM or none), else `vm` when hako
//! runs as `hako-vm` (a link to it that containerd's `hako-vm` handler names as `BinaryName`), else the
//! runtime-spec `windows.hyperv` object (the spec's request for Hyper-V isolation, which hako serves with a
//! VM), else the default in hako's configuration file (`/etc/hako/config.json`, or `HAKO_CONFIG`:
//! `{"isolation": "process"}`), else process isolation.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hako_runtime::isolation::Isolation;
use oci_spec::runtime::Spec;

/// The isolation modes hako knows.
pub(crate) const MODES: &[&str] = &["process", "vm"];

/// The configuration file.
fn config_path() -> PathBuf {
    std::env::var_os("HAKO_CONFIG").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/etc/hako/config.json"))
}

fn check(value: &str, origin: &str) -> Result<&'static str> {
    MODES
        .iter()
        .find(|m| **m == value)
        .copied()
        .with_context(|| format!("{origin}: unknown isolation {value:?}: use one of {}", MODES.join(", ")))
}

/// The configured default isolation.
pub(crate) fn default_mode() -> Result<&'static str> {
    let path = config_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok("process"),
        Err(e) => return Err(e).with_context(|| format!("reading hako's configuration {}", path.display())),
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("invalid hako configuration {}", path.display()))?;
    match v.get("isolation") {
        None => Ok("process"),
        Some(serde_json::Value::String(s)) => check(s, &format!("{} isolation", path.display())),
        Some(other) => bail!("{}: isolation must be a string, not {other}", path.display()),
    }
}

/// The name hako answers to for VM isolation by default.
pub(crate) const VM_BINARY: &str = "hako-vm";

/// Whether this process was started as [`VM_BINARY`].
fn started_as_vm() -> bool {
    std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|n| n == VM_BINARY))
        .unwrap_or(false)
}

/// The isolation `spec` asks for; `root` is the state root (where a pod's sandbox is found).
pub(crate) fn choose(spec: &Spec, root: &std::path::Path) -> Result<&'static str> {
    if let Some(v) = spec.annotations().as_ref().and_then(|a| a.get(hako_vm::ISOLATION_ANNOTATION)) {
        return check(v, &format!("annotation {}", hako_vm::ISOLATION_ANNOTATION));
    }
    if let hako_vm::pod::Role::Member(sandbox) = hako_vm::pod::role(spec) {
        if let Some(mode) = hako_vm::pod::sandbox_isolation(root, &sandbox) {
            return check(&mode, &format!("pod sandbox {sandbox}"));
        }
    }
    if started_as_vm() {
        return Ok("vm");
    }
    if spec.windows().as_ref().is_some_and(|w| w.hyperv().is_some()) {
        return Ok("vm");
    }
    default_mode()
}

/// The backend of a mode.
pub(crate) fn backend(mode: &str) -> Box<dyn Isolation> {
    match mode {
        "vm" => Box::new(hako_vm::VmIsolation),
        _ => Box::new(hako_linux::ProcessIsolation),
    }
}
