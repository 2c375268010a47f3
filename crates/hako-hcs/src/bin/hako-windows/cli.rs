//! The command line of the Windows `hako` (runc-style, parsed by hand with std only so the
//! binary builds with rustc 1.63): global flags, one [`Command`] per subcommand, and
//! [`UsageError`] for everything that does not parse. Compiled and tested on every host.

use std::path::PathBuf;

use hako_hcs::oci::Process;
use hako_hcs::osversion::OsVersion;
use hako_hcs::schema::ProcessSignal;
use hako_hcs::{DocFormat, HcsDocOptions, Isolation};

/// The state root when `--root` is not given.
pub const DEFAULT_ROOT: &str = r"C:\ProgramData\hako";

/// The usage text of `hako --help`.
pub const USAGE: &str = "\
usage: hako [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND [ARGS]

the Windows build of hako: OCI containers through the Host Compute Service

global flags:
  --root DIR               state directory (default C:\\ProgramData\\hako)
  --log FILE               also write errors (and, with --debug, each command) to FILE
  --log-format text|json   format of --log lines (json: {\"level\",\"msg\",\"time\"}, as containerd reads)
  --debug                  log every command to --log

commands:
  create [--bundle DIR] [--pid-file FILE] [--isolation process|hyperv] [--image-os-version V] ID
  start ID
  state ID
  list [--format table|json] [--quiet]
  kill [--all] ID [SIGNAL]          SIGTERM (default), SIGINT, SIGQUIT, SIGHUP, SIGKILL or numbers
  delete [--force] ID
  exec [--process FILE] [--tty] [--cwd DIR] [--env K=V]... ID [ARGS...]
  pause ID
  resume ID
  ps [--format table|json] ID
  resize-tty ID WIDTH HEIGHT
  hcs-doc BUNDLE [--format json|text] [--id ID] [--owner NAME] [--host-build N]
          [--host-revision N] [--host-processors N] [--isolation process|hyperv]
          [--image-os-version V] [--lcow-boot-files DIR] [--assume-host]
";

/// A command line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// No subcommand.
    #[error("no command given: run hako --help for the list of commands")]
    NoCommand,
    /// An unknown subcommand.
    #[error("unknown command {0:?}: run hako --help for the list of commands")]
    UnknownCommand(String),
    /// A flag the command does not have.
    #[error("{command}: unknown flag {flag}: usage: hako {usage}")]
    UnknownFlag {
        /// The subcommand (or `hako` for global flags).
        command: &'static str,
        /// The flag as given.
        flag: String,
        /// The command's usage line.
        usage: &'static str,
    },
    /// A flag without its value.
    #[error("{command}: flag {flag} needs a value")]
    MissingValue {
        /// The subcommand.
        command: &'static str,
        /// The flag.
        flag: String,
    },
    /// `--switch=value`.
    #[error("{command}: flag {flag} takes no value")]
    UnexpectedValue {
        /// The subcommand.
        command: &'static str,
        /// The flag.
        flag: String,
    },
    /// A missing positional argument.
    #[error("{command}: {what} is missing: usage: hako {usage}")]
    MissingArgument {
        /// The subcommand.
        command: &'static str,
        /// What is missing.
        what: &'static str,
        /// The command's usage line.
        usage: &'static str,
    },
    /// A positional argument too many.
    #[error("{command}: unexpected argument {arg:?}: usage: hako {usage}")]
    ExtraArgument {
        /// The subcommand.
        command: &'static str,
        /// The argument.
        arg: String,
        /// The command's usage line.
        usage: &'static str,
    },
    /// A value that does not parse.
    #[error("{command}: {flag} {value:?} is invalid: {problem}")]
    BadValue {
        /// The subcommand.
        command: &'static str,
        /// The flag or argument.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong and what to give instead.
        problem: String,
    },
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `time="..." level=error msg="..."` (logrus' text format).
    Text,
    /// One JSON object per line: `level`, `msg`, `time`.
    Json,
}

/// `list --format` and `ps --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

/// The global flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// `--root`.
    pub root: PathBuf,
    /// `--log`.
    pub log: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// `--debug`.
    pub debug: bool,
}

/// `exec`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecArgs {
    /// The container.
    pub id: String,
    /// `--process FILE`: an OCI process JSON, used instead of the other flags.
    pub process: Option<PathBuf>,
    /// `--tty`.
    pub tty: bool,
    /// `--cwd`.
    pub cwd: Option<String>,
    /// `--env K=V`, in order.
    pub env: Vec<String>,
    /// The command and its arguments.
    pub args: Vec<String>,
}

