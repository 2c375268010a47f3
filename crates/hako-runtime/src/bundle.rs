//! Loading an OCI bundle: the directory, its `config.json` and its root filesystem, checked before anything is
//! created so that bad input fails with nothing to clean up.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Spec;

/// What is wrong with a bundle, naming the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle directory is missing or unreadable.
    #[error("bundle {path}: {source}; pass an existing bundle directory with --bundle")]
    Dir {
        /// The bundle path as given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bundle path goes through a symlink.
    #[error("bundle {given} is reached through the symlink {link}: hako refuses bundles behind symlinks; pass the resolved path {resolved}")]
    Symlink {
        /// The path as given.
        given: PathBuf,
        /// The first component that is a symlink.
        link: PathBuf,
        /// Where it resolves to.
        resolved: PathBuf,
    },
    /// config.json cannot be read.
    #[error("cannot read {path}: {source}; a bundle needs a config.json (create one with `hako spec`)")]
    ReadConfig {
        /// Path of config.json.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// config.json is not a valid runtime-spec document.
    #[error("invalid config {path}: {source}")]
    ParseConfig {
        /// Path of config.json.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// A required part of the configuration is missing or wrong.
    #[error("invalid config {path}: {what}")]
    Invalid {
        /// Path of config.json.
        path: PathBuf,
        /// What is wrong and how to fix it.
        what: String,
    },
    /// The root filesystem is not there.
    #[error("rootfs {path} does not exist or is not a directory: create it or fix root.path in {config}")]
    Rootfs {
        /// The resolved rootfs path.
        path: PathBuf,
        /// Path of config.json.
        config: PathBuf,
    },
}

/// A bundle that passed every check: absolute, symlink-free, with a parsed config and an existing rootfs.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub path: PathBuf,
    /// The parsed `config.json`.
    pub spec: Spec,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Loads the bundle at `dir` (relative paths are relative to the current directory).
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let path = absolute_without_symlinks(dir)?;
        let config = path.join("config.json");
        let text = std::fs::read(&config).map_err(|source| BundleError::ReadConfig { path: config.clone(), source })?;
        let spec = Bundle::parse_config(&config, &text)?;
        let root = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default();
        let rootfs = if root.is_absolute() { root } else { path.join(root) };
        if !rootfs.is_dir() {
            return Err(BundleError::Rootfs { path: rootfs, config });
        }
        Ok(Bundle { path, spec, rootfs })
    }

    /// Parses and checks the text of a config.json (`config` is its path, for messages): everything
    /// [`Bundle::load`] checks but the root filesystem's existence. Touches nothing; any text gives a spec or
    /// an error.
    pub fn parse_config(config: &Path, text: &[u8]) -> Result<Spec, BundleError> {
        let mut value: serde_json::Value = serde_json::from_slice(text)
            .map_err(|source| BundleError::ParseConfig { path: config.to_owned(), source })?;
        drop_unknown_capabilities(&mut value);
        let spec: Spec = serde_json::from_value(value)
            .map_err(|source| BundleError::ParseConfig { path: config.to_owned(), source })?;
        let invalid = |what: &str| BundleError::Invalid { path: config.to_owned(), what: what.to_owned() };
        if spec.root().is_none() {
            return Err(invalid("root is missing: add \"root\": {\"path\": \"rootfs\"}"));
        }
        if spec.process().is_none() {
            return Err(invalid("process is missing: a container needs a process with args"));
        }
        if let Some(p) = spec.process() {
            if p.args().as_ref().is_none_or(|a| a.is_empty()) {
                return Err(invalid("process.args is empty: name the program to run"));
            }
            if !p.cwd().is_absolute() {
                return Err(invalid(&format!("process.cwd {:?} is not absolute", p.cwd())));
            }
            check_exec_strings(p).map_err(|what| invalid(&what))?;
        }
        if let Some(mounts) = spec.mounts() {
            for m in mounts {
                if !m.destination().is_absolute() {
                    return Err(invalid(&format!("mount destination {:?} is not absolute", m.destination())));
                }
            }
        }
        Ok(spec)
    }
}

/// The longest argument or environment string Linux's execve takes (MAX_ARG_STRLEN: 32 pages of 4 KiB).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

/// Checks that every string of `process.args` and `process.env` fits in execve, naming the first one that
/// does not, its size and the limit (a longer one can never run: execve fails with E2BIG).
pub fn check_exec_strings(p: &oci_spec::runtime::Process) -> Result<(), String> {
    let lists = [("process.args", p.args().as_deref()), ("process.env", p.env().as_deref())];
    for (field, list) in lists {
        for (i, s) in list.unwrap_or_default().iter().enumerate() {
            // execve counts the terminating NUL.
            if s.len() + 1 > MAX_ARG_STRLEN {
                return Err(format!(
                    "{field}[{i}] is {} bytes, more than the {MAX_ARG_STRLEN} bytes Linux allows for one argument \
                     or environment string (MAX_ARG_STRLEN): pass the data in a file instead",
                    s.len()
                ));
            }
        }
    }
    Ok(())
}

