//! `hako image` against a real registry: Debian's docker-registry (scripts/install-deps) started on loopback
//! by each test with its own config and storage, images built and pushed by the tests over the Distribution
//! API, faults injected by a small TCP proxy. After every failure the store must hold no image and no blob
//! of it.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2_free::sha256_hex;

const REGISTRY: &str = "/usr/bin/docker-registry";

/// sha256 without another dependency: `hako-image`'s own digest is not reachable from a test of the binary,
/// so the tests use the `sha256sum` tool and compare with what hako prints.
#[path = "common/listen.rs"]
mod listen;

mod sha2_free {
    use std::io::Write;
    use std::process::{Command, Stdio};

    pub(crate) fn sha256_hex(data: &[u8]) -> String {
        let mut c = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum");
        c.stdin.take().unwrap().write_all(data).unwrap();
        let out = c.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    }
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// A docker-registry process on 127.0.0.1 with its storage in a temporary directory; killed on drop. A
/// registry that serves TLS or wants tokens has a plain, open sibling on the same storage that the tests push
/// through.
struct Registry {
    child: Child,
    port: u16,
    auth: Option<(String, String)>,
    pusher: Option<Box<Registry>>,
    /// For a TLS registry: the directory holding its CA certificate (`ca.crt`), for `--cert-dir`.
    ca_dir: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

/// How a test's registry authenticates and talks.
#[derive(Default)]
struct Setup<'a> {
    /// htpasswd basic auth with this user and password.
    basic: Option<(&'a str, &'a str)>,
    /// Serve HTTPS with a certificate of a CA made by the test.
    tls: bool,
    /// Bearer tokens from this token server.
    token: Option<&'a TokenServer>,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (scripts/install-deps)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir`: ca.crt, server.crt, server.key.
fn make_certs(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=hako test CA"]);
    openssl(&a, dir);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    openssl(&a, dir);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
        dir,
    );
}

/// Starts docker-registry on a free loopback port, storing in `data`, with `extra` config (auth, TLS).
fn spawn_registry(dir: &Path, data: &Path, name: &str, extra: &str) -> (Child, u16) {
    assert!(
        Path::new(REGISTRY).exists(),
        "{REGISTRY} is missing: run scripts/install-deps (Debian package docker-registry)"
    );
    listen::serve_on_a_free_port("docker-registry", |port| {
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\nvalidation:\n  manifests:\n    urls:\n      allow:\n        - ^https://\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
            data.display()
        );
        let cfg = dir.join(format!("{name}.yml"));
        fs::write(&cfg, config).unwrap();
        Command::new(REGISTRY).arg("serve").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
    })
}

impl Registry {
    /// The OCI manifest `repo:tag` as the registry serves it.
    fn manifest(&self, repo: &str, tag: &str) -> Value {
        let body = Registry::agent()
            .get(format!("http://{}/v2/{repo}/manifests/{tag}", self.host()))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .call()
            .expect("GET manifest")
            .body_mut()
            .read_to_string()
            .expect("manifest body");
        serde_json::from_str(&body).expect("manifest JSON")
    }

    fn start(auth: Option<(&str, &str)>) -> Registry {
        Registry::launch(Setup { basic: auth, ..Setup::default() })
    }

