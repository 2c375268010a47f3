//! `create`, `start` and `run`.

use anyhow::{Context, Result};
use hako_runtime::bundle::Bundle;
use hako_runtime::isolation::CreateOptions;
use hako_runtime::state::{State, Status};
use hako_runtime::ContainerId;

use super::{require, write_pid_file, Ctx};
use crate::cli::{CreateArgs, CreateFlags, RunArgs};
use crate::console;

fn options(f: &CreateFlags, foreground: bool) -> CreateOptions {
    // Socket activation: fds passed with LISTEN_FDS are preserved too, as runc does.
    let listen: u32 = std::env::var("LISTEN_FDS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    CreateOptions {
        console_socket: f.console_socket.clone(),
        no_pivot: f.no_pivot,
        no_new_keyring: f.no_new_keyring,
        preserve_fds: f.preserve_fds + listen,
        foreground,
        stdio: None,
    }
}

/// Creates the container and returns it still locked; on failure its state directory is gone again.
fn create_inner(
    ctx: &Ctx,
    id: &str,
    f: &CreateFlags,
    foreground: bool,
) -> Result<(hako_runtime::state::Locked, State, hako_runtime::isolation::Spawned)> {
    let id = ContainerId::parse(id)?;
    let bundle = Bundle::load(&f.bundle)?;
    let terminal = bundle.spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    if foreground && terminal && f.console_socket.is_none() {
        console::require_terminal_stdin("process.terminal is true", "set process.terminal to false")?;
    }
    let mode = super::isolation::choose(&bundle.spec, ctx.store.root())?;
    let dir = ctx.store.create(&id)?;
    let backend = super::isolation::backend(mode);
    match backend.create(&dir, &bundle, &options(f, foreground)) {
        Ok((state, spawned)) => {
            if let Some(p) = &f.pid_file {
                if let Err(e) = write_pid_file(p, spawned.pid) {
                    let _ = backend.cleanup(&state);
                    let _ = dir.remove();
                    return Err(e);
                }
            }
            Ok((dir, state, spawned))
        }
        Err(e) => {
            let _ = dir.remove();
            Err(anyhow::anyhow!(e)).with_context(|| format!("container {id}"))
        }
    }
}

pub(crate) fn create(ctx: &Ctx, a: &CreateArgs) -> Result<()> {
    create_inner(ctx, &a.id, &a.flags, false).map(drop)
}

/// Lets the created process run, then runs poststart hooks (their failure is a warning, per runtime-spec).
fn start_locked(ctx: &Ctx, locked: &hako_runtime::state::Locked, state: &mut State) -> Result<()> {
    let backend = ctx.backend(state);
    require(state, backend.status(state), &[Status::Created], "start it")?;
    backend.start(locked, state).map_err(|e| anyhow::anyhow!(e))?;
    state.status = Status::Running;
    locked.save(state)?;
    if let Some(hooks) = state.hooks.as_ref().and_then(|h| h.poststart().clone()) {
        if let Err(e) = hako_runtime::hooks::run("poststart", &hooks, &state.oci_json(Status::Running).to_string()) {
            tracing::warn!("container {}: {e}", state.id);
        }
    }
    Ok(())
}

pub(crate) fn start(ctx: &Ctx, id: &str) -> Result<()> {
    let (locked, mut state) = ctx.locked(id)?;
    start_locked(ctx, &locked, &mut state)
}

pub(crate) fn run(ctx: &Ctx, a: &RunArgs) -> Result<i32> {
    if a.detach {
        create_inner(ctx, &a.id, &a.flags, false)?;
        start(ctx, &a.id)?;
        return Ok(0);
    }
    console::become_subreaper()?;
    let (locked, mut state, spawned) = create_inner(ctx, &a.id, &a.flags, true)?;
    let sfd = console::block_signals()?;
    let started = start_locked(ctx, &locked, &mut state);
    // Other commands (kill, state, exec) may reach the container while it runs.
    drop(locked);
    let code = match started {
        Ok(()) => console::wait(spawned.pid, sfd, spawned.console)?,
        Err(e) => {
            let _ = super::delete::delete(ctx, &a.id, true);
            return Err(e);
        }
    };
    if !a.keep {
        super::delete::delete(ctx, &a.id, true)?;
    }
    Ok(code)
}
