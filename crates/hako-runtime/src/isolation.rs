//! The [`Isolation`] trait: what a backend (process isolation, VM isolation, HCS) does for each lifecycle
//! command. The `hako` binary owns argument parsing, locking and the state file's life; a backend owns
//! everything that runs the container and everything it must clean up.
//!
//! **Contract.** Every method is called with the container's state directory locked ([`crate::state::Locked`]).
//! `create` either returns a saved state with status `created`, or fails leaving nothing behind except the
//! state directory, which the caller removes. `cleanup` must succeed on any state a killed `create` left
//! (any prefix of its work), because `delete --force` relies on it.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxResources, Process};

use crate::bundle::Bundle;
use crate::state::{Locked, State, Status};

/// Errors crossing the trait: each backend has its own typed errors, boxed here.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Options of `create` and `run` that are not in config.json.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `--console-socket`: where to send the pty master when `process.terminal` is true.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`: chroot instead of pivot_root (for a rootfs on a ramfs).
    pub no_pivot: bool,
    /// `--no-new-keyring`: keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// `--preserve-fds`: how many fds above stderr (3, 4, ...) the container inherits.
    pub preserve_fds: u32,
    /// Set by `run` in the foreground: the caller will wait for the process as its subreaper.
    pub foreground: bool,
    /// stdin, stdout and stderr for the process, instead of the caller's own (the guest agent passes pipes).
    /// The caller keeps them open until create returns.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

/// Options of `exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The process to run, complete (from `--process` or built from flags over the container's process).
    pub process: Process,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// `--detach` was not given: the caller waits for the process as its subreaper.
    pub foreground: bool,
    /// stdin, stdout and stderr for the process, instead of the caller's own.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

/// What `create` and `exec` hand back.
#[derive(Debug)]
pub struct Spawned {
    /// Host pid of the process (the container's init for create).
    pub pid: i32,
    /// The pty master, when the process has a terminal and no `--console-socket` was given (foreground only):
    /// the caller relays it to its own stdio.
    pub console: Option<OwnedFd>,
}

/// One isolation backend.
pub trait Isolation {
    /// The name users give it ("process", "vm").
    fn name(&self) -> &'static str;

    /// Builds the container's environment and its held process; saves and returns the created state.
    fn create(&self, dir: &Locked, bundle: &Bundle, opts: &CreateOptions) -> Result<(State, Spawned), BoxError>;

    /// The live status of a container whose state was saved.
    fn status(&self, state: &State) -> Status;

    /// Lets the created process run (the caller checked that the status is `created`).
    fn start(&self, dir: &Locked, state: &State) -> Result<(), BoxError>;

    /// Sends `signal` to the init process, or with `all` to every process of the container. With `all` the
    /// container may be stopped: whatever of it still runs gets the signal, and nothing left is not an error.
    fn kill(&self, state: &State, signal: i32, all: bool) -> Result<(), BoxError>;

    /// Runs another process in the container; `config` is the config saved at create.
    fn exec(&self, state: &State, config: &oci_spec::runtime::Spec, opts: &ExecOptions) -> Result<Spawned, BoxError>;

    /// Freezes every process of the container.
    fn pause(&self, state: &State) -> Result<(), BoxError>;

    /// Thaws a paused container.
    fn resume(&self, state: &State) -> Result<(), BoxError>;

    /// Host pids of every process in the container.
    fn pids(&self, state: &State) -> Result<Vec<i32>, BoxError>;

    /// Resource usage in the `runc events --stats` data format.
    fn stats(&self, state: &State) -> Result<serde_json::Value, BoxError>;

    /// Changes the resource limits of a live container.
    fn update(&self, state: &State, resources: &LinuxResources) -> Result<(), BoxError>;

    /// Stops whatever still runs (SIGKILL) and releases every resource of the container (cgroups, VM, sockets).
    /// Must be idempotent and work on any partial state a killed `create` left.
    fn cleanup(&self, state: &State) -> Result<(), BoxError>;
}