    fn launch(setup: Setup) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut extra = String::new();
        if let Some((u, p)) = setup.basic {
            let htpasswd = dir.path().join("htpasswd");
            let st = Command::new("htpasswd")
                .args(["-B", "-b", "-c"])
                .arg(&htpasswd)
                .args([u, p])
                .stderr(Stdio::null())
                .status()
                .expect("htpasswd (apache2-utils, scripts/install-deps)");
            assert!(st.success());
            extra += &format!("auth:\n  htpasswd:\n    realm: hako-test\n    path: {}\n", htpasswd.display());
        }
        if let Some(t) = setup.token {
            extra += &format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                t.port,
                t.dir.path().join("token.crt").display()
            );
        }
        let mut ca_dir = None;
        if setup.tls {
            let certs = dir.path().join("certs");
            fs::create_dir(&certs).unwrap();
            make_certs(&certs);
            let ca = dir.path().join("ca");
            fs::create_dir(&ca).unwrap();
            fs::copy(certs.join("ca.crt"), ca.join("ca.crt")).unwrap();
            ca_dir = Some(ca);
            extra = format!(
                "  tls:\n    certificate: {}\n    key: {}\n{extra}",
                certs.join("server.crt").display(),
                certs.join("server.key").display()
            );
        }
        let pusher = (setup.tls || setup.token.is_some()).then(|| {
            let (child, port) = spawn_registry(dir.path(), &data, "pusher", "");
            Box::new(Registry { child, port, auth: None, pusher: None, ca_dir: None, _dir: None })
        });
        let (child, port) = spawn_registry(dir.path(), &data, "registry", &extra);
        Registry {
            child,
            port,
            auth: setup.basic.map(|(u, p)| (u.to_string(), p.to_string())),
            pusher,
            ca_dir,
            _dir: Some(dir),
        }
    }

    /// The registry the tests push to (itself, or its plain sibling).
    fn push_to(&self) -> &Registry {
        self.pusher.as_deref().unwrap_or(self)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder().http_status_as_error(false).build().into()
    }

    fn authorization(&self) -> Option<String> {
        use base64_free::encode;
        self.auth.as_ref().map(|(u, p)| format!("Basic {}", encode(format!("{u}:{p}").as_bytes())))
    }

    /// Pushes a blob; returns its descriptor.
    fn push_blob(&self, repo: &str, data: &[u8], media_type: &str) -> Value {
        let this = self.push_to();
        let agent = Registry::agent();
        let mut req = agent.post(format!("http://{}/v2/{repo}/blobs/uploads/", this.host()));
        if let Some(a) = this.authorization() {
            req = req.header("Authorization", a);
        }
        let r = req.send_empty().unwrap();
        assert_eq!(r.status().as_u16(), 202, "starting a blob upload");
        let loc = r.headers().get("location").unwrap().to_str().unwrap().to_string();
        let url = if loc.starts_with("http") { loc } else { format!("http://{}{loc}", this.host()) };
        let sep = if url.contains('?') { '&' } else { '?' };
        let d = digest(data);
        let mut req = agent.put(format!("{url}{sep}digest={d}")).header("Content-Type", "application/octet-stream");
        if let Some(a) = this.authorization() {
            req = req.header("Authorization", a);
        }
        let r = req.send(data).unwrap();
        assert_eq!(r.status().as_u16(), 201, "finishing a blob upload");
        json!({"mediaType": media_type, "digest": d, "size": data.len()})
    }

    /// Pushes a manifest or index under `tag`; returns its descriptor.
    fn push_manifest(&self, repo: &str, tag: &str, media_type: &str, body: &[u8]) -> Value {
        let this = self.push_to();
        let mut req = Registry::agent()
            .put(format!("http://{}/v2/{repo}/manifests/{tag}", this.host()))
            .header("Content-Type", media_type);
        if let Some(a) = this.authorization() {
            req = req.header("Authorization", a);
        }
        let mut r = req.send(body).unwrap();
        let status = r.status().as_u16();
        assert_eq!(status, 201, "pushing manifest {tag}: {}", r.body_mut().read_to_string().unwrap_or_default());
        json!({"mediaType": media_type, "digest": digest(body), "size": body.len()})
    }

    /// Pushes an image of `layers` (uncompressed tars, pushed gzipped) for `arch`; returns the manifest's
    /// descriptor. `extra` is merged into the manifest (to make it large).
    fn push_image(&self, repo: &str, tag: &str, arch: &str, layers: &[Vec<u8>], extra: Value) -> Value {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for l in layers {
            diff_ids.push(digest(l));
            descs.push(self.push_blob(repo, &gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip"));
        }
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config = self.push_blob(repo, &config, "application/vnd.oci.image.config.v1+json");
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": descs,
        });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                manifest[k] = v;
            }
        }
        let body = serde_json::to_vec(&manifest).unwrap();
        self.push_manifest(repo, tag, "application/vnd.oci.image.manifest.v1+json", &body)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod base64_free {
    pub(crate) fn encode(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in data.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

/// A tar of regular files.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Incompressible bytes (so a gzipped layer stays as large).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A private store and environment for `hako image`.
struct Hako {
    dir: tempfile::TempDir,
}

impl Hako {
    fn new() -> Hako {
        Hako { dir: tempfile::tempdir().unwrap() }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hako"));
        c.arg("image")
            .args(args)
            .env("HAKO_IMAGE_STORE", self.store())
            .env("HOME", self.dir.path())
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("DOCKER_CONFIG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "hako image {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "hako image {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    fn images(&self) -> Vec<Value> {
        serde_json::from_str::<Vec<Value>>(&self.ok(&["ls", "--format", "json"])).unwrap()
    }

    fn blobs(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.store().join("blobs/sha256"))
            .map(|d| d.map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn partials(&self) -> Vec<String> {
        fs::read_dir(self.store().join("ingest"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".partial") || n.starts_with(".tmp"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every file and directory of the store is root's alone (0600 files, 0700 directories).
    fn assert_private(&self) {
        use std::os::unix::fs::PermissionsExt;
        fn walk(p: &Path, n: &mut usize) {
            let m = fs::symlink_metadata(p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            *n += 1;
            if m.is_dir() {
                assert_eq!(mode, 0o700, "directory {} is {mode:o}", p.display());
                for e in fs::read_dir(p).unwrap() {
                    walk(&e.unwrap().path(), n);
                }
            } else {
                assert!(m.is_file(), "{} is neither a file nor a directory", p.display());
                assert_eq!(mode, 0o600, "file {} is {mode:o}", p.display());
            }
        }
        let mut n = 0;
        walk(&self.store(), &mut n);
        assert!(n > 5, "the store holds files");
    }

    /// After a failed pull: no image, no blob, nothing half-written.
    fn assert_empty(&self) {
        assert_eq!(self.images(), Vec::<Value>::new(), "a failed pull recorded an image");
        assert_eq!(self.blobs(), Vec::<String>::new(), "a failed pull stored blobs");
    }
}

#[test]
fn pulls_a_multi_platform_index_and_unpacks_the_chosen_image() {
    let reg = Registry::start(None);
    let base = layer(&[("etc/os-release", b"ID=hako-test\n"), ("bin/arch", b"amd64")]);
    let top = layer(&[("app/data", &noise(300_000, 1))]);
    let amd64 = reg.push_image("test/multi", "amd64", "amd64", &[base.clone(), top], json!({}));
    let arm64 = reg.push_image("test/multi", "arm64", "arm64", &[layer(&[("bin/arch", b"arm64")])], json!({}));
    let mut win = amd64.clone();
    win["platform"] = json!({"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.2113"});
    let mut a = amd64.clone();
    a["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut b = arm64.clone();
    b["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [win, a, b],
    }))
    .unwrap();
    let index = reg.push_manifest("test/multi", "latest", "application/vnd.oci.image.index.v1+json", &index);

    let hako = Hako::new();
    let name = format!("{}/test/multi", reg.host());
    let out = hako.run(&["pull", "--platform", "linux/amd64", &name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Not a terminal: plain progress lines on stderr, no bar, and only the digest on stdout.
    assert!(stderr.contains(": downloading ") && stderr.contains(": done") && !stderr.contains('\x1b'), "{stderr}");
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.trim(), amd64["digest"].as_str().unwrap(), "the amd64 manifest is chosen");
    let images = hako.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["name"], format!("{name}:latest"));
    assert_eq!(images[0]["index_digest"], index["digest"]);
    assert_eq!(images[0]["layers"].as_array().unwrap().len(), 2);
    let inspect: Value = serde_json::from_str(&hako.ok(&["inspect", &name])).unwrap();
    assert_eq!(inspect["imageConfig"]["config"]["Cmd"], json!(["/bin/sh"]));
    assert_eq!(inspect["runsHere"]["ok"], true);
    hako.assert_private();
    assert_eq!(inspect["platform"]["architecture"], "amd64");

    let rootfs = hako.dir.path().join("rootfs");
    hako.ok(&["unpack", &name, rootfs.to_str().unwrap()]);
    assert_eq!(fs::read(rootfs.join("etc/os-release")).unwrap(), b"ID=hako-test\n");
    assert_eq!(fs::read(rootfs.join("app/data")).unwrap(), noise(300_000, 1));

    let out = hako.ok(&["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(out.trim(), arm64["digest"].as_str().unwrap(), "the arm64/v8 manifest is chosen for linux/arm64");

    let err = hako.fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("no manifest for linux/s390x")
            && err.contains("windows/amd64 10.0.20348.2113")
            && err.contains("linux/arm64/v8")
            && err.contains("--platform"),
        "{err}"
    );
    // By digest too, and the digest is checked.
    hako.ok(&["pull", &format!("{name}@{}", amd64["digest"].as_str().unwrap())]);
}

#[test]
fn basic_auth_refuses_a_pull_without_credentials_and_accepts_the_auth_file() {
    let reg = Registry::start(Some(("hako", "s3cret")));
    reg.push_image("private/app", "v1", "amd64", &[layer(&[("f", b"private")])], json!({}));
    let hako = Hako::new();
    let name = format!("{}/private/app:v1", reg.host());
    let err = hako.fails(&["pull", "--platform", "linux/amd64", &name]);
    assert!(err.contains("refused access to private/app") && err.contains("podman login"), "{err}");
    hako.assert_empty();

    let auth = format!(r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#, reg.host(), base64_free::encode(b"hako:wrong"));
    fs::write(hako.dir.path().join("auth.json"), auth).unwrap();
    let err = hako.fails(&["pull", "--platform", "linux/amd64", &name]);
    assert!(err.contains("refused the credentials"), "{err}");
    hako.assert_empty();

    let auth = format!(r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#, reg.host(), base64_free::encode(b"hako:s3cret"));
    fs::write(hako.dir.path().join("auth.json"), auth).unwrap();
    hako.ok(&["pull", "--platform", "linux/amd64", &name]);
    assert_eq!(hako.images().len(), 1);

    // Docker's file (~/.docker/config.json) with a user name and password is read too.
    hako.ok(&["rm", &name]);
    fs::remove_file(hako.dir.path().join("auth.json")).unwrap();
    assert!(hako.fails(&["pull", "--platform", "linux/amd64", &name]).contains("podman login"));
    fs::create_dir(hako.dir.path().join(".docker")).unwrap();
    let docker = format!(r#"{{"auths":{{"http://{}":{{"username":"hako","password":"s3cret"}}}}}}"#, reg.host());
    fs::write(hako.dir.path().join(".docker/config.json"), docker).unwrap();
    hako.ok(&["pull", "--platform", "linux/amd64", &name]);
    assert_eq!(hako.images().len(), 1);
}

/// What the proxy does to the response to the first request for one blob.
#[derive(Clone)]
enum Fault {
    /// Close the connection after this many bytes of the response.
    Cut(usize),
    /// Flip one byte of the body.
    Corrupt,
    /// Pass this many bytes, then hold the rest until the gate opens.
    Hold(usize, Gate),
}

/// Where a proxied response stops until the test lets it go on.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<(bool, bool)>, std::sync::Condvar)>);

impl Gate {
    /// Called by the proxy: says it has arrived, then waits until the gate opens.
    fn arrive_and_wait(&self) {
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap();
        g.0 = true;
        cv.notify_all();
        while !g.1 {
            g = cv.wait(g).unwrap();
        }
    }

    /// Waits until the proxy holds the response.
    fn wait_arrived(&self) {
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !g.0 {
            assert!(Instant::now() < deadline, "the pull never asked for the held blob");
            g = cv.wait_timeout(g, Duration::from_millis(100)).unwrap().0;
        }
    }

    fn open(&self) {
        let (m, cv) = &*self.0;
        m.lock().unwrap().1 = true;
        cv.notify_all();
    }
}

/// A TCP proxy to `upstream` that applies `fault` once, to the response for `blob`, and records requests.
struct Proxy {
    port: u16,
    requests: Arc<Mutex<String>>,
}

fn proxy(upstream: u16, blob: &str, fault: Fault) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(String::new()));
    let done = Arc::new(AtomicBool::new(false));
    let log = requests.clone();
    let blob = blob.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let asked = Arc::new(AtomicBool::new(false));
            let (log, asked2, blob) = (log.clone(), asked.clone(), blob.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = c2.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    if text.contains(&format!("/blobs/{blob}")) {
                        asked2.store(true, Ordering::SeqCst);
                    }
                    log.lock().unwrap().push_str(&text);
                    if s2.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s2.shutdown(Shutdown::Write);
            });
            let (done, fault) = (done.clone(), fault.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut sent = 0usize;
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let faulty = asked.load(Ordering::SeqCst) && !done.load(Ordering::SeqCst);
                    match &fault {
                        Fault::Cut(after) if faulty && sent + n > *after => {
                            done.store(true, Ordering::SeqCst);
                            let _ = client.write_all(&buf[..after - sent]);
                            let _ = client.shutdown(Shutdown::Both);
                            let _ = server.shutdown(Shutdown::Both);
                            return;
                        }
                        Fault::Corrupt if faulty && sent + n > 4096 => {
                            done.store(true, Ordering::SeqCst);
                            let i = 4096usize.saturating_sub(sent).min(n - 1);
                            buf[i] ^= 0xff;
                        }
                        Fault::Hold(after, gate) if faulty && sent + n > *after => {
                            done.store(true, Ordering::SeqCst);
                            if client.write_all(&buf[..after - sent]).is_err() {
                                break;
                            }
                            let _ = client.flush();
                            gate.arrive_and_wait();
                            if client.write_all(&buf[after - sent..n]).is_err() {
                                break;
                            }
                            continue;
                        }
                        _ => {}
                    }
                    if faulty {
                        sent += n;
                    }
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
            });
        }
    });
    Proxy { port, requests }
}

#[test]
fn a_connection_dropped_mid_layer_resumes_with_a_range_request() {
    let reg = Registry::start(None);
    let data = noise(3 << 20, 7);
    let m = reg.push_image("test/big", "v1", "amd64", &[layer(&[("big", &data)])], json!({}));
    let hako = Hako::new();
    // Find the layer's digest through the registry.
    let man: Value = reg.manifest("test/big", "v1");
    let layer_digest = man["layers"][0]["digest"].as_str().unwrap().to_string();
    let p = proxy(reg.port, &layer_digest, Fault::Cut(1 << 20));
    let name = format!("127.0.0.1:{}/test/big:v1", p.port);
    let out = hako.run(&["pull", "--platform", "linux/amd64", &name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), m["digest"].as_str().unwrap());
    assert!(stderr.contains("resuming"), "{stderr}");
    let requests = p.requests.lock().unwrap().to_lowercase();
    assert!(requests.contains("range: bytes="), "the second request resumes with Range: {requests}");
    assert!(hako.blobs().contains(&layer_digest));
    assert_eq!(hako.partials(), Vec::<String>::new());
    let rootfs = hako.dir.path().join("rootfs");
    hako.ok(&["unpack", &name, rootfs.to_str().unwrap()]);
    assert_eq!(fs::read(rootfs.join("big")).unwrap(), data);
}

#[test]
fn a_blob_with_the_wrong_digest_is_refused_and_nothing_stored() {
    let reg = Registry::start(None);
    reg.push_image("test/bad", "v1", "amd64", &[layer(&[("x", &noise(100_000, 3))])], json!({}));
    let man: Value = reg.manifest("test/bad", "v1");
    let layer_digest = man["layers"][0]["digest"].as_str().unwrap().to_string();
    let p = proxy(reg.port, &layer_digest, Fault::Corrupt);
    let hako = Hako::new();
    let err = hako.fails(&["pull", "--platform", "linux/amd64", &format!("127.0.0.1:{}/test/bad:v1", p.port)]);
    assert!(err.contains(&format!("not {layer_digest}")) && err.contains("nothing was stored"), "{err}");
    hako.assert_empty();
    assert_eq!(hako.partials(), Vec::<String>::new(), "a corrupt download is not kept for resuming");
}

#[test]
fn a_manifest_over_the_size_limit_is_refused() {
    let reg = Registry::start(None);
    let pad = "x".repeat(8192);
    reg.push_image("test/huge", "v1", "amd64", &[layer(&[("x", b"x")])], json!({"annotations": {"pad": pad}}));
    let hako = Hako::new();
    let name = format!("{}/test/huge:v1", reg.host());
    let err = hako.fails(&["pull", "--max-manifest-size", "4K", "--platform", "linux/amd64", &name]);
    assert!(err.contains("larger than the limit of 4096 bytes") && err.contains("--max-manifest-size"), "{err}");
    hako.assert_empty();
    hako.ok(&["pull", "--max-manifest-size", "64K", "--platform", "linux/amd64", &name]);
}

#[test]
fn two_concurrent_pulls_both_succeed_and_store_each_blob_once() {
    let reg = Registry::start(None);
    let m = reg.push_image(
        "test/twice",
        "v1",
        "amd64",
        &[layer(&[("a", &noise(2 << 20, 11))]), layer(&[("b", &noise(2 << 20, 12))])],
        json!({}),
    );
    let hako = Hako::new();
    let name = format!("{}/test/twice:v1", reg.host());
    let children: Vec<Child> = (0..2)
        .map(|_| {
            hako.command(&["pull", "--platform", "linux/amd64", &name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), m["digest"].as_str().unwrap());
    }
    assert_eq!(hako.images().len(), 1);
    assert_eq!(hako.blobs().len(), 4, "two layers, a config and a manifest, each once: {:?}", hako.blobs());
    assert_eq!(hako.partials(), Vec::<String>::new());
}

#[test]
fn rm_keeps_shared_layers_and_prune_collects_the_rest() {
    let reg = Registry::start(None);
    let base = layer(&[("base", &noise(50_000, 5))]);
    reg.push_image("test/one", "v1", "amd64", &[base.clone(), layer(&[("one", b"1")])], json!({}));
    reg.push_image("test/two", "v1", "amd64", &[base.clone(), layer(&[("two", b"2")])], json!({}));
    let hako = Hako::new();
    let one = format!("{}/test/one:v1", reg.host());
    let two = format!("{}/test/two:v1", reg.host());
    hako.ok(&["pull", "-q", "--platform", "linux/amd64", &one]);
    hako.ok(&["pull", "-q", "--platform", "linux/amd64", &two]);
    let base_digest = digest(&gzip(&base));
    assert_eq!(hako.blobs().iter().filter(|b| **b == base_digest).count(), 1);
    assert_eq!(hako.blobs().len(), 7, "a shared base layer is stored once: {:?}", hako.blobs());
    let before = hako.blobs();
    let ls = hako.ok(&["ls"]);
    assert!(ls.contains(&one) && ls.contains(&two), "{ls}");

    hako.ok(&["rm", &one]);
    assert!(hako.blobs().contains(&base_digest), "rm keeps a layer another image uses");
    assert_eq!(hako.blobs().len(), 4, "{:?}", hako.blobs());
    let err = hako.fails(&["inspect", &one]);
    assert!(err.contains("no image") && err.contains("hako image pull"), "{err}");
    // The remaining image still unpacks.
    hako.ok(&["unpack", &two, hako.dir.path().join("r").to_str().unwrap()]);

    // A stray partial download is collected by prune; referenced blobs are not.
    fs::write(hako.store().join("ingest").join(format!("{}.partial", "0".repeat(64))), b"junk").unwrap();
    hako.ok(&["prune"]);
    assert_eq!(hako.partials(), Vec::<String>::new());
    assert_eq!(hako.blobs().len(), 4);
    hako.ok(&["rm", &two]);
    assert_eq!(hako.blobs(), Vec::<String>::new());
    assert!(before.len() > 4);
}

const TOKEN_SERVICE: &str = "hako-test-registry";
const TOKEN_ISSUER: &str = "hako-test-issuer";

fn b64url(data: &[u8]) -> String {
    base64_free::encode(data).trim_end_matches('=').replace('+', "-").replace('/', "_")
}

/// A token server of the Distribution token flow: hands a JWT (RS256, signed with `openssl dgst`, its
/// certificate in `x5c` and in the registry's `rootcertbundle`) to a client that sends `user:password`.
struct TokenServer {
    port: u16,
    dir: tempfile::TempDir,
    /// The query strings of the token requests.
    requests: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    fn start(user: &'static str, password: &'static str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "token.key",
                "-out",
                "token.crt",
                "-days",
                "2",
                "-subj",
                "/CN=hako test token signer",
            ],
            dir.path(),
        );
        openssl(&["x509", "-in", "token.crt", "-outform", "DER", "-out", "token.der"], dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (log, keydir) = (requests.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let query = head.split_whitespace().nth(1).unwrap_or("").split_once('?').map(|q| q.1).unwrap_or("");
                log.lock().unwrap().push(query.to_string());
                let want = format!("basic {}", base64_free::encode(format!("{user}:{password}").as_bytes()));
                let authorized =
                    head.lines().any(|l| l.to_lowercase() == format!("authorization: {}", want.to_lowercase()));
                let scope = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("scope="))
                    .map(|s| s.replace("%3A", ":").replace("%2F", "/"))
                    .unwrap_or_default();
                let response = if authorized {
                    let body = json!({"token": TokenServer::jwt(&keydir, &scope)}).to_string();
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                };
                let _ = conn.write_all(response.as_bytes());
            }
        });
        TokenServer { port, dir, requests }
    }

    /// A token granting `scope` (`repository:NAME:pull`).
    fn jwt(dir: &Path, scope: &str) -> String {
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) =
            (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let cert = fs::read(dir.join("token.der")).unwrap();
        let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [base64_free::encode(&cert)]});
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({
            "iss": TOKEN_ISSUER, "sub": "hako", "aud": TOKEN_SERVICE, "exp": now + 600, "nbf": now - 60, "iat": now,
            "jti": format!("{now}-{}", scope.len()),
            "access": [{"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}],
        });
        let signing_input =
            format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let mut c = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(dir.join("token.key"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(signing_input.as_bytes()).unwrap();
        let sig = c.wait_with_output().unwrap().stdout;
        format!("{signing_input}.{}", b64url(&sig))
    }
}

fn write_auth(hako: &Hako, host: &str, user_password: &[u8]) {
    let auth = format!(r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#, base64_free::encode(user_password));
    fs::write(hako.dir.path().join("auth.json"), auth).unwrap();
}

#[test]
fn tls_with_the_registry_ca_and_basic_auth() {
    let reg = Registry::launch(Setup { basic: Some(("hako", "s3cret")), tls: true, ..Setup::default() });
    let m = reg.push_image("private/tls", "v1", "amd64", &[layer(&[("f", b"over tls")])], json!({}));
    let hako = Hako::new();
    write_auth(&hako, &reg.host(), b"hako:s3cret");
    let name = format!("{}/private/tls:v1", reg.host());
    // With another CA than the registry's, the certificate is refused and the error names the fix.
    let empty = hako.dir.path().join("other-certs");
    fs::create_dir(&empty).unwrap();
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    fs::write(empty.join("other.crt"), fs::read(other.path().join("ca.crt")).unwrap()).unwrap();
    let err = hako.fails(&["pull", "--cert-dir", empty.to_str().unwrap(), "--platform", "linux/amd64", &name]);
    assert!(err.contains("certs.d/127.0.0.1:") && err.contains("--cert-dir"), "{err}");
    hako.assert_empty();
    let bad = hako.dir.path().join("no-certs");
    fs::create_dir(&bad).unwrap();
    let err = hako.fails(&["pull", "--cert-dir", bad.to_str().unwrap(), "--platform", "linux/amd64", &name]);
    assert!(err.contains("holds no *.crt file") && err.contains("ca.crt"), "{err}");

    let ca = reg.ca_dir.as_ref().unwrap().to_str().unwrap();
    let out = hako.ok(&["pull", "--cert-dir", ca, "--platform", "linux/amd64", &name]);
    assert_eq!(out.trim(), m["digest"].as_str().unwrap());
    // The environment variable does the same.
    hako.ok(&["rm", &name]);
    let out = hako.command(&["pull", "--platform", "linux/amd64", &name]).env("HAKO_CERT_DIR", ca).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rootfs = hako.dir.path().join("rootfs");
    hako.ok(&["unpack", &name, rootfs.to_str().unwrap()]);
    assert_eq!(fs::read(rootfs.join("f")).unwrap(), b"over tls");
}

#[test]
fn bearer_tokens_from_a_token_server() {
    let tokens = TokenServer::start("hako", "t0ken-pass");
    let reg = Registry::launch(Setup { token: Some(&tokens), ..Setup::default() });
    let m = reg.push_image("team/app", "v1", "amd64", &[layer(&[("t", b"token")])], json!({}));
    let hako = Hako::new();
    let name = format!("{}/team/app:v1", reg.host());
    let err = hako.fails(&["pull", "--platform", "linux/amd64", &name]);
    assert!(err.contains("token server wants credentials") && err.contains("podman login"), "{err}");
    hako.assert_empty();
    write_auth(&hako, &reg.host(), b"hako:wrong");
    let err = hako.fails(&["pull", "--platform", "linux/amd64", &name]);
    assert!(err.contains("token server refused the credentials"), "{err}");
    hako.assert_empty();
    write_auth(&hako, &reg.host(), b"hako:t0ken-pass");
    let out = hako.ok(&["pull", "--platform", "linux/amd64", &name]);
    assert_eq!(out.trim(), m["digest"].as_str().unwrap());
    let requests = tokens.requests.lock().unwrap().clone();
    assert!(
        requests.iter().any(|q| q.contains(&format!("service={TOKEN_SERVICE}")) && q.contains("team%2Fapp%3Apull")),
        "hako asks for the registry's service and a pull scope: {requests:?}"
    );
}

const FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Pushes a Windows image (Docker schema 2) of one foreign base layer, which the registry never holds, and
/// one distributable layer; returns its manifest's descriptor and the foreign layer's digest.
fn push_windows(reg: &Registry, repo: &str, tag: &str, os_version: &str) -> (Value, String) {
    let foreign_digest = digest(format!("the windows base layer of {os_version}").as_bytes());
    let top = gzip(&layer(&[("Files/app.exe", b"MZ")]));
    let top_desc = reg.push_blob(repo, &top, "application/vnd.docker.image.rootfs.diff.tar.gzip");
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "windows", "os.version": os_version, "os.features": ["win32k"],
        "config": {"Cmd": ["cmd.exe"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(b"base diff"), digest(b"top diff")]},
    }))
    .unwrap();
    let config = reg.push_blob(repo, &config, "application/vnd.docker.container.image.v1+json");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": config,
        "layers": [
            {"mediaType": FOREIGN, "digest": foreign_digest, "size": 1_234_567_890u64,
             "urls": [format!("https://mcr.microsoft.com/v2/windows/servercore/blobs/{foreign_digest}")]},
            top_desc,
        ],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    (reg.push_manifest(repo, tag, "application/vnd.docker.distribution.manifest.v2+json", &body), foreign_digest)
}

#[test]
fn windows_images_are_read_but_neither_downloaded_whole_nor_unpacked() {
    let reg = Registry::start(None);
    let (ltsc2022, foreign) = push_windows(&reg, "test/win", "ltsc2022", "10.0.20348.2113");
    let (ltsc2019, _) = push_windows(&reg, "test/win", "ltsc2019", "10.0.17763.5576");
    let linux = reg.push_image("test/win", "linux", "amd64", &[layer(&[("l", b"linux")])], json!({}));
    let entry = |d: &Value, platform: Value| {
        let mut d = d.clone();
        d["platform"] = platform;
        d
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            entry(&ltsc2022, json!({"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.2113"})),
            entry(&ltsc2019, json!({"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.5576"})),
            entry(&linux, json!({"os": "linux", "architecture": "amd64"})),
        ],
    }))
    .unwrap();
    reg.push_manifest("test/win", "latest", "application/vnd.docker.distribution.manifest.list.v2+json", &index);

    let hako = Hako::new();
    let name = format!("{}/test/win:latest", reg.host());
    // A Linux platform picks the Linux entry of the mixed index, whatever the Windows entries say.
    let out = hako.ok(&["pull", "--platform", "linux/amd64", &name]);
    assert_eq!(out.trim(), linux["digest"].as_str().unwrap());
    // windows/amd64 picks the newest Windows build, listed first; the foreign layer is not fetched (the
    // registry does not even have it: asking would fail the pull).
    let out = hako.ok(&["pull", "--platform", "windows/amd64", &name]);
    assert_eq!(out.trim(), ltsc2022["digest"].as_str().unwrap());
    assert!(!hako.blobs().contains(&foreign), "a foreign layer was downloaded");

    let inspect: Value = serde_json::from_str(&hako.ok(&["inspect", &name])).unwrap();
    assert_eq!(inspect["platform"]["os"], "windows");
    assert_eq!(inspect["platform"]["os.version"], "10.0.20348.2113");
    assert_eq!(inspect["platform"]["os.features"], json!(["win32k"]));
    let layers = inspect["layerDetails"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["digest"], foreign.as_str());
    assert_eq!(layers[0]["size"], 1_234_567_890u64);
    assert_eq!((layers[0]["foreign"].as_bool(), layers[0]["stored"].as_bool()), (Some(true), Some(false)));
    assert!(layers[0]["urls"][0].as_str().unwrap().starts_with("https://mcr.microsoft.com/"));
    assert_eq!((layers[1]["foreign"].as_bool(), layers[1]["stored"].as_bool()), (Some(false), Some(true)));
    assert_eq!(inspect["runsHere"]["ok"], false);

    let rootfs = hako.dir.path().join("rootfs");
    let err = hako.fails(&["unpack", &name, rootfs.to_str().unwrap()]);
    assert!(
        err.contains("windows/amd64 10.0.20348.2113 image")
            && err.contains("build 20348 with process isolation")
            && err.contains("build 20348 or newer with Hyper-V isolation")
            && err.contains("foreign layer"),
        "{err}"
    );
    assert!(!rootfs.exists(), "a refused unpack created its target");
    // The 2019 image, pulled by digest, names its own build.
    hako.ok(&["pull", &format!("{}/test/win@{}", reg.host(), ltsc2019["digest"].as_str().unwrap())]);
    let err = hako.fails(&[
        "unpack",
        &format!("{}/test/win@{}", reg.host(), ltsc2019["digest"].as_str().unwrap()),
        rootfs.to_str().unwrap(),
    ]);
    assert!(err.contains("build 17763 with process isolation"), "{err}");
}

