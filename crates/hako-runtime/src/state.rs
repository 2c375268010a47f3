//! The state store: one directory per container under `--root`, guarded by an advisory lock on that directory.
//!
//! Layout: `<root>/<id>/state.json` (a [`State`], replaced atomically), plus whatever the backend keeps beside it
//! (the exec fifo of process isolation, a supervisor socket for VMs). Every command that changes a container holds
//! the exclusive `flock` of `<root>/<id>` while it works, so concurrent commands on one container serialise and
//! commands on different containers never wait for each other. A directory whose lock was taken after it was
//! removed (link count 0) counts as gone.
//!
//! Modes, whatever the caller's umask (as runc): the root is 0700 when hako creates it, a container's directory
//! 0711 (the container's init, already running as the container's user, opens `exec.fifo` in it by name, which
//! needs search permission; the bits give no listing and no access to the files), and every file hako writes
//! there 0600 ([`write_private`]): state.json and the saved config.json hold the process's environment.

use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ContainerId;

/// Errors of the state store, each naming the container or file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The root directory cannot be created or read.
    #[error("state root {path}: {source}; pass a writable directory with --root")]
    Root {
        /// The root.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `create` with an id that is taken.
    #[error("container {0} already exists: choose another id or remove it with `hako delete --force {0}`")]
    Exists(String),
    /// A command named a container that is not there.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// A state file or lock could not be read or written.
    #[error("container {id}: {what} {path}: {source}")]
    Io {
        /// The container.
        id: String,
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// state.json is corrupt.
    #[error(
        "container {id}: corrupt state file {path}: {source}; remove the container with `hako delete --force {id}`"
    )]
    Corrupt {
        /// The container.
        id: String,
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// The backend's part of state.json is not what that backend writes (edited, or written by another version).
    #[error(
        "container {id}: state.json holds {isolation} isolation data that cannot be read ({source}); hako cannot \
         tell which resources it names"
    )]
    Backend {
        /// The container.
        id: String,
        /// The backend that tried to read it.
        isolation: String,
        /// The parser's error.
        source: serde_json::Error,
    },
}

/// Status as runtime-spec defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is still running (or died half way).
    Creating,
    /// Created; the process waits for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The process has exited.
    Stopped,
}

impl Status {
    /// The runtime-spec word for this status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What hako remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// runtime-spec version of the config.
    pub oci_version: String,
    /// The container id.
    pub id: String,
    /// The status when it was last written; the live status is derived by the backend.
    pub status: Status,
    /// Host pid of the container's init process (0 while unknown).
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), to detect pid reuse.
    #[serde(default)]
    pub pid_start_time: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// The config's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// User name (or uid) of whoever created it.
    pub owner: String,
    /// Which isolation runs it: "process" (later also "vm").
    pub isolation: String,
    /// The hooks of the config, kept because later edits of config.json must have no effect.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// Backend-specific data (cgroup paths, namespaces, ...).
    #[serde(default)]
    pub backend: serde_json::Value,
}

impl State {
    /// The state of container `id` whose `create` starts now: status `creating`, no pid yet, everything else
    /// from the bundle. `backend` is the backend's own data (what it must find again to clean up).
    pub fn creating(
        id: &ContainerId,
        bundle: &crate::bundle::Bundle,
        isolation: &str,
        backend: serde_json::Value,
    ) -> State {
        let spec = &bundle.spec;
        State {
            oci_version: spec.version().clone(),
            id: id.to_string(),
            status: Status::Creating,
            pid: 0,
            pid_start_time: 0,
            bundle: bundle.path.clone(),
            rootfs: bundle.rootfs.clone(),
            annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect(),
            created: now_rfc3339(),
            owner: owner_name(),
            isolation: isolation.into(),
            hooks: spec.hooks().clone(),
            backend,
        }
    }

    /// The backend's own data, as that backend wrote it; an error (never a default) when it does not parse, so
    /// that no backend acts on an empty cgroup path or state directory.
    pub fn backend<T: serde::de::DeserializeOwned>(&self) -> Result<T, StateError> {
        T::deserialize(&self.backend).map_err(|source| StateError::Backend {
            id: self.id.clone(),
            isolation: self.isolation.clone(),
            source,
        })
    }

