//! `delete`: stop what still runs (with --force), release every resource, run poststop hooks, remove the state.

use anyhow::{bail, Result};
use hako_runtime::state::{StateError, Status};
use hako_runtime::ContainerId;

use super::Ctx;

pub(crate) fn delete(ctx: &Ctx, id: &str, force: bool) -> Result<()> {
    let cid = ContainerId::parse(id)?;
    let locked = match ctx.store.lock(&cid) {
        Ok(l) => l,
        // As runc: forcing the deletion of what is not there succeeds (containerd relies on it).
        Err(StateError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let Some(state) = locked.load()? else {
        // create died before it wrote any state: there is nothing but the directory.
        locked.remove()?;
        return Ok(());
    };
    let backend = ctx.backend(&state);
    let status = backend.status(&state);
    if status != Status::Stopped && !force {
        bail!("container {id} is {}: stop it first (hako kill {id} KILL) or delete it with --force", status.as_str());
    }
    backend.cleanup(&state).map_err(|e| anyhow::anyhow!(e))?;
    if state.status != Status::Creating {
        if let Some(hooks) = state.hooks.as_ref().and_then(|h| h.poststop().clone()) {
            if let Err(e) = hako_runtime::hooks::run("poststop", &hooks, &state.oci_json(Status::Stopped).to_string()) {
                tracing::warn!("container {id}: {e}");
            }
        }
    }
    locked.remove()?;
    Ok(())
}
