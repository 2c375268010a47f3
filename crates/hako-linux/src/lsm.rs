//! Linux security modules: AppArmor profiles and SELinux labels of config.json.
//!
//! - `process.apparmorProfile`: the init writes `exec <profile>` to
//!   `/proc/thread-self/attr/apparmor/exec` (or the older `/proc/thread-self/attr/exec`) right
//!   before `execve`, so the container process starts confined ([`apply`]).
//! - `process.selinuxLabel`: the init writes the label to `/proc/thread-self/attr/exec`
//!   ([`apply`]); [`set_keycreate_label`] labels the session keyring the init creates.
//! - `linux.mountLabel`: [`mount_label_option`] gives the `context="..."` option that the
//!   runtime adds to the data of the mounts it makes itself (the /dev tmpfs, tmpfs, devpts,
//!   mqueue, cgroup; not proc, sysfs or bind mounts, as runc does).
//!
//! Unlike runc, which silently ignores an AppArmor profile on a host without AppArmor, hako
//! refuses a process label for an LSM the host does not run, with an error naming the field
//! ([`check`], called early at `create`). The profile `unconfined` is accepted everywhere: it asks
//! for no confinement, which a host without AppArmor already gives. `linux.mountLabel` on a host
//! without SELinux is ignored with a debug line, as crun does ([`effective_mount_label`]): it only
//! labels files, which such a host does not label at all, so it grants and withholds nothing.

use std::io::Write;
use std::path::Path;

/// What went wrong while checking or applying LSM labels.
#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    /// A label was requested for an LSM the host does not run.
    #[error(
        "{lsm} {kind} {label} requested but {lsm} is not enabled on this host: remove {field} \
         or enable {lsm}"
    )]
    NotEnabled {
        /// AppArmor or SELinux.
        lsm: &'static str,
        /// profile, label or mount label.
        kind: &'static str,
        /// The requested profile or label.
        label: String,
        /// The config.json field that asks for it.
        field: &'static str,
    },
    /// The AppArmor profile is not loaded in the kernel.
    #[error(
        "AppArmor profile {profile} (process.apparmorProfile) is not loaded: load it with \
         apparmor_parser or use a loaded profile"
    )]
    ProfileNotLoaded {
        /// The requested profile.
        profile: String,
    },
    /// Writing a process attribute failed.
    #[error("failed to write {value:?} to {path}")]
    WriteAttr {
        /// The /proc attribute file.
        path: String,
        /// What was written.
        value: String,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
}

/// Whether AppArmor is enabled, reading under `sys` (normally `/sys`).
fn apparmor_enabled_at(sys: &Path) -> bool {
    std::fs::read(sys.join("module/apparmor/parameters/enabled")).map(|v| v.first() == Some(&b'Y')).unwrap_or(false)
}

/// Whether the host runs AppArmor (`/sys/module/apparmor/parameters/enabled` is `Y`).
pub fn apparmor_enabled() -> bool {
    apparmor_enabled_at(Path::new("/sys"))
}

/// Whether a mountinfo text has a selinuxfs mount.
fn mountinfo_has_selinuxfs(mountinfo: &str) -> bool {
    mountinfo
        .lines()
        .any(|l| l.split_once(" - ").and_then(|(_, rest)| rest.split_whitespace().next()) == Some("selinuxfs"))
}

/// Whether the host runs SELinux: selinuxfs is mounted (at /sys/fs/selinux, or elsewhere
/// according to /proc/self/mountinfo).
pub fn selinux_enabled() -> bool {
    if Path::new("/sys/fs/selinux/enforce").exists() {
        return true;
    }
    std::fs::read_to_string("/proc/self/mountinfo").map(|m| mountinfo_has_selinuxfs(&m)).unwrap_or(false)
}

/// Treats an absent or empty label as "nothing requested".
fn requested(label: Option<&str>) -> Option<&str> {
    label.filter(|l| !l.is_empty())
}

/// Whether `profile` appears in the text of `/sys/kernel/security/apparmor/profiles`
/// (lines such as `docker-default (enforce)`).
fn profile_listed(profiles: &str, profile: &str) -> bool {
    profiles.lines().any(|l| {
        let name = l.rsplit_once(" (").map(|(n, _)| n).unwrap_or(l);
        name == profile
    })
}

