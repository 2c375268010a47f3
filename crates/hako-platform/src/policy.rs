//! The isolation policy in hako's configuration file (`/etc/hako/config.json`, or the file `HAKO_CONFIG`
//! names):
//!
//! ```json
//! {"isolation": {"trustedRegistries": ["registry.example.com", "localhost:5000/team"], "untrusted": "vm"}}
//! ```
//!
//! An entry is a registry host (with its port, if any), optionally followed by a namespace path; an image
//! is trusted when its registry equals the host and its repository is the namespace or lies below it
//! (`localhost:5000/team` trusts `localhost:5000/team/app`, not `localhost:5000/teamwork`). Images from
//! anywhere else, and images of unknown origin (a local OCI layout), get `untrusted`: `vm` (always VM
//! isolation) or `refuse`. Without the file, or without its `isolation` object, every image is trusted.
//! The file is validated strictly: an unknown key, a wrong type or a malformed entry is an error that
//! names the file, the key and the fix.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where hako reads its configuration unless `HAKO_CONFIG` names another file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hako/config.json";
/// The environment variable that overrides [`DEFAULT_CONFIG_PATH`].
pub const CONFIG_ENV: &str = "HAKO_CONFIG";
/// The largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// What happens to an image from a registry not listed as trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Untrusted {
    /// It always gets VM isolation (the default).
    Vm,
    /// It does not run at all.
    Refuse,
}

/// The `isolation` object of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IsolationPolicy {
    /// Registries (`host[:port]`) and namespaces (`host[:port]/path`) whose images may use process
    /// isolation.
    pub trusted_registries: Vec<String>,
    /// What an image from anywhere else gets.
    #[serde(default = "default_untrusted")]
    pub untrusted: Untrusted,
}

fn default_untrusted() -> Untrusted {
    Untrusted::Vm
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    isolation: Option<IsolationPolicy>,
}

/// The policy in force, and the file it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The file read, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// The isolation policy, when the file has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IsolationPolicy>,
}

/// A configuration file hako refuses.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// It cannot be read.
    #[error("hako configuration {path}: cannot read it: {source} (fix its permissions, or point {env} at another file)", env = CONFIG_ENV)]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid.
    #[error("hako configuration {path}: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        why: String,
    },
}

/// Whether `entry` is `host[:port][/namespace]` with a valid host and namespace; the problem otherwise.
fn check_entry(entry: &str) -> Result<(), String> {
    let fix = "write a registry host with an optional port and namespace, e.g. \"registry.example.com\" or \"localhost:5000/team\"";
    if entry.is_empty() {
        return Err(format!("an empty entry: {}", fix));
    }
    if entry.contains("://") {
        return Err(format!("{:?} has a URL scheme: {}", entry, fix));
    }
    if entry.contains(['@', ' ', '\t', '*']) || entry.ends_with('/') || entry.contains("//") {
        return Err(format!(
            "{:?} is not a registry or namespace (no tag, digest, wildcard, spaces or trailing '/'): {}",
            entry, fix
        ));
    }
    let (host, path) = match entry.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (entry, None),
    };
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !host_ok {
        return Err(format!("{:?}: {:?} is not a registry host: {}", entry, host, fix));
    }
    if let Some((_, port)) = host.rsplit_once(':') {
        if !host.ends_with(']') && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("{:?}: the port {:?} is not a number: {}", entry, port, fix));
        }
    }
    if let Some(path) = path {
        let ok = path.split('/').all(|c| {
            !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
        if !ok {
            return Err(format!(
                "{:?}: the namespace {:?} must be lowercase letters, digits and '.', '_', '-' between slashes: {}",
                entry, path, fix
            ));
        }
    }
    Ok(())
}

impl Policy {
    /// Parses the configuration file's text; `path` is named in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, PolicyError> {
        let invalid = |why: String| PolicyError::Invalid { path: path.to_path_buf(), why };
        let file: ConfigFile = serde_json::from_str(text).map_err(|e| {
            invalid(format!(
                "{} (expected {{\"isolation\": {{\"trustedRegistries\": [\"registry.example.com\"], \"untrusted\": \"vm\"}}}}; \"untrusted\" is \"vm\" or \"refuse\")",
                e
            ))
        })?;
        if let Some(iso) = &file.isolation {
            for (i, entry) in iso.trusted_registries.iter().enumerate() {
                check_entry(entry).map_err(|why| invalid(format!("isolation.trustedRegistries[{}]: {}", i, why)))?;
            }
        }
        Ok(Policy { source: Some(path.to_path_buf()), isolation: file.isolation })
    }

    /// Reads the policy from `path`; a missing file is no policy.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let read = |source| PolicyError::Read { path: path.to_path_buf(), source };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Policy::default()),
            Err(e) => return Err(read(e)),
        };
        if !meta.is_file() || meta.len() > MAX_CONFIG_BYTES {
            return Err(PolicyError::Invalid {
                path: path.to_path_buf(),
                why: format!("not a regular file of at most {} bytes: replace it with a JSON file", MAX_CONFIG_BYTES),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Policy::parse(path, &text)
    }

    /// The file `HAKO_CONFIG` names, else [`DEFAULT_CONFIG_PATH`].
    pub fn path_from_env() -> PathBuf {
        match std::env::var_os(CONFIG_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_CONFIG_PATH),
        }
    }

    /// Reads the policy from [`Policy::path_from_env`].
    pub fn load_default() -> Result<Policy, PolicyError> {
        Policy::load(&Policy::path_from_env())
    }

    /// Whether an image from `origin` (registry host and repository; `None` when unknown) is trusted, and
    /// the entry that trusts it.
    pub fn trusts(&self, origin: Option<(&str, &str)>) -> Trust {
        let iso = match &self.isolation {
            Some(i) => i,
            None => return Trust::NoPolicy,
        };
        let (registry, repository) = match origin {
            Some(o) => o,
            None => return Trust::Untrusted(iso.untrusted),
        };
        for entry in &iso.trusted_registries {
            let (host, ns) = match entry.split_once('/') {
                Some((h, n)) => (h, Some(n)),
                None => (entry.as_str(), None),
            };
            if !host.eq_ignore_ascii_case(registry) {
                continue;
            }
            let inside = match ns {
                None => true,
                Some(ns) => repository == ns || (repository.starts_with(ns) && repository[ns.len()..].starts_with('/')),
            };
            if inside {
                return Trust::Trusted(entry.clone());
            }
        }
        Trust::Untrusted(iso.untrusted)
    }
}

