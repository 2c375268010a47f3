//! hako's container model, shared by every isolation backend and by the `hako` binary.
//!
//! What lives here: container ids ([`id`]), loading and checking an OCI bundle ([`bundle`]), the on-disk state
//! store with its per-container locking ([`state`]), OCI hooks ([`hooks`]), signal names ([`signal`]) and the
//! [`isolation::Isolation`] trait that process isolation (hako-linux) implements and VM isolation will.
//! What does not: anything that forks, mounts or touches namespaces and cgroups.
#![warn(missing_docs)]

pub mod bundle;
pub mod console;
pub mod hooks;
pub mod id;
pub mod isolation;
pub mod procfs;
pub mod signal;
pub mod state;

pub use id::ContainerId;
