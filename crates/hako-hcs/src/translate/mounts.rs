//! OCI `mounts` for Windows containers (directory mappings and named pipes) and for Linux
//! containers (host directories shared over Plan 9, other mounts forwarded).
//!
//! Windows rules (runtime-spec `config.md`): destinations absolute and not nested, sources
//! local (no UNC paths), `ro` honoured; named pipes map `\\.\pipe\A` to `\\.\pipe\B` and need
//! build 16299 (RS3). Single files cannot be mapped, and HCS does not follow symlinks in file
//! paths: the Windows backend checks and resolves sources before translating (this module
//! cannot see the host's file system).

use crate::oci::{Mount, Spec};
use crate::osversion::builds;

use super::paths;
use super::{Rule, SpecError};

/// A Windows container mount, before it is placed on the host or in a utility VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WcowMount {
    /// A host directory mapped to `container_path`.
    Directory {
        /// The host directory.
        source: String,
        /// Where it appears.
        container_path: String,
        /// Read-only.
        read_only: bool,
    },
    /// A host named pipe mapped into the container.
    Pipe {
        /// `\\.\pipe\NAME` on the host.
        source: String,
        /// The pipe name in the container, without `\\.\pipe\`.
        container_pipe_name: String,
    },
}

fn field(i: usize, member: &str) -> String {
    format!("mounts[{}].{}", i, member)
}

fn check_options(i: usize, m: &Mount, warnings: &mut Vec<String>) {
    for o in &m.options {
        let lower = o.to_ascii_lowercase();
        if !matches!(lower.as_str(), "ro" | "rw" | "bind" | "rbind") {
            warnings.push(format!("{}: option {:?} has no meaning on Windows and was ignored", field(i, "options"), o));
        }
    }
}

