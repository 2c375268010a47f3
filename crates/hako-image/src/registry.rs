//! A client of the OCI Distribution API: manifests and blobs of one repository, with the registry's
//! authentication (anonymous, bearer tokens, basic).
//!
//! Why not `oci-client`: it is async (tokio plus reqwest, whose rustls build brings aws-lc-rs and a C/cmake
//! build, minutes on this project's build machines) while hako is a synchronous one-shot binary, and it reads
//! every manifest and token response whole with no size limit, which a hostile registry turns into unbounded
//! memory. hako needs a hard limit on each document, resume by HTTP `Range` into a partial file it verifies
//! itself, and its own credential lookup; `ureq` (blocking, rustls with ring, no OpenSSL) gives exactly the
//! HTTP that takes, and this module is the Distribution API on top of it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::{Response, StatusCode};
use ureq::{Agent, Body};

use crate::auth::{self, Challenge, Credentials};
use crate::digest::{Digest, Hasher};
use crate::manifest::{Descriptor, ACCEPT};
use crate::reference::Reference;
use crate::Progress;

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request failed below HTTP (connection refused, reset, TLS).
    #[error("registry {registry}: {what}: {source}{}", tls_hint(*tls, registry))]
    Http {
        /// The registry.
        registry: String,
        /// What was asked.
        what: String,
        /// The transport error.
        source: ureq::Error,
        /// Whether it is a TLS failure (the error then names where a registry's own CA goes).
        tls: bool,
    },
    /// The registry wants credentials that hako does not have, or refused the ones it sent.
    #[error("registry {registry} refused access to {repository} ({why}): log in with `podman login {registry}` or `docker login {registry}` (hako reads $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json and ~/.docker/config.json), or check the image name")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Whether credentials were sent.
        why: String,
    },
    /// The registry has no such manifest or blob.
    #[error("registry {registry} has no {what} (check the name and tag)")]
    NotFound {
        /// The registry.
        registry: String,
        /// What was asked.
        what: String,
    },
    /// Any other unexpected status.
    #[error("registry {registry}: {what}: HTTP {status}{detail}")]
    Status {
        /// The registry.
        registry: String,
        /// What was asked.
        what: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        detail: String,
    },
    /// A document is larger than hako accepts.
    #[error("registry {registry}: {what} is larger than the limit of {limit} bytes (raise it with --max-manifest-size if the image is trusted)")]
    TooLarge {
        /// The registry.
        registry: String,
        /// What was asked.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// Content does not match its digest.
    #[error("registry {registry}: {what} has digest {got}, not {expected}: the registry or something between it and hako altered it; nothing was stored")]
    DigestMismatch {
        /// The registry.
        registry: String,
        /// What was asked.
        what: String,
        /// Its expected digest.
        expected: Digest,
        /// What it hashed to.
        got: Digest,
    },
    /// A blob's length is not the size its descriptor states.
    #[error("registry {registry}: {what} is {got} bytes or more, not the {expected} its manifest states; nothing was stored")]
    SizeMismatch {
        /// The registry.
        registry: String,
        /// What was asked.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// What came.
        got: u64,
    },
    /// The stream ended early (the connection dropped): what arrived is kept and the download can resume.
    #[error("registry {registry}: {what}: the connection ended after {got} of {expected} bytes ({why})")]
    Truncated {
        /// The registry.
        registry: String,
        /// What was asked.
        what: String,
        /// Bytes received in total.
        got: u64,
        /// The size expected.
        expected: u64,
        /// The transport's explanation.
        why: String,
    },
    /// A response that is not what the API specifies.
    #[error("registry {registry}: {what}: {why}")]
    Protocol {
        /// The registry.
        registry: String,
        /// What was asked.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// The registry's CA certificates cannot be used.
    #[error("registry {registry}: TLS: {why}")]
    Tls {
        /// The registry.
        registry: String,
        /// What is wrong.
        why: String,
    },
    /// An auth file cannot be used.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// A local file (the partial download) failed.
    #[error("{path}: {source}{}", crate::store::io_hint(source))]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl RegistryError {
    /// Whether trying again (resuming) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Truncated { .. } => true,
            RegistryError::Http { source, .. } => {
                matches!(source, ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed)
            }
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// Where a registry's own CA certificates are looked for when no `--cert-dir` is given: the first of these
/// directories (each followed by `/<registry host[:port]>/`) that exists, as podman and Docker do.
pub const CERTS_DIRS: [&str; 3] = ["/etc/hako/certs.d", "/etc/containers/certs.d", "/etc/docker/certs.d"];

/// The system's CA bundle (Debian's ca-certificates), trusted next to a registry's own CAs.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The CA certificates to trust for `registry` beyond the public ones: every `*.crt` file of `cert_dir`, or
/// else of the first existing `<certs.d>/<registry>/` of [`CERTS_DIRS`]. Empty when there is none.
pub fn registry_cas(registry: &str, cert_dir: Option<&Path>) -> Result<Vec<PathBuf>, RegistryError> {
    let bases: Vec<&Path> = CERTS_DIRS.iter().map(Path::new).collect();
    cas_in(&bases, registry, cert_dir)
}

/// [`registry_cas`] with other `certs.d` directories.
fn cas_in(bases: &[&Path], registry: &str, cert_dir: Option<&Path>) -> Result<Vec<PathBuf>, RegistryError> {
    let dir = match cert_dir {
        Some(d) => d.to_path_buf(),
        None => match bases.iter().map(|d| d.join(registry)).find(|d| d.is_dir()) {
            Some(d) => d,
            None => return Ok(Vec::new()),
        },
    };
    let io_err = |source| RegistryError::Io { path: dir.clone(), source };
    let mut cas = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(io_err)? {
        let path = e.map_err(io_err)?.path();
        if path.extension().is_some_and(|x| x == "crt") {
            cas.push(path);
        }
    }
    cas.sort();
    if cas.is_empty() && cert_dir.is_some() {
        return Err(RegistryError::Tls {
            registry: registry.to_string(),
            why: format!(
                "--cert-dir {} holds no *.crt file (put the registry's CA certificate there as ca.crt)",
                dir.display()
            ),
        });
    }
    Ok(cas)
}

/// The TLS roots: the system bundle and `cas` when there are any, else the public roots built into hako.
fn tls_config(registry: &str, cas: &[PathBuf]) -> Result<ureq::tls::TlsConfig, RegistryError> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    if cas.is_empty() {
        return Ok(TlsConfig::builder().build());
    }
    let mut certs = Vec::new();
    let system = Path::new(SYSTEM_BUNDLE);
    for path in std::iter::once(system).filter(|p| p.is_file()).chain(cas.iter().map(PathBuf::as_path)) {
        let pem = std::fs::read(path).map_err(|source| RegistryError::Io { path: path.to_path_buf(), source })?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(RegistryError::Tls {
                        registry: registry.to_string(),
                        why: format!("{}: {e} (a CA file must hold PEM certificates)", path.display()),
                    })
                }
            }
        }
        if certs.len() == before && path != system {
            return Err(RegistryError::Tls {
                registry: registry.to_string(),
                why: format!("{} holds no PEM certificate (a CA file must hold PEM certificates)", path.display()),
            });
        }
    }
    Ok(TlsConfig::builder().root_certs(RootCerts::new_with_certs(&certs)).build())
}

