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
}

fn attr(what: impl Into<String>) -> impl FnOnce(io::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Attr { what, source }
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// rlimits, oomScoreAdj, scheduler, ioPriority and personality: everything set while still root.
pub fn apply_limits(p: &Process, linux: Option<&Linux>) -> Result<(), ProcessError> {
    for r in p.rlimits().iter().flatten() {
        let lim = libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() };
        // SAFETY: setrlimit reads one valid rlimit struct.
        if unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) } != 0 {
            return Err(ProcessError::Rlimit {
                name: format!("{:?}", r.typ()).to_uppercase().replace("RLIMIT", "RLIMIT_"),
                soft: r.soft(),
                hard: r.hard(),
                source: nix::Error::last(),
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
        // SAFETY: personality takes one integer.
        if unsafe { libc::personality(domain) } < 0 {
            return Err(attr(format!("personality {:?}", pers.domain()))(io::Error::last_os_error()));
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

/// setgroups, setresgid, setresuid (keeping the permitted capabilities across the uid change, so that the
/// configured capability sets can be applied afterwards), then umask.
pub fn switch_user(p: &Process) -> Result<(), ProcessError> {
    let u = p.user();
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
    // SAFETY: prctl(PR_SET_KEEPCAPS, 1) takes integers only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let uid = Uid::from_raw(u.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| attr(format!("user.uid {}", u.uid()))(e.into()))?;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
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
        // SAFETY: setdomainname reads `len` bytes from a valid buffer.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(attr(format!("domainname {d:?}"))(io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Writes linux.sysctl through /proc/sys of the container.
pub fn set_sysctls(sysctl: &std::collections::HashMap<String, String>) -> Result<(), ProcessError> {
    for (k, v) in sysctl {
        let path = Path::new("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&path, v).map_err(attr(format!("sysctl {k}={v}")))?;
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
}