    /// The runtime-spec state document (`hako state`, hook stdin) with `status` as given.
    pub fn oci_json(&self, status: Status) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": status.as_str(),
            "pid": if matches!(status, Status::Stopped) { 0 } else { self.pid },
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
        })
    }
}

/// The store under one `--root`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating with mode 0700 if needed, as runc) the root directory.
    pub fn open(root: &Path) -> Result<Store, StateError> {
        let err = |source| StateError::Root { path: root.to_owned(), source };
        if !root.is_dir() {
            fs::DirBuilder::new().recursive(true).mode(ROOT_MODE).create(root).map_err(err)?;
            // The mode given to mkdir is masked by the umask; this one is not.
            fs::set_permissions(root, fs::Permissions::from_mode(ROOT_MODE)).map_err(err)?;
        }
        let root = fs::canonicalize(root).map_err(|source| StateError::Root { path: root.to_owned(), source })?;
        Ok(Store { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `id` (which may not exist).
    pub fn dir(&self, id: &ContainerId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// Makes the directory of a new container and locks it; fails if the id is taken. A directory without
    /// state.json whose lock is free is what a `create` killed before its first save left: nothing was made
    /// for it yet (state.json names every resource before it exists), `state` and `list` do not show it, and
    /// it is replaced.
    pub fn create(&self, id: &ContainerId) -> Result<Locked, StateError> {
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                self.remove_abandoned(id)?;
                return self.create_once(id);
            }
            Err(source) => return Err(StateError::Root { path: dir, source }),
        }
        self.lock_new(id)
    }

    fn create_once(&self, id: &ContainerId) -> Result<Locked, StateError> {
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => self.lock_new(id),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(StateError::Exists(id.to_string())),
            Err(source) => Err(StateError::Root { path: dir, source }),
        }
    }

    /// Locks the directory this process just made. Between its mkdir and its lock another `create` may have
    /// taken it for abandoned and replaced it: then the id is taken.
    fn lock_new(&self, id: &ContainerId) -> Result<Locked, StateError> {
        let locked = self.lock(id).map_err(|e| match e {
            StateError::NotFound(_) => StateError::Exists(id.to_string()),
            e => e,
        })?;
        if locked.dir.join("state.json").exists() {
            return Err(StateError::Exists(id.to_string()));
        }
        // Exactly 0711 whatever the umask: a umask of 077 must not keep a non-root init from its exec.fifo.
        let dir = self.dir(id);
        fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE)).map_err(|source| StateError::Io {
            id: id.to_string(),
            what: "chmod",
            path: dir.clone(),
            source,
        })?;
        Ok(locked)
    }

    /// Removes the directory of `id` if a killed `create` abandoned it (see [`Store::create`]); otherwise
    /// the id is taken.
    fn remove_abandoned(&self, id: &ContainerId) -> Result<(), StateError> {
        let dir = self.dir(id);
        let taken = || StateError::Exists(id.to_string());
        let file = File::open(&dir).map_err(|_| taken())?;
        // Held until the directory is gone: a create that is still running holds it.
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| taken())?;
        if file.metadata().map(|m| m.nlink() == 0).unwrap_or(true) || dir.join("state.json").exists() {
            return Err(taken());
        }
        fs::remove_dir_all(&dir).map_err(|source| StateError::Io {
            id: id.to_string(),
            what: "remove the abandoned",
            path: dir.clone(),
            source,
        })
    }

    /// Locks the directory of an existing container, waiting for whoever holds it.
    pub fn lock(&self, id: &ContainerId) -> Result<Locked, StateError> {
        let dir = self.dir(id);
        let file = match File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StateError::NotFound(id.to_string())),
            Err(source) => return Err(StateError::Io { id: id.to_string(), what: "open", path: dir, source }),
        };
        // The lock lives as long as the returned `Locked`.
        let file = match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(f) => f,
            Err((_, e)) => {
                return Err(StateError::Io { id: id.to_string(), what: "lock", path: dir, source: e.into() })
            }
        };
        let meta = file.metadata().map_err(|source| StateError::Io {
            id: id.to_string(),
            what: "stat",
            path: dir.clone(),
            source,
        })?;
        if meta.nlink() == 0 {
            return Err(StateError::NotFound(id.to_string()));
        }
        Ok(Locked { id: id.clone(), dir, _lock: file })
    }

    /// Reads the state of `id` without locking (for `list` and `state`).
    pub fn peek(&self, id: &ContainerId) -> Result<State, StateError> {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(StateError::NotFound(id.to_string()));
        }
        read_state(id, &dir)
    }

    /// Ids of every container directory under the root, sorted.
    pub fn list(&self) -> Result<Vec<ContainerId>, StateError> {
        let rd = fs::read_dir(&self.root).map_err(|source| StateError::Root { path: self.root.clone(), source })?;
        let mut ids: Vec<ContainerId> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| ContainerId::parse(&e.file_name().to_string_lossy()).ok())
            .collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(ids)
    }
}