fn tls_hint(tls: bool, registry: &str) -> String {
    if tls {
        format!(
            " (if the registry's certificate is signed by its own CA, put the CA in /etc/hako/certs.d/{registry}/ca.crt or pass --cert-dir DIR)"
        )
    } else {
        String::new()
    }
}

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Speak plain HTTP instead of HTTPS (`None`: plain HTTP to a loopback registry that has no CA
    /// certificate configured, HTTPS otherwise).
    pub plain_http: Option<bool>,
    /// A directory of CA certificates (`*.crt`) for this registry (`None`: [`CERTS_DIRS`]).
    pub cert_dir: Option<PathBuf>,
    /// The auth files to read credentials from, in order.
    pub auth_files: Vec<PathBuf>,
    /// The largest manifest, index, config or token response accepted.
    pub max_document_bytes: u64,
}

/// A client of one repository of one registry.
pub struct Client {
    agent: Agent,
    base: String,
    registry: String,
    repository: String,
    creds: Option<Credentials>,
    authorization: Mutex<Option<String>>,
    max_document_bytes: u64,
}

impl Client {
    /// A client for `reference`'s repository; reads its credentials now.
    pub fn new(reference: &Reference, opts: &ClientOptions) -> Result<Client, RegistryError> {
        let cas = registry_cas(&reference.registry, opts.cert_dir.as_deref())?;
        let plain_http = opts.plain_http.unwrap_or_else(|| reference.is_loopback() && cas.is_empty());
        let config = Agent::config_builder()
            .tls_config(tls_config(&reference.registry, &cas)?)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .max_redirects(10)
            .user_agent(concat!("hako/", env!("CARGO_PKG_VERSION")))
            .build();
        let scheme = if plain_http { "http" } else { "https" };
        let creds = auth::lookup(&opts.auth_files, &reference.registry, &reference.repository)?;
        Ok(Client {
            agent: config.into(),
            base: format!("{scheme}://{}/v2/{}", reference.api_host(), reference.repository),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            creds,
            authorization: Mutex::new(None),
            max_document_bytes: opts.max_document_bytes,
        })
    }