impl ExecArgs {
    /// The process to run without `--process`: the container's own process (`base`, from its
    /// config) with the arguments, working directory, environment and tty of the command line.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub fn process_from(&self, mut base: Process) -> Process {
        base.args = self.args.clone();
        base.command_line = None;
        base.console_size = None;
        base.terminal = self.tty;
        if let Some(cwd) = &self.cwd {
            base.cwd = cwd.clone();
        }
        for kv in &self.env {
            let key = kv.split('=').next().unwrap_or("");
            base.env.retain(|old| !old.split('=').next().unwrap_or("").eq_ignore_ascii_case(key));
            base.env.push(kv.clone());
        }
        base
    }
}

/// One subcommand with its arguments.
// Off Windows only `hcs-doc` is run; the other variants' fields are read by the Windows
// dispatch and the tests.
#[cfg_attr(not(windows), allow(dead_code))]
#[derive(Debug, Clone)]
pub enum Command {
    /// `create`.
    Create {
        /// The container.
        id: String,
        /// `--bundle` (default `.`).
        bundle: PathBuf,
        /// `--pid-file`.
        pid_file: Option<PathBuf>,
        /// `--isolation`.
        isolation: Option<Isolation>,
        /// `--image-os-version`.
        image_os_version: Option<OsVersion>,
    },
    /// `start ID`.
    Start(String),
    /// `state ID`.
    State(String),
    /// `list`.
    List {
        /// `--format`.
        format: OutputFormat,
        /// `--quiet`: ids only.
        quiet: bool,
    },
    /// `kill`.
    Kill {
        /// The container.
        id: String,
        /// The signal as given (checked to have a Windows equivalent).
        signal: String,
        /// `--all`.
        all: bool,
    },
    /// `delete`.
    Delete {
        /// The container.
        id: String,
        /// `--force`.
        force: bool,
    },
    /// `exec`.
    Exec(ExecArgs),
    /// `pause ID`.
    Pause(String),
    /// `resume ID`.
    Resume(String),
    /// `ps`.
    Ps {
        /// The container.
        id: String,
        /// `--format`.
        format: OutputFormat,
    },
    /// `resize-tty ID WIDTH HEIGHT`.
    ResizeTty {
        /// The container.
        id: String,
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// `hcs-doc BUNDLE`.
    HcsDoc {
        /// The bundle directory.
        bundle: PathBuf,
        /// Its flags.
        options: HcsDocOptions,
    },
    /// The hidden `hcs-supervisor --root ROOT --id ID` the backend spawns.
    Supervisor {
        /// `--root`.
        root: PathBuf,
        /// `--id`.
        id: String,
    },
    /// `--help`, `help`.
    Help,
    /// `--version`.
    Version,
}

impl Command {
    /// The subcommand's name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create { .. } => "create",
            Command::Start(_) => "start",
            Command::State(_) => "state",
            Command::List { .. } => "list",
            Command::Kill { .. } => "kill",
            Command::Delete { .. } => "delete",
            Command::Exec(_) => "exec",
            Command::Pause(_) => "pause",
            Command::Resume(_) => "resume",
            Command::Ps { .. } => "ps",
            Command::ResizeTty { .. } => "resize-tty",
            Command::HcsDoc { .. } => "hcs-doc",
            Command::Supervisor { .. } => "hcs-supervisor",
            Command::Help => "help",
            Command::Version => "version",
        }
    }
}

/// A parsed command line.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The global flags.
    pub global: Global,
    /// The subcommand.
    pub command: Command,
}