/// What the policy says about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// No isolation policy is configured.
    NoPolicy,
    /// A `trustedRegistries` entry covers it.
    Trusted(String),
    /// Nothing covers it.
    Untrusted(Untrusted),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, String> {
        Policy::parse(Path::new("/etc/hako/config.json"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn trusts_registries_and_namespaces_only() {
        let p = parse(r#"{"isolation": {"trustedRegistries": ["registry.example.com", "localhost:5000/team"], "untrusted": "vm"}}"#)
            .unwrap();
        assert_eq!(p.trusts(Some(("registry.example.com", "a/b"))), Trust::Trusted("registry.example.com".into()));
        assert_eq!(p.trusts(Some(("localhost:5000", "team/app"))), Trust::Trusted("localhost:5000/team".into()));
        assert_eq!(p.trusts(Some(("localhost:5000", "team"))), Trust::Trusted("localhost:5000/team".into()));
        assert_eq!(p.trusts(Some(("localhost:5000", "teamwork/app"))), Trust::Untrusted(Untrusted::Vm));
        assert_eq!(p.trusts(Some(("localhost:5001", "team/app"))), Trust::Untrusted(Untrusted::Vm));
        assert_eq!(p.trusts(Some(("docker.io", "library/busybox"))), Trust::Untrusted(Untrusted::Vm));
        assert_eq!(p.trusts(None), Trust::Untrusted(Untrusted::Vm));
        let p = parse(r#"{"isolation": {"trustedRegistries": [], "untrusted": "refuse"}}"#).unwrap();
        assert_eq!(p.trusts(Some(("a.b", "c"))), Trust::Untrusted(Untrusted::Refuse));
        assert_eq!(parse("{}").unwrap().trusts(Some(("a.b", "c"))), Trust::NoPolicy);
        let p = parse(r#"{"isolation": {"trustedRegistries": ["a.b"]}}"#).unwrap();
        assert_eq!(p.isolation.unwrap().untrusted, Untrusted::Vm);
    }

    #[test]
    fn refuses_malformed_files_with_the_key_and_the_fix() {
        let cases: &[(&str, &str)] = &[
            ("not json", "expected"),
            (r#"{"isolaton": {}}"#, "unknown field `isolaton`"),
            (r#"{"isolation": {"trustedRegistries": "a.b"}}"#, "invalid type"),
            (r#"{"isolation": {"trustedRegistries": ["a.b"], "untrusted": "process"}}"#, "unknown variant `process`"),
            (r#"{"isolation": {"trustedRegistries": ["a.b"], "extra": 1}}"#, "unknown field `extra`"),
            (r#"{"isolation": {"untrusted": "vm"}}"#, "missing field `trustedRegistries`"),
            (
                r#"{"isolation": {"trustedRegistries": ["https://a.b"]}}"#,
                "trustedRegistries[0]: \"https://a.b\" has a URL scheme",
            ),
            (r#"{"isolation": {"trustedRegistries": ["a.b", ""]}}"#, "trustedRegistries[1]: an empty entry"),
            (r#"{"isolation": {"trustedRegistries": ["a.b/Team"]}}"#, "the namespace \"Team\" must be lowercase"),
            (r#"{"isolation": {"trustedRegistries": ["a.b:x"]}}"#, "the port \"x\" is not a number"),
            (r#"{"isolation": {"trustedRegistries": ["a.b/team/"]}}"#, "trailing '/'"),
            (r#"{"isolation": {"trustedRegistries": ["a.b/app:1"]}}"#, "must be lowercase letters"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{}: {}", text, e);
            assert!(e.starts_with("hako configuration /etc/hako/config.json: "), "{}", e);
        }
    }

    #[test]
    fn a_missing_file_is_no_policy_and_a_directory_is_an_error() {
        let dir = std::env::temp_dir().join(format!("hako-platform-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Policy::load(&dir.join("missing.json")).unwrap(), Policy::default());
        let e = Policy::load(&dir).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{}", e);
        let f = dir.join("config.json");
        std::fs::write(&f, r#"{"isolation": {"trustedRegistries": ["a.b"]}}"#).unwrap();
        let p = Policy::load(&f).unwrap();
        assert_eq!(p.source.as_deref(), Some(f.as_path()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
