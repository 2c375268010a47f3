//! hako.exe on a Windows API without the Host Compute Service, and what it reads from the
//! host: run by `scripts/check-windows` under Wine, in a throwaway prefix.
//!
//! Wine implements processes, files and the registry but not HCS, like a Windows without the
//! Containers feature: hako.exe must start, explain itself and name the feature to enable.
//! The host tests rewrite `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion` (the build, UBR
//! and edition hako reads) for several Windows versions and check the compatibility verdicts
//! and `hako.exe hcs-doc`'s output for each; they only do so in the prefix the script made
//! (`HAKO_TEST_WINE_PREFIX`) and under Wine, never on a real Windows host.
#![cfg(windows)]

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use hako_hcs::compat::HostInfo;
use hako_hcs::osversion::OsVersion;
use hako_hcs::{hcs_doc, HcsDocOptions};
use serde_json::{json, Value};

const HAKO: &str = env!("CARGO_BIN_EXE_hako-windows");
const CURRENT_VERSION: &str = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion";

/// Whether this process runs under Wine (Wine keeps its settings under HKCU\Software\Wine).
fn under_wine() -> bool {
    Command::new("reg").args(["query", r"HKCU\Software\Wine"]).output().map_or(false, |o| o.status.success())
}

/// Whether the registry may be rewritten: under Wine, in the prefix scripts/check-windows made.
/// Elsewhere the host tests say why they did not run (a real Windows keeps its registry).
fn throwaway_wine_prefix(test: &str) -> bool {
    let prefix = std::env::var_os("HAKO_TEST_WINE_PREFIX").is_some();
    let wine = under_wine();
    if !(prefix && wine) {
        eprintln!(
            "{}: not run: it rewrites HKLM and runs only under Wine in scripts/check-windows's throwaway prefix \
             (HAKO_TEST_WINE_PREFIX set: {}, Wine: {})",
            test, prefix, wine
        );
    }
    prefix && wine
}

fn hako(args: &[&str]) -> Output {
    Command::new(HAKO).args(args).output().expect("run hako-windows.exe")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn hako_exe_starts_without_hcs_and_names_the_feature() {
    if !under_wine() {
        eprintln!("hako_exe_starts_without_hcs_and_names_the_feature: not run: this host may have HCS (not Wine)");
        return;
    }
    let out = hako(&["--help"]);
    assert!(out.status.success(), "--help: {:?} {}", out.status, text(&out.stderr));
    assert!(text(&out.stdout).starts_with("usage: hako "), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("hcs-doc BUNDLE"), "{}", text(&out.stdout));

    let out = hako(&["--version"]);
    assert!(out.status.success(), "--version: {:?}", out.status);
    assert!(text(&out.stdout).starts_with("hako 0."), "{}", text(&out.stdout));

    let root = std::env::temp_dir().join(format!("hako-wine-root-{}", std::process::id()));
    let root_arg = root.to_string_lossy().into_owned();
    for args in [
        vec!["create", "web", "--bundle", "C:\\nowhere"],
        vec!["start", "web"],
        vec!["exec", "web", "cmd"],
        vec!["delete", "--force", "web"],
    ] {
        let mut all = vec!["--root", &root_arg];
        all.extend(args.iter().copied());
        let out = hako(&all);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{:?}: {}", args, err);
        assert!(
            err.starts_with(&format!("hako: `{}`: the Host Compute Service is not available: ", args[0])),
            "{}",
            err
        );
        assert!(err.contains("cannot load computecore.dll"), "{}", err);
        assert!(err.contains("enable the Windows feature Containers"), "{}", err);
        assert!(err.contains("Microsoft-Hyper-V"), "{}", err);
        assert!(!root.join("web").exists(), "{:?} left {} behind", args, root.display());
    }

    // list reads hako's state only: it works without HCS.
    let out = hako(&["--root", &root_arg, "list", "--quiet"]);
    assert!(out.status.success(), "list: {}", text(&out.stderr));
    let _ = fs::remove_dir_all(&root);
}

/// Sets values under CurrentVersion for the test and puts the old ones back on drop.
struct RegistryValues {
    saved: Vec<(&'static str, Option<(String, String)>)>,
}

/// `reg query` of one value: its type and data.
fn reg_query(name: &str) -> Option<(String, String)> {
    let out = Command::new("reg").args(["query", CURRENT_VERSION, "/v", name]).output().expect("run reg query");
    if !out.status.success() {
        return None;
    }
    let stdout = text(&out.stdout);
    stdout.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next() != Some(name) {
            return None;
        }
        let kind = fields.next()?.to_string();
        Some((kind, fields.collect::<Vec<_>>().join(" ")))
    })
}

