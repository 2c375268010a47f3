//! The shadow: the host process that stands for one process running in the VM (the container's own, or an
//! exec'd one). Engines wait for "the container's pid" as their child and talk to its stdio, so the shadow
//! owns the stdio the engine gave (pipes, or the slave of a pty whose master went to the console socket),
//! relays it over the supervisor to the agent, forwards the signals it receives, and exits with exactly the
//! process's exit status (128 + signal when the process was killed).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use hako_proto::{write_frame, Frame, Message, Op, Reply, Stdio};
use nix::sys::signal::{SigSet, Signal};

use crate::client::Client;
use crate::VmError;

/// The stream ids a shadow uses on its connection.
pub const STDIN: u32 = 1;
/// See [`STDIN`].
pub const STDOUT: u32 = 2;
/// See [`STDIN`].
pub const STDERR: u32 = 3;

/// The stdio of a shadow's process: all three streams, pty or not.
pub fn stdio(terminal: bool) -> Stdio {
    Stdio { terminal, stdin: Some(STDIN), stdout: Some(STDOUT), stderr: if terminal { None } else { Some(STDERR) } }
}

fn winsize() -> Option<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize struct.
    (unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Entry point of `hako vm-shadow DIR OPFILE`: `op` is the Create or Exec to send; `ready_fd` gets "ok PID" or
/// the error. Returns the exit code.
pub fn main(dir: &Path, op: Op, ready_fd: Option<i32>) -> i32 {
    let mut ready = ready_fd.map(crate::take_passed_fd);
    let mut say = |msg: &str| {
        if let Some(f) = ready.as_mut() {
            let _ = writeln!(f, "{msg}");
        }
        ready = None;
    };
    match run(dir, op, &mut say) {
        Ok(code) => code,
        Err(e) => {
            match ready.as_mut() {
                // Before "ok PID": the hako command waiting on the pipe reports it.
                Some(f) => {
                    let _ = writeln!(f, "{e}");
                }
                // Afterwards nobody reads the pipe: the error is the process's last word on its stderr.
                None => eprintln!("hako: {e}"),
            }
            255
        }
    }
}

fn run(dir: &Path, op: Op, say: &mut dyn FnMut(&str)) -> Result<i32, VmError> {
    let (id, exec_id, terminal) = match &op {
        Op::Create { id, stdio, .. } => (id.clone(), None, stdio.terminal),
        Op::Exec { id, exec_id, stdio, .. } => (id.clone(), Some(exec_id.clone()), stdio.terminal),
        other => return Err(VmError::Supervisor(format!("a shadow cannot run {other:?}"))),
    };
    if terminal {
        // The pty slave is our stdio: make it our controlling terminal, so resizes reach us as SIGWINCH.
        let _ = nix::unistd::setsid();
        // SAFETY: TIOCSCTTY on our stdin with an integer argument.
        unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    }
    let mut signals = SigSet::empty();
    for s in hako_runtime::signal::FORWARDED {
        signals.add(*s);
    }
    signals.thread_block().map_err(|e| VmError::Supervisor(format!("blocking signals: {e}")))?;

    let mut client = Client::connect(dir)?;
    let created = client.call(op)?;
    let pid = match created {
        Reply::Created { pid } => pid,
        other => return Err(VmError::Agent(format!("unexpected answer {other:?}"))),
    };
    let writer = Arc::new(Mutex::new(client.try_clone_stream()?));
    let wait_req = client.send(Op::Wait { id: id.clone(), exec_id: exec_id.clone() })?;
    if terminal {
        if let Some((rows, cols)) = winsize() {
            let _ = client.send(Op::Resize { id: id.clone(), exec_id: exec_id.clone(), rows, cols });
        }
    }
    say(&format!("ok {pid}"));

    // stdin -> the process.
    {
        let w = writer.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                        let _ = write_frame(&mut *w, &Frame::Eof { stream: STDIN });
                        return;
                    }
                    Ok(n) => {
                        let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                        if write_frame(&mut *w, &Frame::Data { stream: STDIN, data: buf[..n].to_vec() }).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    // Signals -> the process; window changes -> the pty.
    {
        let w = writer.clone();
        let (id, exec_id) = (id.clone(), exec_id.clone());
        std::thread::spawn(move || loop {
            let Ok(sig) = signals.wait() else { return };
            let op = if sig == Signal::SIGWINCH {
                match winsize() {
                    Some((rows, cols)) => Op::Resize { id: id.clone(), exec_id: exec_id.clone(), rows, cols },
                    None => continue,
                }
            } else {
                Op::Kill { id: id.clone(), exec_id: exec_id.clone(), signal: sig as i32, all: false }
            };
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            // Request numbers of these fire-and-forget requests stay clear of the main thread's.
            let _ = write_frame(&mut *w, &Frame::Msg(Message::Request { req: u64::MAX / 2 + sig as u64, op }));
        });
    }
    // The process's output -> our stdout/stderr, until its exit status arrives.
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    loop {
        match client.recv()? {
            Some(Frame::Data { stream: STDOUT, data }) => {
                let _ = out.write_all(&data);
                let _ = out.flush();
            }
            Some(Frame::Data { stream: STDERR, data }) => {
                let _ = err.write_all(&data);
            }
            Some(Frame::Msg(Message::Response { req, result })) if req == wait_req => {
                let _ = out.flush();
                return match result {
                    Ok(Reply::Exited { status }) => Ok(status),
                    Ok(other) => Err(VmError::Agent(format!("unexpected answer to wait: {other:?}"))),
                    Err(e) => Err(VmError::Agent(e)),
                };
            }
            Some(_) => {}
            None => {
                return Err(VmError::Supervisor(format!(
                    "the VM of container {id} stopped before the process exited{}",
                    crate::qemu::tail_of(&dir.join(crate::supervisor::CONSOLE_LOG), 3)
                )))
            }
        }
    }
}