/// Checks, at `create`, that every requested label can be applied on this host: the LSM is
/// enabled and, for AppArmor, the profile is loaded (when the profile list is readable).
pub fn check(
    process_apparmor: Option<&str>,
    selinux_label: Option<&str>,
    mount_label: Option<&str>,
) -> Result<(), LsmError> {
    match requested(process_apparmor) {
        None | Some("unconfined") => {}
        Some(profile) if !apparmor_enabled() => {
            return Err(LsmError::NotEnabled {
                lsm: "AppArmor",
                kind: "profile",
                label: profile.to_string(),
                field: "process.apparmorProfile",
            });
        }
        Some(profile) => {
            let listed = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
                .map(|list| profile_listed(&list, profile))
                // Unreadable list (securityfs not mounted): the write at exec time decides.
                .unwrap_or(true);
            if !listed {
                return Err(LsmError::ProfileNotLoaded { profile: profile.to_string() });
            }
        }
    }
    let selinux = selinux_enabled();
    if let Some(label) = requested(selinux_label).filter(|_| !selinux) {
        return Err(LsmError::NotEnabled {
            lsm: "SELinux",
            kind: "label",
            label: label.to_string(),
            field: "process.selinuxLabel",
        });
    }
    effective_mount_label_with(mount_label, selinux);
    Ok(())
}

/// The `linux.mountLabel` to apply: the requested one on a host with SELinux; `None` (with a debug
/// line naming the label) on a host without, as crun does.
pub fn effective_mount_label(label: Option<&str>) -> Option<String> {
    effective_mount_label_with(label, selinux_enabled())
}

fn effective_mount_label_with(label: Option<&str>, selinux: bool) -> Option<String> {
    let label = requested(label)?;
    if !selinux {
        tracing::debug!("linux.mountLabel {label} ignored: SELinux is not enabled on this host");
        return None;
    }
    Some(label.to_string())
}

/// The mount option that gives a mount the SELinux `linux.mountLabel`:
/// `context="<label>"` (quoted, since MLS labels contain commas), to append with a comma to
/// the mount data. `None` when no label is requested. Call [`check`] first: a kernel without
/// SELinux refuses the option.
pub fn mount_label_option(label: Option<&str>) -> Option<String> {
    requested(label).map(|l| format!("context=\"{l}\""))
}

/// Writes `value` to a /proc attribute file in one `write(2)`, as the LSMs require.
fn write_attr(path: &str, value: &str) -> Result<(), LsmError> {
    let err = |source| LsmError::WriteAttr { path: path.to_string(), value: value.to_string(), source };
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(err)?;
    // One write(2), even for an empty value (which resets an attribute).
    let n = f.write(value.as_bytes()).map_err(err)?;
    if n != value.len() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", value.len()),
        )));
    }
    Ok(())
}

/// Makes the next `execve` of the calling thread switch to AppArmor `profile`.
fn apply_apparmor(profile: &str) -> Result<(), LsmError> {
    let value = format!("exec {profile}");
    // The per-LSM file exists since Linux 5.8; the shared one works when AppArmor is the
    // only LSM with process attributes.
    let per_lsm = "/proc/thread-self/attr/apparmor/exec";
    if Path::new(per_lsm).exists() {
        write_attr(per_lsm, &value)
    } else {
        write_attr("/proc/thread-self/attr/exec", &value)
    }
}

/// Applies the process labels in the container init, right before `execve` (after
/// capabilities and the user switch are done; writing one's own exec attribute needs no
/// privilege). Refuses, like [`check`], labels for an LSM the host does not run.
pub fn apply(process_apparmor: Option<&str>, selinux_label: Option<&str>) -> Result<(), LsmError> {
    check(process_apparmor, selinux_label, None)?;
    match requested(process_apparmor) {
        Some(profile) if apparmor_enabled() => apply_apparmor(profile)?,
        _ => {}
    }
    if let Some(label) = requested(selinux_label) {
        write_attr("/proc/thread-self/attr/exec", label)?;
    }
    Ok(())
}

