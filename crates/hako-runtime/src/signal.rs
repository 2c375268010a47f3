//! Signal names and numbers as `kill` accepts them: `TERM`, `SIGTERM`, `sigterm`, `15`, `SIGRTMIN+3`.

use nix::sys::signal::Signal;

/// The signals a foreground waiter (`hako run`, `hako exec`, a VM shadow) passes on to the process it stands
/// for; SIGWINCH becomes a terminal resize where there is a terminal.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// A signal the user asked for that Linux does not have.
#[derive(Debug, thiserror::Error)]
#[error("invalid signal {0:?}: use a name such as SIGTERM or KILL, or a number from 1 to 64 (see `kill -l`)")]
pub struct InvalidSignal(String);

/// Parses a signal given by name (with or without `SIG`, any case), real-time name, or number.
pub fn parse(text: &str) -> Result<i32, InvalidSignal> {
    let bad = || InvalidSignal(text.to_owned());
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) { Ok(n) } else { Err(bad()) };
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        return rt_offset(rest, libc::SIGRTMIN(), 1).ok_or_else(bad);
    }
    if let Some(rest) = name.strip_prefix("SIGRTMAX") {
        return rt_offset(rest, libc::SIGRTMAX(), -1).ok_or_else(bad);
    }
    name.parse::<Signal>().map(|s| s as i32).map_err(|_| bad())
}

fn rt_offset(rest: &str, base: i32, sign: i32) -> Option<i32> {
    let n = if rest.is_empty() {
        base
    } else {
        let off: i32 = rest.strip_prefix(if sign > 0 { '+' } else { '-' })?.parse().ok()?;
        base + sign * off
    };
    (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("sigterm").unwrap(), 15);
        assert_eq!(parse("SIGHUP").unwrap(), 1);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("SIGRTMIN").unwrap(), libc::SIGRTMIN());
        assert_eq!(parse("RTMIN+2").unwrap(), libc::SIGRTMIN() + 2);
        assert_eq!(parse("SIGRTMAX-1").unwrap(), libc::SIGRTMAX() - 1);
    }

    #[test]
    fn refuses_unknown() {
        for s in ["SIGFOO", "0", "99999", "-1", "", "RTMIN+99"] {
            let err = parse(s).unwrap_err().to_string();
            assert!(err.contains("signal") && err.contains(s), "{err}");
        }
    }
}