fn reg_set(name: &str, kind: &str, data: &str) {
    let out = Command::new("reg")
        .args(["add", CURRENT_VERSION, "/v", name, "/t", kind, "/d", data, "/f"])
        .output()
        .expect("run reg add");
    assert!(out.status.success(), "reg add {} {}={}: {}", CURRENT_VERSION, name, data, text(&out.stderr));
}

fn reg_delete(name: &str) {
    let _ = Command::new("reg").args(["delete", CURRENT_VERSION, "/v", name, "/f"]).output();
}

impl RegistryValues {
    fn save() -> RegistryValues {
        let names = ["CurrentBuildNumber", "CurrentBuild", "UBR", "InstallationType"];
        RegistryValues { saved: names.iter().map(|n| (*n, reg_query(n))).collect() }
    }

    fn host(&self, build: u32, ubr: u32, installation: &str) {
        reg_set("CurrentBuildNumber", "REG_SZ", &build.to_string());
        reg_set("CurrentBuild", "REG_SZ", &build.to_string());
        reg_set("UBR", "REG_DWORD", &ubr.to_string());
        reg_set("InstallationType", "REG_SZ", installation);
    }
}

impl Drop for RegistryValues {
    fn drop(&mut self) {
        for (name, value) in &self.saved {
            match value {
                Some((kind, data)) if kind == "REG_DWORD" => {
                    let n = u32::from_str_radix(data.trim_start_matches("0x"), 16).unwrap_or(0);
                    reg_set(name, kind, &n.to_string());
                }
                Some((kind, data)) => reg_set(name, kind, data),
                None => reg_delete(name),
            }
        }
    }
}

struct TempBundle(PathBuf);

impl TempBundle {
    fn new() -> TempBundle {
        let dir = std::env::temp_dir().join(format!("hako-wine-host-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let config = json!({
            "ociVersion": "1.1.0",
            "process": {"args": ["cmd"], "cwd": "C:\\"},
            "root": {"path": "\\\\?\\Volume{2c2b6b0c-7d43-4c0a-8d8c-0123456789ab}\\"},
            "windows": {"layerFolders": ["C:\\l\\base", "C:\\l\\scratch"]}
        });
        fs::write(dir.join("config.json"), config.to_string()).expect("write config");
        TempBundle(dir)
    }
}