    fn http_err(&self, what: &str, source: ureq::Error) -> RegistryError {
        let tls = matches!(source, ureq::Error::Rustls(_) | ureq::Error::Tls(_))
            || source.to_string().to_lowercase().contains("certificate");
        RegistryError::Http { registry: self.registry.clone(), what: what.to_string(), source, tls }
    }

    fn send(&self, url: &str, headers: &[(&str, String)], what: &str) -> Result<Response<Body>, RegistryError> {
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(a) = self.authorization.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            req = req.header("Authorization", a);
        }
        req.call().map_err(|e| self.http_err(what, e))
    }

    /// GET `url`, answering the registry's authentication challenge once.
    fn get(&self, url: &str, headers: &[(&str, String)], what: &str) -> Result<Response<Body>, RegistryError> {
        let resp = self.send(url, headers, what)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let had = self.authorization.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        let challenge =
            resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).and_then(auth::parse_challenge);
        let unauthorized = |why: &str| RegistryError::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            why: why.to_string(),
        };
        if had {
            return Err(unauthorized(if self.creds.is_some() {
                "it refused the credentials"
            } else {
                "it refused the anonymous token"
            }));
        }
        let authorization = match challenge {
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => c.basic(),
                None => return Err(unauthorized("it asks for a user name and password and none is configured")),
            },
            Some(Challenge::Bearer { realm, service, scope }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                format!("Bearer {}", self.token(&realm, service.as_deref(), &scope)?)
            }
            None => return Err(unauthorized("it answered 401 without a usable WWW-Authenticate challenge")),
        };
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(authorization);
        let resp = self.send(url, headers, what)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(unauthorized(if self.creds.is_some() {
                "it refused the credentials"
            } else {
                "no credentials are configured for it"
            }));
        }
        Ok(resp)
    }

    /// Fetches a bearer token from `realm` (with basic credentials when hako has them).
    fn token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String, RegistryError> {
        let what = format!("token from {realm}");
        let mut req = self.agent.get(realm).query("scope", scope);
        if let Some(s) = service {
            req = req.query("service", s);
        }
        if let Some(c) = &self.creds {
            req = req.header("Authorization", c.basic());
        }
        let resp = req.call().map_err(|e| self.http_err(&what, e))?;
        match resp.status().as_u16() {
            200 => {}
            401 | 403 => {
                return Err(RegistryError::Unauthorized {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    why: if self.creds.is_some() {
                        "its token server refused the credentials".into()
                    } else {
                        "its token server wants credentials and none is configured".into()
                    },
                })
            }
            s => return Err(self.status(&what, s, resp)),
        }
        let body = self.read_document(resp, &what)?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|e| self.protocol(&what, &e.to_string()))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| self.protocol(&what, "the response holds no usable token"))
    }

    /// A download that stopped at `got` of `expected` bytes: the partial file is synced, so that the next
    /// pull resumes from what is on disk.
    fn truncated(
        &self,
        file: (&std::fs::File, &Path),
        what: String,
        got: u64,
        expected: u64,
        why: String,
    ) -> RegistryError {
        if let Err(source) = file.0.sync_data() {
            return RegistryError::Io { path: file.1.to_path_buf(), source };
        }
        RegistryError::Truncated { registry: self.registry.clone(), what, got, expected, why }
    }

    fn protocol(&self, what: &str, why: &str) -> RegistryError {
        RegistryError::Protocol { registry: self.registry.clone(), what: what.to_string(), why: why.to_string() }
    }

    fn status(&self, what: &str, status: u16, resp: Response<Body>) -> RegistryError {
        if status == 404 {
            return RegistryError::NotFound { registry: self.registry.clone(), what: what.to_string() };
        }
        let mut text = String::new();
        let _ = resp.into_body().into_with_config().limit(512).reader().take(512).read_to_string(&mut text);
        let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
        RegistryError::Status {
            registry: self.registry.clone(),
            what: what.to_string(),
            status,
            detail: if text.is_empty() { String::new() } else { format!(": {text}") },
        }
    }

    /// Reads a whole response body of at most the document limit.
    fn read_document(&self, resp: Response<Body>, what: &str) -> Result<Vec<u8>, RegistryError> {
        let limit = self.max_document_bytes;
        let too_large = || RegistryError::TooLarge { registry: self.registry.clone(), what: what.to_string(), limit };
        if resp.body().content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut buf = Vec::new();
        resp.into_body()
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| self.http_err(what, ureq::Error::Io(e)))?;
        if buf.len() as u64 > limit {
            return Err(too_large());
        }
        Ok(buf)
    }

    /// Fetches the manifest or index `target` (a tag or digest): its bytes, media type and digest. A digest
    /// target is checked against the bytes.
    pub fn manifest(&self, target: &str) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let what = format!("manifest {}:{target}", self.repository);
        let url = format!("{}/manifests/{target}", self.base);
        let resp = self.get(&url, &[("Accept", ACCEPT.to_string())], &what)?;
        if resp.status() != StatusCode::OK {
            let s = resp.status().as_u16();
            return Err(self.status(&what, s, resp));
        }
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let body = self.read_document(resp, &what)?;
        let got = Digest::of(&body);
        if let Ok(expected) = Digest::parse(target) {
            if got != expected {
                return Err(RegistryError::DigestMismatch { registry: self.registry.clone(), what, expected, got });
            }
        }
        Ok((body, media_type, got))
    }

    /// Fetches a small blob (a config) whole, checked against `desc` and the document limit.
    pub fn small_blob(&self, desc: &Descriptor) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {}", desc.digest);
        if desc.size > self.max_document_bytes {
            return Err(RegistryError::TooLarge {
                registry: self.registry.clone(),
                what,
                limit: self.max_document_bytes,
            });
        }
        let resp = self.get(&format!("{}/blobs/{}", self.base, desc.digest), &[], &what)?;
        if resp.status() != StatusCode::OK {
            let s = resp.status().as_u16();
            return Err(self.status(&what, s, resp));
        }
        let body = self.read_document(resp, &what)?;
        self.check(&what, desc, body.len() as u64, Digest::of(&body))?;
        Ok(body)
    }

    fn check(&self, what: &str, desc: &Descriptor, len: u64, got: Digest) -> Result<(), RegistryError> {
        if len != desc.size {
            return Err(RegistryError::SizeMismatch {
                registry: self.registry.clone(),
                what: what.to_string(),
                expected: desc.size,
                got: len,
            });
        }
        if got != desc.digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                what: what.to_string(),
                expected: desc.digest.clone(),
                got,
            });
        }
        Ok(())
    }

    /// Downloads the blob `desc` into `partial`, resuming after what `partial` already holds (HTTP `Range`),
    /// and checks it against the descriptor's size and digest. On a digest or size mismatch `partial` is
    /// removed; on a dropped connection it is kept for the next try.
    pub fn download(&self, desc: &Descriptor, partial: &Path, progress: &dyn Progress) -> Result<(), RegistryError> {
        let what = format!("blob {}", desc.digest);
        let io_err = |source| RegistryError::Io { path: partial.to_path_buf(), source };
        let mut file = open_private(partial).map_err(io_err)?;
        let mut have = file.metadata().map_err(io_err)?.len();
        if have > desc.size {
            file.set_len(0).map_err(io_err)?;
            have = 0;
        }
        let mut hasher = Hasher::new();
        if have > 0 {
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            io::copy(&mut (&mut file).take(have), &mut hasher).map_err(io_err)?;
        }
        file.seek(SeekFrom::Start(have)).map_err(io_err)?;
        progress.event(crate::Event::Start { digest: desc.digest.clone(), size: desc.size, offset: have });
        if have < desc.size {
            let headers = if have > 0 { vec![("Range", format!("bytes={have}-"))] } else { vec![] };
            let resp = self.get(&format!("{}/blobs/{}", self.base, desc.digest), &headers, &what)?;
            match resp.status().as_u16() {
                206 => {
                    let range = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
                    if !range.starts_with(&format!("bytes {have}-")) {
                        return Err(self.protocol(&what, &format!("asked for bytes {have}- and got range {range:?}")));
                    }
                }
                200 => {
                    if have > 0 {
                        // The registry ignores Range: start over.
                        file.set_len(0).map_err(io_err)?;
                        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
                        hasher = Hasher::new();
                        have = 0;
                    }
                }
                s => return Err(self.status(&what, s, resp)),
            }
            let mut reader = resp.into_body().into_reader();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.truncated((&file, partial), what, have, desc.size, e.to_string())),
                };
                if have + n as u64 > desc.size {
                    drop(file);
                    let _ = std::fs::remove_file(partial);
                    return Err(RegistryError::SizeMismatch {
                        registry: self.registry.clone(),
                        what,
                        expected: desc.size,
                        got: have + n as u64,
                    });
                }
                file.write_all(&buf[..n]).map_err(io_err)?;
                hasher.update(&buf[..n]);
                have += n as u64;
                progress.event(crate::Event::Bytes { digest: desc.digest.clone(), bytes: n as u64 });
            }
            if have < desc.size {
                return Err(self.truncated((&file, partial), what, have, desc.size, "end of stream".into()));
            }
        }
        let got = hasher.finish();
        if let Err(e) = self.check(&what, desc, have, got) {
            drop(file);
            let _ = std::fs::remove_file(partial);
            return Err(e);
        }
        file.sync_all().map_err(io_err)?;
        Ok(())
    }
}

