//! The container process's own attributes, applied by init just before execve: rlimits, OOM score, scheduler,
//! I/O priority, personality, the working directory, the executable lookup, the user and groups, umask.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Linux, PosixRlimitType, Process};

use crate::sys;

/// A process attribute that could not be applied, naming it.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// setrlimit failed.
    #[error("rlimit {name} soft {soft} hard {hard}: {source}; the host allows at most its own hard limit (see `ulimit -H -a`) unless hako has CAP_SYS_RESOURCE")]
    Rlimit {
        /// RLIMIT_* name.
        name: String,
        /// Soft limit.
        soft: u64,
        /// Hard limit.
        hard: u64,
        /// The kernel's error.
        source: nix::Error,
    },
    /// Some other attribute failed.
    #[error("{what}: {source}")]
    Attr {
        /// The attribute and value.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The executable is not there.
    #[error("exec: {name:?}: {why}; check process.args[0] and process.env PATH")]
    NotFound {
        /// args[0].
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The working directory is not inside the container.
    #[error("process.cwd {0}: not inside the container's root filesystem: use a path that exists in the rootfs")]
    CwdOutside(PathBuf),
    /// A linux.sysctl key that hako refuses to write.
    #[error("linux.sysctl {key:?}: {why}")]
    Sysctl {
        /// The key as the config spells it.
        key: String,
        /// Why, and the fix.
        why: String,
    },
    /// A user or group id that cannot be the process's.
    #[error("{field} {id}: {why}")]
    Id {
        /// Which field ("process.user.uid", "process.user.gid", "process.user.additionalGids").
        field: &'static str,
        /// The id.
        id: u32,
        /// Why, and the fix.
        why: String,
    },
}

fn attr(what: impl Into<String>) -> impl FnOnce(io::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Attr { what, source }
}

fn rlimit_resource(t: PosixRlimitType) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource;
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// rlimits, oomScoreAdj, scheduler, ioPriority and personality: everything set while still root.
pub fn apply_limits(p: &Process, linux: Option<&Linux>) -> Result<(), ProcessError> {
    for r in p.rlimits().iter().flatten() {
        if let Err(source) = nix::sys::resource::setrlimit(rlimit_resource(r.typ()), r.soft(), r.hard()) {
            return Err(ProcessError::Rlimit {
                name: format!("{:?}", r.typ()).to_uppercase().replace("RLIMIT", "RLIMIT_"),
                soft: r.soft(),
                hard: r.hard(),
                source,
            });
        }
    }
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(attr(format!("oomScoreAdj {adj}")))?;
    }
    if let Some(s) = p.scheduler() {
        use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
        let policy = match s.policy() {
            P::SchedOther => 0,
            P::SchedFifo => 1,
            P::SchedRr => 2,
            P::SchedBatch => 3,
            P::SchedIso => 4,
            P::SchedIdle => 5,
            P::SchedDeadline => 6,
        };
        let mut flags = 0u64;
        for f in s.flags().iter().flatten() {
            flags |= match f {
                F::SchedResetOnFork => 0x01,
                F::SchedFlagReclaim => 0x02,
                F::SchedFlagDLOverrun => 0x04,
                F::SchedFlagKeepPolicy => 0x08,
                F::SchedFlagKeepParams => 0x10,
                F::SchedFlagUtilClampMin => 0x20,
                F::SchedFlagUtilClampMax => 0x40,
            };
        }
        let mut a = sys::SchedAttr {
            sched_policy: policy,
            sched_flags: flags,
            sched_nice: s.nice().unwrap_or(0),
            sched_priority: s.priority().unwrap_or(0) as u32,
            sched_runtime: s.runtime().unwrap_or(0),
            sched_deadline: s.deadline().unwrap_or(0),
            sched_period: s.period().unwrap_or(0),
            ..Default::default()
        };
        sys::sched_setattr(&mut a).map_err(attr(format!("scheduler policy {:?}", s.policy())))?;
    }
    if let Some(io) = p.io_priority() {
        use oci_spec::runtime::IOPriorityClass as C;
        let class = match io.class() {
            C::IoprioClassRt => 1,
            C::IoprioClassBe => 2,
            C::IoprioClassIdle => 3,
        };
        sys::ioprio_set(class, io.priority()).map_err(attr(format!(
            "ioPriority {:?} {}",
            io.class(),
            io.priority()
        )))?;
    }
    if let Some(pers) = linux.and_then(|l| l.personality().as_ref()) {
        use oci_spec::runtime::LinuxPersonalityDomain as D;
        let domain = match pers.domain() {
            D::PerLinux => 0x0000,
            D::PerLinux32 => 0x0008,
        };
        let persona = nix::sys::personality::Persona::from_bits_retain(domain);
        if let Err(e) = nix::sys::personality::set(persona) {
            return Err(attr(format!("personality {:?}", pers.domain()))(e.into()));
        }
    }
    Ok(())
}

