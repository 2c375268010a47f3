//! The `linux` part of `hako features` (runtime-spec features-linux.md).
//!
//! Every value here states what hako's process isolation really does, and is built from the
//! same lists the implementing modules use (seccomp, capabilities, LSM probes), so that the
//! report cannot drift from the code. The top-level document (ociVersionMin/Max, hooks,
//! mountOptions, annotations) is assembled by the caller.
//!
//! Choices worth knowing:
//! - seccomp actions leave out `SCMP_ACT_NOTIFY`, which hako refuses until it has a listener;
//!   `supportedFlags` is probed on the running kernel and libseccomp.
//! - `apparmor.enabled` / `selinux.enabled` report whether the host runs the LSM, since hako
//!   refuses labels where it does not (the spec's wording is "compiled in"; here support is
//!   always compiled in and usable only on such hosts).
//! - Not implemented, so reported false or empty: systemd cgroups, RDMA, Intel RDT, idmapped
//!   mounts, net devices, memory policy.

use oci_spec::runtime::{
    Apparmor, Cgroup, IDMap, IntelRdt, LinuxFeature, LinuxNamespaceType, MemoryPolicy, MountExtensions, NetDevices,
    Seccomp, Selinux,
};

use crate::{capabilities, lsm, seccomp};

/// The namespaces hako can create or join.
pub fn namespaces() -> Vec<LinuxNamespaceType> {
    vec![
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Time,
    ]
}

/// The `linux` object of `hako features`.
pub fn linux_features() -> LinuxFeature {
    let mut cgroup = Cgroup::default();
    cgroup.set_v1(Some(true));
    cgroup.set_v2(Some(true));
    cgroup.set_systemd(Some(false));
    cgroup.set_systemd_user(Some(false));
    cgroup.set_rdma(Some(false));

    let mut sc = Seccomp::default();
    sc.set_enabled(Some(true));
    sc.set_actions(Some(seccomp::supported_actions()));
    sc.set_operators(Some(seccomp::operators()));
    sc.set_archs(Some(seccomp::archs()));
    sc.set_known_flags(Some(seccomp::known_flags()));
    sc.set_supported_flags(Some(seccomp::supported_flags()));

    let mut apparmor = Apparmor::default();
    apparmor.set_enabled(Some(lsm::apparmor_enabled()));
    let mut selinux = Selinux::default();
    selinux.set_enabled(Some(lsm::selinux_enabled()));

    let mut rdt = IntelRdt::default();
    rdt.set_enabled(Some(false));
    rdt.set_schemata(Some(false));
    rdt.set_monitoring(Some(false));

    let mut idmap = IDMap::default();
    idmap.set_enabled(Some(false));
    let mut mount_ext = MountExtensions::default();
    mount_ext.set_idmap(Some(idmap));

    let mut net_devices = NetDevices::default();
    net_devices.set_enabled(Some(false));

    let mut memory_policy = MemoryPolicy::default();
    memory_policy.set_modes(Some(Vec::new()));
    memory_policy.set_flags(Some(Vec::new()));

    let mut f = LinuxFeature::default();
    f.set_namespaces(Some(namespaces()));
    f.set_capabilities(Some(capabilities::known_capabilities()));
    f.set_cgroup(Some(cgroup));
    f.set_seccomp(Some(sc));
    f.set_apparmor(Some(apparmor));
    f.set_selinux(Some(selinux));
    f.set_intel_rdt(Some(rdt));
    f.set_mount_extensions(Some(mount_ext));
    f.set_net_devices(Some(net_devices));
    f.set_memory_policy(Some(memory_policy));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_features_serialise_as_the_spec_spells_them() {
        let v = serde_json::to_value(linux_features()).expect("serialise");
        assert_eq!(
            v["namespaces"],
            serde_json::json!(["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"])
        );
        assert_eq!(v["capabilities"][0], "CAP_CHOWN");
        assert_eq!(
            v["cgroup"],
            serde_json::json!({"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false})
        );
        let sc = &v["seccomp"];
        assert_eq!(sc["enabled"], true);
        let actions = sc["actions"].as_array().expect("actions");
        assert!(actions.contains(&"SCMP_ACT_KILL_PROCESS".into()));
        assert!(!actions.contains(&"SCMP_ACT_NOTIFY".into()));
        assert!(sc["archs"].as_array().expect("archs").contains(&"SCMP_ARCH_X86_64".into()));
        assert!(sc["operators"].as_array().expect("ops").contains(&"SCMP_CMP_MASKED_EQ".into()));
        assert!(sc["knownFlags"].as_array().expect("known").contains(&"SECCOMP_FILTER_FLAG_LOG".into()));
        assert!(sc["supportedFlags"].as_array().expect("supported").contains(&"SECCOMP_FILTER_FLAG_TSYNC".into()));
        assert_eq!(v["apparmor"]["enabled"], lsm::apparmor_enabled());
        assert_eq!(v["selinux"]["enabled"], lsm::selinux_enabled());
        assert_eq!(v["mountExtensions"]["idmap"]["enabled"], false);
        assert_eq!(v["intelRdt"]["enabled"], false);
        assert_eq!(v["netDevices"]["enabled"], false);
    }

    #[test]
    fn every_listed_seccomp_item_is_accepted_by_the_builder() {
        let f = linux_features();
        let sc = f.seccomp().as_ref().expect("seccomp");
        let ops = sc.operators().clone().unwrap_or_default();
        let archs = sc.archs().clone().unwrap_or_default();
        let syscalls: Vec<_> = ops
            .iter()
            .map(|op| {
                serde_json::json!({"names": ["getppid"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": op}]})
            })
            .collect();
        let profile = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": archs,
            "flags": sc.supported_flags().clone().unwrap_or_default(),
            "syscalls": syscalls,
        });
        let p = serde_json::from_value(profile).expect("profile");
        seccomp::build(&p).expect("every listed operator, arch and supported flag builds");
    }
}