/// Whether a flag is a switch or takes a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Switch,
    Value,
}

/// A flag: its long name, an optional short alias, its kind.
type FlagSpec = (&'static str, Option<char>, Kind);

/// The flags and positionals of one subcommand.
struct Parsed {
    flags: Vec<(&'static str, Option<String>)>,
    positionals: Vec<String>,
}

impl Parsed {
    fn switch(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| *n == name)
    }

    /// The last value of a flag (later flags win, as with runc).
    fn value(&self, name: &str) -> Option<String> {
        self.flags.iter().rev().find(|(n, _)| *n == name).and_then(|(_, v)| v.clone())
    }

    fn values(&self, name: &str) -> Vec<String> {
        self.flags.iter().filter(|(n, _)| *n == name).filter_map(|(_, v)| v.clone()).collect()
    }
}

/// Splits `args` into flags (`--name value`, `--name=value`, `-x value`) and positionals.
/// `--` ends the flags; with `stop_at_positional` so does the first positional (exec's
/// command keeps its own flags).
fn split(
    command: &'static str,
    usage: &'static str,
    args: &[String],
    spec: &[FlagSpec],
    stop_at_positional: bool,
) -> Result<Parsed, UsageError> {
    let mut out = Parsed { flags: Vec::new(), positionals: Vec::new() };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            out.positionals.extend(args[i..].iter().cloned());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            out.positionals.push(arg.clone());
            if stop_at_positional {
                out.positionals.extend(args[i..].iter().cloned());
                break;
            }
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let found = spec.iter().find(|(long, short, _)| {
            name.strip_prefix("--") == Some(*long)
                || short.map_or(false, |c| {
                    let mut chars = name.chars();
                    chars.next() == Some('-') && chars.next() == Some(c) && chars.next().is_none()
                })
        });
        let (long, _, kind) = match found {
            Some(f) => *f,
            None => return Err(UsageError::UnknownFlag { command, flag: name.to_string(), usage }),
        };
        let value = match (kind, inline) {
            (Kind::Switch, None) => None,
            (Kind::Switch, Some(_)) => return Err(UsageError::UnexpectedValue { command, flag: name.to_string() }),
            (Kind::Value, Some(v)) => Some(v),
            (Kind::Value, None) => match args.get(i) {
                Some(v) => {
                    i += 1;
                    Some(v.clone())
                }
                None => return Err(UsageError::MissingValue { command, flag: name.to_string() }),
            },
        };
        out.flags.push((long, value));
    }
    Ok(out)
}

/// Exactly `names.len()` positionals, else a usage error naming the first missing one.
fn positionals(
    command: &'static str,
    usage: &'static str,
    parsed: &Parsed,
    names: &[&'static str],
) -> Result<Vec<String>, UsageError> {
    if let Some(extra) = parsed.positionals.get(names.len()) {
        return Err(UsageError::ExtraArgument { command, arg: extra.clone(), usage });
    }
    if let Some(what) = names.get(parsed.positionals.len()) {
        return Err(UsageError::MissingArgument { command, what, usage });
    }
    Ok(parsed.positionals.clone())
}

fn parse_value<T: std::str::FromStr>(command: &'static str, flag: &'static str, value: String) -> Result<T, UsageError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| UsageError::BadValue { command, flag, problem: e.to_string(), value })
}

fn isolation(command: &'static str, value: String) -> Result<Isolation, UsageError> {
    match value.to_ascii_lowercase().as_str() {
        "process" => Ok(Isolation::Process),
        "hyperv" | "hyper-v" => Ok(Isolation::Hyperv),
        _ => Err(UsageError::BadValue {
            command,
            flag: "--isolation",
            value,
            problem: "give process or hyperv (LCOW is chosen by a linux section in config.json)".to_string(),
        }),
    }
}

fn output_format(command: &'static str, value: Option<String>) -> Result<OutputFormat, UsageError> {
    match value.as_deref() {
        None | Some("table") => Ok(OutputFormat::Table),
        Some("json") => Ok(OutputFormat::Json),
        Some(other) => Err(UsageError::BadValue {
            command,
            flag: "--format",
            value: other.to_string(),
            problem: "give table or json".to_string(),
        }),
    }
}

