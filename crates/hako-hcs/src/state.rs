//! The Windows backend's per-container state under `--root`: `<root>/<id>/state.json` plus the
//! copy of the bundle's `config.json` the container was created from (the supervisor
//! translates that copy, so later edits of the bundle do not change a created container).
//! Writes are atomic (temporary file, then rename). Plain files, so this builds and is tested
//! on every host.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::HcsError;
use crate::translate::Isolation;

/// OCI container status (plus `paused`, as runc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The supervisor is bringing the container up.
    Creating,
    /// The compute system runs; the init process has not been started.
    Created,
    /// The init process runs.
    Running,
    /// The compute system is paused.
    Paused,
    /// The init process exited (or the supervisor is gone).
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What hako remembers about a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    /// The container id (and HCS id of its compute system).
    pub id: String,
    /// The bundle directory given to `create`.
    pub bundle: PathBuf,
    /// How it is isolated.
    pub isolation: Isolation,
    /// Isolation asked for on the command line, re-applied by the supervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_override: Option<Isolation>,
    /// Its status.
    pub status: Status,
    /// The HCS owner.
    pub owner: String,
    /// The utility VM's compute system id (Hyper-V, LCOW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utility_vm_id: Option<String>,
    /// The supervisor's named pipe.
    pub pipe: String,
    /// The supervisor's host process id (the `pid` of `hako state`, as runhcs reports its shim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor_pid: Option<u32>,
    /// The init process's id inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_process_id: Option<u32>,
    /// The init process's exit code, once it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// The host build the documents were made for.
    pub host_build: u32,
    /// The image's os.version, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_os_version: Option<String>,
}

/// The state directory tree.
#[derive(Debug, Clone)]
pub struct StateStore {
    root: PathBuf,
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> HcsError {
    HcsError::Io { action, path: path.to_path_buf(), source }
}

impl StateStore {
    /// A store under `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateStore { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn state_file(&self, id: &str) -> PathBuf {
        self.dir(id).join("state.json")
    }

    /// Creates the directory of a new container and writes its state and config copy; fails
    /// if the container exists.
    pub fn create(&self, state: &ContainerState, config_json: &str) -> Result<(), HcsError> {
        fs::create_dir_all(&self.root).map_err(|e| io("cannot create state root", &self.root, e))?;
        let dir = self.dir(&state.id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(HcsError::AlreadyExists { id: state.id.clone(), root: self.root.clone() })
            }
            Err(e) => return Err(io("cannot create state directory", &dir, e)),
        }
        write_atomic(&dir.join("config.json"), config_json.as_bytes())?;
        self.save(state)
    }

    /// Writes `state` atomically.
    pub fn save(&self, state: &ContainerState) -> Result<(), HcsError> {
        let text = serde_json::to_string_pretty(state)
            .map_err(|e| HcsError::CorruptState { path: self.state_file(&state.id), detail: e.to_string() })?;
        write_atomic(&self.state_file(&state.id), text.as_bytes())
    }

    /// Reads the state of `id`.
    pub fn load(&self, id: &str) -> Result<ContainerState, HcsError> {
        let path = self.state_file(id);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HcsError::NotFound { id: id.to_string(), root: self.root.clone() })
            }
            Err(e) => return Err(io("cannot read state file", &path, e)),
        };
        serde_json::from_str(&text).map_err(|e| HcsError::CorruptState { path, detail: e.to_string() })
    }

    /// Every container's state, sorted by id; directories without a readable state are skipped.
    pub fn list(&self) -> Result<Vec<ContainerState>, HcsError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("cannot list state root", &self.root, e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if let Some(id) = entry.file_name().to_str() {
                if let Ok(state) = self.load(id) {
                    out.push(state);
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Removes the container's directory.
    pub fn remove(&self, id: &str) -> Result<(), HcsError> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("cannot remove state directory", &dir, e)),
        }
    }

    /// Records why the supervisor failed, for `create` to report.
    pub fn write_error(&self, id: &str, message: &str) -> Result<(), HcsError> {
        write_atomic(&self.dir(id).join("supervisor.err"), message.as_bytes())
    }

    /// The supervisor's failure, if it recorded one.
    pub fn read_error(&self, id: &str) -> Option<String> {
        fs::read_to_string(self.dir(id).join("supervisor.err")).ok()
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), HcsError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| io("cannot write", &tmp, e))?;
    f.write_all(data).map_err(|e| io("cannot write", &tmp, e))?;
    f.sync_all().map_err(|e| io("cannot flush", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io("cannot replace", path, e))
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("hako-hcs-state-{}-{}", name, std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    fn sample(id: &str) -> ContainerState {
        ContainerState {
            id: id.to_string(),
            bundle: PathBuf::from("/b"),
            isolation: Isolation::Hyperv,
            isolation_override: None,
            status: Status::Created,
            owner: "hako".into(),
            utility_vm_id: Some(format!("{}@vm", id)),
            pipe: r"\\.\pipe\ProtectedPrefix\Administrators\hako-x".into(),
            supervisor_pid: Some(42),
            init_process_id: None,
            exit_code: None,
            created_unix: 1,
            host_build: 20348,
            image_os_version: None,
        }
    }

    #[test]
    fn create_load_update_list_remove() {
        let root = temp_root("cycle");
        let store = StateStore::new(&root);
        store.create(&sample("b"), "{}").unwrap();
        store.create(&sample("a"), "{\"x\":1}").unwrap();
        assert!(matches!(store.create(&sample("a"), "{}"), Err(HcsError::AlreadyExists { .. })));
        let mut a = store.load("a").unwrap();
        assert_eq!(a, sample("a"));
        assert_eq!(fs::read_to_string(store.dir("a").join("config.json")).unwrap(), "{\"x\":1}");
        a.status = Status::Stopped;
        a.exit_code = Some(3);
        store.save(&a).unwrap();
        assert_eq!(store.load("a").unwrap().exit_code, Some(3));
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, vec!["a", "b"]);
        store.remove("a").unwrap();
        assert!(matches!(store.load("a"), Err(HcsError::NotFound { .. })));
        let e = store.load("a").unwrap_err().to_string();
        assert!(e.contains("container a does not exist under"), "{}", e);
        store.remove("a").unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn corrupt_state_names_the_file_and_the_fix() {
        let root = temp_root("corrupt");
        let store = StateStore::new(&root);
        store.create(&sample("c"), "{}").unwrap();
        fs::write(store.dir("c").join("state.json"), "{not json").unwrap();
        let e = store.load("c").unwrap_err().to_string();
        assert!(e.contains("state.json is corrupt"), "{}", e);
        assert!(e.contains("hako delete --force"), "{}", e);
        assert!(store.list().unwrap().is_empty());
        store.write_error("c", "boom").unwrap();
        assert_eq!(store.read_error("c").as_deref(), Some("boom"));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn missing_root_lists_nothing() {
        let store = StateStore::new(temp_root("missing"));
        assert!(store.list().unwrap().is_empty());
    }
}
