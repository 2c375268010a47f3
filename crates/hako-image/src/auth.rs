//! Registry credentials: the Docker and podman auth files, and the `WWW-Authenticate` challenges of the
//! Distribution API's token flow.
//!
//! Files are read in podman's order, the first holding an entry for the registry wins:
//! `$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`, `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`). Only inline `auths` entries (`auth`, or `username` and `password`) are read;
//! credential helpers (`credsStore`, `credHelpers`) are not run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// A user name and password (or identity token used as the password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// The value of a `Basic` `Authorization` header.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// An auth file that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// It cannot be read or parsed.
    #[error("auth file {path}: {why} (fix the file or point REGISTRY_AUTH_FILE elsewhere)")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The auth files hako reads, in order.
pub fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        files.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        files.push(Path::new(&d).join("containers/auth.json"));
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        files.push(Path::new(&d).join("config.json"));
    } else if let Some(h) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        files.push(Path::new(&h).join(".docker/config.json"));
    }
    files
}

/// The keys under which `registry` may be stored in an auth file.
fn keys(registry: &str) -> Vec<String> {
    let mut k = vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")];
    if registry == crate::reference::DOCKER_HUB {
        for alias in ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"] {
            k.push(alias.to_string());
        }
    }
    k
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Credentials for `registry` (and `repository`, for podman's per-namespace entries) from `files`.
pub fn lookup(files: &[PathBuf], registry: &str, repository: &str) -> Result<Option<Credentials>, AuthError> {
    for path in files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(AuthError::File { path: path.clone(), why: e.to_string() }),
        };
        let file: AuthFile =
            serde_json::from_str(&text).map_err(|e| AuthError::File { path: path.clone(), why: e.to_string() })?;
        // podman's most specific entry first: registry/namespace/repo, then shorter prefixes, then the host.
        let mut candidates = Vec::new();
        let parts: Vec<&str> = repository.split('/').collect();
        for n in (1..=parts.len()).rev() {
            candidates.push(format!("{registry}/{}", parts[..n].join("/")));
        }
        candidates.extend(keys(registry));
        for key in candidates {
            let Some(e) = file.auths.get(&key).or_else(|| file.auths.get(&format!("{key}/"))) else { continue };
            if let (Some(u), Some(p)) = (&e.username, &e.password) {
                return Ok(Some(Credentials { username: u.clone(), password: p.clone() }));
            }
            let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) else { continue };
            let bad = |why: &str| AuthError::File { path: path.clone(), why: format!("entry {key:?}: {why}") };
            let raw =
                base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| bad("auth is not base64"))?;
            let raw = String::from_utf8(raw).map_err(|_| bad("auth is not UTF-8"))?;
            let (u, p) = raw.split_once(':').ok_or_else(|| bad("auth is not user:password"))?;
            return Ok(Some(Credentials { username: u.to_string(), password: p.to_string() }));
        }
    }
    Ok(None)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service to name.
        service: Option<String>,
        /// The scope asked for.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header; `None` when it is neither Basic nor Bearer with a realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key.trim().to_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="x""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn auth_files_in_order() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.json");
        let b = d.path().join("b.json");
        std::fs::write(&a, r#"{"auths":{"other.io":{"auth":"eDp5"}}}"#).unwrap();
        std::fs::write(&b, r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpwOnE="},"r.io/team":{"username":"t","password":"s"}}}"#).unwrap();
        let files = vec![d.path().join("missing.json"), a, b.clone()];
        let c = lookup(&files, "docker.io", "library/x").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:q"));
        let c = lookup(&files, "r.io", "team/app").unwrap().unwrap();
        assert_eq!(c.username, "t");
        assert!(lookup(&files, "r.io", "other/app").unwrap().is_none());
        std::fs::write(&b, "{").unwrap();
        let e = lookup(&files, "nowhere.io", "x").unwrap_err().to_string();
        assert!(e.contains("b.json"), "{e}");
    }
}
