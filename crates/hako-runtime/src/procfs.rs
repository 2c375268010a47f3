//! Reading /proc about processes hako started: whether the process recorded in a state file is still the same
//! live process (a pid can be reused, so its start time is recorded with it).

/// Start time (clock ticks since boot) and state letter of `pid`, from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// Whether `pid` is the same live (not zombie) process that started at `start_time`.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    pid > 0
        && matches!(proc_stat(pid), Some((st, state)) if (start_time == 0 || st == start_time) && state != 'Z' && state != 'X')
}
