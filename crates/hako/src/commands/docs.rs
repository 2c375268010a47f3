//! `completion` and `man`: shell completion scripts (clap_complete) and man pages (clap_mangen), both
//! generated from the clap definitions in `cli.rs`, so they cannot drift from the commands.

use anyhow::{bail, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionArgs, ManArgs};

pub(crate) fn completion(a: &CompletionArgs) -> Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "hako", &mut std::io::stdout());
    Ok(())
}

/// The man page of `hako` or of the subcommand that `path` names (`["image", "run"]`).
pub(crate) fn man_page(path: &[String]) -> Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut name = String::from("hako");
    for part in path {
        let Some(sub) = cmd.find_subcommand(part).filter(|s| !s.is_hide_set()).cloned() else {
            let known: Vec<String> =
                cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_string()).collect();
            bail!("`{name}` has no subcommand {part:?}: it has {} (see `{name} --help`)", known.join(", "));
        };
        name = format!("{name}-{}", sub.get_name());
        cmd = sub.display_name(name.clone()).bin_name(name.replace('-', " "));
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}

pub(crate) fn man(a: &ManArgs) -> Result<()> {
    use std::io::Write;
    std::io::stdout().write_all(&man_page(&a.command)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_name_their_subcommands() {
        let top = String::from_utf8(man_page(&[]).unwrap()).unwrap();
        assert!(top.contains(".TH hako") && top.contains("image") && top.contains("create"), "{top}");
        let run = String::from_utf8(man_page(&["image".into(), "run".into()]).unwrap()).unwrap();
        assert!(run.contains("hako\\-image\\-run") && run.contains("\\-\\-isolation"), "{run}");
        let e = man_page(&["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("\"nope\"") && e.contains("image"), "{e}");
    }
}
