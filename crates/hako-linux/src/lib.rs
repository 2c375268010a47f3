//! Process isolation on Linux: the container shares the host kernel and is fenced by namespaces, cgroups,
//! capabilities, seccomp and LSM labels. [`ProcessIsolation`] implements [`hako_runtime::isolation::Isolation`].
//!
//! Map: [`spawn`] (parent side of create/exec) talks over [`channel`] to [`init`] (inside the container), which
//! uses [`namespaces`], [`rootfs`] (+ [`mountopts`]), [`tty`], [`process`], [`capabilities`], [`seccomp`] and
//! [`lsm`]. Raw system calls are in [`sys`]. cgroups are the `hako-cgroups` crate. The VM agent will reuse
//! [`init`] inside the guest, so nothing here may assume it runs on the host that called `hako`.
#![warn(missing_docs)]

pub mod capabilities;
pub mod channel;
pub mod features;
pub mod init;
pub mod lsm;
pub mod mountopts;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spawn;
pub mod sys;
pub mod tty;

mod backend;

pub use backend::{Checked, ProcessIsolation};
