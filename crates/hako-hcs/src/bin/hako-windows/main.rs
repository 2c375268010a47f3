//! The Windows `hako` executable (`hako-windows`, installed as `hako.exe`): the runc-style CLI
//! over `hako_hcs::backend::Backend`, and the hidden `hcs-supervisor` the backend spawns.
//! Off Windows the same binary runs only `hcs-doc` and says so for every other command.

mod cli;
mod output;

use std::io::Write;
#[cfg(windows)]
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cli::{Command, Global, Invocation, LogFormat};

/// Where errors (and, with `--debug`, commands) go besides stderr.
struct Logger {
    file: Option<std::fs::File>,
    format: LogFormat,
    debug: bool,
}

impl Logger {
    fn open(global: &Global) -> Logger {
        let file = global.log.as_ref().and_then(|path| {
            match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!("hako: cannot open log file {}: {}", path.display(), e);
                    None
                }
            }
        });
        Logger { file, format: global.log_format, debug: global.debug }
    }

    fn write(&mut self, level: &str, msg: &str) {
        if let Some(f) = self.file.as_mut() {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let time = output::rfc3339(now.as_secs(), now.subsec_nanos());
            let _ = writeln!(f, "{}", output::log_line(self.format, level, msg, &time));
        }
    }

    fn error(&mut self, msg: &str) {
        eprintln!("hako: {}", msg);
        self.write("error", msg);
    }

    fn debug(&mut self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }
}

#[cfg(windows)]
/// `path` made absolute against the working directory (the backend records it as given).
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(windows)]
fn print_json(value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{}", text);
    Ok(())
}

/// Runs the commands every host has; `None` for the others.
fn run_common(inv: &Invocation) -> Option<Result<i32, String>> {
    Some(match &inv.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            Ok(0)
        }
        Command::Version => {
            println!("hako {} (Windows build, crate hako-hcs)", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::HcsDoc { bundle, options } => hako_hcs::hcs_doc(bundle, options)
            .map(|text| {
                print!("{}", text);
                0
            })
            .map_err(|e| e.to_string()),
        _ => return None,
    })
}

#[cfg(not(windows))]
fn run_platform(inv: &Invocation) -> Result<i32, String> {
    Err(format!(
        "`{}` needs Windows: this is the Windows build of hako (crate hako-hcs), which runs only \
         hcs-doc elsewhere; on Linux use the hako binary of crates/hako",
        inv.command.name()
    ))
}

#[cfg(windows)]
fn run_platform(inv: &Invocation) -> Result<i32, String> {
    use hako_hcs::backend::{supervisor_main, Backend, CreateOptions};
    use hako_hcs::oci::{Bundle, Process};
    use hako_hcs::state::StateStore;

    let backend = Backend::new(&inv.global.root);
    let s = |e: hako_hcs::HcsError| e.to_string();
    // list and state read hako's state files only; everything else talks to HCS, directly or
    // through a container's supervisor.
    if !matches!(inv.command, Command::List { .. } | Command::State(_)) {
        hako_hcs::hcs::available().map_err(|e| format!("`{}`: {}", inv.command.name(), e))?;
    }
    match &inv.command {
        Command::Create { id, bundle, pid_file, isolation, image_os_version } => {
            let opts = CreateOptions {
                isolation: *isolation,
                image_os_version: *image_os_version,
                pid_file: pid_file.as_deref().map(absolute),
            };
            backend.create(id, &absolute(bundle), &opts).map_err(s)?;
        }
        Command::Start(id) => {
            backend.start(id).map_err(s)?;
        }
        Command::State(id) => print_json(&output::state_json(&backend.state(id).map_err(s)?))?,
        Command::List { format, quiet } => {
            let states = backend.list().map_err(s)?;
            if *quiet {
                for st in &states {
                    println!("{}", st.id);
                }
            } else if *format == cli::OutputFormat::Json {
                let all: Vec<_> = states.iter().map(output::state_json).collect();
                print_json(&serde_json::Value::Array(all))?;
            } else {
                print!("{}", output::list_table(&states));
            }
        }
        Command::Kill { id, signal, all } => backend.kill(id, signal, *all).map_err(s)?,
        Command::Delete { id, force } => backend.delete(id, *force).map_err(s)?,
        Command::Exec(e) => {
            let process = match &e.process {
                Some(file) => {
                    let text = std::fs::read_to_string(file)
                        .map_err(|err| format!("cannot read process file {}: {}", file.display(), err))?;
                    serde_json::from_str::<Process>(&text)
                        .map_err(|err| format!("process file {} is not an OCI process JSON: {}", file.display(), err))?
                }
                None => {
                    let dir = StateStore::new(&inv.global.root).dir(&e.id);
                    let base = Bundle::load(&dir).map(|b| b.spec.process.unwrap_or_default()).unwrap_or_default();
                    e.process_from(base)
                }
            };
            let code = backend.exec(&e.id, &process).map_err(s)?;
            return Ok(code as i32);
        }
        Command::Pause(id) => backend.pause(id).map_err(s)?,
        Command::Resume(id) => backend.resume(id).map_err(s)?,
        Command::Ps { id, format } => {
            let procs = backend.ps(id).map_err(s)?;
            if *format == cli::OutputFormat::Json {
                print_json(&output::ps_json(&procs))?;
            } else {
                print!("{}", output::ps_table(&procs));
            }
        }
        Command::ResizeTty { id, width, height } => backend.resize(id, *width, *height).map_err(s)?,
        Command::Supervisor { root, id } => supervisor_main(root, id).map_err(s)?,
        Command::HcsDoc { .. } | Command::Help | Command::Version => {}
    }
    Ok(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let inv = match cli::parse(&args) {
        Ok(inv) => inv,
        Err(e) => {
            // The log flags may be what failed to parse: only stderr is certain here.
            eprintln!("hako: {}", e);
            std::process::exit(1);
        }
    };
    let mut log = Logger::open(&inv.global);
    log.debug(&format!("{}: hako {}", inv.command.name(), args.join(" ")));
    let result = run_common(&inv).unwrap_or_else(|| run_platform(&inv));
    match result {
        Ok(code) => std::process::exit(code),
        Err(msg) => {
            log.error(&msg);
            std::process::exit(1);
        }
    }
}
