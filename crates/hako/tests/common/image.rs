//! Local images for the engine tests, built with no registry: a busybox root filesystem, and OCI
//! image-layout archives holding one layer of it under one or more image names (each with its own
//! image config), ready for `ctr images import`.
//!
//! Included with `#[path]` by the test binaries that drive engines, so it needs nothing but std
//! and `serde_json`.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

/// Runs `cmd`, panicking with its output unless it succeeds; returns its stdout.
fn checked(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A minimal root filesystem: Debian's static busybox with every applet linked in /bin.
pub fn busybox_rootfs(dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "{} is missing: apt-get install busybox-static", busybox.display());
    for sub in ["bin", "dev", "etc", "proc", "sys", "tmp", "root"] {
        fs::create_dir_all(dir.join(sub)).expect("create rootfs directory");
    }
    fs::copy(busybox, dir.join("bin/busybox")).expect("copy busybox");
    let list = checked(Command::new(busybox).arg("--list"));
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox") {
        symlink("busybox", dir.join("bin").join(applet)).expect("link busybox applet");
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("write passwd");
    fs::write(dir.join("etc/group"), "root:x:0:\n").expect("write group");
}

/// Archives `rootfs` as an uncompressed layer tarball at `tar`.
pub fn tar_rootfs(rootfs: &Path, tar: &Path) {
    checked(Command::new("tar").arg("-C").arg(rootfs).arg("-cf").arg(tar).arg("."));
}

/// The sha256 digest and size of a file, as `sha256:<hex>`.
pub fn digest(path: &Path) -> (String, u64) {
    let out = checked(Command::new("sha256sum").arg(path));
    let hex = out.split_whitespace().next().unwrap_or_default().to_string();
    assert_eq!(hex.len(), 64, "sha256sum {}: {out}", path.display());
    let size = fs::metadata(path).expect("stat blob").len();
    (format!("sha256:{hex}"), size)
}

/// Moves `file` into the OCI layout's blob store under its digest.
fn add_blob(layout: &Path, file: &Path) -> (String, u64) {
    let (digest, size) = digest(file);
    let hex = digest.trim_start_matches("sha256:");
    fs::rename(file, layout.join("blobs/sha256").join(hex)).expect("store blob");
    (digest, size)
}

/// One image of an archive: its name (`io.containerd.image.name`) and the `config` part of its
/// image config (Env, Entrypoint, Cmd, WorkingDir, ...).
pub struct ImageSpec<'a> {
    pub name: &'a str,
    pub config: serde_json::Value,
}

/// Writes an OCI image layout at `layout` in which every image of `images` is the one layer
/// `rootfs_tar` with its own config, and archives it at `archive` for `ctr images import`.
pub fn write_oci_archive(rootfs_tar: &Path, layout: &Path, archive: &Path, images: &[ImageSpec<'_>]) {
    fs::create_dir_all(layout.join("blobs/sha256")).expect("create OCI layout");
    let layer_tmp = layout.join("layer.tar");
    fs::copy(rootfs_tar, &layer_tmp).expect("copy layer");
    let (layer, layer_size) = add_blob(layout, &layer_tmp);
    let arch = std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64");

    let mut manifests = Vec::new();
    for image in images {
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": image.config,
            "rootfs": { "type": "layers", "diff_ids": [layer] },
        });
        let config_tmp = layout.join("config.json");
        fs::write(&config_tmp, config.to_string()).expect("write image config");
        let (config, config_size) = add_blob(layout, &config_tmp);

        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config, "size": config_size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer, "size": layer_size,
            }],
        });
        let manifest_tmp = layout.join("manifest.json");
        fs::write(&manifest_tmp, manifest.to_string()).expect("write manifest");
        let (manifest, manifest_size) = add_blob(layout, &manifest_tmp);
        let tag = image.name.rsplit_once(':').map_or("latest", |(_, t)| t);
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest, "size": manifest_size,
            "annotations": {
                "io.containerd.image.name": image.name,
                "org.opencontainers.image.ref.name": tag,
            },
        }));
    }
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": manifests });
    fs::write(layout.join("index.json"), index.to_string()).expect("write index");
    fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
    checked(Command::new("tar").arg("-C").arg(layout).arg("-cf").arg(archive).args([
        "oci-layout",
        "index.json",
        "blobs",
    ]));
}
