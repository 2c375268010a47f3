//! `hako hcs-doc`'s library entry point on real bundle directories: both formats, the options,
//! and the errors for missing, malformed and invalid bundles. The documents of an assumed host
//! (`assume_host`) are the same on every host, Windows included (scripts/check-windows runs these
//! under Wine); what `hcs-doc` reads from a real Windows host is tested in `tests/wine_host.rs`.

use std::fs;
use std::path::PathBuf;

use hako_hcs::{hcs_doc, DocFormat, HcsDocOptions, HcsError, Isolation};
use serde_json::{json, Value};

struct TempBundle(PathBuf);

impl TempBundle {
    fn new(name: &str, config: Option<&str>) -> TempBundle {
        let dir = std::env::temp_dir().join(format!("hako-hcs-doc-{}-{}", name, std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        if let Some(c) = config {
            fs::write(dir.join("config.json"), c).expect("write config");
        }
        TempBundle(dir)
    }
}

impl Drop for TempBundle {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config() -> String {
    json!({
        "ociVersion": "1.1.0",
        "hostname": "web",
        "process": {"args": ["cmd", "/c", "echo hi"], "cwd": "C:\\"},
        "root": {"path": "\\\\?\\Volume{2c2b6b0c-7d43-4c0a-8d8c-0123456789ab}\\"},
        "mounts": [{"destination": "C:\\data", "source": "C:\\data"}],
        "windows": {"layerFolders": ["C:\\l\\base", "C:\\l\\scratch"]}
    })
    .to_string()
}

/// The default options for the assumed host (Windows Server 2022, build 20348), not this one.
fn assumed() -> HcsDocOptions {
    HcsDocOptions { assume_host: true, ..HcsDocOptions::default() }
}

#[test]
fn json_output_is_the_whole_plan() {
    let b = TempBundle::new("json", Some(&config()));
    let out = hcs_doc(&b.0, &assumed()).expect("documents");
    assert!(out.ends_with('\n'));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["isolation"], json!("process"));
    assert_eq!(v["host"], json!({"build": 20348, "revision": 0, "measured": false}));
    assert_eq!(v["container"]["id"], json!(format!("hako-hcs-doc-json-{}", std::process::id())));
    assert_eq!(v["container"]["document"]["Container"]["GuestOs"], json!({"HostName": "web"}));
    assert_eq!(v["process"]["CommandLine"], json!("cmd /c \"echo hi\""));
    let warnings = v["warnings"].as_array().expect("warnings");
    assert!(warnings.iter().any(|w| w.as_str().unwrap_or_default().contains("stand-ins")));
    assert!(warnings.iter().any(|w| w.as_str().unwrap_or_default().contains("host assumed to be build 20348")));
}

#[test]
fn options_change_the_documents() {
    let b = TempBundle::new("opts", Some(&config()));
    let opts = HcsDocOptions {
        format: DocFormat::Json,
        container_id: Some("api".into()),
        owner: Some("tester".into()),
        host_build: Some(26100),
        host_revision: Some(2033),
        host_processors: Some(8),
        isolation: Some(Isolation::Hyperv),
        image_os_version: Some("10.0.20348.1".parse().expect("version")),
        lcow_boot_files: None,
        assume_host: true,
    };
    let v: Value = serde_json::from_str(&hcs_doc(&b.0, &opts).expect("documents")).expect("json");
    assert_eq!(v["isolation"], json!("hyperv"));
    assert_eq!(v["host"], json!({"build": 26100, "revision": 2033, "measured": false}));
    assert_eq!(v["utilityVm"]["id"], json!("api@vm"));
    assert_eq!(v["utilityVm"]["document"]["Owner"], json!("tester"));
    assert_eq!(v["container"]["document"]["HostingSystemId"], json!("api@vm"));
    assert_eq!(v["compatibility"], json!({"verdict": "process-ok"}));
    assert_eq!(v["imageOsVersion"], json!("10.0.20348.1"));
}

#[test]
fn text_output_summarises() {
    let b = TempBundle::new("text", Some(&config()));
    let opts = HcsDocOptions { format: DocFormat::Text, container_id: Some("web".into()), ..assumed() };
    let out = hcs_doc(&b.0, &opts).expect("documents");
    assert!(
        out.starts_with("isolation: process\nhost: build 20348 (ltsc2022), revision 0 (assumed)\nschema: 2.1\n"),
        "{}",
        out
    );
    assert!(out.contains("\ncontainer web\n"), "{}", out);
    assert!(out.contains("  root: \\\\?\\Volume{2c2b6b0c-7d43-4c0a-8d8c-0123456789ab}\\\n"), "{}", out);
    assert!(out.contains("  mapped directory C:\\data -> C:\\data\n"), "{}", out);
    assert!(out.contains("  command line: cmd /c \"echo hi\"\n"), "{}", out);
    assert!(out.contains("\nwarnings:\n  - "), "{}", out);

    let opts = HcsDocOptions { format: DocFormat::Text, isolation: Some(Isolation::Hyperv), ..assumed() };
    let out = hcs_doc(&b.0, &opts).expect("documents");
    assert!(out.contains("  boot: UEFI VmbFs \\EFI\\Microsoft\\Boot\\bootmgfw.efi\n"), "{}", out);
    assert!(out.contains("  scsi 0:0 C:\\l\\scratch\\vm\\sandbox.vhdx\n"), "{}", out);
    assert!(out.contains("  after start: guest CombinedLayers "), "{}", out);
    assert_eq!("text".parse::<DocFormat>(), Ok(DocFormat::Text));
    assert!("yaml".parse::<DocFormat>().is_err());
}

#[test]
fn errors_name_the_bundle_the_field_and_the_fix() {
    let missing = TempBundle::new("missing", None);
    let e = hcs_doc(&missing.0, &HcsDocOptions::default()).expect_err("no config.json");
    assert!(matches!(e, HcsError::Bundle(_)));
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("cannot read bundle config {}", missing.0.join("config.json").display())),
        "{}",
        text
    );
    assert!(text.ends_with("pass the bundle directory that holds config.json"), "{}", text);

    let bad = TempBundle::new("bad", Some("{\"windows\": {\"layerFolders\": 3}}"));
    let text = hcs_doc(&bad.0, &HcsDocOptions::default()).expect_err("bad json").to_string();
    assert!(text.contains("is not a valid OCI runtime config"), "{}", text);
    assert!(text.contains("line 1"), "{}", text);

    let invalid =
        TempBundle::new("invalid", Some(&config().replace("Volume{2c2b6b0c-7d43-4c0a-8d8c-0123456789ab}", "C:")));
    let e = hcs_doc(&invalid.0, &HcsDocOptions::default()).expect_err("bad root");
    let text = e.to_string();
    assert!(text.starts_with(&format!("bundle {}: root.path: ", invalid.0.display())), "{}", text);
    assert!(text.contains("\\\\?\\Volume{GUID}\\"), "{}", text);
}
