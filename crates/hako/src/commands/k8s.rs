//! `hako k8s runtimeclass HANDLER`: the Kubernetes RuntimeClass object (YAML) that sends pods to one of hako's
//! containerd handlers (docs/kubernetes.md): `hako` (process isolation) or `hako-vm` (a pod is one VM, whose
//! guest overhead the object declares as `overhead.podFixed`). With `--windows-build` it is the Windows-node
//! form: scheduled onto Windows nodes of that build (`node.kubernetes.io/windows-build`) and tolerating their
//! `os=windows:NoSchedule` taint; `--openshift` adds the `os=Windows` taint that OpenShift's Windows Machine
//! Config Operator puts on its Windows nodes.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use hako_platform::OsVersion;

use crate::cli::RuntimeClassArgs;

/// The handlers hako's containerd configuration defines (docs/kubernetes.md).
pub(crate) const HANDLERS: &[&str] = &["hako", "hako-vm"];

/// The RuntimeClass object for `args`, as YAML.
pub(crate) fn runtimeclass_yaml(args: &RuntimeClassArgs) -> Result<String> {
    let handler = args.handler.as_str();
    if !HANDLERS.contains(&handler) {
        bail!(
            "unknown handler {handler:?}: hako's containerd configuration defines {} (docs/kubernetes.md)",
            HANDLERS.join(" and ")
        );
    }
    let build = match &args.windows_build {
        Some(text) => Some(windows_build(text)?),
        None => None,
    };
    let name = match (&args.name, &build) {
        (Some(n), _) => dns_label(n).with_context(|| format!("--name {n:?}"))?,
        (None, Some(v)) => format!("{handler}-windows-{}", v.build),
        (None, None) => handler.to_string(),
    };
    let mut y = String::new();
    let _ =
        writeln!(y, "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: {name}\nhandler: {handler}");
    if handler == "hako-vm" {
        // What the pod's VM adds to the containers' memory (hako_vm::pod::POD_OVERHEAD_MIB): the scheduler
        // and the kubelet count it against the node.
        let _ = writeln!(y, "overhead:\n  podFixed:\n    memory: {}Mi", hako_vm::pod::POD_OVERHEAD_MIB);
    }
    y.push_str("scheduling:\n  nodeSelector:\n");
    match &build {
        None => y.push_str("    kubernetes.io/os: linux\n"),
        Some(v) => {
            let _ = writeln!(
                y,
                "    kubernetes.io/os: windows\n    kubernetes.io/arch: amd64\n    node.kubernetes.io/windows-build: '{}.{}.{}'",
                v.major, v.minor, v.build
            );
            y.push_str(
                "  tolerations:\n  - effect: NoSchedule\n    key: os\n    operator: Equal\n    value: windows\n",
            );
            if args.openshift {
                y.push_str("  - effect: NoSchedule\n    key: os\n    operator: Equal\n    value: Windows\n");
            }
        }
    }
    Ok(y)
}

/// A Windows build as the node label `node.kubernetes.io/windows-build` holds it: MAJOR.MINOR.BUILD.
fn windows_build(text: &str) -> Result<OsVersion> {
    let v: OsVersion = text.parse().with_context(|| "--windows-build".to_string())?;
    if text.split('.').count() != 3 {
        bail!(
            "--windows-build {text:?}: the node label node.kubernetes.io/windows-build holds MAJOR.MINOR.BUILD \
             without the revision: use {}.{}.{}",
            v.major,
            v.minor,
            v.build
        );
    }
    Ok(v)
}

/// `s` if it is a DNS label (RFC 1123), as Kubernetes requires of a RuntimeClass name.
fn dns_label(s: &str) -> Result<String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        bail!("not a DNS label: use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit");
    }
    Ok(s.to_string())
}

pub(crate) fn runtimeclass(args: &RuntimeClassArgs) -> Result<i32> {
    let yaml = runtimeclass_yaml(args)?;
    if let Some(v) = args.windows_build.as_deref().and_then(|t| t.parse::<OsVersion>().ok()) {
        if hako_platform::table::release(v.build).is_none() {
            eprintln!("hako: warning: Windows build {} is not in hako's table of Windows releases", v.build);
        }
    }
    print!("{yaml}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(handler: &str, build: Option<&str>, openshift: bool) -> RuntimeClassArgs {
        RuntimeClassArgs { handler: handler.into(), windows_build: build.map(Into::into), openshift, name: None }
    }

    #[test]
    fn linux_objects_name_the_handler_and_the_vm_overhead() {
        let y = runtimeclass_yaml(&args("hako", None, false)).unwrap();
        assert_eq!(
            y,
            "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: hako\nhandler: hako\n\
             scheduling:\n  nodeSelector:\n    kubernetes.io/os: linux\n"
        );
        let y = runtimeclass_yaml(&args("hako-vm", None, false)).unwrap();
        assert!(y.contains("handler: hako-vm\noverhead:\n  podFixed:\n    memory: 64Mi\n"), "{y}");
    }

    #[test]
    fn the_windows_form_selects_the_build_and_tolerates_the_taint() {
        let y = runtimeclass_yaml(&args("hako-vm", Some("10.0.20348"), false)).unwrap();
        assert!(y.contains("  name: hako-vm-windows-20348\n"), "{y}");
        assert!(y.contains("    node.kubernetes.io/windows-build: '10.0.20348'\n"), "{y}");
        assert!(y.contains("    kubernetes.io/os: windows\n"), "{y}");
        assert!(y.ends_with("  - effect: NoSchedule\n    key: os\n    operator: Equal\n    value: windows\n"), "{y}");
        let y = runtimeclass_yaml(&args("hako", Some("10.0.17763"), true)).unwrap();
        assert!(
            y.ends_with(
                "    value: windows\n  - effect: NoSchedule\n    key: os\n    operator: Equal\n    value: Windows\n"
            ),
            "{y}"
        );
    }

    #[test]
    fn bad_input_is_refused_with_the_fix() {
        let e = runtimeclass_yaml(&args("runc", None, false)).unwrap_err().to_string();
        assert!(e.contains("unknown handler \"runc\"") && e.contains("hako and hako-vm"), "{e}");
        let e = format!("{:#}", runtimeclass_yaml(&args("hako", Some("10.0.20348.2113"), false)).unwrap_err());
        assert!(e.contains("use 10.0.20348"), "{e}");
        let e = format!("{:#}", runtimeclass_yaml(&args("hako", Some("ltsc2022"), false)).unwrap_err());
        assert!(e.contains("--windows-build"), "{e}");
        let mut a = args("hako", None, false);
        a.name = Some("Hako_VM".into());
        let e = format!("{:#}", runtimeclass_yaml(&a).unwrap_err());
        assert!(e.contains("not a DNS label"), "{e}");
    }
}
