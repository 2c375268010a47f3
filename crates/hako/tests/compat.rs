//! `hako compat` against a real registry: Debian's docker-registry started on loopback by each test, with
//! multi-platform indexes pushed by the test whose Windows entries carry `os.version` and `os.features`, so
//! the Windows version rules, platform selection, the isolation policy and the lifecycle warnings are tested
//! end to end on a Linux host.

use std::fs;
use std::io::Write;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};

const REGISTRY: &str = "/usr/bin/docker-registry";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn digest(data: &[u8]) -> String {
    hako_image::Digest::of(data).to_string()
}

/// A docker-registry on 127.0.0.1 with its storage in a temporary directory; killed on drop.
#[path = "common/listen.rs"]
mod listen;

struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        assert!(Path::new(REGISTRY).exists(), "{REGISTRY} is missing: apt-get install docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yml");
        let data = dir.path().join("data");
        let (child, port) = listen::serve_on_a_free_port("docker-registry", |port| {
            fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    data.display()
                ),
            )
            .unwrap();
            Command::new(REGISTRY).arg("serve").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
        });
        Registry { child, port, _dir: dir }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder().http_status_as_error(false).build().into()
    }

    fn push_blob(&self, repo: &str, data: &[u8], media_type: &str) -> Value {
        let agent = Registry::agent();
        let r = agent.post(format!("http://{}/v2/{repo}/blobs/uploads/", self.host())).send_empty().unwrap();
        assert_eq!(r.status().as_u16(), 202, "starting a blob upload");
        let loc = r.headers().get("location").unwrap().to_str().unwrap().to_string();
        let url = if loc.starts_with("http") { loc } else { format!("http://{}{loc}", self.host()) };
        let sep = if url.contains('?') { '&' } else { '?' };
        let d = digest(data);
        let r = agent
            .put(format!("{url}{sep}digest={d}"))
            .header("Content-Type", "application/octet-stream")
            .send(data)
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "finishing a blob upload");
        json!({"mediaType": media_type, "digest": d, "size": data.len()})
    }

    fn push_manifest(&self, repo: &str, tag: &str, media_type: &str, body: &[u8]) -> Value {
        let mut r = Registry::agent()
            .put(format!("http://{}/v2/{repo}/manifests/{tag}", self.host()))
            .header("Content-Type", media_type)
            .send(body)
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(status, 201, "pushing {repo}:{tag}: {}", r.body_mut().read_to_string().unwrap_or_default());
        json!({"mediaType": media_type, "digest": digest(body), "size": body.len()})
    }

    /// Pushes an image of one small layer whose config states `platform` (os, architecture, os.version,
    /// os.features); returns its manifest descriptor with the platform set, ready for an index.
    fn push_image(&self, repo: &str, tag: &str, platform: Value) -> Value {
        let layer = gzip_tar(&format!("{platform}"));
        let mut config = json!({
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(&layer.1)]},
        });
        for (k, v) in platform.as_object().unwrap() {
            config[k] = v.clone();
        }
        let config =
            self.push_blob(repo, &serde_json::to_vec(&config).unwrap(), "application/vnd.oci.image.config.v1+json");
        let layer = self.push_blob(repo, &layer.0, "application/vnd.oci.image.layer.v1.tar+gzip");
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]});
        let mut desc = self.push_manifest(repo, tag, OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        desc["platform"] = platform;
        desc
    }

    /// Pushes an index of one image per platform under `repo:tag`.
    fn push_index(&self, repo: &str, tag: &str, platforms: &[Value]) {
        let manifests: Vec<Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, p)| self.push_image(repo, &format!("{tag}-{i}"), p.clone()))
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        self.push_manifest(repo, tag, OCI_INDEX, &serde_json::to_vec(&index).unwrap());
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gzipped tar holding one file with `text`, and the tar itself.
fn gzip_tar(text: &str) -> (Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "platform.txt", text.as_bytes()).unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), tar)
}

fn win(version: &str, features: &[&str]) -> Value {
    json!({"os": "windows", "architecture": "amd64", "os.version": version, "os.features": features})
}

fn linux(arch: &str) -> Value {
    json!({"os": "linux", "architecture": arch})
}

