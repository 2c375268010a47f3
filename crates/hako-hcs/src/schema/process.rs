//! Process documents: `ProcessParameters` for `HcsCreateProcess`, `ProcessStatus` read back,
//! the signal options of `HcsSignalProcess` and the `ProcessModifyRequest` of
//! `HcsModifyProcess` (console size, closing stdin).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::is_default;

/// `ProcessParameters` of a process in a Windows container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProcessParameters {
    /// The executable; normally empty (taken from the command line).
    #[serde(skip_serializing_if = "is_default")]
    pub application_name: String,
    /// The Windows command line (`process.commandLine` or the escaped `args`).
    #[serde(skip_serializing_if = "is_default")]
    pub command_line: String,
    /// The argv; only the Linux GCS supports it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command_args: Vec<String>,
    /// The user (`process.user.username`).
    #[serde(skip_serializing_if = "is_default")]
    pub user: String,
    /// The working directory (`process.cwd`).
    #[serde(skip_serializing_if = "is_default")]
    pub working_directory: String,
    /// The environment; entries with an empty value are dropped (as hcsshim does).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Run with a restricted token.
    #[serde(skip_serializing_if = "is_default")]
    pub restricted_token: bool,
    /// Give the process a pseudo console (`process.terminal`); stderr is then ignored.
    #[serde(skip_serializing_if = "is_default")]
    pub emulate_console: bool,
    /// Create a stdin pipe.
    #[serde(skip_serializing_if = "is_default")]
    pub create_std_in_pipe: bool,
    /// Create a stdout pipe.
    #[serde(skip_serializing_if = "is_default")]
    pub create_std_out_pipe: bool,
    /// Create a stderr pipe.
    #[serde(skip_serializing_if = "is_default")]
    pub create_std_err_pipe: bool,
    /// `[height, width]` of the console.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub console_size: Vec<u32>,
    /// Use the existing login session.
    #[serde(skip_serializing_if = "is_default")]
    pub use_existing_login: bool,
    /// Use the legacy console.
    #[serde(skip_serializing_if = "is_default")]
    pub use_legacy_console: bool,
}

/// `ConsoleSize{Height, Width}` (process modify requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsoleSize {
    /// Rows.
    pub height: u16,
    /// Columns.
    pub width: u16,
}

/// `CloseHandle{Handle}`: `StdIn`, `StdOut`, `StdErr` or `All`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CloseHandle {
    /// Which handle.
    pub handle: String,
}

/// The settings of `HcsModifyProcess`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProcessModifyRequest {
    /// `ConsoleSize` or `CloseHandle`.
    pub operation: String,
    /// The new console size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<ConsoleSize>,
    /// The handle to close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_handle: Option<CloseHandle>,
}

impl ProcessModifyRequest {
    /// Resize the process's console.
    pub fn resize(height: u16, width: u16) -> Self {
        ProcessModifyRequest {
            operation: "ConsoleSize".to_string(),
            console_size: Some(ConsoleSize { height, width }),
            close_handle: None,
        }
    }

    /// Close the process's stdin (end of input).
    pub fn close_stdin() -> Self {
        ProcessModifyRequest {
            operation: "CloseHandle".to_string(),
            console_size: None,
            close_handle: Some(CloseHandle { handle: "StdIn".to_string() }),
        }
    }
}

/// A Windows container signal (`guestrequest.SignalValueWCOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProcessSignal {
    /// CTRL_C_EVENT.
    CtrlC,
    /// CTRL_BREAK_EVENT.
    CtrlBreak,
    /// CTRL_CLOSE_EVENT.
    CtrlClose,
    /// CTRL_LOGOFF_EVENT.
    CtrlLogOff,
    /// CTRL_SHUTDOWN_EVENT; the only one servercore and nanoserver containers reliably act on.
    CtrlShutdown,
}

impl ProcessSignal {
    /// Maps a runc-style signal name or number to a Windows signal. `None` means "terminate"
    /// (SIGKILL, 9): HCS has no signal for it and hako calls HcsTerminateProcess instead.
    ///
    /// SIGINT (2) is CtrlC; SIGTERM (15, the runc default) is CtrlShutdown, as hcsshim does;
    /// SIGQUIT (3) is CtrlBreak; SIGHUP (1) is CtrlClose.
    pub fn from_runc_signal(signal: &str) -> Result<Option<ProcessSignal>, String> {
        let upper = signal.trim().to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        match name {
            "INT" | "2" => Ok(Some(ProcessSignal::CtrlC)),
            "QUIT" | "3" => Ok(Some(ProcessSignal::CtrlBreak)),
            "HUP" | "1" => Ok(Some(ProcessSignal::CtrlClose)),
            "TERM" | "15" => Ok(Some(ProcessSignal::CtrlShutdown)),
            "KILL" | "9" => Ok(None),
            "CTRLC" => Ok(Some(ProcessSignal::CtrlC)),
            "CTRLBREAK" => Ok(Some(ProcessSignal::CtrlBreak)),
            "CTRLCLOSE" => Ok(Some(ProcessSignal::CtrlClose)),
            "CTRLLOGOFF" => Ok(Some(ProcessSignal::CtrlLogOff)),
            "CTRLSHUTDOWN" => Ok(Some(ProcessSignal::CtrlShutdown)),
            _ => Err(format!(
                "signal {:?} has no Windows equivalent: use SIGINT (CtrlC), SIGQUIT (CtrlBreak), \
                 SIGHUP (CtrlClose), SIGTERM (CtrlShutdown) or SIGKILL (terminate)",
                signal
            )),
        }
    }
}

/// The options of `HcsSignalProcess`: `{"Signal":"CtrlShutdown"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignalProcessOptions {
    /// The signal.
    pub signal: ProcessSignal,
}

/// `ProcessStatus{ProcessId, Exited, ExitCode, LastWaitResult}` (the event data of
/// `HcsEventProcessExited` and the result of `HcsGetProcessInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProcessStatus {
    /// The process id inside the container.
    #[serde(skip_serializing_if = "is_default")]
    pub process_id: u32,
    /// Whether it exited.
    #[serde(skip_serializing_if = "is_default")]
    pub exited: bool,
    /// Its exit code.
    #[serde(skip_serializing_if = "is_default")]
    pub exit_code: u32,
    /// The result of the last wait.
    #[serde(skip_serializing_if = "is_default")]
    pub last_wait_result: i32,
}
