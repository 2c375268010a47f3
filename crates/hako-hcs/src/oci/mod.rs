//! The parts of an OCI runtime bundle (`config.json`) the Windows backend reads, as serde
//! structs of its own (oci-spec needs a newer compiler than the rustc 1.63 the Windows check
//! uses). Unknown members are ignored here; LCOW forwards the raw JSON, so nothing is lost.

mod windows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use windows::{
    HyperV, Windows, WindowsCpuAffinity, WindowsCpuResources, WindowsDevice, WindowsMemoryResources, WindowsNetwork,
    WindowsResources, WindowsStorageResources,
};

/// Reading a bundle failed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// config.json could not be read.
    #[error("cannot read bundle config {path}: {source}: pass the bundle directory that holds config.json")]
    Read {
        /// The config.json path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// config.json is not a valid OCI runtime config.
    #[error("bundle config {path} is not a valid OCI runtime config: {source}")]
    Parse {
        /// The config.json path.
        path: PathBuf,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
}

/// A parsed bundle: the typed spec plus the raw JSON (forwarded as is to a Linux guest).
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The typed spec.
    pub spec: Spec,
    /// The JSON as written in config.json.
    pub raw: serde_json::Value,
}

impl Bundle {
    /// Reads `DIR/config.json`.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Read { path: path.clone(), source })?;
        Bundle::from_json(dir, &text).map_err(|source| BundleError::Parse { path, source })
    }

    /// Parses a config given as text; `dir` is recorded as the bundle directory.
    pub fn from_json(dir: &Path, text: &str) -> Result<Bundle, serde_json::Error> {
        let spec: Spec = serde_json::from_str(text)?;
        let raw: serde_json::Value = serde_json::from_str(text)?;
        Ok(Bundle { dir: dir.to_path_buf(), spec, raw })
    }
}

/// The OCI runtime spec, limited to what a Windows runtime uses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    /// The spec version.
    pub oci_version: String,
    /// The container's init process.
    pub process: Option<Process>,
    /// The root filesystem.
    pub root: Option<Root>,
    /// The host name.
    pub hostname: String,
    /// Additional mounts.
    pub mounts: Vec<Mount>,
    /// Annotations (hcsshim's `io.microsoft.*` settings live here).
    pub annotations: BTreeMap<String, String>,
    /// The Windows section.
    pub windows: Option<Windows>,
    /// The Linux section: its presence makes the bundle an LCOW container.
    pub linux: Option<serde_json::Value>,
    /// Hooks (not run by the Windows backend).
    pub hooks: Option<serde_json::Value>,
}

/// `process`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Process {
    /// Attach a console.
    pub terminal: bool,
    /// The console size.
    pub console_size: Option<ConsoleBox>,
    /// The user.
    pub user: User,
    /// The argv.
    pub args: Vec<String>,
    /// The Windows command line, preferred over `args` on Windows.
    pub command_line: Option<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
}

/// `process.consoleSize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleBox {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

/// `process.user`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// The Windows user name (`ContainerUser`, `ContainerAdministrator`, `NT AUTHORITY\SYSTEM`).
    pub username: String,
    /// The Linux uid.
    pub uid: u32,
    /// The Linux gid.
    pub gid: u32,
}

/// `root`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Root {
    /// For Windows: the volume GUID path of the mounted scratch, `\\?\Volume{GUID}\`.
    pub path: String,
    /// Must be false on Windows.
    pub readonly: bool,
}

/// `mounts[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    /// The path inside the container.
    pub destination: String,
    /// The mount type (empty for a Windows directory mapping).
    #[serde(rename = "type")]
    pub mount_type: String,
    /// The host path.
    pub source: String,
    /// Options; `ro` is the one Windows honours.
    pub options: Vec<String>,
}

impl Mount {
    /// Whether the options ask for a read-only mount (case-insensitive `ro`, as hcsshim).
    pub fn is_read_only(&self) -> bool {
        self.options.iter().any(|o| o.eq_ignore_ascii_case("ro"))
    }
}