/// Changes to process.cwd and checks that it lies inside the container root (CVE-2024-21626).
pub fn enter_cwd(cwd: &Path) -> Result<(), ProcessError> {
    nix::unistd::chdir(cwd).map_err(|e| attr(format!("process.cwd {}", cwd.display()))(e.into()))?;
    // A directory outside our root shows up as "(unreachable)/..." or fails to resolve.
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() && !p.starts_with("(unreachable)") => Ok(()),
        _ => Err(ProcessError::CwdOutside(cwd.to_owned())),
    }
}

/// Finds args[0] like execvp does, with PATH from the process environment.
pub fn find_executable(name: &str, env: &[String]) -> Result<CString, ProcessError> {
    let check = |p: &Path| -> Result<(), &'static str> {
        let meta = std::fs::metadata(p).map_err(|_| "no such file or directory")?;
        if meta.is_dir() {
            return Err("is a directory");
        }
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).map_err(|_| "permission denied")
    };
    let found = if name.contains('/') {
        check(Path::new(name)).map_err(|why| ProcessError::NotFound { name: name.into(), why })?;
        PathBuf::from(name)
    } else {
        let path = env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(name))
            .find(|p| check(p).is_ok())
            .ok_or(ProcessError::NotFound { name: name.into(), why: "executable file not found in $PATH" })?
    };
    sys::cstr(&found).map_err(attr("executable path"))
}

/// The ids a user namespace maps, as (first id inside, count) ranges.
pub type IdRanges = Vec<(u64, u64)>;

/// The ranges of a `/proc/PID/uid_map` or `gid_map` text (columns: inside, outside, count).
pub fn parse_id_map(text: &str) -> IdRanges {
    text.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l.split_whitespace().filter_map(|w| w.parse().ok()).collect();
            (f.len() == 3).then(|| (f[0], f[2]))
        })
        .collect()
}

/// The ranges of linux.uidMappings or linux.gidMappings.
pub fn spec_id_ranges(maps: &[oci_spec::runtime::LinuxIdMapping]) -> IdRanges {
    maps.iter().map(|m| (u64::from(m.container_id()), u64::from(m.size()))).collect()
}

/// Refuses ids the process cannot run as: 4294967295, which is `(uid_t)-1` and means "leave unchanged" to
/// setresuid/setresgid (the process would stay root), and, where the maps are known, ids that the user
/// namespace the process runs in does not map (`None`: not known here, the kernel will decide).
pub fn check_ids(
    user: &oci_spec::runtime::User,
    uid_map: Option<&[(u64, u64)]>,
    gid_map: Option<&[(u64, u64)]>,
) -> Result<(), ProcessError> {
    let gids = std::iter::once(("process.user.gid", user.gid()))
        .chain(user.additional_gids().iter().flatten().map(|g| ("process.user.additionalGids", *g)));
    let ids = std::iter::once(("process.user.uid", user.uid(), uid_map, "linux.uidMappings"))
        .chain(gids.map(|(f, g)| (f, g, gid_map, "linux.gidMappings")));
    for (field, id, map, map_field) in ids {
        if id == u32::MAX {
            return Err(ProcessError::Id {
                field,
                id,
                why: "is (uid_t)-1, which the kernel reads as \"leave the id unchanged\" (the process would keep running as root): use a real id".into(),
            });
        }
        if let Some(map) = map {
            if !map.iter().any(|&(first, count)| u64::from(id) >= first && u64::from(id) - first < count) {
                let ranges: Vec<String> =
                    map.iter().map(|(f, c)| format!("{f}-{}", (f + c).saturating_sub(1))).collect();
                return Err(ProcessError::Id {
                    field,
                    id,
                    why: format!(
                        "is not mapped in the container's user namespace (it maps {}): use a mapped id or extend {map_field}",
                        if ranges.is_empty() { "nothing".to_string() } else { ranges.join(", ") }
                    ),
                });
            }
        }
    }
    Ok(())
}

