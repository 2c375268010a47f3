//! `kill`, `pause` and `resume`.

use anyhow::Result;
use hako_runtime::state::Status;

use super::{require, Ctx};
use crate::cli::KillArgs;

pub(crate) fn kill(ctx: &Ctx, a: &KillArgs) -> Result<()> {
    let sig = hako_runtime::signal::parse(&a.signal)?;
    let (_locked, state) = ctx.locked(&a.id)?;
    let backend = ctx.backend(&state);
    let status = backend.status(&state);
    if a.all && status == Status::Stopped {
        // As runc (1.2 and later) does: containerd's shim sends `kill --all ID 9` after every exit and must not
        // see an error, or the exit is never reported. What the container left running (when it shared a pid
        // namespace) still gets the signal; the backend never signals the recorded pid of a stopped init.
        tracing::debug!("container {}: stopped; kill --all signals only what is left in it", state.id);
        return backend.kill(&state, sig, true).map_err(|e| anyhow::anyhow!(e));
    }
    require(&state, status, &[Status::Created, Status::Running, Status::Paused], "send it a signal")?;
    backend.kill(&state, sig, a.all).map_err(|e| anyhow::anyhow!(e))
}

pub(crate) fn pause(ctx: &Ctx, id: &str) -> Result<()> {
    let (locked, mut state) = ctx.locked(id)?;
    let backend = ctx.backend(&state);
    require(&state, backend.status(&state), &[Status::Running], "pause it")?;
    backend.pause(&state).map_err(|e| anyhow::anyhow!(e))?;
    state.status = Status::Paused;
    Ok(locked.save(&state)?)
}

pub(crate) fn resume(ctx: &Ctx, id: &str) -> Result<()> {
    let (locked, mut state) = ctx.locked(id)?;
    let backend = ctx.backend(&state);
    require(&state, backend.status(&state), &[Status::Paused], "resume it")?;
    backend.resume(&state).map_err(|e| anyhow::anyhow!(e))?;
    state.status = Status::Running;
    Ok(locked.save(&state)?)
}
