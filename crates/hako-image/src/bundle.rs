//! What a container of an image runs, from the image configuration's `config` object: the process arguments
//! (Entrypoint and Cmd, with Docker's override rules), the environment, the working directory and the user
//! (a name resolved through the image's own /etc/passwd and /etc/group, read inside the unpacked rootfs
//! without following a symlink out of it). The OCI runtime spec itself is assembled by the `hako` binary
//! (`hako image run`); nothing here writes outside a rootfs it is given.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

use crate::store::{ImageRecord, Store, StoreError};

/// The PATH a container gets when its image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The largest /etc/passwd or /etc/group hako reads from an image.
const MAX_ACCOUNT_FILE: u64 = 4 << 20;

/// Why the run configuration of an image cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The config blob is not an image configuration.
    #[error("image {image}: its config is not a valid image configuration: {why} (pull or load it again)")]
    BadConfig {
        /// The image.
        image: String,
        /// What is wrong.
        why: String,
    },
    /// Neither the image nor the command line names a program.
    #[error("image {0} has no Entrypoint and no Cmd: name the command to run after the image")]
    NoCommand(String),
    /// A user or group the image or `--user` names is not in the image.
    #[error("{what} {name:?} is not in the image's {file}: give a number instead (--user uid[:gid]) or a name the image defines")]
    NoAccount {
        /// `user` or `group`.
        what: &'static str,
        /// The name.
        name: String,
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
    },
    /// A `--user` value is malformed.
    #[error("user {0:?} is not uid[:gid] or name[:group]")]
    BadUser(String),
    /// A file of the rootfs cannot be read safely.
    #[error("rootfs {root}: {path}: {why}")]
    Rootfs {
        /// The rootfs.
        root: PathBuf,
        /// The file inside it.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// The `config` object of an image configuration: what a container of the image runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `user[:group]`, names or numbers.
    #[serde(default)]
    pub user: Option<String>,
    /// `KEY=VALUE` entries.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// The program and its first arguments.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// The default arguments (after Entrypoint), replaced by a command given on the command line.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// The working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Paths the image declares as volumes.
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// Ports the image declares (`80/tcp`).
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// The signal that stops it.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

#[derive(Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<RunConfig>,
}

/// Reads the run configuration of `image` from its config blob.
pub fn run_config(store: &Store, image: &ImageRecord) -> Result<RunConfig, BundleError> {
    let blob = store.read_blob(&image.config.digest)?;
    let c: ConfigBlob = serde_json::from_slice(&blob)
        .map_err(|e| BundleError::BadConfig { image: image.name.clone(), why: e.to_string() })?;
    Ok(c.config.unwrap_or_default())
}

/// The process arguments, by Docker's rules: `entrypoint` (from `--entrypoint`; an empty string clears the
/// image's) replaces the image's Entrypoint and drops its Cmd; a non-empty `command` replaces Cmd.
pub fn process_args(
    image: &str,
    cfg: &RunConfig,
    entrypoint: Option<&str>,
    command: &[String],
) -> Result<Vec<String>, BundleError> {
    let mut args: Vec<String> = match entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
        None => cfg.entrypoint.clone().unwrap_or_default(),
    };
    if !command.is_empty() {
        args.extend(command.iter().cloned());
    } else if entrypoint.is_none() {
        args.extend(cfg.cmd.clone().unwrap_or_default());
    }
    if args.is_empty() {
        return Err(BundleError::NoCommand(image.to_string()));
    }
    Ok(args)
}

/// The environment: the image's, then `overrides` (`KEY=VALUE`, replacing the same key), with Docker's PATH
/// when neither sets one. Order is kept; a key appears once.
pub fn merge_env(image_env: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in image_env.iter().chain(overrides) {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match out.iter_mut().find(|o| o.split_once('=').map_or(o.as_str(), |(k, _)| k) == key) {
            Some(slot) => *slot = e.clone(),
            None => out.push(e.clone()),
        }
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(0, DEFAULT_PATH.to_string());
    }
    out
}

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups (from the image's /etc/group, when the user has a name there).
    pub additional_gids: Vec<u32>,
    /// The home directory from /etc/passwd, if the user is listed there.
    pub home: Option<String>,
}

