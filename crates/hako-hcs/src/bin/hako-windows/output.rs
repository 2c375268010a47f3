//! What the Windows `hako` prints and logs: the OCI state of `state` and `list` (runc's
//! fields, `pid` being the supervisor's as with runhcs), `ps`'s table and JSON, and `--log`
//! lines in logrus' text or JSON format (`level`, `msg`, `time`, as containerd reads them).
//! Plain functions of their inputs, tested on every host.

// Off Windows only the log lines are used (hcs-doc and errors); the rest serves the Windows
// commands and the tests.
#![cfg_attr(not(windows), allow(dead_code))]

use std::fmt::Write as _;

use hako_hcs::schema::ProcessDetails;
use hako_hcs::state::ContainerState;
use serde_json::json;

use crate::cli::LogFormat;

/// The OCI runtime spec version `state` reports.
const OCI_VERSION: &str = "1.1.0";

/// Seconds (and nanoseconds) since the Unix epoch as RFC 3339 UTC, e.g.
/// `2024-02-29T12:00:05.000000123Z` (nanoseconds only when not zero).
pub fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let frac = if nanos == 0 { String::new() } else { format!(".{:09}", nanos) };
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z", year, month, day, rem / 3600, rem % 3600 / 60, rem % 60, frac)
}

/// The OCI state of a container (runc's `state` output plus hako's `isolation`).
pub fn state_json(state: &ContainerState) -> serde_json::Value {
    let mut v = json!({
        "ociVersion": OCI_VERSION,
        "id": state.id,
        "pid": state.supervisor_pid.unwrap_or(0),
        "status": state.status.to_string(),
        "bundle": state.bundle.to_string_lossy(),
        "rootfs": "",
        "created": rfc3339(state.created_unix, 0),
        "owner": state.owner,
        "isolation": state.isolation.to_string(),
    });
    if let (Some(code), Some(map)) = (state.exit_code, v.as_object_mut()) {
        map.insert("exitCode".to_string(), json!(code));
    }
    v
}

/// `list`'s table: `ID PID STATUS BUNDLE CREATED OWNER`, columns padded as runc's.
pub fn list_table(states: &[ContainerState]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "PID".to_string(),
        "STATUS".to_string(),
        "BUNDLE".to_string(),
        "CREATED".to_string(),
        "OWNER".to_string(),
    ]];
    for s in states {
        rows.push([
            s.id.clone(),
            s.supervisor_pid.unwrap_or(0).to_string(),
            s.status.to_string(),
            s.bundle.to_string_lossy().into_owned(),
            rfc3339(s.created_unix, 0),
            s.owner.clone(),
        ]);
    }
    table(&rows)
}

/// `ps`'s table: `PID IMAGE`.
pub fn ps_table(processes: &[ProcessDetails]) -> String {
    let mut rows = vec![["PID".to_string(), "IMAGE".to_string()]];
    for p in processes {
        rows.push([p.process_id.to_string(), p.image_name.clone()]);
    }
    table(&rows)
}

/// `ps --format json`: the process ids, as runc and runhcs print them.
pub fn ps_json(processes: &[ProcessDetails]) -> serde_json::Value {
    json!(processes.iter().map(|p| p.process_id).collect::<Vec<_>>())
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{:width$}   ", cell, width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One `--log` line (without the newline).
pub fn log_line(format: LogFormat, level: &str, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => json!({"level": level, "msg": msg, "time": time}).to_string(),
        LogFormat::Text => {
            format!("time={} level={} msg={}", serde_json::Value::from(time), level, serde_json::Value::from(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hako_hcs::state::Status;
    use hako_hcs::Isolation;
    use std::path::PathBuf;

    fn state(id: &str, pid: Option<u32>) -> ContainerState {
        ContainerState {
            id: id.to_string(),
            bundle: PathBuf::from(r"C:\bundles\web"),
            isolation: Isolation::Hyperv,
            isolation_override: None,
            status: Status::Running,
            owner: "hako".to_string(),
            utility_vm_id: None,
            pipe: r"\\.\pipe\x".to_string(),
            supervisor_pid: pid,
            init_process_id: Some(4),
            exit_code: None,
            created_unix: 1_709_208_005,
            host_build: 20348,
            image_os_version: None,
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_208_005, 123), "2024-02-29T12:00:05.000000123Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799, 0), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn state_has_runcs_fields() {
        let v = state_json(&state("web", Some(4242)));
        assert_eq!(v["ociVersion"], "1.1.0");
        assert_eq!(v["id"], "web");
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["status"], "running");
        assert_eq!(v["bundle"], r"C:\bundles\web");
        assert_eq!(v["created"], "2024-02-29T12:00:05Z");
        assert_eq!(v["isolation"], "hyperv");
        assert!(v.get("exitCode").is_none());
        let mut stopped = state("web", None);
        stopped.exit_code = Some(3);
        let v = state_json(&stopped);
        assert_eq!(v["pid"], 0);
        assert_eq!(v["exitCode"], 3);
    }

    #[test]
    fn tables_are_aligned() {
        let t = list_table(&[state("web", Some(7)), state("a-longer-id", None)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID            PID   STATUS    BUNDLE"));
        assert!(lines[1].starts_with("web           7     running   C:\\bundles\\web"));
        assert!(lines[2].ends_with("2024-02-29T12:00:05Z   hako"));
        let procs =
            vec![ProcessDetails { process_id: 1200, image_name: "cmd.exe".to_string(), ..ProcessDetails::default() }];
        assert_eq!(ps_table(&procs), "PID    IMAGE\n1200   cmd.exe\n");
        assert_eq!(ps_json(&procs).to_string(), "[1200]");
    }

    #[test]
    fn log_lines_in_both_formats() {
        let t = "2024-02-29T12:00:05Z";
        let j: serde_json::Value =
            serde_json::from_str(&log_line(LogFormat::Json, "error", "container \"web\" not found", t))
                .expect("json line");
        assert_eq!(j["level"], "error");
        assert_eq!(j["msg"], "container \"web\" not found");
        assert_eq!(j["time"], t);
        assert_eq!(
            log_line(LogFormat::Text, "error", "bad \"x\"", t),
            r#"time="2024-02-29T12:00:05Z" level=error msg="bad \"x\"""#
        );
    }
}
