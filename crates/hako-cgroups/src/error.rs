//! The error type of the cgroup manager: every variant names the cgroup directory or file, what went
//! wrong and, where one exists, the fix. I/O errors are part of the message (and not a `#[source]`)
//! because engines such as containerd show only the last message of a runtime failure.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while resolving, creating, configuring, freezing, reading or removing
/// a container's cgroup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// A file under /proc or /sys could not be read.
    #[error("failed to read {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        err: io::Error,
    },

    /// A value could not be written to a cgroup file.
    #[error("failed to write {value:?} to {path}: {err}{hint}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The I/O error.
        err: io::Error,
        /// Explanation and fix, starting with "; " (empty when there is none).
        hint: String,
    },

    /// A cgroup directory could not be created.
    #[error("failed to create cgroup directory {path}: {err}{hint}")]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        err: io::Error,
        /// Explanation and fix, starting with "; " (empty when there is none).
        hint: String,
    },

    /// A cgroup directory could not be removed.
    #[error("failed to remove cgroup {path}: {err}{hint}")]
    Rmdir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        err: io::Error,
        /// Explanation and fix, starting with "; " (empty when there is none).
        hint: String,
    },

    /// The container's cgroup directory does not exist.
    #[error("cgroup {path} does not exist: create it first (or the container was already deleted)")]
    Missing {
        /// The directory.
        path: PathBuf,
    },

    /// A line of /proc/self/mountinfo or /proc/self/cgroup could not be parsed.
    #[error("cannot parse line {line:?} of {file}: {problem}")]
    Parse {
        /// The file that was parsed.
        file: PathBuf,
        /// The offending line.
        line: String,
        /// What is wrong with it.
        problem: String,
    },

    /// The content of a cgroup file is not what the kernel documents.
    #[error("unexpected content {content:?} in {path}: {problem}")]
    BadContent {
        /// The file.
        path: PathBuf,
        /// What was read.
        content: String,
        /// What is wrong with it.
        problem: String,
    },

    /// No cgroup filesystem is mounted.
    #[error(
        "no cgroup filesystem is mounted according to /proc/self/mountinfo; mount one, for example \
         `mount -t cgroup2 none /sys/fs/cgroup`"
    )]
    NoCgroupMounts,

    /// The calling process has no cgroup in a mounted hierarchy (needed for relative cgroupsPath).
    #[error(
        "/proc/self/cgroup has no entry for the cgroup hierarchy mounted at {mount_point} ({hierarchy}); \
         use an absolute linux.cgroupsPath"
    )]
    NotInHierarchy {
        /// The hierarchy's mount point.
        mount_point: PathBuf,
        /// Its controllers, or "cgroup2".
        hierarchy: String,
    },

    /// linux.cgroupsPath or the container id cannot name a cgroup.
    #[error("invalid cgroup path {path:?}: {problem}")]
    InvalidPath {
        /// The path or id as given.
        path: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A resource is asked for, but the controller that enforces it is not available on this host.
    #[error(
        "cannot apply linux.resources.{resource}: the {controller} cgroup controller is not available \
         for {cgroup} ({detail}); {fix}"
    )]
    ControllerMissing {
        /// The resource in config.json, e.g. `memory.limit`.
        resource: String,
        /// The controller, e.g. `memory`.
        controller: String,
        /// The container's cgroup path.
        cgroup: PathBuf,
        /// Why it is missing.
        detail: String,
        /// How to fix it.
        fix: String,
    },

    /// A resource exists in the spec but this cgroup version has no way to apply it.
    #[error("cannot apply linux.resources.{resource} to {cgroup}: {problem}; {fix}")]
    Unsupported {
        /// The resource in config.json.
        resource: String,
        /// The container's cgroup path.
        cgroup: PathBuf,
        /// Why it cannot be applied.
        problem: String,
        /// How to fix it.
        fix: String,
    },

    /// A resource value is out of range or inconsistent with another one.
    #[error("invalid linux.resources.{resource} value {value}: {problem}")]
    InvalidValue {
        /// The resource in config.json.
        resource: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },

    /// Neither a v1 freezer hierarchy nor cgroup.freeze of cgroup v2 is available.
    #[error(
        "cannot freeze or thaw {cgroup}: no freezer is available (no v1 freezer hierarchy, no \
         cgroup.freeze in cgroup v2); mount the freezer controller, e.g. \
         `mount -t cgroup -o freezer freezer /sys/fs/cgroup/freezer`"
    )]
    NoFreezer {
        /// The container's cgroup path.
        cgroup: PathBuf,
    },

    /// The freezer did not reach the wanted state in time.
    #[error(
        "{path} did not become {wanted} within {waited_ms} ms (last state {last:?}); a process may be \
         stuck in uninterruptible sleep (state D in /proc/PID/status): retry later"
    )]
    FreezeTimeout {
        /// The file that was polled.
        path: PathBuf,
        /// The wanted state.
        wanted: String,
        /// What was last read.
        last: String,
        /// How long it was polled.
        waited_ms: u64,
    },

    /// A process could not be moved into the cgroup.
    #[error("failed to move process {pid} into {path}: {err}{hint}")]
    AddPid {
        /// The process.
        pid: i32,
        /// The cgroup.procs file.
        path: PathBuf,
        /// The I/O error.
        err: io::Error,
        /// Explanation and fix, starting with "; " (empty when there is none).
        hint: String,
    },

    /// A signal could not be sent to a process of the cgroup.
    #[error("failed to send signal {signal} to process {pid} of cgroup {cgroup}: {err}")]
    Signal {
        /// The process.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The container's cgroup path.
        cgroup: PathBuf,
        /// The errno.
        err: nix::errno::Errno,
    },

    /// A device-controller eBPF program could not be loaded or attached (cgroup v2).
    #[error("failed to {op} the device eBPF program for {path}: {err}{log}")]
    Bpf {
        /// The cgroup directory.
        path: PathBuf,
        /// `load` or `attach`.
        op: String,
        /// The I/O error.
        err: io::Error,
        /// The verifier log, starting with "; " (empty when there is none).
        log: String,
    },
}

/// A `; `-prefixed explanation for an errno returned by a cgroup file write.
pub(crate) fn write_hint(err: &io::Error, file: &str) -> String {
    match err.raw_os_error() {
        Some(libc::ENOENT) => "; the file does not exist: the controller is not enabled for this cgroup or not \
             supported by this kernel"
            .to_string(),
        Some(libc::EINVAL) => {
            format!("; the kernel rejected the value for {file}: check its range")
        }
        Some(libc::EBUSY) => "; the cgroup is busy (processes or child cgroups prevent the change)".to_string(),
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "; permission denied: run hako as root with CAP_SYS_ADMIN".to_string()
        }
        Some(libc::EOPNOTSUPP) => "; the kernel does not support this here (a deprecated interface, or a \
             device without the I/O scheduler it needs, e.g. bfq for per-device weights)"
            .to_string(),
        _ => String::new(),
    }
}