/// setgroups, setresgid, setresuid (keeping the permitted capabilities across the uid change, so that the
/// configured capability sets can be applied afterwards), then umask.
pub fn switch_user(p: &Process) -> Result<(), ProcessError> {
    let u = p.user();
    // The maps of the user namespace we run in, as we see them (unknown without /proc).
    let map = |f: &str| std::fs::read_to_string(format!("/proc/self/{f}")).ok().map(|t| parse_id_map(&t));
    check_ids(u, map("uid_map").as_deref(), map("gid_map").as_deref())?;
    let mut groups: Vec<Gid> = u.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect();
    groups.dedup();
    match nix::unistd::setgroups(&groups) {
        Ok(()) => {}
        // In a user namespace whose gid map was written without setgroups allowed, EPERM with no groups is fine.
        Err(nix::Error::EPERM) if groups.is_empty() => {}
        Err(e) => return Err(attr(format!("additionalGids {:?}", u.additional_gids()))(e.into())),
    }
    let gid = Gid::from_raw(u.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| attr(format!("user.gid {}", u.gid()))(e.into()))?;
    let _ = nix::sys::prctl::set_keepcaps(true);
    let uid = Uid::from_raw(u.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| attr(format!("user.uid {}", u.uid()))(e.into()))?;
    let _ = nix::sys::prctl::set_keepcaps(false);
    if let Some(mask) = u.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

/// The home directory of `uid` from the container's /etc/passwd, or `/` (what runc sets HOME to when the
/// config has none).
pub fn home_of(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse() == Ok(uid))
        .map(|f| f[5].to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// Sets the hostname and domainname.
pub fn set_names(hostname: Option<&str>, domainname: Option<&str>) -> Result<(), ProcessError> {
    if let Some(h) = hostname {
        nix::unistd::sethostname(h).map_err(|e| attr(format!("hostname {h:?}"))(e.into()))?;
    }
    if let Some(d) = domainname {
        crate::sys::setdomainname(d).map_err(attr(format!("domainname {d:?}")))?;
    }
    Ok(())
}

/// The namespaced IPC sysctls outside `fs.mqueue.*` (the list runc and crun accept).
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The components of a linux.sysctl key: `net.ipv4.ip_forward` or, as sysctl(8) also takes it,
/// `net/ipv4/conf/eth0.100/forwarding` (then `.` may appear inside a component, as in a VLAN interface name).
/// Every component is non-empty, neither `.` nor `..`, and made of ASCII letters, digits, `_`, `-` (and `.` in
/// the slash form), so the key can never name anything but a file below /proc/sys.
fn sysctl_components(key: &str) -> Result<Vec<&str>, ProcessError> {
    let bad = |why: &str| ProcessError::Sysctl { key: key.to_owned(), why: why.to_owned() };
    if key.len() > 256 {
        return Err(bad("the key is longer than 256 bytes: no such sysctl exists"));
    }
    let sep = if key.contains('/') { '/' } else { '.' };
    let parts: Vec<&str> = key.split(sep).collect();
    if parts.len() < 2 {
        return Err(bad("not a sysctl name: use the dotted form, e.g. net.ipv4.ip_forward"));
    }
    for p in &parts {
        if p.is_empty() || *p == "." || *p == ".." {
            return Err(bad(
                "a sysctl name has no empty, \".\" or \"..\" component: use the dotted form, e.g. net.ipv4.ip_forward",
            ));
        }
        if !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
            return Err(bad("a sysctl name is made of ASCII letters, digits, '_', '-' and its '.' or '/' separators"));
        }
    }
    Ok(parts)
}

/// Checks a linux.sysctl key the way runc and crun do: only keys the kernel keeps per namespace, and only when
/// the container has that namespace to itself (`private("ipc" | "network" | "uts")`). Anything else would be
/// written to the host's kernel.
pub fn check_sysctl(key: &str, private: &dyn Fn(&str) -> bool) -> Result<(), ProcessError> {
    let parts = sysctl_components(key)?;
    let dotted = parts.join(".");
    let bad = |why: String| ProcessError::Sysctl { key: key.to_owned(), why };
    let need = |kind: &str, entry: &str| -> Result<(), ProcessError> {
        if private(kind) {
            Ok(())
        } else {
            Err(bad(format!(
                "the {kind} namespace is the host's, so this would change the host: add {{\"type\": \"{entry}\"}} to linux.namespaces or remove the key"
            )))
        }
    };
    if IPC_SYSCTLS.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
        return need("ipc", "ipc");
    }
    if parts[0] == "net" {
        return need("network", "network");
    }
    match dotted.as_str() {
        "kernel.domainname" => need("uts", "uts"),
        "kernel.hostname" => Err(bad("conflicts with the hostname field: set hostname in config.json instead".into())),
        _ => Err(bad(
            "not a namespaced sysctl: the kernel shares it with the host, so hako refuses it (as runc and crun do); set it on the host with sysctl(8) if that is what you mean".into(),
        )),
    }
}

