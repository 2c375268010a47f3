//! Seccomp filters from `linux.seccomp` of config.json, compiled with libseccomp.
//!
//! The container's filter goes through three steps:
//!
//! 1. [`validate`] (or [`validate_json`] on the raw JSON) at `create`, in the parent, before
//!    anything is spawned: a bad profile fails early with a message naming the syscall entry,
//!    action, architecture or flag. Asking for the notify action (`SCMP_ACT_NOTIFY`) or a
//!    `listenerPath` is an error until hako has a seccomp agent.
//! 2. [`build`] turns the profile into a libseccomp filter context, with runc's semantics:
//!    syscall names unknown to libseccomp are skipped (logged at debug), rules whose action
//!    equals the default action are skipped, the conditions of one entry are ANDed unless one
//!    argument index appears twice, in which case every condition becomes its own rule (OR).
//!    [`compile`] does the same and exports the BPF program so that the parent can do all of
//!    the libseccomp work and the container init only has to call [`load_compiled`];
//!    [`compile_cached`] keeps compiled programs on disk, since libseccomp takes milliseconds
//!    for a large profile.
//! 3. [`load`] (or [`load_compiled`]) in the container init right before `execve`.
//!
//! The filter never sets `no_new_privs` itself: loading needs either `no_new_privs` already set
//! (`process.noNewPrivileges`) or `CAP_SYS_ADMIN` in the effective set, so the init loads the
//! filter before dropping capabilities when `noNewPrivileges` is false, as runc does.
//!
//! The `features` lists ([`supported_actions`], [`operators`], [`archs`], [`known_flags`],
//! [`supported_flags`]) live here too, so that they cannot drift from what [`build`] accepts.
//! What is not here: the notify listener (`SCMP_ACT_NOTIFY`), and runc's BPF patching that
//! makes syscalls newer than the profile return `ENOSYS`.

use std::io::{Read, Seek, SeekFrom};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Serialize};

/// Highest errno a seccomp `SCMP_ACT_ERRNO` rule can return (the kernel's `MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;
/// Highest message value of `SCMP_ACT_TRACE` (16 bits of `SECCOMP_RET_DATA`).
const MAX_TRACE_MSG: u32 = 0xffff;
/// Number of syscall arguments a condition can look at.
const SYSCALL_MAX_ARGS: usize = 6;