/// A container directory held under its exclusive lock.
#[derive(Debug)]
pub struct Locked {
    id: ContainerId,
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Locked {
    /// The container id.
    pub fn id(&self) -> &ContainerId {
        &self.id
    }

    /// The container's state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads state.json; `None` when `create` died before writing it.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        match read_state(&self.id, &self.dir) {
            Ok(s) => Ok(Some(s)),
            Err(StateError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads state.json, which must exist.
    pub fn load_existing(&self) -> Result<State, StateError> {
        self.load()?.ok_or_else(|| StateError::NotFound(self.id.to_string()))
    }

    /// Replaces state.json atomically: a private temporary file, written and synced, renamed over it, and the
    /// directory synced (a crash leaves the old state or the new one, never an empty file; --root may be on disk).
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let path = self.dir.join("state.json");
        let io = |what, source| StateError::Io { id: self.id.to_string(), what, path: path.clone(), source };
        let data = serde_json::to_vec(state).map_err(|e| io("serialise", e.into()))?;
        self.replace(&path, &data).map_err(|e| io("write", e))
    }

    /// Keeps a copy of the config as it was at create (later edits of the bundle's config.json have no effect).
    pub fn save_config(&self, spec: &oci_spec::runtime::Spec) -> Result<(), StateError> {
        let path = self.dir.join("config.json");
        let io = |what, source| StateError::Io { id: self.id.to_string(), what, path: path.clone(), source };
        let data = serde_json::to_vec(spec).map_err(|e| io("serialise", e.into()))?;
        self.replace(&path, &data).map_err(|e| io("write", e))
    }

    /// Writes `data` to a private temporary file beside `path`, syncs it, renames it over `path` and syncs the
    /// directory.
    fn replace(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = self.dir.join(format!(".{name}.tmp"));
        write_private(&tmp, data)?;
        fs::rename(&tmp, path)?;
        self._lock.sync_all()
    }

    /// The config saved at create.
    pub fn load_config(&self) -> Result<oci_spec::runtime::Spec, StateError> {
        let path = self.dir.join("config.json");
        let data = fs::read(&path).map_err(|source| StateError::Io {
            id: self.id.to_string(),
            what: "read",
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&data).map_err(|source| StateError::Corrupt { id: self.id.to_string(), path, source })
    }

    /// Removes the container's directory and everything in it, releasing the lock.
    pub fn remove(self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => {
                Err(StateError::Io { id: self.id.to_string(), what: "remove", path: self.dir.clone(), source })
            }
        }
    }
}

/// Mode of the root directory when hako creates it.
const ROOT_MODE: u32 = 0o700;
/// Mode of a container's directory.
const DIR_MODE: u32 = 0o711;
/// Mode of every file hako writes in the state tree.
pub const FILE_MODE: u32 = 0o600;

/// Creates (or truncates) `path` as a file only its owner can read, whatever the umask, for writing.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    // A file left by an older hako keeps its mode through O_TRUNC; an unusual umask may clear owner bits.
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Writes `data` to `path` as a private file ([`create_private`]) and syncs it.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = create_private(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn read_state(id: &ContainerId, dir: &Path) -> Result<State, StateError> {
    let path = dir.join("state.json");
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(StateError::NotFound(id.to_string())),
        Err(source) => return Err(StateError::Io { id: id.to_string(), what: "read", path, source }),
    };
    serde_json::from_slice(&data).map_err(|source| StateError::Corrupt { id: id.to_string(), path, source })
}

/// The name of the calling user from /etc/passwd, else the uid as a number (no NSS: hako may be linked
/// statically, and the guest agent has no NSS modules).
pub fn owner_name() -> String {
    let uid = nix::unistd::getuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2].parse() == Ok(uid))
        .map(|f| f[0].to_string())
        .unwrap_or_else(|| uid.to_string())
}

