//! The `hako` binary: parses the command line, opens the state store, and runs one command.
//!
//! `hako init` (the container's init, started from a sealed copy of this binary) is dispatched before anything
//! else so that it pays for no argument parsing or logging setup.

mod cli;
mod commands;
mod console;
mod logging;

use clap::Parser;

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "init")
        && std::env::var_os(hako_linux::init::INIT_FD_ENV).is_some()
    {
        hako_linux::init::main();
    }
    let cli = cli::Cli::parse();
    let to_file = cli.log.is_some();
    if let Err(e) = logging::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("hako: {e}");
        std::process::exit(1);
    }
    match commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = chain(&e);
            logging::report_error(&msg, to_file);
            std::process::exit(1);
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text an outer message already contains.
fn chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}