/// The architecture of this host in Go's names.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A private environment: its own store (never created by `compat`) and configuration file.
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

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hako"))
            .args(args)
            .env("HAKO_IMAGE_STORE", self.store())
            .env("HAKO_CONFIG", self.config())
            .env("HOME", self.dir.path())
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("DOCKER_CONFIG")
            .output()
            .unwrap()
    }

    /// `hako compat IMAGE ARGS --format json`, its exit status and its decision.
    fn compat(&self, image: &str, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["compat", image, "--format", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("hako {all:?}: {e}: stdout {:?} stderr {stderr}", String::from_utf8_lossy(&out.stdout))
        });
        (out.status.code().unwrap(), v)
    }
}

fn codes(mode: &Value) -> Vec<String> {
    mode["reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap().to_string()).collect()
}

fn warnings(v: &Value) -> Vec<String> {
    v["warnings"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap().to_string()).collect()
}

#[test]
fn windows_entries_are_chosen_and_judged_by_the_host_build() {
    let reg = Registry::start();
    let hako = Hako::new();
    reg.push_index(
        "win/app",
        "multi",
        &[
            linux(host_arch()),
            win("10.0.17763.5000", &["win32k"]),
            win("10.0.20348.1487", &["win32k"]),
            win("10.0.26100.100", &["win32k"]),
        ],
    );
    let image = format!("{}/win/app:multi", reg.host());

    // ltsc2022 host: its own build, process isolation.
    let (code, v) = hako.compat(&image, &["--host-os-version", "10.0.20348.2000"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["resolved"]["platform"]["osVersion"], "10.0.20348.1487");
    assert_eq!(v["resolved"]["source"], "registry");
    assert_eq!(v["resolved"]["offered"].as_array().unwrap().len(), 4);
    assert_eq!(v["process"]["possible"], true);
    assert_eq!(codes(&v["process"]), ["same-build"]);
    assert_eq!(v["vm"]["possible"], true);
    assert_eq!(v["auto"], "process");
    assert_eq!(v["release"]["name"], "ltsc2022");
    assert_eq!(v["host"]["osVersion"], "10.0.20348.2000");

    // ltsc2025 host: the 26100 entry (the host's build), not the older compatible one.
    let (_, v) = hako.compat(&image, &["--host-os-version", "10.0.26100.1"]);
    assert_eq!(v["image"]["osVersion"], "10.0.26100.100");
    assert_eq!(v["auto"], "process");

    // Windows 11 22H2: ltsc2022 runs with process isolation (the 26100 image is too new for it).
    let (_, v) = hako.compat(&image, &["--host-os-version", "10.0.22621.1", "--host-edition", "client"]);
    assert_eq!(v["image"]["osVersion"], "10.0.20348.1487");
    assert_eq!(codes(&v["process"]), ["windows11-ltsc2022"]);
    assert_eq!(v["auto"], "process");

    // A newer image on an older host: refused in both modes (exit status 3).
    let (code, v) =
        hako.compat(&image, &["--host-os-version", "10.0.17763.1", "--platform", "windows/amd64:10.0.26100"]);
    assert_eq!(code, 3, "{v:#}");
    assert_eq!(v["image"]["osVersion"], "10.0.26100.100", "--platform picks the 26100 entry");
    assert_eq!((v["process"]["possible"].as_bool(), v["vm"]["possible"].as_bool()), (Some(false), Some(false)));
    assert_eq!(codes(&v["vm"]), ["newer-image"]);
    assert!(v["auto"].is_null());

    // win32k on a Nano Server host: VM only.
    let (_, v) = hako.compat(&image, &["--host-os-version", "10.0.20348.1", "--host-edition", "nano-server"]);
    assert_eq!(codes(&v["process"]), ["win32k-missing"]);
    assert_eq!(v["auto"], "vm");

    // On this Linux host: the Linux entry.
    let (code, v) = hako.compat(&image, &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["image"]["os"], "linux");
    assert_eq!(v["host"]["os"], "linux");
    assert!(v["host"]["kernel"].is_string());
    assert_eq!(v["auto"], "process");
    assert!(!hako.store().exists(), "compat created the store or downloaded something");
}

#[test]
fn an_older_image_runs_only_in_a_vm_and_windows_images_on_linux_name_their_host() {
    let reg = Registry::start();
    let hako = Hako::new();
    reg.push_index("win/old", "ltsc2019", &[win("10.0.17763.5000", &[])]);
    let image = format!("{}/win/old:ltsc2019", reg.host());
    // An older image on a newer host: no manifest matches process isolation, VM isolation runs it.
    let (code, v) = hako.compat(&image, &["--host-os-version", "10.0.20348.1"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["process"]["possible"], false);
    assert_eq!(codes(&v["process"]), ["outside-ltsc-range"]);
    assert_eq!(v["vm"]["possible"], true);
    assert_eq!(v["auto"], "vm");
    assert_eq!(v["autoReasons"][0]["code"], "process-impossible");

    // On this Linux host the Windows entry is judged and the verdict names the Windows host.
    let (code, v) = hako.compat(&image, &[]);
    assert_eq!(code, 3, "{v:#}");
    assert_eq!(codes(&v["process"]), ["windows-image-on-linux"]);
    let msg = v["process"]["reasons"][0]["message"].as_str().unwrap();
    assert!(msg.contains("a Windows host of build 17763 (ltsc2019 (1809)) runs it with process isolation"), "{msg}");
    assert!(msg.contains("17763 or newer with Hyper-V isolation"), "{msg}");

    // The text form says the same for people.
    let out = hako.run(&["compat", &image, "--host-os-version", "10.0.20348.1"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("process:  no:") && text.contains("vm:       yes:"), "{text}");
    assert!(text.contains("auto:     vm:") && text.contains("release:  ltsc2019 (build 17763, LTSC"), "{text}");
    assert!(text.contains("warning:  ") && text.contains("[extended-support]"), "{text}");
}

#[test]
fn out_of_support_releases_warn_and_other_architectures_are_refused() {
    let reg = Registry::start();
    let hako = Hako::new();
    reg.push_index("win/sac", "1709", &[win("10.0.16299.15", &[])]);
    let (_, v) = hako.compat(&format!("{}/win/sac:1709", reg.host()), &["--host-os-version", "10.0.16299.1"]);
    assert_eq!(v["auto"], "process");
    assert_eq!(warnings(&v), ["out-of-support"]);
    assert!(v["warnings"][0]["message"].as_str().unwrap().contains("1709 (build 16299) left support on 2019-04-09"));

    // An image of another architecture only.
    let other = if host_arch() == "s390x" { "ppc64le" } else { "s390x" };
    reg.push_index("lin/other", "v1", &[linux(other)]);
    let (code, v) = hako.compat(&format!("{}/lin/other:v1", reg.host()), &[]);
    assert_eq!(code, 3, "{v:#}");
    assert_eq!(codes(&v["process"]), ["arch-mismatch"]);
    assert_eq!(codes(&v["vm"]), ["arch-mismatch"]);
}

#[test]
fn the_policy_sends_untrusted_registries_to_a_vm_and_bad_policies_are_refused() {
    let reg = Registry::start();
    let hako = Hako::new();
    reg.push_index("team/app", "v1", &[linux(host_arch())]);
    reg.push_index("other/app", "v1", &[linux(host_arch())]);
    fs::write(
        hako.config(),
        format!(r#"{{"isolation": {{"trustedRegistries": ["{}/team"], "untrusted": "vm"}}}}"#, reg.host()),
    )
    .unwrap();
    let (_, v) = hako.compat(&format!("{}/team/app:v1", reg.host()), &[]);
    assert_eq!(v["auto"], "process");
    assert!(codes(&v["process"]).contains(&"policy-trusted".to_string()));
    assert_eq!(v["policy"]["file"], hako.config().display().to_string());
    let (code, v) = hako.compat(&format!("{}/other/app:v1", reg.host()), &[]);
    assert_eq!(code, 0);
    assert_eq!(v["process"]["possible"], false);
    assert_eq!(codes(&v["process"]), ["policy-untrusted"]);
    assert_eq!(v["auto"], "vm");

    fs::write(hako.config(), r#"{"isolation": {"trustedRegistries": ["https://x.example"]}}"#).unwrap();
    let out = hako.run(&["compat", &format!("{}/team/app:v1", reg.host())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&hako.config().display().to_string())
            && err.contains("trustedRegistries[0]")
            && err.contains("URL scheme"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn an_image_in_the_store_is_judged_without_the_registry() {
    let reg = Registry::start();
    let hako = Hako::new();
    reg.push_index("lin/app", "v1", &[linux(host_arch())]);
    let image = format!("{}/lin/app:v1", reg.host());
    let out = hako.run(&["image", "pull", "-q", &image]);
    assert!(out.status.success(), "pull: {}", String::from_utf8_lossy(&out.stderr));
    drop(reg);
    let (code, v) = hako.compat(&image, &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["resolved"]["source"], "store");
    assert_eq!(v["image"]["os"], "linux");
    assert_eq!(v["image"]["registry"], image.split('/').next().unwrap());
    // An image neither stored nor reachable: the registry's error, no verdict.
    let out = hako.run(&["compat", "127.0.0.1:1/none/such:v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}