/// Now as RFC 3339 UTC with nanoseconds, e.g. `2026-11-30T05:29:46.123456789Z`.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Formats seconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str) -> State {
        State {
            oci_version: "1.0.2".into(),
            id: id.into(),
            status: Status::Creating,
            pid: 0,
            pid_start_time: 0,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            annotations: BTreeMap::new(),
            created: now_rfc3339(),
            owner: "root".into(),
            isolation: "process".into(),
            hooks: None,
            backend: serde_json::Value::Null,
        }
    }

    #[test]
    fn create_replaces_only_a_directory_that_a_killed_create_left_before_its_first_save() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let id = ContainerId::parse("c1").unwrap();
        // Killed between mkdir and the first save: no state.json, nobody holds the lock.
        fs::create_dir(store.dir(&id)).unwrap();
        fs::write(store.dir(&id).join(".state.json.tmp"), "{").unwrap();
        assert!(matches!(store.peek(&id), Err(StateError::NotFound(_))));
        let locked = store.create(&id).unwrap();
        assert!(!store.dir(&id).join(".state.json.tmp").exists());
        // A create under way (the lock is held) keeps its directory.
        assert!(matches!(store.create(&id), Err(StateError::Exists(_))));
        locked.save(&sample("c1")).unwrap();
        drop(locked);
        // A saved container keeps it, lock or not.
        assert!(matches!(store.create(&id), Err(StateError::Exists(_))));
        assert_eq!(store.peek(&id).unwrap().id, "c1");
    }

    #[test]
    fn create_save_load_remove() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let id = ContainerId::parse("c1").unwrap();
        let locked = store.create(&id).unwrap();
        assert!(locked.load().unwrap().is_none());
        locked.save(&sample("c1")).unwrap();
        assert_eq!(locked.load_existing().unwrap().id, "c1");
        assert!(matches!(store.create(&id), Err(StateError::Exists(_))));
        assert_eq!(store.list().unwrap(), vec![id.clone()]);
        locked.remove().unwrap();
        assert!(matches!(store.lock(&id), Err(StateError::NotFound(_))));
    }

    #[test]
    fn saved_files_are_private_even_over_a_stale_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        assert_eq!(fs::metadata(store.root()).unwrap().permissions().mode() & 0o7777, 0o700);
        let id = ContainerId::parse("c4").unwrap();
        let locked = store.create(&id).unwrap();
        assert_eq!(fs::metadata(locked.dir()).unwrap().permissions().mode() & 0o7777, 0o711);
        let stale = locked.dir().join(".state.json.tmp");
        fs::write(&stale, "old").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o666)).unwrap();
        locked.save(&sample("c4")).unwrap();
        let meta = fs::metadata(locked.dir().join("state.json")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert!(!stale.exists(), "the temporary file was renamed over state.json");
        assert_eq!(locked.load_existing().unwrap().id, "c4");
    }

    #[test]
    fn lock_serialises_and_sees_removal() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let id = ContainerId::parse("c2").unwrap();
        let locked = store.create(&id).unwrap();
        let s2 = store.clone();
        let id2 = id.clone();
        let waiter = std::thread::spawn(move || s2.lock(&id2).map(|_| ()));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "second lock must wait for the first");
        locked.remove().unwrap();
        assert!(matches!(waiter.join().unwrap(), Err(StateError::NotFound(_))));
    }

    #[test]
    fn backend_data_is_typed_and_never_defaulted() {
        #[derive(Debug, Default, Deserialize, PartialEq)]
        struct Data {
            dir: PathBuf,
        }
        let mut s = sample("c3");
        s.backend = serde_json::json!({"dir": "/run/hako/c3"});
        assert_eq!(s.backend::<Data>().unwrap(), Data { dir: "/run/hako/c3".into() });
        for bad in [serde_json::Value::Null, serde_json::json!("garbage"), serde_json::json!({"dir": 5})] {
            s.backend = bad.clone();
            let e = s.backend::<Data>().unwrap_err();
            assert!(matches!(e, StateError::Backend { .. }), "{bad}: {e}");
            let e = e.to_string();
            assert!(e.contains("c3") && e.contains("process isolation data") && e.contains("state.json"), "{e}");
        }
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_795_000_000, 5), "2026-11-18T11:06:40.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }
}