/// A tmpfs mounted at a path for one test; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the full-disk test mounts a tmpfs: run the image tests as root (as scripts/test does)"
        );
        fs::create_dir_all(path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "hako-test-store"])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs at {}", path.display());
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_pull_and_leaves_nothing() {
    let reg = Registry::start(None);
    reg.push_image(
        "test/full",
        "v1",
        "amd64",
        &[layer(&[("small", b"fits")]), layer(&[("big", &noise(3 << 20, 21))])],
        json!({}),
    );
    let hako = Hako::new();
    let _tmpfs = Tmpfs::mount(&hako.store(), "1m");
    let err = hako.fails(&["pull", "--platform", "linux/amd64", &format!("{}/test/full:v1", reg.host())]);
    assert!(
        err.contains("No space left on device")
            && err.contains(hako.store().to_str().unwrap())
            && err.contains("hako image prune")
            && err.contains("--store"),
        "{err}"
    );
    assert_eq!(hako.images(), Vec::<Value>::new(), "a failed pull recorded an image");
    assert_eq!(hako.partials(), Vec::<String>::new(), "a full disk left a partial download");
    // The small layer may have been stored before the big one failed; prune takes it, as no image uses it.
    hako.ok(&["prune"]);
    hako.assert_empty();
}

#[test]
fn a_terminal_gets_progress_bars() {
    let reg = Registry::start(None);
    reg.push_image("test/tty", "v1", "amd64", &[layer(&[("a", &noise(200_000, 31))])], json!({}));
    let hako = Hako::new();
    let name = format!("{}/test/tty:v1", reg.host());
    // script(1) gives hako a pseudo-terminal as stdin, stdout and stderr, and copies what it draws.
    let cmd = format!("{} image pull --platform linux/amd64 {name}", env!("CARGO_BIN_EXE_hako"));
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .env("HAKO_IMAGE_STORE", hako.store())
        .env("HOME", hako.dir.path())
        .env("TERM", "xterm")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DOCKER_CONFIG");
    let out = c.output().expect("script (bsdutils, scripts/install-deps)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("] ") && text.contains("done") && text.contains('\x1b'), "a bar is drawn: {text:?}");
    assert!(!text.contains(": downloading "), "no plain lines on a terminal: {text:?}");
    assert_eq!(hako.images().len(), 1);
}