fn parse_global(args: &[String]) -> Result<(Global, usize), UsageError> {
    let mut global = Global { root: PathBuf::from(DEFAULT_ROOT), log: None, log_format: LogFormat::Text, debug: false };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if !arg.starts_with('-') {
            break;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        i += 1;
        let takes_value = matches!(name, "--root" | "--log" | "--log-format");
        if !takes_value {
            if inline.is_some() && matches!(name, "--debug" | "--help" | "-h" | "--version" | "-v") {
                return Err(UsageError::UnexpectedValue { command: "hako", flag: name.to_string() });
            }
            match name {
                "--debug" => global.debug = true,
                // Help and version end the parse: the caller sees them as the command.
                "--help" | "-h" | "--version" | "-v" => return Ok((global, i - 1)),
                _ => {
                    return Err(UsageError::UnknownFlag {
                        command: "hako",
                        flag: name.to_string(),
                        usage: "[--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND",
                    })
                }
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .cloned()
                    .ok_or_else(|| UsageError::MissingValue { command: "hako", flag: name.to_string() })?;
                i += 1;
                v
            }
        };
        match name {
            "--root" => global.root = PathBuf::from(value),
            "--log" => global.log = Some(PathBuf::from(value)),
            _ => {
                global.log_format = match value.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => {
                        return Err(UsageError::BadValue {
                            command: "hako",
                            flag: "--log-format",
                            value,
                            problem: "give text or json".to_string(),
                        })
                    }
                }
            }
        }
    }
    Ok((global, i))
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let (global, at) = parse_global(args)?;
    let name = args.get(at).ok_or(UsageError::NoCommand)?;
    let rest = &args[at + 1..];
    let command = parse_command(name, rest)?;
    Ok(Invocation { global, command })
}

