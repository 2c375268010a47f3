//! Servers the tests start on a free loopback port (a registry cannot be handed a listening socket): the
//! port is free when it is chosen, but another test may take it before the server binds it. A server is
//! ready when the listening socket on its port is its own (seen in /proc), not merely when something
//! answers there; one that lost the race exits and is started again on another port.

use std::fs;
use std::net::TcpListener;
use std::process::Child;
use std::time::{Duration, Instant};

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local_addr").port()
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port` (or on every address).
fn listens(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; st 0A is LISTEN; field 9 is the socket's inode.
            let Some(local) = f.get(1) else { continue };
            let Some((_, p)) = local.rsplit_once(':') else { continue };
            if u16::from_str_radix(p, 16).ok() == Some(port) && f.get(3) == Some(&"0A") {
                if let Some(inode) = f.get(9) {
                    inodes.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|e| fs::read_link(e.path()).is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str())))
}

/// Starts `spawn(port)` on a free port and waits until it listens there itself; starts it again on another
/// port when it exits first (its port was taken). Panics after 30 s or 5 tries.
pub(crate) fn serve_on_a_free_port(what: &str, mut spawn: impl FnMut(u16) -> Child) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = spawn(port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if listens(child.id(), port) {
                return (child, port);
            }
            if child.try_wait().expect("try_wait").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not listen on port {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{what} exited before listening, five times (is its configuration valid?)");
}
