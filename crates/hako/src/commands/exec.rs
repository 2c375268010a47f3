//! `exec`: another process in a running container, from `--process` or from the container's own process with
//! the flags applied over it (as runc does).

use anyhow::{bail, Context, Result};
use hako_runtime::isolation::ExecOptions;
use hako_runtime::state::Status;
use oci_spec::runtime::{Capability, Process};

use super::{require, write_pid_file, Ctx};
use crate::cli::ExecArgs;
use crate::console;

fn build_process(a: &ExecArgs, base: Option<Process>) -> Result<Process> {
    if let Some(path) = &a.process {
        let text = std::fs::read(path).with_context(|| format!("reading process file {}", path.display()))?;
        let p: Process =
            serde_json::from_slice(&text).with_context(|| format!("invalid process file {}", path.display()))?;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            bail!("process file {}: args is empty: name the program to run", path.display());
        }
        return Ok(p);
    }
    if a.args.is_empty() {
        bail!("exec needs a command: hako exec ID COMMAND [ARG...] (or --process FILE)");
    }
    let mut p = base.unwrap_or_default();
    p.set_args(Some(a.args.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &a.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(u) = &a.user {
        let mut user = p.user().clone();
        let (uid, gid) = u.split_once(':').map_or((u.as_str(), None), |(a, b)| (a, Some(b)));
        user.set_uid(uid.parse().with_context(|| format!("--user {u}: use a numeric uid[:gid]"))?);
        if let Some(g) = gid {
            user.set_gid(g.parse().with_context(|| format!("--user {u}: use a numeric uid[:gid]"))?);
        }
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let cap: Capability = hako_linux::capabilities::parse(name, "--cap")?;
            let mut b = caps.bounding().clone().unwrap_or_default();
            b.insert(cap);
            caps.set_bounding(Some(b));
            let mut e = caps.effective().clone().unwrap_or_default();
            e.insert(cap);
            caps.set_effective(Some(e));
            let mut pm = caps.permitted().clone().unwrap_or_default();
            pm.insert(cap);
            caps.set_permitted(Some(pm));
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(x) = &a.apparmor {
        p.set_apparmor_profile(Some(x.clone()));
    }
    if let Some(x) = &a.process_label {
        p.set_selinux_label(Some(x.clone()));
    }
    Ok(p)
}

pub(crate) fn exec(ctx: &Ctx, a: &ExecArgs) -> Result<i32> {
    let foreground = !a.detach;
    if foreground {
        console::become_subreaper()?;
    }
    let (locked, state) = ctx.locked(&a.id)?;
    let backend = ctx.backend(&state);
    require(&state, backend.status(&state), &[Status::Created, Status::Running], "exec in it")?;
    let config = locked.load_config()?;
    let process = build_process(a, config.process().clone())?;
    if foreground && process.terminal().unwrap_or(false) && a.console_socket.is_none() {
        match &a.process {
            Some(_) => console::require_terminal_stdin("process.terminal is true", "set it to false")?,
            None => console::require_terminal_stdin("exec --tty asks for a terminal", "leave out --tty")?,
        }
    }
    let opts = ExecOptions {
        process,
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        foreground,
        stdio: None,
    };
    let sfd = if foreground { Some(console::block_signals()?) } else { None };
    let spawned = backend
        .exec(&state, &config, &opts)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("exec in container {}", state.id))?;
    drop(locked);
    if let Some(p) = &a.pid_file {
        write_pid_file(p, spawned.pid)?;
    }
    match sfd {
        Some(sfd) => console::wait(spawned.pid, sfd, spawned.console),
        None => Ok(0),
    }
}