/// The digests of the layers of `repo:tag`, read from the (plain) registry.
fn layer_digests(reg: &Registry, repo: &str, tag: &str) -> Vec<String> {
    let man: Value = reg.manifest(repo, tag);
    man["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

#[test]
fn prune_during_a_pull_waits_for_it_and_takes_nothing_it_needs() {
    let reg = Registry::start(None);
    let data = noise(2 << 20, 41);
    let m = reg.push_image("test/gc", "v1", "amd64", &[layer(&[("gc", &data)])], json!({}));
    let layer_digest = layer_digests(&reg, "test/gc", "v1").remove(0);
    let gate = Gate::default();
    let p = proxy(reg.port, &layer_digest, Fault::Hold(256 << 10, gate.clone()));
    let hako = Hako::new();
    let name = format!("127.0.0.1:{}/test/gc:v1", p.port);
    let pull = hako
        .command(&["pull", "--platform", "linux/amd64", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The pull now holds the store's lock (shared) with part of the layer in ingest/.
    gate.wait_arrived();
    let prune = hako.command(&["prune"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Wait until the kernel shows prune blocked on the store's lock (a "->" line of /proc/locks).
    let blocked = format!(" {} ", prune.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fs::read_to_string("/proc/locks").unwrap().lines().any(|l| l.contains("->") && l.contains(&blocked)) {
        assert!(Instant::now() < deadline, "prune never waited for the pull's lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    gate.open();
    let out = pull.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), m["digest"].as_str().unwrap());
    let out = prune.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hako.images().len(), 1);
    assert!(hako.blobs().contains(&layer_digest), "prune took a blob of the image");
    assert_eq!(hako.partials(), Vec::<String>::new());
    let rootfs = hako.dir.path().join("rootfs");
    hako.ok(&["unpack", &name, rootfs.to_str().unwrap()]);
    assert_eq!(fs::read(rootfs.join("gc")).unwrap(), data);
}

#[test]
fn a_linux_image_with_a_non_distributable_layer_is_pulled_without_it_and_not_unpacked() {
    let reg = Registry::start(None);
    let foreign = digest(b"a licensed layer");
    let top = reg.push_blob("test/nd", &gzip(&layer(&[("t", b"top")])), "application/vnd.oci.image.layer.v1.tar+gzip");
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest(b"nd"), digest(b"top")]},
    }))
    .unwrap();
    let config = reg.push_blob("test/nd", &config, "application/vnd.oci.image.config.v1+json");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config,
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": foreign,
             "size": 4096, "urls": ["https://example.com/licensed-layer"]},
            top,
        ],
    }))
    .unwrap();
    reg.push_manifest("test/nd", "v1", "application/vnd.oci.image.manifest.v1+json", &manifest);
    let hako = Hako::new();
    let name = format!("{}/test/nd:v1", reg.host());
    let out = hako.run(&["pull", "--platform", "linux/amd64", &name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 of them foreign (non-distributable) and not downloaded"), "{stderr}");
    assert!(!hako.blobs().contains(&foreign));
    let rootfs = hako.dir.path().join("rootfs");
    let err = hako.fails(&["unpack", &name, rootfs.to_str().unwrap()]);
    assert!(err.contains(&format!("layer {foreign} is foreign (non-distributable)")), "{err}");
    assert!(!rootfs.exists());
    hako.ok(&["prune"]);
    assert_eq!(hako.images().len(), 1, "prune keeps an image with a foreign layer");
}
