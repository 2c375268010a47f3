//! The OCI `process` to HCS process parameters: the Windows command line (`commandLine`, or
//! `args` escaped the way `CommandLineToArgvW` reads them back), user, working directory,
//! environment (empty values dropped, as hcsshim does), console.

use std::collections::BTreeMap;

use crate::oci::Process;
use crate::schema::{LcowProcessParameters, ProcessParameters};

use super::paths;
use super::{Rule, SpecError};

/// Which stdio pipes HCS should create for a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdioPipes {
    /// Create a stdin pipe.
    pub stdin: bool,
    /// Create a stdout pipe.
    pub stdout: bool,
    /// Create a stderr pipe (ignored for a console process: the console merges it).
    pub stderr: bool,
}

impl Default for StdioPipes {
    fn default() -> Self {
        StdioPipes { stdin: true, stdout: true, stderr: true }
    }
}

/// Quotes one argument so that `CommandLineToArgvW` (and the MSVC runtime) read it back
/// unchanged: no quoting when it has no space, tab or quote; otherwise wrap it in quotes,
/// double the backslashes that precede a quote or the closing quote, and escape quotes.
pub fn escape_arg(arg: &str) -> String {
    if arg.is_empty() {
        return "\"\"".to_string();
    }
    let needs_quotes = arg.contains([' ', '\t']);
    let has_quote = arg.contains('"');
    if !needs_quotes && !has_quote {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    if needs_quotes {
        out.push('"');
    }
    let mut backslashes = 0usize;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat('\\').take(backslashes * 2 + 1));
                backslashes = 0;
                out.push('"');
                continue;
            }
            _ => {
                out.extend(std::iter::repeat('\\').take(backslashes));
                backslashes = 0;
                out.push(c);
                continue;
            }
        }
    }
    if needs_quotes {
        out.extend(std::iter::repeat('\\').take(backslashes * 2));
        out.push('"');
    } else {
        out.extend(std::iter::repeat('\\').take(backslashes));
    }
    out
}

/// Joins `args` into one Windows command line.
pub fn escape_args(args: &[String]) -> String {
    args.iter().map(|a| escape_arg(a)).collect::<Vec<_>>().join(" ")
}

/// The environment map: `KEY=VALUE` split at the first `=`; entries without `=` or with an
/// empty value are dropped (hcsshim `cmd.go`); a later duplicate wins.
pub(crate) fn environment(env: &[String]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for entry in env {
        if let Some((k, v)) = entry.split_once('=') {
            if !k.is_empty() && !v.is_empty() {
                map.insert(k.to_string(), v.to_string());
            }
        }
    }
    map
}

/// Process parameters of a Windows container's process.
pub(crate) fn windows_process(process: &Process, stdio: StdioPipes) -> Result<ProcessParameters, SpecError> {
    let command_line = match process.command_line.as_deref() {
        Some(cl) if !cl.trim().is_empty() => cl.to_string(),
        _ if !process.args.is_empty() => escape_args(&process.args),
        _ => {
            return Err(SpecError::new(
                Rule::Process,
                "process",
                "has neither commandLine nor args",
                "set process.commandLine (preferred on Windows) or process.args",
            ))
        }
    };
    if !process.cwd.is_empty() && !paths::is_absolute_drive_path(&process.cwd) {
        return Err(SpecError::new(
            Rule::Process,
            "process.cwd",
            format!("{:?} is not an absolute Windows path", process.cwd),
            r"use a path such as C:\ or C:\app",
        ));
    }
    let mut params = ProcessParameters {
        command_line,
        user: process.user.username.clone(),
        working_directory: process.cwd.clone(),
        environment: environment(&process.env),
        emulate_console: process.terminal,
        create_std_in_pipe: stdio.stdin,
        create_std_out_pipe: stdio.stdout,
        create_std_err_pipe: stdio.stderr && !process.terminal,
        ..ProcessParameters::default()
    };
    if process.terminal {
        if let Some(size) = process.console_size {
            params.console_size = vec![size.height, size.width];
        }
    }
    Ok(params)
}

