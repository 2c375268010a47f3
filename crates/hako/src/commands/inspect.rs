//! Read-only commands: `state`, `list`, `ps` and `events`.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hako_runtime::state::Status;
use hako_runtime::ContainerId;

use super::Ctx;
use crate::cli::{EventsArgs, Format, ListArgs, PsArgs};

pub(crate) fn state(ctx: &Ctx, id: &str) -> Result<()> {
    let id = ContainerId::parse(id)?;
    let state = ctx.store.peek(&id)?;
    let status = ctx.status(&state);
    println!("{}", serde_json::to_string_pretty(&state.oci_json(status))?);
    Ok(())
}

pub(crate) fn list(ctx: &Ctx, a: &ListArgs) -> Result<()> {
    let mut rows = Vec::new();
    for id in ctx.store.list()? {
        // A container removed while we list is simply not listed.
        let Ok(state) = ctx.store.peek(&id) else { continue };
        rows.push((ctx.status(&state), state));
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for (_, s) in &rows {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(());
    }
    match a.format {
        Format::Json => {
            let v: Vec<_> = rows
                .iter()
                .map(|(st, s)| {
                    serde_json::json!({
                        "ociVersion": s.oci_version, "id": s.id, "pid": if *st == Status::Stopped { 0 } else { s.pid },
                        "status": st.as_str(), "bundle": s.bundle, "rootfs": s.rootfs, "created": s.created,
                        "annotations": s.annotations, "owner": s.owner, "isolation": s.isolation,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        }
        Format::Table => {
            let mut table = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from).to_vec()];
            for (st, s) in &rows {
                let pid = if *st == Status::Stopped { 0 } else { s.pid };
                table.push(vec![
                    s.id.clone(),
                    pid.to_string(),
                    st.as_str().into(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    s.owner.clone(),
                ]);
            }
            print_table(&mut out, &table)?;
        }
    }
    Ok(())
}

fn print_table(out: &mut impl Write, rows: &[Vec<String>]) -> Result<()> {
    let cols = rows.first().map_or(0, |r| r.len());
    let widths: Vec<usize> = (0..cols).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, v)| if i + 1 == cols { v.clone() } else { format!("{v:<w$}", w = widths[i] + 3) })
            .collect();
        writeln!(out, "{}", line.concat())?;
    }
    Ok(())
}

pub(crate) fn ps(ctx: &Ctx, a: &PsArgs) -> Result<()> {
    let (_locked, state) = ctx.locked(&a.id)?;
    let backend = ctx.backend(&state);
    let pids = backend.pids(&state).map_err(|e| anyhow::anyhow!(e))?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args = if a.ps_args.is_empty() { vec!["-ef".to_string()] } else { a.ps_args.clone() };
    let out = std::process::Command::new("ps").args(&args).output().context("running ps(1); install procps")?;
    if !out.status.success() {
        bail!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column: pass ps arguments that print one")?;
    let wanted: HashSet<i32> = pids.into_iter().collect();
    println!("{header}");
    for line in lines {
        if line.split_whitespace().nth(col).and_then(|p| p.parse().ok()).is_some_and(|p| wanted.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}

/// Parses "5s", "500ms", "1m", "2" (seconds).
fn parse_duration(s: &str) -> Result<Duration> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().with_context(|| format!("--interval {s:?}: use a duration such as 5s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("--interval {s:?}: unknown unit {unit:?}: use ms, s, m or h"),
    };
    if secs <= 0.0 {
        bail!("--interval {s:?}: must be positive");
    }
    Ok(Duration::from_secs_f64(secs))
}

pub(crate) fn events(ctx: &Ctx, a: &EventsArgs) -> Result<()> {
    let interval = parse_duration(&a.interval)?;
    let id = ContainerId::parse(&a.id)?;
    let state = ctx.store.peek(&id)?;
    let backend = ctx.backend(&state);
    let mut out = std::io::stdout().lock();
    let mut last_oom: Option<u64> = None;
    loop {
        let status = backend.status(&state);
        if status == Status::Stopped {
            if a.stats {
                bail!("container {} is stopped: it has no statistics", state.id);
            }
            return Ok(());
        }
        let data = backend.stats(&state).map_err(|e| anyhow::anyhow!(e))?;
        let oom = data
            .pointer("/memory/oom_kill")
            .and_then(|v| v.as_u64())
            .or_else(|| data.pointer("/memory/failcnt").and_then(|v| v.as_u64()));
        if let (Some(prev), Some(now)) = (last_oom, oom) {
            if now > prev {
                writeln!(out, "{}", serde_json::json!({"type": "oom", "id": state.id}))?;
            }
        }
        last_oom = oom;
        writeln!(out, "{}", serde_json::json!({"type": "stats", "id": state.id, "data": data}))?;
        out.flush()?;
        if a.stats {
            return Ok(());
        }
        std::thread::sleep(interval);
        if ctx.store.peek(&id).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5x").unwrap_err().to_string().contains("unknown unit"));
        assert!(parse_duration("0s").is_err());
    }
}