/// Resolves `spec` (`user[:group]`, each a name or a number; empty means root) against the account files of
/// the unpacked `rootfs`, as Docker does: a number need not be listed, a name must be; without a group the
/// user's primary group (0 for an unlisted uid).
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<User, BundleError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if (user.is_empty() && !spec.is_empty()) || group == Some("") || spec.contains(char::is_whitespace) {
        return Err(BundleError::BadUser(spec.to_string()));
    }
    let passwd = read_in_root(rootfs, "etc/passwd")?.unwrap_or_default();
    let groups = read_in_root(rootfs, "etc/group")?.unwrap_or_default();
    let passwd = String::from_utf8_lossy(&passwd);
    let groups = String::from_utf8_lossy(&groups);
    // name:password:uid:gid:gecos:home:shell
    let entries: Vec<Vec<&str>> =
        passwd.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 7).collect();
    let by = |pred: &dyn Fn(&Vec<&str>) -> bool| entries.iter().find(|f| pred(f)).cloned();
    let user = if user.is_empty() { "0" } else { user };
    let entry = match user.parse::<u32>() {
        Ok(uid) => by(&|f| f[2].parse::<u32>() == Ok(uid)),
        Err(_) => Some(by(&|f| f[0] == user).ok_or_else(|| BundleError::NoAccount {
            what: "user",
            name: user.to_string(),
            file: "/etc/passwd",
        })?),
    };
    let uid = match &entry {
        Some(f) => f[2].parse().map_err(|_| BundleError::BadUser(spec.to_string()))?,
        None => user.parse().map_err(|_| BundleError::BadUser(spec.to_string()))?,
    };
    // name:password:gid:members
    let group_entries: Vec<Vec<&str>> =
        groups.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 4).collect();
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| BundleError::NoAccount { what: "group", name: g.to_string(), file: "/etc/group" })?,
        },
        None => entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let mut additional_gids = Vec::new();
    if let Some(name) = entry.as_ref().map(|f| f[0]) {
        for f in &group_entries {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !additional_gids.contains(&g) {
                        additional_gids.push(g);
                    }
                }
            }
        }
    }
    Ok(User { uid, gid, additional_gids, home: entry.map(|f| f[5].to_string()).filter(|h| !h.is_empty()) })
}

fn rootfs_err(root: &Path, path: &str, why: impl ToString) -> BundleError {
    BundleError::Rootfs { root: root.to_path_buf(), path: path.to_string(), why: why.to_string() }
}

fn open_root(root: &Path) -> Result<OwnedFd, BundleError> {
    rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty())
        .map_err(|e| rootfs_err(root, ".", e))
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS).union(ResolveFlags::NO_XDEV);