fn parse_command(name: &str, rest: &[String]) -> Result<Command, UsageError> {
    use Kind::{Switch, Value};
    let id_only = |command: &'static str, usage: &'static str| -> Result<String, UsageError> {
        let p = split(command, usage, rest, &[], false)?;
        let mut pos = positionals(command, usage, &p, &["container id"])?;
        Ok(pos.remove(0))
    };
    Ok(match name {
        "--help" | "-h" | "help" => Command::Help,
        "--version" | "-v" | "version" => Command::Version,
        "create" => {
            const U: &str =
                "create [--bundle DIR] [--pid-file FILE] [--isolation process|hyperv] [--image-os-version V] ID";
            let p = split(
                "create",
                U,
                rest,
                &[
                    ("bundle", Some('b'), Value),
                    ("pid-file", None, Value),
                    ("isolation", None, Value),
                    ("image-os-version", None, Value),
                ],
                false,
            )?;
            let mut pos = positionals("create", U, &p, &["container id"])?;
            Command::Create {
                id: pos.remove(0),
                bundle: PathBuf::from(p.value("bundle").unwrap_or_else(|| ".".to_string())),
                pid_file: p.value("pid-file").map(PathBuf::from),
                isolation: p.value("isolation").map(|v| isolation("create", v)).transpose()?,
                image_os_version: p
                    .value("image-os-version")
                    .map(|v| parse_value("create", "--image-os-version", v))
                    .transpose()?,
            }
        }
        "start" => Command::Start(id_only("start", "start ID")?),
        "state" => Command::State(id_only("state", "state ID")?),
        "pause" => Command::Pause(id_only("pause", "pause ID")?),
        "resume" => Command::Resume(id_only("resume", "resume ID")?),
        "list" => {
            const U: &str = "list [--format table|json] [--quiet]";
            let p = split("list", U, rest, &[("format", Some('f'), Value), ("quiet", Some('q'), Switch)], false)?;
            positionals("list", U, &p, &[])?;
            Command::List { format: output_format("list", p.value("format"))?, quiet: p.switch("quiet") }
        }
        "kill" => {
            const U: &str = "kill [--all] ID [SIGNAL]";
            let p = split("kill", U, rest, &[("all", Some('a'), Switch)], false)?;
            if let Some(extra) = p.positionals.get(2) {
                return Err(UsageError::ExtraArgument { command: "kill", arg: extra.clone(), usage: U });
            }
            let id = p.positionals.first().cloned().ok_or(UsageError::MissingArgument {
                command: "kill",
                what: "container id",
                usage: U,
            })?;
            let signal = p.positionals.get(1).cloned().unwrap_or_else(|| "SIGTERM".to_string());
            if let Err(problem) = ProcessSignal::from_runc_signal(&signal) {
                return Err(UsageError::BadValue { command: "kill", flag: "SIGNAL", value: signal, problem });
            }
            Command::Kill { id, signal, all: p.switch("all") }
        }
        "delete" => {
            const U: &str = "delete [--force] ID";
            let p = split("delete", U, rest, &[("force", Some('f'), Switch)], false)?;
            let mut pos = positionals("delete", U, &p, &["container id"])?;
            Command::Delete { id: pos.remove(0), force: p.switch("force") }
        }
        "exec" => {
            const U: &str = "exec [--process FILE] [--tty] [--cwd DIR] [--env K=V]... ID [ARGS...]";
            let p = split(
                "exec",
                U,
                rest,
                &[
                    ("process", Some('p'), Value),
                    ("tty", Some('t'), Switch),
                    ("cwd", None, Value),
                    ("env", Some('e'), Value),
                    ("detach", Some('d'), Switch),
                ],
                true,
            )?;
            if p.switch("detach") {
                return Err(UsageError::BadValue {
                    command: "exec",
                    flag: "--detach",
                    value: String::new(),
                    problem: "not supported on Windows: exec runs in the foreground and exits with the process's code"
                        .to_string(),
                });
            }
            let mut pos = p.positionals.clone();
            if pos.is_empty() {
                return Err(UsageError::MissingArgument { command: "exec", what: "container id", usage: U });
            }
            let id = pos.remove(0);
            let process = p.value("process").map(PathBuf::from);
            match (&process, pos.first()) {
                (None, None) => {
                    return Err(UsageError::MissingArgument {
                        command: "exec",
                        what: "the command to run (ARGS or --process FILE)",
                        usage: U,
                    })
                }
                (Some(_), Some(arg)) => {
                    return Err(UsageError::ExtraArgument {
                        command: "exec",
                        arg: arg.clone(),
                        usage: "exec --process FILE ID (the command comes from FILE)",
                    })
                }
                _ => {}
            }
            let env = p.values("env");
            if let Some(bad) = env.iter().find(|kv| !kv.contains('=') || kv.starts_with('=')) {
                return Err(UsageError::BadValue {
                    command: "exec",
                    flag: "--env",
                    value: bad.clone(),
                    problem: "give KEY=VALUE".to_string(),
                });
            }
            Command::Exec(ExecArgs { id, process, tty: p.switch("tty"), cwd: p.value("cwd"), env, args: pos })
        }
        "ps" => {
            const U: &str = "ps [--format table|json] ID";
            let p = split("ps", U, rest, &[("format", Some('f'), Value)], false)?;
            let mut pos = positionals("ps", U, &p, &["container id"])?;
            Command::Ps { id: pos.remove(0), format: output_format("ps", p.value("format"))? }
        }
        "resize-tty" => {
            const U: &str = "resize-tty ID WIDTH HEIGHT";
            let p = split("resize-tty", U, rest, &[], false)?;
            let mut pos = positionals("resize-tty", U, &p, &["container id", "width", "height"])?;
            let height = parse_value("resize-tty", "HEIGHT", pos.remove(2))?;
            let width = parse_value("resize-tty", "WIDTH", pos.remove(1))?;
            Command::ResizeTty { id: pos.remove(0), width, height }
        }
        "hcs-doc" => {
            const U: &str = "hcs-doc BUNDLE [--format json|text] [--id ID] [--owner NAME] [--host-build N] [--host-revision N] [--host-processors N] [--isolation process|hyperv] [--image-os-version V] [--lcow-boot-files DIR] [--assume-host]";
            let c = "hcs-doc";
            let p = split(
                c,
                U,
                rest,
                &[
                    ("format", Some('f'), Value),
                    ("id", None, Value),
                    ("owner", None, Value),
                    ("host-build", None, Value),
                    ("host-revision", None, Value),
                    ("host-processors", None, Value),
                    ("isolation", None, Value),
                    ("image-os-version", None, Value),
                    ("lcow-boot-files", None, Value),
                    ("assume-host", None, Switch),
                ],
                false,
            )?;
            let mut pos = positionals(c, U, &p, &["bundle directory"])?;
            let options = HcsDocOptions {
                format: match p.value("format") {
                    Some(v) => parse_value::<DocFormat>(c, "--format", v)?,
                    None => DocFormat::Json,
                },
                container_id: p.value("id"),
                owner: p.value("owner"),
                host_build: p.value("host-build").map(|v| parse_value(c, "--host-build", v)).transpose()?,
                host_revision: p.value("host-revision").map(|v| parse_value(c, "--host-revision", v)).transpose()?,
                host_processors: p
                    .value("host-processors")
                    .map(|v| parse_value(c, "--host-processors", v))
                    .transpose()?,
                isolation: p.value("isolation").map(|v| isolation(c, v)).transpose()?,
                image_os_version: p
                    .value("image-os-version")
                    .map(|v| parse_value(c, "--image-os-version", v))
                    .transpose()?,
                lcow_boot_files: p.value("lcow-boot-files"),
                assume_host: p.switch("assume-host"),
            };
            Command::HcsDoc { bundle: PathBuf::from(pos.remove(0)), options }
        }
        hako_hcs::supervisor::SUPERVISOR_SUBCOMMAND => {
            const U: &str = "hcs-supervisor --root ROOT --id ID";
            let c = "hcs-supervisor";
            let p = split(c, U, rest, &[("root", None, Value), ("id", None, Value)], false)?;
            positionals(c, U, &p, &[])?;
            let missing = |what: &'static str| UsageError::MissingArgument { command: c, what, usage: U };
            Command::Supervisor {
                root: PathBuf::from(p.value("root").ok_or_else(|| missing("--root"))?),
                id: p.value("id").ok_or_else(|| missing("--id"))?,
            }
        }
        other => return Err(UsageError::UnknownCommand(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn ok(line: &str) -> Invocation {
        match parse(&args(line)) {
            Ok(inv) => inv,
            Err(e) => panic!("{:?} did not parse: {}", line, e),
        }
    }

    fn err(line: &str) -> UsageError {
        match parse(&args(line)) {
            Ok(inv) => panic!("{:?} parsed as {:?}", line, inv.command),
            Err(e) => e,
        }
    }

    #[test]
    fn containerd_style_create_with_globals() {
        let inv = ok(r"--root C:\state --log C:\log.json --log-format json create --bundle C:\b --pid-file C:\p web");
        assert_eq!(inv.global.root, PathBuf::from(r"C:\state"));
        assert_eq!(inv.global.log, Some(PathBuf::from(r"C:\log.json")));
        assert_eq!(inv.global.log_format, LogFormat::Json);
        match inv.command {
            Command::Create { id, bundle, pid_file, isolation, image_os_version } => {
                assert_eq!(id, "web");
                assert_eq!(bundle, PathBuf::from(r"C:\b"));
                assert_eq!(pid_file, Some(PathBuf::from(r"C:\p")));
                assert_eq!(isolation, None);
                assert_eq!(image_os_version, None);
            }
            other => panic!("{:?}", other),
        }
    }

    #[test]
    fn defaults_and_equals_syntax() {
        let inv = ok("create --isolation=hyperv --image-os-version=10.0.20348.1487 -b=x c1");
        assert_eq!(inv.global.root, PathBuf::from(DEFAULT_ROOT));
        assert_eq!(inv.global.log_format, LogFormat::Text);
        match inv.command {
            Command::Create { bundle, isolation, image_os_version, .. } => {
                assert_eq!(bundle, PathBuf::from("x"));
                assert_eq!(isolation, Some(Isolation::Hyperv));
                assert_eq!(image_os_version.map(|v| v.to_string()).as_deref(), Some("10.0.20348.1487"));
            }
            other => panic!("{:?}", other),
        }
        match ok("create c2").command {
            Command::Create { bundle, .. } => assert_eq!(bundle, PathBuf::from(".")),
            other => panic!("{:?}", other),
        }
    }

    #[test]
    fn kill_signal_names_numbers_and_default() {
        for (line, want) in [
            ("kill web", "SIGTERM"),
            ("kill web KILL", "KILL"),
            ("kill web 9", "9"),
            ("kill --all web SIGINT", "SIGINT"),
        ] {
            match ok(line).command {
                Command::Kill { id, signal, all } => {
                    assert_eq!(id, "web");
                    assert_eq!(signal, want);
                    assert_eq!(all, line.contains("--all"));
                }
                other => panic!("{:?}", other),
            }
        }
        assert!(matches!(err("kill web SIGUSR1"), UsageError::BadValue { flag: "SIGNAL", .. }));
        assert!(matches!(err("kill web 9 extra"), UsageError::ExtraArgument { .. }));
        assert!(matches!(err("kill"), UsageError::MissingArgument { .. }));
    }

    #[test]
    fn exec_keeps_the_commands_own_flags() {
        match ok("exec --tty -e A=1 --env B=2 --cwd C:\\w web cmd /c dir --help").command {
            Command::Exec(e) => {
                assert_eq!(e.id, "web");
                assert!(e.tty);
                assert_eq!(e.env, vec!["A=1".to_string(), "B=2".to_string()]);
                assert_eq!(e.cwd.as_deref(), Some("C:\\w"));
                assert_eq!(e.args, args("cmd /c dir --help"));
            }
            other => panic!("{:?}", other),
        }
        match ok("exec --process p.json web").command {
            Command::Exec(e) => {
                assert_eq!(e.process, Some(PathBuf::from("p.json")));
                assert!(e.args.is_empty());
            }
            other => panic!("{:?}", other),
        }
        assert!(matches!(err("exec web"), UsageError::MissingArgument { .. }));
        assert!(matches!(err("exec --process p.json web cmd"), UsageError::ExtraArgument { .. }));
        assert!(matches!(err("exec --env NOEQUALS web cmd"), UsageError::BadValue { .. }));
        assert!(matches!(err("exec --detach web cmd"), UsageError::BadValue { flag: "--detach", .. }));
    }

    #[test]
    fn exec_process_overrides_the_containers_process() {
        let base = Process {
            args: args("cmd /c ping -t localhost"),
            command_line: Some("cmd /c ping -t localhost".to_string()),
            env: vec!["PATH=C:\\Windows".to_string(), "A=old".to_string()],
            cwd: "C:\\".to_string(),
            ..Process::default()
        };
        let e = ExecArgs {
            id: "web".to_string(),
            tty: true,
            cwd: Some("C:\\app".to_string()),
            env: vec!["a=new".to_string()],
            args: args("cmd /c ver"),
            ..ExecArgs::default()
        };
        let p = e.process_from(base);
        assert_eq!(p.args, args("cmd /c ver"));
        assert_eq!(p.command_line, None);
        assert!(p.terminal);
        assert_eq!(p.cwd, "C:\\app");
        assert_eq!(p.env, vec!["PATH=C:\\Windows".to_string(), "a=new".to_string()]);
    }

    #[test]
    fn list_ps_delete_and_id_commands() {
        match ok("list --format json -q").command {
            Command::List { format, quiet } => {
                assert_eq!(format, OutputFormat::Json);
                assert!(quiet);
            }
            other => panic!("{:?}", other),
        }
        assert!(matches!(ok("ps --format json web").command, Command::Ps { format: OutputFormat::Json, .. }));
        assert!(matches!(ok("delete -f web").command, Command::Delete { force: true, .. }));
        assert!(matches!(ok("delete web").command, Command::Delete { force: false, .. }));
        assert!(matches!(ok("start web").command, Command::Start(id) if id == "web"));
        assert!(matches!(ok("pause web").command, Command::Pause(_)));
        assert!(matches!(ok("resume web").command, Command::Resume(_)));
        assert!(matches!(ok("resize-tty web 120 40").command, Command::ResizeTty { width: 120, height: 40, .. }));
        assert!(matches!(err("resize-tty web wide 40"), UsageError::BadValue { flag: "WIDTH", .. }));
        assert!(matches!(err("list --format yaml"), UsageError::BadValue { .. }));
        assert!(matches!(err("list extra"), UsageError::ExtraArgument { .. }));
        assert!(matches!(err("state"), UsageError::MissingArgument { .. }));
        assert!(matches!(err("state a b"), UsageError::ExtraArgument { .. }));
    }

    #[test]
    fn hcs_doc_flags_after_the_bundle() {
        match ok("hcs-doc ./bundle --format text --isolation hyperv --host-build 26100 --id x --host-processors 4")
            .command
        {
            Command::HcsDoc { bundle, options } => {
                assert_eq!(bundle, PathBuf::from("./bundle"));
                assert_eq!(options.format, DocFormat::Text);
                assert_eq!(options.isolation, Some(Isolation::Hyperv));
                assert_eq!(options.host_build, Some(26100));
                assert_eq!(options.host_processors, Some(4));
                assert_eq!(options.container_id.as_deref(), Some("x"));
                assert!(!options.assume_host);
            }
            other => panic!("{:?}", other),
        }
        match ok("hcs-doc b --assume-host").command {
            Command::HcsDoc { options, .. } => assert!(options.assume_host),
            other => panic!("{:?}", other),
        }
        assert!(matches!(err("hcs-doc b --assume-host=yes"), UsageError::UnexpectedValue { .. }));
        assert!(matches!(err("hcs-doc b --host-build many"), UsageError::BadValue { .. }));
        assert!(matches!(err("hcs-doc b --isolation lcow"), UsageError::BadValue { .. }));
        assert!(matches!(err("hcs-doc b --image-os-version 10"), UsageError::BadValue { .. }));
        assert!(matches!(err("hcs-doc"), UsageError::MissingArgument { .. }));
    }

    #[test]
    fn supervisor_matches_how_the_backend_spawns_it() {
        // Backend::spawn_and_wait runs: PROGRAM hcs-supervisor --root ROOT --id ID
        match ok(r"hcs-supervisor --root C:\ProgramData\hako --id web").command {
            Command::Supervisor { root, id } => {
                assert_eq!(root, PathBuf::from(r"C:\ProgramData\hako"));
                assert_eq!(id, "web");
            }
            other => panic!("{:?}", other),
        }
        assert!(matches!(err("hcs-supervisor --root r"), UsageError::MissingArgument { what: "--id", .. }));
    }

    #[test]
    fn bad_command_lines_are_refused_with_a_clear_message() {
        assert_eq!(err(""), UsageError::NoCommand);
        assert_eq!(err("run web"), UsageError::UnknownCommand("run".to_string()));
        let e = err("delete --purge web");
        assert_eq!(e.to_string(), "delete: unknown flag --purge: usage: hako delete [--force] ID");
        assert!(matches!(err("--bogus list"), UsageError::UnknownFlag { command: "hako", .. }));
        assert!(matches!(err("--root"), UsageError::MissingValue { .. }));
        assert!(matches!(err("--log-format xml list"), UsageError::BadValue { .. }));
        assert!(matches!(err("create --bundle"), UsageError::MissingValue { .. }));
        assert!(matches!(err("delete --force=yes web"), UsageError::UnexpectedValue { .. }));
        assert!(matches!(ok("--help").command, Command::Help));
        assert!(matches!(ok("--root r --version").command, Command::Version));
        assert!(ok("--debug list").global.debug);
    }
}