/// What went wrong while checking, building or loading a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile asks for the user-space notification mechanism.
    #[error(
        "seccomp notify is not supported yet: {what} asks for it; remove SCMP_ACT_NOTIFY and \
         linux.seccomp.listenerPath from config.json"
    )]
    NotifyUnsupported {
        /// The config field that asks for notify.
        what: String,
    },
    /// `errnoRet` / `defaultErrnoRet` is set on an action that returns no value.
    #[error(
        "{what}: errnoRet {errno} is set but action {action} returns no errno: remove errnoRet \
         or use SCMP_ACT_ERRNO or SCMP_ACT_TRACE"
    )]
    ErrnoRetNotAllowed {
        /// The config field (e.g. `linux.seccomp.syscalls[2] (mkdir)`).
        what: String,
        /// The action of that field.
        action: String,
        /// The value that was given.
        errno: u32,
    },
    /// `errnoRet` / `defaultErrnoRet` does not fit what the kernel can return.
    #[error("{what}: errnoRet {errno} is out of range for {action}: use a value from 0 to {max}")]
    ErrnoRetOutOfRange {
        /// The config field.
        what: String,
        /// The action of that field.
        action: String,
        /// The value that was given.
        errno: u32,
        /// The largest value allowed.
        max: u32,
    },
    /// A syscall entry has no names.
    #[error("{what}: names is empty: list at least one syscall name")]
    EmptyNames {
        /// The config field.
        what: String,
    },
    /// An argument condition looks past the sixth syscall argument.
    #[error("{what}: argument index {index} is out of range: syscalls have arguments 0 to 5")]
    ArgIndex {
        /// The config field.
        what: String,
        /// The index that was given.
        index: usize,
    },
    /// An architecture the libseccomp hako links against does not know.
    #[error(
        "seccomp architecture {arch} is not supported by hako's libseccomp: remove it from \
         linux.seccomp.architectures"
    )]
    UnsupportedArch {
        /// The architecture name, as in config.json.
        arch: String,
    },
    /// A filter flag that this host (kernel or libseccomp) or hako cannot honour.
    #[error("seccomp flag {flag} is not supported: {reason}; remove it from linux.seccomp.flags")]
    UnsupportedFlag {
        /// The flag name, as in config.json.
        flag: String,
        /// Why it cannot be honoured.
        reason: String,
    },
    /// A value in the raw JSON is not one of the names the runtime spec defines.
    #[error("{what}: unknown seccomp {kind} {value}: use one of {expected}")]
    UnknownName {
        /// The JSON path of the value.
        what: String,
        /// action, architecture, operator or flag.
        kind: &'static str,
        /// The value that was given.
        value: String,
        /// The accepted names, comma separated.
        expected: String,
    },
    /// The raw JSON has the wrong shape (e.g. a string where a list is expected).
    #[error("{what}: {problem}")]
    Malformed {
        /// The JSON path of the value.
        what: String,
        /// What is wrong with it.
        problem: String,
    },
    /// libseccomp refused a step of building the filter.
    #[error("failed to {step}")]
    Build {
        /// The step, naming the syscall, action or attribute.
        step: String,
        /// The libseccomp error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// Writing or reading the exported BPF program failed.
    #[error("failed to export the seccomp filter as BPF")]
    Export(#[source] std::io::Error),
    /// The exported BPF program is not a whole number of instructions or is too long.
    #[error("exported seccomp BPF program is invalid: {0}")]
    BadProgram(String),
    /// The kernel refused the filter.
    #[error("failed to load the seccomp filter into the kernel{hint}")]
    Load {
        /// A hint about the likely cause, starting with ": " or empty.
        hint: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A filter compiled to classic BPF by [`compile`], ready for [`load_compiled`].
///
/// It is plain data (serialisable) so the parent can compile it and send it to the init.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledFilter {
    /// The `struct sock_filter` array, in host byte order, 8 bytes per instruction.
    pub bpf: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` bits for `seccomp(SECCOMP_SET_MODE_FILTER)`.
    pub flags: u32,
}

/// The config.json spelling of an action, arch, operator or flag (its serde name).
fn spec_name<T: Serialize + std::fmt::Debug>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{v:?}"),
    }
}

/// Describes a syscall entry for error messages: `linux.seccomp.syscalls[2] (mkdir, mkdirat)`.
fn entry_name(index: usize, sc: &LinuxSyscall) -> String {
    format!("linux.seccomp.syscalls[{index}] ({})", sc.names().join(", "))
}

/// Maps an OCI architecture to libseccomp's, `None` when libseccomp 0.3 has no such arch.
fn scmp_arch(arch: Arch) -> Option<ScmpArch> {
    Some(match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 | Arch::ScmpArchM68k | Arch::ScmpArchSh | Arch::ScmpArchSheb => {
            return None;
        }
    })
}

/// Checks `errnoRet` against `action` and returns the libseccomp action.
fn scmp_action(what: &str, action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction, SeccompError> {
    let check_range = |max: u32| -> Result<u32, SeccompError> {
        let errno = errno_ret.unwrap_or(libc::EPERM as u32);
        if errno > max {
            return Err(SeccompError::ErrnoRetOutOfRange {
                what: what.to_string(),
                action: spec_name(&action),
                errno,
                max,
            });
        }
        Ok(errno)
    };
    let no_errno = || -> Result<(), SeccompError> {
        match errno_ret {
            Some(errno) => {
                Err(SeccompError::ErrnoRetNotAllowed { what: what.to_string(), action: spec_name(&action), errno })
            }
            None => Ok(()),
        }
    };
    Ok(match action {
        // The runtime spec's SCMP_ACT_KILL is libseccomp's SCMP_ACT_KILL_THREAD.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            no_errno()?;
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => {
            no_errno()?;
            ScmpAction::KillProcess
        }
        LinuxSeccompAction::ScmpActTrap => {
            no_errno()?;
            ScmpAction::Trap
        }
        LinuxSeccompAction::ScmpActLog => {
            no_errno()?;
            ScmpAction::Log
        }
        LinuxSeccompAction::ScmpActAllow => {
            no_errno()?;
            ScmpAction::Allow
        }
        // Both casts are in range: check_range bounds the value by 4095 / 0xffff.
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(check_range(MAX_ERRNO)? as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(check_range(MAX_TRACE_MSG)? as u16),
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::NotifyUnsupported { what: what.to_string() });
        }
    })
}

/// Builds one libseccomp condition; for `SCMP_CMP_MASKED_EQ`, `value` is the mask and
/// `valueTwo` the value the masked argument must equal (runc's and libseccomp's reading).
fn scmp_condition(what: &str, arg: &LinuxSeccompArg) -> Result<ScmpArgCompare, SeccompError> {
    if arg.index() >= SYSCALL_MAX_ARGS {
        return Err(SeccompError::ArgIndex { what: what.to_string(), index: arg.index() });
    }
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (ScmpCompareOp::MaskedEqual(arg.value()), arg.value_two().unwrap_or(0))
        }
    };
    // The index is below SYSCALL_MAX_ARGS (6), so it fits in u32.
    Ok(ScmpArgCompare::new(arg.index() as u32, op, datum))
}

/// Checks a profile without building it: actions and their `errnoRet`, argument indexes,
/// architectures, flags, and the absence of notify. Unknown syscall names are not errors
/// (runc skips them too, since a profile may name syscalls newer than this libseccomp); they
/// are logged at debug level.
pub fn validate(s: &LinuxSeccomp) -> Result<(), SeccompError> {
    if let Some(path) = s.listener_path() {
        return Err(SeccompError::NotifyUnsupported { what: format!("linux.seccomp.listenerPath {}", path.display()) });
    }
    scmp_action("linux.seccomp.defaultAction", s.default_action(), s.default_errno_ret())?;
    for arch in s.architectures().iter().flatten() {
        if scmp_arch(*arch).is_none() {
            return Err(SeccompError::UnsupportedArch { arch: spec_name(arch) });
        }
    }
    let supported = supported_flags();
    for flag in s.flags().iter().flatten() {
        let name = spec_name(flag);
        if !supported.contains(&name) {
            let reason = match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    "it only applies to a seccomp notify listener, which hako does not support yet".to_string()
                }
                _ => "the running kernel or hako's libseccomp does not support it".to_string(),
            };
            return Err(SeccompError::UnsupportedFlag { flag: name, reason });
        }
    }
    for (index, sc) in s.syscalls().iter().flatten().enumerate() {
        let what = entry_name(index, sc);
        if sc.names().is_empty() {
            return Err(SeccompError::EmptyNames { what });
        }
        scmp_action(&what, sc.action(), sc.errno_ret())?;
        for arg in sc.args().iter().flatten() {
            scmp_condition(&what, arg)?;
        }
        for name in sc.names() {
            if ScmpSyscall::from_name(name).is_err() {
                tracing::debug!(syscall = %name, "seccomp: syscall unknown to libseccomp, rule skipped");
            }
        }
    }
    Ok(())
}

/// Wraps a libseccomp error with the step that failed.
fn build_err(step: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let step = step.into();
    move |source| SeccompError::Build { step, source }
}

/// Builds the libseccomp filter for a profile (calls [`validate`] first).
///
/// The filter does not set `no_new_privs` on load, and makes libseccomp report the kernel's own
/// errno on load failures. It has no kernel side effects until [`load`].
pub fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    validate(s)?;
    let default_action = scmp_action("linux.seccomp.defaultAction", s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new_filter(default_action).map_err(build_err("create a seccomp filter"))?;
    for arch in s.architectures().iter().flatten() {
        if let Some(a) = scmp_arch(*arch) {
            match ctx.add_arch(a) {
                Ok(_) => {}
                // libseccomp cannot mix byte orders in one filter. A process on this host
                // never makes syscalls of an architecture of the other byte order (emulators
                // translate to native syscalls), so leaving it out loses nothing.
                Err(e) if e.errno() == Some(libseccomp::error::SeccompErrno::EDOM) => {
                    tracing::debug!(
                        arch = %spec_name(arch),
                        "seccomp: architecture of the other byte order than the host skipped"
                    );
                }
                Err(e) => {
                    let step = format!("add seccomp architecture {}", spec_name(arch));
                    return Err(SeccompError::Build { step, source: e });
                }
            }
        }
    }
    ctx.set_ctl_nnp(false).map_err(build_err("turn off no_new_privs in the seccomp filter"))?;
    ctx.set_api_sysrawrc(true).map_err(build_err("ask libseccomp for raw kernel errors"))?;
    for flag in s.flags().iter().flatten() {
        let name = spec_name(flag);
        let res = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
            // validate() rejected it already.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => continue,
        };
        res.map_err(build_err(format!("set seccomp flag {name}")))?;
    }
    for (index, sc) in s.syscalls().iter().flatten().enumerate() {
        let what = entry_name(index, sc);
        let action = scmp_action(&what, sc.action(), sc.errno_ret())?;
        if action == default_action {
            // libseccomp refuses rules that repeat the default action; they change nothing.
            continue;
        }
        let conditions = sc.args().iter().flatten().map(|a| scmp_condition(&what, a)).collect::<Result<Vec<_>, _>>()?;
        let mut per_index = [0usize; SYSCALL_MAX_ARGS];
        for arg in sc.args().iter().flatten() {
            per_index[arg.index()] += 1;
        }
        let one_rule_per_condition = per_index.iter().any(|&n| n > 1);
        for name in sc.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "seccomp: syscall unknown to libseccomp, rule skipped");
                continue;
            };
            let step = || format!("add seccomp rule {} for syscall {name} ({what})", spec_name(&sc.action()));
            if conditions.is_empty() {
                ctx.add_rule(action, syscall).map_err(build_err(step()))?;
            } else if one_rule_per_condition {
                // Same argument twice: libseccomp cannot AND them, runc makes them ORed rules.
                for cond in &conditions {
                    ctx.add_rule_conditional(action, syscall, &[*cond]).map_err(build_err(step()))?;
                }
            } else {
                ctx.add_rule_conditional(action, syscall, &conditions).map_err(build_err(step()))?;
            }
        }
    }
    Ok(ctx)
}

/// Turns a load failure into [`SeccompError::Load`] with a hint for the usual causes.
fn load_error(errno: Option<i32>, source: Box<dyn std::error::Error + Send + Sync>) -> SeccompError {
    let hint = match errno {
        Some(libc::EACCES) => {
            ": the process needs no_new_privs set or CAP_SYS_ADMIN in its effective set; load \
             the filter before dropping capabilities or set process.noNewPrivileges"
        }
        Some(libc::EINVAL) => ": the kernel rejected the filter or one of its flags",
        _ => "",
    };
    SeccompError::Load { hint: hint.to_string(), source }
}

/// Loads a filter from [`build`] into the kernel for the calling thread (and every thread of
/// the process with `SECCOMP_FILTER_FLAG_TSYNC`). Call it in the container init right before
/// `execve`: every syscall after it is filtered.
pub fn load(ctx: &ScmpFilterContext) -> Result<(), SeccompError> {
    ctx.load().map_err(|e| {
        let errno = e.errno().map(|n| match n {
            libseccomp::error::SeccompErrno::EACCES => libc::EACCES,
            libseccomp::error::SeccompErrno::EINVAL => libc::EINVAL,
            _ => 0,
        });
        load_error(errno, Box::new(e))
    })
}

/// Validates and builds a profile, then exports it as BPF: all libseccomp work (and every error
/// it can raise) happens in the caller, typically the parent at `create`.
pub fn compile(s: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let ctx = build(s)?;
    let name = c"hako-seccomp-bpf";
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&mut file).map_err(build_err("export the seccomp filter as BPF"))?;
    let mut bpf = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(SeccompError::Export)?;
    file.read_to_end(&mut bpf).map_err(SeccompError::Export)?;
    let mut flags = 0u32;
    for flag in s.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        } as u32;
    }
    Ok(CompiledFilter { bpf, flags })
}

/// What a cached filter was compiled from; a cache entry is used only if all of it matches.
#[derive(Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct CacheKey {
    /// The profile, serialised.
    profile: String,
    /// libseccomp's version and API level, which shape the BPF program.
    libseccomp: String,
}

/// One cache file: the key it was compiled from and the result.
#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    key: CacheKey,
    filter: CompiledFilter,
}

/// [`compile`] with a cache of compiled filters in `cache_dir` (created if missing), as crun
/// does: libseccomp needs milliseconds for a large profile such as podman's default, reading
/// the cache well under one. An entry is used only if the whole profile and libseccomp version
/// match (the file name is just a hash), and is written atomically; cache trouble falls back to
/// compiling. The directory must be writable by root only (put it under hako's `--root`).
pub fn compile_cached(s: &LinuxSeccomp, cache_dir: &std::path::Path) -> Result<CompiledFilter, SeccompError> {
    use std::hash::{Hash, Hasher};
    // Validation is cheap and may depend on the host (supported flags): never cached.
    validate(s)?;
    let version =
        libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default();
    let key = CacheKey {
        profile: serde_json::to_string(s).unwrap_or_default(),
        libseccomp: format!("{version} api {}", libseccomp::get_api()),
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    let path = cache_dir.join(format!("{:016x}.json", hasher.finish()));
    if let Ok(text) = std::fs::read(&path) {
        match serde_json::from_slice::<CacheEntry>(&text) {
            Ok(entry) if entry.key == key => return Ok(entry.filter),
            _ => tracing::debug!(path = %path.display(), "seccomp cache entry does not match"),
        }
    }
    let filter = compile(s)?;
    let entry = CacheEntry { key, filter };
    let tmp = cache_dir.join(format!(".{:016x}.{}.tmp", hasher.finish(), std::process::id()));
    let stored = std::fs::create_dir_all(cache_dir)
        .and_then(|()| serde_json::to_vec(&entry).map_err(std::io::Error::other))
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = stored {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!(path = %path.display(), error = %e, "seccomp cache not written");
    }
    Ok(entry.filter)
}

/// Loads a filter from [`compile`] with the raw `seccomp(2)` syscall; no libseccomp call, no
/// allocation. Same rules as [`load`]: needs `no_new_privs` or `CAP_SYS_ADMIN`.
pub fn load_compiled(filter: &CompiledFilter) -> Result<(), SeccompError> {
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    let chunks = filter.bpf.chunks_exact(INSN);
    if filter.bpf.is_empty() || !chunks.remainder().is_empty() {
        return Err(SeccompError::BadProgram(format!(
            "{} bytes is not a whole number of {INSN}-byte instructions",
            filter.bpf.len()
        )));
    }
    let count = filter.bpf.len() / INSN;
    let len =
        u16::try_from(count).map_err(|_| SeccompError::BadProgram(format!("{count} instructions is too many")))?;
    let insns: Vec<libc::sock_filter> = chunks
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog { len, filter: insns.as_ptr().cast_mut() };
    // SAFETY: `prog` points to `len` valid instructions in `insns`, which outlives the call; the
    // kernel copies the program and does not keep the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(filter.flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    if ret > 0 {
        // With TSYNC, a positive value is the id of a thread that could not be synchronised.
        return Err(load_error(
            None,
            format!("thread {ret} could not be synchronised (SECCOMP_FILTER_FLAG_TSYNC)").into(),
        ));
    }
    let err = std::io::Error::last_os_error();
    Err(load_error(err.raw_os_error(), Box::new(err)))
}

/// The actions hako implements, for `hako features` (`SCMP_ACT_NOTIFY` is left out: it is
/// refused until hako has a listener).
pub fn supported_actions() -> Vec<LinuxSeccompAction> {
    vec![
        LinuxSeccompAction::ScmpActAllow,
        LinuxSeccompAction::ScmpActErrno,
        LinuxSeccompAction::ScmpActKill,
        LinuxSeccompAction::ScmpActKillProcess,
        LinuxSeccompAction::ScmpActKillThread,
        LinuxSeccompAction::ScmpActLog,
        LinuxSeccompAction::ScmpActTrace,
        LinuxSeccompAction::ScmpActTrap,
    ]
}

/// The argument operators hako implements, as config.json spells them.
pub fn operators() -> Vec<String> {
    [
        LinuxSeccompOperator::ScmpCmpEq,
        LinuxSeccompOperator::ScmpCmpGe,
        LinuxSeccompOperator::ScmpCmpGt,
        LinuxSeccompOperator::ScmpCmpLe,
        LinuxSeccompOperator::ScmpCmpLt,
        LinuxSeccompOperator::ScmpCmpMaskedEq,
        LinuxSeccompOperator::ScmpCmpNe,
    ]
    .iter()
    .map(spec_name)
    .collect()
}

/// The architectures hako's libseccomp handles (`SCMP_ARCH_NATIVE` is accepted in a profile
/// but is not an architecture of its own, so it is not listed).
pub fn archs() -> Vec<Arch> {
    [
        Arch::ScmpArchX86,
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX32,
        Arch::ScmpArchArm,
        Arch::ScmpArchAarch64,
        Arch::ScmpArchMips,
        Arch::ScmpArchMips64,
        Arch::ScmpArchMips64n32,
        Arch::ScmpArchMipsel,
        Arch::ScmpArchMipsel64,
        Arch::ScmpArchMipsel64n32,
        Arch::ScmpArchPpc,
        Arch::ScmpArchPpc64,
        Arch::ScmpArchPpc64le,
        Arch::ScmpArchS390,
        Arch::ScmpArchS390x,
        Arch::ScmpArchParisc,
        Arch::ScmpArchParisc64,
        Arch::ScmpArchRiscv64,
    ]
    .into_iter()
    .filter(|a| scmp_arch(*a).is_some())
    .collect()
}

/// Every filter flag hako recognises, as config.json spells them.
pub fn known_flags() -> Vec<String> {
    [
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ]
    .iter()
    .map(spec_name)
    .collect()
}

/// Whether the running kernel accepts `flag` for `SECCOMP_SET_MODE_FILTER`.
///
/// Probes like libseccomp does: with a NULL program, a known flag fails with `EFAULT` (the
/// program cannot be copied) and an unknown one with `EINVAL`. Nothing is ever loaded.
fn kernel_has_filter_flag(flag: libc::c_ulong) -> bool {
    // SAFETY: a NULL program pointer makes the kernel fail before installing anything; the call
    // reads no memory of ours.
    let ret = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flag, std::ptr::null::<libc::sock_fprog>())
    };
    ret == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// The filter flags this host can honour: known to the running kernel and to hako's libseccomp
/// (`SECCOMP_FILTER_FLAG_LOG` needs libseccomp API level 3, `SPEC_ALLOW` level 4).
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` is never listed: it only applies to a notify
/// listener.
pub fn supported_flags() -> Vec<String> {
    let api = libseccomp::get_api();
    let mut out = Vec::new();
    let candidates = [
        (LinuxSeccompFilterFlag::SeccompFilterFlagTsync, libc::SECCOMP_FILTER_FLAG_TSYNC, 1),
        (LinuxSeccompFilterFlag::SeccompFilterFlagLog, libc::SECCOMP_FILTER_FLAG_LOG, 3),
        (LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow, libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW, 4),
    ];
    for (flag, bit, min_api) in candidates {
        if api >= min_api && kernel_has_filter_flag(bit) {
            out.push(spec_name(&flag));
        }
    }
    out
}

/// Checks that one JSON value deserialises as `T`, or names it and lists the accepted names.
fn check_name<T: for<'de> Deserialize<'de>>(
    what: String,
    kind: &'static str,
    value: &serde_json::Value,
    expected: &[String],
) -> Result<(), SeccompError> {
    if serde_json::from_value::<T>(value.clone()).is_ok() {
        return Ok(());
    }
    let value = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Err(SeccompError::UnknownName { what, kind, value, expected: expected.join(", ") })
}

/// Returns the array at `key` of `obj`, an empty slice when absent or null.
fn json_array<'a>(obj: &'a serde_json::Value, key: &str, what: &str) -> Result<&'a [serde_json::Value], SeccompError> {
    match obj.get(key) {
        None | Some(serde_json::Value::Null) => Ok(&[]),
        Some(serde_json::Value::Array(a)) => Ok(a),
        Some(other) => Err(SeccompError::Malformed {
            what: format!("{what}.{key}"),
            problem: format!("expected a list, found {other}"),
        }),
    }
}

/// Checks the names in the raw `linux.seccomp` JSON object (actions, architectures, operators,
/// flags) before it is parsed into [`LinuxSeccomp`], so that a typo gives an error naming the
/// field and the value instead of a serde message. Call it on the config.json value at
/// `/linux/seccomp`; a missing or null value is fine.
pub fn validate_json(seccomp: &serde_json::Value) -> Result<(), SeccompError> {
    let root = "linux.seccomp";
    if seccomp.is_null() {
        return Ok(());
    }
    if !seccomp.is_object() {
        return Err(SeccompError::Malformed {
            what: root.to_string(),
            problem: format!("expected an object, found {seccomp}"),
        });
    }
    let all_actions: Vec<String> =
        supported_actions().iter().chain(std::iter::once(&LinuxSeccompAction::ScmpActNotify)).map(spec_name).collect();
    let all_archs: Vec<String> = std::iter::once(Arch::ScmpArchNative).chain(archs()).map(|a| spec_name(&a)).collect();
    if let Some(v) = seccomp.get("defaultAction") {
        check_name::<LinuxSeccompAction>(format!("{root}.defaultAction"), "action", v, &all_actions)?;
    }
    for (i, v) in json_array(seccomp, "architectures", root)?.iter().enumerate() {
        check_name::<Arch>(format!("{root}.architectures[{i}]"), "architecture", v, &all_archs)?;
    }
    for (i, v) in json_array(seccomp, "flags", root)?.iter().enumerate() {
        check_name::<LinuxSeccompFilterFlag>(format!("{root}.flags[{i}]"), "flag", v, &known_flags())?;
    }
    for (i, sc) in json_array(seccomp, "syscalls", root)?.iter().enumerate() {
        let what = format!("{root}.syscalls[{i}]");
        if let Some(v) = sc.get("action") {
            check_name::<LinuxSeccompAction>(format!("{what}.action"), "action", v, &all_actions)?;
        }
        for (j, arg) in json_array(sc, "args", &what)?.iter().enumerate() {
            if let Some(v) = arg.get("op") {
                check_name::<LinuxSeccompOperator>(format!("{what}.args[{j}].op"), "operator", v, &operators())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, pipe, ForkResult};
    use serde_json::json;
    use std::io::Write;

    /// Runs `f` in a forked child (single-threaded, so per-thread state such as seccomp and
    /// capabilities is the whole process's) and returns how it ended and what it reported.
    pub(crate) fn run_child(f: impl FnOnce() -> Result<(), String>) -> (WaitStatus, String) {
        let (rd, wr) = pipe().expect("pipe");
        // SAFETY: the child only runs `f` (raw syscalls, file reads, formatting; glibc keeps
        // malloc usable after fork) and leaves with `_exit`, never returning into the harness.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                drop(rd);
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                    .unwrap_or_else(|_| Err("child panicked".to_string()));
                let code = match res {
                    Ok(()) => 0,
                    Err(msg) => {
                        let mut w = std::fs::File::from(wr);
                        let _ = w.write_all(msg.as_bytes());
                        1
                    }
                };
                // SAFETY: `_exit` ends the child without running the parent's atexit handlers.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(wr);
                let mut msg = String::new();
                let _ = std::fs::File::from(rd).read_to_string(&mut msg);
                let status = waitpid(child, None).expect("waitpid");
                (status, msg)
            }
        }
    }

    /// Runs `f` in a forked child and fails the test with the child's message if it failed.
    pub(crate) fn in_child(f: impl FnOnce() -> Result<(), String>) {
        match run_child(f) {
            (WaitStatus::Exited(_, 0), _) => {}
            (status, msg) => panic!("child failed ({status:?}): {msg}"),
        }
    }

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).expect("test profile parses")
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// Raw syscall result and errno.
    fn sys(nr: libc::c_long, a: libc::c_ulong, b: libc::c_ulong) -> (libc::c_long, i32) {
        // SAFETY: only called with syscalls whose arguments are plain integers.
        let r = unsafe { libc::syscall(nr, a, b) };
        (r, if r == -1 { errno() } else { 0 })
    }

    fn seccomp_mode() -> Result<String, String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| "no Seccomp line".to_string())
    }

    fn build_and_load(p: &LinuxSeccomp) -> Result<(), String> {
        let ctx = build(p).map_err(|e| e.to_string())?;
        load(&ctx).map_err(|e| e.to_string())
    }

    fn expect(what: &str, got: (libc::c_long, i32), want: (libc::c_long, i32)) -> Result<(), String> {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: got {got:?}, want {want:?}"))
        }
    }

    #[test]
    fn errno_rule_makes_getcwd_fail_with_chosen_errno_and_sets_mode_2() {
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 123}]
        }));
        in_child(|| {
            if seccomp_mode()? != "0" {
                return Err("seccomp already on before load".into());
            }
            build_and_load(&p)?;
            let mut buf = [0u8; 256];
            expect("getcwd", sys(libc::SYS_getcwd, buf.as_mut_ptr() as libc::c_ulong, 256), (-1, 123))?;
            let mode = seccomp_mode()?;
            if mode != "2" {
                return Err(format!("Seccomp: {mode}, want 2"));
            }
            Ok(())
        });
    }

    #[test]
    fn errno_without_errno_ret_is_eperm_and_mkdir_does_not_happen() {
        let dir = format!("/tmp/hako-seccomp-test-{}", std::process::id());
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        }));
        let d = dir.clone();
        in_child(move || {
            build_and_load(&p)?;
            match std::fs::create_dir(&d) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
                other => Err(format!("mkdir {d}: {other:?}, want EPERM")),
            }
        });
        assert!(!std::path::Path::new(&dir).exists(), "{dir} was created");
    }

    #[test]
    fn argument_filters_eq_masked_eq_and_and_or_semantics() {
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                // Several conditions on one index: each is its own rule (OR).
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 99,
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 0x20008, "op": "SCMP_CMP_EQ"}]},
                // Masked equality: (arg0 & 0xffff) == 0x0004.
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 98,
                 "args": [{"index": 0, "value": 0xffff, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}]},
                // Different indexes: ANDed.
                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 999999, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 76,
                 "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_GT"}]}
            ]
        }));
        in_child(|| {
            build_and_load(&p)?;
            let pers = |v: libc::c_ulong| sys(libc::SYS_personality, v, 0);
            let query = pers(0xffff_ffff);
            if query.0 < 0 {
                return Err(format!("personality query denied: {query:?}"));
            }
            expect("personality(8)", pers(8), (-1, 99))?;
            expect("personality(0x20008)", pers(0x20008), (-1, 99))?;
            expect("personality(0x10004)", pers(0x10004), (-1, 98))?;
            expect("personality(4)", pers(4), (-1, 98))?;
            let prio = |which, who| sys(libc::SYS_getpriority, which, who);
            if prio(0, 0).0 < 0 {
                return Err(format!("getpriority(PROCESS, 0) denied: {:?}", prio(0, 0)));
            }
            expect("getpriority(PROCESS, 999999)", prio(0, 999999), (-1, 77))?;
            // Only one condition matches: the real syscall runs and finds no such group.
            expect("getpriority(PGRP, 999999)", prio(1, 999999), (-1, libc::ESRCH))?;
            expect("getppid(11)", sys(libc::SYS_getppid, 11, 0), (-1, 76))?;
            if sys(libc::SYS_getppid, 3, 0).0 <= 0 {
                return Err("getppid(3) should be allowed".into());
            }
            Ok(())
        });
    }

    #[test]
    fn default_errno_with_allow_list() {
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["write", "exit", "exit_group", "brk", "mmap", "munmap", "mremap",
                           "madvise", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "futex",
                           "getpid", "not_a_real_syscall_hako"],
                 "action": "SCMP_ACT_ALLOW"},
                // Same action as the default: skipped, not an error.
                {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        }));
        in_child(|| {
            build_and_load(&p)?;
            expect("getppid", sys(libc::SYS_getppid, 0, 0), (-1, libc::ENOSYS))?;
            expect("getuid", sys(libc::SYS_getuid, 0, 0), (-1, libc::ENOSYS))?;
            let pid = nix::unistd::getpid().as_raw();
            if pid <= 0 {
                return Err(format!("getpid denied: {pid}"));
            }
            Ok(())
        });
    }

    #[test]
    fn syscalls_of_other_abis_in_a_multi_arch_filter() {
        // 32-bit only names (socketcall, _llseek, mmap2) resolve through libseccomp's
        // pseudo-syscalls on x86_64 and apply to the x86 ABI of the filter.
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["socketcall", "_llseek", "mmap2", "getcwd"],
                          "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
        }));
        in_child(|| {
            build_and_load(&p)?;
            expect("getcwd", sys(libc::SYS_getcwd, 0, 0), (-1, 13))
        });
    }

    fn action_profile(action: &str) -> LinuxSeccomp {
        profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": action}]
        }))
    }

    #[test]
    fn every_action_does_what_it_says() {
        for action in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"] {
            let p = action_profile(action);
            let (status, msg) = run_child(|| {
                // No core file from the SIGSYS.
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
                    .map_err(|e| e.to_string())?;
                build_and_load(&p)?;
                sys(libc::SYS_getppid, 0, 0);
                Err("getppid returned".into())
            });
            assert!(
                matches!(status, WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)),
                "{action}: {status:?} {msg}"
            );
        }
        let p = action_profile("SCMP_ACT_LOG");
        in_child(|| {
            build_and_load(&p)?;
            let r = sys(libc::SYS_getppid, 0, 0);
            if r.0 <= 0 {
                Err(format!("SCMP_ACT_LOG: getppid {r:?}"))
            } else {
                Ok(())
            }
        });
        // Without a tracer, SCMP_ACT_TRACE fails the syscall with ENOSYS.
        let p = action_profile("SCMP_ACT_TRACE");
        in_child(|| {
            build_and_load(&p)?;
            expect("SCMP_ACT_TRACE getppid", sys(libc::SYS_getppid, 0, 0), (-1, libc::ENOSYS))
        });
    }

    #[test]
    fn flags_are_applied() {
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": supported_flags(),
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}]
        }));
        assert!(supported_flags().contains(&"SECCOMP_FILTER_FLAG_TSYNC".to_string()));
        let ctx = build(&p).expect("build");
        assert!(ctx.get_ctl_tsync().expect("tsync attr"));
        in_child(|| {
            load(&ctx).map_err(|e| e.to_string())?;
            expect("getcwd", sys(libc::SYS_getcwd, 0, 0), (-1, 5))
        });
        let c = compile(&p).expect("compile");
        assert_ne!(c.flags & libc::SECCOMP_FILTER_FLAG_TSYNC as u32, 0);
        in_child(|| {
            load_compiled(&c).map_err(|e| e.to_string())?;
            expect("getcwd", sys(libc::SYS_getcwd, 0, 0), (-1, 5))
        });
    }

    #[test]
    fn compiled_filter_loads_without_libseccomp() {
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]
        }));
        let c = compile(&p).expect("compile");
        assert_eq!(c.bpf.len() % 8, 0);
        let round_trip: CompiledFilter = serde_json::from_str(&serde_json::to_string(&c).expect("ser")).expect("de");
        in_child(|| {
            load_compiled(&round_trip).map_err(|e| e.to_string())?;
            expect("getcwd", sys(libc::SYS_getcwd, 0, 0), (-1, 42))?;
            if seccomp_mode()? != "2" {
                return Err("Seccomp mode is not 2".into());
            }
            Ok(())
        });
        let bad = CompiledFilter { bpf: vec![0; 7], flags: 0 };
        assert!(load_compiled(&bad).unwrap_err().to_string().contains("7 bytes"));
    }

    #[test]
    fn compile_cache_hits_only_for_the_same_profile() {
        let dir = std::env::temp_dir().join(format!("hako-seccomp-cache-{}", std::process::id()));
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 21}]
        }));
        let q = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22}]
        }));
        let fresh = compile(&p).expect("compile");
        assert_eq!(compile_cached(&p, &dir).expect("miss"), fresh);
        let files: Vec<_> = std::fs::read_dir(&dir).expect("cache dir").flatten().collect();
        assert_eq!(files.len(), 1, "one cache entry, no temporary file left");
        let entry = files[0].path();
        assert_eq!(compile_cached(&p, &dir).expect("hit"), fresh);
        // An entry under p's name that holds another profile's program is not used.
        let q_filter = compile(&q).expect("compile q");
        assert_ne!(q_filter, fresh);
        let text = std::fs::read_to_string(&entry).expect("read entry");
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("entry json");
        v["filter"] = serde_json::to_value(&q_filter).expect("q json");
        v["key"]["profile"] = serde_json::to_value(serde_json::to_string(&q).expect("q")).expect("str");
        std::fs::write(&entry, v.to_string()).expect("tamper");
        assert_eq!(compile_cached(&p, &dir).expect("mismatch"), fresh);
        std::fs::write(&entry, b"garbage").expect("corrupt");
        let cached = compile_cached(&p, &dir).expect("corrupt entry");
        in_child(|| {
            load_compiled(&cached).map_err(|e| e.to_string())?;
            expect("getcwd", sys(libc::SYS_getcwd, 0, 0), (-1, 21))
        });
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn load_needs_no_new_privs_or_cap_sys_admin() {
        let p = action_profile("SCMP_ACT_ERRNO");
        in_child(|| {
            let ctx = build(&p).map_err(|e| e.to_string())?;
            caps::drop(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_ADMIN).map_err(|e| e.to_string())?;
            let err = match load(&ctx) {
                Ok(()) => return Err("load without NNP or CAP_SYS_ADMIN succeeded".into()),
                Err(e) => e.to_string(),
            };
            if !err.contains("no_new_privs") {
                return Err(format!("error lacks the hint: {err}"));
            }
            let c = compile(&p).map_err(|e| e.to_string())?;
            let err = load_compiled(&c).map_err(|e| e.to_string()).err().unwrap_or_default();
            if !err.contains("no_new_privs") {
                return Err(format!("raw load error lacks the hint: {err:?}"));
            }
            nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
            load(&ctx).map_err(|e| e.to_string())?;
            expect("getppid", sys(libc::SYS_getppid, 0, 0), (-1, libc::EPERM))
        });
    }

    fn validate_err(v: serde_json::Value) -> String {
        validate(&profile(v)).expect_err("profile must be refused").to_string()
    }

    #[test]
    fn notify_is_refused_clearly() {
        let e = validate_err(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(e.contains("seccomp notify is not supported yet"), "{e}");
        let e = validate_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(e.contains("seccomp notify is not supported yet") && e.contains("mkdir"), "{e}");
        let e = validate_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"
        }));
        assert!(e.contains("not supported yet") && e.contains("/run/agent.sock"), "{e}");
        let e = validate_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        }));
        assert!(e.contains("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"), "{e}");
    }

    #[test]
    fn bad_profiles_name_the_problem() {
        let e = validate_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}));
        assert!(e.contains("defaultAction") && e.contains("SCMP_ACT_ALLOW"), "{e}");
        let e = validate_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL", "errnoRet": 3}]
        }));
        assert!(e.contains("getcwd") && e.contains("SCMP_ACT_KILL"), "{e}");
        let e = validate_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}]
        }));
        assert!(e.contains("5000") && e.contains("4095"), "{e}");
        let e = validate_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
        }));
        assert!(e.contains("read") && e.contains("index 6"), "{e}");
        let e = validate_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_LOONGARCH64"]
        }));
        assert!(e.contains("SCMP_ARCH_LOONGARCH64"), "{e}");
        let e = validate_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert!(e.contains("syscalls[0]") && e.contains("names is empty"), "{e}");
    }

    #[test]
    fn conflicting_entries_keep_the_first_action_like_runc() {
        // libseccomp (and so runc) keeps the first unconditional rule of a syscall.
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getcwd"], "action": "SCMP_ACT_KILL_PROCESS"}
            ]
        }));
        let ctx = build(&p).expect("build");
        in_child(|| {
            load(&ctx).map_err(|e| e.to_string())?;
            expect("getcwd", sys(libc::SYS_getcwd, 0, 0), (-1, libc::EPERM))
        });
    }

    #[test]
    fn validate_json_names_unknown_values() {
        let ok = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_MASKED_EQ"}]}]
        });
        validate_json(&ok).expect("valid profile");
        validate_json(&serde_json::Value::Null).expect("no seccomp");
        let cases = [
            ("/defaultAction", json!("SCMP_ACT_EXPLODE"), "linux.seccomp.defaultAction"),
            ("/architectures/0", json!("SCMP_ARCH_Z80"), "linux.seccomp.architectures[0]"),
            ("/flags/0", json!("SECCOMP_FILTER_FLAG_FAST"), "linux.seccomp.flags[0]"),
            ("/syscalls/0/action", json!("SCMP_ACT_MAYBE"), "linux.seccomp.syscalls[0].action"),
            ("/syscalls/0/args/0/op", json!("SCMP_CMP_ROUGHLY"), "linux.seccomp.syscalls[0].args[0].op"),
        ];
        for (ptr, bad, path) in cases {
            let mut v = ok.clone();
            *v.pointer_mut(ptr).expect("pointer") = bad.clone();
            let e = validate_json(&v).expect_err("bad name").to_string();
            let bad = bad.as_str().expect("str");
            assert!(e.contains(path) && e.contains(bad), "{e}");
        }
        let e = validate_json(&json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": "read"}))
            .expect_err("not a list")
            .to_string();
        assert!(e.contains("linux.seccomp.syscalls") && e.contains("expected a list"), "{e}");
    }

    #[test]
    fn feature_lists_match_what_build_accepts() {
        let actions = supported_actions();
        assert!(!actions.contains(&LinuxSeccompAction::ScmpActNotify));
        assert_eq!(actions.len(), 8);
        for a in &actions {
            let errno_ret = matches!(a, LinuxSeccompAction::ScmpActErrno).then_some(1);
            scmp_action("test", *a, errno_ret).expect("listed action builds");
        }
        assert_eq!(operators().len(), 7);
        assert!(operators().contains(&"SCMP_CMP_MASKED_EQ".to_string()));
        let names: Vec<String> = archs().iter().map(spec_name).collect();
        for want in [
            "SCMP_ARCH_X86_64",
            "SCMP_ARCH_X86",
            "SCMP_ARCH_X32",
            "SCMP_ARCH_AARCH64",
            "SCMP_ARCH_MIPS64N32",
            "SCMP_ARCH_PPC64LE",
        ] {
            assert!(names.contains(&want.to_string()), "{want} missing from {names:?}");
        }
        for a in archs() {
            validate(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [a]})))
                .expect("listed arch validates");
        }
        assert_eq!(known_flags().len(), 4);
        for f in supported_flags() {
            assert!(known_flags().contains(&f));
        }
        assert!(!supported_flags().contains(&"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV".to_string()));
    }
}
