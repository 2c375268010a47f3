//! `hako-agent`: hako's guest agent. It is `/init` (pid 1) of the micro-VM that runs one VM-isolated
//! container (or a pod's containers): it sets up the guest ([`boot`]), finds the host's virtio-serial port
//! (`hako_proto::PORT_NAME`), says hello, and serves the [`hako_proto`] protocol ([`server`], [`ops`]),
//! creating containers with hako's process isolation (`hako_linux::ProcessIsolation`) inside the guest.
//!
//! Usage:
//! - `hako-agent` as pid 1: the VM's init; its state root is `/run/hako` (`state/`, `bundles/`).
//! - `hako-agent --port PATH [--state DIR]`: standalone, for development and tests, on any Linux host (as
//!   root). PATH is `-` for stdin (host to agent) and stdout (agent to host), a unix socket to connect to,
//!   or a character device or fifo opened read-write. DIR (default `/run/hako-agent`, apart from the host's
//!   own `/run/hako`) holds `state/` (container state) and `bundles/` (configs). The agent becomes a child subreaper; when the port closes or on
//!   SIGTERM/SIGINT it deletes every container it made and exits (pid 1 powers the VM off instead).
//! - `hako-agent init` with `_HAKO_INIT_FD` set: the container init that ProcessIsolation starts by
//!   re-executing this binary (in a VM, only an init that joins a pid namespace: one with a pid namespace of
//!   its own runs in a clone of the agent, `hako_linux::spawn::init_without_exec`).

mod boot;
mod log;
mod net;
mod ops;
mod port;
mod server;
mod sys;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use hako_proto::{Message, PORT_NAME, VERSION};

use crate::log::log;
use crate::port::Port;
use crate::server::Server;

const USAGE: &str = "usage: hako-agent                               (as pid 1 of hako's VM)\n       hako-agent --port PATH|- [--state DIR]   (standalone, for development)";

/// Command-line options.
#[derive(Debug, Default, PartialEq)]
struct Options {
    port: Option<PathBuf>,
    state: Option<PathBuf>,
}

fn parse(args: &[OsString]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value =
            |name: &str| it.next().map(PathBuf::from).ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.to_str() {
            Some("--port") => o.port = Some(value("--port")?),
            Some("--state") => o.state = Some(value("--state")?),
            Some("--version") => {
                println!("hako-agent {} (protocol {VERSION})", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            Some("--help" | "-h") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn hello() -> Message {
    Message::Hello { version: VERSION, agent: format!("hako-agent {}", env!("CARGO_PKG_VERSION")) }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "init") && std::env::var_os(hako_linux::init::INIT_FD_ENV).is_some() {
        hako_linux::init::main();
    }
    let opts = match parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hako-agent: {e}");
            std::process::exit(2);
        }
    };
    log::install();
    let pid1 = std::process::id() == 1;
    let default_root = if pid1 && opts.port.is_none() { "/run/hako" } else { "/run/hako-agent" };
    let root = opts.state.clone().unwrap_or_else(|| PathBuf::from(default_root));
    match (&opts.port, pid1) {
        (Some(path), _) => standalone(path, &root, pid1),
        (None, true) => vm(&root),
        (None, false) => {
            eprintln!("hako-agent: not running as pid 1 of a VM: pass --port PATH (a socket, a device, or - for stdin/stdout) to serve standalone\n{USAGE}");
            std::process::exit(2);
        }
    }
}

fn standalone(path: &std::path::Path, root: &std::path::Path, pid1: bool) {
    if let Err(e) = sys::become_subreaper() {
        eprintln!("hako-agent: cannot become a child subreaper: {e}");
        std::process::exit(1);
    }
    let port = match Port::open(path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hako-agent: {e}");
            std::process::exit(1);
        }
    };
    match start(port, root, pid1) {
        Ok(s) => s.serve(),
        Err(e) => {
            eprintln!("hako-agent: {e}");
            std::process::exit(1);
        }
    }
}

/// Sets up the server, then says hello (the host may send requests as soon as it has it).
fn start(port: Port, root: &std::path::Path, pid1: bool) -> Result<Server, String> {
    let mut s = Server::new(port, root, pid1).map_err(|e| e.to_string())?;
    s.port.hello(&hello()).map_err(|e| e.to_string())?;
    Ok(s)
}

fn vm(root: &std::path::Path) {
    // This binary is the VM's /init, busy while the VM lives, and the agent is single-threaded: a container's
    // init runs in a clone of the agent, without executing the binary again (hako_linux::spawn).
    hako_linux::spawn::init_without_exec();
    if let Err(e) = boot::setup() {
        log(format!("boot: {e}"));
    }
    let dev = match boot::find_port(PORT_NAME, Duration::from_secs(30)) {
        Ok(d) => d,
        Err(e) => {
            log(e.to_string());
            sys::power_off();
        }
    };
    let port = match std::fs::OpenOptions::new().read(true).write(true).open(&dev).map(|f| Port::from_fd(f.into())) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) | Err(e) => {
            log(format!("opening {}: {e}", dev.display()));
            sys::power_off();
        }
    };
    match start(port, root, true) {
        Ok(s) => s.serve(),
        Err(e) => log(e),
    }
    sys::power_off();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let a = |v: &[&str]| parse(&v.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(a(&[]).unwrap(), Options::default());
        assert_eq!(
            a(&["--port", "-", "--state", "/x"]).unwrap(),
            Options { port: Some("-".into()), state: Some("/x".into()) }
        );
        assert!(a(&["--port"]).unwrap_err().contains("needs a value"));
        assert!(a(&["--bogus"]).unwrap_err().contains("unknown argument"));
    }
}