/// runtime-spec: a capability the runtime cannot map MUST be logged as a warning and SHOULD NOT fail the
/// container. Removes such names from every set of process.capabilities, with a warning naming each.
fn drop_unknown_capabilities(config: &mut serde_json::Value) {
    let Some(caps) = config.pointer_mut("/process/capabilities").and_then(|c| c.as_object_mut()) else { return };
    for (set, names) in caps.iter_mut() {
        let Some(list) = names.as_array_mut() else { continue };
        list.retain(|name| {
            let known = serde_json::from_value::<oci_spec::runtime::Capability>(name.clone()).is_ok();
            if !known {
                tracing::warn!("process.capabilities.{set}: unknown capability {name}: ignored");
            }
            known
        });
    }
}

/// Makes `dir` absolute and refuses any symlink on the way (the bundle is trusted input; a symlink in its path
/// lets whoever controls the link swap the bundle between create and start).
fn absolute_without_symlinks(dir: &Path) -> Result<PathBuf, BundleError> {
    let cwd = std::env::current_dir().map_err(|source| BundleError::Dir { path: dir.to_owned(), source })?;
    let joined = cwd.join(dir);
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                let meta = std::fs::symlink_metadata(&out)
                    .map_err(|source| BundleError::Dir { path: dir.to_owned(), source })?;
                if meta.file_type().is_symlink() {
                    let resolved = std::fs::canonicalize(&joined).unwrap_or_else(|_| joined.clone());
                    return Err(BundleError::Symlink { given: dir.to_owned(), link: out, resolved });
                }
            }
        }
    }
    if !out.is_dir() {
        let source = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory");
        return Err(BundleError::Dir { path: dir.to_owned(), source });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["/bin/true"],"cwd":"/","user":{"uid":0,"gid":0}}}"#;

    fn bundle(config: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        std::fs::write(d.path().join("config.json"), config).unwrap();
        d
    }

    #[test]
    fn loads_a_minimal_bundle() {
        let d = bundle(MINIMAL);
        let b = Bundle::load(d.path()).unwrap();
        assert_eq!(b.rootfs, d.path().join("rootfs"));
    }

    #[test]
    fn truncated_config_names_file_and_position() {
        let d = bundle(&MINIMAL[..40]);
        let err = Bundle::load(d.path()).unwrap_err().to_string();
        assert!(err.contains("invalid config") && err.contains("config.json") && err.contains("line"), "{err}");
    }

    #[test]
    fn unknown_namespace_is_named() {
        let d = bundle(&MINIMAL.replace(r#""process""#, r#""linux":{"namespaces":[{"type":"foo"}]},"process""#));
        let err = Bundle::load(d.path()).unwrap_err().to_string();
        assert!(err.contains("foo"), "{err}");
    }

    #[test]
    fn unknown_capabilities_are_dropped() {
        let d = bundle(
            &MINIMAL.replace(r#""cwd":"/""#, r#""cwd":"/","capabilities":{"bounding":["CAP_KILL","CAP_NO_SUCH"]}"#),
        );
        let b = Bundle::load(d.path()).unwrap();
        let caps = b.spec.process().as_ref().unwrap().capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn exec_strings_longer_than_max_arg_strlen_are_named() {
        let mut p = oci_spec::runtime::Process::default();
        p.set_args(Some(vec!["echo".into(), "a".repeat(MAX_ARG_STRLEN - 1)]));
        check_exec_strings(&p).expect("the longest string execve takes");
        p.set_env(Some(vec!["PATH=/bin".into(), "A=".to_string() + &"a".repeat(MAX_ARG_STRLEN)]));
        let e = check_exec_strings(&p).expect_err("too long");
        assert!(e.starts_with("process.env[1] is 131074 bytes") && e.contains("131072"), "{e}");
    }

    #[test]
    fn missing_rootfs_is_named() {
        let d = bundle(MINIMAL);
        std::fs::remove_dir(d.path().join("rootfs")).unwrap();
        let err = Bundle::load(d.path()).unwrap_err().to_string();
        assert!(err.contains("rootfs") && err.contains("does not exist"), "{err}");
    }

    #[test]
    fn symlinked_bundle_is_refused_with_the_resolved_path() {
        let d = bundle(MINIMAL);
        let link_dir = tempfile::tempdir().unwrap();
        let link = link_dir.path().join("b");
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        let err = Bundle::load(&link).unwrap_err().to_string();
        assert!(err.contains("symlink") && err.contains(&*d.path().to_string_lossy()), "{err}");
    }
}