/// Sets (or with `None`, resets) the SELinux label of keys the calling thread creates, so the
/// container's session keyring gets the process label. Does nothing without SELinux or
/// without a label.
pub fn set_keycreate_label(selinux_label: Option<&str>) -> Result<(), LsmError> {
    if !selinux_enabled() {
        return Ok(());
    }
    write_attr("/proc/thread-self/attr/keycreate", requested(selinux_label).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::tests::in_child;

    fn fake_sys(enabled: Option<&str>) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "hako-lsm-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let params = root.join("module/apparmor/parameters");
        std::fs::create_dir_all(&params).expect("fake sysfs");
        if let Some(v) = enabled {
            std::fs::write(params.join("enabled"), v).expect("fake enabled");
        }
        root
    }

    #[test]
    fn apparmor_probe_reads_the_module_parameter() {
        for (content, want) in [(Some("Y\n"), true), (Some("N\n"), false), (None, false)] {
            let root = fake_sys(content);
            assert_eq!(apparmor_enabled_at(&root), want, "{content:?}");
            std::fs::remove_dir_all(&root).expect("cleanup");
        }
        assert!(!apparmor_enabled_at(Path::new("/nonexistent-sys")));
        if !Path::new("/sys/module/apparmor").exists() {
            assert!(!apparmor_enabled());
        }
    }

    #[test]
    fn selinux_probe_finds_selinuxfs_in_mountinfo() {
        let with = "22 26 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n\
                    29 22 0:26 / /sys/fs/selinux rw,relatime shared:8 - selinuxfs selinuxfs rw\n";
        let without = "22 26 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n";
        assert!(mountinfo_has_selinuxfs(with));
        assert!(!mountinfo_has_selinuxfs(without));
        let host = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert_eq!(selinux_enabled(), mountinfo_has_selinuxfs(&host) || Path::new("/sys/fs/selinux/enforce").exists());
    }

    #[test]
    fn loaded_profile_list_is_parsed() {
        let list = "docker-default (enforce)\n/usr/bin/man (enforce)\nlsb_release (complain)\n";
        assert!(profile_listed(list, "docker-default"));
        assert!(profile_listed(list, "/usr/bin/man"));
        assert!(!profile_listed(list, "docker"));
    }

    #[test]
    fn labels_for_a_missing_lsm_are_refused_clearly() {
        check(None, None, None).expect("nothing requested");
        check(Some(""), Some(""), Some("")).expect("empty means nothing");
        check(Some("unconfined"), None, None).expect("unconfined is always possible");
        if !apparmor_enabled() {
            let e = check(Some("docker-default"), None, None).expect_err("no AppArmor").to_string();
            assert_eq!(
                e,
                "AppArmor profile docker-default requested but AppArmor is not enabled on this \
                 host: remove process.apparmorProfile or enable AppArmor"
            );
            let e = apply(Some("docker-default"), None).expect_err("no AppArmor").to_string();
            assert!(e.contains("docker-default"), "{e}");
        }
        if !selinux_enabled() {
            let label = "system_u:system_r:container_t:s0:c1,c2";
            let e = check(None, Some(label), None).expect_err("no SELinux").to_string();
            assert!(
                e.contains(label) && e.contains("process.selinuxLabel") && e.contains("SELinux is not enabled"),
                "{e}"
            );
            check(None, None, Some(label)).expect("a mount label is ignored without SELinux, as crun does");
            assert_eq!(effective_mount_label(Some(label)), None);
            set_keycreate_label(Some(label)).expect("no-op without SELinux");
        }
    }

    #[test]
    fn mount_label_applies_only_with_selinux() {
        let label = "system_u:object_r:container_file_t:s0:c1,c2";
        assert_eq!(effective_mount_label_with(Some(label), true).as_deref(), Some(label));
        assert_eq!(effective_mount_label_with(Some(label), false), None);
        assert_eq!(effective_mount_label_with(Some(""), true), None);
        assert_eq!(effective_mount_label_with(None, true), None);
    }

    #[test]
    fn mount_label_is_a_quoted_context_option() {
        assert_eq!(
            mount_label_option(Some("system_u:object_r:container_file_t:s0:c1,c2")).as_deref(),
            Some("context=\"system_u:object_r:container_file_t:s0:c1,c2\"")
        );
        assert_eq!(mount_label_option(None), None);
        assert_eq!(mount_label_option(Some("")), None);
    }

    #[test]
    fn attribute_write_errors_name_the_file() {
        // Without an LSM that takes exec labels, the kernel refuses the write; with one, a
        // made-up label is refused. Either way the error names the file. In a child, so that a
        // write that did succeed cannot affect the test process.
        in_child(|| match write_attr("/proc/thread-self/attr/exec", "hako-test-no-such-label") {
            Err(e) if e.to_string().contains("/proc/thread-self/attr/exec") => Ok(()),
            other => Err(format!("want a write error naming the file, got {other:?}")),
        });
    }
}
