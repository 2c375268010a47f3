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
    let state = match locked.load() {
        Ok(Some(state)) => state,
        // create died before it wrote any state: there is nothing but the directory.
        Ok(None) => {
            locked.remove()?;
            return Ok(());
        }
        // Nothing in it can be trusted, so nothing is signalled; keeping it would only block the id forever.
        Err(e @ StateError::Corrupt { .. }) if force => {
            locked.remove()?;
            bail!("{e}; its state directory was removed, anything it named (processes, cgroup, VM) was not touched");
        }
        Err(e) => return Err(e.into()),
    };
    let backend = ctx.backend(&state);
    let status = backend.status(&state);
    if status != Status::Stopped && !force {
        bail!("container {id} is {}: stop it first (hako kill {id} KILL) or delete it with --force", status.as_str());
    }
    let poststop = || {
        if state.status != Status::Creating {
            if let Some(hooks) = state.hooks.as_ref().and_then(|h| h.poststop().clone()) {
                let json = state.oci_json(Status::Stopped).to_string();
                if let Err(e) = hako_runtime::hooks::run("poststop", &hooks, &json) {
                    tracing::warn!("container {id}: {e}");
                }
            }
        }
    };
    if let Err(e) = backend.cleanup(&state) {
        if !matches!(e.downcast_ref::<StateError>(), Some(StateError::Backend { .. })) {
            return Err(anyhow::anyhow!(e));
        }
        // The backend stopped what it could prove is the container's (its init, by pid and start time) and
        // touched nothing its data would have named. Keeping the directory would block the id forever, since no
        // later command can read it either.
        if !force {
            bail!("{e}: `hako delete --force {id}` stops what it can prove is the container's and removes its state");
        }
        poststop();
        locked.remove()?;
        bail!(
            "{e}: its state directory was removed and its init process killed; what only that data named (its \
             cgroup, a VM's supervisor and QEMU) was left as it is: look for the id {id} there"
        );
    }
    poststop();
    locked.remove()?;
    // A bundle `hako image run` wrote for this container goes with it.
    super::image_run::remove_bundle(&state)
}