/// Opens (creating, mode 0600) a file for reading and writing without truncating it.
fn open_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(path)
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_directories_are_searched_in_order_and_only_crt_files_count() {
        let t = std::env::temp_dir().join(format!("hako-certs-test-{}", std::process::id()));
        let (hako, podman) = (t.join("hako"), t.join("containers"));
        std::fs::create_dir_all(podman.join("reg:5000")).unwrap();
        std::fs::write(podman.join("reg:5000/ca.crt"), "x").unwrap();
        std::fs::write(podman.join("reg:5000/client.key"), "x").unwrap();
        let bases = [hako.as_path(), podman.as_path()];
        assert_eq!(cas_in(&bases, "reg:5000", None).unwrap(), vec![podman.join("reg:5000/ca.crt")]);
        assert!(cas_in(&bases, "other:5000", None).unwrap().is_empty());
        // hako's own directory wins, even when it holds no certificate.
        std::fs::create_dir_all(hako.join("reg:5000")).unwrap();
        assert!(cas_in(&bases, "reg:5000", None).unwrap().is_empty());
        // An explicit --cert-dir without a certificate is an error that says what to put there.
        let e = cas_in(&bases, "reg:5000", Some(&hako.join("reg:5000"))).unwrap_err().to_string();
        assert!(e.contains("holds no *.crt file") && e.contains("ca.crt"), "{e}");
        std::fs::remove_dir_all(&t).unwrap();
    }
}
