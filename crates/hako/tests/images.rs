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

/// A docker-registry process on 127.0.0.1 with its storage in a temporary directory; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    auth: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Registry {
    fn start(auth: Option<(&str, &str)>) -> Registry {
        assert!(
            Path::new(REGISTRY).exists(),
            "{REGISTRY} is missing: run scripts/install-deps (Debian package docker-registry)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut auth_cfg = String::new();
        if let Some((u, p)) = auth {
            let htpasswd = dir.path().join("htpasswd");
            let st = Command::new("htpasswd")
                .args(["-B", "-b", "-c"])
                .arg(&htpasswd)
                .args([u, p])
                .stderr(Stdio::null())
                .status()
                .expect("htpasswd (apache2-utils, scripts/install-deps)");
            assert!(st.success());
            auth_cfg = format!("auth:\n  htpasswd:\n    realm: hako-test\n    path: {}\n", htpasswd.display());
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_cfg}",
            dir.path().join("data").display()
        );
        let cfg = dir.path().join("config.yml");
        fs::write(&cfg, config).unwrap();
        let mut child =
            Command::new(REGISTRY).arg("serve").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = child.try_wait().unwrap() {
                panic!("docker-registry exited: {st}");
            }
            assert!(Instant::now() < deadline, "docker-registry did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry { child, port, auth: auth.map(|(u, p)| (u.to_string(), p.to_string())), _dir: dir }
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
        let agent = Registry::agent();
        let mut req = agent.post(format!("http://{}/v2/{repo}/blobs/uploads/", self.host()));
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        let r = req.send_empty().unwrap();
        assert_eq!(r.status().as_u16(), 202, "starting a blob upload");
        let loc = r.headers().get("location").unwrap().to_str().unwrap().to_string();
        let url = if loc.starts_with("http") { loc } else { format!("http://{}{loc}", self.host()) };
        let sep = if url.contains('?') { '&' } else { '?' };
        let d = digest(data);
        let mut req = agent.put(format!("{url}{sep}digest={d}")).header("Content-Type", "application/octet-stream");
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        let r = req.send(data).unwrap();
        assert_eq!(r.status().as_u16(), 201, "finishing a blob upload");
        json!({"mediaType": media_type, "digest": d, "size": data.len()})
    }

    /// Pushes a manifest or index under `tag`; returns its descriptor.
    fn push_manifest(&self, repo: &str, tag: &str, media_type: &str, body: &[u8]) -> Value {
        let mut req = Registry::agent()
            .put(format!("http://{}/v2/{repo}/manifests/{tag}", self.host()))
            .header("Content-Type", media_type);
        if let Some(a) = self.authorization() {
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
    let out = hako.ok(&["pull", "--platform", "linux/amd64", &name]);
    assert_eq!(out.trim(), amd64["digest"].as_str().unwrap(), "the amd64 manifest is chosen");
    let images = hako.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["name"], format!("{name}:latest"));
    assert_eq!(images[0]["index_digest"], index["digest"]);
    assert_eq!(images[0]["layers"].as_array().unwrap().len(), 2);
    let inspect: Value = serde_json::from_str(&hako.ok(&["inspect", &name])).unwrap();
    assert_eq!(inspect["imageConfig"]["config"]["Cmd"], json!(["/bin/sh"]));
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
}

/// What the proxy does to the response to the first request for one blob.
#[derive(Clone, Copy)]
enum Fault {
    /// Close the connection after this many bytes of the response.
    Cut(usize),
    /// Flip one byte of the body.
    Corrupt,
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
            let done = done.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut sent = 0usize;
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let faulty = asked.load(Ordering::SeqCst) && !done.load(Ordering::SeqCst);
                    match fault {
                        Fault::Cut(after) if faulty && sent + n > after => {
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
    let man: Value = serde_json::from_str(
        &Registry::agent()
            .get(format!("http://{}/v2/test/big/manifests/v1", reg.host()))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
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
    let man: Value = serde_json::from_str(
        &Registry::agent()
            .get(format!("http://{}/v2/test/bad/manifests/v1", reg.host()))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
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