impl Drop for TempBundle {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One Windows host as the registry describes it, and what images it runs.
struct Host {
    build: u32,
    ubr: u32,
    installation: &'static str,
    /// The text summary's host line.
    line: &'static str,
    /// (image os.version, verdict).
    images: &'static [(&'static str, &'static str)],
}

const HOSTS: &[Host] = &[
    Host {
        build: 17763,
        ubr: 5830,
        installation: "Server",
        line: "host: build 17763 (ltsc2019 (1809)), revision 5830\n",
        images: &[("10.0.17763.1", "process-ok"), ("10.0.14393.1", "needs-hyper-v"), ("10.0.20348.1", "cannot-run")],
    },
    Host {
        build: 20348,
        ubr: 2849,
        installation: "Server",
        line: "host: build 20348 (ltsc2022), revision 2849\n",
        images: &[("10.0.20348.1", "process-ok"), ("10.0.17763.1", "needs-hyper-v"), ("10.0.26100.1", "cannot-run")],
    },
    Host {
        build: 26100,
        ubr: 2033,
        installation: "Server",
        line: "host: build 26100 (ltsc2025 (Windows 11 24H2)), revision 2033\n",
        images: &[("10.0.26100.1", "process-ok"), ("10.0.20348.1", "process-ok"), ("10.0.17763.1", "needs-hyper-v")],
    },
    // Windows 11 22H2, a client: ltsc2022 images run with process isolation there.
    Host {
        build: 22621,
        ubr: 4317,
        installation: "Client",
        line: "host: build 22621 (Windows 11 22H2), revision 4317\n",
        images: &[("10.0.20348.1", "process-ok"), ("10.0.17763.1", "needs-hyper-v"), ("10.0.26100.1", "cannot-run")],
    },
    // Build 17134 as a client (Windows 10 1803) and as a server (Windows Server 1803): only the
    // edition differs, and a client older than 1809 runs Hyper-V containers only. hako itself
    // refuses both (no HCS schema v2 before 17763): `line` is empty, hcs-doc names the build.
    Host { build: 17134, ubr: 1, installation: "Client", line: "", images: &[("10.0.17134.1", "needs-hyper-v")] },
    Host { build: 17134, ubr: 1, installation: "Server", line: "", images: &[("10.0.17134.1", "process-ok")] },
];

#[test]
fn hcs_doc_reads_the_host_from_the_registry() {
    if !throwaway_wine_prefix("hcs_doc_reads_the_host_from_the_registry") {
        return;
    }
    let registry = RegistryValues::save();
    let bundle = TempBundle::new();
    let bundle_arg = bundle.0.to_string_lossy().into_owned();
    for host in HOSTS {
        registry.host(host.build, host.ubr, host.installation);
        let what = format!("{} build {} UBR {}", host.installation, host.build, host.ubr);

        let info = hako_hcs::host::read_host_info().expect("read the host from the registry");
        let expected =
            HostInfo { version: OsVersion::windows10(host.build, host.ubr), is_client: host.installation == "Client" };
        assert_eq!(info, expected, "{}", what);

        for (image, verdict) in host.images {
            // The engine's verdict for the host as read from the registry.
            let version: OsVersion = image.parse().expect("version");
            let engine = serde_json::to_value(hako_hcs::compat::check(&info, Some(&version))).expect("verdict json");
            assert_eq!(engine["verdict"], json!(verdict), "{} image {}: {}", what, image, engine);
            if host.line.is_empty() {
                continue;
            }
            // hcs-doc's, with the host it read itself.
            let opts = HcsDocOptions { image_os_version: Some(version), ..Default::default() };
            let v: Value = serde_json::from_str(&hcs_doc(&bundle.0, &opts).expect("documents")).expect("json");
            assert_eq!(v["host"], json!({"build": host.build, "revision": host.ubr, "measured": true}), "{}", what);
            assert_eq!(v["compatibility"], engine, "{} image {}", what, image);
            let warnings = v["warnings"].to_string();
            assert!(!warnings.contains("host assumed"), "{}: {}", what, warnings);

            // hako.exe prints the same verdict for the same host.
            let out = hako(&["hcs-doc", &bundle_arg, "--image-os-version", image]);
            assert!(out.status.success(), "{} hako.exe hcs-doc: {}", what, text(&out.stderr));
            let exe: Value = serde_json::from_slice(&out.stdout).expect("hako.exe hcs-doc json");
            assert_eq!(exe["compatibility"], engine, "{} image {}", what, image);
            assert_eq!(exe["host"], v["host"], "{}", what);
        }

        let out = hako(&["hcs-doc", &bundle_arg, "--format", "text", "--id", "web"]);
        if host.line.is_empty() {
            // A host older than 1809: hako.exe refuses it and names the build and the fix.
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{}: {}", what, err);
            assert!(err.contains(&format!("host build {} predates HCS schema v2", host.build)), "{}: {}", what, err);
            assert!(err.contains("run hako on Windows 10 1809 / Server 2019 or newer"), "{}: {}", what, err);
        } else {
            assert!(out.status.success(), "{} hako.exe hcs-doc --format text: {}", what, text(&out.stderr));
            let summary = text(&out.stdout);
            assert!(summary.starts_with(&format!("isolation: process\n{}", host.line)), "{}:\n{}", what, summary);
        }

        // --assume-host ignores the registry: the documents of the assumed Windows Server 2022.
        let out = hako(&["hcs-doc", &bundle_arg, "--format", "text", "--assume-host"]);
        assert!(out.status.success(), "{}: {}", what, text(&out.stderr));
        let summary = text(&out.stdout);
        assert!(
            summary.starts_with("isolation: process\nhost: build 20348 (ltsc2022), revision 0 (assumed)\n"),
            "{}:\n{}",
            what,
            summary
        );
    }

    // A build number that is not a number: the error names the value; hcs-doc falls back to
    // the assumed host and says so.
    reg_set("CurrentBuildNumber", "REG_SZ", "vNext");
    let e = hako_hcs::host::read_host_info().expect_err("not a number");
    assert!(e.to_string().contains("CurrentBuildNumber is \"vNext\", not a number"), "{}", e);
    let v: Value =
        serde_json::from_str(&hcs_doc(&bundle.0, &HcsDocOptions::default()).expect("documents")).expect("json");
    assert_eq!(v["host"]["measured"], json!(false));
    drop(registry);
}
