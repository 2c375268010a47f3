//! One module per group of subcommands; [`run`] dispatches. Every command that changes a container holds its
//! state-directory lock for the whole operation.

mod compat;
mod create;
mod delete;
mod docs;
mod exec;
mod features;
mod image;
mod image_run;
mod info;
mod inspect;
pub(crate) mod isolation;
mod k8s;
mod signal;
mod spec;
mod update;

use std::path::Path;

use anyhow::{bail, Context, Result};
use hako_runtime::isolation::Isolation;
use hako_runtime::state::{Locked, State, Status, Store};
use hako_runtime::ContainerId;

use crate::cli::{Cli, Command, ImageCommand};

/// What every container command needs.
pub(crate) struct Ctx {
    pub(crate) store: Store,
}

impl Ctx {
    fn open(root: &Path) -> Result<Ctx> {
        Ok(Ctx { store: Store::open(root)? })
    }

    /// The backend that runs `state`.
    pub(crate) fn backend(&self, state: &State) -> Box<dyn Isolation> {
        isolation::backend(&state.isolation)
    }

    /// Locks `id` and loads its state, which must exist.
    pub(crate) fn locked(&self, id: &str) -> Result<(Locked, State)> {
        let id = ContainerId::parse(id)?;
        let locked = self.store.lock(&id)?;
        let state = locked.load_existing()?;
        Ok((locked, state))
    }

    /// The live status of a container.
    pub(crate) fn status(&self, state: &State) -> Status {
        self.backend(state).status(state)
    }
}

/// Fails unless `status` is one of `allowed`, naming the container, its status and what was asked.
pub(crate) fn require(state: &State, status: Status, allowed: &[Status], what: &str) -> Result<()> {
    if !allowed.contains(&status) {
        let want: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        bail!("container {} is {}: cannot {what} (it must be {})", state.id, status.as_str(), want.join(" or "));
    }
    Ok(())
}

/// Writes `pid` to `path` atomically, as runc does.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp =
        path.with_file_name(format!(".{}.tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    std::fs::write(&tmp, pid.to_string()).with_context(|| format!("writing pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing pid file {}", path.display()))
}

/// Runs the command; returns the process exit code.
pub(crate) fn run(cli: Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup: hako has no systemd cgroup driver and manages cgroups through cgroupfs only; drop the flag (and set SystemdCgroup = false in containerd's runtime options, cgroup_manager = \"cgroupfs\" in podman's)");
    }
    let prints_only = match &cli.command {
        Command::Features
        | Command::Info
        | Command::HcsDoc(_)
        | Command::Completion(_)
        | Command::Man(_)
        | Command::Compat(_)
        | Command::State(_)
        | Command::Ps(_)
        | Command::List(_) => true,
        Command::Image(a) => matches!(a.command, ImageCommand::Ls(_) | ImageCommand::Inspect(_)),
        _ => false,
    };
    if prints_only {
        crate::console::end_quietly_on_a_closed_stdout();
    }
    match cli.command {
        Command::Spec(a) => spec::spec(&a).map(|_| 0),
        Command::Features => features::features().map(|_| 0),
        Command::Info => info::info().map(|_| 0),
        Command::HcsDoc(a) => info::hcs_doc(&a).map(|_| 0),
        Command::Image(a) => image::image(&a, &cli.root),
        Command::Completion(a) => docs::completion(&a).map(|_| 0),
        Command::Man(a) => docs::man(&a).map(|_| 0),
        Command::Compat(a) => compat::compat(&a),
        Command::K8s(crate::cli::K8sCommand::Runtimeclass(a)) => k8s::runtimeclass(&a),
        Command::Init => {
            bail!("`hako init` is internal: it runs inside a container being created; use `hako create` or `hako run`")
        }
        Command::VmSupervisor { dir } => Ok(hako_vm::supervisor_main(&dir)),
        Command::VmShadow { dir, opfile, vm_dir } => Ok(hako_vm::shadow_main(&dir, &opfile, vm_dir.as_deref())),
        command => {
            let ctx = Ctx::open(&cli.root)?;
            match command {
                Command::Create(a) => create::create(&ctx, &a).map(|_| 0),
                Command::Run(a) => create::run(&ctx, &a),
                Command::Start(a) => create::start(&ctx, &a.id).map(|_| 0),
                Command::State(a) => inspect::state(&ctx, &a.id).map(|_| 0),
                Command::Kill(a) => signal::kill(&ctx, &a).map(|_| 0),
                Command::Delete(a) => delete::delete(&ctx, &a.id, a.force).map(|_| 0),
                Command::Exec(a) => exec::exec(&ctx, &a),
                Command::Ps(a) => inspect::ps(&ctx, &a).map(|_| 0),
                Command::List(a) => inspect::list(&ctx, &a).map(|_| 0),
                Command::Pause(a) => signal::pause(&ctx, &a.id).map(|_| 0),
                Command::Resume(a) => signal::resume(&ctx, &a.id).map(|_| 0),
                Command::Events(a) => inspect::events(&ctx, &a).map(|_| 0),
                Command::Update(a) => update::update(&ctx, &a).map(|_| 0),
                Command::Spec(_)
                | Command::Features
                | Command::Info
                | Command::HcsDoc(_)
                | Command::Image(_)
                | Command::Completion(_)
                | Command::Man(_)
                | Command::Compat(_)
                | Command::K8s(_)
                | Command::Init
                | Command::VmSupervisor { .. }
                | Command::VmShadow { .. } => unreachable!(),
            }
        }
    }
}