/// Writes linux.sysctl through the container's /proc/sys: the directory is opened once and checked to be procfs,
/// and each key's file is opened beneath it with `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV)`,
/// never by joining the key onto a path. The keys were checked by [`check_sysctl`] at create.
pub fn set_sysctls(sysctl: &std::collections::HashMap<String, String>) -> Result<(), ProcessError> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
    if sysctl.is_empty() {
        return Ok(());
    }
    let dir = nix::fcntl::open(
        "/proc/sys",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| attr("linux.sysctl: opening /proc/sys (mount proc on /proc)")(e.into()))?;
    // SAFETY: open returned a new fd that nothing else owns.
    let dir = unsafe { OwnedFd::from_raw_fd(dir) };
    let is_proc = |fd: std::os::fd::BorrowedFd<'_>| {
        nix::sys::statfs::fstatfs(fd).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
    };
    if !is_proc(dir.as_fd()) {
        return Err(attr("linux.sysctl: /proc/sys")(io::Error::other("not procfs: mount proc on /proc")));
    }
    for (k, v) in sysctl {
        let rel = sysctl_components(k)?.join("/");
        let how = OpenHow::new().flags(OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
        let fd = nix::fcntl::openat2(dir.as_raw_fd(), rel.as_str(), how)
            .map_err(|e| attr(format!("sysctl {k}={v}"))(e.into()))?;
        // SAFETY: openat2 returned a new fd that nothing else owns.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if !is_proc(file.as_fd()) {
            return Err(attr(format!("sysctl {k}={v}"))(io::Error::other("not a file of procfs")));
        }
        std::io::Write::write_all(&mut &file, v.as_bytes()).map_err(attr(format!("sysctl {k}={v}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables_on_path() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(find_executable("sh", &env).unwrap().to_str().unwrap(), "/bin/sh");
        assert_eq!(find_executable("/bin/sh", &[]).unwrap().to_str().unwrap(), "/bin/sh");
        let e = find_executable("no-such-program-hako", &env).unwrap_err().to_string();
        assert!(e.contains("no-such-program-hako") && e.contains("not found"), "{e}");
        assert!(find_executable("/etc", &[]).unwrap_err().to_string().contains("directory"));
    }

    #[test]
    fn sysctl_keys_follow_runc_policy() {
        let all = |_: &str| true;
        let none = |_: &str| false;
        for ok in ["kernel.msgmax", "fs.mqueue.msg_max", "net.ipv4.ip_forward", "net/ipv4/conf/eth0.100/forwarding"] {
            assert!(check_sysctl(ok, &all).is_ok(), "{ok}");
            assert!(check_sysctl(ok, &none).is_err(), "{ok} without its namespace");
        }
        assert!(check_sysctl("kernel.domainname", &all).is_ok());
        for bad in [
            "kernel.printk_ratelimit_burst",
            "vm.swappiness",
            "kernel.hostname",
            "../../x",
            ".proc.self.oom_score_adj",
            "net..x",
            "net/../x",
            "net.ipv4.ip forward",
            "net",
            "",
        ] {
            let e = check_sysctl(bad, &all).unwrap_err().to_string();
            assert!(e.starts_with("linux.sysctl "), "{bad}: {e}");
        }
    }

    #[test]
    fn ids_must_be_mapped_and_not_minus_one() {
        let mut u = oci_spec::runtime::User::default();
        u.set_uid(1000);
        u.set_gid(1000);
        let host = parse_id_map("         0          0 4294967295\n");
        assert!(check_ids(&u, Some(&host), Some(&host)).is_ok());
        u.set_uid(u32::MAX);
        let e = check_ids(&u, Some(&host), Some(&host)).unwrap_err().to_string();
        assert!(e.contains("process.user.uid 4294967295") && e.contains("(uid_t)-1"), "{e}");
        u.set_uid(1000);
        u.set_additional_gids(Some(vec![10, 70000]));
        let small = vec![(0, 65536)];
        let e = check_ids(&u, Some(&small), Some(&small)).unwrap_err().to_string();
        assert!(e.contains("process.user.additionalGids 70000") && e.contains("0-65535"), "{e}");
        assert!(check_ids(&u, None, None).is_ok());
    }
}