/// Process parameters of a Linux container's process: the stdio flags plus the OCI process
/// forwarded as is.
pub(crate) fn linux_process(
    process: &Process,
    raw: Option<&serde_json::Value>,
    stdio: StdioPipes,
) -> Result<LcowProcessParameters, SpecError> {
    if process.args.is_empty() {
        return Err(SpecError::new(
            Rule::Process,
            "process.args",
            "is empty",
            "a Linux container needs process.args (commandLine is Windows-only)",
        ));
    }
    if !process.cwd.is_empty() && !process.cwd.starts_with('/') {
        return Err(SpecError::new(
            Rule::Process,
            "process.cwd",
            format!("{:?} is not an absolute Linux path", process.cwd),
            "use a path such as /",
        ));
    }
    Ok(LcowProcessParameters {
        parameters: ProcessParameters {
            create_std_in_pipe: stdio.stdin,
            create_std_out_pipe: stdio.stdout,
            create_std_err_pipe: stdio.stderr && !process.terminal,
            ..ProcessParameters::default()
        },
        oci_process: raw.cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `CommandLineToArgvW`'s rules, to check that [`escape_args`] round-trips.
    fn parse_command_line(cl: &str) -> Vec<String> {
        let mut args = Vec::new();
        let chars: Vec<char> = cl.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                i += 1;
            }
            if i >= chars.len() {
                break;
            }
            let mut arg = String::new();
            let mut in_quotes = false;
            while i < chars.len() {
                let c = chars[i];
                if c == '\\' {
                    let mut n = 0;
                    while i < chars.len() && chars[i] == '\\' {
                        n += 1;
                        i += 1;
                    }
                    if i < chars.len() && chars[i] == '"' {
                        arg.extend(std::iter::repeat('\\').take(n / 2));
                        if n % 2 == 1 {
                            arg.push('"');
                            i += 1;
                        }
                    } else {
                        arg.extend(std::iter::repeat('\\').take(n));
                    }
                    continue;
                }
                if c == '"' {
                    in_quotes = !in_quotes;
                    i += 1;
                    continue;
                }
                if !in_quotes && (c == ' ' || c == '\t') {
                    break;
                }
                arg.push(c);
                i += 1;
            }
            args.push(arg);
        }
        args
    }

    #[test]
    fn escaping_round_trips_through_commandlinetoargvw_rules() {
        let cases: Vec<Vec<&str>> = vec![
            vec!["cmd", "/c", "echo hello"],
            vec![r"C:\Program Files\app.exe", r"C:\dir\", r#"say "hi""#],
            vec![r#"a\"b"#, r"trailing\\", r"sp ace\\", "tab\there", ""],
            vec![r"\\server\share\x", r#"\"#, r#""quoted""#],
        ];
        for case in cases {
            let owned: Vec<String> = case.iter().map(|s| s.to_string()).collect();
            let cl = escape_args(&owned);
            assert_eq!(parse_command_line(&cl), owned, "command line {}", cl);
        }
    }

    #[test]
    fn escaping_is_minimal_for_plain_arguments() {
        assert_eq!(escape_arg("ping"), "ping");
        assert_eq!(escape_arg(r"C:\x\y"), r"C:\x\y");
        assert_eq!(escape_arg("a b"), "\"a b\"");
        assert_eq!(escape_arg(r"a b\"), r#""a b\\""#);
        assert_eq!(escape_arg(r#"a"b"#), r#"a\"b"#);
        assert_eq!(escape_arg(""), "\"\"");
    }

    #[test]
    fn environment_drops_empty_values_like_hcsshim() {
        let env: Vec<String> =
            ["PATH=C:\\Windows", "EMPTY=", "NOEQUALS", "A=1=2", "A=3", "=x"].iter().map(|s| s.to_string()).collect();
        let map = environment(&env);
        assert_eq!(map.len(), 2);
        assert_eq!(map["PATH"], "C:\\Windows");
        assert_eq!(map["A"], "3");
    }
}