/// Reads the regular file `path` (relative) of `root`, resolving every symlink inside `root` (an image's
/// /etc/passwd may be a symlink, never one that leaves the rootfs). None when it does not exist; an error
/// when it is not a regular file or larger than 4 MiB.
pub fn read_in_root(root: &Path, path: &str) -> Result<Option<Vec<u8>>, BundleError> {
    let dir = open_root(root)?;
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match rustix::fs::openat2(&dir, path, flags, Mode::empty(), IN_ROOT) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(rootfs_err(root, path, e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| rootfs_err(root, path, e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(rootfs_err(root, path, "not a regular file"));
    }
    let mut data = Vec::new();
    std::fs::File::from(fd).take(MAX_ACCOUNT_FILE + 1).read_to_end(&mut data).map_err(|e| rootfs_err(root, path, e))?;
    if data.len() as u64 > MAX_ACCOUNT_FILE {
        return Err(rootfs_err(root, path, format!("larger than {MAX_ACCOUNT_FILE} bytes")));
    }
    Ok(Some(data))
}

/// Creates the directory `path` (absolute, inside the container) and its missing parents in `root`, each
/// step resolved inside `root` (0755, owned by root), as Docker does for a WorkingDir the image lacks.
pub fn ensure_dir_in_root(root: &Path, path: &str) -> Result<(), BundleError> {
    let dir = open_root(root)?;
    let mut current = String::new();
    for c in Path::new(path).components() {
        let name = match c {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => n.to_string_lossy().into_owned(),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(rootfs_err(root, path, "a working directory must be absolute without `..`"))
            }
        };
        let parent = if current.is_empty() { ".".to_string() } else { current.clone() };
        let pfd = rustix::fs::openat2(
            &dir,
            &parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )
        .map_err(|e| rootfs_err(root, &parent, e))?;
        match rustix::fs::mkdirat(&pfd, name.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(rootfs_err(root, path, e)),
        }
        current = if current.is_empty() { name } else { format!("{current}/{name}") };
    }
    // The last step must be a directory (a file or a dangling symlink named like it is refused).
    rustix::fs::openat2(
        &dir,
        if current.is_empty() { "." } else { &current },
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        IN_ROOT,
    )
    .map(drop)
    .map_err(|e| rootfs_err(root, path, io::Error::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args_follow_dockers_rules() {
        let cfg = RunConfig { entrypoint: Some(s(&["/ep"])), cmd: Some(s(&["-x"])), ..RunConfig::default() };
        assert_eq!(process_args("i", &cfg, None, &[]).unwrap(), s(&["/ep", "-x"]));
        assert_eq!(process_args("i", &cfg, None, &s(&["a"])).unwrap(), s(&["/ep", "a"]));
        assert_eq!(process_args("i", &cfg, Some("/other"), &[]).unwrap(), s(&["/other"]));
        assert_eq!(process_args("i", &cfg, Some(""), &s(&["ls"])).unwrap(), s(&["ls"]));
        let err = process_args("img", &RunConfig::default(), None, &[]).unwrap_err().to_string();
        assert!(err.contains("img") && err.contains("name the command"), "{err}");
    }

    #[test]
    fn env_overrides_by_key_and_defaults_path() {
        let env = merge_env(&s(&["A=1", "B=2"]), &s(&["B=3", "C=4"]));
        assert_eq!(env, s(&[DEFAULT_PATH, "A=1", "B=3", "C=4"]));
        let env = merge_env(&s(&["PATH=/x"]), &[]);
        assert_eq!(env, s(&["PATH=/x"]));
    }

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:u:/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nwheel:x:10:user\nuser:x:1000:\n").unwrap();
        d
    }

    #[test]
    fn users_resolve_through_the_images_files() {
        let d = rootfs();
        let u = resolve_user(d.path(), "user").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone(), u.home.as_deref()),
            (1000, 1000, vec![10], Some("/home/user"))
        );
        assert_eq!(resolve_user(d.path(), "user:wheel").unwrap().gid, 10);
        let u = resolve_user(d.path(), "4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home), (4242, 0, None));
        assert_eq!(resolve_user(d.path(), "4242:7").unwrap().gid, 7);
        assert_eq!(resolve_user(d.path(), "").unwrap().uid, 0);
        let e = resolve_user(d.path(), "ghost").unwrap_err().to_string();
        assert!(e.contains("\"ghost\"") && e.contains("/etc/passwd"), "{e}");
        assert!(resolve_user(d.path(), "user:nogroup").unwrap_err().to_string().contains("/etc/group"));
        assert!(matches!(resolve_user(d.path(), "a:"), Err(BundleError::BadUser(_))));
    }

    #[test]
    fn account_files_never_resolve_outside_the_rootfs() {
        let d = rootfs();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::remove_file(d.path().join("etc/passwd")).unwrap();
        // An absolute symlink resolves inside the rootfs, where the target does not exist.
        std::os::unix::fs::symlink(outside.path().join("passwd"), d.path().join("etc/passwd")).unwrap();
        assert!(read_in_root(d.path(), "etc/passwd").unwrap().is_none());
        assert!(matches!(resolve_user(d.path(), "evil"), Err(BundleError::NoAccount { .. })));
        // A FIFO is refused without blocking.
        std::fs::remove_file(d.path().join("etc/group")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.path().join("etc/group"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(read_in_root(d.path(), "etc/group").unwrap_err().to_string().contains("not a regular file"));
    }

    #[test]
    fn working_dirs_are_created_inside_the_rootfs() {
        let d = rootfs();
        ensure_dir_in_root(d.path(), "/srv/app").unwrap();
        assert!(d.path().join("srv/app").is_dir());
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("escape")).unwrap();
        // The symlink resolves inside the rootfs (to a path that does not exist there), so this fails.
        assert!(ensure_dir_in_root(d.path(), "/escape/x").is_err());
        assert!(!outside.path().join("x").exists(), "mkdir followed a symlink out of the rootfs");
        assert!(ensure_dir_in_root(d.path(), "/a/../b").is_err());
    }
}