/// Validates and classifies the mounts of a Windows container.
pub(crate) fn wcow_mounts(
    spec: &Spec,
    host_build: u32,
    warnings: &mut Vec<String>,
) -> Result<Vec<WcowMount>, SpecError> {
    let mut out = Vec::new();
    let mut dests: Vec<(usize, String)> = Vec::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        if m.destination.is_empty() {
            return Err(SpecError::new(
                Rule::MountDestination,
                field(i, "destination"),
                "is empty",
                "give the path inside the container",
            ));
        }
        if m.source.is_empty() {
            return Err(SpecError::new(
                Rule::MountSource,
                field(i, "source"),
                "is empty",
                "give the host directory or pipe",
            ));
        }
        match m.mount_type.as_str() {
            "" | "bind" => {}
            "virtual-disk" | "physical-disk" | "extensible-virtual-disk" => {
                return Err(SpecError::new(
                    Rule::MountType,
                    field(i, "type"),
                    format!("{:?} (a disk mount) is not supported by hako yet", m.mount_type),
                    "map a host directory instead (type empty)",
                ))
            }
            other => {
                return Err(SpecError::new(
                    Rule::MountType,
                    field(i, "type"),
                    format!("{:?} is not a Windows mount type", other),
                    "leave type empty (or \"bind\") for a host directory or named pipe",
                ))
            }
        }
        check_options(i, m, warnings);
        if paths::is_pipe(&m.destination) {
            if !paths::is_pipe(&m.source) {
                return Err(SpecError::new(
                    Rule::NamedPipe,
                    field(i, "source"),
                    format!("{:?} is not a named pipe, but the destination is one", m.source),
                    r"give a host pipe such as \\.\pipe\docker_engine",
                ));
            }
            if host_build < builds::RS3 {
                return Err(SpecError::new(
                    Rule::NamedPipe,
                    field(i, "destination"),
                    format!("named pipe mounts need build {} (1709) or newer; the host is {}", builds::RS3, host_build),
                    "update the host or drop the pipe mount",
                ));
            }
            out.push(WcowMount::Pipe {
                source: m.source.clone(),
                container_pipe_name: m.destination[paths::PIPE_PREFIX.len()..].to_string(),
            });
            continue;
        }
        if paths::is_pipe(&m.source) {
            return Err(SpecError::new(
                Rule::NamedPipe,
                field(i, "destination"),
                format!("{:?} is not a named pipe, but the source is one", m.destination),
                r"map a pipe to a pipe path such as \\.\pipe\NAME",
            ));
        }
        if !paths::is_absolute_drive_path(&m.destination) {
            return Err(SpecError::new(
                Rule::MountDestination,
                field(i, "destination"),
                format!("{:?} is not an absolute Windows path", m.destination),
                r"use a path with a drive letter such as C:\data",
            ));
        }
        if paths::normalize(&m.destination).len() <= 3 {
            return Err(SpecError::new(
                Rule::MountDestination,
                field(i, "destination"),
                format!("{:?} is a drive root, which cannot be mapped over", m.destination),
                r"map to a folder such as C:\data",
            ));
        }
        if m.source.starts_with("sandbox://") || m.source.starts_with("uvm://") {
            return Err(SpecError::new(
                Rule::MountSource,
                field(i, "source"),
                format!("{:?} (an hcsshim utility VM mount) is not supported by hako", m.source),
                "map a host directory",
            ));
        }
        if paths::is_unc(&m.source) {
            return Err(SpecError::new(
                Rule::MountSource,
                field(i, "source"),
                format!("{:?} is a UNC network path; Windows containers can only map local directories", m.source),
                "copy the data to a local folder, or mount the share inside the container",
            ));
        }
        if !paths::is_absolute_drive_path(&m.source) {
            return Err(SpecError::new(
                Rule::MountSource,
                field(i, "source"),
                format!("{:?} is not an absolute local Windows path", m.source),
                r"give a host directory such as C:\data",
            ));
        }
        let norm = paths::normalize(&m.destination);
        for (j, other) in &dests {
            if *other == norm {
                return Err(SpecError::new(
                    Rule::MountNested,
                    field(i, "destination"),
                    format!("{:?} is also the destination of mounts[{}]", m.destination, j),
                    "give each mount its own destination",
                ));
            }
            if paths::is_nested(other, &norm) || paths::is_nested(&norm, other) {
                return Err(SpecError::new(
                    Rule::MountNested,
                    field(i, "destination"),
                    format!(
                        "{:?} and the destination of mounts[{}] are nested, which Windows containers do not support",
                        m.destination, j
                    ),
                    "use destinations that are not inside one another",
                ));
            }
        }
        dests.push((i, norm));
        out.push(WcowMount::Directory {
            source: m.source.clone(),
            container_path: m.destination.clone(),
            read_only: m.is_read_only(),
        });
    }
    Ok(out)
}

/// A Linux container mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LcowMount {
    /// A host directory shared into the VM over Plan 9, then bind-mounted.
    HostDirectory {
        /// Index in `mounts`.
        index: usize,
        /// The host directory.
        source: String,
        /// Read-only.
        read_only: bool,
    },
    /// Anything else (tmpfs, proc, a guest path): forwarded unchanged.
    Forwarded,
}

/// Validates and classifies the mounts of a Linux container.
pub(crate) fn lcow_mounts(spec: &Spec) -> Result<Vec<LcowMount>, SpecError> {
    let mut out = Vec::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        if !m.destination.starts_with('/') {
            return Err(SpecError::new(
                Rule::MountDestination,
                field(i, "destination"),
                format!("{:?} is not an absolute Linux path", m.destination),
                "use a path such as /data",
            ));
        }
        let is_bind = m.mount_type == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind");
        if paths::is_unc(&m.source) {
            return Err(SpecError::new(
                Rule::MountSource,
                field(i, "source"),
                format!("{:?} is a UNC network path; only local directories can be shared", m.source),
                "copy the data to a local folder",
            ));
        }
        if paths::is_absolute_drive_path(&m.source) {
            out.push(LcowMount::HostDirectory { index: i, source: m.source.clone(), read_only: m.is_read_only() });
        } else if is_bind && !m.source.starts_with('/') {
            return Err(SpecError::new(
                Rule::MountSource,
                field(i, "source"),
                format!("{:?} is neither a Windows host directory nor a path in the utility VM", m.source),
                r"give a host directory such as C:\data",
            ));
        } else {
            out.push(LcowMount::Forwarded);
        }
    }
    Ok(out)
}
